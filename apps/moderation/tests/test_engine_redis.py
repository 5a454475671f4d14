"""Flood and duplicate counts shared across processes through Redis (needs REDIS_URL; a failure in CI)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from apps.moderation.engine.types import Verdict
from apps.moderation.services.judging import RedisHistory, moderation_judge, shared_history
from apps.moderation.tests.engine_support import fresh_engine, message

pytestmark = [pytest.mark.redis, pytest.mark.django_db, pytest.mark.usefixtures("fresh_engine")]
__all__ = ["fresh_engine"]

ROOT = Path(__file__).resolve().parents[3]

OTHER_PROCESS = """
import datetime as dt, sys, django
django.setup()
from apps.moderation.services.judging import shared_history
history = shared_history()
now = dt.datetime.fromisoformat(sys.argv[1])
for _ in range(3):
    history.messages_in_window(author="telegram:4242", window_seconds=60, now=now)
history.authors_with_text(text=sys.argv[2], author="telegram:other-1", window_seconds=3600, now=now)
history.authors_with_text(text=sys.argv[2], author="telegram:other-2", window_seconds=3600, now=now)
print(type(history).__name__)
"""


def test_counts_made_in_another_process_reach_this_one(settings: Any) -> None:
    settings.MODERATION_FLOOD_MESSAGES = 3
    settings.MODERATION_FLOOD_SECONDS = 60
    settings.MODERATION_DUPLICATE_AUTHORS = 3
    assert isinstance(shared_history(), RedisHistory)
    now = timezone.now().replace(second=5, microsecond=0)
    text = "Exclusive offer for this group only, check the pinned post"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "coinlink.settings",
        "REDIS_URL": django_settings.REDIS_URL,
    }
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", OTHER_PROCESS, now.isoformat(), text],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "RedisHistory"
    # Three messages of this author were counted elsewhere: the fourth, here, is a flood.
    judged = moderation_judge(message=message(text, sent_at=now + dt.timedelta(seconds=1)))
    by_check = {hit.check: hit for hit in judged.checks}
    assert by_check["flood"].evidence["count"] == 4
    assert by_check["duplicate_text"].evidence == {"authors": 3}
    assert judged.verdict == Verdict.REMOVE


def test_a_dry_run_reads_without_counting() -> None:
    now = timezone.now()
    history = shared_history(record=False)
    for _ in range(3):
        assert history.messages_in_window(author="telegram:x", window_seconds=60, now=now) == 1
        assert history.messages_before(author="telegram:x") == 0
    recording = shared_history()
    assert recording.messages_before(author="telegram:x") == 0
    assert recording.messages_before(author="telegram:x") == 1
    assert history.messages_before(author="telegram:x") == 2
