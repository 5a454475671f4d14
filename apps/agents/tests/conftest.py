"""Fixtures for the agent framework's tests: a registry of the test's own agents, eager Celery, captured
live events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import pytest
from pytest_django.fixtures import Settings as DjangoSettings

from apps.agents import registry
from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.models import PipelineRun, RunTrigger
from apps.agents.services import pipeline_run_start
from apps.core import live
from coinlink.celery import app as celery_app

Behaviour = Callable[[AgentContext], AgentResult]
Capture = Callable[..., AbstractContextManager[list[Callable[[], None]]]]


def make_agent(
    name: str,
    behaviour: Behaviour | None = None,
    *,
    phase: int = 1,
    depends_on: tuple[str, ...] = (),
    services: tuple[str, ...] = (),
    **attributes: Any,
) -> type[BaseAgent]:
    """An agent class whose ``execute`` is ``behaviour`` (by default: one item, summary "done")."""

    def execute(self: BaseAgent, ctx: AgentContext) -> AgentResult:
        if behaviour is not None:
            return behaviour(ctx)
        return AgentResult(counters=Counter(items=1), summary="done")

    namespace = {
        "name": name,
        "phase": phase,
        "depends_on": depends_on,
        "services": services,
        "description": f"test agent {name}",
        "execute": execute,
        **attributes,
    }
    return type(f"TestAgent_{name}", (BaseAgent,), namespace)


@pytest.fixture(autouse=True)
def agent_registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, type[BaseAgent]]:
    """An empty registry for each test: the domain apps' agents stay out, the test's own never leak."""
    agents: dict[str, type[BaseAgent]] = {}
    monkeypatch.setattr(registry, "_registry", agents)
    return agents


@pytest.fixture
def agent(agent_registry: dict[str, type[BaseAgent]]) -> Callable[..., type[BaseAgent]]:
    """Build and register a test agent: ``agent("name", behaviour, phase=..., depends_on=...)``."""

    def build(name: str, behaviour: Behaviour | None = None, **kwargs: Any) -> type[BaseAgent]:
        return registry.register(make_agent(name, behaviour, **kwargs))

    return build


@pytest.fixture
def log() -> list[str]:
    return []


@pytest.fixture
def world(agent: Callable[..., type[BaseAgent]], log: list[str]) -> Callable[..., None]:
    """Registers the test pipeline: phase 1 scanner → analysis, news (independent); phase 2 writer (needs
    analysis); phase 3 publisher (needs writer). ``fail`` names agents that raise."""

    def build(*, fail: tuple[str, ...] = ()) -> None:
        def behaviour(name: str) -> Callable[[AgentContext], AgentResult]:
            def run(ctx: AgentContext) -> AgentResult:
                log.append(name)
                if name in fail:
                    raise RuntimeError(f"{name} broke")
                return AgentResult(counters=Counter({name: 1}), summary=f"{name} done")

            return run

        agent("scanner", behaviour("scanner"), phase=1)
        agent("analysis", behaviour("analysis"), phase=1, depends_on=("scanner",))
        agent("news", behaviour("news"), phase=1)
        agent("writer", behaviour("writer"), phase=2, depends_on=("analysis",))
        agent("publisher", behaviour("publisher"), phase=3, depends_on=("writer",))

    return build


@pytest.fixture
def start(django_capture_on_commit_callbacks: Capture) -> Callable[..., PipelineRun]:
    def run(agent_names: list[str] | None = None, trigger: str = RunTrigger.MANUAL) -> PipelineRun:
        with django_capture_on_commit_callbacks(execute=True):
            pipeline = pipeline_run_start(agent_names=agent_names, trigger=trigger)
        pipeline.refresh_from_db()
        return pipeline

    return run


@pytest.fixture(autouse=True)
def eager(monkeypatch: pytest.MonkeyPatch, settings: DjangoSettings) -> None:
    """Tasks run in the test's process (the embedded default), even when the suite runs with REDIS_URL; and
    retries wait milliseconds, not seconds."""
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    settings.AGENT_RETRY_BASE_DELAY = 0.01
    settings.AGENT_RETRY_MAX_DELAY = 0.05
    settings.AGENT_RETRY_MAX_ATTEMPTS = 3


@dataclass
class Broadcasts:
    events: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def record(self, group: str, event: str, payload: dict[str, Any]) -> None:
        self.events.append((group, event, payload))

    def runs(self, agent_name: str | None = None) -> list[dict[str, Any]]:
        return [
            payload
            for _, event, payload in self.events
            if event == "agent_run" and agent_name in (None, payload["agent"])
        ]

    def statuses(self, agent_name: str) -> list[str]:
        return [payload["status"] for payload in self.runs(agent_name)]

    def pipelines(self) -> list[str]:
        return [payload["status"] for _, event, payload in self.events if event == "pipeline_run"]


@pytest.fixture
def broadcasts(monkeypatch: pytest.MonkeyPatch) -> Broadcasts:
    """Every live event the framework sends, in order."""
    recorder = Broadcasts()
    monkeypatch.setattr(live, "broadcast", recorder.record)
    return recorder
