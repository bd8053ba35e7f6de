"""Operators' view of photos: by book, with size and state. No link to the bytes: a download URL
is only ever issued through the API to a device of the photo's book (and the bytes are ciphertext)."""

from __future__ import annotations

from django.contrib import admin, messages

from apps.photos import services, storage
from apps.photos.models import BookPhotoUsage, Photo
from homepocket.view_only_admin import ViewOnlyModelAdmin


class ReadOnlyAdmin(ViewOnlyModelAdmin):
    """Rows change only through the services (which keep objects, usage and audit in step)."""

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Photo)
class PhotoAdmin(ReadOnlyAdmin):
    list_display = ("id", "book", "state", "size_bytes", "mime_type", "created_at", "completed_at")
    list_filter = ("state", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=id", "=book__id")
    list_select_related = ("book",)
    ordering = ("book", "-created_at")
    fields = ("id", "book", "state", "size_bytes", "mime_type", "transaction_id", "uploaded_by", "sha256", "created_at", "completed_at")
    readonly_fields = fields
    # Django's own delete would drop rows and leave objects; this action deletes both.
    actions = ["delete_photos"]

    def has_delete_photos_permission(self, request) -> bool:
        # Django's delete permission, though Django's own delete view stays closed (see above).
        return request.user.has_perm("photos.delete_photo")

    @admin.action(description="Delete selected photos (object, then row)", permissions=["delete_photos"])
    def delete_photos(self, request, queryset):
        deleted = 0
        for photo in queryset:
            try:
                services.photo_delete(device_id=None, book_id=photo.book_id, photo_id=photo.pk, admin_user_id=request.user.pk)
                deleted += 1
            except storage.StorageUnavailable:
                self.message_user(request, "Object storage is unreachable; nothing more was deleted.", messages.ERROR)
                break
        self.message_user(request, f"Deleted {deleted} photo(s).", messages.SUCCESS)


@admin.register(BookPhotoUsage)
class BookPhotoUsageAdmin(ReadOnlyAdmin):
    list_display = ("book", "photo_count", "total_bytes")
    search_fields = ("=book__id",)
    ordering = ("-total_bytes",)
    readonly_fields = ("book", "photo_count", "total_bytes")
