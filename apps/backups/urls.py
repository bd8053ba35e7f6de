"""The backups app's API routes: share delivery's and server backups'."""

from django.urls import include, path

urlpatterns = [
    path("", include("apps.backups.delivery.urls")),
    path("", include("apps.backups.engine.urls")),
]
