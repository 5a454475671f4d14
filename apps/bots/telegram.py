"""The Telegram bot's updates, as far as account linking goes: ``/start`` greets (``/start CODE``, from a
``t.me/<bot>?start=CODE`` deep link, links like ``/link CODE``) and ``/link CODE`` proves a Telegram account is
the member's with the one-time code from their account page. Replies go out as direct messages through the
Telegram publisher (the outbox while ``TELEGRAM_BACKEND=outbox``).

Updates arrive on the webhook (``apps.bots.views``), are stored under their ``update_id`` so a redelivery is
dropped, and are handled after commit by the ``bots.process_telegram_update`` task. An update that is not one
(malformed JSON, no id) or that the bot has no use for is logged and skipped, never an error.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from apps.bots.models import TelegramUpdate, TelegramUpdateStatus
from apps.community.services.linking import LinkOutcome, telegram_link_code_redeem
from apps.core.models import Platform
from apps.core.resilience import IntegrationError
from apps.integrations.publishers import get_publisher
from apps.integrations.publishers.telegram import parse_update
from apps.integrations.types import InboundEvent, OutboundPost

logger = logging.getLogger(__name__)

MAX_UPDATE_ID = 2**63 - 1


def _links_url() -> str:
    return settings.SITE_URL.rstrip("/") + reverse("portal:links")


def _greeting() -> str:
    return (
        "Hi, I'm the CoinLink bot.\n\n"
        "To connect this Telegram account to your CoinLink membership (and get into the members' channel), "
        f"open {_links_url()}, get a code, and send it to me as:\n/link CODE"
    )


_LINK_REPLIES = {
    LinkOutcome.LINKED: "Done: this Telegram account is now linked to your CoinLink membership. "
    "If your plan includes the members' channel, your invite link is on its way.",
    LinkOutcome.MERGED: "Done: this Telegram account is now linked to your CoinLink membership. "
    "If your plan includes the members' channel, your invite link is on its way.",
    LinkOutcome.ALREADY_LINKED: "This Telegram account is already linked to your CoinLink membership.",
    LinkOutcome.CLAIMED_BY_OTHER_MEMBER: "This Telegram account is linked to another CoinLink member. "
    "If that's not right, please contact support.",
    LinkOutcome.OTHER_ACCOUNT_LINKED: "Your CoinLink membership is already linked to a different Telegram "
    "account.",
}


def _invalid_code() -> str:
    return (
        "That code didn't work: it may be mistyped, used already or expired (codes last 15 minutes). "
        f"Get a fresh one at {_links_url()}"
    )


# --- commands -----------------------------------------------------------------------------------------------


def _start(event: InboundEvent, argument: str) -> str:
    return _link(event, argument) if argument else _greeting()


def _link(event: InboundEvent, argument: str) -> str:
    if not argument:
        return f"Send /link followed by the code from {_links_url()}, e.g. /link ABCDE-FGHJK"
    result = telegram_link_code_redeem(
        code=argument,
        telegram_user_id=event.author_id,
        username=event.author_username,
        display_name=event.author_display_name,
    )
    logger.info("telegram user %s: /link %s", event.author_id, result.outcome)
    return _LINK_REPLIES.get(result.outcome) or _invalid_code()


_COMMANDS: dict[str, Callable[[InboundEvent, str], str]] = {
    "/start": _start,
    "/help": _start,
    "/link": _link,
}


def handle_update(update: Mapping[str, Any]) -> None:
    """Act on one update: a command sent to the bot in a private chat gets its reply; anything else is logged
    and skipped. Never raises for what Telegram (or anyone) sends."""
    try:
        update_id, event = parse_update(update)
    except ValueError as exc:
        logger.warning("telegram update skipped: %s", exc)
        return
    # An edited "/link CODE" is the same command again, and its code is spent.
    if event is None or "message" not in update or event.kind != "dm" or event.is_bot:
        logger.info("telegram update %s skipped: not a new private message from a person", update_id)
        return
    command, _, argument = event.text.strip().partition(" ")
    handler = _COMMANDS.get(command.split("@", 1)[0].lower())
    if handler is None:
        logger.info("telegram update %s skipped: not a command the bot knows", update_id)
        return
    _reply(event, update_id, handler(event, argument.strip()))


def _reply(event: InboundEvent, update_id: int, text: str) -> None:
    post = OutboundPost(
        platform=Platform.TELEGRAM,
        channel=event.channel,  # "dm:<chat id>"
        text=text,
        idempotency_key=f"telegram-bot-reply:{update_id}",
    )
    try:
        get_publisher(Platform.TELEGRAM).publish(post)
    except (IntegrationError, ImproperlyConfigured) as exc:
        # What the command did stands (a link is on the member's account page); only the answer is lost.
        logger.warning("telegram update %s: could not reply to %s: %s", update_id, event.author_id, exc)


# --- the webhook's updates ----------------------------------------------------------------------------------


def telegram_update_receive(*, payload: bytes) -> TelegramUpdate | None:
    """Keep an update under its ``update_id`` and, once committed, hand it to the task that handles it.
    ``None`` when it is no update (logged) or was received before (a redelivery)."""
    try:
        data = json.loads(payload)
    except ValueError as exc:  # UnicodeDecodeError included
        logger.warning("telegram webhook: skipped a body that is not JSON: %s", exc)
        return None
    update_id = data.get("update_id") if isinstance(data, dict) else None
    if type(update_id) is not int or not 0 <= update_id <= MAX_UPDATE_ID:
        logger.warning("telegram webhook: skipped JSON without a valid update_id")
        return None
    # The tasks module imports this one.
    from apps.bots.tasks import process_telegram_update

    with transaction.atomic():
        row, created = TelegramUpdate.objects.get_or_create(update_id=update_id, defaults={"payload": data})
        if not created:
            logger.info("telegram update %s received again: already handled", update_id)
            return None
        transaction.on_commit(functools.partial(process_telegram_update.delay, row.pk))
    return row


def telegram_update_process(*, update_pk: int) -> None:
    """Handle a stored update, once: the first caller moves it from received to processing."""
    claimed = TelegramUpdate.objects.filter(pk=update_pk, status=TelegramUpdateStatus.RECEIVED).update(
        status=TelegramUpdateStatus.PROCESSING
    )
    if not claimed:
        return
    row = TelegramUpdate.objects.get(pk=update_pk)
    try:
        handle_update(row.payload)
    except Exception as exc:
        # One update that trips over a bug must not stop the others: it is kept, failed, for the operator.
        logger.exception("telegram update %s failed", row.update_id)
        TelegramUpdate.objects.filter(pk=update_pk).update(
            status=TelegramUpdateStatus.FAILED, error=repr(exc)[:2000], processed_at=timezone.now()
        )
        return
    TelegramUpdate.objects.filter(pk=update_pk).update(
        status=TelegramUpdateStatus.PROCESSED, processed_at=timezone.now()
    )
