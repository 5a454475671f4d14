"""The Telegram bot's updates, one path whichever way they arrive: the webhook (``apps.bots.views``, stored and
handled after commit by the ``bots.process_telegram_update`` task) and the polling process
(``manage.py run_telegram_bot``, which stores and handles each update as it reads it). Either way an update is
kept under its ``update_id``, so a redelivery is dropped, and an update that is not one (malformed JSON, no id)
or that the bot has no use for is logged and skipped, never an error.

What the bot does with them:

- Messages in groups and supergroups (comments under channel posts included), and their edits, go through the
  one inbound path (``apps.bots.services.inbound_message_handle``): an interaction for engagement, then the
  moderation engine and enforcement. The bot's own messages, other bots', and those an admin sends as the
  chat are never moderated.
- Moderators (a Telegram account linked to a staff account) reply to a message with ``/spam``, ``/warn REASON``
  or ``/ban REASON``.
- Private messages: ``/start`` (``/start CODE`` from a ``t.me/<bot>?start=CODE`` deep link links the account
  in one tap), ``/link CODE``, ``/status``, ``/plans``, ``/appeal REASON``, ``/help``.
- Join requests to a members' channel (named by an entitlement key, or ``TELEGRAM_MEMBERS_CHANNEL_ID``):
  approved for people the entitlement ledger lets in, declined with a message saying how to join otherwise; in
  any chat, declined when the request's bio is one the moderation engine removes (``telegram_join_requests``
  keeps each answer).
- ``chat_member`` updates: joins and departures recorded as interactions; callback queries answered.

Replies go out through the Telegram publisher (the outbox while ``TELEGRAM_BACKEND=outbox``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from apps.billing.selectors import user_has_entitlement
from apps.billing.services.access_sync import platform_entitlement_keys
from apps.bots import services
from apps.bots.models import JoinDecision, TelegramJoinRequest, TelegramUpdate, TelegramUpdateStatus
from apps.community.services.linking import LinkOutcome, telegram_link_code_redeem
from apps.core.jsonsafe import JsonTooDeep, json_loads
from apps.core.models import Platform
from apps.core.resilience import IntegrationError
from apps.integrations.publishers import get_publisher
from apps.integrations.publishers.base import DM_PREFIX
from apps.integrations.telegram_polling import (
    TelegramCallbackView,
    TelegramJoinRequestView,
    TelegramMemberView,
    TelegramMessageView,
    TelegramUpdateView,
    get_bot_actions,
    is_group,
    is_private,
    parse_telegram_update,
)
from apps.integrations.types import InboundEvent, OutboundPost
from apps.moderation.engine.types import InboundMessage, Verdict
from apps.moderation.models import ActionKind
from apps.moderation.services.enforcement import ModerationRefused, moderation_act, moderation_mark_spam
from apps.moderation.services.judging import moderation_judge

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


def _status(event: InboundEvent, argument: str) -> str:
    return services.status_text(platform=Platform.TELEGRAM, external_id=event.author_id)


def _plans(event: InboundEvent, argument: str) -> str:
    return services.plans_text()


def _appeal(event: InboundEvent, argument: str) -> str:
    return services.appeal_text(
        platform=Platform.TELEGRAM,
        external_id=event.author_id,
        username=event.author_username,
        display_name=event.author_display_name,
        reason=argument,
    )


def _help(event: InboundEvent, argument: str) -> str:
    return (
        _greeting() + "\n\nAlso: /status (your membership), /plans (what it costs), "
        "/appeal REASON (ask the moderators to look again at an action)."
    )


_COMMANDS: dict[str, Callable[[InboundEvent, str], str]] = {
    "/start": _start,
    "/help": _help,
    "/link": _link,
    "/status": _status,
    "/plans": _plans,
    "/appeal": _appeal,
}
MODERATOR_COMMANDS = ("/spam", "/warn", "/ban")


# --- dispatch -----------------------------------------------------------------------------------------------


def handle_update(update: Mapping[str, Any]) -> None:
    """Act on one update. Never raises for what Telegram (or anyone) sends: a malformed update is logged and
    skipped."""
    try:
        view = parse_telegram_update(update)
    except ValueError as exc:
        logger.warning("telegram update skipped: %s", exc)
        return
    handler = _HANDLERS.get(view.kind)
    if handler is None:
        logger.info("telegram update %s skipped: nothing to do with %s", view.update_id, view.kind)
        return
    handler(view)


def _on_message(view: TelegramUpdateView) -> None:
    message = view.message
    assert message is not None
    event = message.event
    if event is None or message.sender is None:
        logger.info("telegram update %s skipped: a chat speaking, not a person", view.update_id)
        return
    if event.is_bot:
        # Our own messages and other bots': never recorded, never moderated, never answered.
        logger.info("telegram update %s skipped: sent by a bot", view.update_id)
        return
    if is_private(message.chat_type):
        _private_command(view.update_id, message, event)
        return
    if not is_group(message.chat_type):
        logger.info("telegram update %s skipped: a %s message", view.update_id, message.chat_type)
        return
    is_command = message.command in MODERATOR_COMMANDS and not message.edited
    if is_command and _moderator_command(view.update_id, message, event):
        return
    result = services.inbound_message_handle(
        event=event,
        chat_id=message.chat_id,
        message_id=message.message_id,
        links=message.links,
        edited=message.edited,
    )
    logger.info(
        "telegram message %s:%s: %s %s",
        message.chat_id,
        message.message_id,
        result.verdict or result.skipped or "recorded",
        ",".join(result.actions),
    )


def _private_command(update_id: int, message: TelegramMessageView, event: InboundEvent) -> None:
    # An edited "/link CODE" is the same command again, and its code is spent.
    if message.edited:
        logger.info("telegram update %s skipped: an edited private message", update_id)
        return
    handler = _COMMANDS.get(message.command)
    if handler is None:
        logger.info("telegram update %s skipped: not a command the bot knows", update_id)
        return
    _reply(event, update_id, handler(event, message.argument))


def _moderator_command(update_id: int, message: TelegramMessageView, event: InboundEvent) -> bool:
    """A moderator's ``/spam``, ``/warn`` or ``/ban`` in reply to someone's message. False when the sender is
    no moderator, so the message takes the ordinary path."""
    moderator = services.moderator_for(platform=Platform.TELEGRAM, external_id=event.author_id)
    if moderator is None:
        return False
    target = message.reply_to
    if target is None or target.sender is None or target.event is None:
        _reply_in_chat(message, update_id, f"Reply to the message you mean with {message.command}.")
        return True
    author = target.sender
    if author.is_bot:
        _reply_in_chat(message, update_id, "Bots are not moderated.")
        return True
    try:
        if message.command == "/spam":
            actions = moderation_mark_spam(
                message=InboundMessage(
                    platform=Platform.TELEGRAM,
                    chat_id=target.chat_id,
                    message_id=target.message_id,
                    author_id=author.id,
                    text=target.text,
                    sent_at=target.sent_at,
                    author_username=author.username,
                    author_display_name=author.display_name,
                    links=target.links,
                ),
                actor=moderator,
            )
            done = ", ".join(a.get_action_display().lower() for a in actions)
            text = f"Marked as spam ({done}); the classifier has learned from it."
        else:
            person = services.community_user_of(
                platform=Platform.TELEGRAM,
                external_id=author.id,
                username=author.username,
                display_name=author.display_name,
            )
            if person is None:
                return True
            kind = ActionKind.WARN if message.command == "/warn" else ActionKind.BAN
            action = moderation_act(
                community_user=person, action=kind, actor=moderator, reason=message.argument
            )
            text = f"{action.get_action_display()}: {person.display_name} ({action.strikes_after} strikes)."
    except (ModerationRefused, ValueError) as exc:
        text = f"Not done: {exc}"
    logger.info("telegram moderator %s: %s -> %s", moderator.pk, message.command, text)
    _reply_in_chat(message, update_id, text)
    return True


def _on_join_request(view: TelegramUpdateView) -> None:
    request = view.join_request
    assert request is not None
    telegram_join_request_decide(request=request)


def telegram_join_request_decide(*, request: TelegramJoinRequestView) -> TelegramJoinRequest | None:
    """Answer a request to join a chat that needs approval. A members' channel (one a plan's or the ledger's
    ``telegram.channel:<chat id>`` key names, or ``TELEGRAM_MEMBERS_CHANNEL_ID``) lets in only people the ledger
    entitles to it; any chat declines a request whose bio the moderation engine removes. ``None`` when the
    request was answered before (a redelivery)."""
    user = request.user
    bio_verdict = ""
    if request.bio.strip():
        judgement = moderation_judge(
            message=InboundMessage(
                platform=Platform.TELEGRAM,
                chat_id=request.chat_id,
                message_id=f"join:{user.id}:{int(request.requested_at.timestamp())}",
                author_id=user.id,
                text=request.bio,
                sent_at=request.requested_at,
                author_username=user.username,
                author_display_name=user.display_name,
                kind="join_request_bio",
            )
        )
        bio_verdict = judgement.verdict.value
    key = f"telegram.channel:{request.chat_id}"
    paid = request.chat_id == settings.TELEGRAM_MEMBERS_CHANNEL_ID or key in platform_entitlement_keys(
        platform=Platform.TELEGRAM
    )
    member = services.linked_member(platform=Platform.TELEGRAM, external_id=user.id)
    if bio_verdict == Verdict.REMOVE:
        decision, reason = JoinDecision.DECLINED, "the profile bio looks like a scam"
    elif not paid:
        decision, reason = JoinDecision.APPROVED, "not a members' channel"
    elif member is None:
        decision, reason = JoinDecision.DECLINED, "no linked CoinLink membership"
    elif not user_has_entitlement(user=member, key=key):
        decision, reason = JoinDecision.DECLINED, "the membership does not include the channel"
    else:
        decision, reason = JoinDecision.APPROVED, "entitled by the ledger"
    try:
        with transaction.atomic():
            row = TelegramJoinRequest.objects.create(
                chat_id=request.chat_id,
                user_id=user.id,
                requested_at=request.requested_at,
                username=user.username[:100],
                display_name=user.display_name[:200],
                bio=request.bio,
                decision=decision,
                reason=reason,
                moderation_verdict=bio_verdict,
            )
    except IntegrityError:
        logger.info("telegram join request of %s to %s answered before", user.id, request.chat_id)
        return None
    try:
        actions = get_bot_actions()
        if decision == JoinDecision.APPROVED:
            actions.approve_join_request(chat_id=request.chat_id, user_id=user.id)
        else:
            actions.decline_join_request(chat_id=request.chat_id, user_id=user.id)
    except (IntegrationError, ImproperlyConfigured) as exc:
        logger.error(
            "telegram join request of %s to %s: %s failed: %s", user.id, request.chat_id, decision, exc
        )
        TelegramJoinRequest.objects.filter(pk=row.pk).update(error=str(exc)[:2000])
        return row
    TelegramJoinRequest.objects.filter(pk=row.pk).update(answered=True)
    row.answered = True
    if decision == JoinDecision.DECLINED and bio_verdict != Verdict.REMOVE:
        _send(
            chat=request.user_chat_id,
            text=(
                "Your request to join the CoinLink members' channel was declined: "
                f"{reason}. Members get in with a plan that includes the channel: choose one at "
                f"{services.site_url('portal:plans')}, link this Telegram account at {_links_url()}, "
                "and your personal invite link arrives here."
            ),
            key=f"telegram-join-declined:{row.pk}",
        )
    logger.info("telegram join request of %s to %s: %s (%s)", user.id, request.chat_id, decision, reason)
    return row


def _on_member(view: TelegramUpdateView) -> None:
    member = view.member
    assert member is not None
    _member_changed(member)


def _member_changed(member: TelegramMemberView) -> None:
    if not (member.joined or member.left):
        return
    services.inbound_membership_record(
        platform=Platform.TELEGRAM,
        user_id=member.user.id,
        username=member.user.username,
        display_name=member.user.display_name,
        is_bot=member.user.is_bot,
        space=member.chat_id,
        joined=member.joined,
        at=member.at,
    )


def _on_callback(view: TelegramUpdateView) -> None:
    callback = view.callback
    assert callback is not None
    _callback_answer(callback)


def _callback_answer(callback: TelegramCallbackView) -> None:
    """The bot's buttons carry a command name ("status", "plans"); the answer goes to the person privately and
    the button's spinner stops either way."""
    handler = _COMMANDS.get(f"/{callback.data}") if callback.data in ("status", "plans") else None
    try:
        get_bot_actions().answer_callback(
            callback_id=callback.id, text="" if handler else "That button no longer does anything."
        )
    except (IntegrationError, ImproperlyConfigured) as exc:
        logger.warning("telegram callback %s: could not answer: %s", callback.id, exc)
    if handler is None:
        return
    event = InboundEvent(
        platform=Platform.TELEGRAM,
        kind="dm",
        external_id=f"callback:{callback.id}",
        author_id=callback.user.id,
        occurred_at=timezone.now(),
        author_username=callback.user.username,
        author_display_name=callback.user.display_name,
        channel=f"{DM_PREFIX}{callback.user.id}",
    )
    _send(chat=callback.user.id, text=handler(event, ""), key=f"telegram-callback:{callback.id}")


def _on_reaction_count(view: TelegramUpdateView) -> None:
    counts = view.reaction_count
    assert counts is not None
    if settings.TELEGRAM_BACKEND != "api":
        return
    from apps.integrations.publishers.telegram import TelegramPublisher

    # The publisher reports channel posts' reactions as their metrics; the bot now takes these updates.
    TelegramPublisher.from_settings().reaction_count_record(message_id=counts.message_id, total=counts.total)


_HANDLERS: dict[str, Callable[[TelegramUpdateView], None]] = {
    "message_reaction_count": _on_reaction_count,
    "message": _on_message,
    "edited_message": _on_message,
    "chat_join_request": _on_join_request,
    "chat_member": _on_member,
    "callback_query": _on_callback,
}


# --- replies ------------------------------------------------------------------------------------------------


def _reply(event: InboundEvent, update_id: int, text: str) -> None:
    _send(chat=event.channel.removeprefix(DM_PREFIX), text=text, key=f"telegram-bot-reply:{update_id}")


def _reply_in_chat(message: TelegramMessageView, update_id: int, text: str) -> None:
    _send(
        chat=message.chat_id,
        text=text,
        key=f"telegram-bot-reply:{update_id}",
        reply_to=message.message_id,
        direct=False,
    )


def _send(*, chat: str, text: str, key: str, reply_to: str = "", direct: bool = True) -> None:
    post = OutboundPost(
        platform=Platform.TELEGRAM,
        channel=f"{DM_PREFIX}{chat}" if direct else chat,
        text=text,
        idempotency_key=key,
        reply_to=reply_to,
    )
    try:
        get_publisher(Platform.TELEGRAM).publish(post)
    except (IntegrationError, ImproperlyConfigured) as exc:
        # What the command did stands (a link is on the member's account page); only the answer is lost.
        logger.warning("telegram: could not send to %s: %s", chat, exc)


# --- the webhook's updates ----------------------------------------------------------------------------------


def telegram_update_receive(*, payload: bytes) -> TelegramUpdate | None:
    """Keep an update under its ``update_id`` and, once committed, hand it to the task that handles it.
    ``None`` when it is no update (logged) or was received before (a redelivery); ``JsonTooDeep`` for a body
    nested deeper than any update, which Telegram never sends."""
    try:
        data = json_loads(payload)
    except JsonTooDeep:
        raise
    except ValueError as exc:  # UnicodeDecodeError included
        logger.warning("telegram webhook: skipped a body that is not JSON: %s", exc)
        return None
    return _store(data, process=_enqueue, source="telegram webhook")


def _enqueue(row: TelegramUpdate) -> None:
    # The tasks module imports this one.
    from apps.bots.tasks import process_telegram_update

    transaction.on_commit(functools.partial(process_telegram_update.delay, row.pk))


def telegram_update_accept(*, data: Any) -> TelegramUpdate | None:
    """An update the polling process read: kept under its ``update_id`` like a webhook's, and handled at once
    in this process (it has nothing else to do). ``None`` for no update or a redelivery."""
    row = _store(data, process=None, source="telegram polling")
    if row is not None:
        telegram_update_process(update_pk=row.pk)
    return row


def _store(
    data: Any, *, process: Callable[[TelegramUpdate], None] | None, source: str
) -> TelegramUpdate | None:
    update_id = data.get("update_id") if isinstance(data, dict) else None
    if type(update_id) is not int or not 0 <= update_id <= MAX_UPDATE_ID:
        logger.warning("%s: skipped JSON without a valid update_id", source)
        return None
    with transaction.atomic():
        row, created = TelegramUpdate.objects.get_or_create(update_id=update_id, defaults={"payload": data})
        if not created:
            logger.info("telegram update %s received again: already handled", update_id)
            return None
        if process is not None:
            process(row)
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
