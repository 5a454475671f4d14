"""The whole moderation flow through both bots, for one person linked on Discord and Telegram: each removed
message earns a strike on their one ledger, and the ladder goes warn, then mute, then ban, each sanction carried
out on both platforms; their ``/appeal`` to the Telegram bot reaches the operators' queue, and a granted appeal
lifts the ban everywhere. discord.py and python-telegram-bot run for real against one fake server on loopback
that plays both APIs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import discord.http
import pytest
import telegram
from asgiref.sync import async_to_sync
from django.utils import timezone
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.accounts.factories import UserFactory
from apps.bots.discord import DiscordBotHandler
from apps.bots.telegram import telegram_update_accept
from apps.bots.tests import test_discord_bot as discord_fake
from apps.bots.tests import test_telegram_bot as telegram_fake
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.core.models import Platform
from apps.integrations.discord_gateway import GatewayClient
from apps.integrations.telegram_polling import build_application
from apps.moderation.factories import ModerationRuleFactory
from apps.moderation.models import ActionKind, Appeal, AppealSource, ModerationAction, ModerationRule
from apps.moderation.services.appeals import appeal_decide
from apps.moderation.services.judging import moderation_state_reset
from coinlink.celery import app as celery_app

pytestmark = pytest.mark.django_db

API = discord_fake.API
GUILD = discord_fake.GUILD
GROUP = str(telegram_fake.GROUP["id"])
TOKEN = telegram_fake.TOKEN
MAYA_DISCORD = str(discord_fake.MAYA["id"])
MAYA_TELEGRAM = str(telegram_fake.MAYA["id"])
SPAM = "Join pumpsignals today, 10x guaranteed"


def _both(request: Request) -> Response:
    if request.path.startswith(f"/bot{TOKEN}/"):
        return telegram_fake._bot_api(request)
    return discord_fake._discord_api(request)


@pytest.fixture(autouse=True)
def both_apis(
    httpserver: HTTPServer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HTTPServer]:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    discord_base = httpserver.url_for(API)
    monkeypatch.setattr(discord.http.Route, "BASE", discord_base)
    settings.DISCORD_BACKEND = settings.TELEGRAM_BACKEND = "api"
    settings.DISCORD_BOT_TOKEN = discord_fake.TOKEN
    settings.DISCORD_GUILD_ID = GUILD
    settings.DISCORD_CHANNEL_ID = discord_fake.CHANNEL
    settings.DISCORD_API_BASE_URL = discord_base
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    settings.MODERATION_TELEGRAM_CHATS = [GROUP]
    settings.MODERATION_REFRESH_SECONDS = 0
    settings.SITE_URL = "https://coinlink.example"
    httpserver.expect_request(re.compile(r"^/.*")).respond_with_handler(_both)
    moderation_state_reset()
    yield httpserver
    moderation_state_reset()


def _discord(django_capture_on_commit_callbacks: Any, *events: tuple[str, dict[str, Any]]) -> None:
    client = GatewayClient(handler=DiscordBotHandler(), guild_id=int(GUILD))

    async def main() -> None:
        async with client:
            await client.login(discord_fake.TOKEN)
            client._connection.parsers["GUILD_CREATE"](discord_fake._guild())
            for name, data in events:
                client._connection.parsers[name](data)
                await discord_fake._settle()

    with django_capture_on_commit_callbacks(execute=True):
        async_to_sync(main)()


def _telegram(django_capture_on_commit_callbacks: Any, *payloads: dict[str, Any]) -> None:
    application = build_application(
        token=TOKEN,
        api_base_url=telegram_fake.telegram_settings_url(),
        on_update=lambda data: telegram_update_accept(data=data),
    )

    async def main() -> None:
        await application.initialize()
        try:
            for payload in payloads:
                await application.process_update(telegram.Update.de_json(payload, application.bot))
        finally:
            await application.shutdown()

    with django_capture_on_commit_callbacks(execute=True):
        async_to_sync(main)()


def _requests(httpserver: HTTPServer, method: str, pattern: str) -> list[str]:
    return [r.path for r, _ in httpserver.log if r.method == method and re.fullmatch(pattern, r.path)]


def _telegram_calls(httpserver: HTTPServer, method: str) -> list[dict[str, Any]]:
    return telegram_fake._calls(httpserver, method)


def test_warn_then_mute_then_ban_on_both_platforms_and_a_granted_appeal_reverses_it(
    both_apis: HTTPServer, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    ModerationRuleFactory.create(
        name="No pump groups",
        kind=ModerationRule.Kind.KEYWORD,
        pattern="pumpsignals",
        score=0.95,
        strike_weight=1,
        description="Pump-group recruiting is removed.",
    )
    person = CommunityUserFactory.create(display_name="Maya")
    for platform, external_id in ((Platform.DISCORD, MAYA_DISCORD), (Platform.TELEGRAM, MAYA_TELEGRAM)):
        PlatformIdentityFactory.create(
            community_user=person, platform=platform, external_id=external_id, linked_at=timezone.now()
        )

    first = discord_fake._message_create(SPAM)
    _discord(capture, ("MESSAGE_CREATE", first))
    _telegram(capture, telegram_fake._group_message(31, SPAM, message_id=131))
    third = discord_fake._message_create(SPAM + "!")
    _discord(capture, ("MESSAGE_CREATE", third))

    steps = list(ModerationAction.objects.order_by("pk").values_list("platform", "action", "strikes_after"))
    assert steps == [
        (Platform.DISCORD, ActionKind.WARN, 1),
        (Platform.TELEGRAM, ActionKind.MUTE, 2),
        (Platform.DISCORD, ActionKind.BAN, 3),
    ]
    # Every removed message deleted where it was posted.
    assert _requests(both_apis, "DELETE", rf"{API}/channels/\d+/messages/\d+") == [
        f"{API}/channels/{discord_fake.CHANNEL}/messages/{first['id']}",
        f"{API}/channels/{discord_fake.CHANNEL}/messages/{third['id']}",
    ]
    assert [c["message_id"] for c in _telegram_calls(both_apis, "deleteMessage")] == ["131"]
    # The mute on both platforms: a Discord timeout and a Telegram restriction.
    timeouts = [r for r, _ in both_apis.log if r.method == "PATCH" and MAYA_DISCORD in r.path]
    assert len(timeouts) == 1
    assert timeouts[0].get_json()["communication_disabled_until"]
    assert [c["user_id"] for c in _telegram_calls(both_apis, "restrictChatMember")] == [MAYA_TELEGRAM]
    # The ban on both platforms.
    assert _requests(both_apis, "PUT", rf"{API}/guilds/{GUILD}/bans/\d+") == [
        f"{API}/guilds/{GUILD}/bans/{MAYA_DISCORD}"
    ]
    assert [(c["chat_id"], c["user_id"]) for c in _telegram_calls(both_apis, "banChatMember")] == [
        (GROUP, MAYA_TELEGRAM)
    ]

    _telegram(capture, telegram_fake._private(32, "/appeal I was warning people about that group"))

    appeal = Appeal.objects.get()
    assert (appeal.source, appeal.action.action) == (AppealSource.BOT, ActionKind.BAN)

    operator = UserFactory.create(is_staff=True)
    with capture(execute=True):
        appeal_decide(appeal_id=appeal.pk, granted=True, actor=operator, note="Fair enough")

    assert _requests(both_apis, "DELETE", rf"{API}/guilds/{GUILD}/bans/\d+") == [
        f"{API}/guilds/{GUILD}/bans/{MAYA_DISCORD}"
    ]
    assert [c["user_id"] for c in _telegram_calls(both_apis, "unbanChatMember")] == [MAYA_TELEGRAM]
    ban = ModerationAction.objects.get(action=ActionKind.BAN)
    assert ban.reverted_at is not None
