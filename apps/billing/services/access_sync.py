"""Carrying the entitlement ledger to Discord and Telegram, and checking that the platforms still agree with it.

``entitlement_sync_to_platform`` (run by the ``billing.sync_entitlement`` task whenever a platform row changes)
makes the platform match what the ledger says *now* about the row's user and key, whatever the row itself says:
a Discord role or a Telegram seat is held while any row for that key is in force, so a subscription ending
does not take away what a complimentary grant still gives, and syncs that arrive out of order still converge.

- Discord: the role is given (``PUT``) or taken away (``DELETE``) on the member's linked Discord account; a
  person not in the server yet waits, like an unlinked one.
- Telegram: a bot cannot add anyone to a channel, so a member who is not in it gets a single-use invite link,
  expiring after ``TELEGRAM_INVITE_TTL_HOURS``, by direct message from the bot, and kept in the cache for the
  portal's account page (``telegram_invites_for_user``); removal is a ban lifted at once, so a new invite lets
  them back in.
- No linked account: the row stays ``pending``, "waiting for the member to link their account", until linking
  calls ``entitlements_sync_pending_for_user``.

A row is claimed (``sync_attempts`` counted under its lock) and settled by a conditional UPDATE on the state it
was claimed in: when the ledger changes the row, or another sync claims it, meanwhile, this one's outcome is
dropped and the newer sync decides. Syncs of one member and key run one at a time (a lock in the shared cache),
each deciding from the ledger as it stands when it starts.

``entitlements_drift`` compares who holds each Discord role, and which linked Telegram accounts sit in each
channel, with who is entitled, and with ``fix`` repairs the difference.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import User
from apps.billing.models import Entitlement, Plan, SyncStatus
from apps.billing.selectors import entitled_user_ids, user_entitlement_keys, user_has_entitlement
from apps.billing.services.entitlements import ENTITLEMENT_KEY, is_platform_key
from apps.community.models import PlatformIdentity
from apps.core.models import Platform
from apps.core.resilience import IntegrationError, PermanentError, RetryPolicy, TransientError
from apps.integrations.access import (
    DiscordAccess,
    MemberNotFound,
    TelegramAccess,
    get_access_gateway,
    invite_name,
)
from apps.integrations.publishers import get_publisher
from apps.integrations.publishers.base import DM_PREFIX
from apps.integrations.types import OutboundPost

logger = logging.getLogger(__name__)

KEY_PLATFORMS = {"discord.role:": Platform.DISCORD, "telegram.channel:": Platform.TELEGRAM}
WAITING_FOR_LINK = "waiting for the member to link their account"
WAITING_FOR_SERVER = "waiting for the member to join the Discord server"
# A stored invite this close to expiring is replaced rather than handed out again.
INVITE_REUSE_MARGIN = dt.timedelta(hours=1)
_INVITE_KEY = "access:telegram-invite:{user_id}:{chat_id}"
# Longer than one platform call can take (discord.py's own waits included), so a crashed worker's lock expires.
ACCESS_LOCK_SECONDS = 120
# The drift check makes many calls in a row with no task to retry it: a few attempts, sitting out short waits.
DRIFT_POLICY = RetryPolicy(max_attempts=3)


@dataclass(frozen=True, slots=True)
class PlatformTarget:
    platform: str
    resource: str  # a Discord role id or a Telegram chat id


def platform_target(key: str) -> PlatformTarget | None:
    """Where an entitlement key lives: ``discord.role:<id>`` and ``telegram.channel:<chat>``; ``None`` for any
    other key, and for a malformed one."""
    if not ENTITLEMENT_KEY.match(key):
        return None
    for prefix, platform in KEY_PLATFORMS.items():
        if key.startswith(prefix):
            return PlatformTarget(platform, key.removeprefix(prefix))
    return None


def _linked_account(*, user_id: int, platform: str) -> str | None:
    """The platform user id the member has proved is theirs (an identity merely seen in the community is not)."""
    return (
        PlatformIdentity.objects.filter(
            community_user__portal_user_id=user_id, platform=platform, linked_at__isnull=False
        )
        .values_list("external_id", flat=True)
        .first()
    )


# --- one entitlement ----------------------------------------------------------------------------------------


def entitlement_sync_to_platform(*, entitlement_id: int) -> None:
    """Make the platform agree with the ledger about this row's user and key.

    Settles the row ``synced``, ``failed`` (the platform refused: ``PermanentError``) or ``pending`` (no linked
    account, or not in the Discord server, yet); raises ``TransientError`` (``RateLimited`` included) for the
    task to retry with backoff."""
    row = _claim(entitlement_id)
    if row is None:
        return
    target = platform_target(row.key)
    if target is None:
        if is_platform_key(row.key):
            _settle(
                row, sync_status=SyncStatus.FAILED, sync_error=f"{row.key} is not a valid entitlement key"
            )
        else:
            _settle(row, sync_status=SyncStatus.NOT_NEEDED, sync_error="")
        return
    account = _linked_account(user_id=row.user_id, platform=target.platform)
    try:
        with _member_access_lock(row.user_id, row.key):
            # Asked under the lock: a sync that started before a later ledger change cannot undo the sync that
            # change enqueued.
            wanted = user_has_entitlement(user=row.user, key=row.key)
            if account is None:
                if wanted:
                    _settle(row, sync_status=SyncStatus.PENDING, sync_error=WAITING_FOR_LINK)
                    logger.info("entitlement %s (%s): %s", row.pk, row.key, WAITING_FOR_LINK)
                    return
                # Never linked, so never let in by us: nothing to take away.
            elif target.platform == Platform.DISCORD:
                _discord_apply(get_access_gateway("discord"), target.resource, account, wanted=wanted)
            else:
                _telegram_apply(
                    get_access_gateway("telegram"), row.user, target.resource, account, wanted=wanted
                )
    except MemberNotFound:
        _settle(row, sync_status=SyncStatus.PENDING, sync_error=WAITING_FOR_SERVER)
        logger.info("entitlement %s (%s): %s", row.pk, row.key, WAITING_FOR_SERVER)
        return
    except (PermanentError, ImproperlyConfigured) as exc:
        _settle(row, sync_status=SyncStatus.FAILED, sync_error=str(exc)[:2000])
        logger.error("entitlement %s (%s): the platform refused the sync: %s", row.pk, row.key, exc)
        return
    except TransientError as exc:
        _settle(row, sync_error=f"retrying: {exc}"[:2000])
        raise
    _settle(row, sync_status=SyncStatus.SYNCED, synced_at=timezone.now(), sync_error="")
    logger.info(
        "entitlement %s: %s %s for user %s", row.pk, "granted" if wanted else "removed", row.key, row.user_id
    )


@contextmanager
def _member_access_lock(user_id: int, key: str) -> Iterator[None]:
    """One sync at a time per member and key, across workers (the shared cache): each decides from the ledger
    as it stands when it starts. A busy lock is a transient error, so the task retries shortly."""
    lock = f"access:sync-lock:{user_id}:{key}"
    if not cache.add(lock, 1, timeout=ACCESS_LOCK_SECONDS):
        raise TransientError(f"another sync of {key} for user {user_id} is running")
    try:
        yield
    finally:
        cache.delete(lock)


def _claim(entitlement_id: int) -> Entitlement | None:
    """Count an attempt on a row that needs a sync; ``None`` when there is nothing to do."""
    with transaction.atomic():
        row = Entitlement.objects.select_for_update().select_related("user").filter(pk=entitlement_id).first()
        if row is None:
            logger.warning("entitlement %s to sync no longer exists", entitlement_id)
            return None
        if row.sync_status not in (SyncStatus.PENDING, SyncStatus.FAILED):
            logger.info("entitlement %s is %s: no sync needed", entitlement_id, row.sync_status)
            return None
        row.sync_attempts += 1
        row.save(update_fields=["sync_attempts", "updated_at"])
    return row


def _settle(row: Entitlement, **fields: Any) -> bool:
    """Record the outcome unless the row has changed since it was claimed (then a newer sync decides)."""
    settled = Entitlement.objects.filter(
        pk=row.pk, sync_attempts=row.sync_attempts, updated_at=row.updated_at
    ).update(updated_at=timezone.now(), **fields)
    if not settled:
        logger.info("entitlement %s changed while it was synced: the newer sync decides", row.pk)
    return bool(settled)


def _discord_apply(gateway: DiscordAccess, role_id: str, account: str, *, wanted: bool) -> None:
    if wanted:
        gateway.grant_role(account, role_id)
    else:
        gateway.revoke_role(account, role_id)


def _telegram_apply(gateway: TelegramAccess, user: User, chat_id: str, account: str, *, wanted: bool) -> str:
    """Returns what was done: "member" (already in), "invited" or "removed"."""
    if not wanted:
        gateway.remove_member(chat_id, account)
        cache.delete(_INVITE_KEY.format(user_id=user.pk, chat_id=chat_id))
        return "removed"
    if gateway.is_member(chat_id, account):
        cache.delete(_INVITE_KEY.format(user_id=user.pk, chat_id=chat_id))
        return "member"
    _telegram_invite(gateway, user, chat_id, account)
    return "invited"


# --- Telegram invites ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelegramInvite:
    chat_id: str
    url: str
    expires_at: dt.datetime
    delivered: bool = False


def _telegram_invite(gateway: TelegramAccess, user: User, chat_id: str, account: str) -> None:
    """Hand the member a single-use invite link: a stored one still good for a while, or a new one, sent by
    direct message once."""
    key = _INVITE_KEY.format(user_id=user.pk, chat_id=chat_id)
    now = timezone.now()
    invite = _invite_load(cache.get(key), chat_id)
    if invite is None or invite.expires_at - now < INVITE_REUSE_MARGIN:
        expires_at = now + dt.timedelta(hours=settings.TELEGRAM_INVITE_TTL_HOURS)
        url = gateway.create_invite_link(chat_id, invite_name(account), expires_at)
        invite = TelegramInvite(chat_id=chat_id, url=url, expires_at=expires_at)
        _invite_store(key, invite)
    if not invite.delivered:
        # A transient failure propagates: the retry finds this invite stored and sends it again, under the
        # same idempotency key.
        _invite_send(account, invite)
        _invite_store(key, TelegramInvite(invite.chat_id, invite.url, invite.expires_at, delivered=True))


def _invite_store(key: str, invite: TelegramInvite) -> None:
    timeout = max(1, int((invite.expires_at - timezone.now()).total_seconds()))
    cache.set(
        key,
        {"url": invite.url, "expires_at": invite.expires_at.isoformat(), "delivered": invite.delivered},
        timeout=timeout,
    )


def _invite_load(value: object, chat_id: str) -> TelegramInvite | None:
    if not isinstance(value, dict):
        return None
    return TelegramInvite(
        chat_id=chat_id,
        url=str(value["url"]),
        expires_at=dt.datetime.fromisoformat(value["expires_at"]),
        delivered=bool(value.get("delivered")),
    )


def _invite_send(account: str, invite: TelegramInvite) -> None:
    text = (
        "Welcome to the members' channel! Here is your personal invite link. It works once, for you, "
        f"until {invite.expires_at:%Y-%m-%d %H:%M} UTC:\n{invite.url}"
    )
    post = OutboundPost(
        platform=Platform.TELEGRAM,
        channel=f"{DM_PREFIX}{account}",
        text=text,
        idempotency_key=f"access-invite:{hashlib.sha256(invite.url.encode()).hexdigest()[:40]}",
    )
    try:
        get_publisher(Platform.TELEGRAM).publish(post)
    except (PermanentError, ImproperlyConfigured) as exc:
        # Telegram lets a bot write only to people who have started it; the link waits on the account page.
        logger.warning(
            "could not send Telegram user %s their invite (%s): it is on their account page", account, exc
        )


def telegram_invites_for_user(*, user: User) -> list[TelegramInvite]:
    """The unexpired invite links handed to the member, one per paid Telegram channel a sync has not yet seen them
    join, for the portal's account page."""
    chats = sorted(
        target.resource
        for key in user_entitlement_keys(user=user)
        if (target := platform_target(key)) and target.platform == Platform.TELEGRAM
    )
    stored = cache.get_many([_INVITE_KEY.format(user_id=user.pk, chat_id=chat) for chat in chats])
    invites = [
        _invite_load(stored.get(_INVITE_KEY.format(user_id=user.pk, chat_id=chat)), chat) for chat in chats
    ]
    now = timezone.now()
    return [invite for invite in invites if invite is not None and invite.expires_at > now]


# --- after linking ------------------------------------------------------------------------------------------


def _platform_keys_q() -> Q:
    query = Q()
    for prefix in KEY_PLATFORMS:
        query |= Q(key__startswith=prefix)
    return query


def entitlements_sync_pending_for_user(*, user: User) -> int:
    """Enqueue, once the transaction commits, the sync of every platform entitlement of ``user`` still pending:
    call it when the member links a platform account (or joins the Discord server). Returns how many."""
    # The tasks module imports the billing services; importing it at load time would be circular.
    from apps.billing.tasks import sync_entitlement

    ids = list(
        Entitlement.objects.filter(_platform_keys_q(), user=user, sync_status=SyncStatus.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for pk in ids:
        transaction.on_commit(functools.partial(sync_entitlement.delay, pk))
    return len(ids)


# --- drift --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class DriftEntry:
    account: str  # the platform user id
    user_id: int | None  # the CoinLink member, when the account is linked to one
    fixed: str = ""  # what ``fix`` did: "granted", "invited", "revoked", "removed"
    fix_error: str = ""


@dataclass(slots=True)
class ResourceDrift:
    key: str
    target: PlatformTarget
    entitled: int = 0
    checked: int = 0  # Discord: everyone holding the role; Telegram: the linked accounts asked about
    missing: list[DriftEntry] = field(default_factory=list)  # entitled and linked, without access
    extra: list[DriftEntry] = field(default_factory=list)  # with access, not entitled
    unlinked: list[int] = field(default_factory=list)  # entitled members with no linked account
    error: str = ""  # the check itself failed

    @property
    def drifted(self) -> bool:
        return bool(self.missing or self.extra)

    @property
    def unrepaired(self) -> list[DriftEntry]:
        return [entry for entry in self.missing + self.extra if not entry.fixed]


@dataclass(slots=True)
class DriftReport:
    resources: list[ResourceDrift]
    fixed: bool

    @property
    def errors(self) -> list[ResourceDrift]:
        return [r for r in self.resources if r.error]

    @property
    def drifted(self) -> bool:
        return any(r.drifted for r in self.resources)

    @property
    def in_sync(self) -> bool:
        """Nothing out of line remains (after ``fix``, everything found was repaired)."""
        if self.fixed:
            return not any(r.unrepaired for r in self.resources)
        return not self.drifted


def platform_entitlement_keys(*, platform: str | None = None) -> list[str]:
    """Every Discord role and Telegram channel key CoinLink manages: named by a plan or found in the ledger."""
    keys: set[str] = set()
    for plan_keys, grace_keys in Plan.objects.values_list("entitlement_keys", "grace_entitlement_keys"):
        keys.update(k for k in [*(plan_keys or []), *(grace_keys or [])] if isinstance(k, str))
    keys.update(Entitlement.objects.filter(_platform_keys_q()).values_list("key", flat=True).distinct())
    return sorted(
        key
        for key in keys
        if (target := platform_target(key)) is not None and platform in (None, target.platform)
    )


def entitlements_drift(
    *, platform: str | None = None, fix: bool = False, now: dt.datetime | None = None
) -> DriftReport:
    """Who has each Discord role and sits in each Telegram channel, against who is entitled; with ``fix``,
    give access to the entitled members who lack it and take it from those who are not entitled."""
    now = now or timezone.now()
    resources = []
    for key in platform_entitlement_keys(platform=platform):
        target = platform_target(key)
        if target is None:
            continue
        drift = ResourceDrift(key=key, target=target)
        try:
            _drift_check(drift, now=now)
        except (IntegrationError, ImproperlyConfigured) as exc:
            drift.error = str(exc)
            logger.error("drift check of %s failed: %s", key, exc)
        else:
            if fix:
                _drift_fix(drift)
        resources.append(drift)
    return DriftReport(resources=resources, fixed=fix)


def _linked_accounts(platform: str, **filters: Any) -> dict[str, int | None]:
    """Linked accounts on ``platform``: platform user id -> CoinLink member (None when not a member's)."""
    return dict(
        PlatformIdentity.objects.filter(platform=platform, linked_at__isnull=False, **filters).values_list(
            "external_id", "community_user__portal_user_id"
        )
    )


def _drift_check(drift: ResourceDrift, *, now: dt.datetime) -> None:
    target = drift.target
    entitled_users = set(entitled_user_ids(key=drift.key, now=now))
    entitled = _linked_accounts(target.platform, community_user__portal_user_id__in=entitled_users)
    drift.entitled = len(entitled_users)
    drift.unlinked = sorted(entitled_users - {uid for uid in entitled.values() if uid is not None})
    if target.platform == Platform.DISCORD:
        holders = get_access_gateway("discord", policy=DRIFT_POLICY).role_holders(target.resource)
        drift.checked = len(holders)
        known = _linked_accounts(target.platform, external_id__in=holders - entitled.keys())
        drift.extra = [DriftEntry(a, known.get(a)) for a in sorted(holders - entitled.keys(), key=_numeric)]
    else:
        # The Bot API cannot list a channel's members: ask about every account linked to CoinLink.
        gateway = get_access_gateway("telegram", policy=DRIFT_POLICY)
        linked = _linked_accounts(target.platform)
        holders = {account for account in linked if gateway.is_member(target.resource, account)}
        drift.checked = len(linked)
        drift.extra = [DriftEntry(a, linked[a]) for a in sorted(holders - entitled.keys(), key=_numeric)]
    drift.missing = [DriftEntry(a, entitled[a]) for a in sorted(entitled.keys() - holders, key=_numeric)]


def _numeric(account: str) -> tuple[int, str]:
    return (int(account), "") if account.lstrip("-").isdigit() else (0, account)


def _drift_fix(drift: ResourceDrift) -> None:
    target = drift.target
    for entry, wanted in [*((e, True) for e in drift.missing), *((e, False) for e in drift.extra)]:
        try:
            if target.platform == Platform.DISCORD:
                _discord_apply(
                    get_access_gateway("discord", policy=DRIFT_POLICY),
                    target.resource,
                    entry.account,
                    wanted=wanted,
                )
                entry.fixed = "granted" if wanted else "revoked"
            else:
                user = User.objects.filter(pk=entry.user_id).first() if entry.user_id else None
                gateway = get_access_gateway("telegram", policy=DRIFT_POLICY)
                if wanted and user is not None:
                    entry.fixed = _telegram_apply(gateway, user, target.resource, entry.account, wanted=True)
                elif not wanted:
                    gateway.remove_member(target.resource, entry.account)
                    if user is not None:
                        cache.delete(_INVITE_KEY.format(user_id=user.pk, chat_id=target.resource))
                    entry.fixed = "removed"
        except (IntegrationError, ImproperlyConfigured) as exc:
            entry.fix_error = str(exc)
            logger.error("drift fix of %s for %s failed: %s", drift.key, entry.account, exc)
            continue
        if entry.user_id is not None:
            _failed_rows_settled(user_id=entry.user_id, key=drift.key)


def _failed_rows_settled(*, user_id: int, key: str) -> None:
    """Rows the sync gave up on are settled by the repair (rows still pending have a sync of their own coming)."""
    Entitlement.objects.filter(user_id=user_id, key=key, sync_status=SyncStatus.FAILED).update(
        sync_status=SyncStatus.SYNCED, synced_at=timezone.now(), sync_error="", updated_at=timezone.now()
    )
