"""The offline twin of the access gateways: records in ``access_grants`` what it would have done on Discord or
Telegram, and answers who holds a role or sits in a channel from that record. A twin invite is taken up at once
(there is no one to click it), so the demo shows members in the channel as soon as they are invited."""

from __future__ import annotations

import datetime as dt
import secrets

from apps.core.models import Platform
from apps.integrations.access import INVITE_NAME_PREFIX
from apps.integrations.models import AccessGrant


def _record(platform: str, resource: str, user_id: str, state: str, **fields: object) -> None:
    AccessGrant.objects.update_or_create(
        platform=platform,
        resource=resource,
        user_external_id=user_id,
        defaults={"state": state, **fields},
    )


class TwinDiscordAccess:
    platform = "discord"

    def grant_role(self, user_id: str, role_id: str) -> None:
        _record(Platform.DISCORD, role_id, user_id, AccessGrant.State.GRANTED)

    def revoke_role(self, user_id: str, role_id: str) -> None:
        if AccessGrant.objects.filter(
            platform=Platform.DISCORD, resource=role_id, user_external_id=user_id
        ).exists():
            _record(Platform.DISCORD, role_id, user_id, AccessGrant.State.REVOKED)

    def role_holders(self, role_id: str) -> set[str]:
        return set(
            AccessGrant.objects.filter(
                platform=Platform.DISCORD, resource=role_id, state=AccessGrant.State.GRANTED
            ).values_list("user_external_id", flat=True)
        )


class TwinTelegramAccess:
    platform = "telegram"

    def create_invite_link(self, chat_id: str, name: str, expire_at: dt.datetime) -> str:
        # Shaped like a real invite link, marked as the twin's; it opens nothing.
        link = f"https://t.me/+twin{secrets.token_urlsafe(12)}"
        if not name.startswith(INVITE_NAME_PREFIX):
            return link  # nobody known to let in
        user_id = name.removeprefix(INVITE_NAME_PREFIX)
        _record(
            Platform.TELEGRAM,
            chat_id,
            user_id,
            AccessGrant.State.JOINED,
            invite_link=link,
            invite_expires_at=expire_at,
        )
        return link

    def remove_member(self, chat_id: str, user_id: str) -> None:
        if AccessGrant.objects.filter(
            platform=Platform.TELEGRAM, resource=chat_id, user_external_id=user_id
        ).exists():
            _record(Platform.TELEGRAM, chat_id, user_id, AccessGrant.State.REMOVED)

    def is_member(self, chat_id: str, user_id: str) -> bool:
        return AccessGrant.objects.filter(
            platform=Platform.TELEGRAM,
            resource=chat_id,
            user_external_id=user_id,
            state=AccessGrant.State.JOINED,
        ).exists()
