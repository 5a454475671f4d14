"""The bots as the processes the Procfile runs: ``manage.py run_discord_bot`` connects to a fake Discord (REST and
the gateway websocket, on loopback), gives a paying member who joins their role, and ``manage.py
run_telegram_bot`` long-polls a fake Bot API and handles what it reads. Both keep a heartbeat row while they run
and, on SIGTERM, stop cleanly (exit 0) with the row marked stopped. Without their tokens they refuse to start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

ROOT = Path(__file__).resolve().parent.parent
GUILD = "555555555555555555"
ROLE = "777777777777777777"
APP_ID = "999999999999999999"
MAYA_DISCORD = "4242424242424242"
TG_TOKEN = "123456:TEST-token"
TG_GROUP = -1001234567890

pytestmark = pytest.mark.processes


def _environment(database: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CI"}
        and not key.startswith(("DISCORD_", "TELEGRAM_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="coinlink.settings",
        DJANGO_ENV="test",
        DATABASE_URL=f"sqlite:///{database}",
        AGENTS_RUN_IN_PROCESS="false",
        HEARTBEAT_INTERVAL_SECONDS="1",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def _manage(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bots") / "bots.sqlite3"
    result = _manage(_environment(path), "migrate", "--noinput", "-v0")
    assert result.returncode == 0, result.stderr
    return path


def _rows(database: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return connection.execute(sql, params).fetchall()


def _wait(
    condition: Callable[[], bool], *, seconds: float = 60, what: str = "", log: Path | None = None
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"; log:\n{log.read_text()}" if log else ""))


@contextlib.contextmanager
def _bot(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


# --- a fake Discord: REST and the gateway websocket ---------------------------------------------------------


class FakeDiscord:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.identify: dict[str, Any] = {}
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _json(self, body: Any) -> web.Response:
        # Exactly "application/json": discord.py reads anything else (aiohttp adds a charset) as text.
        return web.Response(body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})

    async def rest(self, request: web.Request) -> web.StreamResponse:
        path = request.path.removeprefix("/api/v10")
        self.requests.append((request.method, path))
        bot = {"id": APP_ID, "username": "coinlink", "discriminator": "0", "bot": True, "avatar": None}
        if path == "/users/@me":
            return self._json(bot)
        if path == "/oauth2/applications/@me":
            owner = {"id": "1", "username": "owner", "discriminator": "0", "avatar": None}
            return self._json(
                {
                    "id": APP_ID,
                    "name": "CoinLink",
                    "icon": None,
                    "description": "",
                    "bot_public": False,
                    "bot_require_code_grant": False,
                    "verify_key": "0" * 64,
                    "flags": 0,
                    "owner": owner,
                }
            )
        if path == "/gateway/bot":
            return self._json(
                {
                    "url": f"ws://127.0.0.1:{self.port}/gateway",
                    "shards": 1,
                    "session_start_limit": {
                        "total": 1000,
                        "remaining": 999,
                        "reset_after": 0,
                        "max_concurrency": 1,
                    },
                }
            )
        return web.Response(status=204)

    async def gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 45000}, "s": None, "t": None})
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if data["op"] == 1:
                await ws.send_json({"op": 11, "d": None, "s": None, "t": None})
            elif data["op"] == 2:
                self.identify = data["d"]
                for seq, (event, payload) in enumerate(self._session(), start=1):
                    await ws.send_json({"op": 0, "t": event, "s": seq, "d": payload})
        return ws

    def _session(self) -> list[tuple[str, dict[str, Any]]]:
        bot = {"id": APP_ID, "username": "coinlink", "discriminator": "0", "bot": True, "avatar": None}
        everyone = {
            "id": GUILD,
            "name": "@everyone",
            "permissions": "3072",
            "position": 0,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }
        maya = {
            "id": MAYA_DISCORD,
            "username": "maya",
            "discriminator": "0",
            "avatar": None,
            "global_name": "Maya",
        }
        return [
            (
                "READY",
                {
                    "v": 10,
                    "user": bot,
                    "guilds": [{"id": GUILD, "unavailable": True}],
                    "session_id": "s1",
                    "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                    "application": {"id": APP_ID, "flags": 0},
                    "private_channels": [],
                    "relationships": [],
                },
            ),
            (
                "GUILD_CREATE",
                {
                    "id": GUILD,
                    "name": "CoinLink",
                    "owner_id": "1",
                    "icon": None,
                    "roles": [everyone],
                    "channels": [],
                    "members": [],
                    "member_count": 2,
                    "emojis": [],
                    "stickers": [],
                    "features": [],
                    "threads": [],
                    "presences": [],
                    "voice_states": [],
                    "large": False,
                },
            ),
            (
                "GUILD_MEMBER_ADD",
                {
                    "guild_id": GUILD,
                    "user": maya,
                    "roles": [],
                    "joined_at": "2026-12-04T20:00:00+00:00",
                    "deaf": False,
                    "mute": False,
                    "flags": 0,
                },
            ),
        ]

    def __enter__(self) -> FakeDiscord:
        async def start() -> None:
            app = web.Application()
            app.router.add_get("/gateway", self.gateway)
            app.router.add_route("*", "/api/v10/{tail:.*}", self.rest)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._started.set()

        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


SEED_MEMBER = f"""
from django.utils import timezone
from apps.accounts.models import User
from apps.billing.models import Entitlement
from apps.community.models import CommunityUser, PlatformIdentity
user = User.objects.create_user(email="maya@example.com", password="x")
now = timezone.now()
person = CommunityUser.objects.create(display_name="Maya", portal_user=user, first_seen_at=now, last_seen_at=now)
PlatformIdentity.objects.create(community_user=person, platform="discord", external_id="{MAYA_DISCORD}", linked_at=now)
Entitlement.objects.create(user=user, key="discord.role:{ROLE}", source="complimentary", starts_at=now)
"""


def test_the_discord_bot_gives_a_joining_member_their_role_and_stops_cleanly_on_sigterm(
    database: Path, tmp_path: Path
) -> None:
    with FakeDiscord() as fake:
        env = _environment(
            database,
            DISCORD_BACKEND="api",
            DISCORD_BOT_TOKEN="bot-token",
            DISCORD_GUILD_ID=GUILD,
            DISCORD_CHANNEL_ID="666666666666666666",
            DISCORD_API_BASE_URL=fake.url("/api/v10"),
            DISCORD_GATEWAY_URL=f"ws://127.0.0.1:{fake.port}/gateway",
        )
        seeded = _manage(env, "shell", "-c", SEED_MEMBER)
        assert seeded.returncode == 0, seeded.stderr
        log = tmp_path / "discord.log"
        with _bot(["run_discord_bot"], env, log) as process:
            role = ("PUT", f"/guilds/{GUILD}/members/{MAYA_DISCORD}/roles/{ROLE}")
            _wait(lambda: role in fake.requests, what="the role to be given", log=log)
            rows = _rows(database, "SELECT kind, stopped_at FROM heartbeats WHERE name LIKE 'discord@%'")
            assert rows == [("bot", None)]
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0, log.read_text()

    intents = fake.identify["intents"]
    assert intents & (1 << 1)
    assert intents & (1 << 15)
    (stopped,) = _rows(database, "SELECT stopped_at FROM heartbeats WHERE name LIKE 'discord@%'")
    assert stopped[0] is not None
    assert "Discord bot stopped." in log.read_text()


# --- a fake Bot API for long polling ----------------------------------------------------------------------------


class FakeTelegram:
    def __init__(self, updates: list[dict[str, Any]]) -> None:
        self.updates = updates
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = (
            dict(await request.post()) if request.content_type != "application/json" else await request.json()
        )
        self.calls.append((method, body))
        if method == "getMe":
            result: Any = {"id": 123456, "is_bot": True, "first_name": "CoinLink", "username": "CoinLinkBot"}
        elif method == "getUpdates":
            offset = int(body.get("offset") or 0)
            result = [u for u in self.updates if u["update_id"] >= offset]
            if not result:
                await asyncio.sleep(0.3)  # a long poll with nothing new
        elif method == "sendMessage":
            result = {
                "message_id": 1,
                "date": int(time.time()),
                "chat": {"id": int(body["chat_id"]), "type": "private"},
            }
        else:
            result = True
        return web.Response(text=json.dumps({"ok": True, "result": result}), content_type="application/json")

    def __enter__(self) -> FakeTelegram:
        async def start() -> None:
            app = web.Application()
            app.router.add_post(f"/bot{TG_TOKEN}/{{method}}", self.api)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_the_telegram_bot_polls_handles_updates_and_stops_cleanly_on_sigterm(
    database: Path, tmp_path: Path
) -> None:
    maya = {"id": 4242, "is_bot": False, "first_name": "Maya", "username": "mayatrades"}
    scam = "Hi, I'm from support. DM me your 12-word seed phrase and I'll fix your wallet"
    update = {
        "update_id": 7001,
        "message": {
            "message_id": 55,
            "date": int(time.time()),
            "chat": {"id": TG_GROUP, "type": "supergroup", "title": "CoinLink chat"},
            "from": maya,
            "text": scam,
        },
    }
    with FakeTelegram([update]) as fake:
        env = _environment(
            database,
            TELEGRAM_BACKEND="api",
            TELEGRAM_BOT_TOKEN=TG_TOKEN,
            TELEGRAM_CHANNEL_ID="@coinlink",
            TELEGRAM_API_BASE_URL=f"http://127.0.0.1:{fake.port}",
        )
        log = tmp_path / "telegram.log"
        with _bot(["run_telegram_bot"], env, log) as process:
            processed = [("processed",)]
            _wait(
                lambda: (
                    _rows(database, "SELECT status FROM telegram_updates WHERE update_id = 7001") == processed
                ),
                what="the update to be handled",
                log=log,
            )
            assert [m for m, _ in fake.calls if m == "deleteMessage"] == ["deleteMessage"]
            assert _rows(
                database, "SELECT kind, stopped_at FROM heartbeats WHERE name LIKE 'telegram@%'"
            ) == [("bot", None)]
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0, log.read_text()

    polls = [body for method, body in fake.calls if method == "getUpdates"]
    assert json.loads(polls[0]["allowed_updates"]) >= ["message"]
    assert "chat_join_request" in json.loads(polls[0]["allowed_updates"])
    (stopped,) = _rows(database, "SELECT stopped_at FROM heartbeats WHERE name LIKE 'telegram@%'")
    assert stopped[0] is not None
    assert "Telegram bot stopped." in log.read_text()


@pytest.mark.parametrize(
    ("command", "needs"),
    [
        ("run_discord_bot", "DISCORD_BOT_TOKEN and DISCORD_GUILD_ID"),
        ("run_telegram_bot", "TELEGRAM_BOT_TOKEN"),
    ],
)
def test_a_bot_without_its_token_says_so_and_exits_non_zero(database: Path, command: str, needs: str) -> None:
    result = _manage(_environment(database), command, timeout=60)

    assert result.returncode != 0
    assert needs in result.stderr
    assert "nothing was started" in result.stderr
