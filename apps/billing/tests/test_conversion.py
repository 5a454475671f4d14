"""The conversion agent: engagement scores exact to their components and computed in a fixed number of queries
however many people there are; who is approached (not members, not muted or banned, not bots, not recently
approached) and where (the platform they engage most on); the direct message with its tracked link and the A/B
variant's copy through the outbox twin; a refusal from the real Telegram client (a fake Bot API on loopback)
failing the offer with the platform's error; offers ignored after N days; and the whole funnel from the direct
message to a subscription on the checkout twin, credited to the offer."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_httpserver import HTTPServer

from apps.accounts.factories import UserFactory
from apps.agents.base import AgentContext, AgentResult
from apps.agents.models import AgentRun, AgentRunStatus
from apps.agents.services import agent_run_create, agent_run_execute
from apps.billing.agents import ConversionAgent
from apps.billing.factories import (
    ConversionAttemptFactory,
    EntitlementFactory,
    PlanFactory,
    PlanPriceFactory,
    SubscriptionFactory,
)
from apps.billing.models import (
    CheckoutTwinSession,
    ConversionAttempt,
    ConversionStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
)
from apps.billing.services import conversion
from apps.billing.services.conversion import ScoreFormula, conversion_targets_choose
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory, UserInteractionFactory
from apps.community.models import CommunityUser, ModerationStanding, PlatformIdentity, UserInteraction
from apps.community.selectors import DEFAULT_INTERACTION_WEIGHTS, community_user_scores
from apps.community.services.scoring import community_user_scores_store
from apps.core.resilience import TransientError
from apps.experiments.factories import ABTestFactory, ABTestVariantFactory
from apps.experiments.models import ABTest, Assignment
from apps.integrations.models import OutboxMessage
from apps.integrations.publishers.outbox import OutboxPublisher
from apps.integrations.types import OutboundPost, PublishResult

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 6, 2, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SITE = "https://coinlink.example"
WEIGHTS = dict(DEFAULT_INTERACTION_WEIGHTS)
LINK = re.compile(r"https://coinlink\.example/o/([0-9a-f-]{36})/")


@pytest.fixture(autouse=True)
def _twins(settings: Any) -> None:
    settings.X_BACKEND = settings.TELEGRAM_BACKEND = settings.DISCORD_BACKEND = "outbox"
    settings.SITE_URL = SITE
    settings.STRIPE_SECRET_KEY = ""


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def pro(clock: Any) -> Plan:
    plan = PlanFactory.create(slug="pro", name="Pro", trial_days=7, entitlement_keys=["portal.premium"])
    PlanPriceFactory.create(plan=plan, interval="month", amount_minor=2900)
    return plan


def _person(name: str = "Maya Chen", *, platform: str = "telegram", **fields: Any) -> PlatformIdentity:
    return PlatformIdentityFactory.create(
        community_user=CommunityUserFactory.create(display_name=name, **fields), platform=platform
    )


def _did(identity: PlatformIdentity, kind: str, ago: dt.timedelta, n: int = 1) -> None:
    for _ in range(n):
        UserInteractionFactory.create(identity=identity, kind=kind, occurred_at=T0 - ago)


def _engaged(name: str = "Maya Chen", *, platform: str = "telegram", **fields: Any) -> PlatformIdentity:
    """Someone well above the default minimum score: 4 replies and a DM this week, 3 days active (19 points)."""
    identity = _person(name, platform=platform, **fields)
    _did(identity, "reply", DAY, n=2)
    _did(identity, "reply", 2 * DAY, n=2)
    _did(identity, "dm", 3 * DAY)
    return identity


def _run(**parameters: Any) -> AgentResult:
    ctx = AgentContext(
        run_id=1, agent_name="conversion", trigger="manual", now=timezone.now(), parameters=parameters
    )
    return ConversionAgent().execute(ctx)


def _dms() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(kind=OutboxMessage.Kind.DM).order_by("pk"))


# --- the score --------------------------------------------------------------------------------------------------


def test_the_score_adds_weighted_recent_and_older_points_and_active_days(clock: Any) -> None:
    maya = _person("Maya")
    _did(maya, "reply", DAY + dt.timedelta(hours=1), n=2)  # recent: 2 x 3, one day
    _did(maya, "dm", 3 * DAY)  # recent: 4
    _did(maya, "join", 2 * DAY)  # no weight: not counted at all
    _did(maya, "like", 10 * DAY)  # older: 1
    _did(maya, "message", 20 * DAY)  # older: 2
    _did(maya, "reply", 31 * DAY)  # outside the window
    _did(maya, "reply", -DAY)  # in the future of this run: not yet
    theo = _person("Theo", platform="discord")
    _did(theo, "reaction", 8 * DAY)  # older: 1
    _did(theo, "repost", 7 * DAY)  # exactly a week ago is older: 2

    rows = {
        row["community_user_id"]: row
        for row in community_user_scores(since=T0 - 30 * DAY, now=T0, weights=WEIGHTS)
    }

    assert set(rows) == {maya.community_user_id, theo.community_user_id}
    components = (
        "interactions",
        "recent_interactions",
        "recent_points",
        "older_points",
        "active_days",
        "score",
    )
    # 10 recent points + 0.5 x 3 older points + 4 active days
    assert tuple(rows[maya.community_user_id][c] for c in components) == (5, 3, 10.0, 3.0, 4, 15.5)
    # 0 + 0.5 x 3 + 2 active days
    assert tuple(rows[theo.community_user_id][c] for c in components) == (2, 0, 0.0, 3.0, 2, 3.5)


def test_the_weights_and_the_formula_are_parameters(clock: Any) -> None:
    maya = _person("Maya")
    _did(maya, "reply", DAY, n=2)
    _did(maya, "like", 10 * DAY)

    (row,) = community_user_scores(
        since=T0 - 30 * DAY,
        now=T0,
        weights={"reply": 10.0, "like": 0.0},
        recent_days=3,
        older_factor=0.25,
        active_day_points=2.0,
    )

    assert (row["interactions"], row["recent_points"], row["older_points"], row["active_days"]) == (
        2,
        20.0,
        0,
        1,
    )
    assert row["score"] == 22.0


def test_storing_writes_changed_scores_and_zeroes_people_gone_quiet(clock: Any) -> None:
    maya = _person("Maya")
    _did(maya, "reply", DAY)
    quiet = CommunityUserFactory.create(engagement_score=9.0, score_updated_at=T0 - 5 * DAY)
    never = CommunityUserFactory.create()

    stored = community_user_scores_store(since=T0 - 30 * DAY, now=T0, weights=WEIGHTS)

    assert (stored.scored, stored.changed, stored.zeroed) == (1, 1, 1)
    people = {p.pk: p for p in CommunityUser.objects.all()}
    assert (
        people[maya.community_user_id].engagement_score,
        people[maya.community_user_id].score_updated_at,
    ) == (
        4.0,
        T0,
    )
    assert (people[quiet.pk].engagement_score, people[quiet.pk].score_updated_at) == (0.0, T0)
    assert (people[never.pk].engagement_score, people[never.pk].score_updated_at) == (0.0, None)

    clock.move_to(T0 + dt.timedelta(hours=1))
    again = community_user_scores_store(since=T0 - 30 * DAY, now=timezone.now(), weights=WEIGHTS)

    # Nothing changed in the hour, so nothing was written.
    assert (again.scored, again.changed, again.zeroed) == (1, 0, 0)
    assert CommunityUser.objects.get(pk=maya.community_user_id).score_updated_at == T0


def _seed_people(people: int) -> None:
    for n in range(people):
        identity = _person(f"Person {n}", platform=("x", "telegram", "discord")[n % 3])
        _did(identity, "reply", (n % 5 + 1) * DAY, n=2)
        _did(identity, "like", (n % 20 + 8) * DAY)


def _score_and_choose(people: int) -> None:
    formula = ScoreFormula(
        weights=WEIGHTS, window_days=30, recent_days=7, older_factor=0.5, active_day_points=1.0
    )
    assert len(list(community_user_scores(since=T0 - 30 * DAY, now=T0, weights=WEIGHTS))) == people
    stored = community_user_scores_store(since=T0 - 30 * DAY, now=T0, weights=WEIGHTS)
    count, targets = conversion_targets_choose(
        now=T0,
        formula=formula,
        min_score=1.0,
        cooldown_days=30,
        platforms=["x", "telegram", "discord"],
        limit=3,
    )
    assert (stored.scored, count, len(targets)) == (people, people, 3)


@pytest.mark.parametrize("people", [5, 50])
def test_scoring_and_choosing_take_a_fixed_number_of_queries_for_5_or_50_people(
    clock: Any, django_assert_num_queries: Any, people: int
) -> None:
    _seed_people(people)

    # The scores read (1); stored: the update, the zeroing, the count (3); the eligible counted and the best
    # three read (2); their components, their mix and their accounts (3).
    with django_assert_num_queries(9):
        _score_and_choose(people)


# --- who is approached ------------------------------------------------------------------------------------------


def test_members_moderated_people_bots_and_the_recently_approached_are_left_alone(
    clock: Any, pro: Plan
) -> None:
    maya = _engaged("Maya")
    member = _engaged("Member", portal_user=UserFactory.create())
    EntitlementFactory.create(user=member.community_user.portal_user, key="portal.premium")
    lapsed = _engaged("Lapsed", portal_user=UserFactory.create())
    EntitlementFactory.create(
        user=lapsed.community_user.portal_user, starts_at=T0 - 40 * DAY, ends_at=T0 - 10 * DAY
    )
    _engaged("Banned", standing=ModerationStanding.BANNED)
    _engaged("Muted", standing=ModerationStanding.MUTED)
    _engaged("Muted for now", muted_until=T0 + DAY)
    bot = _engaged("Helper")
    PlatformIdentityFactory.create(community_user=bot.community_user, platform="discord", is_bot=True)
    recent = _engaged("Approached last week")
    ConversionAttemptFactory.create(community_user=recent.community_user, sent_at=T0 - 10 * DAY)
    blocked = _engaged("Blocked us")
    ConversionAttemptFactory.create(
        community_user=blocked.community_user, status=ConversionStatus.FAILED, sent_at=None
    )
    earlier = _engaged("Approached long ago")
    with time_machine.travel(T0 - 40 * DAY, tick=False):
        ConversionAttemptFactory.create(
            community_user=earlier.community_user, status=ConversionStatus.IGNORED
        )
    quiet = _person("Quiet")
    _did(quiet, "like", DAY)  # 2 points: below the minimum score
    unreachable = CommunityUserFactory.create(display_name="Unreachable")
    UserInteractionFactory.create(
        community_user=unreachable, identity=None, platform="x", kind="reply", occurred_at=T0 - DAY
    )

    result = _run()

    approached = set(
        ConversionAttempt.objects.filter(sent_at=T0).values_list("community_user__display_name", flat=True)
    )
    assert approached == {"Maya", "Lapsed", "Approached long ago"}
    assert result.counters["candidates"] == 3
    assert result.counters["offers_sent"] == 3
    assert result.counters["scored"] == CommunityUser.objects.filter(engagement_score__gt=0).count() == 12
    assert {dm.channel for dm in _dms()} >= {f"dm:{maya.external_id}"}
    assert len(_dms()) == 3


def test_a_run_offers_at_most_the_cap_best_first_and_a_second_run_nobody_twice(clock: Any, pro: Plan) -> None:
    people = [_engaged(f"Person {n}") for n in range(4)]
    _did(people[2], "dm", 4 * DAY, n=3)  # the most engaged

    first = _run(max_offers_per_run=2)

    assert (first.counters["candidates"], first.counters["offers_sent"]) == (4, 2)
    chosen = list(
        ConversionAttempt.objects.order_by("-score", "pk").values_list("community_user_id", flat=True)
    )
    assert chosen[0] == people[2].community_user_id
    second = _run(max_offers_per_run=2)
    third = _run(max_offers_per_run=2)

    assert (second.counters["candidates"], second.counters["offers_sent"]) == (2, 2)
    assert (third.counters["candidates"], third.counters["offers_sent"]) == (0, 0)
    assert ConversionAttempt.objects.values("community_user_id").distinct().count() == 4


# --- the message ------------------------------------------------------------------------------------------------


def test_the_offer_goes_by_direct_message_where_they_engage_most_with_the_tracked_link(
    clock: Any, pro: Plan
) -> None:
    on_x = _person("Maya Chen", platform="x")
    person = on_x.community_user
    on_telegram = PlatformIdentityFactory.create(
        community_user=person, platform="telegram", external_id="5550001"
    )
    _did(on_x, "reply", DAY, n=2)  # 6 points on X
    _did(on_telegram, "comment", 2 * DAY, n=2)  # 6 points on Telegram...
    _did(on_telegram, "reaction", 9 * DAY)  # ...and 1 more

    result = _run()

    assert (result.counters["offers_sent"], result.counters["offers_failed"]) == (1, 0)
    attempt = ConversionAttempt.objects.get()
    (dm,) = _dms()
    assert (dm.platform, dm.channel) == ("telegram", "dm:5550001")
    assert LINK.findall(dm.text) == [str(attempt.token)]
    assert dm.text == (
        "Hi Maya! Thanks for being such an active part of the CoinLink community lately.\n\n"
        "Try Pro free for 7 days: the members' analysis, the private channels and the library.\n\n"
        f"Have a look: {SITE}/o/{attempt.token}/"
    )
    assert (attempt.status, attempt.platform, attempt.sent_at, attempt.error) == (
        ConversionStatus.SENT,
        "telegram",
        T0,
        "",
    )
    assert (attempt.offer_kind, attempt.plan, attempt.promotion_code, attempt.variant) == (
        ConversionAttempt.OfferKind.TRIAL_LINK,
        pro,
        "",
        None,
    )
    assert attempt.message == dm.text
    # 12 recent points, 0.5 x 1 older, 3 active days
    assert attempt.score == 15.5
    breakdown = attempt.score_breakdown
    assert {k: breakdown[k] for k in ("score", "recent_points", "older_points", "active_days")} == {
        "score": 15.5,
        "recent_points": 12.0,
        "older_points": 1.0,
        "active_days": 3,
    }
    assert (breakdown["interactions"], breakdown["recent_interactions"]) == (5, 4)
    assert breakdown["kinds"] == {"comment": 2, "reaction": 1, "reply": 2}
    assert breakdown["platform_points"] == {"telegram": 7.0, "x": 6.0}
    assert breakdown["platform"] == "telegram"
    assert breakdown["formula"].startswith("recent_points + 0.5 * older_points + 1 * active_days")
    person.refresh_from_db()
    assert (person.engagement_score, person.score_updated_at) == (15.5, T0)


def test_the_variant_of_the_running_offer_test_writes_the_copy(clock: Any, pro: Plan) -> None:
    test = ABTestFactory.create(slug="offer-tone", subject=ABTest.Subject.OFFER)
    direct = ABTestVariantFactory.create(
        test=test, key="A", payload={"tone": "direct", "cta": "Start your free week"}, weight=1
    )
    ABTestVariantFactory.create(test=test, key="B", payload={"tone": "exclusive"}, weight=0)
    maya = _engaged("Maya Chen", platform="discord")

    _run()

    attempt = ConversionAttempt.objects.get()
    assert attempt.variant == direct
    assignment = Assignment.objects.get(test=test)
    assert (assignment.subject_key, assignment.variant) == (
        f"community_user:{maya.community_user_id}",
        direct,
    )
    (dm,) = _dms()
    assert (dm.platform, dm.channel) == ("discord", f"dm:{maya.external_id}")
    assert dm.text == (
        "Maya, you're one of the most engaged people in our community.\n\n"
        "Try Pro free for 7 days: the members' analysis, the private channels and the library.\n\n"
        f"Start your free week: {SITE}/o/{attempt.token}/"
    )


def test_someone_who_had_a_trial_is_offered_the_promotion_code(clock: Any, pro: Plan) -> None:
    former = UserFactory.create()
    SubscriptionFactory.create(
        user=former,
        plan=pro,
        price=pro.prices.get(),
        status=SubscriptionStatus.CANCELED,
        trial_end=T0 - 60 * DAY,
    )
    _engaged("Ada Lovelace", portal_user=former)

    _run(promotion_code="COMEBACK30")

    attempt = ConversionAttempt.objects.get()
    assert (attempt.offer_kind, attempt.promotion_code) == (
        ConversionAttempt.OfferKind.PROMOTION_CODE,
        "COMEBACK30",
    )
    assert "Use the code COMEBACK30 at checkout for a discount on Pro." in _dms()[0].text


def test_a_discount_variant_offers_its_own_promotion_code(clock: Any, pro: Plan) -> None:
    test = ABTestFactory.create(slug="offer-discount", subject=ABTest.Subject.OFFER)
    deeper = ABTestVariantFactory.create(
        test=test, key="B", payload={"offer": "promotion_code", "promotion_code": "WELCOME30"}, weight=1
    )
    ABTestVariantFactory.create(test=test, key="A", payload={}, weight=0)
    _engaged("Ada Lovelace")

    _run(promotion_code="WELCOME20")

    attempt = ConversionAttempt.objects.get()
    assert attempt.variant == deeper
    assert (attempt.offer_kind, attempt.promotion_code) == (
        ConversionAttempt.OfferKind.PROMOTION_CODE,
        "WELCOME30",
    )
    assert "Use the code WELCOME30 at checkout for a discount on Pro." in _dms()[0].text


# --- failures -----------------------------------------------------------------------------------------------------

TOKEN = "123456:TEST-token"


def test_a_person_who_blocked_the_bot_fails_the_offer_with_telegrams_error(
    settings: Any, httpserver: HTTPServer, clock: Any, pro: Plan
) -> None:
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    httpserver.expect_oneshot_request(f"/bot{TOKEN}/sendMessage", method="POST").respond_with_json(
        {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}, status=403
    )
    maya = _engaged("Maya")

    result = _run()

    (request, _), *_ = httpserver.log
    assert request.form["chat_id"] == maya.external_id
    assert LINK.search(request.form["text"])
    assert (result.counters["offers_sent"], result.counters["offers_failed"]) == (0, 1)
    attempt = ConversionAttempt.objects.get()
    assert attempt.status == ConversionStatus.FAILED
    assert attempt.sent_at is None
    assert "bot was blocked by the user" in attempt.error

    again = _run()  # the failed offer keeps the person in the cooldown: Telegram is not asked again

    assert (again.counters["candidates"], again.counters["offers_failed"]) == (0, 0)
    assert len(httpserver.log) == 1


class _FlakyTelegram:
    """The outbox twin behind a Telegram that times out ``failures`` times first."""

    platform = "telegram"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.twin = OutboxPublisher("telegram")

    def publish(self, post: OutboundPost) -> PublishResult:
        if self.failures:
            self.failures -= 1
            raise TransientError("Telegram: timed out", service="telegram")
        return self.twin.publish(post)


def test_an_offer_the_platform_could_not_take_is_sent_again_next_run_with_the_same_link(
    clock: Any, pro: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = _FlakyTelegram(failures=1)
    real = conversion.get_publisher
    monkeypatch.setattr(conversion, "get_publisher", lambda p: flaky if p == "telegram" else real(p))
    _engaged("Maya")
    _engaged("Theo")

    first = _run()

    # The first send timed out, so Telegram's other offer waits too.
    assert (first.counters["offers_sent"], first.counters["offers_undelivered"]) == (0, 1)
    (attempt,) = ConversionAttempt.objects.all()
    assert (attempt.status, attempt.sent_at, attempt.error) == (
        ConversionStatus.SENT,
        None,
        "retrying: Telegram: timed out",
    )
    assert _dms() == []

    clock.move_to(T0 + dt.timedelta(hours=3))
    second = _run()

    assert (second.counters["offers_sent"], second.counters["offers_undelivered"]) == (2, 0)
    attempt.refresh_from_db()
    assert (attempt.sent_at, attempt.error) == (T0 + dt.timedelta(hours=3), "")
    assert ConversionAttempt.objects.count() == 2
    dms = _dms()
    assert [LINK.findall(dm.text) for dm in dms] == [
        [str(a.token)] for a in ConversionAttempt.objects.order_by("created_at", "pk")
    ]


def test_an_offer_undelivered_for_a_day_fails(clock: Any, pro: Plan) -> None:
    with time_machine.travel(T0 - 2 * DAY, tick=False):
        stuck = ConversionAttemptFactory.create(sent_at=None, error="retrying: Telegram: timed out")

    result = _run()

    stuck.refresh_from_db()
    assert stuck.status == ConversionStatus.FAILED
    assert stuck.error.startswith("not delivered within 1 day, 0:00:00: retrying: Telegram: timed out")
    assert result.counters["offers_failed"] == 1


def test_offers_not_clicked_within_n_days_are_ignored(clock: Any, pro: Plan) -> None:
    old = ConversionAttemptFactory.create(sent_at=T0 - 15 * DAY)
    fresh = ConversionAttemptFactory.create(sent_at=T0 - 13 * DAY)
    clicked = ConversionAttemptFactory.create(
        sent_at=T0 - 20 * DAY, status=ConversionStatus.CLICKED, clicked_at=T0 - 19 * DAY
    )
    converted = ConversionAttemptFactory.create(sent_at=T0 - 20 * DAY, status=ConversionStatus.CONVERTED)

    result = _run(ignore_after_days=14)
    again = _run(ignore_after_days=14)

    statuses = dict(ConversionAttempt.objects.values_list("pk", "status"))
    assert statuses == {
        old.pk: ConversionStatus.IGNORED,
        fresh.pk: ConversionStatus.SENT,
        clicked.pk: ConversionStatus.CLICKED,
        converted.pk: ConversionStatus.CONVERTED,
    }
    assert (result.counters["marked_ignored"], again.counters["marked_ignored"]) == (1, 0)


def test_parameters_are_checked() -> None:
    with pytest.raises(Exception, match="unknown interaction kinds: poke"):
        ConversionAgent.validate_parameters({"weights": {"poke": 1.0}})
    with pytest.raises(Exception, match="recent_days must be more than 0 and at most window_days"):
        ConversionAgent.validate_parameters({"recent_days": 40.0})
    with pytest.raises(Exception, match="min_score must be more than 0"):
        ConversionAgent.validate_parameters({"min_score": 0.0})


# --- through the framework, and the whole funnel ----------------------------------------------------------------


def test_a_run_through_the_framework_records_its_counters(clock: Any, pro: Plan) -> None:
    _engaged("Maya")
    run = agent_run_create(agent_name="conversion", trigger="manual")

    agent_run_execute(run_id=run.pk)

    run = AgentRun.objects.get(pk=run.pk)
    assert run.status == AgentRunStatus.SUCCEEDED, run.error
    assert {
        k: run.counters[k] for k in ("scored", "candidates", "offers_sent", "offers_failed", "marked_ignored")
    } == {
        "scored": 1,
        "candidates": 1,
        "offers_sent": 1,
        "offers_failed": 0,
        "marked_ignored": 0,
    }


def test_from_the_direct_message_to_a_subscription_credited_to_the_offer(
    client: Client, clock: Any, pro: Plan
) -> None:
    maya = _engaged("Maya")
    _run()
    (dm,) = _dms()
    link = LINK.search(dm.text)
    assert link is not None
    member = UserFactory.create(email="maya@example.com")
    client.force_login(member)

    clock.move_to(T0 + dt.timedelta(hours=2))
    clicked = client.get(link.group(0).removeprefix(SITE))
    assert clicked.status_code == 302
    plans = client.get(clicked["Location"])
    assert plans.status_code == 200
    started = client.post(reverse("portal:checkout_start", args=["pro"]), {"interval": "month"})
    session = CheckoutTwinSession.objects.get()
    assert started["Location"] == reverse("portal:billing_twin_checkout", args=[session.id])
    assert session.metadata["conversion_token"] == link.group(1)
    clock.move_to(T0 + dt.timedelta(hours=2, minutes=5))
    paid = client.post(reverse("portal:billing_twin_checkout", args=[session.id]))

    assert paid.status_code == 303
    subscription = Subscription.objects.get(user=member)
    assert subscription.status == SubscriptionStatus.TRIALING
    attempt = ConversionAttempt.objects.get()
    assert (attempt.community_user_id, attempt.status, attempt.subscription) == (
        maya.community_user_id,
        ConversionStatus.CONVERTED,
        subscription,
    )
    assert (attempt.sent_at, attempt.clicked_at, attempt.converted_at) == (
        T0,
        T0 + dt.timedelta(hours=2),
        T0 + dt.timedelta(hours=2, minutes=5),
    )
    click = UserInteraction.objects.get(kind="offer_click")
    assert (click.community_user_id, click.platform, click.occurred_at) == (
        maya.community_user_id,
        "telegram",
        T0 + dt.timedelta(hours=2),
    )
