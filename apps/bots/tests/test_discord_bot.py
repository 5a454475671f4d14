"""The Discord bot driven through discord.py itself: raw gateway events (the JSON Discord sends) go to the
client's own parsers (``ConnectionState.parsers``), which build ``discord.Member``, ``discord.Message`` and
``discord.Interaction`` objects and dispatch them to the ``GatewayClient`` that ``run_discord_bot`` runs. Every
REST call (the bot's login, roles, deletions, bans, direct messages, interaction answers) goes to a fake
Discord API on loopback that answers ``Content-Type: application/json`` exactly."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import discord.http
import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.accounts.factories import UserFactory
from apps.billing.models import Entitlement
from apps.bots.discord import NOT_A_MODERATOR, DiscordBotHandler
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.community.models import UserInteraction
from apps.core.models import Platform
from apps.integrations.discord_gateway import GatewayClient
from apps.moderation.models import ActionKind, Appeal, AppealSource, ModerationAction, ModerationDecision
from coinlink.celery import app as celery_app

pytestmark = pytest.mark.django_db

API = "/api/v10"
TOKEN = "bot-token"
GUILD = "555555555555555555"
CHANNEL = "666666666666666666"
ROLE = "777777777777777777"
MOD_ROLE = "888888888888888888"
APP_ID = "999999999999999999"
OWNER = "111111111111111111"
BOT = {
    "id": APP_ID,
    "username": "coinlink",
    "discriminator": "0",
    "bot": True,
    "avatar": None,
    "global_name": None,
}
MAYA = {
    "id": "4242424242424242",
    "username": "maya",
    "discriminator": "0",
    "avatar": None,
    "global_name": "Maya",
}
SAM = {
    "id": "5151515151515151",
    "username": "sam",
    "discriminator": "0",
    "avatar": None,
    "global_name": "Sam",
}
SCAM = "Hi, I'm from support. DM me your 12-word seed phrase and I'll fix your wallet"
_ids = itertools.count(1_400_000_000_000_000_001)

Scenario = Callable[[GatewayClient], Awaitable[None]]


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _message(
    message_id: str, content: str, *, author: dict[str, Any] = MAYA, channel: str = CHANNEL
) -> dict[str, Any]:
    return {
        "id": message_id,
        "channel_id": channel,
        "author": author,
        "content": content,
        "timestamp": timezone.now().isoformat(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "type": 0,
    }


def _discord_api(request: Request) -> Response:
    path = request.path.removeprefix(API)
    if path == "/users/@me" and request.method == "GET":
        return _json(BOT)
    if path == "/oauth2/applications/@me":
        return _json(
            {
                "id": APP_ID,
                "name": "CoinLink",
                "icon": None,
                "description": "",
                "bot_public": False,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "flags": 0,
                "owner": {**SAM, "id": OWNER},
            }
        )
    if path == "/users/@me/channels":
        return _json({"id": "1200000000000000001", "type": 1, "recipients": [MAYA]})
    if re.fullmatch(r"/channels/\d+/messages", path) and request.method == "POST":
        return _json(_message(str(next(_ids)), "sent", author=BOT))
    if re.fullmatch(r"/channels/\d+/messages/\d+", path) and request.method == "GET":
        return _json(_message(path.rsplit("/", 1)[-1], "Cheap followers, best price, visit my profile"))
    if re.fullmatch(r"/interactions/\d+/[^/]+/callback", path):
        interaction = path.split("/")[2]
        return _json(
            {
                "interaction": {
                    "id": interaction,
                    "type": 2,
                    "response_message_loading": True,
                    "response_message_ephemeral": True,
                },
                "resource": {"type": 5},
            }
        )
    if path.startswith(f"/webhooks/{APP_ID}/"):
        body = request.get_json(silent=True) or {}
        return _json(_message(str(next(_ids)), body.get("content", ""), author=BOT))
    if request.method == "PATCH" and "/members/" in path:
        return _json(
            {
                "user": MAYA,
                "roles": [],
                "joined_at": timezone.now().isoformat(),
                "deaf": False,
                "mute": False,
                "flags": 0,
            }
        )
    return Response(status=204)


@pytest.fixture(autouse=True)
def discord_api(httpserver: HTTPServer, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    base = httpserver.url_for(API)
    monkeypatch.setattr(discord.http.Route, "BASE", base)
    settings.DISCORD_BACKEND = "api"
    settings.DISCORD_BOT_TOKEN = TOKEN
    settings.DISCORD_GUILD_ID = GUILD
    settings.DISCORD_CHANNEL_ID = CHANNEL
    settings.DISCORD_API_BASE_URL = base
    settings.SITE_URL = "https://coinlink.example"
    httpserver.expect_request(re.compile(rf"^{API}/.*")).respond_with_handler(_discord_api)
    return httpserver


def _calls(httpserver: HTTPServer, method: str, pattern: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (r.path.removeprefix(API), r.get_json(silent=True) or {})
        for r, _ in httpserver.log
        if r.method == method and re.fullmatch(pattern, r.path.removeprefix(API))
    ]


def _guild() -> dict[str, Any]:
    role = {"color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0}
    return {
        "id": GUILD,
        "name": "CoinLink",
        "owner_id": OWNER,
        "icon": None,
        "roles": [
            {**role, "id": GUILD, "name": "@everyone", "permissions": "3072", "position": 0},
            # Moderate Members (1 << 40) and Manage Messages (1 << 13).
            {
                **role,
                "id": MOD_ROLE,
                "name": "Mods",
                "permissions": str((1 << 40) | (1 << 13)),
                "position": 1,
            },
        ],
        "channels": [
            {"id": CHANNEL, "type": 0, "name": "general", "position": 0, "permission_overwrites": []}
        ],
        "members": [],
        "member_count": 3,
        "emojis": [],
        "stickers": [],
        "features": [],
        "threads": [],
        "presences": [],
        "voice_states": [],
        "large": False,
    }


def _member(user: dict[str, Any], roles: list[str] | None = None) -> dict[str, Any]:
    return {
        "user": user,
        "roles": roles or [],
        "joined_at": (timezone.now() - dt.timedelta(days=40)).isoformat(),
        "deaf": False,
        "mute": False,
        "flags": 0,
    }


def _message_create(
    content: str, *, author: dict[str, Any] = MAYA, roles: list[str] | None = None
) -> dict[str, Any]:
    member = _member(author, roles)
    member.pop("user")
    return {**_message(str(next(_ids)), content, author=author), "guild_id": GUILD, "member": member}


def _command(
    name: str,
    options: list[dict[str, Any]],
    *,
    user: dict[str, Any] = MAYA,
    resolved: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": str(next(_ids)),
        "application_id": APP_ID,
        "type": 2,
        "token": "interaction-token",
        "version": 1,
        "guild_id": GUILD,
        "channel_id": CHANNEL,
        "channel": {"id": CHANNEL, "type": 0, "guild_id": GUILD, "name": "general", "position": 0},
        "member": {**_member(user), "permissions": "0"},
        "data": {
            "id": str(next(_ids)),
            "name": name,
            "type": 1,
            "guild_id": GUILD,
            "options": options,
            **({"resolved": resolved} if resolved else {}),
        },
        "locale": "en-US",
        "guild_locale": "en-US",
        "app_permissions": "0",
        "entitlements": [],
        "authorizing_integration_owners": {},
        "context": 0,
        "attachment_size_limit": 8388608,
    }


async def _settle() -> None:
    """Wait until every event handler discord.py dispatched has finished."""
    for _ in range(200):
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
        # discord.py names its event tasks "discord.py: on_...", the command tree its own "CommandTree-invoker".
        handlers = [t for t in pending if t.get_name().startswith(("discord.py", "CommandTree"))]
        if not handlers:
            return
        await asyncio.sleep(0.02)


@pytest.fixture
def gateway(django_capture_on_commit_callbacks: Any) -> Callable[[Scenario], GatewayClient]:
    def drive(scenario: Scenario) -> GatewayClient:
        client = GatewayClient(handler=DiscordBotHandler(), guild_id=int(GUILD))

        async def main() -> None:
            async with client:
                await client.login(TOKEN)
                client._connection.parsers["GUILD_CREATE"](_guild())
                await scenario(client)
                await _settle()

        with django_capture_on_commit_callbacks(execute=True):
            async_to_sync(main)()
        return client

    return drive


def _dispatch(client: GatewayClient, event: str, data: dict[str, Any]) -> None:
    client._connection.parsers[event](data)


def _staff_on_discord(user: dict[str, Any] = SAM) -> Any:
    staff = UserFactory.create(is_staff=True)
    person = CommunityUserFactory.create(portal_user=staff, display_name=user["global_name"])
    PlatformIdentityFactory.create(
        community_user=person, platform=Platform.DISCORD, external_id=user["id"], linked_at=timezone.now()
    )
    return staff


def test_a_paying_member_who_joins_gets_the_role_at_once(gateway: Any, discord_api: HTTPServer) -> None:
    member = UserFactory.create()
    person = CommunityUserFactory.create(portal_user=member)
    PlatformIdentityFactory.create(
        community_user=person, platform=Platform.DISCORD, external_id=MAYA["id"], linked_at=timezone.now()
    )
    Entitlement.objects.create(
        user=member, key=f"discord.role:{ROLE}", source="complimentary", starts_at=timezone.now()
    )

    async def join(client: GatewayClient) -> None:
        _dispatch(client, "GUILD_MEMBER_ADD", {**_member(MAYA), "guild_id": GUILD})

    gateway(join)

    puts = _calls(discord_api, "PUT", rf"/guilds/{GUILD}/members/\d+/roles/\d+")
    assert {path for path, _ in puts} == {f"/guilds/{GUILD}/members/{MAYA['id']}/roles/{ROLE}"}
    assert list(UserInteraction.objects.values_list("kind", flat=True)) == ["join"]


def test_someone_without_membership_joins_and_gets_no_role(gateway: Any, discord_api: HTTPServer) -> None:
    async def join(client: GatewayClient) -> None:
        _dispatch(client, "GUILD_MEMBER_ADD", {**_member(MAYA), "guild_id": GUILD})
        _dispatch(client, "GUILD_MEMBER_REMOVE", {"guild_id": GUILD, "user": MAYA})

    gateway(join)

    assert _calls(discord_api, "PUT", r".*/roles/.*") == []
    assert sorted(UserInteraction.objects.values_list("kind", flat=True)) == ["join", "leave"]


def test_a_scam_message_is_deleted_and_its_sender_acted_on_and_told(
    gateway: Any, discord_api: HTTPServer
) -> None:
    scam = _message_create(SCAM)

    async def post(client: GatewayClient) -> None:
        _dispatch(client, "MESSAGE_CREATE", scam)
        await _settle()
        _dispatch(client, "MESSAGE_CREATE", scam)  # a redelivery

    gateway(post)

    (action,) = ModerationAction.objects.all()
    assert (action.platform, action.chat_id, action.message_id) == (Platform.DISCORD, CHANNEL, scam["id"])
    assert _calls(discord_api, "DELETE", rf"/channels/{CHANNEL}/messages/\d+") == [
        (f"/channels/{CHANNEL}/messages/{scam['id']}", {})
    ]
    if action.action == ActionKind.BAN:
        assert [p for p, _ in _calls(discord_api, "PUT", rf"/guilds/{GUILD}/bans/\d+")] == [
            f"/guilds/{GUILD}/bans/{MAYA['id']}"
        ]
    dms = _calls(discord_api, "POST", r"/channels/1200000000000000001/messages")
    assert len(dms) == 1
    assert "appeal" in dms[0][1]["content"].lower()
    assert UserInteraction.objects.get().external_id == scam["id"]


def test_own_and_moderators_messages_are_never_moderated(gateway: Any, discord_api: HTTPServer) -> None:
    async def post(client: GatewayClient) -> None:
        _dispatch(client, "MESSAGE_CREATE", _message_create(SCAM, author=BOT))
        _dispatch(client, "MESSAGE_CREATE", _message_create(SCAM, author=SAM, roles=[MOD_ROLE]))
        _dispatch(client, "MESSAGE_CREATE", _message_create(SCAM, author={**MAYA, "id": OWNER}))

    gateway(post)

    assert not ModerationAction.objects.exists()
    assert _calls(discord_api, "DELETE", r".*") == []
    # Our own message is not even recorded; the moderator's and the owner's are, judged as staff.
    assert UserInteraction.objects.count() == 2
    assert set(ModerationDecision.objects.values_list("verdict", flat=True)) == {"allow"}


def test_appeal_command_reaches_the_admin_queue(gateway: Any, discord_api: HTTPServer) -> None:
    async def scam_then_appeal(client: GatewayClient) -> None:
        _dispatch(client, "MESSAGE_CREATE", _message_create(SCAM))
        await _settle()
        reason = {"name": "reason", "type": 3, "value": "I was warning people about this scam"}
        _dispatch(client, "INTERACTION_CREATE", _command("appeal", [reason]))

    gateway(scam_then_appeal)

    appeal = Appeal.objects.get()
    assert (appeal.source, appeal.message) == (AppealSource.BOT, "I was warning people about this scam")
    assert appeal.action == ModerationAction.objects.get()
    (callback,) = _calls(discord_api, "POST", r"/interactions/\d+/interaction-token/callback")
    assert callback[1]["type"] == 5  # "thinking", ephemeral
    followups = [body for _, body in _calls(discord_api, "POST", rf"/webhooks/{APP_ID}/interaction-token")]
    assert [f["content"] for f in followups] == [
        f"Thanks: your appeal (#{appeal.pk}) is with the moderators. You will hear back here once they have decided."
    ]
    assert followups[0]["flags"] & 64  # ephemeral


def test_moderator_commands_need_a_linked_staff_account(gateway: Any, discord_api: HTTPServer) -> None:
    resolved = {
        "users": {MAYA["id"]: MAYA},
        "members": {MAYA["id"]: {k: v for k, v in _member(MAYA).items() if k != "user"}},
    }

    async def warn(client: GatewayClient) -> None:
        option = {"name": "member", "type": 6, "value": MAYA["id"]}
        _dispatch(client, "INTERACTION_CREATE", _command("warn", [option], user=SAM, resolved=resolved))

    gateway(warn)
    assert not ModerationAction.objects.exists()
    followups = [body["content"] for _, body in _calls(discord_api, "POST", rf"/webhooks/{APP_ID}/.*")]
    assert followups == [NOT_A_MODERATOR]

    _staff_on_discord()
    gateway(warn)
    (action,) = ModerationAction.objects.all()
    assert (action.action, action.actor, action.community_user.identities.get().external_id) == (
        ActionKind.WARN,
        "operator",
        MAYA["id"],
    )


def test_spam_command_deletes_acts_and_teaches(gateway: Any, discord_api: HTTPServer) -> None:
    _staff_on_discord()
    message_id = str(next(_ids))

    async def spam(client: GatewayClient) -> None:
        link = f"https://discord.com/channels/{GUILD}/{CHANNEL}/{message_id}"
        _dispatch(
            client,
            "INTERACTION_CREATE",
            _command("spam", [{"name": "message", "type": 3, "value": link}], user=SAM),
        )

    gateway(spam)

    (action,) = ModerationAction.objects.all()
    assert (action.message_id, action.actor) == (message_id, "operator")
    assert _calls(discord_api, "DELETE", rf"/channels/{CHANNEL}/messages/\d+") == [
        (f"/channels/{CHANNEL}/messages/{message_id}", {})
    ]
    from apps.moderation.models import TrainingLabel

    assert list(TrainingLabel.objects.values_list("text", "label")) == [
        ("Cheap followers, best price, visit my profile", "spam")
    ]


def test_a_reaction_is_recorded_once(gateway: Any) -> None:
    reaction = {
        "user_id": MAYA["id"],
        "channel_id": CHANNEL,
        "message_id": "1300000000000000001",
        "guild_id": GUILD,
        "emoji": {"id": None, "name": "🔥"},
        "type": 0,
        "burst": False,
    }

    async def react(client: GatewayClient) -> None:
        _dispatch(client, "MESSAGE_REACTION_ADD", reaction)
        _dispatch(client, "MESSAGE_REACTION_ADD", reaction)

    gateway(react)

    (interaction,) = UserInteraction.objects.all()
    assert (interaction.kind, interaction.text) == ("reaction", "🔥")


def test_events_from_other_servers_are_ignored(gateway: Any) -> None:
    async def elsewhere(client: GatewayClient) -> None:
        _dispatch(client, "GUILD_CREATE", {**_guild(), "id": "123123123123123123"})
        message = _message_create(SCAM)
        _dispatch(client, "MESSAGE_CREATE", {**message, "guild_id": "123123123123123123"})

    gateway(elsewhere)

    assert not UserInteraction.objects.exists()
    assert not ModerationDecision.objects.exists()


def test_a_handler_that_fails_is_logged_and_the_next_event_handled(
    gateway: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from apps.bots import services

    real = services.inbound_message_handle
    calls: list[str] = []

    def flaky(**kwargs: Any) -> Any:
        calls.append(kwargs["message_id"])
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real(**kwargs)

    monkeypatch.setattr(services, "inbound_message_handle", flaky)

    async def post(client: GatewayClient) -> None:
        _dispatch(client, "MESSAGE_CREATE", _message_create("first"))
        await _settle()
        _dispatch(client, "MESSAGE_CREATE", _message_create("second"))

    client = gateway(post)

    assert len(calls) == 2
    assert list(UserInteraction.objects.values_list("text", flat=True)) == ["second"]
    assert client.events_handled == 1  # the failed one is not counted
    assert any("discord: handling message failed" in r.getMessage() for r in caplog.records)


def test_status_and_plans_commands_answer_privately(gateway: Any, discord_api: HTTPServer) -> None:
    async def ask(client: GatewayClient) -> None:
        _dispatch(client, "INTERACTION_CREATE", _command("status", []))
        await _settle()
        _dispatch(client, "INTERACTION_CREATE", _command("plans", []))

    gateway(ask)

    status, plans = (body["content"] for _, body in _calls(discord_api, "POST", rf"/webhooks/{APP_ID}/.*"))
    assert status.startswith("This Discord account is not linked to a CoinLink membership yet.")
    assert plans.startswith("CoinLink membership plans:")
