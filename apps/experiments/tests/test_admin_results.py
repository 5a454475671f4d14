"""The experiments admin: a test's results read as tables, and forms that refuse unknown metrics and
hypotheses the queue could not start."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.factories import UserFactory
from apps.experiments.admin import HypothesisForm, result_table
from apps.experiments.factories import ABTestFactory, HypothesisFactory
from apps.experiments.models import ABTest

pytestmark = pytest.mark.django_db

RESULT = {
    "evaluated_at": "2025-03-06T09:00:00+00:00",
    "srm_p_value": 0.8123,
    "exposures": {"A": 400, "B": 405},
    "metrics": {
        "engagement_rate": {
            "variants": {"A": {"n": 400, "mean": 0.031}, "B": {"n": 405, "mean": 0.036}},
            "comparisons": {
                "B": {
                    "effect": 0.1613,
                    "ci": [0.05, 0.27],
                    "p_value": 0.004,
                    "adjusted_p_value": 0.008,
                    "chance_to_win": 0.993,
                    "significant": True,
                    "cuped": True,
                }
            },
        }
    },
    "decision": "winner",
    "reason": "B beats A on engagement_rate by +16.1% (adjusted p = 0.008) <script>",
}


def test_the_result_reads_as_a_table_per_metric() -> None:
    html = str(result_table(ABTest(result=RESULT)))

    assert (
        "<p><strong>winner</strong>: B beats A on engagement_rate by +16.1% (adjusted p = 0.008) &lt;script&gt;"
        in html
    )
    assert "Sample-ratio check p = 0.8123 (below 0.001 the split is broken); exposures A 400, B 405" in html
    assert "<h4>engagement_rate</h4>" in html
    assert (
        "<tr><td>A</td><td>400</td><td>0.031</td><td>control</td><td></td><td></td><td></td><td></td></tr>"
        in html
    )
    assert (
        "<tr><td>B</td><td>405</td><td>0.036</td><td>+16.1%</td><td>+5.0% to +27.0%</td><td>0.0080</td>"
        "<td>99%</td><td>significant · CUPED</td></tr>"
    ) in html


def test_a_test_not_evaluated_yet_says_so() -> None:
    assert str(result_table(ABTest(result={}))) == "<p>Not evaluated yet.</p>"


def test_the_change_page_shows_the_results(client: Client) -> None:
    test = ABTestFactory.create(result=RESULT, decision=ABTest.Decision.WINNER)
    client.force_login(UserFactory.create(staff=True))

    page = client.get(reverse("admin:experiments_abtest_change", args=[test.pk])).content.decode()

    assert "<h4>engagement_rate</h4>" in page
    assert "+5.0% to +27.0%" in page


def test_creating_a_test_with_variants_weights_metrics_and_horizon(client: Client) -> None:
    client.force_login(UserFactory.create(staff=True, is_superuser=True))
    data = {
        "name": "CTA wording",
        "slug": "cta-wording",
        "subject": "offer",
        "hypothesis": "",
        "metric": "click",
        "secondary_metrics": '["checkout", "revenue"]',
        "status": "running",
        "started_at_0": "2025-03-03",
        "started_at_1": "09:00:00",
        "ended_at_0": "",
        "ended_at_1": "",
        "min_sample_size": "200",
        "alpha": "0.05",
        "horizon_days": "21",
        "correction": "bh",
        "sequential_tuning": "5000",
        "winner": "",
        "variants-TOTAL_FORMS": "2",
        "variants-INITIAL_FORMS": "0",
        "variants-0-key": "A",
        "variants-0-name": "Have a look",
        "variants-0-weight": "1",
        "variants-0-is_control": "on",
        "variants-0-payload": '{"cta": "Have a look"}',
        "variants-1-key": "B",
        "variants-1-name": "Start free",
        "variants-1-weight": "3",
        "variants-1-payload": '{"cta": "Start your free week"}',
        "_save": "Save",
    }

    refused = client.post(reverse("admin:experiments_abtest_add"), data | {"secondary_metrics": '["likes"]'})
    assert refused.status_code == 200
    assert not ABTest.objects.exists()
    response = client.post(reverse("admin:experiments_abtest_add"), data)

    assert response.status_code == 302
    test = ABTest.objects.get()
    assert (test.metrics, test.horizon_days, test.correction, test.started_at) == (
        ["click", "checkout", "revenue"],
        21,
        "bh",
        dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC),
    )
    assert list(test.variants.values_list("key", "weight", "is_control", "payload")) == [
        ("A", 1, True, {"cta": "Have a look"}),
        ("B", 3, False, {"cta": "Start your free week"}),
    ]


def test_a_queued_hypothesis_must_be_startable() -> None:
    hypothesis = HypothesisFactory.create()
    fields = {
        "title": "Two controls",
        "subject": "post",
        "dimension": "tone",
        "statement": "",
        "variants": '[{"key": "A", "is_control": true}, {"key": "B", "is_control": true}]',
        "metric": "engagement_rate",
        "secondary_metrics": "[]",
        "horizon_days": "14",
        "min_sample_size": "100",
        "position": "0",
        "status": "queued",
    }

    form = HypothesisForm(data=fields, instance=hypothesis)

    assert not form.is_valid()
    assert form.non_field_errors() == ["Exactly one variant must be the control."]
    assert HypothesisForm(data=fields | {"status": "skipped"}, instance=hypothesis).is_valid()
