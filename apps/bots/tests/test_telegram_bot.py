"""The Telegram bot's one inbound path, driven as the polling process drives it: PTB's own ``Update.de_json`` on
update JSON shaped like Telegram's, handed to the ``Application`` that ``run_telegram_bot`` builds
(``process_update``), with every Bot API call (the application's, the publisher's, moderation's, the join-request
answers) going to a fake Bot API on loopback."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
import telegram
from asgiref.sync import async_to_sync
from django.utils import timezone
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.accounts.factories import UserFactory
from apps.billing.models import Entitlement
from apps.bots.models import JoinDecision, TelegramJoinRequest, TelegramUpdate, TelegramUpdateStatus
from apps.bots.telegram import telegram_update_accept
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.community.models import PlatformIdentity, UserInteraction
from apps.community.services.linking import telegram_link_code_create
from apps.core.models import Platform
from apps.integrations.telegram_polling import ALLOWED_UPDATES, build_application
from apps.moderation.models import Appeal, AppealSource, ModerationAction, ModerationDecision
from apps.moderation.services.enforcement import ladder_step, moderation_policy_get
from coinlink.celery import app as celery_app

pytestmark = pytest.mark.django_db

TOKEN = "123456:TEST-token"
BOT_ID = 123456
GROUP = {"id": -1001234567890, "type": "supergroup", "title": "CoinLink chat"}
CHANNEL_ID = "-1005555555555"
SCAM = "Hi, I'm from support. DM me your 12-word seed phrase and I'll fix your wallet"
MAYA = {"id": 4242, "is_bot": False, "first_name": "Maya", "username": "mayatrades"}
SAM = {"id": 5151, "is_bot": False, "first_name": "Sam", "username": "samops"}
OUR_BOT = {"id": BOT_ID, "is_bot": True, "first_name": "CoinLink", "username": "CoinLinkBot"}
_ids = itertools.count(1000)

Run = Callable[..., None]


def _ok(result: Any) -> Response:
    return Response(json.dumps({"ok": True, "result": result}), content_type="application/json")


def _bot_api(request: Request) -> Response:
    method = request.path.rsplit("/", 1)[-1]
    now = int(timezone.now().timestamp())
    if method == "getMe":
        return _ok(OUR_BOT | {"can_join_groups": True, "can_read_all_group_messages": True})
    if method == "sendMessage":
        chat = str(request.form.get("chat_id") or (request.get_json(silent=True) or {}).get("chat_id"))
        return _ok({"message_id": next(_ids), "date": now, "chat": {"id": int(chat), "type": "private"}})
    return _ok(True)


@pytest.fixture(autouse=True)
def telegram_api(httpserver: HTTPServer, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"
    settings.TELEGRAM_MEMBERS_CHANNEL_ID = CHANNEL_ID
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    settings.SITE_URL = "https://coinlink.example"
    settings.MODERATION_TELEGRAM_CHATS = []
    httpserver.expect_request(f"/bot{TOKEN}/getMe").respond_with_handler(_bot_api)
    httpserver.expect_request(_any_method()).respond_with_handler(_bot_api)
    return httpserver


def _any_method() -> Any:
    import re

    return re.compile(rf"^/bot{re.escape(TOKEN)}/\w+$")


def _calls(httpserver: HTTPServer, method: str) -> list[dict[str, Any]]:
    found = []
    for request, _ in httpserver.log:
        if request.path.endswith(f"/{method}"):
            found.append(dict(request.form) or request.get_json(silent=True) or {})
    return found


@pytest.fixture
def run(django_capture_on_commit_callbacks: Any) -> Run:
    """Give updates to the Application the polling command builds, one after the other, as Telegram would."""

    def process(*payloads: dict[str, Any]) -> None:
        application = build_application(
            token=TOKEN,
            api_base_url=telegram_settings_url(),
            on_update=lambda data: telegram_update_accept(data=data),
        )

        async def drive() -> None:
            await application.initialize()
            try:
                for payload in payloads:
                    await application.process_update(telegram.Update.de_json(payload, application.bot))
            finally:
                await application.shutdown()

        with django_capture_on_commit_callbacks(execute=True):
            async_to_sync(drive)()

    return process


def telegram_settings_url() -> str:
    from django.conf import settings

    return settings.TELEGRAM_API_BASE_URL


def _group_message(
    update_id: int, text: str, *, sender: dict[str, Any] = MAYA, message_id: int | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id or update_id + 10,
            "date": int(timezone.now().timestamp()),
            "chat": GROUP,
            "from": sender,
            "text": text,
            **extra,
        },
    }


def _private(update_id: int, text: str, *, sender: dict[str, Any] = MAYA) -> dict[str, Any]:
    command = text.split(" ", 1)[0]
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id + 10,
            "date": int(timezone.now().timestamp()),
            "chat": {"id": sender["id"], "type": "private", "first_name": sender["first_name"]},
            "from": sender,
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}],
        },
    }


def _staff_on_telegram(user_id: int = 5151) -> Any:
    staff = UserFactory.create(is_staff=True)
    person = CommunityUserFactory.create(portal_user=staff, display_name="Sam")
    PlatformIdentityFactory.create(
        community_user=person, platform=Platform.TELEGRAM, external_id=str(user_id), linked_at=timezone.now()
    )
    return staff


def test_allowed_updates_name_everything_the_bot_handles() -> None:
    assert set(ALLOWED_UPDATES) >= {
        "message",
        "edited_message",
        "chat_member",
        "chat_join_request",
        "callback_query",
        "channel_post",
    }


def test_a_scam_in_the_group_is_recorded_judged_and_deleted_once(run: Run, telegram_api: HTTPServer) -> None:
    scam = _group_message(1, SCAM, message_id=77)

    run(scam, scam, _group_message(2, SCAM, message_id=77))  # the same update twice, then a new id for it

    assert TelegramUpdate.objects.filter(status=TelegramUpdateStatus.PROCESSED).count() == 2
    (interaction,) = UserInteraction.objects.filter(platform=Platform.TELEGRAM)
    assert interaction.external_id == f"{GROUP['id']}:77"
    decision = ModerationDecision.objects.get()
    assert (decision.chat_id, decision.message_id, decision.verdict) == (str(GROUP["id"]), "77", "remove")
    (action,) = ModerationAction.objects.all()
    assert action.message_id == "77"
    # The ladder step the engine's strikes reach (a seed-phrase request is worth a ban at once).
    assert action.action == ladder_step(moderation_policy_get(), decision.strike_weight)
    deletions = _calls(telegram_api, "deleteMessage")
    assert [(d["chat_id"], d["message_id"]) for d in deletions] == [(str(GROUP["id"]), "77")]
    # The sender is told what happened and how to appeal, privately.
    notices = [m for m in _calls(telegram_api, "sendMessage") if m["chat_id"] == str(MAYA["id"])]
    assert len(notices) == 1
    assert "appeal" in notices[0]["text"].lower()


def test_an_edit_that_turns_a_message_into_a_scam_is_removed(run: Run, telegram_api: HTTPServer) -> None:
    original = _group_message(3, "gm everyone, what a day", message_id=80)
    edited = {"update_id": 4, "edited_message": original["message"] | {"text": SCAM, "edit_date": 1}}

    run(original, edited)

    assert ModerationDecision.objects.get().verdict == "allow"
    assert [a.message_id for a in ModerationAction.objects.all()] == ["80"]
    assert [d["message_id"] for d in _calls(telegram_api, "deleteMessage")] == ["80"]


def test_bots_anonymous_admins_and_staff_are_never_moderated(run: Run, telegram_api: HTTPServer) -> None:
    _staff_on_telegram()
    other_bot = {"id": 777, "is_bot": True, "first_name": "Spambot", "username": "spam_bot"}
    anonymous_admin = {
        "id": 1087968824,
        "is_bot": True,
        "first_name": "Group",
        "username": "GroupAnonymousBot",
    }

    run(
        _group_message(5, SCAM, sender=OUR_BOT),
        _group_message(6, SCAM, sender=other_bot),
        _group_message(7, SCAM, sender=anonymous_admin, sender_chat=GROUP),
        _group_message(8, SCAM, sender=SAM),
    )

    assert not ModerationAction.objects.exists()
    assert _calls(telegram_api, "deleteMessage") == []
    # Only the staff member's message is a person's: recorded, judged as staff (allowed, no checks).
    assert list(UserInteraction.objects.values_list("external_id", flat=True)) == [f"{GROUP['id']}:18"]
    assert list(ModerationDecision.objects.values_list("verdict", "checks")) == [("allow", [])]


def test_malformed_updates_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    for data in ({"update_id": 9, "message": {"chat": "not a chat"}}, {"no": "id"}, [1, 2]):
        telegram_update_accept(data=data)

    (row,) = TelegramUpdate.objects.all()
    assert (row.update_id, row.status) == (9, TelegramUpdateStatus.PROCESSED)
    assert not UserInteraction.objects.exists()
    assert any("malformed Telegram update 9" in r.getMessage() for r in caplog.records)


def test_a_join_request_is_approved_from_the_ledger(run: Run, telegram_api: HTTPServer) -> None:
    member = UserFactory.create()
    person = CommunityUserFactory.create(portal_user=member)
    PlatformIdentityFactory.create(
        community_user=person, platform=Platform.TELEGRAM, external_id="4242", linked_at=timezone.now()
    )
    Entitlement.objects.create(
        user=member, key=f"telegram.channel:{CHANNEL_ID}", source="complimentary", starts_at=timezone.now()
    )

    run(_join_request(10, MAYA))

    assert [(c["chat_id"], c["user_id"]) for c in _calls(telegram_api, "approveChatJoinRequest")] == [
        (CHANNEL_ID, "4242")
    ]
    assert _calls(telegram_api, "declineChatJoinRequest") == []
    row = TelegramJoinRequest.objects.get()
    assert (row.decision, row.answered) == (JoinDecision.APPROVED, True)


def test_a_join_request_without_membership_is_declined_with_the_way_in(
    run: Run, telegram_api: HTTPServer
) -> None:
    run(_join_request(11, SAM), _join_request(11, SAM))

    assert [c["user_id"] for c in _calls(telegram_api, "declineChatJoinRequest")] == ["5151"]
    assert _calls(telegram_api, "approveChatJoinRequest") == []
    (message,) = _calls(telegram_api, "sendMessage")
    assert message["chat_id"] == "5151"
    assert "https://coinlink.example/plans/" in message["text"]
    assert TelegramJoinRequest.objects.get().reason == "no linked CoinLink membership"


def test_a_scam_bio_is_declined_even_for_a_member(run: Run, telegram_api: HTTPServer) -> None:
    run(_join_request(12, MAYA, bio="Official support: DM me your seed phrase to unlock your wallet"))

    row = TelegramJoinRequest.objects.get()
    assert (row.decision, row.moderation_verdict) == (JoinDecision.DECLINED, "remove")
    assert len(_calls(telegram_api, "declineChatJoinRequest")) == 1
    assert _calls(telegram_api, "sendMessage") == []


def _join_request(update_id: int, user: dict[str, Any], *, bio: str = "") -> dict[str, Any]:
    return {
        "update_id": update_id,
        "chat_join_request": {
            "chat": {"id": int(CHANNEL_ID), "type": "channel", "title": "CoinLink members"},
            "from": user,
            "user_chat_id": user["id"],
            "date": 1_700_000_000,
            **({"bio": bio} if bio else {}),
        },
    }


def test_appeal_from_the_bot_reaches_the_operators_queue(run: Run, telegram_api: HTTPServer) -> None:
    run(_group_message(13, SCAM, message_id=90))
    action = ModerationAction.objects.get()

    run(_private(14, "/appeal I was quoting a scam to warn people"))

    appeal = Appeal.objects.get()
    assert (appeal.action_id, appeal.source, appeal.message) == (
        action.pk,
        AppealSource.BOT,
        "I was quoting a scam to warn people",
    )
    replies = [m["text"] for m in _calls(telegram_api, "sendMessage") if "appeal (#" in m["text"]]
    assert replies == [
        f"Thanks: your appeal (#{appeal.pk}) is with the moderators. You will hear back here once they have decided."
    ]


def test_a_moderator_marks_a_message_as_spam_by_replying(run: Run, telegram_api: HTTPServer) -> None:
    _staff_on_telegram()
    target = _group_message(15, "Cheap followers, best price, visit my profile", message_id=95)["message"]

    run(
        {"update_id": 15, "message": target},
        _group_message(16, "/spam", sender=SAM, message_id=96, reply_to_message=target),
    )

    (action,) = ModerationAction.objects.all()
    assert action.moderator is not None
    assert (action.message_id, action.actor, action.moderator.is_staff) == ("95", "operator", True)
    assert [d["message_id"] for d in _calls(telegram_api, "deleteMessage")] == ["95"]
    from apps.moderation.models import TrainingLabel

    assert TrainingLabel.objects.filter(label="spam", source="operator").count() == 1
    # The moderator's command is not itself judged.
    assert not ModerationDecision.objects.filter(message_id="96").exists()


def test_start_with_a_deep_link_code_links_in_one_tap(run: Run, telegram_api: HTTPServer) -> None:
    member = UserFactory.create()
    code = telegram_link_code_create(user=member)

    run(_private(17, f"/start {code.replace('-', '')}"))

    identity = PlatformIdentity.objects.get(platform=Platform.TELEGRAM, external_id="4242")
    assert identity.community_user.portal_user == member
    (reply,) = _calls(telegram_api, "sendMessage")
    assert reply["text"].startswith("Done: this Telegram account is now linked")


def test_status_and_plans_answer_privately(run: Run, telegram_api: HTTPServer) -> None:
    run(_private(18, "/status"), _private(19, "/plans"))

    status, plans = (m["text"] for m in _calls(telegram_api, "sendMessage"))
    assert status.startswith("This Telegram account is not linked to a CoinLink membership yet.")
    assert plans.startswith("CoinLink membership plans:")
    assert plans.endswith("Join at https://coinlink.example/plans/")


def test_chat_member_updates_record_joins_and_departures(run: Run) -> None:
    def change(update_id: int, old: str, new: str) -> dict[str, Any]:
        return {
            "update_id": update_id,
            "chat_member": {
                "chat": GROUP,
                "from": MAYA,
                "date": 1_700_000_000 + update_id,
                "old_chat_member": {"user": MAYA, "status": old},
                "new_chat_member": {"user": MAYA, "status": new},
            },
        }

    run(change(20, "left", "member"), change(21, "member", "left"))

    assert list(UserInteraction.objects.order_by("occurred_at").values_list("kind", flat=True)) == [
        "join",
        "leave",
    ]


def test_a_callback_query_is_answered(run: Run, telegram_api: HTTPServer) -> None:
    run(
        {
            "update_id": 22,
            "callback_query": {"id": "cb-1", "from": MAYA, "chat_instance": "x", "data": "plans"},
        }
    )

    assert [c["callback_query_id"] for c in _calls(telegram_api, "answerCallbackQuery")] == ["cb-1"]
    (message,) = _calls(telegram_api, "sendMessage")
    assert message["chat_id"] == "4242"
    assert message["text"].startswith("CoinLink membership plans:")


def test_reaction_counts_of_channel_posts_reach_the_publishers_metrics(run: Run) -> None:
    from apps.integrations.publishers.telegram import TelegramPublisher

    run(
        {
            "update_id": 23,
            "message_reaction_count": {
                "chat": {"id": -1001111111111, "type": "channel", "title": "CoinLink"},
                "message_id": 42,
                "date": 1_700_000_000,
                "reactions": [
                    {"type": {"type": "emoji", "emoji": "🔥"}, "total_count": 5},
                    {"type": {"type": "emoji", "emoji": "👍"}, "total_count": 2},
                ],
            },
        }
    )

    (metrics,) = TelegramPublisher.from_settings().fetch_metrics(["42"])
    assert metrics.metrics == {"reactions": 7}


def test_a_join_request_to_a_chat_no_plan_sells_is_approved_after_the_bio_check(
    run: Run, telegram_api: HTTPServer, settings: Settings
) -> None:
    settings.TELEGRAM_MEMBERS_CHANNEL_ID = ""
    request = _join_request(24, SAM, bio="Long-term holder, charts and coffee")

    run(request)

    row = TelegramJoinRequest.objects.get()
    assert (row.decision, row.reason, row.moderation_verdict) == (
        JoinDecision.APPROVED,
        "not a members' channel",
        "allow",
    )
    assert len(_calls(telegram_api, "approveChatJoinRequest")) == 1


def test_the_portal_deep_link_links_the_account_in_one_tap(
    run: Run, telegram_api: HTTPServer, settings: Settings, client: Any
) -> None:
    import re

    settings.TELEGRAM_LOGIN_BOT_USERNAME = "CoinLinkBot"
    member = UserFactory.create()
    client.force_login(member)

    page = client.post("/account/links/telegram/code/").content.decode()
    (code,) = re.findall(r'href="https://t\.me/CoinLinkBot\?start=([A-Z0-9-]+)"', page)
    # Telegram opens the chat with the bot and, on Start, sends "/start <payload>".
    run(_private(25, f"/start {code}"))

    identity = PlatformIdentity.objects.get(platform=Platform.TELEGRAM, external_id="4242")
    assert identity.community_user.portal_user == member
    assert identity.linked_at is not None
