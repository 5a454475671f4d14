"""The analytics agent on the outbox twin: each recent post's latest metrics and engagement rate, its history
per run, the means and totals per platform and format, one failing platform not stopping the others, and a
number of queries that does not grow with the posts."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.agents.base import AgentContext, AgentResult
from apps.agents.models import PerformanceSnapshot
from apps.community.agents import AnalyticsAgent
from apps.community.factories import UserInteractionFactory
from apps.community.services.analytics import engagement_rate
from apps.content.factories import PublishedContentFactory
from apps.content.models import ContentFormat, PublishedContent
from apps.core.resilience import CircuitOpenError, TransientError
from apps.integrations.publishers import get_publisher
from apps.integrations.publishers.outbox import OutboxPublisher
from apps.integrations.types import OutboundPost, PostMetrics

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
PLATFORMS = ("x", "telegram", "discord")
FORMATS = {
    "x": (ContentFormat.SINGLE_POST, ContentFormat.X_THREAD),
    "telegram": (ContentFormat.TELEGRAM_CHART_POST, ContentFormat.LONG_POST),
    "discord": (ContentFormat.DISCORD_EMBED,),
}


@pytest.fixture(autouse=True)
def _twins(settings: Any) -> None:
    settings.X_BACKEND = settings.TELEGRAM_BACKEND = settings.DISCORD_BACKEND = "outbox"


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def _analyse(**parameters: Any) -> AgentResult:
    ctx = AgentContext(
        run_id=1, agent_name="analytics", trigger="manual", now=timezone.now(), parameters=parameters
    )
    return AnalyticsAgent().execute(ctx)


def _publish(platform: str, fmt: str, key: str) -> PublishedContent:
    parts = ("BTC part one", "part two", "part three") if fmt == ContentFormat.X_THREAD else ()
    result = get_publisher(platform).publish(
        OutboundPost(platform=platform, text="BTC part one", parts=parts, idempotency_key=key)
    )
    return PublishedContentFactory.create(
        platform=platform,
        format=fmt,
        external_id=result.external_id,
        part_ids=list(result.part_ids),
        url=result.url,
        published_at=timezone.now(),
        metrics={},
        engagement_rate=None,
    )


def _publish_mix(count: int) -> list[PublishedContent]:
    """``count`` posts spread over the platforms and their formats."""
    combos = [(p, f) for p in PLATFORMS for f in FORMATS[p]]
    return [_publish(*combos[n % len(combos)], key=f"draft-{n}") for n in range(count)]


def _discord_audience(now: dt.datetime, people: int) -> None:
    """``people`` who wrote to us on Discord lately, one of them twice; plus some who do not count."""
    for n in range(people):
        interaction = UserInteractionFactory.create(
            identity__platform="discord", occurred_at=now - dt.timedelta(days=n + 1)
        )
    UserInteractionFactory.create(identity=interaction.identity, occurred_at=now - HOUR)
    UserInteractionFactory.create(identity__platform="discord", occurred_at=now - dt.timedelta(days=31))
    UserInteractionFactory.create(identity__platform="x", occurred_at=now - HOUR)


def _expected_rate(platform: str, m: dict[str, int], audience: int) -> float | None:
    if platform == "x":
        return (
            (m["likes"] + m["reposts"] + m["replies"] + m["quotes"]) / m["impressions"]
            if m["impressions"]
            else None
        )
    if platform == "telegram":
        return (m["reactions"] + m["forwards"]) / m["views"] if m["views"] else None
    return (m["reactions"] + m["replies"]) / audience


def _series(metric: str, scope: str) -> list[tuple[dt.datetime, float, int | None]]:
    return list(
        PerformanceSnapshot.objects.filter(metric=metric, scope=scope)
        .order_by("captured_at")
        .values_list("captured_at", "value", "sample_size")
    )


def test_metrics_are_stored_with_their_history_and_aggregates(clock: Any) -> None:
    posts = _publish_mix(10)
    old = PublishedContentFactory.create(platform="x", published_at=T0 - dt.timedelta(days=8))
    old_metrics = dict(old.metrics)
    now = T0 + 6 * HOUR + dt.timedelta(seconds=42)
    clock.move_to(now)
    _discord_audience(now, people=4)

    result = _analyse()

    minute = now.replace(second=0)
    assert (result.counters["posts"], result.counters["posts_updated"]) == (10, 10)
    assert not any(key.startswith("errors.") for key in result.counters)
    readings = {
        (p, r.external_id): r.metrics
        for p in PLATFORMS
        for r in OutboxPublisher(p).fetch_metrics([post.external_id for post in posts if post.platform == p])
    }
    rates: dict[str, list[float]] = {}
    for post in posts:
        post.refresh_from_db()
        expected = readings[(post.platform, post.external_id)]
        rate = _expected_rate(post.platform, expected, audience=4)
        assert post.metrics == expected
        assert post.engagement_rate == rate is not None
        assert post.metrics_updated_at == now
        history = {
            s.metric: (s.value, s.captured_at)
            for s in PerformanceSnapshot.objects.filter(scope=f"published:{post.pk}")
        }
        assert history == {
            **{f"post.{name}": (float(value), minute) for name, value in expected.items()},
            "post.engagement_rate": (rate, minute),
        }
        for scope in (f"platform:{post.platform}|format:{post.format}", f"platform:{post.platform}"):
            rates.setdefault(scope, []).append(rate)
    for scope, values in rates.items():
        assert _series("engagement_rate", scope) == [(minute, math.fsum(values) / len(values), len(values))]
    assert PerformanceSnapshot.objects.get(metric="engagement_rate", scope="platform:discord").details == {
        "audience": 4
    }
    x_posts = [p for p in posts if p.platform == "x"]
    assert _series("total.likes", "platform:x") == [
        (minute, sum(p.metrics["likes"] for p in x_posts), len(x_posts))
    ]
    assert _series("total.views", "platform:telegram")[0][2] == len(
        [p for p in posts if p.platform == "telegram"]
    )
    old.refresh_from_db()
    assert (old.metrics, old.metrics_updated_at) == (old_metrics, None)
    assert result.counters["snapshots"] == PerformanceSnapshot.objects.count()

    # Again in the same minute: the readings are replaced, not repeated.
    clock.move_to(now + dt.timedelta(seconds=10))
    _analyse()
    assert PerformanceSnapshot.objects.count() == result.counters["snapshots"]

    # An hour later: another point on every series, and the posts' latest readings move on.
    later = now + HOUR
    clock.move_to(later)
    _analyse()
    first = posts[0]
    likes = _series("post.likes", f"published:{first.pk}")
    assert [at for at, _, _ in likes] == [minute, later.replace(second=0)]
    first.refresh_from_db()
    assert likes[-1][1] == first.metrics["likes"] >= likes[0][1]
    assert first.metrics_updated_at == later
    assert len(_series("engagement_rate", "platform:x|format:x_thread")) == 2
    assert PerformanceSnapshot.objects.count() == 2 * result.counters["snapshots"]


def test_engagement_rate_per_platform() -> None:
    x = {"impressions": 2000, "likes": 50, "reposts": 9, "replies": 6, "quotes": 2, "bookmarks": 40}
    assert engagement_rate(platform="x", metrics=x) == 67 / 2000
    assert engagement_rate(platform="x", metrics={**x, "impressions": 0}) is None
    telegram = {"views": 900, "reactions": 27, "forwards": 3}
    assert engagement_rate(platform="telegram", metrics=telegram) == 30 / 900
    # The Bot API reports reactions only: without views there is nothing to divide by.
    assert engagement_rate(platform="telegram", metrics={"reactions": 7}) is None
    assert (
        engagement_rate(platform="discord", metrics={"reactions": 12, "replies": 3}, audience=60) == 15 / 60
    )
    assert engagement_rate(platform="discord", metrics={"reactions": 12}, audience=0) is None
    assert engagement_rate(platform="discord", metrics={"reactions": 12}) is None


def test_a_failing_platform_does_not_stop_the_others(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    posts = _publish_mix(6)
    clock.move_to(T0 + 3 * HOUR)
    original = OutboxPublisher.fetch_metrics

    def fetch_metrics(self: OutboxPublisher, external_ids: list[str]) -> list[PostMetrics]:
        if self.platform == "telegram":
            raise TransientError("Telegram: timed out", service="telegram")
        return original(self, external_ids)

    monkeypatch.setattr(OutboxPublisher, "fetch_metrics", fetch_metrics)

    result = _analyse()

    assert result.counters["errors.telegram"] == 1
    assert result.counters["posts_updated"] == len([p for p in posts if p.platform != "telegram"])
    assert set(
        PublishedContent.objects.filter(metrics_updated_at__isnull=False).values_list("platform", flat=True)
    ) == {"x", "discord"}
    assert not PerformanceSnapshot.objects.filter(scope__startswith="platform:telegram").exists()
    assert "failed: telegram" in result.summary


def test_every_platform_failing_fails_the_run(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _publish_mix(3)

    def fetch_metrics(self: OutboxPublisher, external_ids: list[str]) -> list[PostMetrics]:
        raise CircuitOpenError(f"{self.platform} is unavailable", service=self.platform)

    monkeypatch.setattr(OutboxPublisher, "fetch_metrics", fetch_metrics)

    with pytest.raises(CircuitOpenError, match="every platform failed"):
        _analyse()
    assert not PerformanceSnapshot.objects.exists()


def test_no_recent_posts_is_a_quiet_success(clock: Any) -> None:
    result = _analyse()
    assert (result.counters["posts"], result.counters["posts_updated"], result.counters["snapshots"]) == (
        0,
        0,
        0,
    )


def test_the_queries_do_not_grow_with_the_posts(clock: Any, django_assert_max_num_queries: Any) -> None:
    def run(count: int) -> int:
        PublishedContent.objects.all().delete()
        _publish_mix(count)
        clock.shift(HOUR)
        # Posts, three platforms' readings, Discord's audience, one bulk update, the drafts of the posts with an
        # A/B variant, one bulk upsert (SQLite cuts it into batches of 999 parameters, so 40 posts' ~200 snapshots
        # take two), and the savepoint.
        with CaptureQueriesContext(connection) as queries, django_assert_max_num_queries(11):
            result = _analyse()
        assert result.counters["posts_updated"] == count
        return len(queries)

    few, many = run(5), run(40)
    assert many - few <= (1 if connection.vendor == "sqlite" else 0)
