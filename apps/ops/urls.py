from django.urls import path

from apps.ops.views import dashboard_view

urlpatterns = [
    path("", dashboard_view, name="ops-dashboard"),
]
