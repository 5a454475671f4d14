"""The simulated audience: its factors multiply as documented, its noise keeps the mean, the tone it reads from a
text, and the outbox twin's engagement following it, so the self-learning loop has a true preference to find."""

from __future__ import annotations

import datetime as dt
import random
import statistics

import pytest
import time_machine

from apps.community.services.analytics import engagement_rate
from apps.integrations import audience
from apps.integrations.publishers.outbox import OutboxPublisher
from apps.integrations.types import OutboundPost

pytestmark = pytest.mark.django_db


def test_the_factors_multiply_as_the_table_says() -> None:
    plain = audience.expected_rate(platform="x", format="single_post", hour=9)
    best = audience.expected_rate(
        platform="x", format="x_thread", hour=20, tone={"opening": "question", "cta": "discuss"}
    )

    assert plain == pytest.approx(0.03)
    assert best == pytest.approx(0.03 * 1.2 * 1.25 * 1.3 * 1.10)
    assert audience.expected_rate(platform="telegram", format="single_post", hour=3) == pytest.approx(
        0.05 * 0.9 * 0.7
    )
    # Unknown tone keys and formats change nothing.
    assert audience.expected_rate(platform="x", format="carousel", hour=9, tone={"mood": "calm"}) == plain


@pytest.mark.parametrize(
    ("hour", "bucket"), [(0, "night"), (5, "night"), (6, "morning"), (12, "afternoon"), (23, "evening")]
)
def test_buckets(hour: int, bucket: str) -> None:
    assert audience.bucket_of(hour) == bucket


def test_the_noise_keeps_the_mean() -> None:
    rng = random.Random(7)
    draws = [audience.observed_rate(0.04, rng) for _ in range(20_000)]

    assert statistics.fmean(draws) == pytest.approx(0.04, rel=0.02)
    assert min(draws) > 0


@pytest.mark.parametrize(
    ("text", "tone"),
    [
        ("Is BTC about to break out? Volume is up 40%.", {"opening": "question"}),
        ("BTC volume is up 40%.\nWhat's your read?", {"cta": "discuss"}),
        ("BTC volume is up 40%. Nothing more to it.", {}),
        ("", {}),
    ],
)
def test_the_tone_a_text_shows(text: str, tone: dict[str, str]) -> None:
    assert audience.tone_of_text(text) == tone


def _mean_rate(text: str, *, hour: int, parts: tuple[str, ...] = (), count: int = 60) -> float:
    outbox = OutboxPublisher("x")
    posted = dt.datetime(2025, 3, 3, hour, 0, tzinfo=dt.UTC)
    ids = []
    with time_machine.travel(posted, tick=False):
        for n in range(count):
            result = outbox.publish(
                OutboundPost(platform="x", text=text, parts=parts, idempotency_key=f"{text[:8]}-{hour}-{n}")
            )
            ids.append(result.external_id)
    with time_machine.travel(posted + dt.timedelta(days=2), tick=False):
        readings = outbox.fetch_metrics(ids)
    rates = [engagement_rate(platform="x", metrics=r.metrics) for r in readings]
    return statistics.fmean(r for r in rates if r is not None)


def test_the_twin_engages_more_with_what_the_audience_prefers() -> None:
    night_statement = _mean_rate("BTC is up 3.40% today.", hour=2)
    evening_question_thread = _mean_rate(
        "Is BTC breaking out? It is up 3.40% today.",
        hour=20,
        parts=("Is BTC breaking out?", "It is up 3.40%."),
    )

    expected_ratio = (1.2 * 1.25 * 1.3) / 0.7
    assert evening_question_thread / night_statement == pytest.approx(expected_ratio, rel=0.25)


def test_the_audience_reads_an_embed_when_the_message_is_only_the_embed() -> None:
    outbox = OutboxPublisher("discord")
    posted = dt.datetime(2025, 3, 3, 20, 0, tzinfo=dt.UTC)
    with time_machine.travel(posted, tick=False):
        asked = outbox.publish(
            OutboundPost(
                platform="discord",
                text="",
                embed={"title": "BTC", "description": "Is BTC back? Up 3%."},
                idempotency_key="q",
            )
        )
        stated = outbox.publish(
            OutboundPost(
                platform="discord",
                text="",
                embed={"title": "BTC", "description": "BTC is up 3%."},
                idempotency_key="s",
            )
        )

    from apps.integrations.models import OutboxMessage

    read = {m.external_id: OutboxPublisher._read(m) for m in OutboxMessage.objects.all()}
    assert audience.tone_of_text(read[asked.external_id]) == {"opening": "question"}
    assert audience.tone_of_text(read[stated.external_id]) == {}
