from django.urls import path

from apps.relay.api import RelaySendView, RelayTicketView, SyncStatusView

urlpatterns = [
    path("relay/send", RelaySendView.as_view(), name="relay-send"),
    path("relay/ticket", RelayTicketView.as_view(), name="relay-ticket"),
    path("books/<uuid:book_id>/sync_status", SyncStatusView.as_view(), name="books-sync-status"),
]
