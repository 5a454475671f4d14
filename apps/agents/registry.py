"""Agents register themselves here when their app's ``agents.py`` is imported (autodiscovery in
``AgentsConfig.ready``), so the framework never imports a domain app by name."""

from __future__ import annotations

from typing import TypeVar

from apps.agents.base import BaseAgent

A = TypeVar("A", bound=type[BaseAgent])

_registry: dict[str, type[BaseAgent]] = {}


class UnknownAgent(KeyError):
    pass


def register(agent: A) -> A:
    existing = _registry.get(agent.name)
    if existing is not None and existing is not agent:
        raise ValueError(f"two agents are named {agent.name!r}: {existing!r} and {agent!r}")
    _registry[agent.name] = agent
    return agent


def get(name: str) -> type[BaseAgent]:
    try:
        return _registry[name]
    except KeyError:
        raise UnknownAgent(name) from None


def all_agents() -> list[type[BaseAgent]]:
    return sorted(_registry.values(), key=lambda a: (a.phase, a.name))


def names() -> list[str]:
    return [a.name for a in all_agents()]
