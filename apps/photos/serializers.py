"""Wire shapes of the photos API (snake_case)."""

from __future__ import annotations

from rest_framework import serializers

MAX_BATCH = 50
# Any string of this shape is a position in the list (microseconds and a photo id), so a
# well-formed cursor never fails; only a malformed one is INVALID_ARGUMENT.
CURSOR_PATTERN = r"^[0-9]{1,16}\.[0-9a-f]{32}$"


class PhotoUploadInputSerializer(serializers.Serializer):
    book_id = serializers.UUIDField()
    transaction_id = serializers.RegexField(
        r"^[A-Za-z0-9_.:-]{1,64}$", max_length=64,
        help_text="The ledger transaction the photo belongs to: 1-64 of A-Z a-z 0-9 _ . : -, opaque to the server.",
    )  # fmt: skip
    # No max_value here: a size over the cap is PHOTO_TOO_LARGE (the service), not INVALID_ARGUMENT.
    size_bytes = serializers.IntegerField(min_value=1, help_text="Bytes of the ciphertext to upload; at most 10 MiB.")
    mime_type = serializers.RegexField(
        r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$", max_length=100,
        help_text="The plaintext's media type (e.g. image/jpeg), lower case; the object itself is stored as application/octet-stream.",
    )  # fmt: skip
    sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", help_text="SHA-256 of the ciphertext, 64 lower-case hex digits.")


class PhotoUploadSerializer(serializers.Serializer):
    photo_id = serializers.UUIDField()
    s3_key = serializers.CharField(help_text="encrypted/<book_id>/<photo_id>.enc")
    upload_url = serializers.URLField()
    upload_method = serializers.ChoiceField(choices=["PUT"])
    upload_headers = serializers.DictField(
        child=serializers.CharField(), help_text="Send exactly these headers with the upload (the size is signed in)."
    )
    expires_in = serializers.IntegerField()


class PhotoSerializer(serializers.Serializer):
    photo_id = serializers.UUIDField(source="id")
    transaction_id = serializers.CharField()
    size_bytes = serializers.IntegerField()
    mime_type = serializers.CharField()
    sha256 = serializers.CharField()
    created_at = serializers.DateTimeField()


class PhotoCompletedSerializer(PhotoSerializer):
    state = serializers.CharField()


class PhotoDownloadSerializer(serializers.Serializer):
    photo_id = serializers.UUIDField(source="photo.id")
    download_url = serializers.URLField()
    expires_in = serializers.IntegerField()
    size_bytes = serializers.IntegerField(source="photo.size_bytes")
    created_at = serializers.DateTimeField(source="photo.created_at")


class StrictUUIDField(serializers.UUIDField):
    """A UUID given as a string only: DRF's UUIDField also takes integers, and so `false` as UUID 0."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class PhotoDownloadUrlsInputSerializer(serializers.Serializer):
    photo_ids = serializers.ListField(child=StrictUUIDField(), min_length=1, max_length=MAX_BATCH)


class PhotoDownloadUrlsSerializer(serializers.Serializer):
    photos = PhotoDownloadSerializer(many=True)
    not_found = serializers.ListField(
        child=serializers.UUIDField(), help_text="Ids asked for that are not available photos of the caller's book."
    )


class PhotoListQuerySerializer(serializers.Serializer):
    cursor = serializers.RegexField(
        CURSOR_PATTERN, required=False, help_text="The `next_cursor` of the previous page (opaque to apps)."
    )
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)

    def validate(self, attrs):
        # DRF reads `?cursor=` from a query string as "not given"; an empty cursor is a client bug.
        for name in ("cursor", "limit"):
            if self.initial_data.get(name, None) == "":
                raise serializers.ValidationError({name: "May not be empty."})
        return attrs


class PhotoListSerializer(serializers.Serializer):
    photos = PhotoSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)
    photo_count = serializers.IntegerField(help_text="Available photos of the book.")
    total_bytes = serializers.IntegerField(help_text="Their bytes.")


class PhotoDeletedSerializer(serializers.Serializer):
    photo_id = serializers.UUIDField()
    deleted = serializers.BooleanField()
