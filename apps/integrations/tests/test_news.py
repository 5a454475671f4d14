"""News: real feeds fetched with requests and parsed by feedparser from a fake publisher on loopback (RSS and
Atom exactly, errors classified, one dead feed not stopping the rest), NewsAPI's JSON, the file twin, and
which coins a text names."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.core.models import CircuitBreakerState
from apps.core.resilience import PermanentError, RateLimited, RetryPolicy, TransientError
from apps.integrations.news import (
    FIXTURES_DIR,
    FileNewsSource,
    NewsApiSource,
    RssNewsSource,
    fetch_all_news,
    get_news_sources,
    parse_feed,
    symbols_in,
)
from apps.integrations.sentiment import label_for, score_text
from apps.integrations.types import Article

if TYPE_CHECKING:
    from pytest_django.fixtures import Settings

UTC = dt.UTC
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001)
WATCHLIST = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT"]

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <channel>
    <title>Chain Wire: Markets</title>
    <link>https://chainwire.example/markets</link>
    <description>Markets desk</description>
    <item>
      <title>Bitcoin Tops $65K as ETF Demand Returns</title>
      <link>https://chainwire.example/markets/bitcoin-tops-65k</link>
      <guid isPermaLink="false">cw-2024-0501-001</guid>
      <pubDate>Wed, 01 May 2024 11:40:00 +0000</pubDate>
      <dc:creator>Maya Lindqvist</dc:creator>
      <description><![CDATA[<p>BTC rose <b>3%</b> &amp; ETF inflows hit $300M.</p>]]></description>
    </item>
    <item>
      <title>XRP Slips &amp; Traders Await the Ripple Ruling</title>
      <link>https://chainwire.example/markets/xrp-slips</link>
      <guid>https://chainwire.example/markets/xrp-slips</guid>
      <pubDate>Tue, 30 Apr 2024 20:45:00 -0400</pubDate>
      <description>XRP fell 2%.</description>
    </item>
  </channel>
</rss>
"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>The Ledger Lab</title>
  <link href="https://ledgerlab.example/" rel="alternate"/>
  <id>tag:ledgerlab.example,2024:feed</id>
  <updated>2024-05-01T09:00:00Z</updated>
  <entry>
    <title>Solana Breaks Out Above $150</title>
    <link href="https://ledgerlab.example/charts/solana-breakout" rel="alternate"/>
    <id>tag:ledgerlab.example,2024:charts/sol-breakout</id>
    <published>2024-05-01T09:00:00+02:00</published>
    <updated>2024-05-01T09:30:00+02:00</updated>
    <author><name>Elena Petrova</name></author>
    <summary type="html">&lt;p&gt;SOL jumped 9%.&lt;/p&gt;</summary>
  </entry>
  <entry>
    <title>Ether Supply Turns Inflationary</title>
    <link href="https://ledgerlab.example/research/eth-supply" rel="alternate"/>
    <id>tag:ledgerlab.example,2024:research/eth-supply</id>
    <updated>2024-04-30T18:00:00Z</updated>
    <summary>Fewer fees burned.</summary>
  </entry>
</feed>
"""

RSS_ARTICLES = [
    Article(
        source="fake",
        guid="cw-2024-0501-001",
        title="Bitcoin Tops $65K as ETF Demand Returns",
        url="https://chainwire.example/markets/bitcoin-tops-65k",
        published_at=dt.datetime(2024, 5, 1, 11, 40, tzinfo=UTC),
        summary="BTC rose 3% & ETF inflows hit $300M.",
        author="Maya Lindqvist",
    ),
    Article(
        source="fake",
        guid="https://chainwire.example/markets/xrp-slips",
        title="XRP Slips & Traders Await the Ripple Ruling",
        url="https://chainwire.example/markets/xrp-slips",
        published_at=dt.datetime(2024, 5, 1, 0, 45, tzinfo=UTC),
        summary="XRP fell 2%.",
        author="",
    ),
]


def _from(server: HTTPServer, articles: list[Article]) -> list[Article]:
    """The articles as a feed on the fake server reports them: its source is named after the host."""
    host = urlsplit(server.url_for("/")).hostname or ""
    return [dataclasses.replace(a, source=host) for a in articles]


def _feed(server: HTTPServer, path: str, body: bytes, content_type: str = "application/rss+xml") -> str:
    server.expect_request(path).respond_with_data(body, content_type=content_type)
    return server.url_for(path)


def _hits(server: HTTPServer, path: str) -> list[Request]:
    return [request for request, _ in server.log if request.path == path]


# --- feeds over HTTP ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_rss_is_fetched_and_parsed_exactly(httpserver: HTTPServer) -> None:
    url = _feed(httpserver, "/markets/rss.xml", RSS)

    articles = RssNewsSource(url, policy=FAST).fetch(since=None)

    assert articles == _from(httpserver, RSS_ARTICLES)
    assert all(a.published_at.tzinfo == UTC for a in articles)
    (request,) = _hits(httpserver, "/markets/rss.xml")
    assert request.headers["User-Agent"].startswith("CoinLink/")
    assert "application/rss+xml" in request.headers["Accept"]


@pytest.mark.django_db
def test_atom_is_parsed_exactly(httpserver: HTTPServer) -> None:
    url = _feed(httpserver, "/feed.atom", ATOM, content_type="application/atom+xml")

    articles = RssNewsSource(url, policy=FAST).fetch(since=None)

    assert articles == _from(
        httpserver,
        [
            Article(
                source="fake",
                guid="tag:ledgerlab.example,2024:charts/sol-breakout",
                title="Solana Breaks Out Above $150",
                url="https://ledgerlab.example/charts/solana-breakout",
                published_at=dt.datetime(2024, 5, 1, 7, 0, tzinfo=UTC),
                summary="SOL jumped 9%.",
                author="Elena Petrova",
            ),
            Article(
                source="fake",
                guid="tag:ledgerlab.example,2024:research/eth-supply",
                title="Ether Supply Turns Inflationary",
                url="https://ledgerlab.example/research/eth-supply",
                # No <published>: the entry's <updated> dates it.
                published_at=dt.datetime(2024, 4, 30, 18, 0, tzinfo=UTC),
                summary="Fewer fees burned.",
                author="",
            ),
        ],
    )


@pytest.mark.django_db
def test_since_keeps_only_articles_from_then_on(httpserver: HTTPServer) -> None:
    url = _feed(httpserver, "/markets/rss.xml", RSS)
    source = RssNewsSource(url, policy=FAST)

    assert source.fetch(since=dt.datetime(2024, 5, 1, 11, 40, tzinfo=UTC)) == _from(
        httpserver, RSS_ARTICLES[:1]
    )
    assert source.fetch(since=dt.datetime(2024, 5, 1, 12, tzinfo=UTC)) == []


@pytest.mark.django_db
def test_a_failing_feed_is_transient_and_the_other_feeds_still_deliver(httpserver: HTTPServer) -> None:
    good_rss = _feed(httpserver, "/good/rss.xml", RSS)
    httpserver.expect_request("/broken/rss.xml").respond_with_data("upstream down", status=500)
    good_atom = _feed(httpserver, "/good/feed.atom", ATOM, content_type="application/atom+xml")
    broken = RssNewsSource(httpserver.url_for("/broken/rss.xml"), policy=FAST)
    broken.name = "broken.example"

    with pytest.raises(TransientError, match="500"):
        broken.fetch(since=None)
    assert len(_hits(httpserver, "/broken/rss.xml")) == 3  # retried, then given up

    batch = fetch_all_news(
        None,
        sources=[RssNewsSource(good_rss, policy=FAST), broken, RssNewsSource(good_atom, policy=FAST)],
    )

    assert list(batch.failed) == ["broken.example"]
    assert isinstance(batch.failed["broken.example"], TransientError)
    assert [a.guid for a in batch.articles] == [
        "cw-2024-0501-001",
        "tag:ledgerlab.example,2024:charts/sol-breakout",
        "https://chainwire.example/markets/xrp-slips",
        "tag:ledgerlab.example,2024:research/eth-supply",
    ]


@pytest.mark.django_db
def test_fetch_all_news_reports_every_failure_and_drops_duplicates(httpserver: HTTPServer) -> None:
    url = _feed(httpserver, "/markets/rss.xml", RSS)
    httpserver.expect_request("/gone.xml").respond_with_data("Not Found", status=404)
    gone = RssNewsSource(httpserver.url_for("/gone.xml"), policy=FAST)
    gone.name = "gone.example"

    batch = fetch_all_news(None, sources=[RssNewsSource(url, policy=FAST), RssNewsSource(url), gone])

    assert batch.articles == _from(httpserver, RSS_ARTICLES)
    assert list(batch.failed) == ["gone.example"]
    assert isinstance(batch.failed["gone.example"], PermanentError)
    assert len(_hits(httpserver, "/gone.xml")) == 1  # a 404 is not retried


@pytest.mark.django_db
def test_feed_errors_are_classified(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/slow.xml").respond_with_data(
        "Too Many Requests", status=429, headers={"Retry-After": "120"}
    )
    httpserver.expect_request("/page.html").respond_with_data(
        "<html><body><h1>Welcome</h1></body></html>", content_type="text/html"
    )

    def slow(request: Request) -> Response:
        time.sleep(0.5)
        return Response(RSS, content_type="application/rss+xml")

    httpserver.expect_request("/timeout.xml").respond_with_handler(slow)

    with pytest.raises(RateLimited) as caught:
        RssNewsSource(httpserver.url_for("/slow.xml"), policy=FAST).fetch(since=None)
    assert caught.value.retry_after == 120.0
    with pytest.raises(PermanentError, match="not a feed"):
        RssNewsSource(httpserver.url_for("/page.html"), policy=FAST).fetch(since=None)
    with pytest.raises(TransientError):
        RssNewsSource(
            httpserver.url_for("/timeout.xml"), timeout=0.2, policy=RetryPolicy(max_attempts=1)
        ).fetch(since=None)
    # Only the timeout counts against the "news" breaker.
    assert CircuitBreakerState.objects.get(service="news").consecutive_failures == 1


# --- NewsAPI ------------------------------------------------------------------------------------------------


NEWSAPI_OK = {
    "status": "ok",
    "totalResults": 3,
    "articles": [
        {
            "source": {"id": None, "name": "Chain Wire"},
            "author": "Priya Raman",
            "title": "Ethereum Staking Deposits Hit a Record",
            "description": "Over 27% of all ETH is now staked.",
            "url": "https://chainwire.example/eth-staking-record",
            "urlToImage": "https://chainwire.example/img/eth.png",
            "publishedAt": "2024-05-01T10:15:00Z",
            "content": "Over 27% of all ETH is now staked... [+2100 chars]",
        },
        {
            "source": {"id": None, "name": "[Removed]"},
            "author": None,
            "title": "[Removed]",
            "description": "[Removed]",
            "url": "https://removed.com",
            "urlToImage": None,
            "publishedAt": "1970-01-01T00:00:00Z",
            "content": "[Removed]",
        },
        {
            "source": {"id": "ledger-lab", "name": "Ledger Lab"},
            "author": None,
            "title": "Dogecoin Slides 7% as Whales Move Coins to Exchanges",
            "description": None,
            "url": "https://ledgerlab.example/doge-slides",
            "urlToImage": None,
            "publishedAt": "2024-05-01T11:05:00Z",
            "content": None,
        },
    ],
}


@pytest.mark.django_db
def test_newsapi_everything_is_queried_and_parsed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v2/everything", headers={"X-Api-Key": "news-key"}).respond_with_json(
        NEWSAPI_OK
    )
    source = NewsApiSource("news-key", watchlist=WATCHLIST, base_url=httpserver.url_for("/"), policy=FAST)

    articles = source.fetch(since=dt.datetime(2024, 5, 1, 9, 30, tzinfo=UTC))

    assert articles == [
        Article(
            source="newsapi",
            guid="https://ledgerlab.example/doge-slides",
            title="Dogecoin Slides 7% as Whales Move Coins to Exchanges",
            url="https://ledgerlab.example/doge-slides",
            published_at=dt.datetime(2024, 5, 1, 11, 5, tzinfo=UTC),
            author="Ledger Lab",
        ),
        Article(
            source="newsapi",
            guid="https://chainwire.example/eth-staking-record",
            title="Ethereum Staking Deposits Hit a Record",
            url="https://chainwire.example/eth-staking-record",
            published_at=dt.datetime(2024, 5, 1, 10, 15, tzinfo=UTC),
            summary="Over 27% of all ETH is now staked.",
            author="Priya Raman (Chain Wire)",
        ),
    ]
    (request,) = _hits(httpserver, "/v2/everything")
    assert request.args.to_dict() == {
        "q": '"bitcoin" OR BTC OR "ethereum" OR ETH OR "solana" OR SOL OR "ripple" OR XRP OR "dogecoin" OR DOGE',
        "searchIn": "title,description",
        "language": "en",
        "sortBy": "publishedAt",
        "pageSize": "100",
        "from": "2024-05-01T09:30:00",
    }


@pytest.mark.django_db
def test_newsapi_errors_are_classified(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/v2/everything").respond_with_json(
        {"status": "error", "code": "apiKeyInvalid", "message": "Your API key is invalid or incorrect."},
        status=401,
    )
    httpserver.expect_oneshot_request("/v2/everything").respond_with_json(
        {"status": "error", "code": "rateLimited", "message": "You have made too many requests recently."},
        status=429,
    )
    source = NewsApiSource("bad", watchlist=WATCHLIST, base_url=httpserver.url_for("/"), policy=FAST)

    with pytest.raises(PermanentError, match="apiKeyInvalid"):
        source.fetch(since=None)
    with pytest.raises(RateLimited) as caught:
        source.fetch(since=None)
    assert caught.value.retry_after == 3600.0  # NewsAPI sends no Retry-After; its quota is daily
    assert len(_hits(httpserver, "/v2/everything")) == 2

    httpserver.expect_oneshot_request("/v2/everything").respond_with_data(
        "<html>502 Bad Gateway</html>", content_type="text/html"
    )
    once = NewsApiSource(
        "key", watchlist=WATCHLIST, base_url=httpserver.url_for("/"), policy=RetryPolicy(max_attempts=1)
    )
    with pytest.raises(TransientError, match="other than JSON"):
        once.fetch(since=None)


# --- the file twin ------------------------------------------------------------------------------------------


def test_the_file_twin_serves_fresh_dates_with_stable_ids() -> None:
    now = dt.datetime(2026, 11, 21, 12, 57, 31, tzinfo=UTC)
    sources = [FileNewsSource(path, clock=lambda: now) for path in sorted(FIXTURES_DIR.glob("*.xml"))]
    assert [s.name for s in sources] == ["blockledger.example", "coinherald.example", "hashreport.example"]

    first = [s.fetch(since=None) for s in sources]
    again = [s.fetch(since=None) for s in sources]
    assert first == again

    everything = [a for articles in first for a in articles]
    assert all(len(articles) == 15 for articles in first)
    assert len({(a.source, a.guid) for a in everything}) == 45
    newest = max(a.published_at for a in everything)
    assert newest == dt.datetime(2026, 11, 21, 11, 50, tzinfo=UTC)  # about an hour before now
    assert all(a.published_at.tzinfo == UTC for a in everything)

    # Later, the same articles (same guids) with dates moved on, and the files' spacing kept.
    later = FileNewsSource(FIXTURES_DIR / "coinherald.example.xml", clock=lambda: now + dt.timedelta(hours=5))
    moved = later.fetch(since=None)
    assert [a.guid for a in moved] == [a.guid for a in first[1]]
    assert all(
        b.published_at - a.published_at == dt.timedelta(hours=5) for a, b in zip(first[1], moved, strict=True)
    )
    raw = parse_feed((FIXTURES_DIR / "coinherald.example.xml").read_bytes(), source="x", fetched_at=now)
    assert [a.published_at - moved[0].published_at for a in moved] == [
        a.published_at - raw[0].published_at for a in raw
    ]

    # since works on the moved dates.
    recent = sources[1].fetch(since=now - dt.timedelta(hours=6))
    assert recent == [a for a in first[1] if a.published_at >= now - dt.timedelta(hours=6)]
    assert 0 < len(recent) < 15


def test_the_fixture_news_covers_the_watchlist_with_mixed_sentiment() -> None:
    now = dt.datetime(2026, 11, 21, 12, tzinfo=UTC)
    for path in sorted(FIXTURES_DIR.glob("*.xml")):
        articles = FileNewsSource(path, clock=lambda: now).fetch(since=None)
        labels = {label_for(score_text(f"{a.title}. {a.summary}")) for a in articles}
        assert {"bullish", "bearish"} <= labels, path.name
        mentioned = {s for a in articles for s in symbols_in(f"{a.title} {a.summary}", WATCHLIST)}
        assert mentioned == set(WATCHLIST), path.name


# --- symbols and settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bitcoin tops $65K", ["BTC/USDT"]),
        ("$btc and $ETH rally", ["BTC/USDT", "ETH/USDT"]),
        ("Ether slides while SOLANA soars", ["ETH/USDT", "SOL/USDT"]),
        ("Ripple wins in court; XRP jumps", ["XRP/USDT"]),
        ("Much wow: DOGE and Dogecoin's fans cheer", ["DOGE/USDT"]),
        ("Bitcoins moved to cold storage", ["BTC/USDT"]),
        ("(SOL) breaks out, ETH/BTC at lows", ["BTC/USDT", "ETH/USDT", "SOL/USDT"]),
        # Whole words only: none of these name a coin.
        ("Whether the ethernet console solves dogecoins2 or BTCX", []),
        ("Stocks fall on rate worries", []),
    ],
)
def test_symbols_in_finds_tickers_cashtags_and_names(text: str, expected: list[str]) -> None:
    assert symbols_in(text, WATCHLIST) == expected


def test_symbols_in_matches_any_watchlist_base_by_ticker() -> None:
    assert symbols_in("PEPE pumps 40%, $wif follows", ["PEPE/USDT", "WIF/USDT", "BTC/USDT"]) == [
        "PEPE/USDT",
        "WIF/USDT",
    ]


def test_get_news_sources_follows_the_settings(settings: Settings) -> None:
    settings.NEWS_BACKEND = "files"
    assert [type(s) for s in get_news_sources()] == [FileNewsSource] * 3

    settings.NEWS_BACKEND = "rss"
    settings.NEWS_FEEDS = ["https://www.coindesk.com/arc/outboundfeeds/rss/", "https://decrypt.co/feed"]
    settings.NEWSAPI_KEY = ""
    assert [s.name for s in get_news_sources()] == ["coindesk.com", "decrypt.co"]

    settings.NEWSAPI_KEY = "news-key"
    sources = get_news_sources()
    assert [type(s) for s in sources] == [RssNewsSource, RssNewsSource, NewsApiSource]

    settings.NEWS_FEEDS = []
    settings.NEWSAPI_KEY = ""
    with pytest.raises(ImproperlyConfigured):
        get_news_sources()
