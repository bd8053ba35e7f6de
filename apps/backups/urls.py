"""The backups app's API routes: share delivery now; server backups add theirs here."""

from django.urls import include, path

urlpatterns = [
    path("", include("apps.backups.delivery.urls")),
]
