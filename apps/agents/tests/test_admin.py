"""Operators in the admin: every registered agent listed with its schedule, run now, pause, resume, run a
pipeline, parameters checked by the agent; circuit breakers shown and closed by hand. Each action changes
exactly what it should."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from apps.accounts.factories import UserFactory
from apps.agents.base import BaseAgent
from apps.agents.factories import AgentConfigFactory
from apps.agents.models import AgentConfig, AgentRun, AgentRunStatus, PipelineRun, RunTrigger
from apps.agents.services import agent_config_sync
from apps.core.models import CircuitBreakerState

pytestmark = pytest.mark.django_db

AgentFactory = Callable[..., type[BaseAgent]]
Capture = Callable[..., AbstractContextManager[list[Callable[[], None]]]]
CHANGELIST = reverse("admin:agents_agentconfig_changelist")


@pytest.fixture
def staff_client(client: Client) -> Client:
    client.force_login(UserFactory.create(staff=True))
    return client


def _action(client: Client, url: str, action: str, objs: Sequence[Model]) -> list[str]:
    response = client.post(url, {"action": action, "_selected_action": [obj.pk for obj in objs]}, follow=True)
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def _configs(*names: str) -> list[AgentConfig]:
    return [AgentConfig.objects.get(agent_name=name) for name in names]


def test_the_changelist_lists_every_registered_agent_with_its_default_schedule(
    agent: AgentFactory, staff_client: Client
) -> None:
    agent("scanner", default_schedule="*/15 * * * *", description="Scans the markets")
    agent("analysis", phase=1)
    AgentConfigFactory.create(agent_name="retired")

    response = staff_client.get(CHANGELIST)

    assert response.status_code == 200
    assert {config.agent_name for config in response.context["cl"].result_list} == {
        "scanner",
        "analysis",
        "retired",
    }
    scanner, analysis = _configs("scanner", "analysis")
    assert analysis.periodic_task is None
    task = scanner.periodic_task
    assert task is not None
    assert (task.name, task.task, json.loads(task.kwargs), task.description, task.enabled) == (
        "agent: scanner",
        "apps.agents.tasks.run_agent",
        {"agent_name": "scanner"},
        "Scans the markets",
        True,
    )
    assert task.crontab is not None
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("*/15", "*", "UTC")
    assert "*/15 * * * *" in response.content.decode()

    # A second visit finds everything in place, and an operator's change to a schedule survives it.
    task.enabled = False
    task.save()
    staff_client.get(CHANGELIST)
    assert AgentConfig.objects.count() == 3
    assert PeriodicTask.objects.filter(name__startswith="agent: ").count() == 1
    assert CrontabSchedule.objects.count() == 1
    assert PeriodicTask.objects.get(pk=task.pk).enabled is False


def test_the_pipeline_schedule_is_created_when_configured(
    agent: AgentFactory, staff_client: Client, settings: Any
) -> None:
    settings.AGENT_PIPELINE_SCHEDULE = "0 * * * *"
    agent("scanner")

    staff_client.get(CHANGELIST)

    task = PeriodicTask.objects.get(name="agents: pipeline")
    assert (task.task, task.crontab.minute, task.crontab.hour) == ("apps.agents.tasks.run_pipeline", "0", "*")


def test_a_malformed_default_schedule_is_named_and_nothing_is_written(agent: AgentFactory) -> None:
    agent("good", default_schedule="*/5 * * * *")
    agent("late", default_schedule="61 * * * *")

    with pytest.raises(ValueError, match=r"^late\.default_schedule: Invalid end range: 61 > 59\.$"):
        agent_config_sync()

    assert not AgentConfig.objects.exists()
    assert not PeriodicTask.objects.exists()


def test_run_now_queues_and_runs_the_selected_agents(
    agent: AgentFactory, staff_client: Client, django_capture_on_commit_callbacks: Capture
) -> None:
    for name in ("scanner", "analysis", "writer"):
        agent(name)
    staff_client.get(CHANGELIST)

    with django_capture_on_commit_callbacks(execute=True):
        messages = _action(staff_client, CHANGELIST, "run_now", _configs("writer", "scanner"))

    assert messages == ["Queued 2 runs: scanner, writer."]
    runs = AgentRun.objects.order_by("agent_name")
    assert [(run.agent_name, run.trigger, run.status) for run in runs] == [
        ("scanner", RunTrigger.MANUAL, AgentRunStatus.SUCCEEDED),
        ("writer", RunTrigger.MANUAL, AgentRunStatus.SUCCEEDED),
    ]
    assert not PipelineRun.objects.exists()


def test_pause_and_resume_change_only_that_flag(agent: AgentFactory, staff_client: Client) -> None:
    agent("scanner")
    agent("analysis")
    staff_client.get(CHANGELIST)
    AgentConfig.objects.filter(agent_name="analysis").update(paused=True, parameters={"k": 1}, notes="why")
    before: dict[str, dict[str, Any]] = {row["agent_name"]: dict(row) for row in AgentConfig.objects.values()}

    messages = _action(staff_client, CHANGELIST, "pause", _configs("scanner", "analysis"))

    assert messages == ["Paused 1 of 2 selected agents; the rest were already paused."]
    after: dict[str, dict[str, Any]] = {row["agent_name"]: dict(row) for row in AgentConfig.objects.values()}
    assert after["analysis"] == before["analysis"]
    changed = {key for key in after["scanner"] if after["scanner"][key] != before["scanner"][key]}
    assert changed == {"paused", "updated_at"}
    assert after["scanner"]["paused"] is True

    messages = _action(staff_client, CHANGELIST, "resume", _configs("scanner"))

    assert messages == ["Resumed 1 of 1 selected agents; the rest were not paused."]
    assert AgentConfig.objects.get(agent_name="scanner").paused is False
    assert AgentConfig.objects.get(agent_name="analysis").paused is True
    assert not AgentRun.objects.exists()


def test_run_pipeline_now_runs_the_selected_agents_in_order(
    world: Callable[..., None],
    log: list[str],
    staff_client: Client,
    django_capture_on_commit_callbacks: Capture,
) -> None:
    world()
    staff_client.get(CHANGELIST)

    with django_capture_on_commit_callbacks(execute=True):
        messages = _action(
            staff_client, CHANGELIST, "run_pipeline_now", _configs("writer", "scanner", "analysis")
        )

    pipeline = PipelineRun.objects.get()
    url = reverse("admin:agents_pipelinerun_change", args=[pipeline.pk])
    assert messages == [
        f'Started <a href="{url}">pipeline run #{pipeline.pk}</a>: scanner, analysis, writer.'
    ]
    assert (pipeline.trigger, pipeline.status) == (RunTrigger.MANUAL, PipelineRun.Status.SUCCEEDED)
    assert log == ["scanner", "analysis", "writer"]


def test_run_pipeline_now_refuses_a_retired_agent(agent: AgentFactory, staff_client: Client) -> None:
    agent("scanner")
    staff_client.get(CHANGELIST)
    retired = AgentConfigFactory.create(agent_name="retired")

    messages = _action(staff_client, CHANGELIST, "run_pipeline_now", [*_configs("scanner"), retired])

    assert messages == ["No pipeline started: no agent named 'retired' is registered."]
    assert not PipelineRun.objects.exists()
    assert not AgentRun.objects.exists()


def _change_form(config: AgentConfig, **changes: Any) -> dict[str, Any]:
    return {
        "enabled": "on" if config.enabled else "",
        "paused": "on" if config.paused else "",
        "parameters": json.dumps(config.parameters),
        "notes": config.notes,
        "periodic_task": "",
        "_save": "Save",
        **changes,
    }


def test_parameters_are_checked_by_the_agent_on_save(agent: AgentFactory, staff_client: Client) -> None:
    agent("scanner", default_parameters={"limit": 10, "symbols": ["BTC/USDT"]})
    staff_client.get(CHANGELIST)
    (config,) = _configs("scanner")
    url = reverse("admin:agents_agentconfig_change", args=[config.pk])

    for parameters, error in (
        ({"limt": 5}, "unknown parameters for scanner: limt"),
        ({"limit": "5"}, "scanner.limit must be int, not str"),
        ([1, 2], "parameters must be a JSON object"),
    ):
        response = staff_client.post(url, _change_form(config, parameters=json.dumps(parameters)))
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["parameters"] == [error]
        config.refresh_from_db()
        assert config.parameters == {}

    response = staff_client.post(url, _change_form(config, parameters=json.dumps({"limit": 5})))

    assert response.status_code == 302
    config.refresh_from_db()
    # Only the override is stored; the other default still comes from the agent's code.
    assert config.parameters == {"limit": 5}


def test_the_change_page_describes_the_agent(agent: AgentFactory, staff_client: Client) -> None:
    agent("writer", phase=2, services=("llm",), depends_on=("analysis",), description="Writes the posts")
    agent("analysis")
    staff_client.get(CHANGELIST)
    (config,) = _configs("writer")

    page = staff_client.get(reverse("admin:agents_agentconfig_change", args=[config.pk])).content.decode()

    for text in ("Writes the posts", "llm", "analysis"):
        assert text in page
    assert staff_client.get(reverse("admin:agents_agentconfig_add")).status_code == 403


# --- circuit breakers ---------------------------------------------------------------------------------------

BREAKERS = reverse("admin:core_circuitbreakerstate_changelist")


def test_reset_closes_only_breakers_that_were_not_closed(staff_client: Client) -> None:
    opened = timezone.now() - dt.timedelta(seconds=30)
    exchange = CircuitBreakerState.objects.create(
        service="exchange",
        state=CircuitBreakerState.State.OPEN,
        consecutive_failures=5,
        opened_at=opened,
        last_error="TransientError: 502",
    )
    news = CircuitBreakerState.objects.create(service="news")
    llm = CircuitBreakerState.objects.create(
        service="llm", state=CircuitBreakerState.State.OPEN, opened_at=opened
    )
    news_before = CircuitBreakerState.objects.filter(pk=news.pk).values().get()
    llm_before = CircuitBreakerState.objects.filter(pk=llm.pk).values().get()

    messages = _action(staff_client, BREAKERS, "reset", [exchange, news])

    assert messages == ["Closed 1 of 2 selected breakers; the rest were closed already."]
    exchange.refresh_from_db()
    assert (exchange.state, exchange.consecutive_failures, exchange.opened_at) == ("closed", 0, None)
    # What happened stays on record.
    assert exchange.last_error == "TransientError: 502"
    assert CircuitBreakerState.objects.filter(pk=news.pk).values().get() == news_before
    assert CircuitBreakerState.objects.filter(pk=llm.pk).values().get() == llm_before


def test_breakers_are_shown_read_only(staff_client: Client) -> None:
    breaker = CircuitBreakerState.objects.create(service="x", state=CircuitBreakerState.State.OPEN)
    url = reverse("admin:core_circuitbreakerstate_change", args=[breaker.pk])

    assert "x" in staff_client.get(BREAKERS).content.decode()
    assert staff_client.get(url).status_code == 200
    assert staff_client.post(url, {"state": "closed"}).status_code == 403
    assert CircuitBreakerState.objects.get(pk=breaker.pk).state == "open"


def test_reset_needs_the_change_permission(client: Client) -> None:
    viewer = UserFactory.create(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_circuitbreakerstate"))
    client.force_login(viewer)
    breaker = CircuitBreakerState.objects.create(service="x", state=CircuitBreakerState.State.OPEN)

    response = client.post(BREAKERS, {"action": "reset", "_selected_action": [breaker.pk]})

    assert response.status_code in (200, 302)
    assert CircuitBreakerState.objects.get(pk=breaker.pk).state == "open"
