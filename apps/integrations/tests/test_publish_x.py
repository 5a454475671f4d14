"""The X publisher: real tweepy clients, sent by the transport adapter to a fake X API on loopback."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from pytest_httpserver import HTTPServer
from werkzeug import Response

from apps.core.models import CircuitBreakerState
from apps.core.resilience import CircuitOpenError, PermanentError, RateLimited, RetryPolicy, TransientError
from apps.integrations.publishers.x import XPublisher
from apps.integrations.types import OutboundPost

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class Clock:
    """A frozen clock whose sleep moves time on, so platform-imposed waits are observed, not slept."""

    def __init__(self, traveller: Any) -> None:
        self.traveller = traveller
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.traveller.shift(seconds)


@pytest.fixture
def clock() -> Iterator[Clock]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield Clock(traveller)


def _publisher(httpserver: HTTPServer, clock: Clock | None = None, attempts: int = 3) -> XPublisher:
    return XPublisher(
        consumer_key="ck",
        consumer_secret="cs",
        access_token="at",
        access_token_secret="ats",
        api_base_url=httpserver.url_for("/"),
        policy=RetryPolicy(max_attempts=attempts, base_delay=0.0, max_delay=0.0),
        sleep=clock.sleep if clock else lambda s: None,
    )


def _tweet(tweet_id: str, text: str) -> dict[str, Any]:
    return {"data": {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}}


def test_a_post_is_created_as_the_user(httpserver: HTTPServer) -> None:
    text = "BTC is up 3.40% over the last 24 hours. Not financial advice."
    httpserver.expect_oneshot_request("/2/tweets", method="POST").respond_with_json(
        _tweet("1790000000000000001", text), status=201
    )

    result = _publisher(httpserver).publish(OutboundPost(platform="x", text=text, idempotency_key="d1"))

    assert result.external_id == "1790000000000000001"
    assert result.part_ids == ("1790000000000000001",)
    assert result.url == "https://x.com/i/web/status/1790000000000000001"
    ((request, _),) = httpserver.log
    assert request.get_json() == {"text": text}
    auth = request.headers["Authorization"]
    assert auth.startswith("OAuth ")
    assert 'oauth_consumer_key="ck"' in auth
    assert 'oauth_token="at"' in auth


def test_a_thread_chains_each_part_to_the_previous(httpserver: HTTPServer) -> None:
    parts = ("BTC broke out.", "Volume confirms interest, not direction.", "Not financial advice.")
    for n, part in enumerate(parts, start=1):
        httpserver.expect_ordered_request("/2/tweets", method="POST").respond_with_json(
            _tweet(f"10{n}", part), status=201
        )

    result = _publisher(httpserver).publish(
        OutboundPost(platform="x", text=parts[0], parts=parts, idempotency_key="thread")
    )

    assert result.external_id == "101"
    assert result.part_ids == ("101", "102", "103")
    bodies = [request.get_json() for request, _ in httpserver.log]
    assert bodies == [
        {"text": parts[0]},
        {"text": parts[1], "reply": {"in_reply_to_tweet_id": "101"}},
        {"text": parts[2], "reply": {"in_reply_to_tweet_id": "102"}},
    ]


def test_a_failed_thread_resumes_after_the_last_posted_part(httpserver: HTTPServer) -> None:
    parts = ("one", "two")
    post = OutboundPost(platform="x", text="one", parts=parts, idempotency_key="resume")
    httpserver.expect_ordered_request("/2/tweets").respond_with_json(_tweet("201", "one"), status=201)
    httpserver.expect_ordered_request("/2/tweets").respond_with_response(Response("Forbidden", status=403))
    with pytest.raises(PermanentError):
        _publisher(httpserver).publish(post)

    httpserver.clear_log()
    httpserver.expect_oneshot_request("/2/tweets").respond_with_json(_tweet("202", "two"), status=201)
    result = _publisher(httpserver).publish(post)

    assert result.part_ids == ("201", "202")
    ((request, _),) = httpserver.log
    assert request.get_json() == {"text": "two", "reply": {"in_reply_to_tweet_id": "201"}}


def test_an_image_is_uploaded_then_attached(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/1.1/media/upload.json", method="POST").respond_with_json(
        {"media_id": 710511363345354753, "media_id_string": "710511363345354753", "size": 72}
    )
    httpserver.expect_ordered_request("/2/tweets", method="POST").respond_with_json(
        _tweet("301", "chart"), status=201
    )

    _publisher(httpserver).publish(
        OutboundPost(platform="x", text="chart", image=PNG, image_name="btc.png", idempotency_key="img")
    )

    (upload, _), (create, _) = httpserver.log
    assert upload.files["media"].filename == "btc.png"
    assert upload.files["media"].read() == PNG
    assert create.get_json() == {"text": "chart", "media": {"media_ids": ["710511363345354753"]}}


def test_a_429_waits_until_the_reset_x_names(httpserver: HTTPServer, clock: Clock) -> None:
    reset = int(T0.timestamp()) + 42
    httpserver.expect_ordered_request("/2/tweets").respond_with_json(
        {"title": "Too Many Requests", "status": 429},
        status=429,
        headers={
            "x-rate-limit-limit": "100",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": str(reset),
        },
    )
    httpserver.expect_ordered_request("/2/tweets").respond_with_json(_tweet("401", "later"), status=201)

    result = _publisher(httpserver, clock).publish(
        OutboundPost(platform="x", text="later", idempotency_key="rl")
    )

    assert result.external_id == "401"
    assert clock.slept == [42.0]
    assert len(httpserver.log) == 2
    # Waiting is not failing: the breaker saw no outage.
    assert CircuitBreakerState.objects.get(service="x").consecutive_failures == 0


def test_the_post_quota_is_kept_across_publishers(httpserver: HTTPServer, clock: Clock) -> None:
    httpserver.expect_request("/2/tweets").respond_with_json(_tweet("1", "x"), status=201)
    publisher = _publisher(httpserver, clock)
    for n in range(100):  # about 100 posts per 15 minutes per user
        publisher.publish(OutboundPost(platform="x", text=f"post {n}", idempotency_key=f"q{n}"))
    assert clock.slept == []

    # The 101st post in this 15-minute window is refused: the next window is too far off to wait in-process.
    with pytest.raises(RateLimited) as caught:
        _publisher(httpserver, clock).publish(
            OutboundPost(platform="x", text="one more", idempotency_key="q100")
        )
    assert caught.value.retry_after == 900.0
    assert len(httpserver.log) == 100

    # Near the end of the next window, the publisher waits the 30 seconds to the one after and posts.
    clock.traveller.shift(900 + 870)
    for n in range(100):
        publisher.publish(OutboundPost(platform="x", text=f"post {n}", idempotency_key=f"w{n}"))
    publisher.publish(OutboundPost(platform="x", text="one more", idempotency_key="q100"))
    assert clock.slept == [30.0]
    assert len(httpserver.log) == 201


def test_a_5xx_storm_opens_the_breaker_and_later_calls_never_leave(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/2/tweets").respond_with_response(Response("over capacity", status=503))
    publisher = _publisher(httpserver, attempts=1)

    for n in range(5):  # CIRCUIT_BREAKER_FAILURES
        with pytest.raises(TransientError):
            publisher.publish(OutboundPost(platform="x", text="hi", idempotency_key=f"s{n}"))

    assert CircuitBreakerState.objects.get(service="x").state == CircuitBreakerState.State.OPEN
    with pytest.raises(CircuitOpenError):
        publisher.publish(OutboundPost(platform="x", text="hi", idempotency_key="after"))
    assert len(httpserver.log) == 5


def test_over_long_posts_are_refused_before_sending(httpserver: HTTPServer) -> None:
    with pytest.raises(PermanentError, match="282 weighted characters"):
        _publisher(httpserver).publish(
            OutboundPost(platform="x", text="a" * 280 + "📈", idempotency_key="long")
        )
    assert httpserver.log == []


def test_mentions_and_replies_come_in(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/2/users/me").respond_with_json(
        {"data": {"id": "2244994945", "name": "CoinLink", "username": "coinlink"}}
    )
    httpserver.expect_oneshot_request("/2/users/2244994945/mentions").respond_with_json(
        {
            "data": [
                {
                    "id": "1800000000000000001",
                    "edit_history_tweet_ids": ["1800000000000000001"],
                    "text": "@coinlink what timeframe is this?",
                    "author_id": "111",
                    "created_at": "2025-03-03T10:00:00.000Z",
                    "conversation_id": "101",
                    "referenced_tweets": [{"type": "replied_to", "id": "101"}],
                },
                {
                    "id": "1800000000000000002",
                    "edit_history_tweet_ids": ["1800000000000000002"],
                    "text": "Great read from @coinlink",
                    "author_id": "222",
                    "created_at": "2025-03-03T11:30:00.000Z",
                    "conversation_id": "1800000000000000002",
                },
            ],
            "includes": {
                "users": [
                    {"id": "111", "name": "Maya Chen", "username": "mayatrades"},
                    {"id": "222", "name": "Leo Hartmann", "username": "leo_hodl"},
                ]
            },
            "meta": {"result_count": 2, "newest_id": "1800000000000000002"},
        }
    )

    events = _publisher(httpserver).fetch_inbound(since=T0)

    reply, mention = events
    assert (reply.kind, reply.external_id, reply.in_reply_to) == ("reply", "1800000000000000001", "101")
    assert (reply.author_id, reply.author_username, reply.author_display_name) == (
        "111",
        "mayatrades",
        "Maya Chen",
    )
    assert reply.occurred_at == dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
    assert (mention.kind, mention.in_reply_to, mention.author_username) == ("mention", "", "leo_hodl")
    mentions_request = httpserver.log[1][0]
    assert mentions_request.args["start_time"] == "2025-03-03T09:00:00Z"
    assert mentions_request.args["expansions"] == "author_id"


def test_metrics_come_from_public_metrics(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/2/tweets", method="GET").respond_with_json(
        {
            "data": [
                {
                    "id": "101",
                    "edit_history_tweet_ids": ["101"],
                    "text": "t",
                    "public_metrics": {
                        "retweet_count": 4,
                        "reply_count": 2,
                        "like_count": 31,
                        "quote_count": 1,
                        "bookmark_count": 3,
                        "impression_count": 1520,
                    },
                }
            ]
        }
    )

    (metrics,) = _publisher(httpserver).fetch_metrics(["101"])

    assert metrics.external_id == "101"
    assert metrics.metrics == {
        "impressions": 1520,
        "likes": 31,
        "reposts": 4,
        "replies": 2,
        "quotes": 1,
        "bookmarks": 3,
    }
    request = httpserver.log[0][0]
    assert (request.args["ids"], request.args["tweet.fields"]) == ("101", "public_metrics")
