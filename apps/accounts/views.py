"""/account/: an API key holder's page (Django user login), and key rotation."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.selectors import account_keys
from apps.accounts.services import ApiKeyNotRotatable, ApiKeyNotYours, account_api_key_rotate

LOGIN_URL = "account-login"


class AccountLoginView(LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True
    next_page = "account"


class AccountLogoutView(LogoutView):
    next_page = LOGIN_URL


@require_GET
@login_required(login_url=LOGIN_URL)
def account_view(request):
    context = {"keys": account_keys(user=request.user, now=timezone.now()), "grace_hours": settings.API_KEY_ROTATION_GRACE_SECONDS / 3600}
    return TemplateResponse(request, "accounts/account.html", context)


@require_POST
@login_required(login_url=LOGIN_URL)
def key_rotate_view(request, key_id):
    try:
        new, clear = account_api_key_rotate(user=request.user, api_key_id=key_id)
    except ApiKeyNotYours:
        raise Http404("No such API key in this account.") from None
    except ApiKeyNotRotatable as exc:
        messages.warning(request, exc.message)
        return redirect("account")
    # The new key is shown in this answer only: it is stored hashed and never shown again.
    response = TemplateResponse(request, "accounts/rotated.html", {"key": new, "clear": clear,
                                "grace_hours": settings.API_KEY_ROTATION_GRACE_SECONDS / 3600})  # fmt: skip
    response["Cache-Control"] = "no-store"
    return response
