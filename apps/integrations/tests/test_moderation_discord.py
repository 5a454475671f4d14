"""The Discord moderation client: discord.py's real HTTP layer against a fake Discord API on loopback that
answers ``Content-Type: application/json`` exactly, and the offline twin."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import discord.http
import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer
from werkzeug import Response

from apps.core.resilience import PermanentError, RateLimited, TransientError
from apps.integrations.models import ModerationCall, OutboxMessage
from apps.integrations.moderation import NotInCommunity, PlatformModeration, get_moderation_client
from apps.integrations.moderation.discord import DiscordModeration
from apps.integrations.moderation.twin import TwinModeration
from apps.integrations.publishers.discord import nonce_for

pytestmark = pytest.mark.django_db

API = "/api/v10"
GUILD = "555555555555555555"
CHANNEL = "666666666666666666"
MESSAGE = "1311111111111111111"
MAYA = "4242424242424242"
DM_CHANNEL = "777777777777777777"
BOT = {"id": "999999999999999999", "username": "coinlink", "discriminator": "0", "bot": True, "avatar": None}
MEMBER_PATH = f"{API}/guilds/{GUILD}/members/{MAYA}"
BAN_PATH = f"{API}/guilds/{GUILD}/bans/{MAYA}"
UNTIL = dt.datetime(2026, 12, 5, 9, 30, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _restore_route_base(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client points discord.py's class-wide base URL at the fake; put it back afterwards.
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)


@pytest.fixture
def client(httpserver: HTTPServer, settings: Settings) -> PlatformModeration:
    settings.DISCORD_BACKEND = "api"
    settings.DISCORD_BOT_TOKEN = "bot-token"
    settings.DISCORD_API_BASE_URL = httpserver.url_for(API)
    httpserver.expect_request(f"{API}/users/@me", method="GET").respond_with_json(BOT)
    return get_moderation_client("discord")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


def _member(**fields: Any) -> dict[str, Any]:
    return {
        "user": {"id": MAYA, "username": "maya", "discriminator": "0", "avatar": None},
        "roles": [],
        "joined_at": "2025-01-01T00:00:00+00:00",
        "deaf": False,
        "mute": False,
        **fields,
    }


def _calls(httpserver: HTTPServer) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r, _ in httpserver.log if not r.path.endswith("/users/@me")]


def _requests(httpserver: HTTPServer, method: str) -> list[Any]:
    return [r for r, _ in httpserver.log if r.method == method]


def test_the_settings_choose_the_real_client_or_the_twin(settings: Settings) -> None:
    settings.DISCORD_BACKEND = "outbox"
    assert isinstance(get_moderation_client("discord"), TwinModeration)

    settings.DISCORD_BACKEND = "api"
    settings.DISCORD_BOT_TOKEN = ""
    with pytest.raises(ImproperlyConfigured, match="DISCORD_BOT_TOKEN"):
        get_moderation_client("discord")
    settings.DISCORD_BOT_TOKEN = "bot-token"
    assert isinstance(get_moderation_client("discord"), DiscordModeration)


def test_a_message_is_deleted_and_one_already_gone_is_done(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    path = f"{API}/channels/{CHANNEL}/messages/{MESSAGE}"
    httpserver.expect_oneshot_request(path, method="DELETE").respond_with_response(Response(status=204))
    httpserver.expect_oneshot_request(path, method="DELETE").respond_with_response(
        _json({"message": "Unknown Message", "code": 10008}, status=404)
    )

    client.delete_message(chat_id=CHANNEL, message_id=MESSAGE, reason="seed phrase request")
    client.delete_message(chat_id=CHANNEL, message_id=MESSAGE)

    assert _calls(httpserver) == [("DELETE", path), ("DELETE", path)]
    first = _requests(httpserver, "DELETE")[0]
    assert first.headers["Authorization"] == "Bot bot-token"
    assert first.headers["X-Audit-Log-Reason"] == "seed phrase request"


def test_a_mute_is_a_timeout_until_a_time_and_lifting_it_clears_it(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_oneshot_request(MEMBER_PATH, method="PATCH").respond_with_response(
        _json(_member(communication_disabled_until=UNTIL.isoformat()))
    )
    httpserver.expect_oneshot_request(MEMBER_PATH, method="PATCH").respond_with_response(_json(_member()))

    client.mute(space=GUILD, user_id=MAYA, until=UNTIL, reason="scam")
    client.unmute(space=GUILD, user_id=MAYA)

    assert _calls(httpserver) == [("PATCH", MEMBER_PATH), ("PATCH", MEMBER_PATH)]
    mute, unmute = (r.get_json() for r in _requests(httpserver, "PATCH"))
    assert mute == {"communication_disabled_until": "2026-12-05T09:30:00+00:00"}
    assert unmute == {"communication_disabled_until": None}


def test_muting_someone_not_in_the_server_says_so_and_unmuting_them_is_done(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_request(MEMBER_PATH, method="PATCH").respond_with_response(
        _json({"message": "Unknown Member", "code": 10007}, status=404)
    )

    with pytest.raises(NotInCommunity, match="not in the server"):
        client.mute(space=GUILD, user_id=MAYA, until=UNTIL)
    client.unmute(space=GUILD, user_id=MAYA)


def test_a_ban_removes_the_last_hour_of_messages_and_an_unban_lifts_it(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_oneshot_request(BAN_PATH, method="PUT").respond_with_response(Response(status=204))
    httpserver.expect_oneshot_request(BAN_PATH, method="DELETE").respond_with_response(Response(status=204))
    httpserver.expect_oneshot_request(BAN_PATH, method="DELETE").respond_with_response(
        _json({"message": "Unknown Ban", "code": 10026}, status=404)
    )

    client.ban(space=GUILD, user_id=MAYA, reason="drainer link")
    client.unban(space=GUILD, user_id=MAYA)
    client.unban(space=GUILD, user_id=MAYA)  # no ban left: done

    assert _calls(httpserver) == [("PUT", BAN_PATH), ("DELETE", BAN_PATH), ("DELETE", BAN_PATH)]
    (ban,) = _requests(httpserver, "PUT")
    assert ban.args.to_dict() == {"delete_message_seconds": "3600"}
    assert ban.headers["X-Audit-Log-Reason"] == "drainer link"


def test_missing_permissions_are_permanent(httpserver: HTTPServer, client: PlatformModeration) -> None:
    httpserver.expect_oneshot_request(BAN_PATH, method="PUT").respond_with_response(
        _json({"message": "Missing Permissions", "code": 50013}, status=403)
    )

    with pytest.raises(PermanentError, match="Missing Permissions") as refused:
        client.ban(space=GUILD, user_id=MAYA)
    assert not isinstance(refused.value, NotInCommunity)


def test_a_long_rate_limit_and_an_outage_come_back_as_retryable(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_oneshot_request(BAN_PATH, method="PUT").respond_with_response(
        _json(
            {"message": "You are being rate limited.", "retry_after": 120.0, "global": False},
            status=429,
            headers={"Via": "1.1 google", "Retry-After": "120"},
        )
    )
    httpserver.expect_oneshot_request(BAN_PATH, method="PUT").respond_with_response(
        _json({"message": "Service Unavailable", "code": 0}, status=503)
    )

    with pytest.raises(RateLimited) as limited:
        client.ban(space=GUILD, user_id=MAYA)
    assert limited.value.retry_after == 120.0
    with pytest.raises(TransientError):
        client.ban(space=GUILD, user_id=MAYA)


def test_a_direct_message_opens_the_dm_channel_and_sends_with_a_nonce(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_oneshot_request(f"{API}/users/@me/channels", method="POST").respond_with_response(
        _json({"id": DM_CHANNEL, "type": 1, "recipients": [_member()["user"]]})
    )
    httpserver.expect_oneshot_request(
        f"{API}/channels/{DM_CHANNEL}/messages", method="POST"
    ).respond_with_response(
        _json(
            {
                "id": "1322222222222222222",
                "channel_id": DM_CHANNEL,
                "content": "Your message was removed.",
                "author": BOT,
                "timestamp": "2026-12-04T20:00:00+00:00",
                "attachments": [],
                "embeds": [],
                "mentions": [],
                "mention_roles": [],
                "pinned": False,
                "mention_everyone": False,
                "tts": False,
                "type": 0,
            }
        )
    )

    message_id = client.send_dm(user_id=MAYA, text="Your message was removed.", idempotency_key="notice-1")

    assert message_id == "1322222222222222222"
    opened, sent = _requests(httpserver, "POST")
    assert opened.get_json() == {"recipient_id": int(MAYA)}
    assert sent.get_json() == {
        "content": "Your message was removed.",
        "nonce": nonce_for("notice-1"),
        "enforce_nonce": True,
        "allowed_mentions": {"parse": []},
        "tts": False,
    }


def test_someone_who_closed_their_dms_cannot_be_written_to(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_oneshot_request(f"{API}/users/@me/channels", method="POST").respond_with_response(
        _json({"id": DM_CHANNEL, "type": 1, "recipients": [_member()["user"]]})
    )
    httpserver.expect_oneshot_request(
        f"{API}/channels/{DM_CHANNEL}/messages", method="POST"
    ).respond_with_response(
        _json({"message": "Cannot send messages to this user", "code": 50007}, status=403)
    )

    with pytest.raises(PermanentError, match="Cannot send messages"):
        client.send_dm(user_id=MAYA, text="hello", idempotency_key="notice-1")


def test_the_twin_records_every_call_and_sends_its_messages_to_the_outbox() -> None:
    twin = TwinModeration("discord")

    twin.delete_message(chat_id=CHANNEL, message_id=MESSAGE, reason="scam")
    twin.mute(space=GUILD, user_id=MAYA, until=UNTIL)
    twin.ban(space=GUILD, user_id=MAYA)
    twin.send_dm(user_id=MAYA, text="You were banned.", idempotency_key="notice-2")

    assert list(
        ModerationCall.objects.order_by("pk").values_list(
            "operation", "space", "user_external_id", "message_id"
        )
    ) == [
        ("delete_message", CHANNEL, "", MESSAGE),
        ("mute", GUILD, MAYA, ""),
        ("ban", GUILD, MAYA, ""),
    ]
    assert list(OutboxMessage.objects.values_list("platform", "kind", "channel")) == [
        ("discord", OutboxMessage.Kind.DM, f"dm:{MAYA}")
    ]


def test_without_a_server_id_nothing_is_sent(httpserver: HTTPServer, client: PlatformModeration) -> None:
    with pytest.raises(PermanentError, match="DISCORD_GUILD_ID"):
        client.ban(space="", user_id=MAYA)

    assert _calls(httpserver) == []
