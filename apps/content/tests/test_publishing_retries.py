"""Publishing's retries need no Celery retry, on the embedded default as with a broker: a draft whose post failed
transiently waits, approved, in the database; runs within its backoff leave it alone (no call to the
platform), and the next scheduled run after it publishes it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from pytest_httpserver import HTTPServer

from apps.content.agents.publishing import PUBLISH_RETRY_BACKOFF, PublishingAgent, retry_not_before
from apps.content.models import DraftStatus, PublishedContent
from apps.content.tests.test_publishing import (  # noqa: F401 (fixtures)
    NOW,
    SEND,
    _accepted,
    _draft,
    _publishing_settings,
    _run,
    _sent,
    telegram,
)

pytestmark = pytest.mark.django_db


def _bad_gateway(server: HTTPServer) -> None:
    server.expect_ordered_request(SEND, method="POST").respond_with_json(
        {"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502
    )


def test_a_transient_failure_is_retried_by_the_next_run_after_its_backoff_not_sooner(
    telegram: HTTPServer,  # noqa: F811
) -> None:
    # One publishing call, whose own quick retries all meet a 502; then the platform is back.
    for _ in range(3):
        _bad_gateway(telegram)
    telegram.expect_ordered_request(SEND, method="POST").respond_with_json(_accepted(44))
    with time_machine.travel(NOW) as clock:
        draft = _draft("telegram", "single_post")

        counters = _run(NOW)

        assert counters["retry_later"] == 1
        draft.refresh_from_db()
        assert (draft.status, draft.publish_attempts) == (DraftStatus.APPROVED, 1)
        assert draft.last_error.startswith("TransientError")
        not_before = retry_not_before(draft)
        assert not_before is not None
        # The first wait: between half and all of the policy's base delay (2 minutes).
        base = dt.timedelta(seconds=PUBLISH_RETRY_BACKOFF.base_delay)
        assert draft.updated_at + base / 2 <= not_before <= draft.updated_at + base
        calls = _sent(telegram)
        assert calls == 3

        # A pipeline run or a "run now" within the backoff does not call the platform again.
        clock.move_to(not_before - dt.timedelta(seconds=1))
        counters = _run(not_before - dt.timedelta(seconds=1))
        assert (counters["backing_off"], counters["published"], counters["retry_later"]) == (1, 0, 0)
        assert _sent(telegram) == calls
        assert PublishingAgent.default_schedule == "*/5 * * * *"

        # The agent's next scheduled run, five minutes on, publishes it.
        later = NOW + dt.timedelta(minutes=5)
        clock.move_to(later)
        counters = _run(later)

    assert counters["published.telegram"] == 1
    assert _sent(telegram) == calls + 1
    draft.refresh_from_db()
    assert (draft.status, draft.publish_attempts) == (DraftStatus.PUBLISHED, 2)
    assert PublishedContent.objects.get(draft=draft).external_id == "44"


def test_the_backoff_grows_with_the_attempts_and_is_the_same_on_every_run(telegram: Any) -> None:  # noqa: F811
    never_failed = _draft("telegram", "single_post", publish_attempts=2)
    third = _draft("telegram", "single_post", publish_attempts=3, last_error="TransientError: 502")

    assert retry_not_before(never_failed) is None
    first = retry_not_before(third)
    assert first is not None
    assert first == retry_not_before(third)
    assert (
        third.updated_at + dt.timedelta(seconds=240) <= first <= third.updated_at + dt.timedelta(seconds=480)
    )
