"""The community moderator agent: ends mutes, restores standings, refreshes the drainer feed, retrains the
classifier, and reports the day's actions by check and the appeals granted into performance snapshots and the
live dashboard."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from pytest_django.fixtures import Settings

from apps.agents import registry
from apps.agents.base import AgentContext
from apps.agents.models import PerformanceSnapshot
from apps.community.models import ModerationStanding
from apps.core import live
from apps.core.models import Platform
from apps.moderation.agents import CommunityModeratorAgent
from apps.moderation.models import ActionKind, BlockedDomain, ClassifierTraining, ModerationAction
from apps.moderation.services.appeals import appeal_decide, appeal_open
from apps.moderation.services.enforcement import day_start, moderation_enforce
from apps.moderation.tests.enforcement_support import (
    COMMUNITY_CHAT,
    GUILD,
    SEED_PHRASE,
    SUPPORT_SCAM,
    person_on_both,
    removal,
    scam,
)

pytestmark = pytest.mark.django_db

Capture = Callable[..., Any]


@pytest.fixture(autouse=True)
def _community(settings: Settings) -> None:
    settings.DISCORD_BACKEND = "outbox"
    settings.TELEGRAM_BACKEND = "outbox"
    settings.DISCORD_GUILD_ID = GUILD
    settings.MODERATION_TELEGRAM_CHATS = [COMMUNITY_CHAT]


@pytest.fixture
def broadcasts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(live, "broadcast", lambda group, event, payload: sent.append((event, payload)))
    return sent


def _run(now: dt.datetime, **parameters: Any) -> Any:
    ctx = AgentContext(
        run_id=41, agent_name="community_moderator", trigger="manual", now=now, parameters=parameters
    )
    return CommunityModeratorAgent().execute(ctx)


def _snapshots(day: dt.datetime) -> dict[tuple[str, str], tuple[float, int | None]]:
    return {
        (s.metric, s.scope): (s.value, s.sample_size)
        for s in PerformanceSnapshot.objects.filter(metric__startswith="moderation.", captured_at=day)
    }


def test_the_agent_is_registered_in_phase_three() -> None:
    agent = registry.get("community_moderator")
    assert (agent, agent.phase) == (CommunityModeratorAgent, 3)
    with pytest.raises(ValidationError, match="report_days"):
        CommunityModeratorAgent.validate_parameters({"report_days": 0})


def test_a_run_ends_mutes_and_reports_the_day_by_check_with_the_false_positive_rate(
    django_capture_on_commit_callbacks: Capture, broadcasts: list[tuple[str, dict[str, Any]]]
) -> None:
    person = person_on_both()
    with django_capture_on_commit_callbacks(execute=True):
        moderation_enforce(message=scam(), judgement=removal(SEED_PHRASE))
        (mute,) = moderation_enforce(message=scam(Platform.TELEGRAM), judgement=removal(SEED_PHRASE))
        (ban,) = moderation_enforce(message=scam(), judgement=removal(SUPPORT_SCAM, SEED_PHRASE))
        appeal = appeal_open(action_id=ban.pk, message="that was a real support ticket link")
        appeal_decide(appeal_id=appeal.pk, granted=True, actor=None)
    now = timezone.now() + dt.timedelta(seconds=1)
    ModerationAction.objects.filter(pk=mute.pk).update(expires_at=now - dt.timedelta(minutes=5))
    trainings = ClassifierTraining.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        result = _run(now)

    assert result.counters["mutes_ended"] == 1
    assert result.counters["classifier_retrained"] == 1
    assert result.counters["classifier_labels"] == 1  # the granted appeal's "ham"
    assert ClassifierTraining.objects.count() == trainings + 1
    assert BlockedDomain.objects.filter(is_active=True).exists()
    assert not result.degradations
    person.refresh_from_db()
    assert (person.standing, person.muted_until) == (ModerationStanding.WARNED, None)
    today = day_start(now)
    assert _snapshots(today) == {
        ("moderation.actions", ""): (3.0, None),
        ("moderation.actions", "check:seed_phrase"): (3.0, None),
        ("moderation.actions", "check:support_scam"): (1.0, None),
        ("moderation.actions", f"action:{ActionKind.WARN}"): (1.0, None),
        ("moderation.actions", f"action:{ActionKind.MUTE}"): (1.0, None),
        ("moderation.actions", f"action:{ActionKind.BAN}"): (1.0, None),
        ("moderation.appeals_granted", ""): (1.0, None),
        ("moderation.appeals_denied", ""): (0.0, None),
        ("moderation.false_positive_rate", ""): (pytest.approx(1 / 3), 3),
    }
    # The days before, with nothing in them: zero actions and no rate (nothing to divide).
    assert _snapshots(today - dt.timedelta(days=1))[("moderation.actions", "")] == (0.0, None)
    assert ("moderation.false_positive_rate", "") not in _snapshots(today - dt.timedelta(days=1))
    assert PerformanceSnapshot.objects.filter(metric="moderation.actions", scope="").count() == 7
    ((_event, payload),) = [b for b in broadcasts if b[0] == "moderation_report"]
    assert (payload["actions"], payload["appeals_granted"], payload["run_id"]) == (3, 1, 41)
    assert payload["false_positive_rate"] == pytest.approx(1 / 3)
    assert "3 actions" in result.summary
    assert "false-positive rate 33.3%" in result.summary

    # A second run the same day replaces the figures instead of adding rows, and with no new label since the
    # last training does not retrain.
    rows = PerformanceSnapshot.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        again = _run(now + dt.timedelta(minutes=15))
    assert PerformanceSnapshot.objects.count() == rows
    assert again.counters["classifier_retrained"] == 0
    assert ClassifierTraining.objects.count() == trainings + 1


def test_a_feed_outage_degrades_the_run_and_the_rest_still_happens(
    monkeypatch: pytest.MonkeyPatch, broadcasts: list[tuple[str, dict[str, Any]]]
) -> None:
    from apps.core.resilience import TransientError
    from apps.moderation.services import domains

    def down() -> dict[str, Any]:
        raise TransientError("feed unreachable", service="drainer_feed")

    monkeypatch.setattr(domains, "blocked_domains_refresh", down)

    result = _run(timezone.now(), retrain_classifier=False, report_days=1)

    assert result.counters["errors.drainer_feed"] == 1
    assert result.degradations == ["drainer-domain feed not refreshed: feed unreachable"]
    assert PerformanceSnapshot.objects.filter(metric="moderation.actions", scope="").count() == 1
