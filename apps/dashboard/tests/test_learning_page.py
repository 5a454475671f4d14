"""The self-learning page: operators only; each A/B test with its exposure over time and its effects with their
intervals, the bandit's weights over time, the strategy changes and the freeze switch; charts drawn on the
server as SVG; a fixed number of queries however many rows; and a fragment the page's script swaps in live."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone

from apps.accounts.factories import UserFactory
from apps.agents.models import PerformanceSnapshot
from apps.dashboard import charts
from apps.experiments.factories import ABTestFactory, ABTestVariantFactory
from apps.experiments.models import ABTest
from apps.learning.models import LearningControl, StrategyChange

pytestmark = pytest.mark.django_db

URL = "/dashboard/learning/"
FRAGMENT_URL = "/dashboard/learning/figures/"


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(UserFactory.create(is_staff=True))
    return client


def _decided_test(slug: str, *, now: dt.datetime) -> ABTest:
    test = ABTestFactory.create(
        slug=slug,
        name=f"Question openings {slug}",
        started_at=now - dt.timedelta(days=10),
        secondary_metrics=["click"],
    )
    ABTestVariantFactory.create(test=test, key="A", name="Statement", is_control=True)
    winner = ABTestVariantFactory.create(test=test, key="B", name="Question", is_control=False)
    result = {
        "srm_p_value": 0.62,
        "exposures": {"A": 400, "B": 405},
        "metrics": {
            "engagement_rate": {
                "variants": {"A": {"n": 400, "mean": 0.031}, "B": {"n": 405, "mean": 0.036}},
                "comparisons": {
                    "B": {
                        "effect": 0.161,
                        "ci": [0.052, 0.27],
                        "p_value": 0.0012,
                        "adjusted_p_value": 0.0024,
                        "chance_to_win": 0.998,
                        "significant": True,
                        "cuped": True,
                    }
                },
            }
        },
        "reason": "B lifted engagement_rate by 16.1% (interval 5.2% to 27.0%)",
    }
    ABTest.objects.filter(pk=test.pk).update(
        result=result,
        decision=ABTest.Decision.WINNER,
        winner=winner,
        status=ABTest.Status.COMPLETED,
        srm_p_value=0.62,
        evaluated_at=now,
    )
    PerformanceSnapshot.objects.bulk_create(
        PerformanceSnapshot(
            metric="experiment.exposures",
            scope=f"test:{slug}|variant:{key}",
            value=float(day * 40 + offset),
            captured_at=now - dt.timedelta(days=10 - day),
        )
        for day in range(1, 11)
        for key, offset in (("A", 0), ("B", 5))
    )
    return test


def _bandit(now: dt.datetime, arms: int = 6) -> None:
    PerformanceSnapshot.objects.bulk_create(
        PerformanceSnapshot(
            metric="bandit.weight",
            scope=f"arm:x|single_post|{bucket}|plain",
            value=weight * step / 5,
            captured_at=now - dt.timedelta(days=5 - step),
        )
        for step in range(1, 6)
        for bucket, weight in zip(
            ["morning", "afternoon", "evening", "night", "dawn", "late"][:arms],
            [0.5, 0.2, 0.1, 0.1, 0.06, 0.04],
            strict=False,
        )
    )


def test_anonymous_visitors_go_to_the_login_and_members_are_refused(client: Client) -> None:
    _decided_test("secret", now=timezone.now())

    anonymous = client.get(URL)
    anonymous_fragment = client.get(FRAGMENT_URL)
    client.force_login(UserFactory.create())
    member = client.get(URL)
    member_fragment = client.get(FRAGMENT_URL)

    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]
    assert anonymous_fragment.status_code == 302
    assert (member.status_code, member_fragment.status_code) == (403, 403)
    assert b"Question openings" not in member.content + member_fragment.content


def test_a_decided_test_shows_its_exposure_chart_effect_interval_and_table(staff_client: Client) -> None:
    _decided_test("tone", now=timezone.now())

    html = staff_client.get(URL).content.decode()

    assert "Question openings tone" in html
    assert "Winner: B · Question" in html
    assert 'aria-label="Cumulative exposures of Question openings tone by variant"' in html
    # Two series (A and B), ten points each, each point titled with its value.
    assert html.count('class="chart__line chart--c') >= 2
    assert "B · Question: 405 at" in html
    # The effect with its interval, marked significant, and the figures in the table.
    assert "chart__row--significant" in html
    assert "+16.1%" in html
    assert "+5.2% to +27.0%" in html
    assert "100%" in html  # chance to win 0.998 rounds to 100%
    assert "0.0024" in html
    assert "sample-ratio check p = 0.620" in html


def test_the_bandit_chart_shows_the_leading_arms_over_time(staff_client: Client) -> None:
    _bandit(timezone.now())

    html = staff_client.get(URL).content.decode()

    assert 'aria-label="Bandit weights of the leading x arms"' in html
    # The four arms with the largest weight now, the others left out.
    for bucket in ("morning", "afternoon", "evening", "night"):
        assert f"single_post · {bucket} · plain" in html
    assert "dawn" not in html
    assert "late" not in html


def test_changes_and_the_freeze_switch_are_shown(staff_client: Client) -> None:
    StrategyChange.objects.create(
        agent_name="content_strategist",
        parameter="platform_weights",
        source=StrategyChange.Source.STRATEGY_TUNING,
        status=StrategyChange.Status.APPLIED,
        reason="Telegram posts earned more than Discord posts",
    )
    LearningControl.objects.create(frozen=True, reason="launch week")

    html = staff_client.get(URL).content.decode()

    assert "content_strategist.platform_weights" in html
    assert "Telegram posts earned more than Discord posts" in html
    assert "Frozen." in html
    assert "launch week" in html


def test_an_empty_world_says_what_is_missing(staff_client: Client) -> None:
    html = staff_client.get(URL).content.decode()

    assert "No A/B test has run yet" in html
    assert "has not weighed any arm yet" in html
    assert "No strategy change yet" in html


def test_queries_do_not_grow_with_rows(staff_client: Client, django_assert_max_num_queries: Any) -> None:
    now = timezone.now()
    _decided_test("one", now=now)
    _bandit(now)
    staff_client.get(URL)
    with django_assert_max_num_queries(14) as few:
        staff_client.get(URL)
    for index in range(8):
        _decided_test(f"more-{index}", now=now)
    for index in range(20):
        StrategyChange.objects.create(
            agent_name="content_creation", parameter="tone", source="ab_test", reason=f"r{index}"
        )

    with django_assert_max_num_queries(len(few.captured_queries)):
        response = staff_client.get(URL)

    assert response.status_code == 200


def test_the_fragment_is_the_figures_alone_and_the_script_is_static(staff_client: Client) -> None:
    _decided_test("frag", now=timezone.now())

    page = staff_client.get(URL).content.decode()
    fragment = staff_client.get(FRAGMENT_URL).content.decode()

    assert "Question openings frag" in fragment
    assert "<html" not in fragment
    assert re.search(
        r'<script src="/static/js/live\.js[^"]*" defer></script><script src="/static/js/learning\.js[^"]*" defer>',
        page,
    )
    assert 'data-fragment-url="/dashboard/learning/figures/"' in page
    assert finders.find("js/learning.js") is not None


def test_chart_ticks_are_round_and_cover_the_range() -> None:
    assert charts.nice_ticks(0, 0.93) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert charts.nice_ticks(-0.034, 0.12) == [-0.05, 0.0, 0.05, 0.1, 0.15]
    assert charts.nice_ticks(3, 3) == [3.0, 4.0, 5.0, 6.0]


def test_charts_escape_labels_and_say_when_empty() -> None:
    now = timezone.now()
    drawn = charts.line_chart(
        [charts.Series(label="<b>arm</b>", points=[(now, 1.0), (now + dt.timedelta(hours=1), 2.0)])],
        label="Weights",
    )
    empty = charts.interval_chart([], label="Effect")

    assert "<b>arm</b>" not in drawn
    assert "&lt;b&gt;arm&lt;/b&gt;" in drawn
    assert "Effect: no results yet." in empty
