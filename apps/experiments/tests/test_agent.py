"""The A/B testing agent end to end on the database: every running test evaluated in one pass, decided tests
ended with their figures and series, a test paused meanwhile left alone, and the hypothesis queue starting
the next test per subject (invalid hypotheses skipped)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from apps.agents.base import AgentContext, AgentResult
from apps.agents.models import PerformanceSnapshot
from apps.experiments.agents import ABTestingAgent
from apps.experiments.factories import ABTestFactory, ABTestVariantFactory, HypothesisFactory
from apps.experiments.models import ABTest, ABTestVariant, Assignment, Hypothesis, Outcome
from apps.experiments.selectors import ab_test_list_decided
from apps.experiments.services import ab_tests_evaluate, hypothesis_start_next

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=3, seconds=42)


def _offer_test(slug: str, clicks: dict[str, tuple[int, int]], **fields: Any) -> ABTest:
    """An offer test whose variants were shown ``exposures`` times and clicked ``clicks`` times."""
    values = {"sequential_tuning": 600, "min_sample_size": 20} | fields
    test = ABTestFactory.create(
        slug=slug, subject=ABTest.Subject.OFFER, metric="click", started_at=T0, **values
    )
    for key, (exposures, clicked) in clicks.items():
        variant = ABTestVariantFactory.create(test=test, key=key, is_control=key == "A")
        assignments = Assignment.objects.bulk_create(
            Assignment(
                test=test, variant=variant, subject_key=f"community_user:{slug}-{key}-{n}", exposed_at=T0
            )
            for n in range(exposures)
        )
        Outcome.objects.bulk_create(
            Outcome(assignment=a, test=test, variant=variant, metric="click", value=1.0, recorded_at=T0)
            for a in assignments[:clicked]
        )
    return test


def _run(now: dt.datetime = NOW) -> AgentResult:
    ctx = AgentContext(run_id=1, agent_name="ab_testing", trigger="manual", now=now, parameters={})
    return ABTestingAgent().execute(ctx)


def test_evaluation_writes_results_ends_decided_tests_and_records_the_series() -> None:
    decided = _offer_test("clear", {"A": (300, 60), "B": (300, 120)})
    running = ABTestFactory.create(
        slug="close", subject=ABTest.Subject.POST, started_at=T0, min_sample_size=20
    )
    ABTestVariantFactory.create(test=running, key="A", is_control=True)
    ABTestVariantFactory.create(test=running, key="B", is_control=False)
    paused = _offer_test("paused", {"A": (300, 60), "B": (300, 120)}, status=ABTest.Status.PAUSED)

    evaluations = ab_tests_evaluate(now=NOW)

    assert [(e.slug, e.decision, e.winner_key) for e in evaluations] == [
        ("clear", "winner", "B"),
        ("close", "", None),
    ]
    decided.refresh_from_db()
    running.refresh_from_db()
    paused.refresh_from_db()
    assert (decided.status, decided.decision, decided.winner, decided.decided_at, decided.ended_at) == (
        ABTest.Status.COMPLETED,
        ABTest.Decision.WINNER,
        ABTestVariant.objects.get(test=decided, key="B"),
        NOW,
        NOW,
    )
    assert decided.result == evaluations[0].result
    assert (decided.evaluated_at, decided.srm_p_value) == (NOW, 1.0)
    assert (running.status, running.decision, running.evaluated_at) == (ABTest.Status.RUNNING, "", NOW)
    assert running.result["reason"] == "waiting for 20 units per variant on engagement_rate: A 0, B 0"
    assert (paused.status, paused.result, paused.evaluated_at) == (ABTest.Status.PAUSED, {}, None)

    minute = NOW.replace(second=0)
    series = {
        (s.metric, s.scope): (s.value, s.sample_size, s.details, s.captured_at)
        for s in PerformanceSnapshot.objects.all()
    }
    comparison = decided.result["metrics"]["click"]["comparisons"]["B"]
    assert series == {
        ("experiment.exposures", "test:clear|variant:A"): (300.0, 300, {}, minute),
        ("experiment.exposures", "test:clear|variant:B"): (300.0, 300, {}, minute),
        ("experiment.exposures", "test:close|variant:A"): (0.0, 0, {}, minute),
        ("experiment.exposures", "test:close|variant:B"): (0.0, 0, {}, minute),
        ("experiment.effect", "test:clear|variant:B|metric:click"): (
            comparison["effect"],
            300,
            {
                "ci": comparison["ci"],
                "chance_to_win": comparison["chance_to_win"],
                "p_value": comparison["adjusted_p_value"],
            },
            minute,
        ),
        ("experiment.effect", "test:close|variant:B|metric:engagement_rate"): (
            0.0,
            0,
            {"ci": [0.0, 0.0], "chance_to_win": 0.5, "p_value": 1.0},
            minute,
        ),
    }
    assert [t.slug for t in ab_test_list_decided(since=NOW)] == ["clear"]
    assert ab_test_list_decided(since=NOW + dt.timedelta(seconds=1)) == []


def test_a_second_evaluation_in_the_same_minute_replaces_its_readings() -> None:
    ABTestFactory.create(slug="tone", started_at=T0)

    ab_tests_evaluate(now=NOW)
    ab_tests_evaluate(now=NOW + dt.timedelta(seconds=5))

    assert PerformanceSnapshot.objects.count() == 0  # no variants: nothing to chart
    assert ABTest.objects.get().evaluated_at == NOW + dt.timedelta(seconds=5)


def test_the_queue_starts_the_first_valid_hypothesis_when_nothing_runs() -> None:
    later = HypothesisFactory.create(title="Later", position=5)
    broken = HypothesisFactory.create(
        title="One variant", position=1, variants=[{"key": "A", "is_control": True}]
    )
    unknown = HypothesisFactory.create(title="Likes", position=2, metric="likes")
    first = HypothesisFactory.create(
        title="Question openings",
        position=3,
        secondary_metrics=[],
        horizon_days=10,
        min_sample_size=50,
        variants=[
            {
                "key": "A",
                "name": "Statement",
                "payload": {"opening": "statement"},
                "weight": 2,
                "is_control": True,
            },
            {
                "key": "B",
                "name": "Question",
                "payload": {"opening": "question"},
                "weight": 1,
                "is_control": False,
            },
        ],
    )
    offer = HypothesisFactory.create(subject=ABTest.Subject.OFFER, metric="click", position=0)

    test = hypothesis_start_next(subject="post", now=NOW)

    assert test is not None
    assert (test.name, test.slug, test.subject, test.metric, test.status, test.started_at) == (
        "Question openings",
        f"question-openings-h{first.pk}",
        "post",
        "engagement_rate",
        ABTest.Status.RUNNING,
        NOW,
    )
    assert (test.horizon_days, test.min_sample_size, test.hypothesis) == (10, 50, first.statement)
    assert list(test.variants.values_list("key", "name", "payload", "weight", "is_control")) == [
        ("A", "Statement", {"opening": "statement"}, 2, True),
        ("B", "Question", {"opening": "question"}, 1, False),
    ]
    statuses = dict(Hypothesis.objects.values_list("pk", "status"))
    assert statuses == {
        broken.pk: "skipped",
        unknown.pk: "skipped",
        first.pk: "started",
        later.pk: "queued",
        offer.pk: "queued",
    }
    assert Hypothesis.objects.get(pk=first.pk).test == test
    # A test on the subject is running now: the queue waits.
    assert hypothesis_start_next(subject="post", now=NOW) is None
    assert Hypothesis.objects.get(pk=later.pk).status == "queued"


def test_the_agent_decides_then_starts_the_next_test_per_subject() -> None:
    _offer_test("offer-copy", {"A": (300, 60), "B": (300, 120)})
    queued_offer = HypothesisFactory.create(subject=ABTest.Subject.OFFER, metric="click", title="Discount 20")
    queued_post = HypothesisFactory.create(title="Emoji openings")

    result = _run()

    assert dict(result.counters) == {
        "evaluated": 1,
        "decided.winner": 1,
        "decided.no_difference": 0,
        "decided.broken": 0,
        "started": 2,
    }
    assert result.summary == (
        "1 tests evaluated: 1 with a winner, 0 without a difference, 0 broken; 2 started "
        f"(emoji-openings-h{queued_post.pk}, discount-20-h{queued_offer.pk})"
    )
    assert set(ABTest.objects.filter(status=ABTest.Status.RUNNING).values_list("slug", flat=True)) == {
        f"emoji-openings-h{queued_post.pk}",
        f"discount-20-h{queued_offer.pk}",
    }

    again = _run(NOW + dt.timedelta(days=1))

    assert (again.counters["evaluated"], again.counters["started"]) == (2, 0)


def test_the_longest_names_fit_the_series_scopes() -> None:
    slug = "s" * 80  # ABTest.slug's longest
    key = "V" * 19  # ABTestVariant.key's longest is 20; the control is "A"
    test = _offer_test("long", {"A": (30, 3), key: (30, 6)}, secondary_metrics=["conversion"])
    ABTest.objects.filter(pk=test.pk).update(slug=slug)

    ab_tests_evaluate(now=NOW)

    scopes = set(
        PerformanceSnapshot.objects.filter(metric="experiment.effect").values_list("scope", flat=True)
    )
    assert f"test:{slug}|variant:{key}|metric:conversion" in scopes
