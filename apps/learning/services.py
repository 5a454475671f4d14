"""The learning app's writes: the strategy-change log (propose, apply within bounds, revert), the freeze
switch, the performance snapshots and the alerts on them.

A strategy change names one top-level parameter of one agent. It is proposed with the value learnt
(``target``) and applied by the feedback-loop coordinator, oldest first and a few per cycle, each moving the
parameter only part of the way (see ``bounded_toward``) and only to a value the agent itself accepts
(``validate_parameters``). The agent's configuration stores overrides (``AgentConfig.parameters``), so a
change writes the one override and leaves the rest, defaults included, as they were.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.agents import registry
from apps.agents import selectors as agent_selectors
from apps.agents.base import BaseAgent
from apps.agents.models import AgentConfig, PerformanceSnapshot
from apps.agents.services import agent_config_clean_parameters, agent_config_sync
from apps.core import live
from apps.core.live import DASHBOARD_GROUP
from apps.core.resilience import IntegrationError
from apps.experiments.models import ABTest, ABTestVariant, Hypothesis
from apps.integrations.publishers import get_publisher
from apps.integrations.types import OutboundPost
from apps.learning import selectors
from apps.learning.models import Alert, AlertRule, LearningControl, StrategyChange
from apps.learning.performance import Figure

logger = logging.getLogger(__name__)

FROZEN = "frozen"
ALREADY_IN_FORCE = "already in force"
# Where an alert can be sent besides the dashboard: the platforms with an operators' channel setting.
ALERT_PLATFORMS = ("discord", "telegram")


# --- the freeze switch --------------------------------------------------------------------------------------


def learning_control_get() -> LearningControl:
    """The one switch row, created unfrozen on first read (as row 1, so two first reads at once make one)."""
    control = LearningControl.objects.order_by("pk").first()
    if control is None:
        control, _ = LearningControl.objects.get_or_create(pk=1)
    return control


def learning_freeze(*, frozen: bool, user: User | None, reason: str) -> LearningControl:
    """Freeze (or unfreeze) the loop: while frozen every proposal is skipped, whatever was learnt."""
    control = learning_control_get()
    control.frozen = frozen
    control.reason = reason[:200]
    control.changed_by = user
    control.save(update_fields=["frozen", "reason", "changed_by", "updated_at"])
    logger.info("learning %s by %s: %s", "frozen" if frozen else "unfrozen", user, reason)
    return control


# --- proposing and bounding -----------------------------------------------------------------------------------


@transaction.atomic
def strategy_change_propose(
    *,
    agent_name: str,
    parameter: str,
    target: Any,
    source: str,
    reason: str,
    evidence: dict[str, Any],
) -> StrategyChange:
    """Record what was learnt about one parameter, to be applied by the next cycle. An older proposal for the
    same parameter that is still waiting is superseded: only the latest learning is applied."""
    StrategyChange.objects.filter(
        agent_name=agent_name, parameter=parameter, status=StrategyChange.Status.PROPOSED
    ).update(status=StrategyChange.Status.SUPERSEDED, updated_at=timezone.now())
    return StrategyChange.objects.create(
        agent_name=agent_name,
        parameter=parameter,
        target=target,
        source=source,
        reason=reason,
        evidence=evidence,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _step_number(current: float, target: float, max_step: float) -> float:
    limit = abs(current) * max_step if current else max_step
    whole = isinstance(current, int) and isinstance(target, int)
    if whole:
        # A whole-number parameter (a count, a number of days) moves by at least one, or it would never move.
        limit = max(1, math.floor(limit))
    delta = target - current
    if abs(delta) <= limit:
        return target
    moved = current + math.copysign(limit, delta)
    # Rounded so a weight stepped from 0.1 reads 0.12, not 0.12000000000000001.
    return int(moved) if whole else round(moved, 12)


def bounded_toward(current: Any, target: Any, max_step: float) -> Any:
    """One cycle's step from ``current`` toward ``target``: a number moves by at most ``max_step`` of its
    current value (``max_step`` itself from 0; at least 1 for whole numbers), in every table nested in the
    value; the target gives the shape, so a key only the target has takes its value, and a key it lacks goes.
    Anything else (a string, a list of slots) changes to the target at once."""
    if _is_number(current) and _is_number(target):
        return _step_number(current, target, max_step)
    if isinstance(current, dict) and isinstance(target, dict):
        return {
            key: bounded_toward(current[key], value, max_step) if key in current else value
            for key, value in target.items()
        }
    return target


# --- applying ---------------------------------------------------------------------------------------------------


def _agent_for(change: StrategyChange) -> type[BaseAgent]:
    try:
        agent = registry.get(change.agent_name)
    except registry.UnknownAgent:
        raise ValidationError(f"no agent named {change.agent_name!r} is registered") from None
    if change.parameter not in agent.default_parameters:
        raise ValidationError(f"{agent.name} has no parameter {change.parameter!r}")
    return agent


def _config_for_update(agent: type[BaseAgent]) -> AgentConfig:
    """The agent's configuration, locked; made by the framework (with its default schedule) when missing."""
    if agent_selectors.agent_config_get(agent_name=agent.name) is None:
        agent_config_sync()
    return AgentConfig.objects.select_for_update().get(agent_name=agent.name)


def _effective(
    agent: type[BaseAgent], config: AgentConfig, parameter: str, overrides: dict[str, Any] | None = None
) -> Any:
    """The value in force (with ``overrides`` instead of the stored ones): the override, or the default, merged
    as the agent merges it."""
    return agent.validate_parameters(config.parameters if overrides is None else overrides)[parameter]


def _skip(change: StrategyChange, *, cycle: int, reason: str) -> StrategyChange:
    change.status = StrategyChange.Status.SKIPPED
    change.skip_reason = reason[:200]
    change.cycle = cycle
    change.save(update_fields=["status", "skip_reason", "cycle", "updated_at"])
    return change


def _apply_one(*, change_id: int, cycle: int, now: dt.datetime, max_step: float) -> StrategyChange | None:
    """Apply one proposal in its own transaction; None when another cycle took it first."""
    with transaction.atomic():
        change = StrategyChange.objects.select_for_update().filter(pk=change_id).first()
        if change is None or change.status != StrategyChange.Status.PROPOSED:
            return None
        try:
            agent = _agent_for(change)
            config = _config_for_update(agent)
            before = _effective(agent, config, change.parameter)
        except ValidationError as exc:
            return _skip(change, cycle=cycle, reason="; ".join(exc.messages))
        overrides = {**config.parameters, change.parameter: bounded_toward(before, change.target, max_step)}
        try:
            agent_config_clean_parameters(agent_name=agent.name, parameters=overrides)
            # Recorded as the agent reads it (a table merged with its defaults), like ``before``.
            after = _effective(agent, config, change.parameter, overrides)
        except ValidationError as exc:
            return _skip(change, cycle=cycle, reason="; ".join(exc.messages))
        if after == before:
            return _skip(change, cycle=cycle, reason=ALREADY_IN_FORCE)
        config.parameters = overrides
        config.save(update_fields=["parameters", "updated_at"])
        change.status = StrategyChange.Status.APPLIED
        change.before = before
        change.after = after
        change.applied_at = now
        change.cycle = cycle
        change.save(update_fields=["status", "before", "after", "applied_at", "cycle", "updated_at"])
    logger.info("strategy change #%s applied: %s.%s", change.pk, change.agent_name, change.parameter)
    return change


def strategy_changes_apply(
    *, cycle: int, now: dt.datetime, max_changes: int, max_step: float
) -> list[StrategyChange]:
    """Apply the waiting proposals, oldest first, until ``max_changes`` have changed something; returns the
    proposals this cycle settled (applied or skipped). The rest wait for the next cycle.

    A proposal is skipped, with the reason, when the agent refuses the bounded value, when it would change
    nothing, or when the agent or parameter does not exist. While learning is frozen every proposal is
    skipped as ``frozen`` and no configuration is touched."""
    if max_changes < 0 or max_step <= 0:
        raise ValueError("max_changes must be 0 or more and max_step more than 0")
    if learning_control_get().frozen:
        ids = list(selectors.strategy_change_list_proposed().values_list("pk", flat=True))
        StrategyChange.objects.filter(pk__in=ids, status=StrategyChange.Status.PROPOSED).update(
            status=StrategyChange.Status.SKIPPED, skip_reason=FROZEN, cycle=cycle, updated_at=timezone.now()
        )
        return list(StrategyChange.objects.filter(pk__in=ids, skip_reason=FROZEN, cycle=cycle).order_by("pk"))
    settled: list[StrategyChange] = []
    applied = 0
    for change_id in selectors.strategy_change_list_proposed().values_list("pk", flat=True):
        if applied >= max_changes:
            break
        change = _apply_one(change_id=change_id, cycle=cycle, now=now, max_step=max_step)
        if change is None:
            continue
        settled.append(change)
        applied += change.status == StrategyChange.Status.APPLIED
    return settled


@transaction.atomic
def strategy_change_revert(*, change_id: int, user: User | None) -> StrategyChange:
    """Put the parameter an applied change set back to its value before, and log that as an operator's change.
    Refused (ValidationError, nothing written) unless the change is applied and the parameter still holds the
    value it applied: a later change, or an operator's edit, has superseded it, and reverting would undo that
    too. A value equal to the agent's default is restored by dropping the override, so later changes to the
    default in code reach the agent again."""
    change = StrategyChange.objects.select_for_update().filter(pk=change_id).first()
    if change is None:
        raise ValidationError(f"there is no strategy change #{change_id}")
    label = f"change #{change.pk} ({change.agent_name}.{change.parameter})"
    if change.status != StrategyChange.Status.APPLIED:
        raise ValidationError(
            f"{label} is {change.get_status_display().lower()}: only applied changes revert"
        )
    agent = _agent_for(change)
    config = _config_for_update(agent)
    current = _effective(agent, config, change.parameter)
    if current != change.after:
        raise ValidationError(
            f"{label} was superseded by a later change: {change.parameter} no longer holds the value it applied"
        )
    overrides = dict(config.parameters)
    if change.before == agent.validate_parameters({})[change.parameter]:
        overrides.pop(change.parameter, None)
    else:
        overrides[change.parameter] = change.before
    agent_config_clean_parameters(agent_name=agent.name, parameters=overrides)
    config.parameters = overrides
    config.save(update_fields=["parameters", "updated_at"])
    now = timezone.now()
    change.status = StrategyChange.Status.REVERTED
    change.reverted_at = now
    change.reverted_by = user
    change.save(update_fields=["status", "reverted_at", "reverted_by", "updated_at"])
    StrategyChange.objects.create(
        agent_name=change.agent_name,
        parameter=change.parameter,
        source=StrategyChange.Source.OPERATOR,
        status=StrategyChange.Status.APPLIED,
        reason=f"Reverted change #{change.pk} by {user or 'the system'}: back to the value before it",
        evidence={"reverts": change.pk},
        target=change.before,
        before=current,
        after=change.before,
        applied_at=now,
    )
    return change


# --- performance snapshots and alerts ---------------------------------------------------------------------------


def performance_snapshots_record(*, figures: Sequence[Figure], captured_at: dt.datetime) -> int:
    """Write the figures as snapshots at ``captured_at``, replacing what an earlier run at the same moment
    wrote (one upsert on ``performance_snapshots_key``); returns the number of rows."""
    PerformanceSnapshot.objects.bulk_create(
        [
            PerformanceSnapshot(
                metric=figure.metric,
                scope=figure.scope,
                value=figure.value,
                sample_size=figure.sample_size,
                captured_at=captured_at,
                details=figure.details,
            )
            for figure in figures
        ],
        update_conflicts=True,
        unique_fields=["metric", "scope", "captured_at"],
        update_fields=["value", "sample_size", "details"],
    )
    return len(figures)


def operators_channel(platform: str) -> str:
    return {
        "telegram": settings.TELEGRAM_OPERATORS_CHANNEL_ID,
        "discord": settings.DISCORD_OPERATORS_CHANNEL_ID,
    }.get(platform, "")


def _crossed(rule: AlertRule, value: float) -> bool:
    if rule.comparison == AlertRule.Comparison.ABOVE:
        return value > rule.threshold
    return value < rule.threshold


def _alert_message(rule: AlertRule, figure: Figure) -> str:
    scope = f" for {figure.scope}" if figure.scope else ""
    return (
        f"CoinLink alert: {rule.name}. {rule.metric}{scope} is {figure.value:g}, "
        f"{rule.get_comparison_display().lower()} the threshold of {rule.threshold:g}."
    )


def _deliver(alert: Alert, platform: str) -> dict[str, str]:
    """Tell the operators' channel on ``platform``; what happened, never an exception: an unreachable channel
    must not fail the run that noticed the problem (the dashboard has the alert either way)."""
    channel = operators_channel(platform)
    if platform not in ALERT_PLATFORMS:
        return {"status": "failed", "error": f"alerts go to {' or '.join(ALERT_PLATFORMS)}, not {platform}"}
    if not channel:
        setting = f"{platform.upper()}_OPERATORS_CHANNEL_ID"
        return {"status": "failed", "error": f"no operators' channel: {setting} is not set"}
    post = OutboundPost(
        platform=platform, text=alert.message, idempotency_key=f"alert:{alert.pk}:{platform}", channel=channel
    )
    try:
        result = get_publisher(platform).publish(post)
    except (IntegrationError, ImproperlyConfigured) as exc:
        logger.warning("alert #%s not delivered on %s: %s", alert.pk, platform, exc)
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]}
    return {"status": "sent", "external_id": result.external_id}


def _announce(alert: Alert, rule: AlertRule) -> None:
    live.broadcast(
        DASHBOARD_GROUP,
        "alert",
        {
            "id": alert.pk,
            "rule": rule.name,
            "metric": rule.metric,
            "scope": alert.scope,
            "value": alert.value,
            "comparison": rule.comparison,
            "threshold": rule.threshold,
            "message": alert.message,
            "fired_at": alert.fired_at,
            "delivered": alert.delivered,
        },
    )


def alerts_fire(*, figures: Sequence[Figure], now: dt.datetime) -> list[Alert]:
    """For each enabled rule, the figures of its metric (and scope; every scope when the rule names none) that
    cross its threshold, and have not fired for the rule and scope within its cooldown, become alerts: a row,
    a live dashboard event, and a message to the operators' channel on each of the rule's platforms (each
    outcome in ``delivered``). Returns the alerts fired."""
    rules = selectors.alert_rule_list_enabled()
    if not rules:
        return []
    longest = max(rule.cooldown_minutes for rule in rules)
    last_fired = selectors.alert_last_fired(
        rule_ids=[rule.pk for rule in rules], since=now - dt.timedelta(minutes=longest)
    )
    fired: list[Alert] = []
    for rule in rules:
        cooldown_start = now - dt.timedelta(minutes=rule.cooldown_minutes)
        for figure in figures:
            if figure.metric != rule.metric or (rule.scope and figure.scope != rule.scope):
                continue
            if not _crossed(rule, figure.value):
                continue
            last = last_fired.get((rule.pk, figure.scope))
            if last is not None and last > cooldown_start:
                continue
            alert = Alert.objects.create(
                rule=rule,
                scope=figure.scope,
                value=figure.value,
                message=_alert_message(rule, figure),
                fired_at=now,
            )
            alert.delivered = {platform: _deliver(alert, platform) for platform in rule.notify_platforms}
            alert.save(update_fields=["delivered"])
            _announce(alert, rule)
            fired.append(alert)
    return fired


# --- A/B decisions into proposals ---------------------------------------------------------------------------------

CREATION_AGENT = "content_creation"
STRATEGIST_AGENT = "content_strategist"
CONVERSION_AGENT = "conversion"


def _dimension(test: ABTest) -> str:
    """What the test varied: its hypothesis says; a test made by hand is read from its winner's payload."""
    try:
        return str(test.source_hypothesis.dimension)
    except Hypothesis.DoesNotExist:
        pass
    payload = test.winner.payload if test.winner and isinstance(test.winner.payload, dict) else {}
    for key, dimension in (
        ("promotion_code", Hypothesis.Dimension.OFFER_DISCOUNT),
        ("slots", Hypothesis.Dimension.SEND_TIME),
        ("format", Hypothesis.Dimension.FORMAT),
    ):
        if key in payload:
            return str(dimension)
    if set(payload) == {"cta"}:
        return str(Hypothesis.Dimension.CALL_TO_ACTION)
    return str(Hypothesis.Dimension.TONE)


def _in_force(agent_name: str, parameter: str) -> Any:
    """The parameter's value in force, or None when the agent, the parameter or its configuration is not
    usable (the proposal is then skipped when applied, with the reason)."""
    try:
        agent = registry.get(agent_name)
    except registry.UnknownAgent:
        return None
    config = agent_selectors.agent_config_get(agent_name=agent_name)
    try:
        return agent.validate_parameters(config.parameters if config else {}).get(parameter)
    except ValidationError:
        return None


def _table(agent_name: str, parameter: str) -> dict[str, Any]:
    value = _in_force(agent_name, parameter)
    return dict(value) if isinstance(value, dict) else {}


def _ab_evidence(test: ABTest, winner: ABTestVariant) -> dict[str, Any]:
    metrics = test.result.get("metrics", {}) if isinstance(test.result, dict) else {}
    comparison = metrics.get(test.metric, {}).get("comparisons", {}).get(winner.key, {})
    return {
        "ab_test": test.slug,
        "test": test.name,
        "decided_at": test.decided_at.isoformat() if test.decided_at else None,
        "metric": test.metric,
        "winner": winner.key,
        "winner_name": winner.name,
        "payload": winner.payload,
        "comparison": comparison,
    }


def _ab_reason(test: ABTest, winner: ABTestVariant, evidence: dict[str, Any]) -> str:
    comparison = evidence["comparison"]
    figures = ""
    if isinstance(comparison.get("effect"), int | float):
        figures = f" (effect {comparison['effect']:+.1%}"
        if isinstance(comparison.get("adjusted_p_value"), int | float):
            figures += f", adjusted p {comparison['adjusted_p_value']:.3g}"
        figures += ")"
    return (
        f"A/B test {test.name!r} ({test.slug}) chose {winner.name!r} ({winner.key}) on {test.metric}{figures}"
    )


def _ab_targets(test: ABTest, winner: ABTestVariant) -> list[tuple[str, str, Any]]:
    """(agent, parameter, target) for what the winner says, in the order they must apply; empty when the
    test varied something no parameter holds."""
    payload = winner.payload if isinstance(winner.payload, dict) else {}
    dimension = _dimension(test)
    if dimension in (Hypothesis.Dimension.TONE, Hypothesis.Dimension.CALL_TO_ACTION):
        if test.subject != ABTest.Subject.POST or not payload:
            return []
        # The winning copy becomes a preset named after the test, then the creation agent's default tone.
        tones = {**_table(CREATION_AGENT, "tones"), test.slug: payload}
        return [(CREATION_AGENT, "tones", tones), (CREATION_AGENT, "tone", test.slug)]
    if dimension == Hypothesis.Dimension.FORMAT:
        platforms = payload.get("platform")
        platforms = [platforms] if isinstance(platforms, str) else list(platforms or [])
        if not platforms or not isinstance(payload.get("format"), str):
            return []
        formats = {**_table(STRATEGIST_AGENT, "formats"), **dict.fromkeys(platforms, payload["format"])}
        return [(STRATEGIST_AGENT, "formats", formats)]
    if dimension == Hypothesis.Dimension.SEND_TIME:
        if not isinstance(payload.get("slots"), dict) or not payload["slots"]:
            return []
        return [(STRATEGIST_AGENT, "slots", {**_table(STRATEGIST_AGENT, "slots"), **payload["slots"]})]
    if dimension == Hypothesis.Dimension.OFFER_DISCOUNT:
        if not isinstance(payload.get("promotion_code"), str):
            return []
        return [(CONVERSION_AGENT, "promotion_code", payload["promotion_code"])]
    return []


@dataclass
class AbProposals:
    proposed: list[StrategyChange] = field(default_factory=list)
    # Decided tests with nothing to apply: no winner, the control won, or nothing holds what they varied.
    ignored: list[str] = field(default_factory=list)


def strategy_changes_propose_from_ab_tests(*, tests: Sequence[ABTest]) -> AbProposals:
    """Turn decided A/B tests with a winner into proposals (source ``ab_test``), each test once whatever the
    window it is read in: tone and call to action → a ``content_creation`` preset and its default ``tone``;
    format → ``content_strategist.formats`` for the payload's platform(s); send time →
    ``content_strategist.slots``; offer discount → ``conversion.promotion_code``. A control that wins leaves
    the strategy as it is."""
    outcome = AbProposals()
    done = selectors.strategy_change_tests_proposed(test_slugs=[test.slug for test in tests])
    for test in tests:
        if test.slug in done:
            continue
        winner = test.winner
        if test.decision != ABTest.Decision.WINNER or winner is None or winner.is_control:
            outcome.ignored.append(test.slug)
            continue
        targets = _ab_targets(test, winner)
        if not targets:
            outcome.ignored.append(test.slug)
            continue
        evidence = _ab_evidence(test, winner)
        reason = _ab_reason(test, winner, evidence)
        for agent_name, parameter, target in targets:
            outcome.proposed.append(
                strategy_change_propose(
                    agent_name=agent_name,
                    parameter=parameter,
                    target=target,
                    source=StrategyChange.Source.AB_TEST,
                    reason=reason,
                    evidence=evidence,
                )
            )
    return outcome
