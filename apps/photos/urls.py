from django.urls import path

from apps.photos.api import (
    BookPhotoListView,
    PhotoCompleteView,
    PhotoDetailView,
    PhotoDownloadUrlsView,
    PhotoUploadView,
)

urlpatterns = [
    path("photos/upload", PhotoUploadView.as_view(), name="photos-upload"),
    path("photos/download_urls", PhotoDownloadUrlsView.as_view(), name="photos-download-urls"),
    path("photos/<uuid:photo_id>", PhotoDetailView.as_view(), name="photos-detail"),
    path("photos/<uuid:photo_id>/complete", PhotoCompleteView.as_view(), name="photos-complete"),
    path("books/<uuid:book_id>/photos", BookPhotoListView.as_view(), name="books-photos"),
]
