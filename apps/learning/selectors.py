"""Reads of the learning app's rows: the proposals waiting to be applied, the alert rules and the alerts that
hold a rule's cooldown, and when an agent last succeeded."""

from __future__ import annotations

import datetime as dt

from django.db.models import Max, QuerySet

from apps.agents.models import AgentRun, AgentRunStatus
from apps.learning.models import Alert, AlertRule, StrategyChange


def strategy_change_list_proposed() -> QuerySet[StrategyChange]:
    """The proposals waiting to be applied, oldest first: the order the coordinator applies them in."""
    return StrategyChange.objects.filter(status=StrategyChange.Status.PROPOSED).order_by("created_at", "pk")


def strategy_change_tests_proposed(*, test_slugs: list[str]) -> set[str]:
    """Which of these A/B tests already became a strategy change (in any status), so a decision is turned into
    proposals once however often it is read."""
    changes = StrategyChange.objects.filter(
        source=StrategyChange.Source.AB_TEST, evidence__ab_test__in=test_slugs
    )
    return {str(slug) for slug in changes.values_list("evidence__ab_test", flat=True)}


def agent_last_success_started_at(
    *, agent_name: str, exclude_run_id: int | None = None
) -> dt.datetime | None:
    """When the agent's latest successful run started: what it had seen by then is behind it."""
    runs = AgentRun.objects.filter(agent_name=agent_name, status=AgentRunStatus.SUCCEEDED)
    if exclude_run_id is not None:
        runs = runs.exclude(pk=exclude_run_id)
    started_at: dt.datetime | None = runs.aggregate(latest=Max("started_at"))["latest"]
    return started_at


def alert_rule_list_enabled() -> list[AlertRule]:
    return list(AlertRule.objects.filter(enabled=True).order_by("name", "pk"))


def alert_last_fired(*, rule_ids: list[int], since: dt.datetime) -> dict[tuple[int, str], dt.datetime]:
    """(rule, scope) → when it last fired, for the alerts of these rules fired since ``since``."""
    rows = (
        Alert.objects.filter(rule_id__in=rule_ids, fired_at__gte=since)
        .values("rule_id", "scope")
        .annotate(last=Max("fired_at"))
    )
    return {(row["rule_id"], row["scope"]): row["last"] for row in rows}
