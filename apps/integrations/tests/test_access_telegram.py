"""The Telegram access gateway: python-telegram-bot's real ``Bot`` against a fake Bot API on loopback, and the
offline twin."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer

from apps.core.resilience import PermanentError, RateLimited, TransientError
from apps.integrations.access import TelegramAccess, get_access_gateway, invite_name
from apps.integrations.access.telegram import TelegramAccessGateway
from apps.integrations.access.twin import TwinTelegramAccess
from apps.integrations.models import AccessGrant
from apps.integrations.tests.telegram_api import TOKEN, calls, error, method, ok

pytestmark = pytest.mark.django_db

CHAT = "-1001234567890"
MAYA = {"id": 4242, "is_bot": False, "first_name": "Maya"}
BOT = {"id": 123456, "is_bot": True, "first_name": "CoinLink", "username": "CoinLinkBot"}
RESTRICTIONS = {
    "can_change_info": False,
    "can_invite_users": False,
    "can_pin_messages": False,
    "can_send_messages": False,
    "can_send_polls": False,
    "can_send_other_messages": False,
    "can_add_web_page_previews": False,
    "can_manage_topics": False,
    "can_send_audios": False,
    "can_send_documents": False,
    "can_send_photos": False,
    "can_send_videos": False,
    "can_send_video_notes": False,
    "can_send_voice_notes": False,
    "can_edit_tag": False,
    "can_react_to_messages": False,
    "until_date": 0,
}


@pytest.fixture
def gateway(httpserver: HTTPServer, settings: Settings) -> TelegramAccess:
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    return get_access_gateway("telegram")


def test_the_settings_choose_the_real_gateway_or_the_twin(settings: Settings) -> None:
    settings.TELEGRAM_BACKEND = "outbox"
    assert isinstance(get_access_gateway("telegram"), TwinTelegramAccess)

    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = ""
    with pytest.raises(ImproperlyConfigured, match="TELEGRAM_BOT_TOKEN"):
        get_access_gateway("telegram")
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    assert isinstance(get_access_gateway("telegram"), TelegramAccessGateway)


def test_an_invite_link_lets_one_person_in_until_it_expires(
    httpserver: HTTPServer, gateway: TelegramAccess
) -> None:
    expire_at = dt.datetime(2025, 3, 4, 9, 0, tzinfo=dt.UTC)
    httpserver.expect_oneshot_request(method("createChatInviteLink"), method="POST").respond_with_json(
        ok(
            {
                "invite_link": "https://t.me/+AbCdEfGh123",
                "creator": BOT,
                "creates_join_request": False,
                "is_primary": False,
                "is_revoked": False,
                "name": "CoinLink member 4242",
                "expire_date": int(expire_at.timestamp()),
                "member_limit": 1,
            }
        )
    )

    link = gateway.create_invite_link(CHAT, invite_name("4242"), expire_at)

    assert link == "https://t.me/+AbCdEfGh123"
    assert calls(httpserver) == [
        (
            "createChatInviteLink",
            {
                "chat_id": CHAT,
                "name": "CoinLink member 4242",
                "expire_date": str(int(expire_at.timestamp())),
                "member_limit": "1",
            },
        )
    ]


def test_removal_bans_then_lifts_the_ban_so_they_can_come_back(
    httpserver: HTTPServer, gateway: TelegramAccess
) -> None:
    httpserver.expect_ordered_request(method("banChatMember"), method="POST").respond_with_json(ok(True))
    httpserver.expect_ordered_request(method("unbanChatMember"), method="POST").respond_with_json(ok(True))

    gateway.remove_member(CHAT, "4242")

    assert calls(httpserver) == [
        ("banChatMember", {"chat_id": CHAT, "user_id": "4242"}),
        ("unbanChatMember", {"chat_id": CHAT, "user_id": "4242", "only_if_banned": "true"}),
    ]


@pytest.mark.parametrize("description", ["Bad Request: user not found", "Bad Request: USER_NOT_PARTICIPANT"])
def test_removing_someone_who_is_not_there_is_done(
    httpserver: HTTPServer, gateway: TelegramAccess, description: str
) -> None:
    httpserver.expect_oneshot_request(method("banChatMember")).respond_with_json(
        error(400, description), status=400
    )

    gateway.remove_member(CHAT, "4242")

    assert [name for name, _ in calls(httpserver)] == ["banChatMember"]


def test_a_bot_without_rights_is_refused_for_good(httpserver: HTTPServer, gateway: TelegramAccess) -> None:
    httpserver.expect_oneshot_request(method("banChatMember")).respond_with_json(
        error(403, "Forbidden: bot is not a member of the channel chat"), status=403
    )

    with pytest.raises(PermanentError, match="not a member of the channel"):
        gateway.remove_member(CHAT, "4242")


def test_a_bad_request_other_than_absence_is_permanent(
    httpserver: HTTPServer, gateway: TelegramAccess
) -> None:
    httpserver.expect_oneshot_request(method("banChatMember")).respond_with_json(
        error(400, "Bad Request: can't remove chat owner"), status=400
    )

    with pytest.raises(PermanentError, match="chat owner"):
        gateway.remove_member(CHAT, "4242")
    assert [name for name, _ in calls(httpserver)] == ["banChatMember"]


def test_flood_control_and_outages_are_worth_retrying(
    httpserver: HTTPServer, gateway: TelegramAccess
) -> None:
    httpserver.expect_ordered_request(method("getChatMember")).respond_with_json(
        error(429, "Too Many Requests: retry after 7", retry_after=7), status=429
    )
    httpserver.expect_ordered_request(method("getChatMember")).respond_with_json(
        error(502, "Bad Gateway"), status=502
    )

    with pytest.raises(RateLimited) as limited:
        gateway.is_member(CHAT, "4242")
    assert limited.value.retry_after == 7
    with pytest.raises(TransientError):
        gateway.is_member(CHAT, "4242")


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        ({"status": "member", "user": MAYA}, True),
        ({"status": "creator", "user": MAYA, "is_anonymous": False}, True),
        ({"status": "left", "user": MAYA}, False),
        ({"status": "kicked", "user": MAYA, "until_date": 0}, False),
        ({"status": "restricted", "user": MAYA, "is_member": True, **RESTRICTIONS}, True),
        ({"status": "restricted", "user": MAYA, "is_member": False, **RESTRICTIONS}, False),
    ],
    ids=["member", "creator", "left", "kicked", "restricted-in", "restricted-out"],
)
def test_membership_is_read_from_the_member_status(
    httpserver: HTTPServer, gateway: TelegramAccess, member: dict[str, Any], expected: bool
) -> None:
    httpserver.expect_oneshot_request(method("getChatMember")).respond_with_json(ok(member))

    assert gateway.is_member(CHAT, "4242") is expected
    assert calls(httpserver) == [("getChatMember", {"chat_id": CHAT, "user_id": "4242"})]


def test_someone_telegram_does_not_know_in_the_chat_is_not_a_member(
    httpserver: HTTPServer, gateway: TelegramAccess
) -> None:
    httpserver.expect_oneshot_request(method("getChatMember")).respond_with_json(
        error(400, "Bad Request: user not found"), status=400
    )

    assert gateway.is_member(CHAT, "4242") is False


def test_the_twin_records_invites_and_removals_and_answers_from_them() -> None:
    twin = TwinTelegramAccess()
    expire_at = dt.datetime(2025, 3, 4, 9, 0, tzinfo=dt.UTC)

    assert twin.is_member(CHAT, "4242") is False
    link = twin.create_invite_link(CHAT, invite_name("4242"), expire_at)
    assert link.startswith("https://t.me/+twin")
    assert twin.is_member(CHAT, "4242") is True
    assert twin.is_member(CHAT, "5151") is False

    twin.remove_member(CHAT, "4242")
    twin.remove_member(CHAT, "5151")  # never invited: nothing to record

    assert twin.is_member(CHAT, "4242") is False
    assert list(AccessGrant.objects.values_list("resource", "user_external_id", "state", "invite_link")) == [
        (CHAT, "4242", AccessGrant.State.REMOVED, link)
    ]
