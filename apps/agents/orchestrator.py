"""Plans a pipeline run and builds its Celery canvas.

The plan is a list of levels: the phases in order, and within a phase the topological levels of ``depends_on``,
so the agents of one level are independent of each other and run in parallel on workers. The canvas is
``chain(group(level), ..., finish)`` of immutable signatures: no task consumes another's return value, every
task reads what it needs (whether its dependencies succeeded) from the database, and tasks record agent
failures instead of raising them, so a failure never aborts the chord that carries the next level.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from celery import chain, group
from celery.canvas import Signature
from django.conf import settings

from apps.agents import registry
from apps.agents.base import BaseAgent
from coinlink.celery import app as celery_app

# Referred to by name, so that planning needs no import of the task module (which imports the services).
EXECUTE_AGENT_RUN_TASK = "apps.agents.tasks.execute_agent_run"
FINISH_PIPELINE_RUN_TASK = "apps.agents.tasks.finish_pipeline_run"


class InvalidPipeline(Exception):
    """The agents cannot be ordered: a cycle, a dependency on a later phase, or on an unknown agent."""


@contextmanager
def run_in_this_process() -> Iterator[None]:
    """Celery tasks sent inside the block run right here, whatever broker is configured."""
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = eager


def time_limits(agent: type[BaseAgent] | None) -> tuple[int, int]:
    """(soft, hard) seconds for one run of ``agent``; the defaults are the Celery task limits."""
    default_soft, default_hard = settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.CELERY_TASK_TIME_LIMIT
    soft = (agent.soft_time_limit if agent else None) or default_soft
    # An agent that only raises its soft limit keeps the default grace before the kill.
    hard = (agent.time_limit if agent else None) or max(default_hard, soft + (default_hard - default_soft))
    return soft, hard


def plan_levels(agents: Sequence[type[BaseAgent]]) -> list[list[type[BaseAgent]]]:
    """The agents grouped into levels that run one after the other.

    A dependency on a registered agent outside ``agents`` is ignored: whoever picked the agents chose to run
    them on the data already in the database.
    """
    selected = {agent.name: agent for agent in agents}
    known = set(registry.names()) | set(selected)
    for agent in agents:
        if unknown := sorted(set(agent.depends_on) - known):
            raise InvalidPipeline(f"{agent.name} depends on unknown agents: {', '.join(unknown)}")
        for name in agent.depends_on:
            if name in selected and selected[name].phase > agent.phase:
                raise InvalidPipeline(
                    f"{agent.name} (phase {agent.phase}) depends on {name}, "
                    f"which runs later (phase {selected[name].phase})"
                )

    levels: list[list[type[BaseAgent]]] = []
    for phase in sorted({agent.phase for agent in agents}):
        waiting = {agent.name: agent for agent in agents if agent.phase == phase}
        while waiting:
            ready = sorted(
                name
                for name, agent in waiting.items()
                if not any(dependency in waiting for dependency in agent.depends_on)
            )
            if not ready:
                raise InvalidPipeline(f"dependency cycle among {', '.join(sorted(waiting))}")
            levels.append([waiting.pop(name) for name in ready])
    return levels


def agent_run_signature(*, run_id: int, agent: type[BaseAgent] | None) -> Signature:
    """The task that executes one AgentRun row, with the agent's own time limits."""
    soft, hard = time_limits(agent)
    return celery_app.signature(
        EXECUTE_AGENT_RUN_TASK,
        args=(run_id,),
        options={"soft_time_limit": soft, "time_limit": hard},
        immutable=True,
    )


def build_canvas(
    *, pipeline_run_id: int, levels: Sequence[Sequence[tuple[type[BaseAgent], int]]]
) -> Signature:
    """``levels`` pairs each agent with the id of its queued AgentRun row."""
    steps = [
        group([agent_run_signature(run_id=run_id, agent=agent) for agent, run_id in level])
        for level in levels
    ]
    finish = celery_app.signature(FINISH_PIPELINE_RUN_TASK, args=(pipeline_run_id,), immutable=True)
    return chain(*steps, finish)
