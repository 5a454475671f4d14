"""The performance analytics agent: each figure exactly from known rows (agent runs, breakers, posts, Stripe
events), written as snapshots at the run's minute; alert rules fire once per cooldown, on the dashboard and in
the operators' channels, and a channel that cannot be reached is recorded without failing the run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError
from pytest_django.fixtures import Settings as DjangoSettings

from apps.agents.base import AgentContext
from apps.agents.factories import AgentRunFactory
from apps.agents.models import AgentRunStatus, PerformanceSnapshot
from apps.billing.factories import StripeEventFactory
from apps.billing.models import StripeEvent, StripeEventStatus
from apps.content.factories import ContentDraftFactory, ContentPlanFactory, PublishedContentFactory
from apps.content.models import DraftStatus
from apps.core import live
from apps.core.models import CircuitBreakerState
from apps.core.resilience import TransientError
from apps.integrations.models import OutboxMessage
from apps.integrations.types import OutboundPost, PublishResult
from apps.learning import services
from apps.learning.agents import PerformanceAnalyticsAgent
from apps.learning.factories import AlertFactory, AlertRuleFactory
from apps.learning.models import Alert
from apps.learning.performance import percentile

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 16, 9, 30, 42, tzinfo=dt.UTC)
MINUTE = NOW.replace(second=0)


@pytest.fixture(autouse=True)
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def twins(settings: DjangoSettings) -> None:
    settings.DISCORD_BACKEND = settings.TELEGRAM_BACKEND = "outbox"
    settings.DISCORD_OPERATORS_CHANNEL_ID = "4242"
    settings.TELEGRAM_OPERATORS_CHANNEL_ID = "-100777"


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    sent: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(live, "broadcast", lambda group, event, payload: sent.append((group, event, payload)))
    return sent


def _run(*, at: dt.datetime = NOW, window_hours: int = 24) -> Any:
    ctx = AgentContext(
        run_id=1,
        agent_name="performance_analytics",
        trigger="manual",
        now=at,
        parameters={"window_hours": window_hours},
    )
    return PerformanceAnalyticsAgent().execute(ctx)


def _run_agent(status: str, duration_ms: int | None, *, attempt: int = 1, hours_ago: float = 1) -> None:
    finished = NOW - dt.timedelta(hours=hours_ago)
    AgentRunFactory(
        agent_name="publishing",
        status=status,
        attempt=attempt,
        started_at=finished - dt.timedelta(milliseconds=duration_ms or 0),
        finished_at=None if status == AgentRunStatus.RETRYING else finished,
        duration_ms=duration_ms,
    )


def _snapshots(prefix: str) -> dict[tuple[str, str], tuple[float, int | None, dict[str, Any]]]:
    rows = PerformanceSnapshot.objects.filter(metric__startswith=prefix, captured_at=MINUTE)
    return {(r.metric, r.scope): (r.value, r.sample_size, r.details) for r in rows}


def test_percentiles_interpolate_between_the_closest_ranks() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
    assert percentile([1000.0, 2000.0, 3000.0, 4000.0, 10000.0], 0.95) == pytest.approx(8800.0)
    assert percentile([7.0], 0.95) == 7.0


def test_agent_figures_from_the_windows_runs() -> None:
    _run_agent(AgentRunStatus.SUCCEEDED, 1000)
    _run_agent(AgentRunStatus.SUCCEEDED, 2000, attempt=2)
    _run_agent(AgentRunStatus.SUCCEEDED, 3000)
    _run_agent(AgentRunStatus.SUCCEEDED, 4000)
    _run_agent(AgentRunStatus.FAILED, 10000)
    _run_agent(AgentRunStatus.SKIPPED, None)
    _run_agent(AgentRunStatus.RETRYING, 500)
    # Outside the window: counts for nothing.
    _run_agent(AgentRunStatus.FAILED, 99000, hours_ago=25)

    _run()

    assert _snapshots("agent.") == {
        ("agent.success_rate", "agent:publishing"): (0.8, 5, {"succeeded": 4, "failed": 1, "skipped": 1}),
        ("agent.duration_p50_ms", "agent:publishing"): (3000.0, 5, {"unit": "ms", "max": 10000.0}),
        ("agent.duration_p95_ms", "agent:publishing"): (
            pytest.approx(8800.0),
            5,
            {"unit": "ms", "max": 10000.0},
        ),
        ("agent.retries", "agent:publishing"): (2.0, 7, {}),
    }


def test_breaker_openings_count_the_latest_opening_in_the_window() -> None:
    CircuitBreakerState.objects.create(
        service="x", state="open", opened_at=NOW - dt.timedelta(hours=1), consecutive_failures=5
    )
    CircuitBreakerState.objects.create(service="telegram", opened_at=NOW - dt.timedelta(days=3))
    CircuitBreakerState.objects.create(service="discord")

    _run()

    openings = {
        scope: (value, details["state"]) for (_, scope), (value, _, details) in _snapshots("breaker.").items()
    }
    assert openings == {
        "service:x": (1.0, "open"),
        "service:telegram": (0.0, "closed"),
        "service:discord": (0.0, "closed"),
    }


def test_publish_latency_and_failures_per_platform() -> None:
    scheduled = NOW - dt.timedelta(hours=2)
    for seconds in (30, 90):
        draft = ContentDraftFactory(
            plan=ContentPlanFactory(scheduled_for=scheduled), status=DraftStatus.PUBLISHED
        )
        PublishedContentFactory(draft=draft, published_at=scheduled + dt.timedelta(seconds=seconds))
    # A members' announcement has no plan, so no latency.
    PublishedContentFactory(draft=None, platform="telegram", published_at=NOW - dt.timedelta(minutes=5))
    telegram = ContentPlanFactory(platform="telegram", format="telegram_chart_post")
    ContentDraftFactory(plan=telegram, status=DraftStatus.FAILED, publish_attempts=2, last_error="403")
    ContentDraftFactory(plan=telegram, status=DraftStatus.APPROVED, publish_attempts=1, last_error="timeout")
    # Failed before any attempt (never sent): not a publishing failure.
    ContentDraftFactory(
        plan=telegram, status=DraftStatus.FAILED, publish_attempts=0, last_error="image missing"
    )

    _run()

    assert _snapshots("publish.") == {
        ("publish.latency_p50_s", "platform:x"): (60.0, 2, {"unit": "s", "max": 90.0}),
        ("publish.latency_p95_s", "platform:x"): (pytest.approx(87.0), 2, {"unit": "s", "max": 90.0}),
        ("publish.failures", "platform:x"): (0.0, None, {"published": 2, "retrying": 0}),
        ("publish.failures", "platform:telegram"): (1.0, None, {"published": 0, "retrying": 1}),
        ("publish.failures", "platform:discord"): (0.0, None, {"published": 0, "retrying": 0}),
    }


def test_webhook_lag_from_receipt_to_processing() -> None:
    for lag in (2, 4, 10):
        event = StripeEventFactory.create(status=StripeEventStatus.PROCESSED)
        received = NOW - dt.timedelta(minutes=10 + lag)
        StripeEvent.objects.filter(pk=event.pk).update(
            received_at=received, processed_at=received + dt.timedelta(seconds=lag)
        )
    StripeEventFactory.create(status=StripeEventStatus.RECEIVED)

    _run()

    details = {"unit": "s", "max": 10.0, "waiting": 1}
    assert _snapshots("webhook.") == {
        ("webhook.lag_p50_s", "stripe"): (4.0, 3, details),
        ("webhook.lag_p95_s", "stripe"): (pytest.approx(9.4), 3, details),
    }


def test_a_second_run_in_the_same_minute_replaces_the_figures() -> None:
    _run_agent(AgentRunStatus.SUCCEEDED, 1000)
    first = _run()
    _run_agent(AgentRunStatus.FAILED, 1000)

    second = _run(at=NOW + dt.timedelta(seconds=10))

    assert first.counters["snapshots"] == second.counters["snapshots"]
    assert PerformanceSnapshot.objects.count() == second.counters["snapshots"]
    rate = PerformanceSnapshot.objects.get(metric="agent.success_rate")
    assert (rate.value, rate.captured_at) == (0.5, MINUTE)


# --- alerts ---------------------------------------------------------------------------------------------------


def _failing_publisher() -> None:
    _run_agent(AgentRunStatus.SUCCEEDED, 1000)
    _run_agent(AgentRunStatus.FAILED, 1000)


def test_a_rule_that_crosses_fires_on_the_dashboard_and_in_the_operators_channels(
    events: list[tuple[str, str, dict[str, Any]]],
) -> None:
    _failing_publisher()
    rule = AlertRuleFactory(name="Publishing fails", notify_platforms=["discord", "telegram"])
    AlertRuleFactory(name="Never", threshold=0.1)
    AlertRuleFactory(name="Disabled", enabled=False)

    result = _run()

    alert = Alert.objects.get()
    message = "CoinLink alert: Publishing fails. agent.success_rate for agent:publishing is 0.5, below the threshold of 0.9."
    assert (alert.rule, alert.scope, alert.value, alert.fired_at, alert.message) == (
        rule,
        "agent:publishing",
        0.5,
        NOW,
        message,
    )
    sent = {m.platform: m for m in OutboxMessage.objects.all()}
    assert {p: (m.channel, m.text, m.idempotency_key) for p, m in sent.items()} == {
        "discord": ("4242", message, f"alert:{alert.pk}:discord"),
        "telegram": ("-100777", message, f"alert:{alert.pk}:telegram"),
    }
    assert alert.delivered == {
        "discord": {"status": "sent", "external_id": sent["discord"].external_id},
        "telegram": {"status": "sent", "external_id": sent["telegram"].external_id},
    }
    alerts_heard = [(group, payload) for group, event, payload in events if event == "alert"]
    assert alerts_heard == [
        (
            "dashboard",
            {
                "id": alert.pk,
                "rule": "Publishing fails",
                "metric": "agent.success_rate",
                "scope": "agent:publishing",
                "value": 0.5,
                "comparison": "below",
                "threshold": 0.9,
                "message": message,
                "fired_at": NOW,
                "delivered": alert.delivered,
            },
        )
    ]
    assert (result.counters["alerts"], result.counters["deliveries_failed"]) == (1, 0)


def test_a_rule_fires_once_per_scope_within_its_cooldown(clock: time_machine.Traveller) -> None:
    _failing_publisher()
    rule = AlertRuleFactory(metric="agent.success_rate", scope="", cooldown_minutes=60, notify_platforms=[])
    # Another scope fired recently: it does not hold this one back.
    AlertFactory(rule=rule, scope="agent:analysis", fired_at=NOW - dt.timedelta(minutes=5))

    _run()
    clock.move_to(NOW + dt.timedelta(minutes=59))
    _run(at=NOW + dt.timedelta(minutes=59))
    clock.move_to(NOW + dt.timedelta(minutes=61))
    _run(at=NOW + dt.timedelta(minutes=61))

    fired = Alert.objects.filter(scope="agent:publishing").order_by("fired_at")
    assert list(fired.values_list("fired_at", "delivered")) == [
        (NOW, {}),
        (NOW + dt.timedelta(minutes=61), {}),
    ]


def test_a_channel_that_cannot_be_reached_is_recorded_and_the_run_goes_on(
    settings: DjangoSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_publisher()
    settings.TELEGRAM_OPERATORS_CHANNEL_ID = ""
    AlertRuleFactory(name="Publishing fails", notify_platforms=["discord", "telegram"])

    class Down:
        def publish(self, post: OutboundPost) -> PublishResult:
            raise TransientError("Discord answered 503", service="discord")

    monkeypatch.setattr(services, "get_publisher", lambda platform: Down())

    result = _run()

    assert Alert.objects.get().delivered == {
        "discord": {"status": "failed", "error": "TransientError: Discord answered 503"},
        "telegram": {
            "status": "failed",
            "error": "no operators' channel: TELEGRAM_OPERATORS_CHANNEL_ID is not set",
        },
    }
    assert (result.counters["alerts"], result.counters["deliveries_failed"]) == (1, 2)
    assert not OutboxMessage.objects.exists()


def test_a_real_client_that_is_not_configured_is_recorded_too(settings: DjangoSettings) -> None:
    _failing_publisher()
    settings.DISCORD_BACKEND = "api"
    settings.DISCORD_BOT_TOKEN = settings.DISCORD_WEBHOOK_URL = settings.DISCORD_CHANNEL_ID = ""
    AlertRuleFactory(notify_platforms=["discord"])

    _run()

    assert Alert.objects.get().delivered == {
        "discord": {
            "status": "failed",
            "error": "ImproperlyConfigured: DISCORD_BACKEND=api needs DISCORD_BOT_TOKEN, DISCORD_CHANNEL_ID",
        }
    }


def test_window_hours_is_checked() -> None:
    assert PerformanceAnalyticsAgent.validate_parameters({})["window_hours"] == 24
    with pytest.raises(ValidationError, match="window_hours must be from 1 to 744"):
        PerformanceAnalyticsAgent.validate_parameters({"window_hours": 0})
