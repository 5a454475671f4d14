"""The Telegram bot's webhook and its linking commands: Django's test client posts the updates Telegram would,
and the bot's replies go through python-telegram-bot's real ``Bot`` to a fake Bot API on loopback."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer

from apps.accounts.factories import UserFactory
from apps.bots.models import TelegramUpdate, TelegramUpdateStatus
from apps.bots.telegram import handle_update
from apps.community.models import PlatformIdentity
from apps.community.services.linking import telegram_link_code_create
from apps.core.models import Platform
from apps.integrations.telegram_polling import ALLOWED_UPDATES
from coinlink.celery import app as celery_app

pytestmark = pytest.mark.django_db

TOKEN = "123456:TEST-token"
SECRET = "s3cret-Token_1"
URL = f"/bots/telegram/webhook/{SECRET}/"
MAYA = {"id": 4242, "is_bot": False, "first_name": "Maya", "last_name": "Chen", "username": "mayatrades"}

RunCommitted = Callable[..., Any]


@pytest.fixture(autouse=True)
def telegram_api(httpserver: HTTPServer, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    settings.TELEGRAM_WEBHOOK_SECRET = SECRET
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    settings.SITE_URL = "https://coinlink.example"
    httpserver.expect_request(f"/bot{TOKEN}/sendMessage").respond_with_json(
        {
            "ok": True,
            "result": {
                "message_id": 900,
                "date": int(timezone.now().timestamp()),
                "chat": {"id": 4242, "type": "private", "first_name": "Maya"},
                "text": "reply",
            },
        }
    )
    return httpserver


def _update(update_id: int, text: str, *, chat: dict[str, Any] | None = None) -> dict[str, Any]:
    command = text.split(" ", 1)[0]
    return {
        "update_id": update_id,
        "message": {
            "message_id": 10 + update_id,
            "date": int(timezone.now().timestamp()),
            "chat": chat or {"id": 4242, "type": "private", "first_name": "Maya", "username": "mayatrades"},
            "from": MAYA,
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}]
            if text.startswith("/")
            else [],
        },
    }


def _post(
    client: Client,
    capture: RunCommitted,
    body: Any,
    *,
    url: str = URL,
    token: str | None = SECRET,
) -> int:
    headers = {"X-Telegram-Bot-Api-Secret-Token": token} if token is not None else {}
    data = body if isinstance(body, bytes) else json.dumps(body)
    with capture(execute=True):
        response = client.post(url, data=data, content_type="application/json", headers=headers)
    return response.status_code


def _replies(server: HTTPServer) -> list[dict[str, str]]:
    return [r.form.to_dict() for r, _ in server.log if r.path.endswith("/sendMessage")]


@pytest.mark.parametrize(
    ("url", "token"),
    [
        ("/bots/telegram/webhook/wrong/", SECRET),
        (URL, "wrong"),
        (URL, None),
    ],
    ids=["path", "header", "no-header"],
)
def test_a_wrong_secret_is_refused_and_nothing_is_done(
    client: Client,
    django_capture_on_commit_callbacks: RunCommitted,
    telegram_api: HTTPServer,
    url: str,
    token: str | None,
) -> None:
    user = UserFactory.create()
    code = telegram_link_code_create(user=user)

    status = _post(
        client, django_capture_on_commit_callbacks, _update(1, f"/link {code}"), url=url, token=token
    )

    assert status == 403
    assert not TelegramUpdate.objects.exists()
    assert not PlatformIdentity.objects.exists()
    assert telegram_api.log == []


def test_without_a_configured_secret_every_update_is_refused(
    client: Client, django_capture_on_commit_callbacks: RunCommitted, settings: Settings
) -> None:
    settings.TELEGRAM_WEBHOOK_SECRET = ""

    status = _post(
        client,
        django_capture_on_commit_callbacks,
        _update(1, "/start"),
        url="/bots/telegram/webhook/x/",
        token="x",
    )

    assert status == 403
    assert not TelegramUpdate.objects.exists()


def test_a_body_nested_too_deeply_is_refused_without_a_traceback(
    client: Client,
    django_capture_on_commit_callbacks: RunCommitted,
    telegram_api: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    status = _post(client, django_capture_on_commit_callbacks, b"[" * 50_000 + b"]" * 50_000)

    assert status == 400
    assert not TelegramUpdate.objects.exists()
    assert telegram_api.log == []
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


def test_only_post_is_accepted(client: Client) -> None:
    assert client.get(URL, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}).status_code == 405


def test_link_code_links_the_account_and_replies(
    client: Client, django_capture_on_commit_callbacks: RunCommitted, telegram_api: HTTPServer
) -> None:
    user = UserFactory.create()
    code = telegram_link_code_create(user=user)

    status = _post(client, django_capture_on_commit_callbacks, _update(100, f"/link {code}"))

    assert status == 200
    identity = PlatformIdentity.objects.get(platform=Platform.TELEGRAM, external_id="4242")
    assert identity.community_user.portal_user == user
    assert (identity.username, identity.display_name) == ("mayatrades", "Maya Chen")
    assert identity.linked_at is not None
    (reply,) = _replies(telegram_api)
    assert reply["chat_id"] == "4242"
    assert reply["text"].startswith("Done: this Telegram account is now linked to your CoinLink membership.")
    row = TelegramUpdate.objects.get()
    assert (row.update_id, row.status) == (100, TelegramUpdateStatus.PROCESSED)


def test_a_redelivered_update_is_processed_once(
    client: Client, django_capture_on_commit_callbacks: RunCommitted, telegram_api: HTTPServer
) -> None:
    user = UserFactory.create()
    update = _update(101, f"/link {telegram_link_code_create(user=user)}")

    first = _post(client, django_capture_on_commit_callbacks, update)
    second = _post(client, django_capture_on_commit_callbacks, update)

    assert (first, second) == (200, 200)
    assert TelegramUpdate.objects.count() == 1
    (reply,) = _replies(telegram_api)  # had it run twice, the spent code would have been answered as invalid
    assert reply["text"].startswith("Done:")


def test_a_wrong_code_is_answered_with_where_to_get_a_new_one(
    client: Client, django_capture_on_commit_callbacks: RunCommitted, telegram_api: HTTPServer
) -> None:
    status = _post(client, django_capture_on_commit_callbacks, _update(102, "/link ABCDE-FGHJK"))

    assert status == 200
    assert not PlatformIdentity.objects.exists()
    (reply,) = _replies(telegram_api)
    assert "That code didn't work" in reply["text"]
    assert "https://coinlink.example/account/links/" in reply["text"]


def test_start_greets_with_the_way_to_link(
    client: Client, django_capture_on_commit_callbacks: RunCommitted, telegram_api: HTTPServer
) -> None:
    status = _post(client, django_capture_on_commit_callbacks, _update(103, "/start"))

    assert status == 200
    (reply,) = _replies(telegram_api)
    assert reply["text"].startswith("Hi, I'm the CoinLink bot.")
    assert "/link CODE" in reply["text"]


def test_a_start_deep_link_carrying_a_code_links(
    client: Client, django_capture_on_commit_callbacks: RunCommitted, telegram_api: HTTPServer
) -> None:
    user = UserFactory.create()

    _post(
        client,
        django_capture_on_commit_callbacks,
        _update(104, f"/start {telegram_link_code_create(user=user)}"),
    )

    assert PlatformIdentity.objects.get(external_id="4242").community_user.portal_user == user


def test_malformed_json_is_logged_and_skipped(
    client: Client,
    django_capture_on_commit_callbacks: RunCommitted,
    telegram_api: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="apps.bots.telegram"):
        statuses = [
            _post(client, django_capture_on_commit_callbacks, b'{"update_id": 5, "message": '),
            _post(client, django_capture_on_commit_callbacks, [1, 2, 3]),
            _post(client, django_capture_on_commit_callbacks, {"update_id": "5"}),
        ]

    assert statuses == [200, 200, 200]
    assert not TelegramUpdate.objects.exists()
    assert telegram_api.log == []
    assert [r.getMessage() for r in caplog.records] == [
        "telegram webhook: skipped a body that is not JSON: Expecting value: line 1 column 29 (char 28)",
        "telegram webhook: skipped JSON without a valid update_id",
        "telegram webhook: skipped JSON without a valid update_id",
    ]


def test_an_update_the_bot_has_no_use_for_is_logged_and_skipped(
    client: Client,
    django_capture_on_commit_callbacks: RunCommitted,
    telegram_api: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    group = {"id": -1009876543210, "type": "supergroup", "title": "CoinLink chat"}
    updates = [
        {"update_id": 200, "some_future_update": {"anything": True}},
        _update(201, "/link ABCDE-FGHJK", chat=group),  # a code posted in a group is not redeemed there
        _update(202, "hello there"),
        {"update_id": 203, "edited_message": _update(203, "/link ABCDE-FGHJK")["message"] | {"edit_date": 1}},
    ]

    with caplog.at_level(logging.INFO, logger="apps.bots.telegram"):
        statuses = [_post(client, django_capture_on_commit_callbacks, update) for update in updates]

    assert statuses == [200] * 4
    assert telegram_api.log == []
    assert set(TelegramUpdate.objects.values_list("status", flat=True)) == {TelegramUpdateStatus.PROCESSED}
    messages = [r.getMessage() for r in caplog.records]
    assert "telegram update 200 skipped: nothing to do with other" in messages
    # A code posted in a group is an ordinary group message (recorded, judged), never redeemed.
    assert not PlatformIdentity.objects.filter(linked_at__isnull=False).exists()
    assert "telegram message -1009876543210:211: allow " in messages
    assert "telegram update 202 skipped: not a command the bot knows" in messages
    assert "telegram update 203 skipped: an edited private message" in messages


def test_handle_update_never_raises_on_a_malformed_update(
    telegram_api: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="apps.bots.telegram"):
        handle_update({"update_id": 9, "message": {"text": "/start"}})
        handle_update({"message": {}})

    assert telegram_api.log == []
    assert len(caplog.records) == 2
    assert caplog.records[0].getMessage().startswith("telegram update skipped: malformed Telegram update 9")


# --- setWebhook ---------------------------------------------------------------------------------------------


def test_set_webhook_registers_the_url_and_the_secret(telegram_api: HTTPServer) -> None:
    telegram_api.expect_oneshot_request(f"/bot{TOKEN}/setWebhook").respond_with_json(
        {"ok": True, "result": True}
    )
    out = io.StringIO()

    call_command("telegram_set_webhook", stdout=out)

    ((request, _),) = [(r, s) for r, s in telegram_api.log if r.path.endswith("/setWebhook")]
    assert request.form.to_dict() == {
        "url": f"https://coinlink.example{URL}",
        "secret_token": SECRET,
        "allowed_updates": json.dumps(ALLOWED_UPDATES),
    }
    assert SECRET not in out.getvalue()
    assert "https://coinlink.example/bots/telegram/webhook/<TELEGRAM_WEBHOOK_SECRET>/" in out.getvalue()


def test_set_webhook_needs_the_real_bot_and_a_secret(settings: Settings, telegram_api: HTTPServer) -> None:
    settings.TELEGRAM_WEBHOOK_SECRET = ""
    with pytest.raises(CommandError, match="TELEGRAM_WEBHOOK_SECRET"):
        call_command("telegram_set_webhook")
    settings.TELEGRAM_BACKEND = "outbox"
    with pytest.raises(CommandError, match="TELEGRAM_BACKEND=api"):
        call_command("telegram_set_webhook")
    assert telegram_api.log == []


def test_a_scam_arriving_by_webhook_takes_the_same_path_and_the_outbox_twin_records_the_actions(
    client: Client,
    django_capture_on_commit_callbacks: RunCommitted,
    telegram_api: HTTPServer,
    settings: Any,
) -> None:
    from apps.integrations.models import ModerationCall, OutboxMessage
    from apps.moderation.models import ModerationAction

    settings.TELEGRAM_BACKEND = "outbox"
    group = {"id": -1009876543210, "type": "supergroup", "title": "CoinLink chat"}
    scam = _update(
        300, "Hi, I'm from support. DM me your 12-word seed phrase and I'll fix your wallet", chat=group
    )

    assert _post(client, django_capture_on_commit_callbacks, scam) == 200

    (action,) = ModerationAction.objects.all()
    assert (action.chat_id, action.message_id) == (str(group["id"]), "310")
    deleted = ModerationCall.objects.filter(operation=ModerationCall.Operation.DELETE_MESSAGE)
    assert list(deleted.values_list("space", "message_id")) == [(str(group["id"]), "310")]
    assert OutboxMessage.objects.filter(kind=OutboxMessage.Kind.DM).count() == 1
    assert telegram_api.log == []  # nothing reached Telegram
