"""Linking platform accounts to portal members.

A member proves a platform account is theirs (a one-time code sent to our Telegram bot, the Telegram Login Widget,
or Discord OAuth), and the account's platform identity joins the member's one community record. What the community
already knew about that account under a record of its own (interactions, offers, moderation) is folded in, so
the person has one history. An account that another member has proved is never taken over.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from apps.accounts.models import User
from apps.billing.services.access_sync import entitlements_sync_pending_for_user
from apps.community.models import CommunityUser, ModerationStanding, PlatformIdentity
from apps.core.models import Platform

LINK_CODE_TTL = dt.timedelta(minutes=15)
# Read off a screen and typed on a phone: no 0/O, 1/I/L or U; ten characters are about 49 bits.
LINK_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
LINK_CODE_LENGTH = 10
TELEGRAM_LOGIN_MAX_AGE = dt.timedelta(days=1)
# A login signed a little in our future is clock skew, not an attack.
TELEGRAM_LOGIN_CLOCK_SKEW = dt.timedelta(minutes=5)

_CODE_KEY = "community:link-code:telegram:{digest}"
_USER_CODE_KEY = "community:link-code:telegram:user:{user_id}"
# Worse standing wins when two records of one person merge: linking must not launder a ban.
_STANDING_SEVERITY = [
    ModerationStanding.GOOD,
    ModerationStanding.WARNED,
    ModerationStanding.MUTED,
    ModerationStanding.BANNED,
]


class LinkOutcome(enum.StrEnum):
    LINKED = "linked"  # the account is now the member's
    MERGED = "merged"  # ... and the record the community kept for it was folded into the member's
    ALREADY_LINKED = "already_linked"  # it was the member's before; only its names were refreshed
    INVALID_CODE = "invalid_code"  # unknown, mistyped, expired or already used
    CLAIMED_BY_OTHER_MEMBER = "claimed_by_other_member"  # another member has proved this account
    OTHER_ACCOUNT_LINKED = "other_account_linked"  # the member has linked a different account there


@dataclass(frozen=True)
class LinkResult:
    outcome: LinkOutcome
    identity: PlatformIdentity | None = None
    community_user: CommunityUser | None = None
    merged_community_user_id: int | None = None

    @property
    def linked(self) -> bool:
        return self.outcome in {LinkOutcome.LINKED, LinkOutcome.MERGED, LinkOutcome.ALREADY_LINKED}


# --- linking -------------------------------------------------------------------------------------------------


def platform_identity_link(
    *, user: User, platform: str, external_id: str, username: str = "", display_name: str = ""
) -> LinkResult:
    """Make the platform account ``external_id`` the member's, once they have proved it is theirs."""
    if platform not in Platform.values:
        raise ValueError(f"unknown platform {platform!r}")
    try:
        result = _link(
            user=user,
            platform=platform,
            external_id=external_id,
            username=username,
            display_name=display_name,
        )
    except IntegrityError:
        # Another request linked the same account (or created this member's record) in the same instant; its row
        # is committed now, so deciding again sees it.
        result = _link(
            user=user,
            platform=platform,
            external_id=external_id,
            username=username,
            display_name=display_name,
        )
    if result.linked:
        # Discord roles and Telegram channels the member is entitled to were waiting for this account.
        entitlements_sync_pending_for_user(user=user)
    return result


@transaction.atomic
def _link(*, user: User, platform: str, external_id: str, username: str, display_name: str) -> LinkResult:
    # One link at a time per member: two at once could each create a community record for them.
    list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
    member = CommunityUser.objects.select_for_update().filter(portal_user=user).first()
    identity = (
        PlatformIdentity.objects.select_for_update()
        .select_related("community_user")
        .filter(platform=platform, external_id=external_id)
        .first()
    )
    now = timezone.now()

    if identity is not None and identity.community_user.portal_user_id == user.pk:
        _identity_refresh(identity, username=username, display_name=display_name, now=now)
        return LinkResult(LinkOutcome.ALREADY_LINKED, identity=identity, community_user=member)
    if identity is not None and identity.community_user.portal_user_id is not None:
        return LinkResult(LinkOutcome.CLAIMED_BY_OTHER_MEMBER)
    if (
        member is not None
        and PlatformIdentity.objects.filter(community_user=member, platform=platform, linked_at__isnull=False)
        .exclude(external_id=external_id)
        .exists()
    ):
        return LinkResult(LinkOutcome.OTHER_ACCOUNT_LINKED, community_user=member)

    if identity is None:
        if member is None:
            member = CommunityUser.objects.create(
                display_name=display_name or username or str(user),
                portal_user=user,
                first_seen_at=now,
                last_seen_at=now,
            )
        identity = PlatformIdentity.objects.create(
            community_user=member,
            platform=platform,
            external_id=external_id,
            username=username,
            display_name=display_name,
            linked_at=now,
        )
        return LinkResult(LinkOutcome.LINKED, identity=identity, community_user=member)

    owner = CommunityUser.objects.select_for_update().get(pk=identity.community_user_id)
    if member is None:
        # The member had no record yet: the one the community kept for this account becomes theirs.
        owner.portal_user = user
        owner.save(update_fields=["portal_user", "updated_at"])
        identity.community_user = owner
        _identity_refresh(identity, username=username, display_name=display_name, now=now)
        return LinkResult(LinkOutcome.LINKED, identity=identity, community_user=owner)

    merged_id = owner.pk
    _community_user_merge(source=owner, into=member)
    identity.community_user = member
    _identity_refresh(identity, username=username, display_name=display_name, now=now)
    return LinkResult(
        LinkOutcome.MERGED, identity=identity, community_user=member, merged_community_user_id=merged_id
    )


def _identity_refresh(
    identity: PlatformIdentity, *, username: str, display_name: str, now: dt.datetime
) -> None:
    identity.username = username or identity.username
    identity.display_name = display_name or identity.display_name
    identity.linked_at = identity.linked_at or now
    identity.save(update_fields=["community_user", "username", "display_name", "linked_at", "updated_at"])


def _community_user_merge(*, source: CommunityUser, into: CommunityUser) -> None:
    """Move everything recorded about ``source`` to ``into`` and delete ``source``; the caller holds both locks.

    Every table that points at a community record moves (identities, interactions, conversion attempts,
    moderation actions, strikes and appeals today), found through the model's relations so that a table added
    later cannot be left behind, or cascade-deleted with the emptied record.
    """
    for relation in CommunityUser._meta.related_objects:
        if relation.one_to_many:
            relation.related_model._default_manager.filter(  # type: ignore[union-attr]
                **{relation.field.name: source}
            ).update(**{relation.field.name: into})

    into.first_seen_at = min(into.first_seen_at, source.first_seen_at)
    into.last_seen_at = max(into.last_seen_at, source.last_seen_at)
    if source.engagement_score > into.engagement_score:
        into.engagement_score = source.engagement_score
        into.score_updated_at = source.score_updated_at
    if _STANDING_SEVERITY.index(ModerationStanding(source.standing)) > _STANDING_SEVERITY.index(
        ModerationStanding(into.standing)
    ):
        into.standing = source.standing
    if source.muted_until and (into.muted_until is None or source.muted_until > into.muted_until):
        into.muted_until = source.muted_until
    if source.notes:
        into.notes = "\n".join(filter(None, [into.notes, f"Merged from #{source.pk}: {source.notes}"]))
    into.save()
    source.delete()


# --- Telegram: one-time code sent to the bot -----------------------------------------------------------------


def telegram_link_code_create(*, user: User) -> str:
    """A fresh one-time code the member sends our bot as ``/link CODE``; any earlier code stops working.

    Only a keyed hash of the code is stored, in the shared cache, for ``LINK_CODE_TTL``.
    """
    code = "".join(secrets.choice(LINK_CODE_ALPHABET) for _ in range(LINK_CODE_LENGTH))
    digest = _code_digest(code)
    user_key = _USER_CODE_KEY.format(user_id=user.pk)
    previous = cache.get(user_key)
    if previous:
        cache.delete(_CODE_KEY.format(digest=previous))
    expires_at = timezone.now() + LINK_CODE_TTL
    timeout = int(LINK_CODE_TTL.total_seconds())
    cache.set(_CODE_KEY.format(digest=digest), {"user_id": user.pk, "expires_at": expires_at}, timeout)
    cache.set(user_key, digest, timeout)
    return f"{code[:5]}-{code[5:]}"


def telegram_link_code_redeem(
    *, code: str, telegram_user_id: int | str, username: str = "", display_name: str = ""
) -> LinkResult:
    """Link the Telegram account that sent ``/link CODE`` to the member the code was made for.

    A code works once: it is spent by the first redeem that finds it, whatever the outcome of the link.
    """
    normalised = "".join(ch for ch in code.upper() if ch.isalnum())
    if len(normalised) != LINK_CODE_LENGTH or not set(normalised) <= set(LINK_CODE_ALPHABET):
        return LinkResult(LinkOutcome.INVALID_CODE)
    digest = _code_digest(normalised)
    code_key = _CODE_KEY.format(digest=digest)
    stored = cache.get(code_key)
    # The delete is atomic in every cache backend: of two redeems racing for one code, only one removes it.
    if not stored or not cache.delete(code_key):
        return LinkResult(LinkOutcome.INVALID_CODE)
    user_key = _USER_CODE_KEY.format(user_id=stored["user_id"])
    if cache.get(user_key) == digest:
        cache.delete(user_key)
    if stored["expires_at"] <= timezone.now():
        return LinkResult(LinkOutcome.INVALID_CODE)
    user = User.objects.filter(pk=stored["user_id"], is_active=True).first()
    if user is None:
        return LinkResult(LinkOutcome.INVALID_CODE)
    return platform_identity_link(
        user=user,
        platform=Platform.TELEGRAM,
        external_id=str(telegram_user_id),
        username=username,
        display_name=display_name,
    )


def _code_digest(code: str) -> str:
    # Keyed, so a copy of the cache alone does not let anyone search the code space offline.
    return salted_hmac("apps.community.linking.telegram-code", code, algorithm="sha256").hexdigest()


# --- Telegram: the Login Widget --------------------------------------------------------------------------------


class TelegramLoginInvalid(Exception):
    """The widget's data is not signed by Telegram for our bot, or is too old to trust."""


@dataclass(frozen=True)
class TelegramLogin:
    telegram_user_id: int
    username: str
    display_name: str
    auth_date: dt.datetime


def telegram_login_verify(
    *,
    data: Mapping[str, str],
    bot_token: str,
    ignore: frozenset[str] = frozenset(),
    now: dt.datetime | None = None,
) -> TelegramLogin:
    """Check the Login Widget's redirect parameters the way Telegram specifies.

    The data-check-string is every received field but ``hash`` (and our own ``ignore``d parameters), as
    ``key=value`` lines sorted by key; its HMAC-SHA256 under the SHA-256 of the bot token must equal ``hash``,
    and ``auth_date`` must be at most a day old.
    """
    if not bot_token:
        raise TelegramLoginInvalid("no bot token is configured")
    fields = {key: value for key, value in data.items() if key != "hash" and key not in ignore}
    check_string = "\n".join(f"{key}={fields[key]}" for key in sorted(fields))
    secret = hashlib.sha256(bot_token.encode()).digest()
    expected = hmac.new(secret, check_string.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(data.get("hash", ""))):
        raise TelegramLoginInvalid("the signature does not match")
    try:
        telegram_user_id = int(fields["id"])
        auth_date = dt.datetime.fromtimestamp(int(fields["auth_date"]), tz=dt.UTC)
    except (KeyError, ValueError, OverflowError) as error:
        raise TelegramLoginInvalid("id or auth_date is missing or malformed") from error
    now = now or timezone.now()
    if not now - TELEGRAM_LOGIN_MAX_AGE <= auth_date <= now + TELEGRAM_LOGIN_CLOCK_SKEW:
        raise TelegramLoginInvalid("the login is too old")
    names = [fields.get("first_name", ""), fields.get("last_name", "")]
    return TelegramLogin(
        telegram_user_id=telegram_user_id,
        username=fields.get("username", ""),
        display_name=" ".join(name for name in names if name),
        auth_date=auth_date,
    )


def telegram_login_link(
    *, user: User, data: Mapping[str, str], bot_token: str, ignore: frozenset[str] = frozenset()
) -> LinkResult:
    """Verify a Login Widget redirect and link the Telegram account it names to the member."""
    login = telegram_login_verify(data=data, bot_token=bot_token, ignore=ignore)
    return platform_identity_link(
        user=user,
        platform=Platform.TELEGRAM,
        external_id=str(login.telegram_user_id),
        username=login.username,
        display_name=login.display_name,
    )
