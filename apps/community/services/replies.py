"""Answering people's questions on the platforms, within limits, usefully and honestly.

Who gets an answer: a question asked recently enough to still matter, by a person we may answer (not a bot,
not muted or banned), who has not had their day's share of answers yet (counted over the last 24 hours from
when we answered), while the run's cap lasts; oldest question first, so nobody is skipped for being early.
Each message is answered at most once (see ``interaction_reply_claim``).

What it says: when the question is about a coin on the watchlist (named in it, or the subject of the insight
behind the post it answers) and there is a recent insight on that coin, the insight in words and its evidence
numbers, each written by ``llm.format_number`` and checked against the evidence, with the disclaimer. Anything
else gets a short, friendly pointer to our latest post and the members' library: an answer we can stand behind
rather than a guess.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from apps.community import selectors
from apps.community.models import InteractionKind, UserInteraction
from apps.community.services.interactions import (
    interaction_reply_claim,
    interaction_reply_record,
    interaction_reply_release,
)
from apps.content.selectors import published_content_list
from apps.core.models import Platform
from apps.core.resilience import IntegrationError, TransientError
from apps.integrations.llm import DISCLAIMER, format_number, text_length, unexpected_numbers
from apps.integrations.publishers.base import DM_PREFIX
from apps.integrations.types import OutboundPost, Publisher
from apps.market.models import Insight, InsightStatus
from apps.market.selectors import insight_list

logger = logging.getLogger(__name__)

DAY = dt.timedelta(days=1)
# The most characters a reply may have per platform (X counts weighted characters: a link is 23).
REPLY_LIMITS: dict[str, int] = {Platform.X: 280, Platform.TELEGRAM: 4096, Platform.DISCORD: 2000}
# Evidence figures quoted in one answer: enough to be useful, few enough to read on a phone.
MAX_FIGURES = 4

# Names people use for the coins instead of their tickers.
COIN_NAMES = {
    "BTC": ("bitcoin",),
    "ETH": ("ethereum", "ether"),
    "SOL": ("solana",),
    "XRP": ("ripple",),
    "DOGE": ("dogecoin",),
    "ADA": ("cardano",),
    "BNB": ("binance coin",),
}

# Evidence figures in the order they are worth quoting: (key, how it reads, format_number kind).
_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("rsi", "RSI {}", "indicator"),
    ("score", "sentiment {}", "score"),
    ("previous_score", "previously {}", "score"),
    ("ratio", "volume {} its average", "multiple"),
    ("zscore", "z-score {}", "indicator"),
    ("macd", "MACD {}", "value"),
    ("signal", "signal line {}", "value"),
    ("close", "close {}", "price"),
    ("upper", "upper band {}", "price"),
    ("lower", "lower band {}", "price"),
    ("sample_size", "{} posts", "count"),
)
_PRICED = {"close", "upper", "lower"}


@dataclass(frozen=True)
class ReplyLimits:
    per_user_per_day: int
    per_run: int
    max_question_age: dt.timedelta
    max_insight_age: dt.timedelta


@dataclass
class ReplyOutcome:
    sent: int = 0
    skipped_limit: int = 0  # the person had their day's share of answers
    deferred: int = 0  # over the run's cap, or their platform failed: a later run may still answer
    failed: Counter[str] = field(default_factory=Counter)  # sends that failed, per platform


# --- what to say ------------------------------------------------------------------------------------------------


def _coin(symbol: str) -> str:
    return symbol.split("/")[0].upper()


def symbol_mentioned(text: str, symbols: Iterable[str]) -> str | None:
    """The first watchlist symbol (``BASE/QUOTE``) whose coin the text names: its ticker as a word ("BTC",
    "$eth", "#sol") or its common name ("bitcoin"). Case is ignored."""
    lowered = text.lower()
    earliest: tuple[int, str] | None = None
    for symbol in symbols:
        coin = _coin(symbol)
        names = [re.escape(coin.lower()), *(re.escape(n) for n in COIN_NAMES.get(coin, ()))]
        match = re.search(rf"(?<![a-z0-9])[$#]?(?:{'|'.join(names)})(?![a-z0-9])", lowered)
        if match and (earliest is None or match.start() < earliest[0]):
            earliest = (match.start(), symbol)
    return earliest[1] if earliest else None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _figures(evidence: Mapping[str, Any], symbol: str) -> list[str]:
    """The insight's evidence as short phrases, each number written by ``format_number``."""
    numbers = {key: float(value) for key, value in evidence.items() if _is_number(value)}
    quote = symbol.split("/")[1].upper() if "/" in symbol else ""
    figures = []
    if "change_pct" in numbers:
        change = format_number(numbers["change_pct"], "percent")
        if "window_hours" in numbers:
            figures.append(f"{change} over {format_number(numbers['window_hours'], 'plain')} hours")
        else:
            figures.append(f"a {change} move")
    for key, phrase, kind in _FIGURES:
        if key in numbers:
            value = format_number(numbers[key], kind)
            figures.append(phrase.format(f"{value} {quote}".strip() if key in _PRICED else value))
    return figures


def insight_reply_text(insight: Insight, *, platform: str, opener: str = "") -> str:
    """The latest read on a coin: the insight's headline when every number in it is one of its evidence
    numbers as ``format_number`` writes them (else the kind of signal), its main figures, the disclaimer."""
    evidence = insight.evidence if isinstance(insight.evidence, Mapping) else {}
    coin = _coin(insight.symbol)
    headline = insight.headline.strip().rstrip(".")
    if not headline or unexpected_numbers(headline, evidence, symbol=insight.symbol):
        headline = insight.get_type_display()
    lead = f"Latest read on {coin}: {headline}" if coin.lower() not in headline.lower() else headline
    figures = _figures(evidence, insight.symbol)[:MAX_FIGURES]
    limit = REPLY_LIMITS.get(platform, 280)
    while True:
        shown = f"{'; '.join(figures)}." if figures else ""
        text = " ".join(part for part in (opener, f"{lead}.", shown, DISCLAIMER) if part)
        if text_length(text, platform) <= limit or not figures:
            return text
        figures.pop()


def pointer_reply_text(*, latest_post_url: str, plans_url: str, opener: str = "Good question!") -> str:
    """A friendly answer for a question we cannot answer from our own data."""
    parts = [opener, "Too much for a quick reply, but we cover it in our market reads."]
    if latest_post_url:
        parts.append(f"Latest one: {latest_post_url}")
    parts.append(f"The full breakdowns are in the members' library: {plans_url}")
    return " ".join(part for part in parts if part)


_OPENERS = ("Good question{name}!", "Thanks for asking{name}!", "Fair question{name}!")


def reply_opener(interaction: UserInteraction) -> str:
    """A greeting that varies with the person and the message: X refuses a post that repeats an earlier one
    word for word, and people notice a bot saying the same line to everyone. The first name only when it has
    no digits, so an answer's only numbers stay its evidence."""
    names = [
        interaction.identity.display_name if interaction.identity else "",
        interaction.community_user.display_name,
    ]
    first = next((n.split()[0] for n in names if n.strip()), "")
    name = f", {first}" if first.isalpha() else ""
    return _OPENERS[interaction.pk % len(_OPENERS)].format(name=name)


def reply_address(interaction: UserInteraction) -> tuple[str, str] | None:
    """(channel, reply_to) for answering an interaction with ``publisher.publish``, or None when it cannot
    be answered. A direct message is answered in the person's DMs; on Telegram, whose message ids are only
    unique within a chat, the interaction's id is ``<chat id>:<message id>`` and the answer goes to that chat;
    elsewhere the publisher's channel takes a reply to the message's id."""
    if interaction.kind == InteractionKind.DIRECT_MESSAGE:
        if interaction.identity is None:
            return None
        return f"{DM_PREFIX}{interaction.identity.external_id}", ""
    if interaction.platform == Platform.TELEGRAM:
        chat, _, rest = interaction.external_id.partition(":")
        message_id = rest.partition(":")[0]
        if chat.lstrip("-").isdigit() and message_id.isdigit():
            return chat, message_id
    return "", interaction.external_id


class _Answers:
    """What the answers of one run draw on, each read at most once: the recent insights per watchlist
    symbol, the newest posts per platform."""

    def __init__(self, *, now: dt.datetime, max_insight_age: dt.timedelta) -> None:
        self.now = now
        self.max_insight_age = max_insight_age
        self.watchlist: list[str] = list(settings.WATCHLIST)
        self._insights: dict[str, Insight] | None = None
        self._posts: dict[str, list[tuple[int, str]]] = {}
        self.plans_url = settings.SITE_URL.rstrip("/") + reverse("portal:plans")

    def insights(self) -> dict[str, Insight]:
        if self._insights is None:
            recent = insight_list().filter(
                symbol__in=self.watchlist, detected_at__gte=self.now - self.max_insight_age
            )
            self._insights = {}
            for insight in recent.exclude(status=InsightStatus.EXPIRED):
                self._insights.setdefault(insight.symbol, insight)
        return self._insights

    def latest_post_url(self, platform: str, *, besides: int | None) -> str:
        """The newest post on the platform with an address, other than the one the question answers."""
        if platform not in self._posts:
            newest = published_content_list(platform=platform).exclude(url="").values_list("id", "url")[:2]
            self._posts[platform] = list(newest)
        return next((url for post_id, url in self._posts[platform] if post_id != besides), "")

    def text_for(self, interaction: UserInteraction) -> str:
        symbol = symbol_mentioned(interaction.text, self.watchlist)
        post_symbol = getattr(interaction, "post_symbol", None)
        if symbol is None and post_symbol in self.watchlist:
            symbol = post_symbol
        insight = self.insights().get(symbol) if symbol else None
        opener = reply_opener(interaction)
        if insight is not None:
            return insight_reply_text(insight, platform=interaction.platform, opener=opener)
        return pointer_reply_text(
            latest_post_url=self.latest_post_url(interaction.platform, besides=interaction.content_id),
            plans_url=self.plans_url,
            opener=opener,
        )


# --- sending ------------------------------------------------------------------------------------------------------


def question_replies_send(
    *, publishers: Mapping[str, Publisher], now: dt.datetime, limits: ReplyLimits
) -> ReplyOutcome:
    """Answer the questions waiting on the platforms of ``publishers`` (see the module's docstring)."""
    outcome = ReplyOutcome()
    candidates = list(
        selectors.interaction_questions_awaiting_reply(
            platforms=publishers, since=now - limits.max_question_age
        )
    )
    if not candidates:
        return outcome
    answered = Counter(
        selectors.interaction_reply_counts(
            community_user_ids={c.community_user_id for c in candidates}, since=now - DAY
        )
    )
    answers = _Answers(now=now, max_insight_age=limits.max_insight_age)
    down: set[str] = set()
    for interaction in candidates:
        if answered[interaction.community_user_id] >= limits.per_user_per_day:
            outcome.skipped_limit += 1
            continue
        if outcome.sent >= limits.per_run or interaction.platform in down:
            outcome.deferred += 1
            continue
        address = reply_address(interaction)
        if address is None:
            continue
        channel, reply_to = address
        text = answers.text_for(interaction)
        claimed_at = timezone.now()
        if not interaction_reply_claim(interaction_id=interaction.pk, at=claimed_at):
            continue  # answered meanwhile
        try:
            sent = publishers[interaction.platform].publish(
                OutboundPost(
                    platform=interaction.platform,
                    text=text,
                    idempotency_key=f"reply:{interaction.pk}",
                    reply_to=reply_to,
                    channel=channel,
                )
            )
        except IntegrationError as exc:
            interaction_reply_release(interaction_id=interaction.pk, claimed_at=claimed_at)
            outcome.failed[interaction.platform] += 1
            logger.warning("reply to interaction #%s failed: %s", interaction.pk, exc)
            if isinstance(exc, TransientError):
                # The platform is struggling: the rest of its questions wait for a later run.
                down.add(interaction.platform)
            continue
        except BaseException:
            # A bug, not the platform: the question stays answerable, and the run fails loudly.
            interaction_reply_release(interaction_id=interaction.pk, claimed_at=claimed_at)
            raise
        interaction_reply_record(interaction_id=interaction.pk, response_external_id=sent.external_id)
        answered[interaction.community_user_id] += 1
        outcome.sent += 1
    return outcome
