"""Appeals: opened from the portal's account page or a bot's /appeal, decided in the admin's queue; a granted
appeal reverses the action on every platform, voids its strike, teaches the classifier and tells the member."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.community.models import CommunityUser, ModerationStanding
from apps.core.models import Platform
from apps.moderation.models import (
    ActionKind,
    ActionStatus,
    Actor,
    Appeal,
    AppealSource,
    ModerationAction,
    OperationStatus,
    PlatformOperation,
    Strike,
    TrainingLabel,
)
from apps.moderation.services.appeals import AppealRefused, appeal_decide, appeal_open
from apps.moderation.services.enforcement import moderation_enforce
from apps.moderation.tests.enforcement_support import (
    COMMUNITY_CHAT,
    DISCORD_ID,
    GUILD,
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
ACCOUNT = "/account/"
APPEAL_URL = "/account/appeals/"


@pytest.fixture(autouse=True)
def _community(settings: Settings) -> None:
    settings.DISCORD_BACKEND = "outbox"
    settings.TELEGRAM_BACKEND = "outbox"
    settings.DISCORD_GUILD_ID = GUILD
    settings.MODERATION_TELEGRAM_CHATS = [COMMUNITY_CHAT]


@pytest.fixture
def member() -> User:
    user = UserFactory.create()
    person = person_on_both()
    person.portal_user = user
    person.save()
    return user


def _person(user: User) -> CommunityUser:
    return CommunityUser.objects.get(portal_user=user)


def _ban(capture: Capture) -> ModerationAction:
    """Three scams: a warning, a mute, then a ban on both platforms (the last from Telegram)."""
    with capture(execute=True):
        moderation_enforce(message=scam(Platform.DISCORD), judgement=removal())
        moderation_enforce(message=scam(Platform.DISCORD), judgement=removal())
        (ban,) = moderation_enforce(
            message=scam(
                Platform.TELEGRAM, text="Official airdrop! Connect your wallet at claim-drop.example"
            ),
            judgement=removal(),
        )
    ban.refresh_from_db()
    assert ban.action == ActionKind.BAN
    return ban


# --- deciding ----------------------------------------------------------------------------------------------------


def test_a_granted_appeal_reverses_the_ban_on_both_platforms_voids_the_strike_and_teaches_the_classifier(
    django_capture_on_commit_callbacks: Capture, member: User
) -> None:
    ban = _ban(django_capture_on_commit_callbacks)
    person = _person(member)
    assert person.standing == ModerationStanding.BANNED
    banned_on = [c for c in twin_calls() if c[1] == "ban"]
    assert banned_on == [
        ("discord", "ban", GUILD, DISCORD_ID),
        ("telegram", "ban", COMMUNITY_CHAT, TELEGRAM_ID),
        ("telegram", "ban", TELEGRAM_GROUP, TELEGRAM_ID),
    ]
    operator = UserFactory.create(staff=True)
    appeal = appeal_open(action_id=ban.pk, community_user=person, message="That was the real airdrop link.")
    calls_before = len(twin_calls())

    with django_capture_on_commit_callbacks(execute=True):
        decided = appeal_decide(appeal_id=appeal.pk, granted=True, actor=operator, note="Our mistake.")

    assert decided is not None
    assert (decided.status, decided.decided_by, decided.decision_note) == (
        Appeal.Status.UPHELD,
        operator,
        "Our mistake.",
    )
    assert twin_calls()[calls_before:] == [
        ("discord", "unban", GUILD, DISCORD_ID),
        ("telegram", "unban", COMMUNITY_CHAT, TELEGRAM_ID),
        ("telegram", "unban", TELEGRAM_GROUP, TELEGRAM_ID),
    ]
    ban.refresh_from_db()
    assert (ban.status, ban.reverted_at is not None, ban.ended_at is not None) == (
        ActionStatus.REVERTED,
        True,
        True,
    )
    lift = ModerationAction.objects.get(reverses=ban)
    assert (lift.action, lift.actor, lift.moderator, lift.status) == (
        ActionKind.UNBAN,
        Actor.OPERATOR,
        operator,
        ActionStatus.APPLIED,
    )
    assert Strike.objects.get(action=ban).voided_at is not None
    assert Strike.objects.filter(community_user=person, voided_at__isnull=True).count() == 2
    person.refresh_from_db()
    # The two earlier strikes still count, and the mute of the second one has not run out yet.
    assert person.standing == ModerationStanding.MUTED
    assert list(TrainingLabel.objects.values_list("text", "label", "source", "actor")) == [
        (ban.message_text, "ham", "appeal", operator.pk)
    ]
    platform, channel, text = direct_messages()[-1]
    assert (platform, channel) == ("telegram", f"dm:{TELEGRAM_ID}")
    assert text.startswith("Your appeal was granted. Your ban has been lifted everywhere it applied")
    assert text.endswith("Note from the moderators: Our mistake.")

    # A decision is final: deciding again changes nothing.
    snapshot = (len(twin_calls()), len(direct_messages()), TrainingLabel.objects.count())
    with django_capture_on_commit_callbacks(execute=True):
        assert appeal_decide(appeal_id=appeal.pk, granted=False, actor=operator) is None
    assert (len(twin_calls()), len(direct_messages()), TrainingLabel.objects.count()) == snapshot
    assert Appeal.objects.get(pk=appeal.pk).status == Appeal.Status.UPHELD


def test_a_granted_appeal_of_a_mute_lifts_it_everywhere(
    django_capture_on_commit_callbacks: Capture, member: User
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        moderation_enforce(message=scam(Platform.DISCORD), judgement=removal())
        (mute,) = moderation_enforce(message=scam(Platform.DISCORD), judgement=removal())
    appeal = appeal_open(action_id=mute.pk, message="I was quoting the scam to warn people.")

    with django_capture_on_commit_callbacks(execute=True):
        appeal_decide(appeal_id=appeal.pk, granted=True, actor=None)

    assert [c for c in twin_calls() if c[1] == "unmute"] == [
        ("discord", "unmute", GUILD, DISCORD_ID),
        ("telegram", "unmute", COMMUNITY_CHAT, TELEGRAM_ID),
    ]
    person = _person(member)
    assert (person.standing, person.muted_until) == (ModerationStanding.WARNED, None)


def test_a_ban_reversed_before_its_calls_went_out_never_lands(
    django_capture_on_commit_callbacks: Capture, member: User
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        (ban,) = moderation_enforce(message=scam(), judgement=removal(weight=3))
    appeal = appeal_open(action_id=ban.pk, message="hacked account, recovered now")

    with django_capture_on_commit_callbacks(execute=True):
        appeal_decide(appeal_id=appeal.pk, granted=True, actor=None)

    assert list(PlatformOperation.objects.filter(action=ban).values_list("operation", "status")) == [
        ("delete_message", OperationStatus.CANCELLED),
        ("ban", OperationStatus.CANCELLED),  # Discord
        ("ban", OperationStatus.CANCELLED),  # Telegram
        ("notify", OperationStatus.CANCELLED),  # "you are banned", never sent
        ("notify", OperationStatus.APPLIED),  # "your appeal was granted"
    ]
    # Nothing reached a platform, so there is nothing to lift; the member hears the appeal's outcome only.
    assert twin_calls() == []
    assert not ModerationAction.objects.filter(reverses=ban).exists()
    assert [text.split(".")[0] for _, _, text in direct_messages()] == ["Your appeal was granted"]


def test_a_denied_appeal_leaves_the_action_and_tells_the_member(
    django_capture_on_commit_callbacks: Capture, member: User
) -> None:
    ban = _ban(django_capture_on_commit_callbacks)
    appeal = appeal_open(action_id=ban.pk, message="not me")
    calls = twin_calls()

    with django_capture_on_commit_callbacks(execute=True):
        appeal_decide(appeal_id=appeal.pk, granted=False, actor=None, note="The link was a known drainer.")

    ban.refresh_from_db()
    assert (ban.status, ban.reverted_at) == (ActionStatus.APPLIED, None)
    assert Strike.objects.filter(action=ban, voided_at__isnull=True).count() == 1
    assert twin_calls() == calls
    assert not TrainingLabel.objects.exists()
    assert direct_messages()[-1][2] == (
        "Your appeal was reviewed and the decision stands. Note from the moderators: The link was a known drainer."
    )
    assert _person(member).standing == ModerationStanding.BANNED


# --- opening -----------------------------------------------------------------------------------------------------


def test_a_bots_appeal_takes_the_latest_action_not_yet_appealed(
    django_capture_on_commit_callbacks: Capture, member: User
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        (warning,) = moderation_enforce(message=scam(), judgement=removal())
        (mute,) = moderation_enforce(message=scam(), judgement=removal())
    person = _person(member)

    first = appeal_open(community_user=person, message="sorry", source=AppealSource.BOT)
    second = appeal_open(community_user=person, message="and this one", source=AppealSource.BOT)

    assert (first.action_id, first.source, second.action_id) == (mute.pk, AppealSource.BOT, warning.pk)
    with pytest.raises(AppealRefused) as nothing_left:
        appeal_open(community_user=person, message="again")
    assert nothing_left.value.code == AppealRefused.NO_ACTION
    with pytest.raises(AppealRefused) as empty:
        appeal_open(action_id=mute.pk, message="   ")
    assert empty.value.code == AppealRefused.EMPTY
    assert Appeal.objects.count() == 2


# --- the portal --------------------------------------------------------------------------------------------------


def test_the_account_page_lists_the_members_actions_with_an_appeal_button(
    client: Client, django_capture_on_commit_callbacks: Capture, member: User
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        (warning,) = moderation_enforce(message=scam(), judgement=removal())
    client.force_login(member)

    html = client.get(ACCOUNT).content.decode()

    assert 'id="moderation-title"' in html
    assert "Active strikes: 1." in html
    assert "asks for a seed phrase" in html
    assert f'action="{reverse("portal:appeal_create")}"' in html
    assert f'name="action_id" value="{warning.pk}"' in html


def test_a_member_without_actions_sees_no_moderation_section(client: Client, member: User) -> None:
    client.force_login(member)

    assert 'id="moderation-title"' not in client.get(ACCOUNT).content.decode()


def test_a_member_appeals_from_the_portal(
    client: Client, django_capture_on_commit_callbacks: Capture, member: User
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        (warning,) = moderation_enforce(message=scam(), judgement=removal())
    client.force_login(member)

    response = client.post(
        APPEAL_URL, {"action_id": warning.pk, "message": "It was a joke about scams."}, follow=True
    )

    assert response.redirect_chain == [(ACCOUNT, 302)]
    html = response.content.decode()
    assert "Your appeal is with the moderators." in html
    assert "Appeal: Open" in html
    assert f'name="action_id" value="{warning.pk}"' not in html
    appeal = Appeal.objects.get()
    assert (appeal.action, appeal.community_user, appeal.message, appeal.source, appeal.status) == (
        warning,
        _person(member),
        "It was a joke about scams.",
        AppealSource.PORTAL,
        Appeal.Status.OPEN,
    )


def test_the_portal_refuses_someone_elses_action_and_one_already_appealed(
    client: Client, django_capture_on_commit_callbacks: Capture, member: User
) -> None:
    other = UserFactory.create()
    stranger = CommunityUser.objects.create(
        display_name="Stranger",
        portal_user=other,
        first_seen_at=_person(member).first_seen_at,
        last_seen_at=_person(member).last_seen_at,
    )
    from apps.community.factories import PlatformIdentityFactory

    PlatformIdentityFactory.create(community_user=stranger, platform=Platform.DISCORD, external_id="8888")
    with django_capture_on_commit_callbacks(execute=True):
        (theirs,) = moderation_enforce(message=scam(author_id="8888"), judgement=removal())
        (mine,) = moderation_enforce(message=scam(), judgement=removal())
    client.force_login(member)

    refused = client.post(APPEAL_URL, {"action_id": theirs.pk, "message": "let me appeal yours"}, follow=True)

    assert "There is no such moderation action." in refused.content.decode()
    assert not Appeal.objects.exists()

    client.post(APPEAL_URL, {"action_id": mine.pk, "message": "first"})
    again = client.post(APPEAL_URL, {"action_id": mine.pk, "message": "second"}, follow=True)

    assert "That action has already been appealed." in again.content.decode()
    assert list(Appeal.objects.values_list("action_id", "message")) == [(mine.pk, "first")]

    # A decided (denied) appeal is final too.
    appeal_decide(appeal_id=Appeal.objects.get().pk, granted=False, actor=None)
    client.post(APPEAL_URL, {"action_id": mine.pk, "message": "third"})
    assert Appeal.objects.count() == 1


def test_the_appeal_form_needs_a_login_and_a_post(client: Client, member: User) -> None:
    assert client.post(APPEAL_URL, {"action_id": 1, "message": "x"}).status_code == 302
    assert not Appeal.objects.exists()
    client.force_login(member)
    assert client.get(APPEAL_URL).status_code == 405


# --- the admin queue ---------------------------------------------------------------------------------------------


def test_operators_grant_appeals_from_the_admin_queue(
    client: Client, django_capture_on_commit_callbacks: Capture, member: User
) -> None:
    ban = _ban(django_capture_on_commit_callbacks)
    appeal = appeal_open(action_id=ban.pk, message="please")
    operator = UserFactory.create(staff=True)
    client.force_login(operator)
    changelist = reverse("admin:moderation_appeal_changelist")

    page = client.get(changelist)
    assert page.status_code == 200
    assert "please" in page.content.decode()
    assert client.get(reverse("admin:moderation_appeal_change", args=[appeal.pk])).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(changelist, {"action": "grant", "_selected_action": [appeal.pk]}, follow=True)

    assert "1 of 1 appeals granted" in response.content.decode()
    appeal.refresh_from_db()
    assert (appeal.status, appeal.decided_by) == (Appeal.Status.UPHELD, operator)
    assert [c[1] for c in twin_calls()][-3:] == ["unban", "unban", "unban"]
    for name in ("moderationaction", "strike", "moderationpolicy", "platformoperation"):
        if name == "platformoperation":
            continue  # shown inline on its action
        assert client.get(reverse(f"admin:moderation_{name}_changelist")).status_code == 200
    assert client.get(reverse("admin:moderation_moderationaction_change", args=[ban.pk])).status_code == 200
