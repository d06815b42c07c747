"""API tokens (DRF's ``authtoken``: one key per user, sent as ``Authorization: Token <key>``)."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from ingest.errors import UsageError
from ingest.retry import run_atomic


@dataclass(frozen=True)
class IssuedToken:
    username: str
    key: str
    action: str  # "created", "rotated", "unchanged" or "revoked"

    def as_dict(self) -> dict:
        return {"user": self.username, "token": self.key or None, "action": self.action}


def token_issue(*, username: str, rotate: bool = False, revoke: bool = False) -> IssuedToken:
    """The user's token: created when there is none; with ``rotate`` a new key replaces the old
    one (which stops working at once); with ``revoke`` the token is deleted."""
    model = get_user_model()
    user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
    if user is None:
        raise UsageError(f"No user is named {username!r}; create one first (manage.py createsuperuser, or the admin).")
    if not user.is_active:
        raise UsageError(f"The user {username!r} is inactive, and an inactive user's token is refused: "
                         "activate the user first.")

    def work() -> IssuedToken:
        current = Token.objects.filter(user=user).first()
        if revoke:
            if current is not None:
                current.delete()
            return IssuedToken(username, "", "revoked")
        if current is not None and not rotate:
            return IssuedToken(username, current.key, "unchanged")
        if current is not None:
            current.delete()
        return IssuedToken(username, Token.objects.create(user=user).key, "rotated" if current else "created")

    return run_atomic(work, label="token_issue")
