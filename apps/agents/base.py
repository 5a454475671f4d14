"""The agent contract. An agent is a stateless class: a name, a phase, the outside services it uses (their
circuit breakers gate its runs), the agents it depends on within a pipeline, default parameters, and
``execute(ctx) -> AgentResult``. The framework (``apps.agents.services``) wraps every run."""

from __future__ import annotations

import datetime as dt
import logging
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

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

    def incr(self, key: str, amount: int = 1) -> None:
        self.counters[key] += amount


class BaseAgent(ABC):
    name: ClassVar[str]
    phase: ClassVar[int]
    description: ClassVar[str] = ""
    # Names of the outside services (circuit breakers) this agent needs; a run is skipped while one is open.
    services: ClassVar[tuple[str, ...]] = ()
    # Agents that must have succeeded earlier in the same pipeline run.
    depends_on: ClassVar[tuple[str, ...]] = ()
    default_parameters: ClassVar[dict[str, Any]] = {}

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
