"""The bots' connections as far as they can fail: discord.py's gateway session against a fake Discord that
refuses the token or is down, and python-telegram-bot's polling against a fake Bot API that refuses it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import discord.http
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer
from werkzeug import Response

from apps.core.heartbeats import HeartbeatThread
from apps.core.resilience import PermanentError
from apps.integrations import discord_gateway
from apps.integrations.discord_gateway import GatewayClient, run_gateway

pytestmark = pytest.mark.django_db

API = "/api/v10"


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *args: ""


def _client() -> GatewayClient:
    return GatewayClient(handler=_Quiet(), guild_id=555)


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def test_a_refused_discord_token_is_permanent(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    httpserver.expect_request(f"{API}/users/@me").respond_with_response(
        _json({"message": "401: Unauthorized", "code": 0}, 401)
    )

    with pytest.raises(PermanentError, match="refused the bot token"):
        asyncio.run(
            run_gateway(
                token="bad", make_client=_client, api_base_url=httpserver.url_for(API), stop=asyncio.Event()
            )
        )


def test_an_unreachable_discord_is_tried_again_with_growing_waits(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(discord_gateway, "BACKOFF_START", 0.05)
    httpserver.expect_request(f"{API}/users/@me").respond_with_response(
        _json({"message": "503: Service Unavailable", "code": 0}, 503)
    )
    sessions: list[GatewayClient] = []
    waits: list[float] = []
    real_wait_for = asyncio.wait_for

    async def main() -> None:
        stop = asyncio.Event()

        def make() -> GatewayClient:
            if len(sessions) == 3:
                stop.set()
            sessions.append(_client())
            return sessions[-1]

        async def recording_wait_for(awaitable: Any, timeout: float | None) -> Any:
            if timeout is not None:
                waits.append(timeout)
            return await real_wait_for(awaitable, timeout)

        monkeypatch.setattr(asyncio, "wait_for", recording_wait_for)
        await run_gateway(token="t", make_client=make, api_base_url=httpserver.url_for(API), stop=stop)

    asyncio.run(main())

    assert len(sessions) == 4  # three failed sessions, then the stop
    assert waits[:3] == [0.05, 0.1, 0.2]


def test_a_refused_telegram_token_stops_the_polling_command(
    httpserver: HTTPServer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The heartbeat thread writes on a connection of its own, outside the test's transaction
    # (tests/test_bot_processes.py covers the heartbeat of the real process).
    monkeypatch.setattr(HeartbeatThread, "start", lambda self: None)
    monkeypatch.setattr(HeartbeatThread, "stop", lambda self, timeout=5.0: None)
    settings.TELEGRAM_BOT_TOKEN = "123:bad"
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/bot123:bad/getMe").respond_with_response(
        _json({"ok": False, "error_code": 401, "description": "Unauthorized"}, 401)
    )

    with pytest.raises(CommandError, match="Telegram refused the bot"):
        call_command("run_telegram_bot")
