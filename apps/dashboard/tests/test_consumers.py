"""The dashboard websocket, driven through the real ASGI application (origin check, session auth, routing)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from pytest_django.fixtures import Settings as DjangoSettings

from apps.accounts.models import User
from apps.core.live import DASHBOARD_GROUP, abroadcast, broadcast
from apps.dashboard.consumers import CLOSE_FORBIDDEN
from coinlink.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/ws/dashboard/"
ORIGIN = b"http://testserver"
STARTED = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


@pytest.fixture
def site(settings: DjangoSettings) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@database_sync_to_async
def _session_cookie(*, staff: bool) -> str:
    user = User.objects.create_user(email=f"{uuid.uuid4().hex[:8]}@example.com", is_staff=staff)
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


def _communicator(cookie: str | None = None, origin: bytes = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"origin", origin), (b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, PATH, headers=headers)


def _assert_sent_at_is_now(sent_at: str) -> None:
    assert abs((datetime.now(UTC) - datetime.fromisoformat(sent_at)).total_seconds()) < 5


async def test_anonymous_is_refused(site: None) -> None:
    communicator = _communicator()

    connected, code = await communicator.connect()

    assert (connected, code) == (False, CLOSE_FORBIDDEN)
    assert DASHBOARD_GROUP not in get_channel_layer().groups


async def test_a_member_who_is_not_staff_is_refused(site: None) -> None:
    communicator = _communicator(await _session_cookie(staff=False))

    connected, code = await communicator.connect()

    assert (connected, code) == (False, CLOSE_FORBIDDEN)
    assert DASHBOARD_GROUP not in get_channel_layer().groups


async def test_staff_from_another_origin_is_refused(site: None) -> None:
    communicator = _communicator(await _session_cookie(staff=True), origin=b"https://evil.example")

    connected, _ = await communicator.connect()

    assert connected is False
    assert DASHBOARD_GROUP not in get_channel_layer().groups


async def test_staff_receive_broadcasts_and_leave_the_group_on_disconnect(site: None) -> None:
    communicator = _communicator(await _session_cookie(staff=True))
    connected, _ = await communicator.connect()
    assert connected is True

    await abroadcast(DASHBOARD_GROUP, "agent.run", {"agent": "market_scanner", "started": STARTED})
    first = await communicator.receive_json_from(timeout=2)
    # Sync callers (agents, services) go through the sync wrapper.
    await sync_to_async(broadcast)(DASHBOARD_GROUP, "agent.finished", {"agent": "market_scanner"})
    second = await communicator.receive_json_from(timeout=2)

    assert set(first) == {"event", "payload", "sent_at"}
    assert first["event"] == "agent.run"
    assert first["payload"] == {"agent": "market_scanner", "started": "2025-03-01T12:30:00Z"}
    _assert_sent_at_is_now(first["sent_at"])
    assert (second["event"], second["payload"]) == ("agent.finished", {"agent": "market_scanner"})
    assert await communicator.receive_nothing()

    await communicator.disconnect()

    assert not get_channel_layer().groups.get(DASHBOARD_GROUP)


async def test_what_the_browser_sends_is_ignored(site: None) -> None:
    communicator = _communicator(await _session_cookie(staff=True))
    await communicator.connect()

    await communicator.send_json_to({"event": "agent.run", "payload": {}})

    assert await communicator.receive_nothing()
    await communicator.disconnect()


@pytest.mark.redis
async def test_a_broadcast_reaches_a_connected_client_through_the_real_redis_channel_layer(
    settings: DjangoSettings,
) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    # A prefix of its own, so this run neither sees nor leaves behind anyone else's messages.
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"coinlink-test-{uuid.uuid4().hex}"},
        }
    }
    communicator = _communicator(await _session_cookie(staff=True))
    connected, _ = await communicator.connect()
    assert connected is True
    try:
        # A plain thread with its own event loop, like a Celery worker reporting an agent run.
        await asyncio.to_thread(
            broadcast, DASHBOARD_GROUP, "agent.succeeded", {"agent": "publishing", "finished": STARTED}
        )

        message = await communicator.receive_json_from(timeout=5)
    finally:
        await communicator.disconnect()
        await get_channel_layer().flush()

    sent_at = message.pop("sent_at")
    assert message == {
        "event": "agent.succeeded",
        "payload": {"agent": "publishing", "finished": "2025-03-01T12:30:00Z"},
    }
    _assert_sent_at_is_now(sent_at)
