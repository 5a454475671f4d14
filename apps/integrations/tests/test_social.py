"""Social: tweepy's real client against a fake X API v2 on loopback (search parsed with usernames from
includes, paging, 429 waits from x-rate-limit-reset, errors classified), and the file twin."""

from __future__ import annotations

import datetime as dt
import socket
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_httpserver import HTTPServer
from werkzeug import Request

from apps.core.models import CircuitBreakerState
from apps.core.resilience import PermanentError, RateLimited, RetryPolicy, TransientError
from apps.integrations.news import symbols_in
from apps.integrations.sentiment import label_for, score_text
from apps.integrations.social import (
    FileSocialSource,
    XSearchSource,
    get_social_source,
    query_for,
)
from apps.integrations.types import SocialPost

if TYPE_CHECKING:
    from pytest_django.fixtures import Settings

UTC = dt.UTC
FAST = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001)
WATCHLIST = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT"]
SEARCH = "/2/tweets/search/recent"
NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

PAGE: dict[str, Any] = {
    "data": [
        {
            "id": "1785651200000000001",
            "text": "$BTC just reclaimed 64k on real spot volume. Bullish.",
            "created_at": "2024-05-01T11:58:02.000Z",
            "author_id": "2244994945",
            "lang": "en",
            "edit_history_tweet_ids": ["1785651200000000001"],
        },
        {
            "id": "1785650900000000002",
            "text": "Bitcoin looks heavy here. Lower highs all week.",
            "created_at": "2024-05-01T11:52:40.000Z",
            "author_id": "783214",
            "lang": "en",
            "edit_history_tweet_ids": ["1785650900000000002"],
        },
    ],
    "includes": {
        "users": [
            {"id": "2244994945", "name": "Chart Witch", "username": "chartwitch"},
            {"id": "783214", "name": "Macro Marta", "username": "macro_marta"},
        ]
    },
    "meta": {"newest_id": "1785651200000000001", "oldest_id": "1785650900000000002", "result_count": 2},
}

PAGE_POSTS = [
    SocialPost(
        external_id="1785651200000000001",
        text="$BTC just reclaimed 64k on real spot volume. Bullish.",
        created_at=dt.datetime(2024, 5, 1, 11, 58, 2, tzinfo=UTC),
        author_id="2244994945",
        author_username="chartwitch",
    ),
    SocialPost(
        external_id="1785650900000000002",
        text="Bitcoin looks heavy here. Lower highs all week.",
        created_at=dt.datetime(2024, 5, 1, 11, 52, 40, tzinfo=UTC),
        author_id="783214",
        author_username="macro_marta",
    ),
]


def _x(server: HTTPServer, *, policy: RetryPolicy = FAST, timeout: float = 5.0) -> XSearchSource:
    return XSearchSource(
        "bearer-123", api_base_url=server.url_for("/"), timeout=timeout, policy=policy, clock=lambda: NOW
    )


def _searches(server: HTTPServer) -> list[Request]:
    return [request for request, _ in server.log if request.path == SEARCH]


# --- tweepy against a fake X --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_recent_search_is_parsed_with_usernames_from_includes(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SEARCH, headers={"Authorization": "Bearer bearer-123"}).respond_with_json(PAGE)

    posts = _x(httpserver).search(
        query_for("BTC/USDT"), since=dt.datetime(2024, 5, 1, 11, tzinfo=UTC), limit=20
    )

    assert posts == PAGE_POSTS
    (request,) = _searches(httpserver)
    assert request.args.to_dict() == {
        "query": "$BTC -is:retweet lang:en",
        "start_time": "2024-05-01T11:00:00Z",
        "max_results": "20",
        "tweet.fields": "created_at,author_id,lang",
        "expansions": "author_id",
        "user.fields": "username",
    }


@pytest.mark.django_db
def test_search_follows_next_token_until_the_limit(httpserver: HTTPServer) -> None:
    first = {**PAGE, "meta": {**PAGE["meta"], "next_token": "b26v89c19zqg8o3fpz"}}
    second = {
        "data": [
            {
                "id": "1785640000000000003",
                "text": "Stacked more sats today. WAGMI",
                "created_at": "2024-05-01T11:10:00.000Z",
                "author_id": "999",
                "edit_history_tweet_ids": ["1785640000000000003"],
            }
        ],
        "includes": {"users": [{"id": "999", "name": "Hodl Harbor", "username": "hodl_harbor"}]},
        "meta": {"result_count": 1},
    }
    httpserver.expect_ordered_request(SEARCH).respond_with_json(first)
    httpserver.expect_ordered_request(SEARCH).respond_with_json(second)

    posts = _x(httpserver).search("bitcoin", since=None, limit=150)

    assert [p.external_id for p in posts] == [
        "1785651200000000001",
        "1785650900000000002",
        "1785640000000000003",
    ]
    assert posts[2].author_username == "hodl_harbor"
    pages = _searches(httpserver)
    assert [r.args.get("max_results") for r in pages] == ["100", "100"]
    assert "next_token" not in pages[0].args
    assert pages[1].args["next_token"] == "b26v89c19zqg8o3fpz"


@pytest.mark.django_db
def test_start_time_is_kept_inside_the_seven_day_window(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SEARCH).respond_with_json({"meta": {"result_count": 0}})

    assert _x(httpserver).search("$ETH", since=NOW - dt.timedelta(days=30), limit=10) == []

    (request,) = _searches(httpserver)
    assert request.args["start_time"] == "2024-04-24T12:01:00Z"


@pytest.mark.django_db
def test_a_429_waits_until_x_rate_limit_reset(httpserver: HTTPServer) -> None:
    reset = int(time.time()) + 2
    httpserver.expect_oneshot_request(SEARCH).respond_with_json(
        {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429},
        status=429,
        headers={
            "x-rate-limit-limit": "450",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(reset),
        },
    )
    httpserver.expect_request(SEARCH).respond_with_json(PAGE)

    posts = _x(httpserver).search("$BTC", since=None, limit=10)

    assert time.time() >= reset - 0.05
    assert posts == PAGE_POSTS
    assert len(_searches(httpserver)) == 2
    assert CircuitBreakerState.objects.get(service="social").consecutive_failures == 0


@pytest.mark.django_db
def test_a_distant_reset_goes_back_to_the_caller(httpserver: HTTPServer) -> None:
    reset = int(time.time()) + 900
    httpserver.expect_request(SEARCH).respond_with_json(
        {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429},
        status=429,
        headers={"x-rate-limit-reset": str(reset)},
    )

    with pytest.raises(RateLimited) as caught:
        _x(httpserver).search("$BTC", since=None, limit=10)

    assert 895 <= caught.value.retry_after <= 900
    assert caught.value.service == "social"
    assert len(_searches(httpserver)) == 1


@pytest.mark.django_db
def test_x_errors_are_classified(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request(SEARCH).respond_with_json(
        {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}, status=401
    )
    httpserver.expect_ordered_request(SEARCH).respond_with_data("Service Unavailable", status=503)
    httpserver.expect_ordered_request(SEARCH).respond_with_data("Service Unavailable", status=503)
    httpserver.expect_ordered_request(SEARCH).respond_with_data("Service Unavailable", status=503)
    source = _x(httpserver)

    with pytest.raises(PermanentError, match="401"):
        source.search("$BTC", since=None, limit=10)
    assert len(_searches(httpserver)) == 1  # not retried

    with pytest.raises(TransientError, match="503"):
        source.search("$BTC", since=None, limit=10)
    assert len(_searches(httpserver)) == 4  # retried twice, then given up
    assert CircuitBreakerState.objects.get(service="social").consecutive_failures == 3


@pytest.mark.django_db
def test_an_unreachable_x_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    source = XSearchSource(
        "bearer-123", api_base_url=f"http://127.0.0.1:{closed_port}", policy=RetryPolicy(max_attempts=1)
    )

    with pytest.raises(TransientError):
        source.search("$BTC", since=None, limit=10)


# --- the file twin ------------------------------------------------------------------------------------------


def test_the_twin_returns_the_querys_coin_newest_first_and_deterministically() -> None:
    now = dt.datetime(2026, 11, 21, 12, 57, 31, tzinfo=UTC)
    source = FileSocialSource(clock=lambda: now)

    posts = source.search(query_for("BTC/USDT"), since=None, limit=100)

    assert posts == FileSocialSource(clock=lambda: now).search(query_for("BTC/USDT"), since=None, limit=100)
    assert 30 <= len(posts) < 100
    assert all(symbols_in(p.text, ["BTC/USDT"]) for p in posts)  # "$BTC", "BTC" or "Bitcoin"
    assert any("$BTC" not in p.text for p in posts)
    assert [p.created_at for p in posts] == sorted((p.created_at for p in posts), reverse=True)
    assert all(now - dt.timedelta(days=1) <= p.created_at <= now for p in posts)
    assert len({p.external_id for p in posts}) == len(posts)
    assert all(p.author_username and p.author_id.isdigit() and p.external_id.isdigit() for p in posts)
    # Spread over the day, not bunched together.
    assert len({p.created_at.hour for p in posts}) >= 15


def test_the_twin_keeps_ids_as_time_moves_and_keeps_producing_new_posts() -> None:
    now = dt.datetime(2026, 11, 21, 12, 57, 31, tzinfo=UTC)
    earlier = FileSocialSource(clock=lambda: now).search("$ETH", since=now - dt.timedelta(hours=6), limit=100)
    later = FileSocialSource(clock=lambda: now + dt.timedelta(hours=3)).search(
        "$ETH", since=now - dt.timedelta(hours=6), limit=100
    )

    # The posts of the overlapping hours are the same posts, with the same ids.
    assert later[-len(earlier) :] == earlier
    # And the three hours since brought new ones.
    fresh = [p for p in later if p.created_at > now]
    assert fresh
    assert {p.external_id for p in fresh}.isdisjoint(p.external_id for p in earlier)
    # A day later the same texts come back as new posts.
    tomorrow = FileSocialSource(clock=lambda: now + dt.timedelta(days=1)).search("$ETH", since=now, limit=100)
    assert {p.text for p in tomorrow} >= {p.text for p in earlier}
    assert {p.external_id for p in tomorrow}.isdisjoint(p.external_id for p in earlier)


def test_the_twin_honours_since_limit_and_plain_words() -> None:
    now = dt.datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    source = FileSocialSource(clock=lambda: now)
    since = now - dt.timedelta(hours=2)

    recent = source.search("$SOL", since=since, limit=100)
    assert recent == [p for p in source.search("$SOL", since=None, limit=100) if p.created_at >= since]
    assert len(source.search("$SOL", since=None, limit=5)) == 5
    assert source.search("(solana OR $SOL) -is:retweet lang:en", since=None, limit=100) == source.search(
        "$SOL", since=None, limit=100
    )
    liquidations = source.search("liquidated", since=None, limit=100)
    assert liquidations
    assert all("liquidated" in p.text.lower() for p in liquidations)


def test_the_fixture_posts_cover_every_coin_with_mixed_sentiment() -> None:
    now = dt.datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    source = FileSocialSource(clock=lambda: now)
    for symbol in WATCHLIST:
        posts = source.search(query_for(symbol), since=None, limit=100)
        labels = Counter(label_for(score_text(p.text)) for p in posts)
        assert len(posts) >= 25, symbol
        assert labels["bullish"] >= 5, (symbol, labels)
        assert labels["bearish"] >= 5, (symbol, labels)


def test_get_social_source_follows_the_settings(settings: Settings) -> None:
    settings.SOCIAL_BACKEND = "files"
    assert isinstance(get_social_source(), FileSocialSource)

    settings.SOCIAL_BACKEND = "x"
    settings.X_BEARER_TOKEN = ""
    with pytest.raises(ImproperlyConfigured):
        get_social_source()
    settings.X_BEARER_TOKEN = "bearer-123"
    assert isinstance(get_social_source(), XSearchSource)
