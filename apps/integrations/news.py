"""News: RSS and Atom feeds (feedparser) and NewsAPI, or the feed files in ``fixtures/news/`` offline.

We fetch feed bytes ourselves with ``requests`` (a timeout, our User-Agent, HTTP errors we can classify) and
hand them to feedparser only to parse, so a slow or failing feed becomes a resilience error like any other
outside call. ``since`` is inclusive everywhere.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import functools
import html
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import feedparser
import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.html import strip_tags

from apps.core.resilience import (
    IntegrationError,
    PermanentError,
    RateLimited,
    RetryPolicy,
    TransientError,
    guarded_call,
    retry_after_from_headers,
)
from apps.integrations.types import Article, NewsSource

SERVICE = "news"
DEFAULT_POLICY = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=10.0)
DEFAULT_TIMEOUT = 15.0
# NewsAPI's free plan counts requests per day and sends no Retry-After; waiting an hour is the sane default.
NEWSAPI_RATE_LIMIT_WAIT = 3600.0
DEFAULT_RATE_LIMIT_WAIT = 60.0
FIXTURES_DIR = Path(settings.BASE_DIR) / "fixtures" / "news"
# The moment the fixture feeds were written "as of": their newest item is an hour older. The twin moves every
# item by (now - FIXTURES_AS_OF), so the demo always reads fresh news with the files' own spacing.
FIXTURES_AS_OF = dt.datetime(2024, 5, 1, 12, 40, tzinfo=dt.UTC)
_SUMMARY_MAX = 2000


def _user_agent() -> str:
    return f"CoinLink/1.0 (+{settings.SITE_URL})"


# --- which coins a text mentions ----------------------------------------------------------------------------

# Names people write for a coin besides its ticker. A watchlist base not listed here is matched by ticker.
COIN_NAMES: dict[str, tuple[str, ...]] = {
    "BTC": ("bitcoin", "bitcoins", "xbt"),
    "ETH": ("ethereum", "ether"),
    "SOL": ("solana",),
    "XRP": ("ripple",),
    "DOGE": ("dogecoin",),
    "ADA": ("cardano",),
    "BNB": ("binance coin",),
    "AVAX": ("avalanche",),
    "DOT": ("polkadot",),
    "LINK": ("chainlink",),
    "LTC": ("litecoin",),
    "TRX": ("tron",),
    "TON": ("toncoin",),
    "SHIB": ("shiba inu",),
    "MATIC": ("polygon",),
}


def _base(symbol: str) -> str:
    return symbol.split("/")[0].upper()


@functools.lru_cache(maxsize=256)
def coin_pattern(base: str) -> re.Pattern[str]:
    """Ticker (optionally ``$``-tagged) or any of the coin's names, as whole words, any case."""
    names = (re.escape(base), *(re.escape(n) for n in COIN_NAMES.get(base.upper(), ())))
    return re.compile(r"(?<![\w$])\$?(?:" + "|".join(names) + r")(?![\w])", re.IGNORECASE)


def symbols_in(text: str, watchlist: Iterable[str]) -> list[str]:
    """The watchlist entries (``"BTC/USDT"``) whose coin the text mentions, in watchlist order."""
    return [symbol for symbol in watchlist if coin_pattern(_base(symbol)).search(text)]


# --- HTTP ---------------------------------------------------------------------------------------------------


def http_get(
    url: str,
    *,
    service: str,
    timeout: float,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    rate_limit_wait: float = DEFAULT_RATE_LIMIT_WAIT,
) -> requests.Response:
    """GET with a timeout; failures become resilience errors (5xx/408/timeouts transient, 429 rate limited
    with the server's wait, other 4xx permanent)."""
    try:
        response = requests.get(
            url,
            params=params,
            headers={"User-Agent": _user_agent(), **(headers or {})},
            timeout=timeout,
        )
    except (requests.Timeout, requests.ConnectionError) as exc:
        raise TransientError(f"GET {url}: {exc}", service=service) from exc
    except requests.RequestException as exc:  # an invalid URL, too many redirects
        raise PermanentError(f"GET {url}: {exc}", service=service) from exc
    status = response.status_code
    if status == 429:
        wait = retry_after_from_headers(response.headers)
        raise RateLimited(
            f"GET {url}: 429", retry_after=rate_limit_wait if wait is None else wait, service=service
        )
    if status >= 500 or status == 408:
        raise TransientError(f"GET {url}: {status}", service=service)
    if status >= 400:
        raise PermanentError(f"GET {url}: {status} {response.text[:200]}", service=service)
    return response


# --- feeds --------------------------------------------------------------------------------------------------


def _text(value: str) -> str:
    return " ".join(html.unescape(strip_tags(value or "")).split())


def _entry_time(entry: Mapping[str, Any]) -> dt.datetime | None:
    # feedparser normalises every date format it knows to a UTC struct_time.
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    return dt.datetime.fromtimestamp(calendar.timegm(parsed), tz=dt.UTC) if parsed else None


def parse_feed(content: bytes, *, source: str, fetched_at: dt.datetime) -> list[Article]:
    """Articles of an RSS or Atom document, newest first. An entry without a date is dated when we saw it."""
    feed = feedparser.parse(content)
    # feedparser reads anything; an HTML page (a login wall, a moved feed) comes back without a version.
    if not feed.version and not feed.entries:
        reason = feed.get("bozo_exception") or "no RSS or Atom document"
        raise PermanentError(f"{source}: not a feed ({reason})", service=SERVICE)
    articles = []
    for entry in feed.entries:
        title = _text(entry.get("title", ""))
        url = entry.get("link", "")
        if not title or not url:
            continue
        guid = entry.get("id") or url
        articles.append(
            Article(
                source=source,
                guid=guid[:500],
                title=title[:500],
                url=url,
                published_at=_entry_time(entry) or fetched_at,
                summary=_text(entry.get("summary", ""))[:_SUMMARY_MAX],
                author=_text(entry.get("author", ""))[:200],
            )
        )
    return sorted(articles, key=lambda a: a.published_at, reverse=True)


def _since(articles: list[Article], since: dt.datetime | None) -> list[Article]:
    return articles if since is None else [a for a in articles if a.published_at >= since]


class RssNewsSource:
    """One RSS or Atom feed on the web."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        policy: RetryPolicy = DEFAULT_POLICY,
        clock: Callable[[], dt.datetime] = timezone.now,
    ) -> None:
        self.url = url
        host = urlsplit(url).hostname or url
        self.name = host.removeprefix("www.")
        self._timeout = timeout
        self._policy = policy
        self._clock = clock

    def fetch(self, *, since: dt.datetime | None) -> list[Article]:
        response = guarded_call(
            SERVICE,
            lambda: http_get(
                self.url,
                service=SERVICE,
                timeout=self._timeout,
                headers={"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9"},
            ),
            policy=self._policy,
        )
        return _since(parse_feed(response.content, source=self.name, fetched_at=self._clock()), since)


class FileNewsSource:
    """The offline twin of a feed: a file in ``fixtures/news/``, its items re-dated so the newest is about an
    hour old. Its guids are the file's, so every call returns the same articles."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], dt.datetime] = timezone.now,
        as_of: dt.datetime = FIXTURES_AS_OF,
    ) -> None:
        self.path = path
        self.name = path.stem
        self._clock = clock
        self._as_of = as_of

    def fetch(self, *, since: dt.datetime | None) -> list[Article]:
        now = self._clock()
        # Move in whole ten-minute steps, so calls within the same ten minutes agree on every date.
        anchor = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)
        shift = anchor - self._as_of
        articles = parse_feed(self.path.read_bytes(), source=self.name, fetched_at=self._as_of)
        moved = [dataclasses.replace(a, published_at=a.published_at + shift) for a in articles]
        return _since(moved, since)


# --- NewsAPI ------------------------------------------------------------------------------------------------

# NewsAPI's error codes that will not change on retry (https://newsapi.org/docs/errors).
_NEWSAPI_TRANSIENT = {"unexpectedError"}


class NewsApiSource:
    """NewsAPI's ``/v2/everything``: the newest English articles that name a watchlist coin."""

    name = "newsapi"

    def __init__(
        self,
        api_key: str,
        *,
        watchlist: Iterable[str],
        base_url: str = "https://newsapi.org",
        timeout: float = DEFAULT_TIMEOUT,
        policy: RetryPolicy = DEFAULT_POLICY,
        page_size: int = 100,
    ) -> None:
        self._api_key = api_key
        self._url = base_url.rstrip("/") + "/v2/everything"
        self._timeout = timeout
        self._policy = policy
        self._page_size = page_size
        terms = []
        for symbol in watchlist:
            base = _base(symbol)
            names = COIN_NAMES.get(base, ())
            terms += [f'"{names[0]}"', base] if names else [base]
        self.query = " OR ".join(terms) or "crypto"

    def fetch(self, *, since: dt.datetime | None) -> list[Article]:
        params: dict[str, Any] = {
            "q": self.query,
            "searchIn": "title,description",
            "language": "en",
            "sortBy": "publishedAt",
            "pageSize": self._page_size,
        }
        if since is not None:
            params["from"] = since.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        payload = guarded_call(SERVICE, lambda: self._get(params), policy=self._policy)
        articles = []
        for item in payload.get("articles", []):
            title, url = item.get("title") or "", item.get("url") or ""
            published_at = item.get("publishedAt")
            # NewsAPI keeps a placeholder for articles its publisher withdrew.
            if not title or not url or not published_at or title == "[Removed]":
                continue
            published = dt.datetime.fromisoformat(published_at.replace("Z", "+00:00"))
            # The article's source is this source's name, as for every source (callers find what they
            # already have from a source by it); the publisher NewsAPI found it at goes with the byline.
            author = _text(item.get("author") or "")
            publisher = _text((item.get("source") or {}).get("name") or "")
            byline = f"{author} ({publisher})" if author and publisher else author or publisher
            articles.append(
                Article(
                    source=self.name,
                    guid=url[:500],
                    title=_text(title)[:500],
                    url=url,
                    published_at=published.astimezone(dt.UTC),
                    summary=_text(item.get("description") or "")[:_SUMMARY_MAX],
                    author=byline[:200],
                )
            )
        return _since(sorted(articles, key=lambda a: a.published_at, reverse=True), since)

    def _get(self, params: Mapping[str, Any]) -> dict[str, Any]:
        # NewsAPI answers errors as {"status": "error", "code": ..., "message": ...}, with a 4xx/5xx status
        # that http_get classifies (its message keeps the start of the body).
        response = http_get(
            self._url,
            service=SERVICE,
            timeout=self._timeout,
            params=params,
            headers={"X-Api-Key": self._api_key},
            rate_limit_wait=NEWSAPI_RATE_LIMIT_WAIT,
        )
        try:
            payload = response.json()
        except ValueError as exc:  # a proxy's or load balancer's HTML page instead of NewsAPI
            raise TransientError(
                f"NewsAPI answered with something other than JSON: {exc}", service=SERVICE
            ) from exc
        if payload.get("status") != "ok":
            message = f"NewsAPI {payload.get('code')}: {payload.get('message')}"
            if payload.get("code") in _NEWSAPI_TRANSIENT:
                raise TransientError(message, service=SERVICE)
            raise PermanentError(message, service=SERVICE)
        return payload


# --- all sources --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class NewsBatch:
    """What every source gave, and which sources failed (the caller decides whether that matters)."""

    articles: list[Article]
    failed: dict[str, IntegrationError] = dataclasses.field(default_factory=dict)


def fetch_all_news(since: dt.datetime | None, *, sources: list[NewsSource] | None = None) -> NewsBatch:
    """Every source's articles, newest first and without duplicates; one source failing does not stop the
    others. An article's ``source`` is always the name of the source that gave it."""
    articles: dict[tuple[str, str], Article] = {}
    failed: dict[str, IntegrationError] = {}
    for source in get_news_sources() if sources is None else sources:
        try:
            fetched = source.fetch(since=since)
        except IntegrationError as exc:
            failed[source.name] = exc
            continue
        for article in fetched:
            articles.setdefault((article.source, article.guid), article)
    ordered = sorted(articles.values(), key=lambda a: a.published_at, reverse=True)
    return NewsBatch(articles=ordered, failed=failed)


def get_news_sources() -> list[NewsSource]:
    backend = settings.NEWS_BACKEND
    if backend == "files":
        return [FileNewsSource(path) for path in sorted(FIXTURES_DIR.glob("*.xml"))]
    if backend == "rss":
        sources: list[NewsSource] = [RssNewsSource(url) for url in settings.NEWS_FEEDS]
        if settings.NEWSAPI_KEY:
            sources.append(
                NewsApiSource(
                    settings.NEWSAPI_KEY, watchlist=settings.WATCHLIST, base_url=settings.NEWSAPI_URL
                )
            )
        if not sources:
            raise ImproperlyConfigured("NEWS_BACKEND=rss needs NEWS_FEEDS or NEWSAPI_KEY")
        return sources
    raise ImproperlyConfigured(f"NEWS_BACKEND must be files or rss, not {backend!r}")
