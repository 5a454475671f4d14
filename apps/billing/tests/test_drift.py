"""``manage.py entitlements_drift``: who holds each Discord role and sits in each Telegram channel, against the
ledger, with the real discord.py and python-telegram-bot clients against fakes on loopback."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import discord.http
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import EntitlementFactory, PlanFactory
from apps.billing.models import Entitlement, SyncStatus
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.integrations.access.twin import TwinDiscordAccess, TwinTelegramAccess
from apps.integrations.models import OutboxMessage

pytestmark = pytest.mark.django_db

API = "/api/v10"
GUILD = "555555555555555555"
ROLE = "777777777777777777"
DISCORD_KEY = f"discord.role:{ROLE}"
TOKEN = "123456:TEST-token"
CHAT = "-1001234567890"
TELEGRAM_KEY = f"telegram.channel:{CHAT}"
BOT_USER = {"id": "999999999999999999", "username": "coinlink", "discriminator": "0", "bot": True}


@pytest.fixture(autouse=True)
def _restore_route_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)


def _member(email: str, **accounts: str) -> User:
    user = UserFactory.create(email=email)
    community = CommunityUserFactory.create(portal_user=user)
    for platform, account in accounts.items():
        PlatformIdentityFactory.create(
            community_user=community, platform=platform, external_id=account, linked_at=timezone.now()
        )
    return user


def _entitle(user: User, key: str, **fields: Any) -> Entitlement:
    return EntitlementFactory.create(user=user, key=key, sync_status=SyncStatus.SYNCED, **fields)


def _run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("entitlements_drift", *args, stdout=out, no_color=True)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + f"CommandError: {exc}"
    return 0, out.getvalue()


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _guild_member(user_id: str, *roles: str) -> dict[str, Any]:
    user = {"id": user_id, "username": f"u{user_id}", "discriminator": "0", "avatar": None}
    return {
        "user": user,
        "roles": list(roles),
        "joined_at": "2025-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
    }


# --- Discord ------------------------------------------------------------------------------------------------


@pytest.fixture
def discord_api(httpserver: HTTPServer, settings: Settings) -> HTTPServer:
    settings.DISCORD_BACKEND = "api"
    settings.DISCORD_BOT_TOKEN = "bot-token"
    settings.DISCORD_GUILD_ID = GUILD
    settings.DISCORD_API_BASE_URL = httpserver.url_for(API)
    httpserver.expect_request(f"{API}/users/@me", method="GET").respond_with_json(BOT_USER)
    return httpserver


@pytest.fixture
def discord_community(discord_api: HTTPServer) -> dict[str, User]:
    """Maya is entitled and has the role; Bob is entitled without it (his sync gave up); Eve has it without an
    entitlement (hers ended); Sam is entitled but never linked Discord; a stranger holds the role too."""
    members = {
        "maya": _member("maya@example.com", discord="1001"),
        "bob": _member("bob@example.com", discord="1002"),
        "eve": _member("eve@example.com", discord="1003"),
        "sam": _member("sam@example.com"),
    }
    for name in ("maya", "bob", "sam"):
        _entitle(members[name], DISCORD_KEY)
    Entitlement.objects.filter(user=members["bob"]).update(sync_status=SyncStatus.FAILED, sync_error="500")
    now = timezone.now()
    _entitle(
        members["eve"],
        DISCORD_KEY,
        starts_at=now - dt.timedelta(days=40),
        ends_at=now - dt.timedelta(days=10),
    )
    discord_api.expect_request(f"{API}/guilds/{GUILD}/members", method="GET").respond_with_response(
        _json(
            [
                _guild_member("1001", ROLE),
                _guild_member("1002"),
                _guild_member("1003", ROLE),
                _guild_member("2000", ROLE),
                _guild_member("2001", "123"),
            ]
        )
    )
    return members


def _role_calls(server: HTTPServer) -> list[tuple[str, str]]:
    return [(r.method, r.path.rsplit("/members/", 1)[-1]) for r, _ in server.log if "/roles/" in r.path]


def test_discord_drift_is_reported_and_exits_1(
    discord_api: HTTPServer, discord_community: dict[str, User]
) -> None:
    code, output = _run("--platform", "discord")

    assert code == 1
    users = {name: user.pk for name, user in discord_community.items()}
    assert f"Discord role {ROLE} ({DISCORD_KEY}): 3 entitled, 3 hold the role" in output
    assert (
        "  missing access (entitled, without the role):\n"
        f"    discord 1002 (user {users['bob']} bob@example.com)\n" in output
    )
    assert (
        "  extra access (holding the role, not entitled):\n"
        f"    discord 1003 (user {users['eve']} eve@example.com)\n"
        "    discord 2000 (not linked to a CoinLink member)\n"
    ) in output
    assert (
        f"no Discord account linked (nothing to act on until they link):\n    user {users['sam']} sam@example.com"
        in output
    )
    assert "run with --fix to repair" in output
    assert _role_calls(discord_api) == []  # a report changes nothing
    assert Entitlement.objects.get(user=discord_community["bob"]).sync_status == SyncStatus.FAILED


def test_discord_fix_gives_and_takes_away_roles(
    discord_api: HTTPServer, discord_community: dict[str, User]
) -> None:
    roles = f"{API}/guilds/{GUILD}/members"
    discord_api.expect_oneshot_request(f"{roles}/1002/roles/{ROLE}", method="PUT").respond_with_response(
        Response(status=204)
    )
    discord_api.expect_oneshot_request(f"{roles}/1003/roles/{ROLE}", method="DELETE").respond_with_response(
        Response(status=204)
    )
    discord_api.expect_oneshot_request(f"{roles}/2000/roles/{ROLE}", method="DELETE").respond_with_response(
        Response(status=204)
    )

    code, output = _run("--platform", "discord", "--fix")

    assert code == 0
    assert sorted(_role_calls(discord_api)) == [
        ("DELETE", f"1003/roles/{ROLE}"),
        ("DELETE", f"2000/roles/{ROLE}"),
        ("PUT", f"1002/roles/{ROLE}"),
    ]
    assert "bob@example.com): role given" in output
    assert "eve@example.com): role taken away" in output
    assert "discord 2000 (not linked to a CoinLink member): role taken away" in output
    assert "Repaired drift in 1 of 1." in output
    bob = Entitlement.objects.get(user=discord_community["bob"])
    assert (bob.sync_status, bob.sync_error) == (SyncStatus.SYNCED, "")


def test_a_repair_the_platform_refuses_is_reported_and_exits_1(
    discord_api: HTTPServer, discord_community: dict[str, User]
) -> None:
    refused = _json({"message": "Missing Permissions", "code": 50013}, status=403)
    discord_api.expect_request(
        f"{API}/guilds/{GUILD}/members/1002/roles/{ROLE}", method="PUT"
    ).respond_with_response(refused)
    discord_api.expect_request(
        f"{API}/guilds/{GUILD}/members/1003/roles/{ROLE}", method="DELETE"
    ).respond_with_response(refused)
    discord_api.expect_request(
        f"{API}/guilds/{GUILD}/members/2000/roles/{ROLE}", method="DELETE"
    ).respond_with_response(Response(status=204))

    code, output = _run("--platform", "discord", "--fix")

    assert code == 1
    assert "bob@example.com): NOT REPAIRED: Discord 403" in output
    assert "CommandError: 2 could not be repaired" in output
    assert Entitlement.objects.get(user=discord_community["bob"]).sync_status == SyncStatus.FAILED


def test_a_server_that_will_not_list_its_members_exits_2(discord_api: HTTPServer) -> None:
    _entitle(_member("maya@example.com", discord="1001"), DISCORD_KEY)
    discord_api.expect_request(f"{API}/guilds/{GUILD}/members", method="GET").respond_with_response(
        _json({"message": "Missing Access", "code": 50001}, status=403)
    )

    code, output = _run("--platform", "discord")

    assert code == 2
    assert "could not be checked: Discord 403" in output


# --- Telegram -----------------------------------------------------------------------------------------------


@pytest.fixture
def telegram_api(httpserver: HTTPServer, settings: Settings) -> HTTPServer:
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    return httpserver


def _method(name: str) -> str:
    return f"/bot{TOKEN}/{name}"


def _chat_member_by_user(in_channel: set[str]) -> Any:
    def respond(request: Request) -> Response:
        user_id = request.form["user_id"]
        status = "member" if user_id in in_channel else "left"
        user = {"id": int(user_id), "is_bot": False, "first_name": "Someone"}
        return _json({"ok": True, "result": {"status": status, "user": user}})

    return respond


def test_telegram_drift_asks_about_each_linked_account_and_fix_invites_and_removes(
    telegram_api: HTTPServer,
) -> None:
    maya = _member("maya@example.com", telegram="501")
    bob = _member("bob@example.com", telegram="502")
    eve = _member("eve@example.com", telegram="503")
    _member("zoe@example.com", discord="1009")  # not on Telegram: not asked about
    for user in (maya, bob):
        _entitle(user, TELEGRAM_KEY)
    PlanFactory.create(entitlement_keys=[TELEGRAM_KEY])
    telegram_api.expect_request(_method("getChatMember")).respond_with_handler(
        _chat_member_by_user({"501", "503"})
    )

    code, output = _run("--platform", "telegram")

    assert code == 1
    assert (
        f"Telegram channel {CHAT} ({TELEGRAM_KEY}): 2 entitled, 3 linked Telegram accounts asked about"
        in output
    )
    assert "Bot API cannot list a channel's members" in output
    assert (
        f"  missing access (entitled, not in the channel):\n    telegram 502 (user {bob.pk} bob@example.com)\n"
        in output
    )
    assert (
        f"  extra access (in the channel, not entitled):\n    telegram 503 (user {eve.pk} eve@example.com)\n"
        in output
    )
    asked = sorted(r.form["user_id"] for r, _ in telegram_api.log)
    assert asked == ["501", "502", "503"]

    telegram_api.clear_log()
    telegram_api.expect_oneshot_request(_method("createChatInviteLink")).respond_with_json(
        {
            "ok": True,
            "result": {
                "invite_link": "https://t.me/+ForBob",
                "creator": {"id": 123456, "is_bot": True, "first_name": "CoinLink"},
                "creates_join_request": False,
                "is_primary": False,
                "is_revoked": False,
                "member_limit": 1,
            },
        }
    )
    telegram_api.expect_oneshot_request(_method("sendMessage")).respond_with_json(
        {
            "ok": True,
            "result": {
                "message_id": 9,
                "date": 1,
                "chat": {"id": 502, "type": "private", "first_name": "Bob"},
            },
        }
    )
    telegram_api.expect_oneshot_request(_method("banChatMember")).respond_with_json(
        {"ok": True, "result": True}
    )
    telegram_api.expect_oneshot_request(_method("unbanChatMember")).respond_with_json(
        {"ok": True, "result": True}
    )

    code, output = _run("--platform", "telegram", "--fix")

    assert code == 0
    assert "bob@example.com): invite link sent" in output
    assert "eve@example.com): removed from the channel" in output
    calls = [
        (r.path.rsplit("/", 1)[-1], r.form.get("user_id") or r.form.get("chat_id"))
        for r, _ in telegram_api.log
    ]
    assert [c for c in calls if c[0] != "getChatMember"] == [
        ("createChatInviteLink", CHAT),
        ("sendMessage", "502"),
        ("banChatMember", "503"),
        ("unbanChatMember", "503"),
    ]


# --- in sync --------------------------------------------------------------------------------------------------


def test_in_sync_exits_0(settings: Settings) -> None:
    settings.DISCORD_BACKEND = "outbox"
    settings.TELEGRAM_BACKEND = "outbox"
    maya = _member("maya@example.com", discord="1001", telegram="501")
    _entitle(maya, DISCORD_KEY)
    _entitle(maya, TELEGRAM_KEY)
    TwinDiscordAccess().grant_role("1001", ROLE)
    TwinTelegramAccess().create_invite_link(
        CHAT, "CoinLink member 501", timezone.now() + dt.timedelta(hours=1)
    )

    code, output = _run()

    assert code == 0
    assert output.count("  in sync\n") == 2
    assert "All 2 in sync with the ledger." in output
    assert not OutboxMessage.objects.exists()


def test_nothing_to_check_says_so() -> None:
    _entitle(_member("maya@example.com"), "portal.premium")

    code, output = _run()

    assert (code, output.strip()) == (
        0,
        "No plan or entitlement names a Discord role or Telegram channel: nothing to check.",
    )
