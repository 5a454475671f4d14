"""Enforcement: the ladder on one strike ledger per person, its reach across Discord and Telegram, the platform
calls (through the offline twin, which records them), operators' actions, and that nothing loops or touches
staff."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY
from pytest_django.fixtures import Settings

from apps.accounts.factories import UserFactory
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.community.models import CommunityUser, ModerationStanding
from apps.core.models import Platform
from apps.integrations.models import ModerationCall, OutboxMessage
from apps.moderation.engine.types import InboundMessage, Judgement, Verdict
from apps.moderation.models import (
    ActionKind,
    ActionStatus,
    Actor,
    ModerationAction,
    ModerationDecision,
    ModerationPolicy,
    PlatformOperation,
    Strike,
    TrainingLabel,
)
from apps.moderation.services.enforcement import (
    ModerationRefused,
    moderation_act,
    moderation_decision_confirm,
    moderation_enforce,
    moderation_expire,
    moderation_mark_spam,
    moderation_policy_get,
)
from apps.moderation.tests.enforcement_support import (
    COMMUNITY_CHAT,
    DISCORD_CHANNEL,
    DISCORD_ID,
    GUILD,
    SEED_PHRASE,
    SUPPORT_SCAM,
    TELEGRAM_GROUP,
    TELEGRAM_ID,
    direct_messages,
    person_on_both,
    removal,
    scam,
    twin_calls,
)

pytestmark = pytest.mark.django_db

Capture = Callable[..., Any]


@pytest.fixture(autouse=True)
def _community(settings: Settings) -> None:
    settings.DISCORD_BACKEND = "outbox"
    settings.TELEGRAM_BACKEND = "outbox"
    settings.DISCORD_GUILD_ID = GUILD
    settings.MODERATION_TELEGRAM_CHATS = [COMMUNITY_CHAT]
    settings.SITE_URL = "https://coinlink.example"


def enforce(
    capture: Capture, message: InboundMessage, judgement: Judgement | None = None
) -> ModerationAction:
    with capture(execute=True):
        actions = moderation_enforce(message=message, judgement=judgement or removal())
    (action,) = actions
    action.refresh_from_db()
    return action


def standing(person: CommunityUser) -> str:
    person.refresh_from_db()
    return person.standing


# --- the ladder ------------------------------------------------------------------------------------------------


def test_repeated_scams_are_warned_then_muted_then_banned_on_every_platform(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    person = person_on_both()
    before = timezone.now()

    first = scam(Platform.DISCORD)
    warned = enforce(django_capture_on_commit_callbacks, first)

    assert (warned.action, warned.strikes_after, warned.status, warned.actor) == (
        ActionKind.WARN,
        1,
        ActionStatus.APPLIED,
        Actor.ENGINE,
    )
    assert (warned.message_text, warned.chat_id, warned.message_id) == (
        first.text,
        DISCORD_CHANNEL,
        first.message_id,
    )
    assert warned.checks == [SEED_PHRASE.as_dict()]
    assert warned.score == pytest.approx(0.97)
    assert warned.reason == "asks for a seed phrase"
    assert standing(person) == ModerationStanding.WARNED
    assert twin_calls() == [("discord", "delete_message", DISCORD_CHANNEL, first.message_id)]
    ((platform, channel, text),) = direct_messages()
    assert (platform, channel) == ("discord", f"dm:{DISCORD_ID}")
    assert "asks for a seed phrase" in text
    assert "This is a warning." in text
    assert "/appeal" in text
    assert "https://coinlink.example/account/" in text

    second = scam(Platform.TELEGRAM)
    muted = enforce(django_capture_on_commit_callbacks, second)

    assert (muted.action, muted.strikes_after, muted.status) == (ActionKind.MUTE, 2, ActionStatus.APPLIED)
    assert muted.expires_at is not None
    assert before + dt.timedelta(hours=24) <= muted.expires_at <= timezone.now() + dt.timedelta(hours=24)
    assert twin_calls()[1:] == [
        ("telegram", "delete_message", TELEGRAM_GROUP, second.message_id),
        ("discord", "mute", GUILD, DISCORD_ID),
        ("telegram", "mute", COMMUNITY_CHAT, TELEGRAM_ID),
        ("telegram", "mute", TELEGRAM_GROUP, TELEGRAM_ID),
    ]
    assert set(ModerationCall.objects.filter(operation="mute").values_list("until", flat=True)) == {
        muted.expires_at
    }
    person.refresh_from_db()
    assert (person.standing, person.muted_until) == (ModerationStanding.MUTED, muted.expires_at)
    assert direct_messages()[1][:2] == ("telegram", f"dm:{TELEGRAM_ID}")
    assert "You are muted on Discord and Telegram until" in direct_messages()[1][2]

    third = scam(Platform.DISCORD, text="Claim the airdrop at drainer.example and enter your private key")
    banned = enforce(django_capture_on_commit_callbacks, third, removal(SUPPORT_SCAM))

    assert (banned.action, banned.strikes_after, banned.status) == (ActionKind.BAN, 3, ActionStatus.APPLIED)
    assert twin_calls()[5:] == [
        ("discord", "delete_message", DISCORD_CHANNEL, third.message_id),
        ("discord", "ban", GUILD, DISCORD_ID),
        ("telegram", "ban", COMMUNITY_CHAT, TELEGRAM_ID),
    ]
    assert standing(person) == ModerationStanding.BANNED
    assert "You have been banned from the community on Discord and Telegram." in direct_messages()[2][2]
    assert (
        list(Strike.objects.order_by("pk").values_list("community_user_id", "weight", "voided_at"))
        == [(person.pk, 1, None)] * 3
    )


def test_the_thresholds_and_mute_length_come_from_the_policy(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    policy = moderation_policy_get()
    policy.warn_at, policy.mute_at, policy.ban_at, policy.mute_minutes = 2, 3, 5, 90
    policy.save()
    person_on_both()

    steps = []
    for _ in range(5):
        action = enforce(django_capture_on_commit_callbacks, scam(Platform.DISCORD))
        steps.append((action.action, action.strikes_after))

    assert steps == [
        (ActionKind.DELETE_MESSAGE, 1),
        (ActionKind.WARN, 2),
        (ActionKind.MUTE, 3),
        (ActionKind.MUTE, 4),
        (ActionKind.BAN, 5),
    ]
    mute = ModerationAction.objects.filter(action=ActionKind.MUTE).earliest("pk")
    assert mute.expires_at is not None
    assert mute.expires_at - mute.created_at == pytest.approx(
        dt.timedelta(minutes=90), abs=dt.timedelta(seconds=5)
    )


def test_a_heavy_scam_goes_straight_to_a_ban(django_capture_on_commit_callbacks: Capture) -> None:
    person_on_both()

    action = enforce(
        django_capture_on_commit_callbacks, scam(Platform.TELEGRAM), removal(SEED_PHRASE, weight=3)
    )

    assert (action.action, action.strikes_after) == (ActionKind.BAN, 3)
    assert [c[:3] for c in twin_calls()] == [
        ("telegram", "delete_message", TELEGRAM_GROUP),
        ("discord", "ban", GUILD),
        ("telegram", "ban", COMMUNITY_CHAT),
        ("telegram", "ban", TELEGRAM_GROUP),
    ]


def test_expired_and_voided_strikes_do_not_count(django_capture_on_commit_callbacks: Capture) -> None:
    person = person_on_both()
    old = enforce(django_capture_on_commit_callbacks, scam())
    Strike.objects.filter(action=old).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    voided = enforce(django_capture_on_commit_callbacks, scam())
    Strike.objects.filter(action=voided).update(voided_at=timezone.now())

    action = enforce(django_capture_on_commit_callbacks, scam())

    assert (action.action, action.strikes_after) == (ActionKind.WARN, 1)
    assert Strike.objects.filter(community_user=person).count() == 3


def test_the_engine_decision_is_linked_to_the_action(django_capture_on_commit_callbacks: Capture) -> None:
    person_on_both()
    message = scam()
    decision = ModerationDecision.objects.create(
        platform=message.platform,
        chat_id=message.chat_id,
        message_id=message.message_id,
        author_id=message.author_id,
        text=message.text,
        sent_at=message.sent_at,
        verdict="remove",
        score=0.97,
        strike_weight=1,
    )

    action = enforce(django_capture_on_commit_callbacks, message, removal(decision_id=decision.pk))

    assert action.decision_id == decision.pk
    assert list(decision.actions.all()) == [action]


def test_a_person_only_on_x_gets_an_audit_row_and_no_platform_call(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    message = InboundMessage(
        platform=Platform.X,
        chat_id="x",
        message_id="1900000000000000001",
        author_id="77",
        text="send 1 ETH get 2 back",
        sent_at=timezone.now(),
    )

    action = enforce(django_capture_on_commit_callbacks, message)

    assert (action.platform, action.action, action.status) == (
        Platform.X,
        ActionKind.WARN,
        ActionStatus.APPLIED,
    )
    assert not PlatformOperation.objects.exists()
    assert twin_calls() == []


def test_a_telegram_mute_with_no_community_chat_fails_visibly(
    django_capture_on_commit_callbacks: Capture, settings: Settings
) -> None:
    settings.MODERATION_TELEGRAM_CHATS = []
    person_on_both()
    enforce(django_capture_on_commit_callbacks, scam(Platform.DISCORD))

    muted = enforce(django_capture_on_commit_callbacks, scam(Platform.DISCORD))

    assert muted.status == ActionStatus.FAILED
    assert muted.error == "Telegram: no Telegram chat to act in: set MODERATION_TELEGRAM_CHATS"
    assert ("discord", "mute", GUILD, DISCORD_ID) in twin_calls()
    assert not ModerationCall.objects.filter(platform="telegram", operation="mute").exists()


# --- operators -------------------------------------------------------------------------------------------------


def test_an_operator_ban_on_discord_bans_on_telegram_too_and_unban_lifts_both(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    person = person_on_both()
    operator = UserFactory.create(staff=True)

    with django_capture_on_commit_callbacks(execute=True):
        ban = moderation_act(community_user=person, action=ActionKind.BAN, actor=operator, reason="scam DMs")
    ban.refresh_from_db()

    assert (ban.action, ban.actor, ban.moderator, ban.status) == (
        ActionKind.BAN,
        Actor.OPERATOR,
        operator,
        ActionStatus.APPLIED,
    )
    assert twin_calls() == [
        ("discord", "ban", GUILD, DISCORD_ID),
        ("telegram", "ban", COMMUNITY_CHAT, TELEGRAM_ID),
    ]
    assert Strike.objects.filter(action=ban, weight=1).count() == 1
    assert standing(person) == ModerationStanding.BANNED

    with django_capture_on_commit_callbacks(execute=True):
        unban = moderation_act(community_user=person, action=ActionKind.UNBAN, actor=operator, reason="")
    unban.refresh_from_db()

    assert (unban.action, unban.reverses, unban.status) == (ActionKind.UNBAN, ban, ActionStatus.APPLIED)
    assert twin_calls()[2:] == [
        ("discord", "unban", GUILD, DISCORD_ID),
        ("telegram", "unban", COMMUNITY_CHAT, TELEGRAM_ID),
    ]
    ban.refresh_from_db()
    assert ban.ended_at is not None
    # Lifted, not withdrawn: the strike still counts.
    assert standing(person) == ModerationStanding.WARNED
    assert "ban has been lifted on Discord and Telegram" in direct_messages()[-1][2]


def test_an_operator_mute_only_on_one_platform_with_its_own_length(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    person = person_on_both()

    with django_capture_on_commit_callbacks(execute=True):
        mute = moderation_act(
            community_user=person,
            action=ActionKind.MUTE,
            actor=None,
            reason="flooding",
            duration=dt.timedelta(hours=2),
            platforms=[Platform.TELEGRAM],
        )

    assert twin_calls() == [("telegram", "mute", COMMUNITY_CHAT, TELEGRAM_ID)]
    assert mute.expires_at is not None
    assert mute.expires_at - mute.created_at == pytest.approx(
        dt.timedelta(hours=2), abs=dt.timedelta(seconds=5)
    )
    with pytest.raises(ValueError, match="28 days"):
        moderation_act(
            community_user=person,
            action=ActionKind.MUTE,
            actor=None,
            reason="",
            duration=dt.timedelta(days=29),
        )
    with pytest.raises(ValueError, match="not 'delete_message'"):
        moderation_act(community_user=person, action=ActionKind.DELETE_MESSAGE, actor=None, reason="")


def test_spam_marked_by_an_operator_acts_and_teaches_the_classifier(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    person_on_both()
    operator = UserFactory.create(staff=True)
    message = scam(Platform.TELEGRAM, text="join my vip pump group t.me/pumpvip 100x guaranteed")

    with django_capture_on_commit_callbacks(execute=True):
        (action,) = moderation_mark_spam(message=message, actor=operator)

    action.refresh_from_db()
    assert (action.action, action.actor, action.moderator, action.status) == (
        ActionKind.WARN,
        Actor.OPERATOR,
        operator,
        ActionStatus.APPLIED,
    )
    assert [c["check"] for c in action.checks] == ["operator_spam"]
    assert twin_calls() == [("telegram", "delete_message", TELEGRAM_GROUP, message.message_id)]
    assert list(TrainingLabel.objects.values_list("text", "label", "source", "actor")) == [
        (message.text, "spam", "operator", operator.pk)
    ]


def test_spam_marked_after_the_engine_acted_adds_no_second_strike(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    person = person_on_both()
    message = scam()
    engine_action = enforce(django_capture_on_commit_callbacks, message)
    calls = twin_calls()

    with django_capture_on_commit_callbacks(execute=True):
        (action,) = moderation_mark_spam(message=message, actor=UserFactory.create(staff=True))

    assert action == engine_action
    assert Strike.objects.filter(community_user=person).count() == 1
    assert twin_calls() == calls
    assert TrainingLabel.objects.filter(label="spam", source="operator").count() == 1


# --- never staff, never twice, never a loop ---------------------------------------------------------------------


def test_allowed_and_review_verdicts_do_nothing(django_capture_on_commit_callbacks: Capture) -> None:
    person_on_both()
    for verdict in (Verdict.ALLOW, Verdict.REVIEW):
        judgement = Judgement(verdict=verdict, score=0.6, checks=(SEED_PHRASE,), strike_weight=1)
        with django_capture_on_commit_callbacks(execute=True):
            assert moderation_enforce(message=scam(), judgement=judgement) == []

    assert not ModerationAction.objects.exists()
    assert not Strike.objects.exists()
    assert twin_calls() == []


def test_staff_and_bots_are_never_moderated(django_capture_on_commit_callbacks: Capture) -> None:
    operator = UserFactory.create(staff=True)
    staff_member = CommunityUserFactory.create(portal_user=operator)
    PlatformIdentityFactory.create(community_user=staff_member, platform=Platform.DISCORD, external_id="1001")
    PlatformIdentityFactory.create(platform=Platform.TELEGRAM, external_id="2002", is_bot=True)

    with django_capture_on_commit_callbacks(execute=True):
        assert moderation_enforce(message=scam(author_is_staff=True), judgement=removal()) == []
        assert moderation_enforce(message=scam(author_id="1001"), judgement=removal()) == []
        assert (
            moderation_enforce(message=scam(Platform.TELEGRAM, author_id="2002"), judgement=removal()) == []
        )
    with pytest.raises(ModerationRefused):
        moderation_act(community_user=staff_member, action=ActionKind.BAN, actor=operator, reason="")
    with pytest.raises(ModerationRefused):
        moderation_mark_spam(message=scam(author_id="1001"), actor=operator)
    with pytest.raises(ModerationRefused):
        moderation_mark_spam(message=scam(author_is_staff=True), actor=operator)

    assert not ModerationAction.objects.exists()
    assert not TrainingLabel.objects.exists()
    assert twin_calls() == []


def test_a_redelivered_message_is_acted_on_once(django_capture_on_commit_callbacks: Capture) -> None:
    person_on_both()
    message = scam()
    first = enforce(django_capture_on_commit_callbacks, message)
    calls, notices = twin_calls(), direct_messages()

    again = enforce(django_capture_on_commit_callbacks, message)

    assert again == first
    assert ModerationAction.objects.count() == 1
    assert Strike.objects.count() == 1
    assert PlatformOperation.objects.count() == 2  # the deletion and the notice
    assert (twin_calls(), direct_messages()) == (calls, notices)


def test_no_action_starts_another(django_capture_on_commit_callbacks: Capture) -> None:
    """Carrying an action out only talks to the platforms; our own notices coming back in are the bot's (staff)
    and change nothing; a banned person's further messages are removed without escalating again."""
    person = person_on_both()
    enforce(django_capture_on_commit_callbacks, scam(), removal(weight=3))
    assert ModerationAction.objects.count() == 1

    (_, _, notice) = direct_messages()[0]
    bot_echo = scam(Platform.DISCORD, text=notice, author_id="999", author_is_staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        assert moderation_enforce(message=bot_echo, judgement=removal()) == []

    later = enforce(django_capture_on_commit_callbacks, scam(Platform.TELEGRAM))

    assert (later.action, later.strikes_after) == (ActionKind.DELETE_MESSAGE, 3)
    assert Strike.objects.filter(community_user=person).count() == 1
    assert ModerationCall.objects.filter(operation="ban").count() == 2  # the first ban only
    assert ModerationAction.objects.count() == 2


# --- expiry ------------------------------------------------------------------------------------------------------


def test_a_mute_that_runs_out_ends_and_the_platforms_lift_it_themselves(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    person = person_on_both()
    enforce(django_capture_on_commit_callbacks, scam())
    mute = enforce(django_capture_on_commit_callbacks, scam())
    assert mute.expires_at is not None
    calls = twin_calls()

    with django_capture_on_commit_callbacks(execute=True):
        result = moderation_expire(now=mute.expires_at + dt.timedelta(minutes=1))

    assert (result.mutes_ended, result.mutes_lifted_on_platforms) == (1, 0)
    mute.refresh_from_db()
    assert mute.ended_at is not None
    assert twin_calls() == calls  # Telegram's until_date and Discord's timeout end on their own
    person.refresh_from_db()
    assert (person.standing, person.muted_until) == (ModerationStanding.WARNED, None)

    with django_capture_on_commit_callbacks(execute=True):
        again = moderation_expire(now=mute.expires_at + dt.timedelta(minutes=2))
    assert again.mutes_ended == 0


def test_a_mute_an_operator_shortened_is_lifted_on_the_platforms(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    person_on_both()
    enforce(django_capture_on_commit_callbacks, scam())
    mute = enforce(django_capture_on_commit_callbacks, scam())
    now = timezone.now()
    ModerationAction.objects.filter(pk=mute.pk).update(expires_at=now - dt.timedelta(minutes=1))

    with django_capture_on_commit_callbacks(execute=True):
        result = moderation_expire(now=now)

    assert (result.mutes_ended, result.mutes_lifted_on_platforms) == (1, 2)
    assert [c for c in twin_calls() if c[1] == "unmute"] == [
        ("discord", "unmute", GUILD, DISCORD_ID),
        ("telegram", "unmute", COMMUNITY_CHAT, TELEGRAM_ID),
    ]
    lift = ModerationAction.objects.get(action=ActionKind.UNMUTE)
    assert (lift.actor, lift.reverses, lift.status) == (Actor.AGENT, mute, ActionStatus.APPLIED)


def test_expired_strikes_bring_a_person_back_to_good_standing(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    person = person_on_both()
    warned = enforce(django_capture_on_commit_callbacks, scam())
    (strike,) = Strike.objects.filter(action=warned)

    result = moderation_expire(now=strike.expires_at + dt.timedelta(minutes=1))

    assert (result.strikes_expired, result.people_restored) == (1, 1)
    assert standing(person) == ModerationStanding.GOOD
    assert OutboxMessage.objects.count() == 1  # only the warning's notice


def test_a_join_request_bio_is_judged_without_deleting_anything(
    django_capture_on_commit_callbacks: Capture,
) -> None:
    person_on_both()

    action = enforce(
        django_capture_on_commit_callbacks,
        scam(Platform.TELEGRAM, kind="join_request_bio"),
        removal(weight=3),
    )

    assert action.action == ActionKind.BAN
    assert [call[1] for call in twin_calls()] == ["ban", "ban", "ban"]


def test_an_operator_confirms_a_message_held_for_review(django_capture_on_commit_callbacks: Capture) -> None:
    person_on_both()
    message = scam(Platform.TELEGRAM, text="dm me for the recovery service, I get funds back")
    decision = ModerationDecision.objects.create(
        platform=message.platform,
        chat_id=message.chat_id,
        message_id=message.message_id,
        author_id=message.author_id,
        text=message.text,
        sent_at=message.sent_at,
        verdict="review",
        score=0.6,
        checks=[SUPPORT_SCAM.as_dict()],
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            moderation_enforce(message=message, judgement=Judgement(Verdict.REVIEW, 0.6, (SUPPORT_SCAM,), 1))
            == []
        )
    assert twin_calls() == []
    operator = UserFactory.create(staff=True)

    with django_capture_on_commit_callbacks(execute=True):
        (action,) = moderation_decision_confirm(decision_id=decision.pk, actor=operator)

    action.refresh_from_db()
    assert (action.action, action.actor, action.decision, action.score) == (
        ActionKind.WARN,
        Actor.OPERATOR,
        decision,
        pytest.approx(0.6),
    )
    assert [c["check"] for c in action.checks] == ["operator_spam", "support_scam"]
    assert twin_calls() == [("telegram", "delete_message", TELEGRAM_GROUP, message.message_id)]
    assert TrainingLabel.objects.get().decision == decision


def test_the_policy_is_one_row_with_sane_defaults_that_operators_edit_in_order(client: Client) -> None:
    assert not ModerationPolicy.objects.exists()
    policy = moderation_policy_get()
    assert (
        policy.warn_at,
        policy.mute_at,
        policy.ban_at,
        policy.mute_minutes,
        policy.strike_expiry_days,
    ) == (
        1,
        2,
        3,
        24 * 60,
        30,
    )
    assert moderation_policy_get().pk == policy.pk
    client.force_login(UserFactory.create(staff=True))
    assert client.get(reverse("admin:moderation_moderationpolicy_changelist")).status_code == 200
    url = reverse("admin:moderation_moderationpolicy_change", args=[policy.pk])
    form = {
        "warn_at": 1,
        "mute_at": 3,
        "ban_at": 2,
        "mute_minutes": 60,
        "strike_expiry_days": 14,
        "operator_strike_weight": 1,
        "notify_members": "on",
    }

    refused = client.post(url, form)
    too_long = client.post(url, {**form, "ban_at": 4, "mute_minutes": 29 * 24 * 60})

    assert refused.status_code == too_long.status_code == 200  # the form again, with the error
    assert ModerationPolicy.objects.get().mute_at == 2
    assert client.post(url, {**form, "ban_at": 4}).status_code == 302
    saved = ModerationPolicy.objects.get()
    assert (saved.warn_at, saved.mute_at, saved.ban_at, saved.mute_minutes, saved.strike_expiry_days) == (
        1,
        3,
        4,
        60,
        14,
    )
    assert ModerationPolicy.objects.count() == 1


def test_committed_actions_are_counted_in_the_metrics(django_capture_on_commit_callbacks: Capture) -> None:
    def bans() -> float:
        labels = {"platform": "telegram", "action": "ban"}
        return REGISTRY.get_sample_value("coinlink_moderation_decisions_total", labels) or 0.0

    person_on_both()
    before = bans()

    enforce(django_capture_on_commit_callbacks, scam(Platform.TELEGRAM), removal(SEED_PHRASE, weight=3))

    assert bans() == before + 1
