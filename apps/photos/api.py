"""Photos API edges: parse, call a service or selector, render (CONVENTIONS 4)."""

from __future__ import annotations

from django.core.exceptions import DisallowedHost
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.pairing.selectors import book_get_for_device
from apps.photos import selectors, services
from apps.photos.serializers import (
    PhotoCompletedSerializer,
    PhotoDeletedSerializer,
    PhotoDownloadSerializer,
    PhotoDownloadUrlsInputSerializer,
    PhotoDownloadUrlsSerializer,
    PhotoListQuerySerializer,
    PhotoListSerializer,
    PhotoUploadInputSerializer,
    PhotoUploadSerializer,
)
from apps.quotas.services import quota_consume
from apps.quotas.throttling import RateLimitedMixin, quota_subjects
from homepocket.api.errors import ApplicationError

DOWNLOAD_SCOPES = ("photos.download",)


class HostNotAllowed(ApplicationError):
    code = "INVALID_ARGUMENT"
    default_message = "The Host header is not one this server answers for."


def _base_url(request) -> str:
    # The embedded mode's object URLs point back at this server, as the device reached it; the
    # Host is checked against ALLOWED_HOSTS, so a forged one cannot steer URLs elsewhere.
    try:
        return request.build_absolute_uri("/").rstrip("/")
    except DisallowedHost:
        raise HostNotAllowed() from None


class PhotoUploadView(RateLimitedMixin, APIView):
    rate_limit_scopes = ("photos.upload",)
    error_codes = ["INVALID_ARGUMENT", "FORBIDDEN", "BOOK_NOT_FOUND", "PHOTO_TOO_LARGE"]

    @extend_schema(
        operation_id="photos_upload",
        summary="Ask for a URL to upload one encrypted photo to (the size is signed into it)",
        description=(
            "Records a pending photo and answers a presigned PUT (S3) or a signed URL of this server "
            "(embedded mode), valid `expires_in` seconds, that accepts exactly `size_bytes` bytes. "
            "Send `upload_headers` with the upload, then call complete. Over 10 MiB: PHOTO_TOO_LARGE, no URL."
        ),
        request=PhotoUploadInputSerializer,
        responses={201: PhotoUploadSerializer},
        tags=["photos"],
    )
    def post(self, request):
        payload = PhotoUploadInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        started = services.photo_upload_start(
            device_id=request.user.device_id, device_book_id=request.user.book_id, book_id=data["book_id"],
            transaction_id=data["transaction_id"], size_bytes=data["size_bytes"], mime_type=data["mime_type"],
            sha256=data["sha256"], base_url=_base_url(request),
        )  # fmt: skip
        body = {
            "photo_id": started.photo.pk,
            "s3_key": started.photo.s3_key,
            "upload_url": started.target.url,
            "upload_method": started.target.method,
            "upload_headers": started.target.headers,
            "expires_in": started.expires_in,
        }
        return Response(PhotoUploadSerializer(body).data, status=201)


class PhotoCompleteView(APIView):
    error_codes = ["PHOTO_NOT_FOUND", "PHOTO_TOO_LARGE", "INVALID_ARGUMENT", "INVALID_STATE", "S3_ERROR"]

    @extend_schema(
        operation_id="photos_complete",
        summary="Confirm an upload: the stored object's size is checked, then the photo is available",
        description=(
            "A stored size other than the declared one deletes the object and the photo: larger is "
            "PHOTO_TOO_LARGE, smaller INVALID_ARGUMENT. Nothing uploaded yet: INVALID_STATE. "
            "Completing twice answers the same photo."
        ),
        request=None,
        responses={200: PhotoCompletedSerializer},
        tags=["photos"],
    )
    def post(self, request, photo_id):
        photo = services.photo_upload_complete(
            device_id=request.user.device_id, book_id=request.user.book_id, photo_id=photo_id
        )
        return Response(PhotoCompletedSerializer(photo).data)


class PhotoDetailView(RateLimitedMixin, APIView):
    error_codes = ["PHOTO_NOT_FOUND", "S3_ERROR"]

    @property
    def rate_limit_scopes(self):
        # Only reads count against photos.download; a DELETE is not a download.
        request = getattr(self, "request", None)
        return DOWNLOAD_SCOPES if request is None or request.method == "GET" else ()

    @extend_schema(
        operation_id="photos_get",
        summary="A download URL for an available photo of the caller's book",
        description="Another book's photo, a pending one and a deleted one all answer PHOTO_NOT_FOUND.",
        responses={200: PhotoDownloadSerializer},
        tags=["photos"],
    )
    def get(self, request, photo_id):
        photo = selectors.photo_get_available(book_id=request.user.book_id, photo_id=photo_id)
        download = selectors.photo_download(photo=photo, base_url=_base_url(request))
        return Response(PhotoDownloadSerializer(download).data)

    @extend_schema(
        operation_id="photos_delete",
        summary="Delete a photo: the object, then the row",
        description="Deleting twice answers PHOTO_NOT_FOUND and changes nothing; the store down answers S3_ERROR and changes nothing.",
        responses={200: OpenApiResponse(PhotoDeletedSerializer, description="Deleted.")},
        tags=["photos"],
    )
    def delete(self, request, photo_id):
        services.photo_delete(device_id=request.user.device_id, book_id=request.user.book_id, photo_id=photo_id)
        return Response(PhotoDeletedSerializer({"photo_id": photo_id, "deleted": True}).data)


class PhotoDownloadUrlsView(RateLimitedMixin, APIView):
    # Counted per photo below, not per request: a gallery of 50 is 50 downloads of the day's quota.
    rate_limit_scopes = DOWNLOAD_SCOPES
    error_codes = ["INVALID_ARGUMENT"]

    def check_throttles(self, request):
        APIView.check_throttles(self, request)  # the per-photo count happens in post()

    @extend_schema(
        operation_id="photos_download_urls",
        summary="Download URLs for up to 50 photos of the caller's book (a gallery screen)",
        description=(
            "Each available photo found counts once against photos.download; ids that are not available "
            "photos of the caller's book are listed in `not_found` and count nothing."
        ),
        request=PhotoDownloadUrlsInputSerializer,
        responses={200: PhotoDownloadUrlsSerializer},
        tags=["photos"],
    )
    def post(self, request):
        payload = PhotoDownloadUrlsInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        asked = payload.validated_data["photo_ids"]
        photos = selectors.photos_available(book_id=request.user.book_id, photo_ids=asked)
        subjects = quota_subjects(request)
        for _ in photos:
            request.quota_headers = quota_consume(scopes=DOWNLOAD_SCOPES, subjects=subjects)
        base_url = _base_url(request)
        found = {photo.pk for photo in photos}
        body = {
            "photos": [selectors.photo_download(photo=photo, base_url=base_url) for photo in photos],
            "not_found": [pid for pid in dict.fromkeys(asked) if pid not in found],
        }
        return Response(PhotoDownloadUrlsSerializer(body).data)


class BookPhotoListView(APIView):
    error_codes = ["INVALID_ARGUMENT", "FORBIDDEN", "BOOK_NOT_FOUND"]

    @extend_schema(
        operation_id="books_photos_list",
        summary="A book's available photos, newest first (metadata only; cursor pagination)",
        parameters=[PhotoListQuerySerializer],
        responses={200: PhotoListSerializer},
        tags=["photos"],
    )
    def get(self, request, book_id):
        book = book_get_for_device(book_id=book_id, device_book_id=request.user.book_id)
        query = PhotoListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        photos, next_cursor = selectors.book_photos_page(
            book_id=book.pk, cursor=query.validated_data.get("cursor"), limit=query.validated_data["limit"]
        )
        count, nbytes = selectors.book_photo_usage(book_id=book.pk)
        body = {"photos": photos, "next_cursor": next_cursor, "photo_count": count, "total_bytes": nbytes}
        return Response(PhotoListSerializer(body).data)
