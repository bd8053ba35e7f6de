"""GET /ops/: the operator dashboard, for staff with the admin's session; read-only."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from apps.ops.panels import dashboard_panels


@require_GET
@staff_member_required
def dashboard_view(request):
    return TemplateResponse(request, "ops/dashboard.html", dashboard_panels())
