"""The strategy-change log: proposals supersede older ones, a cycle applies a bounded step of each (numbers in
nested tables included, strings at once) through the agent's own validation, at most a few per cycle, nothing
while frozen; a revert puts the value back unless a later change superseded it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.accounts.factories import UserFactory
from apps.agents.models import AgentConfig
from apps.learning.factories import StrategyChangeFactory
from apps.learning.models import LearningControl, StrategyChange
from apps.learning.services import (
    bounded_toward,
    learning_control_get,
    learning_freeze,
    strategy_change_propose,
    strategy_change_revert,
    strategy_changes_apply,
)

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 11, 16, 9, 0, tzinfo=dt.UTC)
STRATEGIST = "content_strategist"
DEFAULT_PLATFORM_WEIGHTS = {"x": 1.0, "telegram": 0.8, "discord": 0.6}


def _propose(parameter: str, target: Any, *, agent_name: str = STRATEGIST) -> StrategyChange:
    return strategy_change_propose(
        agent_name=agent_name,
        parameter=parameter,
        target=target,
        source=StrategyChange.Source.STRATEGY_TUNING,
        reason="X earns more",
        evidence={"posts": 40},
    )


def _overrides(agent_name: str = STRATEGIST) -> dict[str, Any]:
    return AgentConfig.objects.get(agent_name=agent_name).parameters


def _apply(**kwargs: Any) -> list[StrategyChange]:
    arguments = {"cycle": 7, "now": NOW, "max_changes": 5, "max_step": 0.2, **kwargs}
    return strategy_changes_apply(**arguments)


# --- proposing ------------------------------------------------------------------------------------------------


def test_a_proposal_supersedes_the_waiting_one_for_the_same_parameter_only() -> None:
    first = _propose("platform_weights", {"x": 1.1})
    other_parameter = _propose("weights", {"confidence": 0.6})
    other_agent = _propose("weights", {"recency": 3.0}, agent_name="conversion")
    applied = StrategyChangeFactory.create(parameter="platform_weights", status=StrategyChange.Status.APPLIED)

    latest = _propose("platform_weights", {"x": 1.3})

    statuses = dict(StrategyChange.objects.values_list("pk", "status"))
    assert statuses == {
        first.pk: "superseded",
        other_parameter.pk: "proposed",
        other_agent.pk: "proposed",
        applied.pk: "applied",
        latest.pk: "proposed",
    }
    assert (latest.target, latest.source, latest.reason, latest.evidence) == (
        {"x": 1.3},
        "strategy_tuning",
        "X earns more",
        {"posts": 40},
    )


# --- bounding -------------------------------------------------------------------------------------------------


def test_bounding_moves_numbers_part_of_the_way_at_every_depth_and_strings_at_once() -> None:
    current = {
        "x": {"single_post|morning|plain": 1.0, "x_thread|evening|bold": 0.5, "gone": 0.3},
        "telegram": {"long_post|night|plain": 0.0},
        "label": "old",
        "slots": ["09:00"],
        "count": 10,
        "small": 1,
    }
    target = {
        "x": {"single_post|morning|plain": 2.0, "x_thread|evening|bold": 0.45, "new": 0.7},
        "telegram": {"long_post|night|plain": 1.0},
        "label": "new",
        "slots": ["10:00", "18:00"],
        "count": 20,
        "small": 5,
    }

    assert bounded_toward(current, target, 0.2) == {
        # Up by at most 20% of 1.0; a move within the step lands on the target.
        "x": {"single_post|morning|plain": 1.2, "x_thread|evening|bold": 0.45, "new": 0.7},
        # From zero the step is absolute.
        "telegram": {"long_post|night|plain": 0.2},
        "label": "new",
        "slots": ["10:00", "18:00"],
        # Whole numbers stay whole, and move by at least one.
        "count": 12,
        "small": 2,
    }
    assert bounded_toward(1.0, 0.1, 0.2) == 0.8
    assert bounded_toward(True, False, 0.2) is False


# --- applying -------------------------------------------------------------------------------------------------


def test_a_cycle_applies_a_bounded_step_and_records_before_and_after() -> None:
    change = _propose("platform_weights", {"x": 2.0, "telegram": 0.8, "discord": 0.6})

    settled = _apply()

    change.refresh_from_db()
    assert settled == [change]
    assert (change.status, change.cycle, change.applied_at, change.skip_reason) == ("applied", 7, NOW, "")
    assert change.before == DEFAULT_PLATFORM_WEIGHTS
    assert change.after == {"x": 1.2, "telegram": 0.8, "discord": 0.6}
    assert _overrides() == {"platform_weights": {"x": 1.2, "telegram": 0.8, "discord": 0.6}}


def test_the_next_cycle_moves_on_from_the_value_in_force() -> None:
    _propose("platform_weights", {"x": 2.0})
    _apply()
    second = _propose("platform_weights", {"x": 2.0})

    _apply(cycle=8)

    second.refresh_from_db()
    assert (second.before, second.after) == (
        {"x": 1.2, "telegram": 0.8, "discord": 0.6},
        {"x": 1.44, "telegram": 0.8, "discord": 0.6},
    )
    assert _overrides()["platform_weights"]["x"] == 1.44


def test_other_overrides_are_kept_and_strings_jump_to_the_target() -> None:
    AgentConfig.objects.create(agent_name=STRATEGIST, parameters={"quiet_hours": "0-6"})
    change = _propose("formats", {"x": "x_thread", "telegram": "long_post", "discord": "discord_embed"})

    _apply()

    change.refresh_from_db()
    assert change.before == {
        "x": "single_post",
        "telegram": "telegram_chart_post",
        "discord": "discord_embed",
    }
    assert change.after == {"x": "x_thread", "telegram": "long_post", "discord": "discord_embed"}
    assert _overrides() == {"quiet_hours": "0-6", "formats": change.after}


def test_at_most_max_changes_apply_oldest_first_and_the_rest_wait() -> None:
    first = _propose("platform_weights", {"x": 1.1})
    second = _propose("recency_half_life_hours", 7.0)
    third = _propose("min_priority", 0.1)

    settled = _apply(max_changes=2)

    assert [c.pk for c in settled] == [first.pk, second.pk]
    statuses = dict(StrategyChange.objects.values_list("pk", "status"))
    assert statuses == {first.pk: "applied", second.pk: "applied", third.pk: "proposed"}
    assert _overrides() == {"platform_weights": {"x": 1.1}, "recency_half_life_hours": 7.0}


def test_a_value_the_agent_refuses_is_skipped_with_its_message_and_nothing_is_written() -> None:
    AgentConfig.objects.create(agent_name=STRATEGIST, parameters={"quiet_hours": "0-6"})
    refused = _propose("formats", {"x": "discord_embed"})
    unknown_parameter = _propose("no_such_thing", 1.0)
    unknown_agent = _propose("weights", {"a": 1.0}, agent_name="ghost")
    same = _propose("min_priority", 0.0)

    settled = _apply()

    assert [(c.pk, c.status, c.skip_reason) for c in settled] == [
        (refused.pk, "skipped", "formats.x: 'discord_embed' is not a format for that platform"),
        (unknown_parameter.pk, "skipped", "content_strategist has no parameter 'no_such_thing'"),
        (unknown_agent.pk, "skipped", "no agent named 'ghost' is registered"),
        (same.pk, "skipped", "already in force"),
    ]
    assert all(c.before is None and c.after is None and c.applied_at is None for c in settled)
    assert _overrides() == {"quiet_hours": "0-6"}


def test_a_skipped_change_does_not_use_up_the_cycle() -> None:
    refused = _propose("formats", {"x": "discord_embed"})
    accepted = _propose("min_priority", 0.1)

    _apply(max_changes=1)

    statuses = dict(StrategyChange.objects.values_list("pk", "status"))
    assert statuses == {refused.pk: "skipped", accepted.pk: "applied"}


def test_while_frozen_every_proposal_is_skipped_and_no_configuration_changes() -> None:
    AgentConfig.objects.create(agent_name=STRATEGIST, parameters={"quiet_hours": "0-6"})
    configs_before = list(AgentConfig.objects.order_by("pk").values("agent_name", "parameters", "updated_at"))
    operator = UserFactory.create(staff=True)
    learning_freeze(frozen=True, user=operator, reason="launch week")
    changes = [_propose("platform_weights", {"x": 2.0}), _propose("min_priority", 0.1)]

    settled = _apply()

    assert sorted(c.pk for c in settled) == sorted(c.pk for c in changes)
    rows = StrategyChange.objects.order_by("pk").values_list(
        "status", "skip_reason", "cycle", "before", "after"
    )
    assert list(rows) == [("skipped", "frozen", 7, None, None), ("skipped", "frozen", 7, None, None)]
    assert (
        list(AgentConfig.objects.order_by("pk").values("agent_name", "parameters", "updated_at"))
        == configs_before
    )
    control = LearningControl.objects.get()
    assert (control.frozen, control.reason, control.changed_by) == (True, "launch week", operator)


def test_unfreezing_lets_the_next_cycle_apply() -> None:
    learning_freeze(frozen=True, user=None, reason="launch week")
    learning_freeze(frozen=False, user=None, reason="")
    change = _propose("min_priority", 0.1)

    _apply()

    change.refresh_from_db()
    assert change.status == "applied"
    assert learning_control_get().pk == 1


# --- reverting ------------------------------------------------------------------------------------------------


def test_a_revert_restores_the_value_before_and_logs_an_operators_change() -> None:
    AgentConfig.objects.create(agent_name=STRATEGIST, parameters={"platform_weights": {"x": 1.1}})
    change = _propose("platform_weights", {"x": 2.0})
    _apply()
    operator = UserFactory.create(staff=True)

    reverted = strategy_change_revert(change_id=change.pk, user=operator)

    assert (reverted.status, reverted.reverted_by) == ("reverted", operator)
    assert reverted.reverted_at is not None
    assert reverted.reverted_at >= timezone.now() - dt.timedelta(minutes=1)
    weights_before = {"x": 1.1, "telegram": 0.8, "discord": 0.6}
    assert _overrides() == {"platform_weights": weights_before}
    log = StrategyChange.objects.exclude(pk=change.pk).get()
    assert (log.source, log.status, log.parameter, log.evidence) == (
        "operator",
        "applied",
        "platform_weights",
        {"reverts": change.pk},
    )
    assert (log.before, log.after, log.target) == (
        {"x": 1.32, "telegram": 0.8, "discord": 0.6},
        weights_before,
        weights_before,
    )
    assert log.reason == f"Reverted change #{change.pk} by {operator}: back to the value before it"


def test_reverting_to_the_default_drops_the_override() -> None:
    AgentConfig.objects.create(agent_name=STRATEGIST, parameters={"quiet_hours": "0-6"})
    change = _propose("min_priority", 0.1)
    _apply()

    strategy_change_revert(change_id=change.pk, user=None)

    assert _overrides() == {"quiet_hours": "0-6"}


def test_a_superseded_change_is_not_reverted_and_nothing_changes() -> None:
    first = _propose("platform_weights", {"x": 2.0})
    _apply()
    _propose("platform_weights", {"x": 2.0})
    _apply(cycle=8)
    overrides = _overrides()
    rows = list(StrategyChange.objects.order_by("pk").values())

    with pytest.raises(ValidationError) as refusal:
        strategy_change_revert(change_id=first.pk, user=None)

    assert refusal.value.messages == [
        f"change #{first.pk} (content_strategist.platform_weights) was superseded by a later change: "
        "platform_weights no longer holds the value it applied"
    ]
    assert _overrides() == overrides
    assert list(StrategyChange.objects.order_by("pk").values()) == rows


def test_only_an_applied_change_reverts() -> None:
    waiting = _propose("min_priority", 0.1)

    with pytest.raises(ValidationError) as refusal:
        strategy_change_revert(change_id=waiting.pk, user=None)

    assert refusal.value.messages == [
        f"change #{waiting.pk} (content_strategist.min_priority) is proposed: only applied changes revert"
    ]
    assert not AgentConfig.objects.filter(agent_name=STRATEGIST).exclude(parameters={}).exists()
    assert StrategyChange.objects.get().status == "proposed"
