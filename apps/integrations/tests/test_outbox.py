"""The offline publishing twin: records what would be sent, once per idempotency key; plays a deterministic
audience with stable event ids; reports metrics that grow with a post's age."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import sys
from typing import Any, cast

import pytest
import time_machine
from django.conf import settings as settings_module
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.integrations.models import OutboxMessage
from apps.integrations.publishers import get_publisher
from apps.integrations.publishers.outbox import OutboxPublisher, personas
from apps.integrations.types import OutboundPost

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _post(platform: str = "x", key: str = "draft-1", **kwargs: Any) -> OutboundPost:
    return OutboundPost(
        platform=platform, text="BTC is up 3.40% over the last 24 hours. #BTC", idempotency_key=key, **kwargs
    )


def test_publish_records_exactly_what_would_be_sent(settings: Any) -> None:
    settings.SITE_URL = "https://coinlink.example"
    post = _post(
        "discord",
        parts=("part one", "part two"),
        embed={"title": "BTC", "description": "up"},
        image=PNG,
        image_name="btc.png",
        channel="123",
    )

    result = OutboxPublisher("discord").publish(post)

    row = OutboxMessage.objects.get()
    assert result.external_id == f"outbox-discord-{row.pk}" == row.external_id
    assert result.part_ids == (row.external_id, f"{row.external_id}-2")
    assert (
        result.url == f"https://coinlink.example/admin/integrations/outboxmessage/{row.pk}/change/" == row.url
    )
    assert (row.platform, row.channel, row.kind, row.text) == ("discord", "123", "post", post.text)
    assert row.parts == ["part one", "part two"]
    assert row.embed == {"title": "BTC", "description": "up"}
    assert row.has_image
    assert str(row.image.name).endswith(".png")
    assert row.image.read() == PNG
    assert row.idempotency_key == "draft-1"


def test_the_same_idempotency_key_is_recorded_once() -> None:
    outbox = OutboxPublisher("x")

    first = outbox.publish(_post())
    again = outbox.publish(_post())  # a retried publish

    assert again == first
    assert OutboxMessage.objects.count() == 1
    # The key is per platform: the same draft key on another platform is another message.
    other = OutboxPublisher("telegram").publish(_post("telegram"))
    assert other.external_id != first.external_id
    assert OutboxMessage.objects.count() == 2


def test_replies_and_direct_messages_are_told_apart(settings: Any) -> None:
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"
    outbox = OutboxPublisher("telegram")

    outbox.publish(_post("telegram", key="a"))
    outbox.publish(_post("telegram", key="b", reply_to="42"))
    outbox.publish(_post("telegram", key="c", channel="dm:777"))

    rows = OutboxMessage.objects.order_by("pk")
    assert [(r.kind, r.channel, r.reply_to) for r in rows] == [
        ("post", "@coinlink", ""),
        ("reply", "@coinlink", "42"),
        ("dm", "dm:777", ""),
    ]


def test_the_audience_answers_each_post_with_stable_ids() -> None:
    outbox = OutboxPublisher("x")
    with time_machine.travel(T0, tick=False):
        first = outbox.publish(_post(key="one"))
        second = outbox.publish(_post(key="two"))
        assert outbox.fetch_inbound(since=None) == []  # nobody answers within the first minutes

    with time_machine.travel(T0 + dt.timedelta(days=2), tick=False):
        events = outbox.fetch_inbound(since=None)
        again = outbox.fetch_inbound(since=None)

    assert events == again
    assert len({e.external_id for e in events}) == len(events)
    by_post = {
        pid: [e for e in events if e.external_id.startswith(f"{pid}:")]
        for pid in (first.external_id, second.external_id)
    }
    assert all(2 <= len(group) <= 5 for group in by_post.values())
    cast = {p["x"]["id"]: p for p in personas() if "x" in p}
    for event in events:
        assert event.platform == "x"
        assert event.kind in {"reply", "mention", "dm"}
        assert event.author_id in cast
        assert event.author_username == cast[event.author_id]["x"]["username"]
        assert T0 < event.occurred_at <= T0 + dt.timedelta(hours=36, minutes=2)
        assert event.text
        if event.kind == "dm":
            assert event.channel == f"dm:{event.author_id}"
            assert event.in_reply_to == ""
        else:
            assert event.in_reply_to in {first.external_id, second.external_id}


def test_the_audience_arrives_over_time_and_since_filters() -> None:
    outbox = OutboxPublisher("discord")
    with time_machine.travel(T0, tick=False):
        outbox.publish(_post("discord"))
    with time_machine.travel(T0 + dt.timedelta(days=3), tick=False):
        everything = outbox.fetch_inbound(since=None)
    assert everything

    middle = everything[len(everything) // 2].occurred_at
    with time_machine.travel(middle, tick=False):
        so_far = outbox.fetch_inbound(since=None)
    with time_machine.travel(T0 + dt.timedelta(days=3), tick=False):
        later = outbox.fetch_inbound(since=middle)

    assert so_far == [e for e in everything if e.occurred_at <= middle]
    assert later == [e for e in everything if e.occurred_at > middle]
    # A post older than the audience's week gets no new attention.
    with time_machine.travel(T0 + dt.timedelta(days=8), tick=False):
        assert outbox.fetch_inbound(since=None) == []


def test_the_audience_includes_people_the_moderator_should_see() -> None:
    outbox = OutboxPublisher("telegram")
    with time_machine.travel(T0, tick=False):
        for n in range(25):
            outbox.publish(_post("telegram", key=f"k{n}"))
    with time_machine.travel(T0 + dt.timedelta(days=2), tick=False):
        events = outbox.fetch_inbound(since=None)

    styles = {p["telegram"]["id"]: p["style"] for p in personas() if "telegram" in p}
    assert {"comment", "dm"} == {e.kind for e in events}
    assert "spammer" in {styles[e.author_id] for e in events}
    assert any("?" in e.text for e in events)


def test_metrics_grow_with_age_and_are_deterministic() -> None:
    outbox = OutboxPublisher("x")
    with time_machine.travel(T0, tick=False):
        post = outbox.publish(_post())
    readings = []
    for hours in (1, 6, 48):
        with time_machine.travel(T0 + dt.timedelta(hours=hours), tick=False):
            (metrics,) = outbox.fetch_metrics([post.external_id, "outbox-x-999999"])
            assert outbox.fetch_metrics([post.external_id]) == [metrics]
            readings.append(metrics.metrics)

    assert metrics.external_id == post.external_id
    assert set(readings[0]) == {"impressions", "likes", "reposts", "replies", "quotes", "bookmarks"}
    impressions = [r["impressions"] for r in readings]
    assert impressions == sorted(impressions)
    assert impressions[0] < impressions[-1]
    # Replies in the metrics are the replies the audience has actually made by then.
    with time_machine.travel(T0 + dt.timedelta(hours=48), tick=False):
        replies = [e for e in outbox.fetch_inbound(since=None) if e.kind == "reply"]
    assert readings[-1]["replies"] == len(replies)


def test_metric_names_per_platform() -> None:
    with time_machine.travel(T0, tick=False):
        telegram = OutboxPublisher("telegram").publish(_post("telegram"))
        discord = OutboxPublisher("discord").publish(_post("discord"))
    with time_machine.travel(T0 + dt.timedelta(hours=12), tick=False):
        (t,) = OutboxPublisher("telegram").fetch_metrics([telegram.external_id])
        (d,) = OutboxPublisher("discord").fetch_metrics([discord.external_id])
    assert set(t.metrics) == {"views", "reactions", "forwards"}
    assert set(d.metrics) == {"reactions", "replies"}
    assert t.metrics["views"] > 0


def test_personas_cover_every_platform() -> None:
    cast = personas()
    assert 35 <= len(cast) <= 45
    for platform in ("x", "telegram", "discord"):
        ids = [p[platform]["id"] for p in cast if platform in p]
        assert len(ids) >= 20
        assert len(set(ids)) == len(ids)


def test_get_publisher_picks_the_backend(settings: Any) -> None:
    for platform in ("x", "telegram", "discord"):
        publisher = get_publisher(platform)
        assert isinstance(publisher, OutboxPublisher)
        assert publisher.platform == platform

    settings.X_BACKEND = "api"
    settings.X_CONSUMER_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="X_BACKEND=api needs X_CONSUMER_KEY"):
        get_publisher("x")
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = "123:abc"
    settings.TELEGRAM_CHANNEL_ID = ""
    with pytest.raises(ImproperlyConfigured, match="TELEGRAM_CHANNEL_ID"):
        get_publisher("telegram")
    settings.DISCORD_BACKEND = "api"
    settings.DISCORD_BOT_TOKEN = ""
    settings.DISCORD_WEBHOOK_URL = ""
    with pytest.raises(ImproperlyConfigured, match="DISCORD_BOT_TOKEN"):
        get_publisher("discord")
    with pytest.raises(ValueError, match="mastodon"):
        get_publisher("mastodon")


def test_the_outbox_admin_is_read_only(client: Client) -> None:
    OutboxPublisher("x").publish(_post())
    row = OutboxMessage.objects.get()
    client.force_login(cast(User, UserFactory(staff=True)))

    changelist = client.get(reverse("admin:integrations_outboxmessage_changelist"), {"q": "BTC"})
    change = client.get(reverse("admin:integrations_outboxmessage_change", args=[row.pk]))

    assert changelist.status_code == 200
    assert row.external_id in changelist.content.decode()
    assert change.status_code == 200
    assert not change.context["has_change_permission"]
    assert client.get(reverse("admin:integrations_outboxmessage_add")).status_code == 403


@pytest.mark.deploy
def test_production_refuses_an_api_backend_without_its_credentials(tmp_path: Any) -> None:
    env = {
        **os.environ,
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "coinlink.example",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "X_BACKEND": "api",
        "X_CONSUMER_KEY": "ck",
    }
    for name in ("X_CONSUMER_SECRET", "X_ACCESS_TOKEN", "X_ACCESS_TOKEN_SECRET"):
        env.pop(name, None)

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings_module.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode != 0
    assert "X_BACKEND=api needs X_CONSUMER_SECRET, X_ACCESS_TOKEN, X_ACCESS_TOKEN_SECRET" in result.stderr
