"""The onboarding agent: each step of a new member's first days once, on its day, by email (in Django's outbox)
and by direct message on a linked account (in the publishers' outbox twin); a step whose goal is already met is
recorded as skipped with the reason; nothing is sent twice however often the agent runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.agents.base import AgentContext, AgentResult
from apps.agents.models import AgentRun, AgentRunStatus
from apps.agents.services import agent_run_create, agent_run_execute
from apps.billing.agents import OnboardingAgent
from apps.billing.factories import EntitlementFactory, PlanFactory, PlanPriceFactory, SubscriptionFactory
from apps.billing.models import (
    Entitlement,
    OnboardingStep,
    Plan,
    SubscriptionStatus,
    SyncStatus,
)
from apps.billing.services.access_sync import entitlement_sync_to_platform, telegram_invites_for_user
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.content.factories import ExclusiveContentFactory
from apps.integrations.models import AccessGrant, OutboxMessage

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 6, 2, 9, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
HOUR = dt.timedelta(hours=1)
SITE = "https://coinlink.example"
CHAT = "-1001234567890"
STEP_KEYS = ("welcome", "link_accounts", "telegram_invite", "first_exclusive")


@pytest.fixture(autouse=True)
def _twins(settings: Any) -> None:
    settings.X_BACKEND = settings.TELEGRAM_BACKEND = settings.DISCORD_BACKEND = "outbox"
    settings.SITE_URL = SITE
    settings.DEFAULT_FROM_EMAIL = "CoinLink <hello@coinlink.example>"


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def _plan(slug: str, keys: Sequence[str]) -> Plan:
    plan = PlanFactory.create(slug=slug, name=slug.title(), entitlement_keys=list(keys))
    PlanPriceFactory.create(plan=plan)
    return plan


@pytest.fixture
def pro(clock: Any) -> Plan:
    return _plan("pro", ["portal.premium", f"telegram.channel:{CHAT}"])


@pytest.fixture
def library(clock: Any) -> None:
    ExclusiveContentFactory.create(
        title="Reading funding rates",
        slug="funding-rates",
        summary="What perpetual funding tells you about positioning.",
        published_at=T0 - 2 * DAY,
    )
    ExclusiveContentFactory.create(
        title="Elite desk notes", slug="elite-notes", required_entitlement="portal.elite"
    )
    ExclusiveContentFactory.create(title="Unfinished", slug="draft", status="draft", published_at=None)


def _member(
    plan: Plan,
    *,
    name: str = "Ada Lovelace",
    email: str = "ada@example.com",
    linked: dict[str, str] | None = None,
    status: str = SubscriptionStatus.TRIALING,
) -> User:
    user = UserFactory.create(email=email, display_name=name)
    SubscriptionFactory.create(user=user, plan=plan, price=plan.prices.get(), status=status)
    for key in plan.entitlement_keys:
        EntitlementFactory.create(
            user=user,
            key=key,
            starts_at=timezone.now() - dt.timedelta(minutes=1),
            ends_at=timezone.now() + 30 * DAY,
            sync_status=SyncStatus.PENDING if key.startswith("telegram.") else SyncStatus.NOT_NEEDED,
        )
    if linked:
        person = CommunityUserFactory.create(portal_user=user)
        for platform, external_id in linked.items():
            PlatformIdentityFactory.create(
                community_user=person, platform=platform, external_id=external_id, linked_at=timezone.now()
            )
    return user


def _run(clock: Any, at: dt.datetime, **parameters: Any) -> AgentResult:
    clock.move_to(at)
    ctx = AgentContext(
        run_id=1, agent_name="onboarding", trigger="manual", now=timezone.now(), parameters=parameters
    )
    return OnboardingAgent().execute(ctx)


def _sent(result: AgentResult) -> dict[str, int]:
    return {key: n for key, n in result.counters.items() if n and key != "members"}


def _steps(user: User) -> dict[str, tuple[str, str, str]]:
    return {
        row.step: (row.status, row.channel, row.detail) for row in OnboardingStep.objects.filter(user=user)
    }


def _dms() -> list[OutboxMessage]:
    return list(
        OutboxMessage.objects.filter(
            kind=OutboxMessage.Kind.DM, idempotency_key__startswith="onboarding:"
        ).order_by("pk")
    )


def test_a_new_member_without_linked_accounts_gets_each_step_once_on_its_day(
    clock: Any, pro: Plan, library: None
) -> None:
    ada = _member(pro)

    day0 = _run(clock, T0 + HOUR)

    assert _sent(day0) == {"welcome.sent": 1}
    assert day0.counters["members"] == 1
    (welcome,) = mail.outbox
    assert (welcome.to, welcome.from_email, welcome.subject) == (
        ["ada@example.com"],
        "CoinLink <hello@coinlink.example>",
        "Welcome to CoinLink Pro",
    )
    assert welcome.body.startswith("Hi Ada,\n\nWelcome to CoinLink Pro!")
    assert f"{SITE}/library/" in welcome.body
    assert f"{SITE}/account/" in welcome.body
    assert f"{SITE}/account/links/" in welcome.body
    assert "&#x27;" not in welcome.body
    row = OnboardingStep.objects.get()
    assert (row.step, row.status, row.channel, row.sent_at, row.detail) == (
        "welcome",
        "sent",
        "email",
        T0 + HOUR,
        "emailed ada@example.com",
    )

    assert _sent(_run(clock, T0 + 2 * HOUR)) == {}  # nothing else is due on day 0
    assert len(mail.outbox) == 1

    day1 = _run(clock, T0 + DAY)

    assert _sent(day1) == {"link_accounts.sent": 1}
    link_mail = mail.outbox[1]
    assert link_mail.subject == "Link your Discord and Telegram to CoinLink"
    assert f"{SITE}/account/links/" in link_mail.body

    # One message per run: the Telegram step comes next run, and without Telegram linked it has nothing to send.
    later = _run(clock, T0 + DAY + HOUR)

    assert _sent(later) == {"telegram_invite.skipped": 1}
    assert len(mail.outbox) == 2

    day3 = _run(clock, T0 + 3 * DAY)

    assert _sent(day3) == {"first_exclusive.sent": 1}
    read = mail.outbox[2]
    assert read.subject == "Your first members-only read"
    assert '"Reading funding rates"' in read.body
    assert f"Read it here: {SITE}/library/funding-rates/" in read.body
    assert "elite-notes" not in read.body

    assert _sent(_run(clock, T0 + 4 * DAY)) == {}
    assert _sent(_run(clock, T0 + 6 * DAY)) == {}
    assert len(mail.outbox) == 3
    assert _dms() == []
    steps = _steps(ada)
    assert {step: status for step, (status, _, _) in steps.items()} == {
        "welcome": "sent",
        "link_accounts": "sent",
        "telegram_invite": "skipped",
        "first_exclusive": "sent",
    }
    assert steps["telegram_invite"][2] == (
        "Telegram not linked yet: the access sync sends the invite by Telegram when they link it"
    )


def _sync_telegram(user: User) -> None:
    """What the access sync does for the member's Telegram channel once they have linked Telegram."""
    entitlement_sync_to_platform(
        entitlement_id=Entitlement.objects.get(user=user, key__startswith="telegram.").pk
    )


def test_a_linked_member_gets_the_messages_by_telegram_too_and_their_invite_link(
    clock: Any, pro: Plan, library: None
) -> None:
    ada = _member(pro, linked={"telegram": "777000111", "discord": "4242"})

    day0 = _run(clock, T0 + HOUR)

    assert _sent(day0) == {"welcome.sent": 1}
    (dm,) = _dms()
    assert (dm.platform, dm.channel) == ("telegram", "dm:777000111")
    assert dm.text == mail.outbox[0].body
    assert _steps(ada)["welcome"] == (
        "sent",
        "telegram",
        f"emailed ada@example.com; Telegram message {dm.external_id}",
    )

    clock.move_to(T0 + 12 * HOUR)
    _sync_telegram(ada)  # the invite, good for a day
    (invite,) = telegram_invites_for_user(user=ada)
    day1 = _run(clock, T0 + DAY)

    assert _sent(day1) == {"link_accounts.skipped": 1, "telegram_invite.sent": 1}
    assert _steps(ada)["link_accounts"] == ("skipped", "", "already linked: Discord and Telegram")
    invite_mail = mail.outbox[1]
    assert invite_mail.subject == "Your invite to the members' Telegram channel"
    assert f"{invite.url} (until {invite.expires_at:%Y-%m-%d %H:%M} UTC)" in invite_mail.body
    assert invite.url in _dms()[1].text
    assert _dms()[1].channel == "dm:777000111"

    day3 = _run(clock, T0 + 3 * DAY)

    assert _sent(day3) == {"first_exclusive.sent": 1}
    assert f"{SITE}/library/funding-rates/" in _dms()[2].text
    assert len(mail.outbox) == len(_dms()) == 3
    assert _sent(_run(clock, T0 + 5 * DAY)) == {}


def test_a_member_linked_on_discord_alone_gets_discord_messages(clock: Any, library: None) -> None:
    basic = _plan("basic", ["portal.premium"])
    ada = _member(basic, linked={"discord": "4242"})

    _run(clock, T0 + HOUR)
    day1 = _run(clock, T0 + DAY)

    assert _sent(day1) == {"link_accounts.skipped": 1, "telegram_invite.skipped": 1}
    assert _steps(ada)["telegram_invite"] == ("skipped", "", "no Telegram channel in their membership")
    assert [(dm.platform, dm.channel) for dm in _dms()] == [("discord", "dm:4242")]


def test_a_member_who_joined_the_channel_is_not_sent_an_invite(clock: Any, pro: Plan) -> None:
    ada = _member(pro, linked={"telegram": "777000111"})
    _sync_telegram(ada)  # invited at checkout; the twin's invites are taken up at once
    _run(clock, T0 + HOUR)

    day1 = _run(clock, T0 + DAY + HOUR)  # the checkout's invite has expired by now

    assert _sent(day1) == {"link_accounts.skipped": 1, "telegram_invite.skipped": 1}
    assert _steps(ada)["telegram_invite"] == ("skipped", "", "already in the Telegram channel")


def test_an_invite_that_expired_unused_is_renewed_and_then_sent(
    clock: Any, pro: Plan, django_capture_on_commit_callbacks: Any
) -> None:
    ada = _member(pro, linked={"telegram": "777000111"})
    _sync_telegram(ada)
    AccessGrant.objects.filter(user_external_id="777000111").update(state=AccessGrant.State.REMOVED)
    _run(clock, T0 + HOUR)

    with django_capture_on_commit_callbacks(execute=True) as enqueued:
        day1 = _run(clock, T0 + DAY + HOUR)

    # Not in the channel and no invite left: the access sync made a fresh one (and sent it by Telegram).
    assert _sent(day1) == {"link_accounts.skipped": 1}
    assert "telegram_invite" not in _steps(ada)
    assert len(enqueued) == 1
    (fresh,) = telegram_invites_for_user(user=ada)
    assert fresh.expires_at == T0 + 2 * DAY + HOUR
    assert Entitlement.objects.get(user=ada, key__startswith="telegram.").sync_status == SyncStatus.SYNCED

    after = _run(clock, T0 + DAY + 2 * HOUR)

    assert _sent(after) == {"telegram_invite.sent": 1}
    assert fresh.url in mail.outbox[-1].body


def test_the_invite_step_waits_while_the_access_sync_is_still_making_the_invite(
    clock: Any, pro: Plan
) -> None:
    ada = _member(pro, linked={"telegram": "777000111"})
    _run(clock, T0 + HOUR)

    waiting = _run(clock, T0 + DAY)

    assert _sent(waiting) == {"link_accounts.skipped": 1}
    assert "telegram_invite" not in _steps(ada)

    clock.move_to(T0 + DAY + HOUR)
    _sync_telegram(ada)
    sent = _run(clock, T0 + DAY + 2 * HOUR)

    assert _sent(sent) == {"telegram_invite.sent": 1}
    assert telegram_invites_for_user(user=ada)[0].url in mail.outbox[-1].body


def test_an_empty_library_skips_the_first_read(clock: Any) -> None:
    basic = _plan("basic", ["portal.premium"])
    ada = _member(basic)
    for at in (T0, T0 + DAY, T0 + DAY + HOUR):
        _run(clock, at)

    day3 = _run(clock, T0 + 3 * DAY)

    assert _sent(day3) == {"first_exclusive.skipped": 1}
    assert _steps(ada)["first_exclusive"] == ("skipped", "", "nothing in the library they may read yet")


class BrokenMail(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        raise ConnectionRefusedError("[Errno 111] Connection refused")


def test_a_failed_email_still_reaches_a_linked_member_and_fails_the_step_for_others(
    settings: Any, clock: Any, pro: Plan
) -> None:
    settings.EMAIL_BACKEND = "apps.billing.tests.test_onboarding.BrokenMail"
    ada = _member(pro, linked={"telegram": "777000111"})
    bob = _member(pro, name="Bob", email="bob@example.com")

    result = _run(clock, T0 + HOUR)
    again = _run(clock, T0 + 2 * HOUR)

    assert _sent(result) == {"welcome.sent": 1, "welcome.failed": 1}
    status, channel, detail = _steps(ada)["welcome"]
    assert (status, channel) == ("sent", "telegram")
    assert detail.startswith(
        "email to ada@example.com failed: [Errno 111] Connection refused; Telegram message "
    )
    assert _steps(bob)["welcome"] == (
        "failed",
        "",
        "email to bob@example.com failed: [Errno 111] Connection refused",
    )
    assert OnboardingStep.objects.get(user=bob).sent_at is None
    assert _sent(again) == {}  # a failed step is not retried (the operator may delete its row to resend)
    assert len(_dms()) == 1


def test_only_members_who_joined_in_the_window_with_a_live_subscription_are_onboarded(
    clock: Any, pro: Plan
) -> None:
    with time_machine.travel(T0 - 8 * DAY, tick=False):
        _member(pro, name="Old Timer", email="old@example.com", status=SubscriptionStatus.ACTIVE)
    _member(pro, name="Canceled", email="gone@example.com", status=SubscriptionStatus.CANCELED)
    _member(pro, name="Unpaid", email="unpaid@example.com", status=SubscriptionStatus.INCOMPLETE)
    active = _member(pro, name="Active", email="active@example.com", status=SubscriptionStatus.ACTIVE)
    SubscriptionFactory.create(
        user=active, plan=pro, price=pro.prices.get(), status=SubscriptionStatus.TRIALING
    )

    result = _run(clock, T0 + HOUR)

    assert (result.counters["members"], result.counters["welcome.sent"]) == (1, 1)
    assert [m.to for m in mail.outbox] == [["active@example.com"]]


def test_a_run_through_the_framework(clock: Any, pro: Plan) -> None:
    _member(pro)
    clock.move_to(T0 + HOUR)
    run = agent_run_create(agent_name="onboarding", trigger="manual")

    agent_run_execute(run_id=run.pk)

    run = AgentRun.objects.get(pk=run.pk)
    assert run.status == AgentRunStatus.SUCCEEDED, run.error
    assert run.counters["members"] == 1
    assert {key: run.counters[key] for key in (f"{step}.sent" for step in STEP_KEYS)} == {
        "welcome.sent": 1,
        "link_accounts.sent": 0,
        "telegram_invite.sent": 0,
        "first_exclusive.sent": 0,
    }


def test_the_window_must_outlast_the_sequence() -> None:
    with pytest.raises(Exception, match="window_days must be more than 3"):
        OnboardingAgent.validate_parameters({"window_days": 3})
