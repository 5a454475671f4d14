"""A new member's first days: a short sequence of messages, each sent at most once and only while it helps.

| step | due | sent when | skipped when |
| --- | --- | --- | --- |
| ``welcome`` | day 0 | always | never |
| ``link_accounts`` | day 1 | no Discord or Telegram account linked | one is linked |
| ``telegram_invite`` | day 1 | an unexpired invite is waiting for them | no Telegram channel in their plan; Telegram not linked (the access sync sends the invite when they link); already in the channel |
| ``first_exclusive`` | day 3 | the library has a piece they may read | nothing readable yet |

An invite lasts ``TELEGRAM_INVITE_TTL_HOURS`` (24 by default), so by day 1 the one made at checkout has often
expired: when no invite is waiting, Telegram is asked whether they are in the channel, and if not the access
sync is asked for a fresh invite, which the next run passes on.

Days count from the member's subscription. A member gets at most one message per run, so a run that comes
late spreads what is due over the next runs instead of sending it all at once. Each step is claimed by inserting
its ``onboarding_steps`` row (unique per member and step) before anything goes out, and settled by a
conditional UPDATE: two runs never send the same step, and a crash between claim and settle leaves a
``pending`` row for the operator rather than a second message. Every message is emailed (a plain-text template
``templates/billing/email/onboarding_<step>.txt``) and also sent by direct message on a linked Telegram or
Discord account when there is one.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.models import (
    Entitlement,
    OnboardingChannel,
    OnboardingStep,
    OnboardingStepKey,
    OnboardingStepStatus,
    Subscription,
    SyncStatus,
)
from apps.billing.selectors import (
    entitlement_sync_unsettled,
    linked_identities,
    onboarding_members,
    onboarding_steps_done,
    user_entitlement_keys,
)
from apps.billing.services.access_sync import entitlements_sync_pending_for_user, telegram_invites_for_user
from apps.community.models import PlatformIdentity
from apps.content.selectors import exclusive_content_list_readable
from apps.core.models import Platform
from apps.core.resilience import IntegrationError
from apps.integrations.access import get_access_gateway
from apps.integrations.publishers import get_publisher
from apps.integrations.publishers.base import DM_PREFIX
from apps.integrations.types import OutboundPost

logger = logging.getLogger(__name__)

TELEGRAM_KEY_PREFIX = "telegram.channel:"
# Where a direct message may go, in order of preference: the accounts members link.
DM_PLATFORMS = (Platform.TELEGRAM, Platform.DISCORD)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a due step does now: send (with what the message says), skip (with why), or wait for a later run."""

    action: Literal["send", "skip", "wait"]
    reason: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    prefer: str = ""  # the platform to send a direct message on first


def _absolute(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


class _Member:
    """What the steps ask about one member, each read once."""

    def __init__(self, subscription: Subscription, *, now: dt.datetime) -> None:
        self.subscription = subscription
        self.user: User = subscription.user
        self.now = now
        self._keys: set[str] | None = None
        self._linked: dict[str, PlatformIdentity] | None = None

    @property
    def keys(self) -> set[str]:
        if self._keys is None:
            self._keys = user_entitlement_keys(user=self.user, now=self.now)
        return self._keys

    @property
    def linked(self) -> dict[str, PlatformIdentity]:
        if self._linked is None:
            self._linked = linked_identities(user=self.user, platforms=DM_PLATFORMS)
        return self._linked

    def context(self) -> dict[str, Any]:
        name = (self.user.display_name.split() or ["there"])[0]
        return {
            "name": name,
            "plan": self.subscription.plan.name,
            "account_url": _absolute(reverse("portal:account")),
            "links_url": _absolute(reverse("portal:links")),
            "library_url": _absolute(reverse("portal:library")),
        }


def _welcome(member: _Member) -> Decision:
    return Decision("send")


def _link_accounts(member: _Member) -> Decision:
    if member.linked:
        names = " and ".join(Platform(platform).label for platform in sorted(member.linked))
        return Decision("skip", f"already linked: {names}")
    return Decision("send")


def _telegram_invite(member: _Member) -> Decision:
    channels = {key for key in member.keys if key.startswith(TELEGRAM_KEY_PREFIX)}
    if not channels:
        return Decision("skip", "no Telegram channel in their membership")
    account = member.linked.get(Platform.TELEGRAM)
    if account is None:
        return Decision(
            "skip", "Telegram not linked yet: the access sync sends the invite by Telegram when they link it"
        )
    invites = telegram_invites_for_user(user=member.user)
    if invites:
        return Decision("send", context={"invites": invites}, prefer=Platform.TELEGRAM)
    if entitlement_sync_unsettled(user=member.user, keys=channels, now=member.now):
        return Decision("wait")  # the access sync is still making the invite
    # No invite waiting: they joined, or the invite expired unused (it lasts TELEGRAM_INVITE_TTL_HOURS, often
    # less than this step's day). Telegram knows which.
    try:
        gateway = get_access_gateway("telegram")
        outside = {
            key
            for key in channels
            if not gateway.is_member(key.removeprefix(TELEGRAM_KEY_PREFIX), account.external_id)
        }
    except (IntegrationError, ImproperlyConfigured) as exc:
        logger.warning("onboarding: cannot tell whether user %s is in the channel: %s", member.user.pk, exc)
        return Decision("wait")
    if not outside:
        return Decision("skip", "already in the Telegram channel")
    # The access sync issues a fresh invite (and sends it by Telegram); the next run passes it on.
    entitlement_invites_renew(user=member.user, keys=outside, now=member.now)
    return Decision("wait")


def entitlement_invites_renew(*, user: User, keys: Iterable[str], now: dt.datetime) -> int:
    """Have the access sync look at the member's synced Telegram rows again, which invites them afresh when
    they are not in the channel; returns how many rows were queued."""
    renewed = (
        Entitlement.objects.filter(user=user, key__in=list(keys), sync_status=SyncStatus.SYNCED)
        .filter(starts_at__lte=now, revoked_at__isnull=True)
        .exclude(ends_at__lte=now)
        .update(
            sync_status=SyncStatus.PENDING, sync_error="onboarding: the invite expired unused", updated_at=now
        )
    )
    if renewed:
        entitlements_sync_pending_for_user(user=user)
    return renewed


def _first_exclusive(member: _Member) -> Decision:
    piece = exclusive_content_list_readable(entitlement_keys=member.keys).first()
    if piece is None:
        return Decision("skip", "nothing in the library they may read yet")
    context = {"piece": piece, "piece_url": _absolute(reverse("portal:library_item", args=[piece.slug]))}
    return Decision("send", context=context)


@dataclass(frozen=True, slots=True)
class Step:
    key: str
    day: int
    subject: str
    decide: Callable[[_Member], Decision]


STEPS = (
    Step(OnboardingStepKey.WELCOME, 0, "Welcome to CoinLink {plan}", _welcome),
    Step(OnboardingStepKey.LINK_ACCOUNTS, 1, "Link your Discord and Telegram to CoinLink", _link_accounts),
    Step(
        OnboardingStepKey.TELEGRAM_INVITE, 1, "Your invite to the members' Telegram channel", _telegram_invite
    ),
    Step(OnboardingStepKey.FIRST_EXCLUSIVE, 3, "Your first members-only read", _first_exclusive),
)


def _record(user: User, step: str, status: str, detail: str = "") -> OnboardingStep | None:
    """Insert the step's row; None when it exists already (another run got there first)."""
    try:
        with transaction.atomic():
            return OnboardingStep.objects.create(user=user, step=step, status=status, detail=detail)
    except IntegrityError:
        return None


@dataclass(frozen=True, slots=True)
class Delivery:
    status: str
    channel: str
    detail: str


def _deliver(member: _Member, step: Step, decision: Decision) -> Delivery:
    """Email the message, and send it by direct message on a linked account too when there is one."""
    context = {**member.context(), **decision.context}
    body = render_to_string(f"billing/email/onboarding_{step.key}.txt", context).strip() + "\n"
    subject = step.subject.format(**context)
    user = member.user
    notes: list[str] = []
    emailed = False
    try:
        send_mail(subject, body, None, [user.email], fail_silently=False)
        emailed = True
        notes.append(f"emailed {user.email}")
    except OSError as exc:  # smtplib's errors and connection failures
        notes.append(f"email to {user.email} failed: {exc}")
    dm_platform = ""
    reachable = sorted(member.linked, key=lambda p: (p != decision.prefer, DM_PLATFORMS.index(Platform(p))))
    if reachable:
        platform = reachable[0]
        identity = member.linked[platform]
        post = OutboundPost(
            platform=platform,
            text=body,
            idempotency_key=f"onboarding:{user.pk}:{step.key}",
            channel=f"{DM_PREFIX}{identity.external_id}",
        )
        label = Platform(platform).label
        try:
            result = get_publisher(platform).publish(post)
        except (IntegrationError, ImproperlyConfigured) as exc:
            notes.append(f"{label} message failed: {exc}")
        else:
            dm_platform = platform
            notes.append(f"{label} message {result.external_id}")
    if dm_platform:
        channel = dm_platform
    elif emailed:
        channel = OnboardingChannel.EMAIL
    else:
        return Delivery(OnboardingStepStatus.FAILED, "", "; ".join(notes))
    return Delivery(OnboardingStepStatus.SENT, channel, "; ".join(notes))


@dataclass
class OnboardingOutcome:
    members: int = 0
    counters: Counter[str] = field(default_factory=Counter)


def onboarding_run(*, now: dt.datetime, window_days: int, steps: Iterable[Step] = STEPS) -> OnboardingOutcome:
    """Take every member who joined in the last ``window_days`` one step further (see the module docstring)."""
    outcome = OnboardingOutcome()
    subscriptions = onboarding_members(since=now - dt.timedelta(days=window_days))
    done = onboarding_steps_done(user_ids=[s.user_id for s in subscriptions])
    outcome.members = len(subscriptions)
    steps = tuple(steps)
    for step in steps:
        for status in (OnboardingStepStatus.SENT, OnboardingStepStatus.SKIPPED, OnboardingStepStatus.FAILED):
            outcome.counters[f"{step.key}.{status}"] = 0
    for subscription in subscriptions:
        member = _Member(subscription, now=now)
        for step in steps:
            if step.key in done.get(member.user.pk, set()):
                continue
            if now < subscription.created_at + dt.timedelta(days=step.day):
                break  # the sequence's later steps are not due either
            decision = step.decide(member)
            if decision.action == "wait":
                continue
            if decision.action == "skip":
                if _record(member.user, step.key, OnboardingStepStatus.SKIPPED, decision.reason):
                    outcome.counters[f"{step.key}.{OnboardingStepStatus.SKIPPED}"] += 1
                continue
            row = _record(member.user, step.key, OnboardingStepStatus.PENDING)
            if row is None:
                continue
            delivery = _deliver(member, step, decision)
            OnboardingStep.objects.filter(pk=row.pk, status=OnboardingStepStatus.PENDING).update(
                status=delivery.status,
                channel=delivery.channel,
                detail=delivery.detail[:2000],
                sent_at=timezone.now() if delivery.status == OnboardingStepStatus.SENT else None,
            )
            outcome.counters[f"{step.key}.{delivery.status}"] += 1
            if delivery.status == OnboardingStepStatus.SENT:
                logger.info("onboarding %s sent to user %s (%s)", step.key, member.user.pk, delivery.detail)
            else:
                logger.warning(
                    "onboarding %s to user %s failed: %s", step.key, member.user.pk, delivery.detail
                )
            break  # one message per member per run
    return outcome
