from django.urls import path

from apps.pairing.api import (
    BookCreateView,
    BookDeviceListView,
    DeviceRevokeView,
    PairingExchangeView,
    PairingGenerateView,
    PairingVerifyView,
)

urlpatterns = [
    path("books", BookCreateView.as_view(), name="books-create"),
    path("books/<uuid:book_id>/devices", BookDeviceListView.as_view(), name="books-devices"),
    path("books/<uuid:book_id>/devices/<uuid:device_id>", DeviceRevokeView.as_view(), name="books-device"),
    path("pairing/generate", PairingGenerateView.as_view(), name="pairing-generate"),
    path("pairing/verify", PairingVerifyView.as_view(), name="pairing-verify"),
    path("pairing/exchange", PairingExchangeView.as_view(), name="pairing-exchange"),
]
