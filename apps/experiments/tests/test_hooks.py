"""The flows that feed the A/B tests: a published draft with a variant exposes its plan's assignment (with its
platform's engagement baseline as the pre-period value), the analytics run records each such post's
engagement rate, and the offer funnel exposes on send and records click, checkout, paid conversion and
revenue (Stripe through the fakes on loopback)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_httpserver import HTTPServer

from apps.agents.factories import PerformanceSnapshotFactory
from apps.billing.factories import PlanFactory, PlanPriceFactory
from apps.billing.models import ConversionAttempt, Plan, StripeEvent, StripeEventStatus
from apps.billing.services.conversion import (
    OfferTarget,
    OfferTerms,
    conversion_attempt_mark_clicked,
    conversion_offers_send,
    publishers_for,
)
from apps.billing.tasks import sync_entitlement
from apps.billing.tests.stripe_fakes import (
    FakeStripe,
    at_second,
    checkout_session_object,
    deliver,
    event,
    invoice_object,
    member,
    subscription_object,
    unique,
)
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.community.services.analytics import published_metrics_record
from apps.content.factories import ContentDraftFactory, PublishedContentFactory
from apps.content.models import ContentDraft, ContentFormat, DraftStatus, PublishedContent
from apps.content.services import content_draft_record_published
from apps.experiments.factories import ABTestFactory, ABTestVariantFactory, AssignmentFactory
from apps.experiments.models import ABTest, ABTestVariant, Assignment, Outcome
from apps.experiments.services import assignment_for
from apps.integrations.types import PostMetrics, PublishResult

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)


def _post_test() -> tuple[ABTest, ABTestVariant]:
    test = ABTestFactory.create(slug="post-tone")
    question = ABTestVariantFactory.create(test=test, key="A", is_control=True)
    return test, question


def _draft_with_variant(variant: ABTestVariant, **fields: Any) -> ContentDraft:
    draft = ContentDraftFactory.create(variant=variant, status=DraftStatus.PUBLISHING, **fields)
    assert assignment_for(subject="post", subject_key=f"plan:{draft.plan_id}") == variant
    return draft


# --- content and analytics ------------------------------------------------------------------------------------


def test_publishing_a_draft_with_a_variant_exposes_its_assignment_with_the_baseline() -> None:
    _, variant = _post_test()
    draft = _draft_with_variant(variant)
    scope = f"platform:{draft.platform}|format:{draft.format}"
    PerformanceSnapshotFactory.create(
        metric="engagement_rate", scope=scope, value=0.031, captured_at=T0 - dt.timedelta(days=2)
    )
    PerformanceSnapshotFactory.create(
        metric="engagement_rate", scope=scope, value=0.042, captured_at=T0 - dt.timedelta(hours=1)
    )
    PerformanceSnapshotFactory.create(
        metric="engagement_rate", scope=scope, value=0.9, captured_at=T0 + dt.timedelta(hours=1)
    )

    published = content_draft_record_published(
        draft_id=draft.pk, result=PublishResult(external_id="x-1"), now=T0
    )

    assert published is not None
    assignment = Assignment.objects.get(subject_key=f"plan:{draft.plan_id}")
    assert (assignment.exposed_at, assignment.pre_values) == (T0, {"engagement_rate": 0.042})


def test_a_draft_without_a_variant_or_a_baseline_exposes_accordingly() -> None:
    _, variant = _post_test()
    plain = ContentDraftFactory.create(status=DraftStatus.PUBLISHING)
    assignment_for(subject="post", subject_key=f"plan:{plain.plan_id}")
    tested = _draft_with_variant(variant)

    content_draft_record_published(draft_id=plain.pk, result=PublishResult(external_id="x-1"), now=T0)
    content_draft_record_published(draft_id=tested.pk, result=PublishResult(external_id="x-2"), now=T0)

    exposed = dict(Assignment.objects.values_list("subject_key", "exposed_at"))
    assert exposed == {f"plan:{plain.plan_id}": None, f"plan:{tested.plan_id}": T0}
    assert Assignment.objects.get(subject_key=f"plan:{tested.plan_id}").pre_values == {}


def _published(variant: ABTestVariant | None, external_id: str) -> PublishedContent:
    draft = ContentDraftFactory.create(variant=variant, status=DraftStatus.PUBLISHED)
    if variant is not None:
        AssignmentFactory.create(
            variant=variant,
            subject_key=f"plan:{draft.plan_id}",
            exposed_at=T0,
            pre_values={"engagement_rate": 0.04},
        )
    return PublishedContentFactory.create(
        draft=draft, platform="x", format=ContentFormat.SINGLE_POST, external_id=external_id
    )


def _reading(external_id: str, likes: int) -> PostMetrics:
    return PostMetrics(external_id=external_id, metrics={"impressions": 1000, "likes": likes})


def test_analytics_records_the_engagement_rate_of_posts_with_a_variant() -> None:
    _, variant = _post_test()
    tested = _published(variant, "1")
    plain = _published(None, "2")
    unexposed_draft = ContentDraftFactory.create(variant=variant, status=DraftStatus.PUBLISHED)
    unexposed = PublishedContentFactory.create(draft=unexposed_draft, platform="x", external_id="3")

    published_metrics_record(
        posts=[tested, plain, unexposed],
        fetched={"x": [_reading("1", 50), _reading("2", 20), _reading("3", 10)]},
        now=T0,
    )
    published_metrics_record(
        posts=[tested], fetched={"x": [_reading("1", 70)]}, now=T0 + dt.timedelta(hours=1)
    )

    assert tested.draft is not None
    assert list(
        Outcome.objects.values_list("assignment__subject_key", "metric", "value", "pre_value", "recorded_at")
    ) == [(f"plan:{tested.draft.plan_id}", "engagement_rate", 0.07, 0.04, T0 + dt.timedelta(hours=1))]


def test_the_outcomes_add_no_query_per_post() -> None:
    _, variant = _post_test()

    def queries(count: int) -> int:
        posts = [_published(variant, unique("post")) for _ in range(count)]
        fetched = {"x": [_reading(p.external_id, 10) for p in posts]}
        with CaptureQueriesContext(connection) as captured:
            published_metrics_record(posts=posts, fetched=fetched, now=timezone.now())
        return len(captured)

    few, many = queries(2), queries(12)

    assert few == many
    assert Outcome.objects.count() == 14


# --- billing --------------------------------------------------------------------------------------------------


@pytest.fixture
def offer_variant() -> ABTestVariant:
    test = ABTestFactory.create(slug="offer-tone", subject=ABTest.Subject.OFFER, metric="click")
    return ABTestVariantFactory.create(test=test, key="A", payload={"tone": "direct"}, is_control=True)


@pytest.fixture
def pro(settings: Any) -> Plan:
    settings.TELEGRAM_BACKEND = "outbox"
    settings.SITE_URL = "https://coinlink.example"
    settings.STRIPE_SECRET_KEY = ""
    plan = PlanFactory.create(slug="pro", name="Pro", trial_days=7)
    PlanPriceFactory.create(plan=plan, interval="month", amount_minor=2900)
    return plan


def _send_offer(plan: Plan) -> ConversionAttempt:
    identity = PlatformIdentityFactory.create(
        community_user=CommunityUserFactory.create(), platform="telegram"
    )
    target = OfferTarget(person=identity.community_user, identity=identity, score=20.0, breakdown={})
    outcome = conversion_offers_send(
        targets=[target], terms=OfferTerms(plan=plan), publishers=publishers_for(["telegram"])
    )
    assert outcome.sent == 1
    return ConversionAttempt.objects.get(community_user=identity.community_user)


def _outcomes() -> dict[str, float]:
    return dict(Outcome.objects.values_list("metric", "value"))


def test_a_sent_offer_exposes_and_a_click_is_recorded_once(pro: Plan, offer_variant: ABTestVariant) -> None:
    attempt = _send_offer(pro)

    assignment = Assignment.objects.get()
    assert (assignment.subject_key, assignment.variant, assignment.exposed_at) == (
        f"community_user:{attempt.community_user_id}",
        offer_variant,
        attempt.sent_at,
    )
    assert _outcomes() == {}

    conversion_attempt_mark_clicked(token=str(attempt.token), at=T0)
    conversion_attempt_mark_clicked(token=str(attempt.token), at=T0 + dt.timedelta(hours=1))

    assert list(Outcome.objects.values_list("metric", "value", "recorded_at")) == [("click", 1.0, T0)]


def test_an_offer_outside_any_test_records_nothing(pro: Plan) -> None:
    attempt = _send_offer(pro)

    conversion_attempt_mark_clicked(token=str(attempt.token), at=T0)

    assert (Assignment.objects.count(), Outcome.objects.count()) == (0, 0)


@pytest.fixture
def fake_stripe(httpserver: HTTPServer, settings: Any) -> FakeStripe:
    return FakeStripe.install(httpserver, settings)


@pytest.fixture
def process(client: Client, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(sync_entitlement, "delay", lambda pk: None)

    def run(data: dict[str, Any]) -> StripeEvent:
        with django_capture_on_commit_callbacks(execute=True):
            assert deliver(client, data).status_code == 200
        stored = StripeEvent.objects.get(stripe_id=data["id"])
        assert stored.status == StripeEventStatus.PROCESSED, stored.error
        return stored

    return run


def _subscription(m: Any, now: dt.datetime, *, status: str) -> dict[str, Any]:
    return subscription_object(
        subscription_id=unique("sub"),
        customer=m.customer_id,
        price_id=str(m.price.stripe_price_id),
        status=status,
        period_start=now - dt.timedelta(days=1),
        period_end=now + dt.timedelta(days=29),
        trial_end=now + dt.timedelta(days=6) if status == "trialing" else None,
    )


def _checkout(m: Any, sub: dict[str, Any], attempt: ConversionAttempt) -> dict[str, Any]:
    return checkout_session_object(
        session_id=unique("cs"),
        customer=m.customer_id,
        subscription=sub["id"],
        user_id=m.user.pk,
        conversion_token=str(attempt.token),
    )


def _paid(m: Any, sub: dict[str, Any], amount: int) -> dict[str, Any]:
    invoice = invoice_object(invoice_id=unique("in"), customer=m.customer_id, subscription=sub["id"])
    invoice["amount_paid"] = amount
    return invoice


def test_a_trial_checkout_then_paid_invoices_record_conversion_and_revenue(
    pro: Plan, offer_variant: ABTestVariant, fake_stripe: FakeStripe, process: Any
) -> None:
    now = at_second(timezone.now())
    attempt = _send_offer(pro)
    conversion_attempt_mark_clicked(token=str(attempt.token), at=now)
    m = member(linked=False)
    sub = fake_stripe.put(_subscription(m, now, status="trialing"))

    process(event("checkout.session.completed", _checkout(m, sub, attempt), created=now))

    assert _outcomes() == {"click": 1.0, "checkout": 1.0}

    process(event("invoice.paid", _paid(m, sub, 0), created=now))
    assert _outcomes() == {"click": 1.0, "checkout": 1.0}

    fake_stripe.put(sub | {"status": "active", "trial_end": None, "trial_start": None})
    process(event("invoice.paid", _paid(m, sub, 2900), created=now + dt.timedelta(days=7)))
    process(event("invoice.paid", _paid(m, sub, 2900), created=now + dt.timedelta(days=37)))

    assert _outcomes() == {"click": 1.0, "checkout": 1.0, "conversion": 1.0, "revenue": 5800.0}


def test_a_paid_checkout_is_a_conversion_at_once(
    pro: Plan, offer_variant: ABTestVariant, fake_stripe: FakeStripe, process: Any
) -> None:
    now = at_second(timezone.now())
    attempt = _send_offer(pro)
    m = member(linked=False)
    sub = fake_stripe.put(_subscription(m, now, status="active"))

    process(event("checkout.session.completed", _checkout(m, sub, attempt), created=now))

    assert _outcomes() == {"checkout": 1.0, "conversion": 1.0}
