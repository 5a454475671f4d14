"""Each instrumentation point in the domain apps moves its metric by exactly what happened: agent runs through
the framework, posts through the publishing agent, Stripe webhooks through the endpoint and their processing."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY
from pytest_django.fixtures import Settings

from apps.agents import registry
from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.models import AgentRun, AgentRunStatus
from apps.agents.services import agent_run_create, agent_run_execute, pipeline_run_start
from apps.billing.models import StripeEvent, StripeEventStatus
from apps.billing.tests.stripe_fakes import WEBHOOK_SECRET, deliver, event, sign, unique
from apps.content.agents import publishing
from apps.content.agents.publishing import PublishingAgent
from apps.content.factories import ContentDraftFactory, ContentPlanFactory
from apps.content.models import ContentDraft, DraftStatus, PlanStatus
from apps.core.resilience import CircuitBreaker, PermanentError, RateLimited, TransientError
from apps.integrations.publishers.outbox import OutboxPublisher
from apps.integrations.types import OutboundPost, PublishResult
from apps.market.factories import InsightFactory

pytestmark = pytest.mark.django_db


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- agent runs ---------------------------------------------------------------------------------------------


@pytest.fixture
def agents(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Callable[..., type[BaseAgent]]:
    """Registers the test's own agents in an otherwise empty registry."""
    monkeypatch.setattr(registry, "_registry", {})
    settings.AGENT_RETRY_MAX_ATTEMPTS = 3

    def build(
        name: str, behaviour: Callable[[AgentContext], AgentResult], **attributes: Any
    ) -> type[BaseAgent]:
        def execute(self: BaseAgent, ctx: AgentContext) -> AgentResult:
            return behaviour(ctx)

        namespace = {"name": name, "phase": 1, "description": name, "execute": execute, **attributes}
        return registry.register(type(f"MetricsAgent_{name}", (BaseAgent,), namespace))

    return build


def _run(name: str) -> AgentRun:
    run = agent_run_create(agent_name=name, trigger="manual")
    outcome = agent_run_execute(run_id=run.pk)
    attempt = 1
    while outcome.status == AgentRunStatus.RETRYING:
        attempt += 1
        outcome = agent_run_execute(run_id=run.pk, attempt=attempt)
    return AgentRun.objects.get(pk=run.pk)


def test_agent_runs_are_counted_by_agent_and_final_status(agents: Callable[..., type[BaseAgent]]) -> None:
    calls: Counter[str] = Counter()

    def flaky(ctx: AgentContext) -> AgentResult:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise TransientError("timeout")
        return AgentResult(summary="third time lucky")

    def broken(ctx: AgentContext) -> AgentResult:
        raise RuntimeError("bug")

    agents("m_fine", lambda ctx: AgentResult(summary="ok"))
    agents("m_flaky", flaky)
    agents("m_broken", broken)
    agents("m_blocked", lambda ctx: AgentResult(), services=("m-down",))
    blocked = CircuitBreaker("m-down", failure_threshold=1)
    blocked.record_failure(TransientError("down"))
    names = ("m_fine", "m_flaky", "m_broken", "m_blocked")
    before = {
        (name, status): value("coinlink_agent_runs_total", agent=name, status=status)
        for name in names
        for status in ("succeeded", "failed", "skipped")
    }
    timed = {
        name: value("coinlink_agent_run_duration_seconds_count", agent=name, status="succeeded")
        for name in names
    }
    retries = value("coinlink_agent_run_retries_total", agent="m_flaky")

    assert _run("m_fine").status == AgentRunStatus.SUCCEEDED
    assert _run("m_fine").status == AgentRunStatus.SUCCEEDED
    assert _run("m_flaky").status == AgentRunStatus.SUCCEEDED
    assert _run("m_broken").status == AgentRunStatus.FAILED
    assert _run("m_blocked").status == AgentRunStatus.SKIPPED

    moved = {
        key: value("coinlink_agent_runs_total", agent=key[0], status=key[1]) - count
        for key, count in before.items()
    }
    assert {key: n for key, n in moved.items() if n} == {
        ("m_fine", "succeeded"): 2,
        ("m_flaky", "succeeded"): 1,
        ("m_broken", "failed"): 1,
        ("m_blocked", "skipped"): 1,
    }
    assert value("coinlink_agent_run_retries_total", agent="m_flaky") == retries + 2
    assert (
        value("coinlink_agent_run_duration_seconds_count", agent="m_fine", status="succeeded")
        == timed["m_fine"] + 2
    )
    assert value("coinlink_agent_run_duration_seconds_count", agent="m_broken", status="failed") >= 1
    # A run skipped before it started has no duration to observe.
    assert value("coinlink_agent_run_duration_seconds_count", agent="m_blocked", status="skipped") == 0


def test_pipeline_runs_are_counted_by_final_status(
    agents: Callable[..., type[BaseAgent]], django_capture_on_commit_callbacks: Any
) -> None:
    def broken(ctx: AgentContext) -> AgentResult:
        raise RuntimeError("bug")

    agents("p_one", lambda ctx: AgentResult(summary="ok"))
    agents("p_two", lambda ctx: AgentResult(summary="ok"))
    agents("p_broken", broken)
    statuses = ("succeeded", "degraded", "partial", "failed", "cancelled", "queued", "running")
    before = {status: value("coinlink_pipeline_runs_total", status=status) for status in statuses}

    for names in (["p_one", "p_two"], ["p_one", "p_broken"], ["p_one"]):
        with django_capture_on_commit_callbacks(execute=True):
            pipeline_run_start(agent_names=names)

    moved = {status: value("coinlink_pipeline_runs_total", status=status) - n for status, n in before.items()}
    assert {status: n for status, n in moved.items() if n} == {"succeeded": 2, "partial": 1}


# --- publishing ---------------------------------------------------------------------------------------------

NOW = dt.datetime(2025, 3, 3, 10, 30, tzinfo=dt.UTC)


class _Refusing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def publish(self, post: OutboundPost) -> PublishResult:
        raise self.error


def _draft(platform: str) -> ContentDraft:
    insight = InsightFactory.create(
        detected_at=NOW - dt.timedelta(hours=1), expires_at=NOW + dt.timedelta(hours=12), status="planned"
    )
    plan = ContentPlanFactory.create(
        insight=insight,
        platform=platform,
        format="single_post",
        scheduled_for=NOW - dt.timedelta(minutes=1),
        status=PlanStatus.DRAFTED,
    )
    return ContentDraftFactory.create(
        plan=plan, status=DraftStatus.APPROVED, body=f"BTC RSI at 27.40 on {platform}. Not financial advice."
    )


def test_publishes_are_counted_by_platform_and_outcome(
    monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    settings.X_BACKEND = settings.TELEGRAM_BACKEND = settings.DISCORD_BACKEND = "outbox"
    settings.CONTENT_DAILY_CAPS = {"x": 8, "telegram": 4, "discord": 4}
    settings.CONTENT_QUIET_HOURS = "0-6"
    publishers = {
        "x": OutboxPublisher("x"),
        "telegram": _Refusing(PermanentError("Bad Request: message is too long")),
        "discord": _Refusing(RateLimited("slow down", retry_after=30)),
    }
    monkeypatch.setattr(publishing, "get_publisher", publishers.__getitem__)
    for platform in ("x", "x", "telegram", "discord"):
        _draft(platform)
    outcomes = ("published", "retry_later", "failed", "outcome_unknown")
    before = {
        (platform, outcome): value("coinlink_publishes_total", platform=platform, outcome=outcome)
        for platform in publishers
        for outcome in outcomes
    }

    ctx = AgentContext(run_id=1, agent_name=PublishingAgent.name, trigger="manual", now=NOW, parameters={})
    PublishingAgent().execute(ctx)

    moved = {
        key: value("coinlink_publishes_total", platform=key[0], outcome=key[1]) - count
        for key, count in before.items()
    }
    assert {key: n for key, n in moved.items() if n} == {
        ("x", "published"): 2,
        ("telegram", "failed"): 1,
        ("discord", "retry_later"): 1,
    }


# --- Stripe -------------------------------------------------------------------------------------------------


def test_webhooks_are_counted_by_outcome_with_their_lag(
    client: Client, settings: Settings, django_capture_on_commit_callbacks: Any
) -> None:
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    outcomes = {
        name: value("coinlink_stripe_webhooks_total", outcome=name)
        for name in ("accepted", "duplicate", "rejected")
    }
    lag_count = value("coinlink_stripe_webhook_lag_seconds_count")
    lag_sum = value("coinlink_stripe_webhook_lag_seconds_sum")
    within = {le: value("coinlink_stripe_webhook_lag_seconds_bucket", le=le) for le in ("60.0", "300.0")}
    ignored = value("coinlink_stripe_events_processed_total", status="ignored")
    # Created by Stripe two minutes ago: delivered late (Stripe retried, say).
    data = event(
        "price.created",
        {"id": unique("price"), "object": "price"},
        created=timezone.now() - dt.timedelta(seconds=120),
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(client, data).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(client, data).status_code == 200
    body = '{"id": "evt_forged"}'
    forged = client.post(
        "/billing/stripe/webhook/",
        data=body,
        content_type="application/json",
        headers={"Stripe-Signature": sign(body, secret="whsec_someone_else")},
    )
    assert forged.status_code == 400

    assert {
        name: value("coinlink_stripe_webhooks_total", outcome=name) - n for name, n in outcomes.items()
    } == {
        "accepted": 1,
        "duplicate": 1,
        "rejected": 1,
    }
    assert value("coinlink_stripe_webhook_lag_seconds_count") == lag_count + 1
    assert 119 <= value("coinlink_stripe_webhook_lag_seconds_sum") - lag_sum < 180
    assert value("coinlink_stripe_webhook_lag_seconds_bucket", le="60.0") == within["60.0"]
    assert value("coinlink_stripe_webhook_lag_seconds_bucket", le="300.0") == within["300.0"] + 1
    # Processed once (the duplicate is not processed again): no handler for prices, so ignored.
    assert StripeEvent.objects.get().status == StripeEventStatus.IGNORED
    assert value("coinlink_stripe_events_processed_total", status="ignored") == ignored + 1
