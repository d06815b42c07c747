"""Who may do what: reads need an authenticated user (a session or a token) unless
``DJANGO_API_ANONYMOUS_READ`` opens them; every write needs a staff user."""

from __future__ import annotations

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission


class ReadAuthenticatedWriteStaff(BasePermission):
    message = "Changing this needs a staff user."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if request.method in SAFE_METHODS:
            return settings.API_ANONYMOUS_READ or bool(user and user.is_authenticated)
        return bool(user and user.is_authenticated and user.is_staff)
