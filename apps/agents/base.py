"""The agent contract. An agent is a stateless class: a name, a phase, the outside services it uses (their
circuit breakers gate its runs), the agents it depends on within a pipeline, default parameters, and
``execute(ctx) -> AgentResult``. The framework (``apps.agents.services``) wraps every run."""

from __future__ import annotations

import datetime as dt
import logging
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from django.core.exceptions import ValidationError


@dataclass
class AgentContext:
    run_id: int
    agent_name: str
    trigger: str
    now: dt.datetime
    parameters: dict[str, Any]
    pipeline_run_id: int | None = None
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("apps.agents"))


@dataclass
class AgentResult:
    counters: Counter[str] = field(default_factory=Counter)
    summary: str = ""
    # Why the run, though it succeeded, worked without something it needed; ``degraded_reason`` adds the
    # failures the counters already record.
    degradations: list[str] = field(default_factory=list)

    def incr(self, key: str, amount: int = 1) -> None:
        self.counters[key] += amount

    def degrade(self, reason: str) -> None:
        self.degradations.append(reason)

    def degraded_reason(self) -> str:
        """Empty for a clean run. By convention a failed outside source is counted as ``errors.<service>``
        and a failed item as ``failed`` or ``<step>.failed``; any of them above zero degrades the run."""
        failures = [
            f"{key}={value}"
            for key, value in sorted(self.counters.items())
            if value > 0 and (key.startswith("errors.") or key == "failed" or key.endswith(".failed"))
        ]
        return "; ".join([*self.degradations, *([", ".join(failures)] if failures else [])])


class BaseAgent(ABC):
    name: ClassVar[str]
    phase: ClassVar[int]
    description: ClassVar[str] = ""
    # Names of the outside services (circuit breakers) this agent uses, and how much it needs them while a
    # breaker is open: "all" (the default) skips the run while any is open; "any" carries on with whichever
    # answer (a scanner of several sources, a publisher to several platforms) and skips only when every one is
    # open; "none" never skips (the agent has a fallback of its own, like the template writer).
    services: ClassVar[tuple[str, ...]] = ()
    service_policy: ClassVar[Literal["all", "any", "none"]] = "all"
    # Agents that must have succeeded earlier in the same pipeline run.
    depends_on: ClassVar[tuple[str, ...]] = ()
    default_parameters: ClassVar[dict[str, Any]] = {}
    # A five-field crontab ("*/15 * * * *") that becomes the agent's beat schedule the first time the framework
    # sees it; from then on the schedule is the operator's to edit in the admin. None: runs only in pipelines
    # and when started by hand.
    default_schedule: ClassVar[str | None] = None
    # Seconds before the run is asked to stop (SoftTimeLimitExceeded) and before its worker is killed; None
    # takes CELERY_TASK_SOFT_TIME_LIMIT / CELERY_TASK_TIME_LIMIT.
    soft_time_limit: ClassVar[int | None] = None
    time_limit: ClassVar[int | None] = None
    # Attempts for transient errors, the first included; None takes AGENT_RETRY_MAX_ATTEMPTS.
    max_attempts: ClassVar[int | None] = None

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        """Known keys only, each of its default's type; returns defaults overlaid with ``parameters``."""
        unknown = set(parameters) - set(cls.default_parameters)
        if unknown:
            raise ValidationError(f"unknown parameters for {cls.name}: {', '.join(sorted(unknown))}")
        for key, value in parameters.items():
            expected = type(cls.default_parameters[key])
            ok = isinstance(value, expected) and not (expected is not bool and isinstance(value, bool))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                raise ValidationError(
                    f"{cls.name}.{key} must be {expected.__name__}, not {type(value).__name__}"
                )
        return {**cls.default_parameters, **parameters}

    @abstractmethod
    def execute(self, ctx: AgentContext) -> AgentResult: ...
