"""Carrying the ledger to Discord and Telegram: the real discord.py and python-telegram-bot clients against fakes
on loopback, driven by the ledger's own services and the ``billing.sync_entitlement`` task (run eagerly, with its
retry policy)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import discord.http
import pytest
from django.core.cache import cache
from django.utils import timezone
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer
from werkzeug import Response

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import EntitlementFactory, PlanFactory, SubscriptionFactory
from apps.billing.models import Entitlement, EntitlementSource, Subscription, SubscriptionStatus, SyncStatus
from apps.billing.services.access_sync import (
    WAITING_FOR_LINK,
    WAITING_FOR_SERVER,
    entitlement_sync_to_platform,
    telegram_invites_for_user,
)
from apps.billing.services.entitlements import (
    entitlement_grant_complimentary,
    entitlement_revoke,
    entitlements_sync_for_subscription,
)
from apps.billing.tasks import sync_entitlement
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.community.services.linking import telegram_link_code_create, telegram_link_code_redeem
from apps.core.models import Platform
from apps.core.resilience import TransientError
from apps.integrations.access.twin import TwinDiscordAccess, TwinTelegramAccess
from apps.integrations.models import AccessGrant, OutboxMessage
from coinlink.celery import app as celery_app

pytestmark = pytest.mark.django_db

API = "/api/v10"
GUILD = "555555555555555555"
ROLE = "777777777777777777"
DISCORD_KEY = f"discord.role:{ROLE}"
MAYA_DISCORD = "4242424242424242"
TOKEN = "123456:TEST-token"
CHAT = "-1001234567890"
TELEGRAM_KEY = f"telegram.channel:{CHAT}"
MAYA_TELEGRAM = "4242"
BOT_USER = {"id": "999999999999999999", "username": "coinlink", "discriminator": "0", "bot": True}
ROLE_PATH = f"{API}/guilds/{GUILD}/members/{MAYA_DISCORD}/roles/{ROLE}"

RunCommitted = Callable[..., Any]


@pytest.fixture(autouse=True)
def _eager(monkeypatch: pytest.MonkeyPatch) -> None:
    # The task runs in-process (as in the embedded setup) whatever broker the environment names.
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)


@pytest.fixture
def discord_api(httpserver: HTTPServer, settings: Settings) -> HTTPServer:
    settings.DISCORD_BACKEND = "api"
    settings.DISCORD_BOT_TOKEN = "bot-token"
    settings.DISCORD_GUILD_ID = GUILD
    settings.DISCORD_API_BASE_URL = httpserver.url_for(API)
    httpserver.expect_request(f"{API}/users/@me", method="GET").respond_with_json(BOT_USER)
    return httpserver


@pytest.fixture
def telegram_api(httpserver: HTTPServer, settings: Settings) -> HTTPServer:
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    return httpserver


def _member(*, discord: str = "", telegram: str = "") -> User:
    user = UserFactory.create()
    community = CommunityUserFactory.create(portal_user=user)
    for platform, account in ((Platform.DISCORD, discord), (Platform.TELEGRAM, telegram)):
        if account:
            PlatformIdentityFactory.create(
                community_user=community, platform=platform, external_id=account, linked_at=timezone.now()
            )
    return user


def _pending(user: User, key: str, **fields: Any) -> Entitlement:
    return EntitlementFactory.create(user=user, key=key, sync_status=SyncStatus.PENDING, **fields)


def _ended(user: User, key: str) -> Entitlement:
    now = timezone.now()
    return _pending(user, key, starts_at=now - dt.timedelta(days=30), ends_at=now - dt.timedelta(minutes=1))


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _no_content() -> Response:
    return Response(status=204)


def _calls(server: HTTPServer) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r, _ in server.log if not r.path.endswith("/users/@me")]


def _tg(name: str) -> str:
    return f"/bot{TOKEN}/{name}"


def _tg_calls(server: HTTPServer) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r, _ in server.log]


def _tg_form(server: HTTPServer, method: str) -> list[dict[str, str]]:
    return [r.form.to_dict() for r, _ in server.log if r.path.endswith(f"/{method}")]


def _ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def _chat_member(status: str) -> dict[str, Any]:
    return _ok({"status": status, "user": {"id": int(MAYA_TELEGRAM), "is_bot": False, "first_name": "Maya"}})


def _invite_created(link: str) -> dict[str, Any]:
    return _ok(
        {
            "invite_link": link,
            "creator": {"id": 123456, "is_bot": True, "first_name": "CoinLink"},
            "creates_join_request": False,
            "is_primary": False,
            "is_revoked": False,
            "member_limit": 1,
        }
    )


def _dm_sent(message_id: int = 1) -> dict[str, Any]:
    chat = {"id": int(MAYA_TELEGRAM), "type": "private", "first_name": "Maya"}
    return _ok({"message_id": message_id, "date": int(timezone.now().timestamp()), "chat": chat, "text": "x"})


def _plan_subscription(user: User, keys: list[str]) -> Subscription:
    plan = PlanFactory.create(entitlement_keys=keys)
    return SubscriptionFactory.create(user=user, plan=plan, status=SubscriptionStatus.ACTIVE)


def _end(subscription: Subscription) -> None:
    subscription.status = SubscriptionStatus.CANCELED
    subscription.ended_at = timezone.now() - dt.timedelta(seconds=1)
    subscription.save()
    entitlements_sync_for_subscription(subscription=subscription)


# --- Discord ------------------------------------------------------------------------------------------------


def test_a_paid_discord_role_is_given_then_taken_away_when_the_subscription_ends(
    discord_api: HTTPServer, django_capture_on_commit_callbacks: RunCommitted
) -> None:
    user = _member(discord=MAYA_DISCORD)
    discord_api.expect_oneshot_request(ROLE_PATH, method="PUT").respond_with_response(_no_content())
    discord_api.expect_oneshot_request(ROLE_PATH, method="DELETE").respond_with_response(_no_content())
    subscription = _plan_subscription(user, [DISCORD_KEY, "portal.premium"])

    with django_capture_on_commit_callbacks(execute=True):
        entitlements_sync_for_subscription(subscription=subscription)
    assert _calls(discord_api) == [("PUT", ROLE_PATH)]
    granted = Entitlement.objects.get(user=user, key=DISCORD_KEY)
    assert (granted.sync_status, granted.sync_attempts, granted.sync_error) == (SyncStatus.SYNCED, 1, "")
    assert granted.synced_at is not None

    with django_capture_on_commit_callbacks(execute=True):
        _end(subscription)

    assert _calls(discord_api) == [("PUT", ROLE_PATH), ("DELETE", ROLE_PATH)]
    ended = Entitlement.objects.get(pk=granted.pk)
    assert (ended.sync_status, ended.sync_attempts) == (SyncStatus.SYNCED, 2)
    assert ended.synced_at is not None
    assert ended.ends_at is not None
    assert ended.synced_at >= ended.ends_at


def test_a_complimentary_grant_keeps_the_role_when_the_subscription_ends(
    discord_api: HTTPServer, django_capture_on_commit_callbacks: RunCommitted
) -> None:
    user = _member(discord=MAYA_DISCORD)
    discord_api.expect_request(ROLE_PATH, method="PUT").respond_with_response(_no_content())
    subscription = _plan_subscription(user, [DISCORD_KEY])
    with django_capture_on_commit_callbacks(execute=True):
        entitlements_sync_for_subscription(subscription=subscription)
        entitlement_grant_complimentary(
            user=user,
            keys=[DISCORD_KEY],
            ends_at=timezone.now() + dt.timedelta(days=90),
            granted_by=None,
            reason="Speaker at the meetup",
        )

    with django_capture_on_commit_callbacks(execute=True):
        _end(subscription)

    assert ("DELETE", ROLE_PATH) not in _calls(discord_api)
    rows = Entitlement.objects.filter(user=user, key=DISCORD_KEY)
    assert {(r.source, r.sync_status) for r in rows} == {
        (EntitlementSource.SUBSCRIPTION, SyncStatus.SYNCED),
        (EntitlementSource.COMPLIMENTARY, SyncStatus.SYNCED),
    }
    ended = rows.get(source=EntitlementSource.SUBSCRIPTION).ends_at
    assert ended is not None
    assert ended <= timezone.now()


def test_a_platform_outage_is_retried_until_discord_agrees(discord_api: HTTPServer) -> None:
    user = _member(discord=MAYA_DISCORD)
    row = _pending(user, DISCORD_KEY)
    for response in (
        _json({"message": "Service Unavailable", "code": 0}, status=503),
        _json({"message": "Service Unavailable", "code": 0}, status=503),
        _no_content(),
    ):
        discord_api.expect_oneshot_request(ROLE_PATH, method="PUT").respond_with_response(response)

    sync_entitlement.apply(args=[row.pk])

    assert _calls(discord_api) == [("PUT", ROLE_PATH)] * 3
    row.refresh_from_db()
    assert (row.sync_status, row.sync_attempts, row.sync_error) == (SyncStatus.SYNCED, 3, "")


def test_a_refusal_marks_the_row_failed_and_is_not_retried(discord_api: HTTPServer) -> None:
    row = _pending(_member(discord=MAYA_DISCORD), DISCORD_KEY)
    discord_api.expect_request(ROLE_PATH, method="PUT").respond_with_response(
        _json({"message": "Missing Permissions", "code": 50013}, status=403)
    )

    sync_entitlement.apply(args=[row.pk])

    assert _calls(discord_api) == [("PUT", ROLE_PATH)]
    row.refresh_from_db()
    assert row.sync_status == SyncStatus.FAILED
    assert "Missing Permissions" in row.sync_error
    assert row.synced_at is None


def test_someone_not_in_the_server_waits_for_them_to_join(discord_api: HTTPServer) -> None:
    row = _pending(_member(discord=MAYA_DISCORD), DISCORD_KEY)
    discord_api.expect_request(ROLE_PATH, method="PUT").respond_with_response(
        _json({"message": "Unknown Member", "code": 10007}, status=404)
    )

    sync_entitlement.apply(args=[row.pk])

    row.refresh_from_db()
    assert (row.sync_status, row.sync_error, row.synced_at) == (SyncStatus.PENDING, WAITING_FOR_SERVER, None)


def test_a_row_already_synced_is_left_alone(discord_api: HTTPServer) -> None:
    row = _pending(_member(discord=MAYA_DISCORD), DISCORD_KEY)
    Entitlement.objects.filter(pk=row.pk).update(sync_status=SyncStatus.SYNCED, synced_at=timezone.now())

    entitlement_sync_to_platform(entitlement_id=row.pk)

    assert _calls(discord_api) == []
    assert Entitlement.objects.get(pk=row.pk).sync_attempts == 0


# --- Telegram -----------------------------------------------------------------------------------------------


def test_a_new_member_gets_a_single_use_invite_by_direct_message(telegram_api: HTTPServer) -> None:
    user = _member(telegram=MAYA_TELEGRAM)
    first, second = _pending(user, TELEGRAM_KEY), _pending(user, TELEGRAM_KEY)
    link = "https://t.me/+AbCdEf123"
    telegram_api.expect_request(_tg("getChatMember")).respond_with_json(_chat_member("left"))
    telegram_api.expect_oneshot_request(_tg("createChatInviteLink")).respond_with_json(_invite_created(link))
    telegram_api.expect_oneshot_request(_tg("sendMessage")).respond_with_json(_dm_sent())

    before = timezone.now()
    entitlement_sync_to_platform(entitlement_id=first.pk)

    assert _tg_calls(telegram_api) == ["getChatMember", "createChatInviteLink", "sendMessage"]
    (created,) = _tg_form(telegram_api, "createChatInviteLink")
    assert created["chat_id"] == CHAT
    assert created["member_limit"] == "1"
    assert created["name"] == f"CoinLink member {MAYA_TELEGRAM}"
    expires = dt.datetime.fromtimestamp(int(created["expire_date"]), tz=dt.UTC)
    assert (
        before + dt.timedelta(hours=24) - dt.timedelta(seconds=1)
        <= expires
        <= timezone.now() + dt.timedelta(hours=24)
    )
    (dm,) = _tg_form(telegram_api, "sendMessage")
    assert dm["chat_id"] == MAYA_TELEGRAM
    assert link in dm["text"]
    first.refresh_from_db()
    assert first.sync_status == SyncStatus.SYNCED
    (invite,) = telegram_invites_for_user(user=user)
    assert (invite.chat_id, invite.url, invite.delivered) == (CHAT, link, True)
    assert int(invite.expires_at.timestamp()) == int(created["expire_date"])

    # Another change before they have joined: the same link stands, and is not sent again.
    entitlement_sync_to_platform(entitlement_id=second.pk)

    assert _tg_calls(telegram_api)[3:] == ["getChatMember"]
    assert Entitlement.objects.get(pk=second.pk).sync_status == SyncStatus.SYNCED


def test_a_member_already_in_the_channel_gets_no_invite(telegram_api: HTTPServer) -> None:
    user = _member(telegram=MAYA_TELEGRAM)
    row = _pending(user, TELEGRAM_KEY)
    telegram_api.expect_request(_tg("getChatMember")).respond_with_json(_chat_member("member"))

    entitlement_sync_to_platform(entitlement_id=row.pk)

    assert _tg_calls(telegram_api) == ["getChatMember"]
    assert Entitlement.objects.get(pk=row.pk).sync_status == SyncStatus.SYNCED
    assert telegram_invites_for_user(user=user) == []


def test_an_ended_membership_is_a_ban_lifted_at_once(telegram_api: HTTPServer) -> None:
    row = _ended(_member(telegram=MAYA_TELEGRAM), TELEGRAM_KEY)
    telegram_api.expect_oneshot_request(_tg("banChatMember")).respond_with_json(_ok(True))
    telegram_api.expect_oneshot_request(_tg("unbanChatMember")).respond_with_json(_ok(True))

    entitlement_sync_to_platform(entitlement_id=row.pk)

    assert _tg_calls(telegram_api) == ["banChatMember", "unbanChatMember"]
    assert _tg_form(telegram_api, "unbanChatMember") == [
        {"chat_id": CHAT, "user_id": MAYA_TELEGRAM, "only_if_banned": "true"}
    ]
    assert Entitlement.objects.get(pk=row.pk).sync_status == SyncStatus.SYNCED


def test_a_telegram_outage_is_retried_until_it_answers(telegram_api: HTTPServer) -> None:
    row = _pending(_member(telegram=MAYA_TELEGRAM), TELEGRAM_KEY)
    bad_gateway = {"ok": False, "error_code": 502, "description": "Bad Gateway"}
    telegram_api.expect_oneshot_request(_tg("getChatMember")).respond_with_json(bad_gateway, status=502)
    telegram_api.expect_oneshot_request(_tg("getChatMember")).respond_with_json(bad_gateway, status=502)
    telegram_api.expect_oneshot_request(_tg("getChatMember")).respond_with_json(_chat_member("member"))

    sync_entitlement.apply(args=[row.pk])

    assert _tg_calls(telegram_api) == ["getChatMember"] * 3
    row.refresh_from_db()
    assert (row.sync_status, row.sync_attempts, row.sync_error) == (SyncStatus.SYNCED, 3, "")


def test_an_unlinked_member_waits_then_is_let_in_once_they_link(
    telegram_api: HTTPServer, django_capture_on_commit_callbacks: RunCommitted
) -> None:
    user = _member()
    row = _pending(user, TELEGRAM_KEY)

    sync_entitlement.apply(args=[row.pk])

    row.refresh_from_db()
    assert (row.sync_status, row.sync_error) == (SyncStatus.PENDING, WAITING_FOR_LINK)
    assert telegram_api.log == []

    telegram_api.expect_request(_tg("getChatMember")).respond_with_json(_chat_member("left"))
    telegram_api.expect_oneshot_request(_tg("createChatInviteLink")).respond_with_json(
        _invite_created("https://t.me/+Linked1")
    )
    telegram_api.expect_oneshot_request(_tg("sendMessage")).respond_with_json(_dm_sent())
    code = telegram_link_code_create(user=user)
    with django_capture_on_commit_callbacks(execute=True):
        result = telegram_link_code_redeem(code=code, telegram_user_id=MAYA_TELEGRAM, username="maya")

    assert result.linked
    assert _tg_calls(telegram_api) == ["getChatMember", "createChatInviteLink", "sendMessage"]
    row.refresh_from_db()
    assert (row.sync_status, row.sync_error) == (SyncStatus.SYNCED, "")


def test_an_unlinked_member_whose_access_ended_has_nothing_to_take_away(telegram_api: HTTPServer) -> None:
    row = _ended(_member(), TELEGRAM_KEY)

    entitlement_sync_to_platform(entitlement_id=row.pk)

    assert telegram_api.log == []
    assert Entitlement.objects.get(pk=row.pk).sync_status == SyncStatus.SYNCED


# --- concurrency and the offline twin -----------------------------------------------------------------------


def test_a_ledger_change_during_the_sync_leaves_the_decision_to_the_newer_sync(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: RunCommitted
) -> None:
    user = _member(discord=MAYA_DISCORD)
    row = _pending(user, DISCORD_KEY)
    grant = TwinDiscordAccess.grant_role

    def grant_while_an_operator_revokes(self: TwinDiscordAccess, user_id: str, role_id: str) -> None:
        grant(self, user_id, role_id)
        entitlement_revoke(entitlement_ids=[row.pk], reason="chargeback")

    monkeypatch.setattr(TwinDiscordAccess, "grant_role", grant_while_an_operator_revokes)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        entitlement_sync_to_platform(entitlement_id=row.pk)

    row.refresh_from_db()
    assert row.sync_status == SyncStatus.PENDING  # not "synced": the grant it made is out of date
    assert TwinDiscordAccess().role_holders(ROLE) == {MAYA_DISCORD}

    for callback in enqueued:
        callback()  # the revocation's own sync

    row.refresh_from_db()
    assert row.sync_status == SyncStatus.SYNCED
    assert TwinDiscordAccess().role_holders(ROLE) == set()


def test_a_sync_of_the_same_member_and_key_already_running_makes_this_one_wait() -> None:
    user = _member(discord=MAYA_DISCORD)
    row = _pending(user, DISCORD_KEY)
    cache.add(f"access:sync-lock:{user.pk}:{DISCORD_KEY}", 1, timeout=60)

    with pytest.raises(TransientError, match="another sync"):
        entitlement_sync_to_platform(entitlement_id=row.pk)

    row.refresh_from_db()
    assert row.sync_status == SyncStatus.PENDING
    assert row.sync_error.startswith("retrying: another sync")
    assert not AccessGrant.objects.exists()


@pytest.fixture
def offline(settings: Settings) -> None:
    settings.DISCORD_BACKEND = "outbox"
    settings.TELEGRAM_BACKEND = "outbox"
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"


@pytest.mark.usefixtures("offline")
def test_offline_the_twin_records_the_role_and_the_invite_and_the_outbox_the_message() -> None:
    user = _member(discord=MAYA_DISCORD, telegram=MAYA_TELEGRAM)
    role, channel = _pending(user, DISCORD_KEY), _pending(user, TELEGRAM_KEY)

    entitlement_sync_to_platform(entitlement_id=role.pk)
    entitlement_sync_to_platform(entitlement_id=channel.pk)

    assert TwinDiscordAccess().role_holders(ROLE) == {MAYA_DISCORD}
    assert TwinTelegramAccess().is_member(CHAT, MAYA_TELEGRAM)
    (invite,) = telegram_invites_for_user(user=user)
    dm = OutboxMessage.objects.get(platform=Platform.TELEGRAM, kind=OutboxMessage.Kind.DM)
    assert dm.channel == f"dm:{MAYA_TELEGRAM}"
    assert invite.url in dm.text
    assert set(Entitlement.objects.values_list("sync_status", flat=True)) == {SyncStatus.SYNCED}


def test_a_malformed_platform_key_fails_without_calling_anyone(discord_api: HTTPServer) -> None:
    row = _pending(_member(discord=MAYA_DISCORD), "discord.role:members")

    entitlement_sync_to_platform(entitlement_id=row.pk)

    row.refresh_from_db()
    assert (row.sync_status, row.sync_error) == (
        SyncStatus.FAILED,
        "discord.role:members is not a valid entitlement key",
    )
    assert _calls(discord_api) == []
