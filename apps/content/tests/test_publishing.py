"""Publishing: each approved, due draft goes out once per platform. Through the outbox twin (runs repeated or
racing on PostgreSQL), and through the real Telegram publisher against a fake Bot API on loopback: the platform
accepting a post that we then fail to record is never posted again, a dead worker's post is not resent blindly,
a 429 leaves the draft approved for the next run."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.db import DatabaseError, connections
from django.utils import timezone
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer

from apps.agents.base import AgentContext
from apps.agents.models import AgentRun, AgentRunStatus
from apps.agents.services import agent_run_create, agent_run_execute
from apps.content import services
from apps.content.agents import publishing
from apps.content.agents.publishing import PublishingAgent, outbound_post
from apps.content.factories import (
    ContentDraftFactory,
    ContentPlanFactory,
    MediaFactory,
    PublishedContentFactory,
)
from apps.content.models import ContentDraft, DraftStatus, PlanStatus, PublishedContent
from apps.integrations.models import OutboxMessage
from apps.integrations.publishers.base import PublishProgress
from apps.integrations.publishers.outbox import OutboxPublisher
from apps.integrations.types import OutboundPost, PublishResult
from apps.market.factories import InsightFactory
from apps.market.models import Insight, InsightStatus

NOW = dt.datetime(2025, 3, 3, 10, 30, tzinfo=dt.UTC)
TOKEN = "123456:TEST-token"
CHANNEL = {"id": -1001234567890, "type": "channel", "title": "CoinLink", "username": "coinlink"}


@pytest.fixture(autouse=True)
def _publishing_settings(settings: Settings, tmp_path: Path) -> None:
    settings.X_BACKEND = settings.TELEGRAM_BACKEND = settings.DISCORD_BACKEND = "outbox"
    settings.CONTENT_DAILY_CAPS = {"x": 8, "telegram": 4, "discord": 4}
    settings.CONTENT_QUIET_HOURS = "0-6"
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private"
    settings.MEDIA_ROOT = tmp_path / "media"


def _context(now: dt.datetime = NOW, **parameters: Any) -> AgentContext:
    return AgentContext(
        run_id=1, agent_name=PublishingAgent.name, trigger="manual", now=now, parameters=parameters
    )


def _run(now: dt.datetime = NOW, **parameters: Any) -> dict[str, int]:
    return dict(PublishingAgent().execute(_context(now, **parameters)).counters)


def _draft(
    platform: str = "x",
    format: str = "single_post",
    *,
    due: dt.datetime = NOW - dt.timedelta(minutes=1),
    status: str = DraftStatus.APPROVED,
    insight: Insight | None = None,
    **fields: Any,
) -> ContentDraft:
    insight = insight or InsightFactory.create(
        detected_at=NOW - dt.timedelta(hours=1), expires_at=NOW + dt.timedelta(hours=12), status="planned"
    )
    plan = ContentPlanFactory.create(
        insight=insight, platform=platform, format=format, scheduled_for=due, status=PlanStatus.DRAFTED
    )
    fields.setdefault("body", f"BTC RSI at 27.40 on {platform}. Not financial advice.")
    return ContentDraftFactory.create(plan=plan, status=status, **fields)


# --- through the outbox -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_approved_due_draft_is_published_once() -> None:
    draft = _draft("x", "single_post")

    counters = _run()

    assert counters["published"] == counters["published.x"] == 1
    message = OutboxMessage.objects.get()
    assert message.idempotency_key == str(draft.idempotency_key)
    assert message.text == draft.body
    published = PublishedContent.objects.get()
    assert (published.platform, published.format, published.external_id) == (
        "x",
        "single_post",
        message.external_id,
    )
    assert published.part_ids == [message.external_id]
    assert published.url == message.url
    assert published.text == draft.body
    assert published.published_at == NOW
    assert published.draft == draft
    draft.refresh_from_db()
    assert draft.status == DraftStatus.PUBLISHED
    assert draft.publish_attempts == 1
    assert draft.plan.status == PlanStatus.PUBLISHED
    assert Insight.objects.get(content_plans=draft.plan).status == InsightStatus.USED

    again = _run(NOW + dt.timedelta(minutes=5))

    assert again["published"] == 0
    assert OutboxMessage.objects.count() == PublishedContent.objects.count() == 1


@pytest.mark.django_db
def test_threads_embeds_and_charts_go_out_whole() -> None:
    parts = ["BTC broke out at $64,123.45.", "Volume confirms interest.", "Not financial advice."]
    thread = _draft("x", "x_thread", body="\n\n".join(parts), parts=parts)
    embed = {"title": "ETH/USDT · Volume spike", "description": "ETH volume 1.20M. Not financial advice."}
    chart = MediaFactory.create()
    card = _draft("discord", "discord_embed", body=embed["description"], embed=embed, image=chart)

    _run()

    by_key = {m.idempotency_key: m for m in OutboxMessage.objects.all()}
    x = by_key[str(thread.idempotency_key)]
    assert (x.text, x.parts) == (parts[0], parts)
    assert PublishedContent.objects.get(draft=thread).part_ids == [
        x.external_id,
        f"{x.external_id}-2",
        f"{x.external_id}-3",
    ]
    assert PublishedContent.objects.get(draft=thread).text == thread.body
    discord = by_key[str(card.idempotency_key)]
    assert discord.text == ""
    assert discord.embed == embed
    assert discord.has_image is True
    assert PublishedContent.objects.get(draft=card).text == card.body


@pytest.mark.django_db
def test_only_approved_due_drafts_go_out() -> None:
    later = _draft(due=NOW + dt.timedelta(minutes=10))
    pending = _draft(status=DraftStatus.PENDING_REVIEW)
    rejected = _draft(status=DraftStatus.REJECTED)

    assert _run()["published"] == 0

    assert OutboxMessage.objects.count() == 0
    assert {d.pk: d.status for d in ContentDraft.objects.all()} == {
        later.pk: DraftStatus.APPROVED,
        pending.pk: DraftStatus.PENDING_REVIEW,
        rejected.pk: DraftStatus.REJECTED,
    }


@pytest.mark.django_db
def test_daily_caps_hold_the_rest_for_tomorrow() -> None:
    PublishedContentFactory.create(platform="telegram", published_at=NOW - dt.timedelta(hours=2))
    PublishedContentFactory.create(platform="telegram", published_at=NOW - dt.timedelta(days=1))
    # (One plan per insight and platform: the database refuses a second.)
    first = _draft(
        "telegram",
        "single_post",
        insight=InsightFactory.create(detected_at=NOW, expires_at=NOW + dt.timedelta(days=2)),
    )
    second = _draft(
        "telegram",
        "single_post",
        insight=InsightFactory.create(detected_at=NOW, expires_at=NOW + dt.timedelta(days=2)),
    )

    counters = _run(daily_caps={"telegram": 2})

    assert counters["published"] == 1
    assert counters["capped.telegram"] == 1
    statuses = {d.pk: d.status for d in ContentDraft.objects.all()}
    assert statuses == {first.pk: DraftStatus.PUBLISHED, second.pk: DraftStatus.APPROVED}
    assert _run(NOW + dt.timedelta(days=1), daily_caps={"telegram": 2})["published"] == 1


@pytest.mark.django_db
def test_nothing_goes_out_in_the_quiet_hours() -> None:
    draft = _draft(due=NOW - dt.timedelta(hours=8))

    counters = _run(NOW.replace(hour=3))

    assert counters["quiet_hours"] == 1
    assert ContentDraft.objects.get(pk=draft.pk).status == DraftStatus.APPROVED


@pytest.mark.django_db
def test_a_chart_post_waits_a_while_for_its_chart() -> None:
    draft = _draft("telegram", "telegram_chart_post", due=NOW - dt.timedelta(minutes=5))

    assert _run()["waiting_for_chart"] == 1
    assert ContentDraft.objects.get(pk=draft.pk).status == DraftStatus.APPROVED

    assert _run(NOW + dt.timedelta(minutes=30))["published"] == 1
    assert OutboxMessage.objects.get().has_image is False


@pytest.mark.django_db
def test_a_post_whose_insight_expired_is_not_sent() -> None:
    insight = InsightFactory.create(
        detected_at=NOW - dt.timedelta(hours=7), expires_at=NOW - dt.timedelta(minutes=5)
    )
    draft = _draft(insight=insight)

    assert _run()["expired"] == 1

    draft.refresh_from_db()
    assert draft.status == DraftStatus.FAILED
    assert "expired" in draft.last_error
    assert OutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_a_lost_call_to_the_outbox_is_confirmed_not_guessed() -> None:
    sent = _draft("x", "single_post")
    OutboxPublisher("x").publish(outbound_post(sent))  # it went out, then the worker died
    never = _draft("telegram", "single_post")  # the worker died before the call
    ContentDraft.objects.filter(pk__in=[sent.pk, never.pk]).update(
        status=DraftStatus.PUBLISHING, updated_at=NOW - dt.timedelta(minutes=11)
    )

    counters = _run()

    assert counters["confirmed_after_lease"] == 2
    assert OutboxMessage.objects.count() == 2
    assert (
        PublishedContent.objects.get(draft=sent).external_id
        == OutboxMessage.objects.get(platform="x").external_id
    )
    assert set(ContentDraft.objects.values_list("status", flat=True)) == {DraftStatus.PUBLISHED}


@pytest.mark.django_db
def test_a_draft_within_its_lease_is_left_to_its_worker() -> None:
    draft = _draft()
    ContentDraft.objects.filter(pk=draft.pk).update(
        status=DraftStatus.PUBLISHING, updated_at=NOW - dt.timedelta(minutes=2)
    )

    _run()

    assert ContentDraft.objects.get(pk=draft.pk).status == DraftStatus.PUBLISHING
    assert OutboxMessage.objects.count() == 0


@pytest.mark.django_db
def test_a_run_through_the_framework(settings: Settings) -> None:
    settings.CONTENT_QUIET_HOURS = ""  # the framework runs it on the wall clock, whatever the hour
    now = timezone.now()
    insight = InsightFactory.create(detected_at=now, expires_at=now + dt.timedelta(hours=6))
    _draft(insight=insight, due=now - dt.timedelta(minutes=1))
    run = agent_run_create(agent_name="publishing", trigger="manual")

    agent_run_execute(run_id=run.pk)

    run = AgentRun.objects.get(pk=run.pk)
    assert run.status == AgentRunStatus.SUCCEEDED, run.error
    assert run.counters["published"] == 1


class _Counting:
    """The outbox, slowed down and counting calls, to make two runs overlap."""

    def __init__(self, inner: Any, calls: list[str], lock: threading.Lock) -> None:
        self.inner, self.calls, self.lock = inner, calls, lock
        self.platform = inner.platform

    def publish(self, post: OutboundPost) -> PublishResult:
        with self.lock:
            self.calls.append(post.idempotency_key)
        time.sleep(0.05)
        return self.inner.publish(post)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_racing_runs_publish_each_draft_once(monkeypatch: pytest.MonkeyPatch) -> None:
    drafts = [_draft(p, "single_post") for p in ("x", "x", "telegram", "telegram", "discord", "discord")]
    calls: list[str] = []
    lock = threading.Lock()
    real = publishing.get_publisher
    monkeypatch.setattr(publishing, "get_publisher", lambda platform: _Counting(real(platform), calls, lock))
    start = threading.Barrier(2)
    errors: list[BaseException] = []
    published: list[int] = []

    def worker() -> None:
        try:
            start.wait()
            published.append(PublishingAgent().execute(_context()).counters["published"])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert sum(published) == 6
    # Each draft reached a publisher exactly once: the other run found it claimed.
    assert sorted(calls) == sorted(str(d.idempotency_key) for d in drafts)
    assert OutboxMessage.objects.count() == 6
    assert PublishedContent.objects.count() == 6
    assert set(ContentDraft.objects.values_list("status", flat=True)) == {DraftStatus.PUBLISHED}


# --- through the real Telegram publisher --------------------------------------------------------------------


@pytest.fixture
def telegram(settings: Settings, httpserver: HTTPServer) -> HTTPServer:
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    return httpserver


SEND = f"/bot{TOKEN}/sendMessage"


def _accepted(message_id: int, text: str = "ok") -> dict[str, Any]:
    return {
        "ok": True,
        "result": {"message_id": message_id, "date": int(NOW.timestamp()), "chat": CHANNEL, "text": text},
    }


def _sent(server: HTTPServer) -> int:
    return sum(1 for request, _ in server.log if request.path == SEND)


class _FailingRecorder:
    """``content_draft_record_published`` failing its first ``times`` calls, as a database blip would."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0
        self.real = services.content_draft_record_published

    def __call__(self, **kwargs: Any) -> PublishedContent | None:
        self.calls += 1
        if self.calls <= self.times:
            raise DatabaseError("server closed the connection unexpectedly")
        return self.real(**kwargs)


@pytest.mark.django_db
def test_a_failure_to_record_after_the_platform_accepted_is_retried_without_resending(
    telegram: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    telegram.expect_request(SEND, method="POST").respond_with_json(_accepted(42))
    draft = _draft("telegram", "single_post")
    recorder = _FailingRecorder(times=1)
    monkeypatch.setattr(services, "content_draft_record_published", recorder)

    counters = _run()

    assert counters["published"] == 1
    assert recorder.calls == 2
    assert _sent(telegram) == 1
    draft.refresh_from_db()
    assert draft.status == DraftStatus.PUBLISHED
    assert PublishedContent.objects.get().external_id == "42"
    assert PublishedContent.objects.get().url == "https://t.me/coinlink/42"

    _run(NOW + dt.timedelta(minutes=5))
    assert _sent(telegram) == 1


@pytest.mark.django_db
def test_a_post_accepted_but_not_recorded_is_recorded_by_the_next_run_without_resending(
    telegram: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    telegram.expect_request(SEND, method="POST").respond_with_json(_accepted(42))
    draft = _draft("telegram", "single_post")
    monkeypatch.setattr(services, "content_draft_record_published", _FailingRecorder(times=2))

    counters = _run()

    assert counters["unrecorded"] == 1
    assert _sent(telegram) == 1
    draft.refresh_from_db()
    # A clear state: still publishing (never to be resent), with what the platform answered.
    assert draft.status == DraftStatus.PUBLISHING
    assert draft.checks["published"] == {
        "external_id": "42",
        "url": "https://t.me/coinlink/42",
        "part_ids": ["42"],
    }
    assert draft.last_error.startswith("published as 42 https://t.me/coinlink/42, but recording it failed")
    assert PublishedContent.objects.count() == 0

    monkeypatch.undo()
    counters = _run(NOW + dt.timedelta(minutes=1))

    assert counters["published"] == 1
    assert _sent(telegram) == 1
    draft.refresh_from_db()
    assert draft.status == DraftStatus.PUBLISHED
    assert "published" not in draft.checks
    assert draft.last_error == ""
    assert PublishedContent.objects.get().external_id == "42"


@pytest.mark.django_db
def test_a_post_that_keeps_failing_to_record_is_handed_to_the_operator(
    telegram: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    telegram.expect_request(SEND, method="POST").respond_with_json(_accepted(42))
    draft = _draft("telegram", "single_post")
    monkeypatch.setattr(services, "content_draft_record_published", _FailingRecorder(times=99))

    _run()
    _run(NOW + dt.timedelta(minutes=1))

    assert _sent(telegram) == 1
    draft.refresh_from_db()
    assert draft.status == DraftStatus.FAILED
    assert draft.last_error.startswith("published on telegram as 42 https://t.me/coinlink/42, but recording")


@pytest.mark.django_db
def test_a_worker_lost_mid_call_is_not_resent_blindly(telegram: HTTPServer) -> None:
    silent = _draft("telegram", "single_post")
    halfway = _draft("telegram", "single_post")
    PublishProgress("telegram", str(halfway.idempotency_key)).record(["41"])
    ContentDraft.objects.filter(pk__in=[silent.pk, halfway.pk]).update(
        status=DraftStatus.PUBLISHING, updated_at=NOW - dt.timedelta(minutes=11)
    )

    counters = _run()

    assert counters["outcome_unknown"] == 2
    assert _sent(telegram) == 0
    silent.refresh_from_db()
    assert silent.status == DraftStatus.FAILED
    assert silent.last_error.startswith("outcome unknown, check the platform")
    assert "10-minute lease" in silent.last_error
    halfway.refresh_from_db()
    assert halfway.last_error.endswith("Parts known to have gone out: 41.")
    assert PublishedContent.objects.count() == 0


@pytest.mark.django_db
def test_a_429_leaves_the_draft_approved_and_the_next_run_publishes_it(telegram: HTTPServer) -> None:
    telegram.expect_ordered_request(SEND, method="POST").respond_with_json(
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 120",
            "parameters": {"retry_after": 120},
        },
        status=429,
    )
    telegram.expect_ordered_request(SEND, method="POST").respond_with_json(_accepted(43))
    first = _draft("telegram", "single_post", due=NOW - dt.timedelta(minutes=2))
    second = _draft("telegram", "single_post")
    x = _draft("x", "single_post")

    counters = _run()

    assert counters["retry_later"] == 1
    assert counters["stopped.telegram"] == 1
    assert counters["published.x"] == 1  # other platforms carry on
    assert _sent(telegram) == 1  # the second Telegram draft was not tried
    first.refresh_from_db()
    assert first.status == DraftStatus.APPROVED
    assert first.publish_attempts == 0  # waiting is not failing
    assert first.last_error.startswith("RateLimited")
    assert ContentDraft.objects.get(pk=second.pk).status == DraftStatus.APPROVED
    assert ContentDraft.objects.get(pk=x.pk).status == DraftStatus.PUBLISHED

    # Straight away the chat is still blocked: nothing is sent, nothing changes.
    assert _run(NOW + dt.timedelta(minutes=1))["retry_later"] == 1
    assert _sent(telegram) == 1

    with time_machine.travel(time.time() + 125):
        counters = _run(NOW + dt.timedelta(minutes=3), daily_caps={"telegram": 1})

    assert counters["published.telegram"] == 1
    assert _sent(telegram) == 2
    first.refresh_from_db()
    assert first.status == DraftStatus.PUBLISHED
    assert PublishedContent.objects.get(draft=first).external_id == "43"


@pytest.mark.django_db
def test_a_refused_post_fails_and_a_flaky_platform_is_retried_later(telegram: HTTPServer) -> None:
    telegram.expect_ordered_request(SEND, method="POST").respond_with_json(
        {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}, status=400
    )
    for _ in range(3):
        telegram.expect_ordered_request(SEND, method="POST").respond_with_json(
            {"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502
        )
    refused = _draft("telegram", "single_post", due=NOW - dt.timedelta(minutes=2))
    flaky = _draft("telegram", "single_post")

    counters = _run()

    assert counters["failed"] == 1
    assert counters["retry_later"] == 1
    refused.refresh_from_db()
    assert refused.status == DraftStatus.FAILED
    assert "Message is too long" in refused.last_error
    flaky.refresh_from_db()
    assert flaky.status == DraftStatus.APPROVED
    assert flaky.publish_attempts == 1
    assert flaky.last_error.startswith("TransientError")


@pytest.mark.django_db
def test_a_draft_is_given_up_on_after_its_attempts(telegram: HTTPServer) -> None:
    telegram.expect_request(SEND, method="POST").respond_with_json(
        {"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502
    )
    draft = _draft("telegram", "single_post", publish_attempts=2)

    _run(max_attempts=3)

    draft.refresh_from_db()
    assert draft.status == DraftStatus.FAILED
    assert draft.last_error.startswith("gave up after 3 attempts: TransientError")
