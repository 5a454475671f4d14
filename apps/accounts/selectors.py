"""Reads of portal users."""

from __future__ import annotations

from apps.accounts.models import User


def user_get_profile(*, user_id: int) -> User:
    """The user with their community record and its platform identities loaded in two queries.

    The relations are named as strings on purpose: accounts sits below community and must not import it.
    """
    return (
        User.objects.select_related("community_user")
        .prefetch_related("community_user__identities")
        .get(pk=user_id)
    )
