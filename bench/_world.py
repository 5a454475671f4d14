"""The generated community the pipeline and conversion benchmarks share: people, one platform identity each,
and their interactions, written with raw bulk inserts (a million rows through the ORM would take minutes).

Deterministic for a seed. Activity is heavy-tailed (a few people do most of the talking) over the last 90
days, twice as busy now as at the start (a growing community), and the kinds per platform follow the demo
seed's mix; about one text message in seven is a question, and 70% of the questions older than ten minutes
were answered five minutes after they were asked (the rest wait: people over their daily answer limit, say).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from bench._common import db_datetimes, insert_rows, reset_sequences

PLATFORMS = ("x", "telegram", "discord")
PLATFORM_SHARE = (0.45, 0.35, 0.20)
KINDS = {
    "x": {"like": 50, "reply": 15, "repost": 12, "mention": 8, "quote": 5, "dm": 1, "offer_click": 1},
    "telegram": {
        "message": 60,
        "reaction": 30,
        "comment": 6,
        "dm": 2,
        "join": 3,
        "leave": 1,
        "offer_click": 1,
    },
    "discord": {
        "message": 55,
        "reaction": 35,
        "reply": 4,
        "mention": 2,
        "join": 3,
        "leave": 1,
        "offer_click": 1,
    },
}
TEXT_KINDS = ("reply", "mention", "quote", "message", "comment", "dm")
QUESTIONS = (
    "What's your target for {coin} this week?",
    "Is this {coin} volume spike real or a wash?",
    "How do you read the RSI on {coin} right now?",
    "Would you add to {coin} here or wait for a retest?",
    "Is there a members group for {coin} signals?",
)
REMARKS = (
    "Great call on {coin} yesterday",
    "{coin} looking strong on the 4h",
    "Thanks for the chart, very clear",
    "Holding my {coin} through this chop",
    "That breakout on {coin} was clean",
    "Not convinced, {coin} failed here before",
)
COINS = ("BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "LINK", "AVAX")


@dataclass(frozen=True)
class CommunitySize:
    users: int
    interactions: int
    days: int = 90


def insert_community(*, size: CommunitySize, now: dt.datetime, seed: int = 1) -> int:
    """Insert the community (ids from 1) and return how many rows went in. ``now`` (whole seconds, UTC) is the
    newest moment an interaction may have."""
    from apps.community.models import CommunityUser, PlatformIdentity, UserInteraction

    rng = np.random.default_rng(seed)
    n_users, n = size.users, size.interactions
    span = size.days * 86400
    origin = np.datetime64(now.astimezone(dt.UTC).replace(tzinfo=None), "s")

    def stamps(seconds_ago: np.ndarray) -> list[str]:
        return db_datetimes(origin - seconds_ago.astype("timedelta64[s]"))

    # Who: Pareto weights, so a few people do most of the talking.
    weights = rng.pareto(1.2, n_users) + 0.05
    author = rng.choice(n_users, size=n, p=weights / weights.sum())
    # When: a growing community, twice as busy now as at the start of the window (linear density).
    age = (span * (1 - np.sqrt(rng.random(n)))).astype(np.int64)
    first_age = np.zeros(n_users, dtype=np.int64)
    last_age = np.full(n_users, span, dtype=np.int64)
    np.maximum.at(first_age, author, age)
    np.minimum.at(last_age, author, age)
    first_age[np.bincount(author, minlength=n_users) == 0] = span
    home = rng.choice(len(PLATFORMS), size=n_users, p=PLATFORM_SHARE)

    ids = range(1, n_users + 1)
    created = stamps(np.full(n_users, span))
    names = [f"Member {i:06d}" for i in range(n_users)]
    standing = rng.choice(
        np.array(["good", "warned", "muted", "banned"]), size=n_users, p=(0.97, 0.02, 0.007, 0.003)
    ).tolist()
    score = np.round(rng.gamma(1.5, 10.0, n_users), 3).tolist()
    total = insert_rows(
        CommunityUser,
        (
            "id",
            "display_name",
            "first_seen_at",
            "last_seen_at",
            "engagement_score",
            "standing",
            "notes",
            "created_at",
            "updated_at",
        ),
        zip(
            ids,
            names,
            stamps(first_age + 3600),
            stamps(last_age),
            score,
            standing,
            [""] * n_users,
            created,
            created,
            strict=True,
        ),
    )
    platform_of = np.array(PLATFORMS, dtype=object)[home]
    total += insert_rows(
        PlatformIdentity,
        (
            "id",
            "community_user",
            "platform",
            "external_id",
            "username",
            "display_name",
            "is_bot",
            "created_at",
            "updated_at",
        ),
        zip(
            ids,
            ids,
            platform_of.tolist(),
            [f"bench-{i}" for i in range(n_users)],
            [f"member_{i:06d}" for i in range(n_users)],
            names,
            (rng.random(n_users) < 0.005).tolist(),
            created,
            created,
            strict=True,
        ),
    )

    # What: a kind from the author's platform's mix; text, questions and answers for the text kinds.
    kind = np.empty(n, dtype=object)
    for index, platform in enumerate(PLATFORMS):
        mine = home[author] == index
        shares = np.array(list(KINDS[platform].values()), dtype=float)
        kind[mine] = rng.choice(
            np.array(list(KINDS[platform]), dtype=object), size=int(mine.sum()), p=shares / shares.sum()
        )
    has_text = np.isin(kind, TEXT_KINDS)
    question = has_text & (rng.random(n) < 1 / 7)
    questions = np.array([q.format(coin=c) for q in QUESTIONS for c in COINS], dtype=object)
    remarks = np.array([r.format(coin=c) for r in REMARKS for c in COINS], dtype=object)
    pick = rng.integers(0, 1 << 30, n)
    text = np.where(question, questions[pick % len(questions)], remarks[pick % len(remarks)])
    text[~has_text] = ""
    sentiment = np.round(rng.uniform(-0.6, 0.9, n), 3).astype(object)
    sentiment[~has_text] = None
    # Most questions were answered within minutes (by earlier engagement runs); the rest wait.
    answered = question & (age > 600) & (rng.random(n) < 0.7)
    responded = np.full(n, None, dtype=object)
    responded[answered] = stamps(age[answered] - 300)
    occurred = stamps(age)
    total += insert_rows(
        UserInteraction,
        (
            "id",
            "community_user",
            "identity",
            "platform",
            "kind",
            "external_id",
            "text",
            "is_question",
            "sentiment",
            "occurred_at",
            "responded_at",
            "response_external_id",
            "recorded_at",
        ),
        zip(
            range(1, n + 1),
            (author + 1).tolist(),
            (author + 1).tolist(),
            platform_of[author].tolist(),
            kind.tolist(),
            [f"bench-{j}" for j in range(n)],
            text.tolist(),
            question.tolist(),
            sentiment.tolist(),
            occurred,
            responded.tolist(),
            [""] * n,
            occurred,
            strict=True,
        ),
    )
    reset_sequences(CommunityUser, PlatformIdentity, UserInteraction)
    return total
