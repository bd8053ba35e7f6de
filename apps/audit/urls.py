from django.urls import path

from apps.audit.api import AuditEventListView, BookAuditExportView

urlpatterns = [
    path("audit/events", AuditEventListView.as_view(), name="audit-events"),
    path("books/<uuid:book_id>/audit", BookAuditExportView.as_view(), name="books-audit"),
]
