"""The Telegram publisher: python-telegram-bot's real ``Bot`` against a fake Bot API on loopback."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from pytest_httpserver import HTTPServer

from apps.core.models import CircuitBreakerState
from apps.core.resilience import CircuitOpenError, PermanentError, RetryPolicy, TransientError
from apps.integrations.publishers.telegram import TelegramPublisher
from apps.integrations.types import OutboundPost

pytestmark = pytest.mark.django_db

TOKEN = "123456:TEST-token"
CHANNEL = {"id": -1001234567890, "type": "channel", "title": "CoinLink", "username": "coinlink"}
GROUP = {"id": -1009876543210, "type": "supergroup", "title": "CoinLink chat"}
T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


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


def _publisher(httpserver: HTTPServer, clock: Clock, attempts: int = 3) -> TelegramPublisher:
    return TelegramPublisher(
        token=TOKEN,
        channel_id="@coinlink",
        api_base_url=httpserver.url_for("/").rstrip("/"),
        policy=RetryPolicy(max_attempts=attempts, base_delay=0.0, max_delay=0.0),
        sleep=clock.sleep,
    )


def _method(name: str) -> str:
    return f"/bot{TOKEN}/{name}"


def _message(message_id: int, chat: dict[str, Any] = CHANNEL, **fields: Any) -> dict[str, Any]:
    return {
        "ok": True,
        "result": {"message_id": message_id, "date": int(T0.timestamp()), "chat": chat, **fields},
    }


def test_a_post_is_sent_to_the_channel(httpserver: HTTPServer, clock: Clock) -> None:
    text = "BTC is up 3.40% over the last 24 hours. Not financial advice."
    httpserver.expect_oneshot_request(_method("sendMessage"), method="POST").respond_with_json(
        _message(42, text=text)
    )

    result = _publisher(httpserver, clock).publish(
        OutboundPost(platform="telegram", text=text, idempotency_key="d1")
    )

    assert (result.external_id, result.part_ids) == ("42", ("42",))
    assert result.url == "https://t.me/coinlink/42"
    ((request, _),) = httpserver.log
    assert request.form.to_dict() == {"chat_id": "@coinlink", "text": text}


def test_a_photo_carries_the_first_paragraph_and_the_rest_follows(
    httpserver: HTTPServer, clock: Clock
) -> None:
    caption = "ETH RSI(14) reads 78.40, overbought. " * 20  # over 1024 characters together with the rest
    rest = "Overbought can stay overbought. Not financial advice."
    httpserver.expect_ordered_request(_method("sendPhoto")).respond_with_json(
        _message(
            50,
            caption=caption.strip(),
            photo=[{"file_id": "p", "file_unique_id": "u", "width": 9, "height": 9}],
        )
    )
    httpserver.expect_ordered_request(_method("sendMessage")).respond_with_json(_message(51, text=rest))

    result = _publisher(httpserver, clock).publish(
        OutboundPost(
            platform="telegram",
            text=f"{caption.strip()}\n\n{rest}",
            image=PNG,
            image_name="eth.png",
            idempotency_key="photo",
        )
    )

    assert result.part_ids == ("50", "51")
    (photo, _), (follow_up, _) = httpserver.log
    assert photo.form.to_dict() == {"chat_id": "@coinlink", "caption": caption.strip()}
    assert photo.files["photo"].filename == "eth.png"
    assert photo.files["photo"].read() == PNG
    assert follow_up.form.to_dict() == {"chat_id": "@coinlink", "text": rest}
    # One message a second per chat: the follow-up waited for the next second.
    assert clock.slept == [1.0]


def test_a_short_post_with_an_image_is_one_photo(httpserver: HTTPServer, clock: Clock) -> None:
    httpserver.expect_oneshot_request(_method("sendPhoto")).respond_with_json(
        _message(60, caption="Chart below.")
    )

    result = _publisher(httpserver, clock).publish(
        OutboundPost(platform="telegram", text="Chart below.", image=PNG, idempotency_key="short")
    )

    assert result.part_ids == ("60",)
    assert httpserver.log[0][0].form["caption"] == "Chart below."


def test_replies_and_direct_messages(httpserver: HTTPServer, clock: Clock) -> None:
    private = {"id": 777, "type": "private", "first_name": "Maya"}
    httpserver.expect_ordered_request(_method("sendMessage")).respond_with_json(
        _message(70, GROUP, text="thanks")
    )
    httpserver.expect_ordered_request(_method("sendMessage")).respond_with_json(
        _message(5, private, text="hi")
    )
    publisher = _publisher(httpserver, clock)

    publisher.publish(
        OutboundPost(
            platform="telegram", text="thanks", channel=str(GROUP["id"]), reply_to="69", idempotency_key="r"
        )
    )
    dm = publisher.publish(
        OutboundPost(platform="telegram", text="hi", channel="dm:777", idempotency_key="dm")
    )

    (reply, _), (direct, _) = httpserver.log
    assert reply.form["chat_id"] == str(GROUP["id"])
    assert json.loads(reply.form["reply_parameters"]) == {"message_id": 69}
    assert direct.form.to_dict() == {"chat_id": "777", "text": "hi"}
    assert dm.url == ""


def test_flood_control_waits_what_telegram_asks(httpserver: HTTPServer, clock: Clock) -> None:
    httpserver.expect_ordered_request(_method("sendMessage")).respond_with_json(
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        },
        status=429,
    )
    httpserver.expect_ordered_request(_method("sendMessage")).respond_with_json(_message(80, text="later"))

    result = _publisher(httpserver, clock).publish(
        OutboundPost(platform="telegram", text="later", idempotency_key="f")
    )

    assert result.external_id == "80"
    assert clock.slept == [7.0]
    assert CircuitBreakerState.objects.get(service="telegram").consecutive_failures == 0


def test_a_5xx_storm_opens_the_breaker(httpserver: HTTPServer, clock: Clock) -> None:
    httpserver.expect_request(_method("sendMessage")).respond_with_json(
        {"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502
    )
    publisher = _publisher(httpserver, clock, attempts=1)

    for n in range(5):
        clock.traveller.shift(1)  # keep to one message a second
        with pytest.raises(TransientError):
            publisher.publish(OutboundPost(platform="telegram", text="hi", idempotency_key=f"s{n}"))

    assert CircuitBreakerState.objects.get(service="telegram").state == CircuitBreakerState.State.OPEN
    with pytest.raises(CircuitOpenError):
        publisher.publish(OutboundPost(platform="telegram", text="hi", idempotency_key="after"))
    assert len(httpserver.log) == 5


def test_a_bad_request_is_permanent(httpserver: HTTPServer, clock: Clock) -> None:
    httpserver.expect_request(_method("sendMessage")).respond_with_json(
        {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}, status=400
    )

    with pytest.raises(PermanentError, match="Chat not found"):
        _publisher(httpserver, clock).publish(
            OutboundPost(platform="telegram", text="hi", idempotency_key="b")
        )
    assert len(httpserver.log) == 1


def _updates() -> dict[str, Any]:
    date = int(T0.timestamp()) + 60
    maya = {"id": 111, "is_bot": False, "first_name": "Maya", "last_name": "Chen", "username": "mayatrades"}
    mirror = {
        "message_id": 900,
        "date": date,
        "chat": GROUP,
        "sender_chat": CHANNEL,
        "is_automatic_forward": True,
        "forward_origin": {"type": "channel", "chat": CHANNEL, "message_id": 42, "date": date},
        "text": "BTC is up",
    }
    return {
        "ok": True,
        "result": [
            {"update_id": 1001, "message": mirror},
            {
                "update_id": 1002,
                "message": {
                    "message_id": 901,
                    "date": date + 30,
                    "chat": GROUP,
                    "from": maya,
                    "reply_to_message": mirror,
                    "text": "What timeframe is this?",
                },
            },
            {
                "update_id": 1003,
                "message": {
                    "message_id": 7,
                    "date": date + 60,
                    "chat": {"id": 222, "type": "private", "first_name": "Leo"},
                    "from": {"id": 222, "is_bot": False, "first_name": "Leo"},
                    "text": "Do you have a paid group?",
                },
            },
            {
                "update_id": 1004,
                "message_reaction_count": {
                    "chat": CHANNEL,
                    "message_id": 42,
                    "date": date,
                    "reactions": [
                        {"type": {"type": "emoji", "emoji": "👍"}, "total_count": 5},
                        {"type": {"type": "emoji", "emoji": "🔥"}, "total_count": 2},
                    ],
                },
            },
        ],
    }


def test_updates_are_consumed_once_and_become_events(httpserver: HTTPServer, clock: Clock) -> None:
    httpserver.expect_ordered_request(_method("getUpdates")).respond_with_json(_updates())
    httpserver.expect_ordered_request(_method("getUpdates")).respond_with_json({"ok": True, "result": []})
    publisher = _publisher(httpserver, clock)

    comment, dm = publisher.fetch_inbound(since=T0)
    assert publisher.fetch_inbound(since=T0) == []

    assert (comment.kind, comment.in_reply_to, comment.external_id) == ("comment", "42", f"{GROUP['id']}:901")
    assert (comment.author_id, comment.author_username, comment.author_display_name) == (
        "111",
        "mayatrades",
        "Maya Chen",
    )
    assert comment.text == "What timeframe is this?"
    assert comment.occurred_at == T0 + dt.timedelta(seconds=90)
    assert (dm.kind, dm.channel, dm.in_reply_to, dm.author_id) == ("dm", "dm:222", "", "222")
    assert "message_reaction_count" in json.loads(httpserver.log[0][0].form["allowed_updates"])
    assert "offset" not in httpserver.log[0][0].form
    assert httpserver.log[1][0].form["offset"] == "1005"
    # Reaction counts are the only engagement the Bot API shows; they arrive with the updates.
    (metrics,) = publisher.fetch_metrics(["42", "43"])
    assert (metrics.external_id, metrics.metrics) == ("42", {"reactions": 7})
