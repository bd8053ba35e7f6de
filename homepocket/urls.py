"""All routes: each app declares its own API routes in its urls.py; they are included here."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.cluster.heartbeat_admin import cluster_nodes_view
from homepocket.health import health_view, ready_view
from homepocket.metrics import metrics_view

api_v1 = [
    path("", include("apps.pairing.urls")),
    path("", include("apps.audit.urls")),
    path("", include("apps.quotas.urls")),
    path("", include("apps.photos.urls")),
    path("", include("apps.signing.urls")),
    path("", include("apps.relay.urls")),
    path("", include("apps.backups.urls")),
]

urlpatterns = [
    path("health", health_view, name="health"),
    path("ready", ready_view, name="ready"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("ops/", include("apps.ops.urls")),
    path("account/", include("apps.accounts.urls")),
    path("admin/cluster/nodes/", admin.site.admin_view(cluster_nodes_view), name="cluster-nodes"),
    path("admin/", admin.site.urls),
]

handler400 = "homepocket.api.django_handlers.handler400"
handler403 = "homepocket.api.django_handlers.handler403"
handler404 = "homepocket.api.django_handlers.handler404"
handler500 = "homepocket.api.django_handlers.handler500"
