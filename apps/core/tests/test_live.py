"""``apps.core.live``: events reach a group's members as JSON-safe messages; a broken layer never raises."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from pytest_django.fixtures import Settings as DjangoSettings

from apps.core import live
from apps.core.live import DASHBOARD_GROUP, LIVE_EVENT_TYPE, abroadcast, broadcast

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
STARTED = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


@pytest.fixture
def in_memory_layer(settings: DjangoSettings) -> None:
    # Setting CHANNEL_LAYERS makes Channels drop its cached layers, so the next lookup builds this one.
    settings.CHANNEL_LAYERS = IN_MEMORY


def _redis_layers(url: str) -> dict[str, object]:
    return {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [url]}}}


def _assert_sent_at_is_now(sent_at: str) -> None:
    parsed = datetime.fromisoformat(sent_at)
    assert parsed.tzinfo is not None
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 5


def test_the_dashboard_group_name() -> None:
    assert DASHBOARD_GROUP == "dashboard"


async def test_abroadcast_reaches_every_member_as_json_safe_data(in_memory_layer: None) -> None:
    layer = get_channel_layer()
    members = [await layer.new_channel() for _ in range(2)]
    outsider = await layer.new_channel()
    for channel in members:
        await layer.group_add("ops", channel)
    run_id = uuid.uuid4()

    await abroadcast("ops", "agent.run", {"run": run_id, "started": STARTED, "cost": Decimal("1.50")})

    for channel in members:
        message = await layer.receive(channel)
        _assert_sent_at_is_now(message.pop("sent_at"))
        assert message == {
            "type": LIVE_EVENT_TYPE,
            "event": "agent.run",
            "payload": {"run": str(run_id), "started": "2025-03-01T12:30:00Z", "cost": "1.50"},
        }
    assert outsider not in layer.channels


def test_broadcast_from_sync_code(in_memory_layer: None) -> None:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(DASHBOARD_GROUP, channel)

    broadcast(DASHBOARD_GROUP, "pipeline.finished", {"pipeline": 7, "ok": True, "steps": ["a", "b"]})

    message = async_to_sync(layer.receive)(channel)
    assert message["event"] == "pipeline.finished"
    assert message["payload"] == {"pipeline": 7, "ok": True, "steps": ["a", "b"]}


def test_a_refusing_layer_is_logged_and_swallowed(
    settings: DjangoSettings, caplog: pytest.LogCaptureFixture
) -> None:
    settings.CHANNEL_LAYERS = _redis_layers("redis://127.0.0.1:1/0")

    with caplog.at_level(logging.ERROR, logger="apps.core.live"):
        broadcast(DASHBOARD_GROUP, "agent.failed", {"agent": "publishing"})

    (record,) = caplog.records
    assert record.getMessage() == "live event agent.failed to group dashboard could not be sent"
    assert record.exc_info is not None


@pytest.fixture
def silent_redis_url() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        host, port = server.getsockname()
        yield f"redis://{host}:{port}/0"
    finally:
        server.close()


def test_a_hung_layer_gives_up_after_the_timeout(
    settings: DjangoSettings,
    silent_redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.CHANNEL_LAYERS = _redis_layers(silent_redis_url)
    monkeypatch.setattr(live, "BROADCAST_TIMEOUT", 0.3)

    with caplog.at_level(logging.ERROR, logger="apps.core.live"):
        started = datetime.now(UTC)
        broadcast(DASHBOARD_GROUP, "agent.run", {})
        elapsed = (datetime.now(UTC) - started).total_seconds()

    assert elapsed < 2
    assert [record.exc_info[0] for record in caplog.records if record.exc_info] == [TimeoutError]


def test_no_layer_configured_is_a_warning(settings: DjangoSettings, caplog: pytest.LogCaptureFixture) -> None:
    settings.CHANNEL_LAYERS = {}

    with caplog.at_level(logging.WARNING, logger="apps.core.live"):
        broadcast(DASHBOARD_GROUP, "agent.run", {})

    assert [record.getMessage() for record in caplog.records] == [
        "live event agent.run not sent: no channel layer is configured"
    ]


def test_a_payload_that_cannot_be_json_is_logged_not_raised(
    in_memory_layer: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="apps.core.live"):
        broadcast(DASHBOARD_GROUP, "agent.run", {"blob": object()})

    assert [record.exc_info[0] for record in caplog.records if record.exc_info] == [TypeError]


@pytest.mark.redis
async def test_abroadcast_through_real_redis(settings: DjangoSettings) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"coinlink-test-{uuid.uuid4().hex}"},
        }
    }
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(DASHBOARD_GROUP, channel)
    try:
        await abroadcast(DASHBOARD_GROUP, "insight.created", {"symbol": "BTC/USDT", "at": STARTED})

        message = await layer.receive(channel)
    finally:
        await layer.flush()

    assert message["type"] == LIVE_EVENT_TYPE
    assert message["event"] == "insight.created"
    assert message["payload"] == {"symbol": "BTC/USDT", "at": "2025-03-01T12:30:00Z"}
    _assert_sent_at_is_now(message["sent_at"])
