"""Linking platform accounts to members: one-time Telegram codes, the Telegram Login Widget's signature, and the
merge of what the community knew about an account into the member's record."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import pickle
from typing import Any

import pytest
import time_machine
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.utils import timezone

from apps.accounts.factories import UserFactory
from apps.billing.factories import ConversionAttemptFactory
from apps.billing.models import ConversionAttempt
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory, UserInteractionFactory
from apps.community.models import CommunityUser, ModerationStanding, PlatformIdentity, UserInteraction
from apps.community.services.linking import (
    LINK_CODE_ALPHABET,
    LinkOutcome,
    TelegramLoginInvalid,
    platform_identity_link,
    telegram_link_code_create,
    telegram_link_code_redeem,
    telegram_login_link,
    telegram_login_verify,
)
from apps.core.models import Platform
from apps.moderation.factories import AppealFactory, ModerationActionFactory, StrikeFactory
from apps.moderation.models import Appeal, ModerationAction, Strike

pytestmark = pytest.mark.django_db

BOT_TOKEN = "123456:AAH-test-token"


def _snapshot() -> dict[str, Any]:
    """Everything linking may touch, to assert that a refusal changed nothing."""
    return {
        "community_users": sorted(CommunityUser.objects.values_list("pk", "portal_user_id", "standing")),
        "identities": sorted(
            PlatformIdentity.objects.values_list("pk", "community_user_id", "username", "linked_at")
        ),
    }


# --- one-time codes --------------------------------------------------------------------------------------------


def test_a_code_links_a_new_telegram_account_and_creates_the_members_record() -> None:
    user = UserFactory.create(display_name="Ada")
    code = telegram_link_code_create(user=user)

    result = telegram_link_code_redeem(
        code=code, telegram_user_id=777000111, username="ada_tg", display_name="Ada L"
    )

    assert result.outcome == LinkOutcome.LINKED
    assert result.linked
    identity = PlatformIdentity.objects.get()
    assert (identity.platform, identity.external_id, identity.username, identity.display_name) == (
        "telegram",
        "777000111",
        "ada_tg",
        "Ada L",
    )
    assert identity.linked_at is not None
    assert identity.community_user.portal_user == user
    assert result.identity == identity
    assert result.community_user == identity.community_user


def test_codes_look_typeable_and_differ() -> None:
    user = UserFactory.create()

    codes = {telegram_link_code_create(user=user) for _ in range(20)}

    assert len(codes) == 20
    for code in codes:
        assert len(code) == 11
        assert code[5] == "-"
        assert set(code.replace("-", "")) <= set(LINK_CODE_ALPHABET)


def test_a_code_works_once() -> None:
    user = UserFactory.create()
    code = telegram_link_code_create(user=user)
    first = telegram_link_code_redeem(code=code, telegram_user_id=1, username="a", display_name="A")
    before = _snapshot()

    again = telegram_link_code_redeem(code=code, telegram_user_id=2, username="b", display_name="B")

    assert first.outcome == LinkOutcome.LINKED
    assert again.outcome == LinkOutcome.INVALID_CODE
    assert not again.linked
    assert _snapshot() == before


def test_a_code_expires_after_fifteen_minutes() -> None:
    user = UserFactory.create()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        code = telegram_link_code_create(user=user)

    with time_machine.travel(start + dt.timedelta(minutes=15), tick=False):
        result = telegram_link_code_redeem(code=code, telegram_user_id=1)

    assert result.outcome == LinkOutcome.INVALID_CODE
    assert PlatformIdentity.objects.count() == 0
    assert CommunityUser.objects.count() == 0


def test_a_code_still_works_just_before_it_expires() -> None:
    user = UserFactory.create()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        code = telegram_link_code_create(user=user)

    with time_machine.travel(start + dt.timedelta(minutes=14, seconds=59), tick=False):
        result = telegram_link_code_redeem(code=code, telegram_user_id=1)

    assert result.outcome == LinkOutcome.LINKED


def test_a_new_code_cancels_the_previous_one() -> None:
    user = UserFactory.create()
    old = telegram_link_code_create(user=user)
    new = telegram_link_code_create(user=user)

    assert telegram_link_code_redeem(code=old, telegram_user_id=1).outcome == LinkOutcome.INVALID_CODE
    assert telegram_link_code_redeem(code=new, telegram_user_id=1).outcome == LinkOutcome.LINKED


def test_codes_of_different_members_are_independent() -> None:
    ada, bob = UserFactory.create(), UserFactory.create()
    ada_code = telegram_link_code_create(user=ada)
    bob_code = telegram_link_code_create(user=bob)

    telegram_link_code_redeem(code=bob_code, telegram_user_id=2)
    telegram_link_code_redeem(code=ada_code, telegram_user_id=1)

    assert PlatformIdentity.objects.get(external_id="1").community_user.portal_user == ada
    assert PlatformIdentity.objects.get(external_id="2").community_user.portal_user == bob


def test_a_code_is_read_however_the_member_types_it() -> None:
    user = UserFactory.create()
    code = telegram_link_code_create(user=user)

    result = telegram_link_code_redeem(code=f"  {code.replace('-', ' ').lower()} ", telegram_user_id=5)

    assert result.outcome == LinkOutcome.LINKED


@pytest.mark.parametrize("code", ["", "ABCDE", "ABCDE-FGHJK-M", "OOOOO-IIIII", "<script>", "ABCDE-FGHJK"])
def test_unknown_or_malformed_codes_change_nothing(code: str) -> None:
    UserFactory.create()
    before = _snapshot()

    result = telegram_link_code_redeem(code=code, telegram_user_id=1)

    assert result.outcome == LinkOutcome.INVALID_CODE
    assert _snapshot() == before


def test_the_code_itself_is_never_stored() -> None:
    backend = caches["default"]
    if not isinstance(backend, LocMemCache):
        pytest.skip("reads the local-memory cache's own storage")
    user = UserFactory.create()
    code = telegram_link_code_create(user=user)

    stored = [(key, pickle.loads(value)) for key, value in backend._cache.items()]  # type: ignore[attr-defined]  # noqa: S301
    assert stored
    assert code.replace("-", "") not in repr(stored)


def test_a_code_of_a_deactivated_member_does_nothing() -> None:
    user = UserFactory.create()
    code = telegram_link_code_create(user=user)
    user.is_active = False
    user.save(update_fields=["is_active"])

    assert telegram_link_code_redeem(code=code, telegram_user_id=1).outcome == LinkOutcome.INVALID_CODE
    assert PlatformIdentity.objects.count() == 0


# --- who an account may belong to -------------------------------------------------------------------------------


def test_an_account_the_community_knew_becomes_the_members_when_they_have_no_record() -> None:
    user = UserFactory.create()
    known = PlatformIdentityFactory.create(platform=Platform.TELEGRAM, external_id="42", username="old")
    interaction = UserInteractionFactory.create(identity=known)

    result = platform_identity_link(user=user, platform=Platform.TELEGRAM, external_id="42", username="new")

    assert result.outcome == LinkOutcome.LINKED
    assert CommunityUser.objects.count() == 1
    known.refresh_from_db()
    assert known.community_user.portal_user == user
    assert known.username == "new"
    assert known.linked_at is not None
    interaction.refresh_from_db()
    assert interaction.community_user == known.community_user


def test_an_account_with_its_own_record_is_merged_into_the_members_record() -> None:
    user = UserFactory.create()
    now = timezone.now()
    member = CommunityUserFactory.create(
        portal_user=user,
        first_seen_at=now - dt.timedelta(days=2),
        last_seen_at=now - dt.timedelta(days=1),
        engagement_score=0.2,
        notes="Pays annually.",
    )
    member_x = PlatformIdentityFactory.create(community_user=member, platform=Platform.X, linked_at=now)
    lurker = CommunityUserFactory.create(
        first_seen_at=now - dt.timedelta(days=90),
        last_seen_at=now,
        engagement_score=0.7,
        standing=ModerationStanding.MUTED,
        muted_until=now + dt.timedelta(hours=3),
        notes="Spammed once.",
    )
    telegram = PlatformIdentityFactory.create(
        community_user=lurker, platform=Platform.TELEGRAM, external_id="9001"
    )
    discord = PlatformIdentityFactory.create(community_user=lurker, platform=Platform.DISCORD)
    interactions = UserInteractionFactory.create_batch(3, identity=telegram)
    offer = ConversionAttemptFactory.create(community_user=lurker)
    action = ModerationActionFactory.create(community_user=lurker, identity=telegram)
    strike = StrikeFactory.create(action=action)
    appeal = AppealFactory.create(action=action)
    # Someone else's rows must stay theirs.
    bystander = CommunityUserFactory.create()
    UserInteractionFactory.create(identity=PlatformIdentityFactory.create(community_user=bystander))
    ConversionAttemptFactory.create(community_user=bystander)

    result = platform_identity_link(
        user=user, platform=Platform.TELEGRAM, external_id="9001", username="tg", display_name="T G"
    )

    assert result.outcome == LinkOutcome.MERGED
    assert result.merged_community_user_id == lurker.pk
    assert result.community_user == member
    assert not CommunityUser.objects.filter(pk=lurker.pk).exists()
    assert set(PlatformIdentity.objects.filter(community_user=member)) == {member_x, telegram, discord}
    assert set(UserInteraction.objects.filter(community_user=member)) == set(interactions)
    assert list(ConversionAttempt.objects.filter(community_user=member)) == [offer]
    assert list(ModerationAction.objects.filter(community_user=member)) == [action]
    assert list(Strike.objects.filter(community_user=member)) == [strike]
    assert list(Appeal.objects.filter(community_user=member)) == [appeal]
    assert UserInteraction.objects.filter(community_user=bystander).count() == 1
    assert ConversionAttempt.objects.filter(community_user=bystander).count() == 1
    member.refresh_from_db()
    # One person now: the earliest sighting, the latest activity, and the stricter standing.
    assert member.first_seen_at == lurker.first_seen_at
    assert member.last_seen_at == lurker.last_seen_at
    assert member.engagement_score == 0.7
    assert member.standing == ModerationStanding.MUTED
    assert member.muted_until == lurker.muted_until
    assert member.notes == f"Pays annually.\nMerged from #{lurker.pk}: Spammed once."
    telegram.refresh_from_db()
    assert (telegram.username, telegram.display_name) == ("tg", "T G")
    assert telegram.linked_at is not None
    discord.refresh_from_db()
    assert discord.linked_at is None  # came along with the person, but nobody proved it


def test_a_merge_keeps_the_members_standing_when_it_is_the_stricter() -> None:
    user = UserFactory.create()
    member = CommunityUserFactory.create(portal_user=user, standing=ModerationStanding.BANNED)
    PlatformIdentityFactory.create(platform=Platform.TELEGRAM, external_id="5")

    platform_identity_link(user=user, platform=Platform.TELEGRAM, external_id="5")

    member.refresh_from_db()
    assert member.standing == ModerationStanding.BANNED


def test_an_account_another_member_proved_is_never_taken() -> None:
    owner = UserFactory.create()
    theirs = PlatformIdentityFactory.create(
        community_user=CommunityUserFactory.create(portal_user=owner),
        platform=Platform.TELEGRAM,
        external_id="31337",
        linked_at=timezone.now(),
    )
    intruder = UserFactory.create()
    before = _snapshot()

    result = platform_identity_link(user=intruder, platform=Platform.TELEGRAM, external_id="31337")

    assert result.outcome == LinkOutcome.CLAIMED_BY_OTHER_MEMBER
    assert not result.linked
    assert (result.identity, result.community_user) == (None, None)
    assert _snapshot() == before
    theirs.refresh_from_db()
    assert theirs.community_user.portal_user == owner


def test_a_second_account_on_the_same_platform_is_refused() -> None:
    user = UserFactory.create()
    member = CommunityUserFactory.create(portal_user=user)
    PlatformIdentityFactory.create(
        community_user=member, platform=Platform.TELEGRAM, external_id="1", linked_at=timezone.now()
    )
    PlatformIdentityFactory.create(platform=Platform.TELEGRAM, external_id="2")
    before = _snapshot()

    result = platform_identity_link(user=user, platform=Platform.TELEGRAM, external_id="2")

    assert result.outcome == LinkOutcome.OTHER_ACCOUNT_LINKED
    assert _snapshot() == before


def test_linking_the_same_account_again_refreshes_its_names_only() -> None:
    user = UserFactory.create()
    first = platform_identity_link(user=user, platform=Platform.DISCORD, external_id="8", username="old")
    assert first.identity is not None
    linked_at = first.identity.linked_at

    again = platform_identity_link(
        user=user, platform=Platform.DISCORD, external_id="8", username="new", display_name="New Name"
    )

    assert again.outcome == LinkOutcome.ALREADY_LINKED
    identity = PlatformIdentity.objects.get()
    assert (identity.username, identity.display_name, identity.linked_at) == ("new", "New Name", linked_at)
    assert CommunityUser.objects.count() == 1


def test_accounts_on_different_platforms_share_the_members_record() -> None:
    user = UserFactory.create()

    telegram = platform_identity_link(user=user, platform=Platform.TELEGRAM, external_id="1")
    discord = platform_identity_link(user=user, platform=Platform.DISCORD, external_id="1")

    assert telegram.community_user == discord.community_user
    assert CommunityUser.objects.get().portal_user == user


def test_an_unknown_platform_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown platform"):
        platform_identity_link(user=UserFactory.create(), platform="myspace", external_id="1")


# --- the Telegram Login Widget ----------------------------------------------------------------------------------


def _signed(fields: dict[str, str], token: str = BOT_TOKEN) -> dict[str, str]:
    """Sign the way Telegram does, written out independently of the code under test."""
    check_string = "\n".join(f"{key}={value}" for key, value in sorted(fields.items()))
    secret = hashlib.sha256(token.encode()).digest()
    return {**fields, "hash": hmac.new(secret, check_string.encode(), hashlib.sha256).hexdigest()}


def _widget_fields(**overrides: str) -> dict[str, str]:
    fields = {
        "id": "424242",
        "first_name": "Grace",
        "last_name": "Hopper",
        "username": "grace_h",
        "photo_url": "https://t.me/i/userpic/320/grace.jpg",
        "auth_date": str(int(timezone.now().timestamp())),
    }
    fields.update(overrides)
    return fields


def test_a_signed_widget_login_verifies() -> None:
    login = telegram_login_verify(data=_signed(_widget_fields()), bot_token=BOT_TOKEN)

    assert login.telegram_user_id == 424242
    assert login.username == "grace_h"
    assert login.display_name == "Grace Hopper"


def test_our_own_parameters_are_left_out_of_the_check() -> None:
    data = {**_signed(_widget_fields()), "state": "ours"}

    with pytest.raises(TelegramLoginInvalid):
        telegram_login_verify(data=data, bot_token=BOT_TOKEN)
    assert telegram_login_verify(data=data, bot_token=BOT_TOKEN, ignore=frozenset({"state"})).username == (
        "grace_h"
    )


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda d: {**d, "id": "1"}, id="changed-id"),
        pytest.param(lambda d: {**d, "username": "admin"}, id="changed-username"),
        pytest.param(lambda d: {**d, "extra": "x"}, id="added-field"),
        pytest.param(lambda d: {k: v for k, v in d.items() if k != "last_name"}, id="removed-field"),
        pytest.param(lambda d: {k: v for k, v in d.items() if k != "hash"}, id="no-hash"),
        pytest.param(lambda d: {**d, "hash": d["hash"].upper()}, id="hash-case"),
        pytest.param(lambda d: _signed(_widget_fields(), token="999:other-bot"), id="other-bots-token"),
    ],
)
def test_a_tampered_widget_login_is_refused(tamper: Any) -> None:
    with pytest.raises(TelegramLoginInvalid, match="signature"):
        telegram_login_verify(data=tamper(_signed(_widget_fields())), bot_token=BOT_TOKEN)


def test_a_widget_login_older_than_a_day_is_refused() -> None:
    now = timezone.now().replace(microsecond=0)  # auth_date has whole seconds
    day_old = _signed(_widget_fields(auth_date=str(int((now - dt.timedelta(days=1)).timestamp()))))
    older = _signed(_widget_fields(auth_date=str(int((now - dt.timedelta(days=1, seconds=1)).timestamp()))))
    future = _signed(_widget_fields(auth_date=str(int((now + dt.timedelta(hours=1)).timestamp()))))

    with time_machine.travel(now, tick=False):
        assert telegram_login_verify(data=day_old, bot_token=BOT_TOKEN).telegram_user_id == 424242
        with pytest.raises(TelegramLoginInvalid, match="too old"):
            telegram_login_verify(data=older, bot_token=BOT_TOKEN)
        with pytest.raises(TelegramLoginInvalid, match="too old"):
            telegram_login_verify(data=future, bot_token=BOT_TOKEN)


def test_malformed_signed_fields_are_refused() -> None:
    with pytest.raises(TelegramLoginInvalid, match="malformed"):
        telegram_login_verify(data=_signed(_widget_fields(auth_date="yesterday")), bot_token=BOT_TOKEN)


def test_without_a_bot_token_nothing_verifies() -> None:
    with pytest.raises(TelegramLoginInvalid, match="no bot token"):
        telegram_login_verify(data=_signed(_widget_fields(), token=""), bot_token="")


def test_a_widget_login_links_through_the_same_service() -> None:
    user = UserFactory.create()

    result = telegram_login_link(user=user, data=_signed(_widget_fields()), bot_token=BOT_TOKEN)

    assert result.outcome == LinkOutcome.LINKED
    identity = PlatformIdentity.objects.get()
    assert (identity.platform, identity.external_id, identity.username, identity.display_name) == (
        "telegram",
        "424242",
        "grace_h",
        "Grace Hopper",
    )
    assert identity.community_user.portal_user == user


def test_a_refused_widget_login_links_nothing() -> None:
    user = UserFactory.create()

    with pytest.raises(TelegramLoginInvalid):
        telegram_login_link(user=user, data={**_signed(_widget_fields()), "id": "7"}, bot_token=BOT_TOKEN)

    assert PlatformIdentity.objects.count() == 0
    assert CommunityUser.objects.count() == 0
