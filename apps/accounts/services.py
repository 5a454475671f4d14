"""Writes to the portal user."""

from __future__ import annotations

from apps.accounts.models import User


def user_update_display_name(*, user_id: int, display_name: str) -> None:
    User.objects.filter(pk=user_id).update(display_name=display_name)
