"""Permissions shared by every app's views."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


def scope_or_staff(scope: str) -> type[BasePermission]:
    """Allow an API key that carries `scope`, or a staff member signed in to the admin.

    Principals that have scopes (API keys) answer has_scope(); others (devices, users) are asked
    is_staff. Anything else authenticated is refused with 403 FORBIDDEN.
    """

    class ScopeOrStaff(BasePermission):
        def has_permission(self, request, view):
            user = request.user
            if user is None or not getattr(user, "is_authenticated", False):
                return False
            if hasattr(user, "has_scope"):
                return user.has_scope(scope)
            return bool(getattr(user, "is_staff", False))

    ScopeOrStaff.__name__ = f"ScopeOrStaff_{scope.replace(':', '_')}"
    return ScopeOrStaff
