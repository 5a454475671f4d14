"""What the integrations hand to the domain and take from it: plain data, no library objects, so an agent
never knows whether the real client or the offline twin served it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Candle:
    ts: dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    last: float
    change_24h_pct: float | None
    quote_volume_24h: float | None
    ts: dt.datetime


@dataclass(frozen=True, slots=True)
class Article:
    source: str
    guid: str
    title: str
    url: str
    published_at: dt.datetime
    summary: str = ""
    author: str = ""


@dataclass(frozen=True, slots=True)
class SocialPost:
    external_id: str
    text: str
    created_at: dt.datetime
    author_id: str = ""
    author_username: str = ""


@dataclass(frozen=True, slots=True)
class OutboundPost:
    """One message to publish. ``parts`` holds every part of a thread (``parts[0] == text``)."""

    platform: str
    text: str
    idempotency_key: str
    parts: tuple[str, ...] = ()
    image: bytes | None = None
    image_name: str = "chart.png"
    embed: dict[str, Any] | None = None
    channel: str = ""
    reply_to: str = ""


@dataclass(frozen=True, slots=True)
class PublishResult:
    external_id: str
    url: str = ""
    part_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """Something a person did on a platform that concerns us: a reply, a mention, a comment, a message."""

    platform: str
    kind: str
    external_id: str
    author_id: str
    occurred_at: dt.datetime
    text: str = ""
    author_username: str = ""
    author_display_name: str = ""
    in_reply_to: str = ""
    channel: str = ""
    is_bot: bool = False


@dataclass(frozen=True, slots=True)
class PostMetrics:
    external_id: str
    metrics: dict[str, int] = field(default_factory=dict)


class ExchangeClient(Protocol):
    name: str

    def fetch_ohlcv(
        self, symbol: str, timeframe: str, *, since: dt.datetime | None, limit: int
    ) -> list[Candle]: ...

    def fetch_tickers(self, symbols: list[str]) -> list[Ticker]: ...


class NewsSource(Protocol):
    name: str

    def fetch(self, *, since: dt.datetime | None) -> list[Article]: ...


class SocialSource(Protocol):
    name: str

    def search(self, query: str, *, since: dt.datetime | None, limit: int) -> list[SocialPost]: ...


@dataclass(frozen=True, slots=True)
class WritingBrief:
    """What a writer needs to write one post about one insight (or a digest of several)."""

    platform: str
    format: str
    insight_type: str
    symbol: str
    headline: str
    evidence: dict[str, Any]
    max_chars: int
    tone: dict[str, Any] = field(
        default_factory=dict
    )  # the A/B variant's payload, e.g. {"opening": "question"}
    seed: int = 0  # varies the template writer's choices deterministically


class Writer(Protocol):
    """Writes post text from a brief. The real one asks an LLM; the twin fills templates."""

    name: str

    def write(self, brief: WritingBrief) -> str: ...


class Publisher(Protocol):
    platform: str

    def publish(self, post: OutboundPost) -> PublishResult: ...

    def fetch_inbound(self, *, since: dt.datetime | None) -> list[InboundEvent]: ...

    def fetch_metrics(self, external_ids: list[str]) -> list[PostMetrics]: ...
