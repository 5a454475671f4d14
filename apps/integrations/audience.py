"""The simulated audience behind the offline twins: how much a post is engaged with, by what it is.

The twins stand in for X, Telegram and Discord, so they also stand in for the people reading them. A real
audience prefers some posts to others: a chart on Telegram over bare text, a thread on X over a single post,
the evening over the small hours, a question in the opening line. This model gives each post an expected
engagement rate from its platform, format, time of day and tone, multiplied together, and lets the caller
draw a noisy observation around it. The outbox twin's metrics follow it, the demo's fortnight replay posts
into it, and the bandit benchmark measures regret against it, so the self-learning loop has something true
to find; nothing in the product reads it to decide anything.

The factors are an assumption, written down here so that anyone can see what the loop is expected to learn:

| dimension | best | worst |
| --- | --- | --- |
| platform base rate | Discord 8% | X 3% |
| format | X thread x1.20, Telegram chart x1.15, Discord embed x1.10 | Telegram single post x0.90 |
| time of day (UTC) | evening 18-24 x1.25 | night 00-06 x0.70 |
| tone | question opening x1.30, discuss call x1.10 | no tone x1.00 |
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from typing import Any

from apps.core.timeofday import BUCKETS, bucket_of

BASE_RATE = {"x": 0.03, "telegram": 0.05, "discord": 0.08}
FORMAT_FACTOR = {
    "x": {"single_post": 1.0, "x_thread": 1.2},
    "telegram": {"single_post": 0.9, "telegram_chart_post": 1.15, "long_post": 1.0},
    "discord": {"single_post": 1.0, "discord_embed": 1.1},
}
# Per part of the day (apps.core.timeofday).
BUCKET_FACTOR = {"night": 0.7, "morning": 1.0, "afternoon": 1.1, "evening": 1.25}
# Multiplied together for every tone key a post has.
TONE_FACTOR = {
    ("opening", "question"): 1.3,
    ("cta", "discuss"): 1.10,
    ("cta", "follow"): 1.02,
    ("emoji", True): 1.03,
    ("length", "short"): 1.04,
}
# The spread of one post's rate around its expectation (log-normal): posts differ a lot even when alike.
NOISE_SIGMA = 0.35


def expected_rate(*, platform: str, format: str, hour: int, tone: Mapping[str, Any] | None = None) -> float:
    """The mean engagement rate of posts like this one."""
    rate = BASE_RATE.get(platform, 0.03)
    rate *= FORMAT_FACTOR.get(platform, {}).get(format, 1.0)
    rate *= BUCKET_FACTOR[bucket_of(hour % 24)]
    for key, value in (tone or {}).items():
        rate *= TONE_FACTOR.get((key, value), 1.0)
    return rate


def arm_expected_rate(*, platform: str, format: str, bucket: str, tone: Mapping[str, Any] | None) -> float:
    """The mean engagement rate of an arm's posts (a format, a part of the day, a tone), at the first hour of
    its part of the day: what a replay or a benchmark measures a strategy against."""
    return expected_rate(platform=platform, format=format, hour=BUCKETS[bucket].start, tone=tone)


def observed_rate(expected: float, rng: random.Random) -> float:
    """One post's rate: log-normal around ``expected`` (its mean stays ``expected``)."""
    return expected * math.exp(rng.gauss(-(NOISE_SIGMA**2) / 2, NOISE_SIGMA))


_QUESTION_OPENING = re.compile(r"^[^.!\n]{0,200}\?")


def tone_of_text(text: str) -> dict[str, Any]:
    """The tone a published text shows, as far as the audience notices it: a question before the first full
    stop opens with a question; a question at the end invites discussion."""
    tone: dict[str, Any] = {}
    stripped = text.strip()
    if _QUESTION_OPENING.match(stripped):
        tone["opening"] = "question"
    last_line = stripped.splitlines()[-1] if stripped else ""
    if last_line.rstrip().endswith("?") and "opening" not in tone:
        tone["cta"] = "discuss"
    return tone
