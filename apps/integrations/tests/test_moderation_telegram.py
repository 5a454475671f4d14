"""The Telegram moderation client: python-telegram-bot's real ``Bot`` against a fake Bot API on loopback, and
the offline twin."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer

from apps.core.resilience import PermanentError, RateLimited, TransientError
from apps.integrations.models import ModerationCall, OutboxMessage
from apps.integrations.moderation import NotInCommunity, PlatformModeration, get_moderation_client
from apps.integrations.moderation.telegram import TelegramModeration
from apps.integrations.moderation.twin import TwinModeration
from apps.integrations.tests.telegram_api import TOKEN, calls, error, method, ok

pytestmark = pytest.mark.django_db

GROUP = "-1001234567890"
MAYA = "4242"
BOT = {"id": 123456, "is_bot": True, "first_name": "CoinLink", "username": "CoinLinkBot"}
UNTIL = dt.datetime(2026, 12, 5, 9, 30, tzinfo=dt.UTC)
ALL_PERMISSIONS = (
    "can_send_messages",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_manage_topics",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_edit_tag",
    "can_react_to_messages",
)


@pytest.fixture
def client(httpserver: HTTPServer, settings: Settings) -> PlatformModeration:
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    return get_moderation_client("telegram")


def test_the_settings_choose_the_real_client_or_the_twin(settings: Settings) -> None:
    settings.TELEGRAM_BACKEND = "outbox"
    assert isinstance(get_moderation_client("telegram"), TwinModeration)

    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = ""
    with pytest.raises(ImproperlyConfigured, match="TELEGRAM_BOT_TOKEN"):
        get_moderation_client("telegram")
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    assert isinstance(get_moderation_client("telegram"), TelegramModeration)
    with pytest.raises(ValueError, match="'x'"):
        get_moderation_client("x")


def test_a_message_is_deleted_and_one_already_gone_is_done(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_ordered_request(method("deleteMessage"), method="POST").respond_with_json(ok(True))
    httpserver.expect_ordered_request(method("deleteMessage"), method="POST").respond_with_json(
        error(400, "Bad Request: message to delete not found"), status=400
    )

    client.delete_message(chat_id=GROUP, message_id="77")
    client.delete_message(chat_id=GROUP, message_id="78")

    assert calls(httpserver) == [
        ("deleteMessage", {"chat_id": GROUP, "message_id": "77"}),
        ("deleteMessage", {"chat_id": GROUP, "message_id": "78"}),
    ]


def test_a_message_too_old_to_delete_is_refused_for_good(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_oneshot_request(method("deleteMessage")).respond_with_json(
        error(400, "Bad Request: message can't be deleted"), status=400
    )

    with pytest.raises(PermanentError, match="can't be deleted"):
        client.delete_message(chat_id=GROUP, message_id="77")


def test_a_mute_takes_every_permission_away_until_a_time(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_oneshot_request(method("restrictChatMember"), method="POST").respond_with_json(ok(True))

    client.mute(space=GROUP, user_id=MAYA, until=UNTIL, reason="scam")

    ((name, form),) = calls(httpserver)
    assert name == "restrictChatMember"
    assert form["chat_id"] == GROUP
    assert form["user_id"] == MAYA
    assert form["until_date"] == str(int(UNTIL.timestamp()))
    permissions = json.loads(form["permissions"])
    assert set(permissions) == set(ALL_PERMISSIONS)
    assert not any(permissions.values())


def test_lifting_a_mute_gives_every_permission_back(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_oneshot_request(method("restrictChatMember"), method="POST").respond_with_json(ok(True))

    client.unmute(space=GROUP, user_id=MAYA)

    ((name, form),) = calls(httpserver)
    assert name == "restrictChatMember"
    assert "until_date" not in form
    permissions = json.loads(form["permissions"])
    assert set(permissions) == set(ALL_PERMISSIONS)
    assert all(permissions.values())


def test_muting_someone_not_in_the_chat_says_so_and_unmuting_them_is_done(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_request(method("restrictChatMember")).respond_with_json(
        error(400, "Bad Request: USER_NOT_PARTICIPANT"), status=400
    )

    with pytest.raises(NotInCommunity, match="not in chat"):
        client.mute(space=GROUP, user_id=MAYA, until=UNTIL)
    client.unmute(space=GROUP, user_id=MAYA)


def test_a_ban_and_its_lifting(httpserver: HTTPServer, client: PlatformModeration) -> None:
    httpserver.expect_ordered_request(method("banChatMember"), method="POST").respond_with_json(ok(True))
    httpserver.expect_ordered_request(method("unbanChatMember"), method="POST").respond_with_json(ok(True))

    client.ban(space=GROUP, user_id=MAYA, reason="scam")
    client.unban(space=GROUP, user_id=MAYA)

    assert calls(httpserver) == [
        ("banChatMember", {"chat_id": GROUP, "user_id": MAYA}),
        ("unbanChatMember", {"chat_id": GROUP, "user_id": MAYA, "only_if_banned": "true"}),
    ]


def test_a_bot_without_admin_rights_is_refused_for_good(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_oneshot_request(method("banChatMember")).respond_with_json(
        error(400, "Bad Request: not enough rights to restrict/unrestrict chat member"), status=400
    )

    with pytest.raises(PermanentError, match=r"(?i)not enough rights"):
        client.ban(space=GROUP, user_id=MAYA)


def test_flood_control_and_outages_are_worth_retrying(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_ordered_request(method("banChatMember")).respond_with_json(
        error(429, "Too Many Requests: retry after 9", retry_after=9), status=429
    )
    httpserver.expect_ordered_request(method("banChatMember")).respond_with_json(
        error(502, "Bad Gateway"), status=502
    )

    with pytest.raises(RateLimited) as limited:
        client.ban(space=GROUP, user_id=MAYA)
    assert limited.value.retry_after == 9
    with pytest.raises(TransientError):
        client.ban(space=GROUP, user_id=MAYA)


def test_a_direct_message_goes_to_the_persons_private_chat(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_oneshot_request(method("sendMessage"), method="POST").respond_with_json(
        ok(
            {
                "message_id": 901,
                "date": 1764840000,
                "chat": {"id": int(MAYA), "type": "private", "first_name": "Maya"},
                "from": BOT,
                "text": "Your message was removed.",
            }
        )
    )

    message_id = client.send_dm(user_id=MAYA, text="Your message was removed.", idempotency_key="k1")

    assert message_id == "901"
    assert calls(httpserver) == [("sendMessage", {"chat_id": MAYA, "text": "Your message was removed."})]


def test_someone_who_never_started_the_bot_cannot_be_written_to(
    httpserver: HTTPServer, client: PlatformModeration
) -> None:
    httpserver.expect_oneshot_request(method("sendMessage")).respond_with_json(
        error(403, "Forbidden: bot can't initiate conversation with a user"), status=403
    )

    with pytest.raises(PermanentError, match="initiate conversation"):
        client.send_dm(user_id=MAYA, text="hello", idempotency_key="k1")


def test_the_twin_records_every_call_and_sends_its_messages_to_the_outbox() -> None:
    twin = TwinModeration("telegram")

    twin.delete_message(chat_id=GROUP, message_id="77", reason="scam")
    twin.mute(space=GROUP, user_id=MAYA, until=UNTIL, reason="scam")
    twin.unmute(space=GROUP, user_id=MAYA)
    twin.ban(space=GROUP, user_id=MAYA, reason="scam")
    twin.unban(space=GROUP, user_id=MAYA)
    first = twin.send_dm(user_id=MAYA, text="Your message was removed.", idempotency_key="notice-1")
    again = twin.send_dm(user_id=MAYA, text="Your message was removed.", idempotency_key="notice-1")

    assert list(
        ModerationCall.objects.order_by("pk").values_list(
            "platform", "operation", "space", "user_external_id", "message_id", "until"
        )
    ) == [
        ("telegram", "delete_message", GROUP, "", "77", None),
        ("telegram", "mute", GROUP, MAYA, "", UNTIL),
        ("telegram", "unmute", GROUP, MAYA, "", None),
        ("telegram", "ban", GROUP, MAYA, "", None),
        ("telegram", "unban", GROUP, MAYA, "", None),
    ]
    assert first == again
    assert list(OutboxMessage.objects.values_list("platform", "kind", "channel", "text")) == [
        ("telegram", OutboxMessage.Kind.DM, f"dm:{MAYA}", "Your message was removed.")
    ]
