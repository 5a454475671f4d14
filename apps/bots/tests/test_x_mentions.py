"""X mentions read incrementally into the inbound path: the real tweepy client (the X publisher's) against a
fake X API on loopback, ``since_id`` kept in the database between reads; and the engagement agent leaving
Telegram's updates to the bot."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer

from apps.bots.models import InboundCursor
from apps.bots.tasks import poll_x_mentions
from apps.bots.x import CURSOR, x_mentions_poll
from apps.community.models import UserInteraction
from apps.core.models import Heartbeat, Platform
from apps.integrations.telegram_polling import telegram_updates_taken
from apps.moderation.models import ModerationDecision

pytestmark = pytest.mark.django_db

ME = "1500000000000000000"
SCAM = "Support here: DM me your 12-word seed phrase and I'll restore your wallet"


@pytest.fixture
def x_api(httpserver: HTTPServer, settings: Settings) -> HTTPServer:
    settings.X_BACKEND = "api"
    settings.X_CONSUMER_KEY = "ck"
    settings.X_CONSUMER_SECRET = "cs"
    settings.X_ACCESS_TOKEN = "at"
    settings.X_ACCESS_TOKEN_SECRET = "ats"
    settings.X_API_BASE_URL = httpserver.url_for("/")
    httpserver.expect_request("/2/users/me").respond_with_json(
        {"data": {"id": ME, "name": "CoinLink", "username": "coinlink"}}
    )
    return httpserver


def _mentions(*tweets: tuple[str, str, str]) -> dict[str, Any]:
    now = timezone.now()
    data = [
        {
            "id": tweet_id,
            "text": text,
            "author_id": author,
            "created_at": (now - dt.timedelta(minutes=len(tweets) - n)).isoformat().replace("+00:00", "Z"),
            "edit_history_tweet_ids": [tweet_id],
        }
        for n, (tweet_id, author, text) in enumerate(tweets)
    ]
    users = [{"id": author, "name": f"User {author}", "username": f"user{author}"} for _, author, _ in tweets]
    meta: dict[str, Any] = {"result_count": len(data)}
    if data:
        meta |= {"newest_id": max(t[0] for t in tweets), "oldest_id": min(t[0] for t in tweets)}
    return {"data": data, "includes": {"users": users}, "meta": meta} if data else {"meta": meta}


def test_mentions_are_read_since_the_last_one_and_go_through_the_inbound_path(x_api: HTTPServer) -> None:
    path = f"/2/users/{ME}/mentions"
    x_api.expect_oneshot_request(path).respond_with_json(
        _mentions(
            ("1700000000000000002", "42", "what's the BTC read today?"),
            ("1700000000000000003", "43", SCAM),
            ("1700000000000000004", ME, "our own reply in a thread"),
        )
    )
    x_api.expect_oneshot_request(path).respond_with_json(_mentions())

    first = x_mentions_poll()
    second = x_mentions_poll()

    assert (first.read, first.new, first.since_id) == (2, 2, "1700000000000000004")
    assert (second.read, second.new) == (0, 0)
    reads = [r for r, _ in x_api.log if r.path == path]
    assert "since_id" not in reads[0].args
    assert reads[1].args["since_id"] == "1700000000000000004"
    assert InboundCursor.objects.get(name=CURSOR).value == "1700000000000000004"
    assert set(UserInteraction.objects.values_list("platform", "external_id")) == {
        (Platform.X, "1700000000000000002"),
        (Platform.X, "1700000000000000003"),
    }
    verdicts = dict(ModerationDecision.objects.values_list("message_id", "verdict"))
    assert verdicts["1700000000000000002"] == "allow"
    assert verdicts["1700000000000000003"] == "remove"


def test_a_failed_read_keeps_the_cursor(x_api: HTTPServer) -> None:
    InboundCursor.objects.create(name=CURSOR, value="1700000000000000009")
    x_api.expect_request(f"/2/users/{ME}/mentions").respond_with_json({"title": "Unauthorized"}, status=401)

    result = poll_x_mentions()

    assert list(result) == ["error"]
    assert InboundCursor.objects.get(name=CURSOR).value == "1700000000000000009"
    assert not UserInteraction.objects.exists()


def test_the_offline_twin_feeds_the_same_path(settings: Settings) -> None:
    settings.X_BACKEND = "outbox"

    result = x_mentions_poll()

    assert result.skipped == ""
    assert UserInteraction.objects.filter(platform=Platform.X).count() == result.new


def test_engagement_leaves_telegram_updates_to_the_bot(settings: Settings) -> None:
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = "123:abc"
    settings.TELEGRAM_WEBHOOK_SECRET = ""
    assert telegram_updates_taken() is False

    now = timezone.now()
    Heartbeat.objects.create(kind=Heartbeat.Kind.BOT, name="telegram@host:1", started_at=now, last_seen=now)
    assert telegram_updates_taken() is True
    Heartbeat.objects.filter(name="telegram@host:1").update(stopped_at=now)
    assert telegram_updates_taken() is False

    settings.TELEGRAM_WEBHOOK_SECRET = "s3cret"
    assert telegram_updates_taken() is True
    settings.TELEGRAM_BACKEND = "outbox"
    assert telegram_updates_taken() is False
