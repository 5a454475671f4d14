"""The Discord access gateway: discord.py's real HTTP layer against a fake Discord API on loopback that answers
``Content-Type: application/json`` exactly, and the offline twin."""

from __future__ import annotations

import json
from typing import Any

import discord.http
import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer
from werkzeug import Response

from apps.core.resilience import PermanentError, RateLimited, TransientError
from apps.integrations.access import DiscordAccess, MemberNotFound, get_access_gateway
from apps.integrations.access.discord import DiscordAccessGateway
from apps.integrations.access.twin import TwinDiscordAccess
from apps.integrations.models import AccessGrant

pytestmark = pytest.mark.django_db

API = "/api/v10"
GUILD = "555555555555555555"
ROLE = "777777777777777777"
OTHER_ROLE = "888888888888888888"
MAYA = "4242424242424242"
BOT = {"id": "999999999999999999", "username": "coinlink", "discriminator": "0", "bot": True, "avatar": None}
ROLE_PATH = f"{API}/guilds/{GUILD}/members/{MAYA}/roles/{ROLE}"


@pytest.fixture(autouse=True)
def _restore_route_base(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client points discord.py's class-wide base URL at the fake; put it back afterwards.
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)


@pytest.fixture
def gateway(httpserver: HTTPServer, settings: Settings) -> DiscordAccess:
    settings.DISCORD_BACKEND = "api"
    settings.DISCORD_BOT_TOKEN = "bot-token"
    settings.DISCORD_GUILD_ID = GUILD
    settings.DISCORD_API_BASE_URL = httpserver.url_for(API)
    httpserver.expect_request(f"{API}/users/@me", method="GET").respond_with_json(BOT)
    return get_access_gateway("discord")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


def _role_calls(httpserver: HTTPServer) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r, _ in httpserver.log if "/roles/" in r.path]


def test_the_settings_choose_the_real_gateway_or_the_twin(settings: Settings) -> None:
    settings.DISCORD_BACKEND = "outbox"
    assert isinstance(get_access_gateway("discord"), TwinDiscordAccess)

    settings.DISCORD_BACKEND = "api"
    settings.DISCORD_BOT_TOKEN = "bot-token"
    settings.DISCORD_GUILD_ID = ""
    with pytest.raises(ImproperlyConfigured, match="DISCORD_GUILD_ID"):
        get_access_gateway("discord")
    settings.DISCORD_GUILD_ID = GUILD
    assert isinstance(get_access_gateway("discord"), DiscordAccessGateway)


def test_a_role_is_given_with_a_put_on_the_member(httpserver: HTTPServer, gateway: DiscordAccess) -> None:
    httpserver.expect_oneshot_request(ROLE_PATH, method="PUT").respond_with_response(Response(status=204))

    gateway.grant_role(MAYA, ROLE)

    assert _role_calls(httpserver) == [("PUT", ROLE_PATH)]
    (request,) = [r for r, _ in httpserver.log if r.method == "PUT"]
    assert request.headers["Authorization"] == "Bot bot-token"
    assert request.headers["X-Audit-Log-Reason"] == "CoinLink membership"


def test_a_role_is_taken_away_with_a_delete(httpserver: HTTPServer, gateway: DiscordAccess) -> None:
    httpserver.expect_oneshot_request(ROLE_PATH, method="DELETE").respond_with_response(Response(status=204))

    gateway.revoke_role(MAYA, ROLE)

    assert _role_calls(httpserver) == [("DELETE", ROLE_PATH)]


def test_taking_a_role_from_someone_who_left_the_server_is_done(
    httpserver: HTTPServer, gateway: DiscordAccess
) -> None:
    httpserver.expect_oneshot_request(ROLE_PATH, method="DELETE").respond_with_response(
        _json({"message": "Unknown Member", "code": 10007}, status=404)
    )

    gateway.revoke_role(MAYA, ROLE)


def test_giving_a_role_to_someone_not_in_the_server_says_so(
    httpserver: HTTPServer, gateway: DiscordAccess
) -> None:
    httpserver.expect_oneshot_request(ROLE_PATH, method="PUT").respond_with_response(
        _json({"message": "Unknown Member", "code": 10007}, status=404)
    )

    with pytest.raises(MemberNotFound, match="not in the server"):
        gateway.grant_role(MAYA, ROLE)


def test_a_missing_permission_or_role_is_permanent(httpserver: HTTPServer, gateway: DiscordAccess) -> None:
    httpserver.expect_oneshot_request(ROLE_PATH, method="PUT").respond_with_response(
        _json({"message": "Missing Permissions", "code": 50013}, status=403)
    )
    httpserver.expect_oneshot_request(ROLE_PATH, method="DELETE").respond_with_response(
        _json({"message": "Unknown Role", "code": 10011}, status=404)
    )

    with pytest.raises(PermanentError, match="Missing Permissions") as refused:
        gateway.grant_role(MAYA, ROLE)
    assert not isinstance(refused.value, MemberNotFound)
    with pytest.raises(PermanentError, match="Unknown Role"):
        gateway.revoke_role(MAYA, ROLE)


def test_a_long_rate_limit_and_an_outage_come_back_as_retryable(
    httpserver: HTTPServer, gateway: DiscordAccess
) -> None:
    # A wait longer than discord.py sits out itself (30 s) comes back to us, for the task to reschedule.
    httpserver.expect_oneshot_request(ROLE_PATH, method="PUT").respond_with_response(
        _json(
            {"message": "You are being rate limited.", "retry_after": 120.0, "global": False},
            status=429,
            headers={"Via": "1.1 google", "Retry-After": "120"},
        )
    )
    httpserver.expect_oneshot_request(ROLE_PATH, method="PUT").respond_with_response(
        _json({"message": "Service Unavailable", "code": 0}, status=503)
    )

    with pytest.raises(RateLimited) as limited:
        gateway.grant_role(MAYA, ROLE)
    assert limited.value.retry_after == 120.0
    with pytest.raises(TransientError):
        gateway.grant_role(MAYA, ROLE)


def _member(user_id: int, *roles: str) -> dict[str, Any]:
    return {
        "user": {"id": str(user_id), "username": f"user{user_id}", "discriminator": "0", "avatar": None},
        "roles": list(roles),
        "joined_at": "2025-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
    }


def test_role_holders_pages_through_the_whole_server(httpserver: HTTPServer, gateway: DiscordAccess) -> None:
    first = [_member(1000 + n, ROLE if n % 250 == 0 else OTHER_ROLE) for n in range(1000)]
    second = [_member(5000, ROLE, OTHER_ROLE), _member(5001), _member(5002, OTHER_ROLE)]
    members = f"{API}/guilds/{GUILD}/members"
    httpserver.expect_oneshot_request(
        members, method="GET", query_string={"limit": "1000"}
    ).respond_with_response(_json(first))
    httpserver.expect_oneshot_request(
        members, method="GET", query_string={"limit": "1000", "after": "1999"}
    ).respond_with_response(_json(second))

    holders = gateway.role_holders(ROLE)

    assert holders == {"1000", "1250", "1500", "1750", "5000"}
    assert len([r for r, _ in httpserver.log if r.path == members]) == 2


def test_the_twin_records_roles_and_answers_who_holds_them() -> None:
    twin = TwinDiscordAccess()

    twin.grant_role(MAYA, ROLE)
    twin.grant_role("5151", ROLE)
    twin.grant_role(MAYA, OTHER_ROLE)
    twin.revoke_role("5151", ROLE)
    twin.revoke_role("6161", ROLE)  # never given: nothing to record

    assert twin.role_holders(ROLE) == {MAYA}
    assert twin.role_holders(OTHER_ROLE) == {MAYA}
    assert set(AccessGrant.objects.values_list("resource", "user_external_id", "state")) == {
        (ROLE, MAYA, AccessGrant.State.GRANTED),
        (ROLE, "5151", AccessGrant.State.REVOKED),
        (OTHER_ROLE, MAYA, AccessGrant.State.GRANTED),
    }
