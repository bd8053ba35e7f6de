from django.urls import path

from apps.backups.delivery.api import (
    DeliveryConfirmView,
    DeliveryRequestView,
    DeliveryStatusView,
    ServerKeyView,
    ShareDepositView,
)

urlpatterns = [
    path("backup/shares", ShareDepositView.as_view(), name="backup-shares"),
    path("backup/delivery/request", DeliveryRequestView.as_view(), name="backup-delivery-request"),
    path("backup/delivery/confirm", DeliveryConfirmView.as_view(), name="backup-delivery-confirm"),
    path("backup/delivery/status/<uuid:delivery_id>", DeliveryStatusView.as_view(), name="backup-delivery-status"),
    path("backup/delivery/server_key", ServerKeyView.as_view(), name="backup-delivery-server-key"),
]
