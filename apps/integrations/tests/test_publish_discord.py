"""The Discord publisher: discord.py's real HTTP layer (bot token) and ``SyncWebhook`` against a fake Discord
API on loopback that answers ``Content-Type: application/json`` exactly, as discord.py requires."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import discord.http
import pytest
import time_machine
from discord.utils import time_snowflake
from pytest_httpserver import HTTPServer
from werkzeug import Response

from apps.core.models import CircuitBreakerState
from apps.core.resilience import CircuitOpenError, PermanentError, RetryPolicy, TransientError
from apps.integrations.publishers.discord import DiscordPublisher, nonce_for
from apps.integrations.types import OutboundPost

pytestmark = pytest.mark.django_db

API = "/api/v10"
CHANNEL = "123456789012345678"
GUILD = "555555555555555555"
BOT = {"id": "999999999999999999", "username": "coinlink", "discriminator": "0", "bot": True, "avatar": None}
T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
WEBHOOK_ID, WEBHOOK_TOKEN = "112233445566778899", "T" * 68


class Clock:
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


@pytest.fixture(autouse=True)
def _restore_route_base(monkeypatch: pytest.MonkeyPatch) -> None:
    # The publisher points discord.py's class-wide base URL at the fake; put it back afterwards.
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)


def _publisher(httpserver: HTTPServer, clock: Clock, attempts: int = 3, **kwargs: Any) -> DiscordPublisher:
    options = {"bot_token": "bot-token", "channel_id": CHANNEL, **kwargs}
    return DiscordPublisher(
        api_base_url=httpserver.url_for(API),
        policy=RetryPolicy(max_attempts=attempts, base_delay=0.0, max_delay=0.0),
        sleep=clock.sleep,
        **options,
    )


def _message(message_id: str, content: str = "", **fields: Any) -> dict[str, Any]:
    return {
        "id": message_id,
        "channel_id": CHANNEL,
        "type": 0,
        "content": content,
        "author": BOT,
        "timestamp": "2025-03-03T09:00:00.000000+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        **fields,
    }


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


def _expect_login(httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"{API}/users/@me", method="GET").respond_with_json(BOT)
    httpserver.expect_request(f"{API}/channels/{CHANNEL}", method="GET").respond_with_json(
        {"id": CHANNEL, "type": 0, "guild_id": GUILD, "name": "signals"}
    )


def _sends(httpserver: HTTPServer) -> list[Any]:
    return [request for request, _ in httpserver.log if request.method == "POST"]


def _payload(request: Any) -> dict[str, Any]:
    return json.loads(request.form["payload_json"]) if request.form else request.get_json()


def test_a_post_goes_out_with_a_nonce_discord_enforces(httpserver: HTTPServer, clock: Clock) -> None:
    _expect_login(httpserver)
    text = "BTC is up 3.40% over the last 24 hours. Not financial advice."
    httpserver.expect_request(f"{API}/channels/{CHANNEL}/messages", method="POST").respond_with_json(
        _message("1300000000000000001", text)
    )

    result = _publisher(httpserver, clock).publish(
        OutboundPost(platform="discord", text=text, idempotency_key="draft-7")
    )

    assert result.external_id == "1300000000000000001"
    assert result.url == f"https://discord.com/channels/{GUILD}/{CHANNEL}/1300000000000000001"
    (send,) = _sends(httpserver)
    assert send.headers["Authorization"] == "Bot bot-token"
    assert send.get_json() == {
        "content": text,
        "nonce": nonce_for("draft-7"),
        "enforce_nonce": True,
        "allowed_mentions": {"parse": []},
        "tts": False,
    }
    assert len(nonce_for("draft-7")) == 25


def test_an_embed_with_the_chart_attached(httpserver: HTTPServer, clock: Clock) -> None:
    _expect_login(httpserver)
    httpserver.expect_request(f"{API}/channels/{CHANNEL}/messages", method="POST").respond_with_json(
        _message("1300000000000000002")
    )
    embed = {
        "title": "ETH breaks its upper band",
        "description": "ETH closed at $3,120.50, above its upper Bollinger Band at $3,050.00.",
        "color": 0x2ECC71,
        "fields": [{"name": "RSI(14)", "value": "71.20", "inline": True}],
    }

    _publisher(httpserver, clock).publish(
        OutboundPost(
            platform="discord", text="", embed=embed, image=PNG, image_name="eth.png", idempotency_key="e"
        )
    )

    (send,) = _sends(httpserver)
    payload = _payload(send)
    (sent_embed,) = payload["embeds"]
    assert {key: sent_embed[key] for key in embed} == embed
    assert sent_embed["image"] == {"url": "attachment://eth.png"}
    assert payload["attachments"] == [{"id": 0, "filename": "eth.png"}]
    assert "content" not in payload
    assert payload["nonce"] == nonce_for("e")
    assert send.files["files[0]"].filename == "eth.png"
    assert send.files["files[0]"].read() == PNG


def test_limits_are_checked_before_any_request(httpserver: HTTPServer, clock: Clock) -> None:
    publisher = _publisher(httpserver, clock)
    with pytest.raises(PermanentError, match="2001 characters"):
        publisher.publish(OutboundPost(platform="discord", text="a" * 2001, idempotency_key="long"))
    with pytest.raises(PermanentError, match="6001 characters"):
        publisher.publish(
            OutboundPost(
                platform="discord",
                text="",
                embed={
                    "title": "t",
                    "description": "d" * 4000,
                    "fields": [{"name": "n", "value": "v" * 1999}],
                },
                idempotency_key="embed",
            )
        )
    assert httpserver.log == []


def test_a_long_429_comes_back_as_rate_limited_and_is_waited_out(
    httpserver: HTTPServer, clock: Clock
) -> None:
    _expect_login(httpserver)
    limited = {
        "Via": "1.1 google",
        "Retry-After": "45",
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset-After": "45.000",
        "X-RateLimit-Bucket": "abcd1234",
        "X-RateLimit-Scope": "user",
    }
    answers = [
        _json({"message": "You are being rate limited.", "retry_after": 45.0, "global": False}, 429, limited),
        _json(_message("1300000000000000003")),
    ]
    httpserver.expect_request(f"{API}/channels/{CHANNEL}/messages", method="POST").respond_with_handler(
        lambda request: answers.pop(0)
    )

    result = _publisher(httpserver, clock).publish(
        OutboundPost(platform="discord", text="hi", idempotency_key="rl")
    )

    assert result.external_id == "1300000000000000003"
    assert clock.slept == [45.0]
    first, second = _sends(httpserver)
    # The retried send carries the same nonce: had the first one landed, Discord would return it, not post twice.
    assert first.get_json()["nonce"] == second.get_json()["nonce"] == nonce_for("rl")
    assert CircuitBreakerState.objects.get(service="discord").consecutive_failures == 0


def test_an_exhausted_bucket_holds_the_next_send(httpserver: HTTPServer, clock: Clock) -> None:
    _expect_login(httpserver)
    httpserver.expect_request(f"{API}/channels/{CHANNEL}/messages", method="POST").respond_with_json(
        _message("1300000000000000004"),
        headers={"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "0.25"},
    )

    _publisher(httpserver, clock).publish(OutboundPost(platform="discord", text="one", idempotency_key="b1"))
    assert clock.slept == []
    # Another worker's publisher sees the bucket Discord said was empty, and waits for its reset.
    _publisher(httpserver, clock).publish(OutboundPost(platform="discord", text="two", idempotency_key="b2"))

    assert clock.slept == [0.25]
    assert len(_sends(httpserver)) == 2


def test_a_5xx_storm_opens_the_breaker(httpserver: HTTPServer, clock: Clock) -> None:
    _expect_login(httpserver)
    httpserver.expect_request(f"{API}/channels/{CHANNEL}/messages", method="POST").respond_with_json(
        {"message": "Service Unavailable", "code": 0}, status=503
    )
    publisher = _publisher(httpserver, clock, attempts=1)

    for n in range(5):
        with pytest.raises(TransientError):
            publisher.publish(OutboundPost(platform="discord", text="hi", idempotency_key=f"s{n}"))

    assert CircuitBreakerState.objects.get(service="discord").state == CircuitBreakerState.State.OPEN
    before = len(httpserver.log)
    with pytest.raises(CircuitOpenError):
        publisher.publish(OutboundPost(platform="discord", text="hi", idempotency_key="after"))
    assert len(httpserver.log) == before
    assert len(_sends(httpserver)) == 5


def test_a_forbidden_channel_is_permanent(httpserver: HTTPServer, clock: Clock) -> None:
    _expect_login(httpserver)
    httpserver.expect_request(f"{API}/channels/{CHANNEL}/messages", method="POST").respond_with_json(
        {"message": "Missing Access", "code": 50001}, status=403
    )

    with pytest.raises(PermanentError, match="Missing Access"):
        _publisher(httpserver, clock).publish(
            OutboundPost(platform="discord", text="hi", idempotency_key="f")
        )
    assert len(_sends(httpserver)) == 1


def test_a_reply_and_a_direct_message(httpserver: HTTPServer, clock: Clock) -> None:
    _expect_login(httpserver)
    httpserver.expect_request(f"{API}/channels/{CHANNEL}/messages", method="POST").respond_with_json(
        _message("1300000000000000005")
    )
    httpserver.expect_request(f"{API}/users/@me/channels", method="POST").respond_with_json(
        {"id": "777000000000000000", "type": 1, "recipients": [{"id": "4242", "username": "maya"}]}
    )
    httpserver.expect_request(
        "/api/v10/channels/777000000000000000/messages", method="POST"
    ).respond_with_json(_message("1300000000000000006", channel_id="777000000000000000"))
    publisher = _publisher(httpserver, clock)

    publisher.publish(
        OutboundPost(platform="discord", text="Thanks!", reply_to="1299999999999999999", idempotency_key="r")
    )
    clock.traveller.shift(1)
    dm = publisher.publish(
        OutboundPost(platform="discord", text="Welcome", channel="dm:4242", idempotency_key="d")
    )

    reply, open_dm, direct = _sends(httpserver)
    assert reply.get_json()["message_reference"] == {
        "message_id": 1299999999999999999,
        "channel_id": int(CHANNEL),
        "fail_if_not_exists": False,
    }
    assert open_dm.get_json() == {"recipient_id": 4242}
    assert direct.get_json()["content"] == "Welcome"
    assert dm.url == "https://discord.com/channels/@me/777000000000000000/1300000000000000006"


def test_channel_messages_come_in(httpserver: HTTPServer, clock: Clock) -> None:
    _expect_login(httpserver)
    maya = {"id": "4242", "username": "mayatrades", "global_name": "Maya Chen", "discriminator": "0"}
    httpserver.expect_request(f"{API}/channels/{CHANNEL}/messages", method="GET").respond_with_json(
        [
            _message(
                "1300000000000000012",
                "I'd wait for a retest",
                author=maya,
                timestamp="2025-03-03T10:05:00+00:00",
            ),
            _message(
                "1300000000000000011",
                "What timeframe?",
                author=maya,
                timestamp="2025-03-03T10:00:00+00:00",
                message_reference={"message_id": "1300000000000000001", "channel_id": CHANNEL},
            ),
            _message("1300000000000000010", "our own post"),
        ]
    )

    reply, message = _publisher(httpserver, clock).fetch_inbound(since=T0)

    assert (reply.kind, reply.external_id, reply.in_reply_to) == (
        "reply",
        "1300000000000000011",
        "1300000000000000001",
    )
    assert (reply.author_id, reply.author_username, reply.author_display_name) == (
        "4242",
        "mayatrades",
        "Maya Chen",
    )
    assert reply.occurred_at == dt.datetime(2025, 3, 3, 10, 0, tzinfo=dt.UTC)
    assert (message.kind, message.text, message.channel) == ("message", "I'd wait for a retest", CHANNEL)
    history = next(r for r, _ in httpserver.log if r.path.endswith("/messages"))
    assert history.args["after"] == str(time_snowflake(T0, high=True))
    assert history.args["limit"] == "100"


def test_reaction_counts_are_the_metrics(httpserver: HTTPServer, clock: Clock) -> None:
    _expect_login(httpserver)
    httpserver.expect_request(f"{API}/channels/{CHANNEL}/messages/1300000000000000001").respond_with_json(
        _message(
            "1300000000000000001",
            reactions=[
                {"count": 3, "me": False, "emoji": {"id": None, "name": "🔥"}},
                {"count": 2, "me": False, "emoji": {"id": None, "name": "👍"}},
            ],
        )
    )
    httpserver.expect_request(f"{API}/channels/{CHANNEL}/messages/1300000000000000002").respond_with_json(
        {"message": "Unknown Message", "code": 10008}, status=404
    )

    metrics = _publisher(httpserver, clock).fetch_metrics(["1300000000000000001", "1300000000000000002"])

    assert [(m.external_id, m.metrics) for m in metrics] == [("1300000000000000001", {"reactions": 5})]


def test_a_webhook_posts_without_a_bot(httpserver: HTTPServer, clock: Clock) -> None:
    httpserver.expect_request(
        f"{API}/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}", method="POST"
    ).respond_with_json(_message("1300000000000000020", "hello", webhook_id=WEBHOOK_ID))
    publisher = _publisher(
        httpserver,
        clock,
        bot_token="",
        channel_id="",
        webhook_url=f"https://discord.com/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}",
    )

    result = publisher.publish(
        OutboundPost(platform="discord", text="hello", embed={"title": "BTC"}, idempotency_key="w")
    )

    assert result.external_id == "1300000000000000020"
    ((request, _),) = httpserver.log
    assert request.args["wait"] == "1"
    body = request.get_json()
    assert (body["content"], body["embeds"][0]["title"], body["allowed_mentions"]) == (
        "hello",
        "BTC",
        {"parse": []},
    )
    assert "nonce" not in body  # webhooks take none
    assert publisher.fetch_inbound(since=None) == []
    assert publisher.fetch_metrics(["1300000000000000020"]) == []


@pytest.mark.parametrize("channel", ["dm:1234567890", "1300000000000000099"])
def test_a_webhook_refuses_any_other_channel(httpserver: HTTPServer, clock: Clock, channel: str) -> None:
    publisher = _publisher(
        httpserver,
        clock,
        bot_token="",
        channel_id="",
        webhook_url=f"https://discord.com/api/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}",
    )

    with pytest.raises(PermanentError, match="cannot post to"):
        publisher.publish(
            OutboundPost(platform="discord", text="members only", idempotency_key="m", channel=channel)
        )

    assert httpserver.log == []
