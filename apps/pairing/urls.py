from django.urls import path

from apps.pairing.api import BookCreateView, BookDeviceListView

urlpatterns = [
    path("books", BookCreateView.as_view(), name="books-create"),
    path("books/<uuid:book_id>/devices", BookDeviceListView.as_view(), name="books-devices"),
]
