"""The whole pipeline runs on a schedule by default (five of its agents have none of their own, so without it
production would never draft a post); AGENT_PIPELINE_SCHEDULE changes it or turns it off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django_celery_beat.models import PeriodicTask
from pytest_django.fixtures import Settings as DjangoSettings

from apps.agents.services import PIPELINE_SCHEDULE_NAME, RUN_PIPELINE_TASK, agent_config_sync

ROOT = Path(__file__).resolve().parents[3]


def _setting(value: str | None) -> str:
    """AGENT_PIPELINE_SCHEDULE as a fresh process reads it from its environment."""
    env = {key: val for key, val in os.environ.items() if key != "AGENT_PIPELINE_SCHEDULE"}
    if value is not None:
        env["AGENT_PIPELINE_SCHEDULE"] = value
    env["DJANGO_SETTINGS_MODULE"] = "coinlink.settings"
    code = "from django.conf import settings; print(repr(settings.AGENT_PIPELINE_SCHEDULE))"
    out = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_the_default_is_every_half_hour_and_the_setting_changes_or_disables_it() -> None:
    assert _setting(None) == "'*/30 * * * *'"
    assert _setting("0 * * * *") == "'0 * * * *'"
    assert _setting("off") == "''"
    assert _setting("OFF") == "''"
    assert _setting("") == "''"


@pytest.mark.django_db
def test_the_default_schedule_becomes_the_pipelines_beat_entry(settings: DjangoSettings) -> None:
    settings.AGENT_PIPELINE_SCHEDULE = "*/30 * * * *"

    agent_config_sync()

    task = PeriodicTask.objects.get(name=PIPELINE_SCHEDULE_NAME)
    assert task.task == RUN_PIPELINE_TASK
    assert task.enabled
    assert task.crontab is not None
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("*/30", "*", "UTC")


@pytest.mark.django_db
def test_off_makes_no_pipeline_schedule(settings: DjangoSettings) -> None:
    settings.AGENT_PIPELINE_SCHEDULE = ""

    agent_config_sync()

    assert not PeriodicTask.objects.filter(name=PIPELINE_SCHEDULE_NAME).exists()
