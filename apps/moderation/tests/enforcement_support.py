"""What the enforcement and appeal tests share: a person on Discord and Telegram, scam messages from them, the
engine's judgement of those, and what the offline moderation twin recorded."""

from __future__ import annotations

import datetime as dt
import itertools

from django.utils import timezone

from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.community.models import CommunityUser
from apps.core.models import Platform
from apps.integrations.models import ModerationCall, OutboxMessage
from apps.moderation.engine.types import CheckHit, InboundMessage, Judgement, Verdict

GUILD = "555555555555555555"
DISCORD_CHANNEL = "666666666666666666"
TELEGRAM_GROUP = "-1001234567890"
COMMUNITY_CHAT = "-1009999999999"
DISCORD_ID = "4242424242424242"
TELEGRAM_ID = "4242"
SCAM_TEXT = "Hi, I'm from support. DM me your 12-word seed phrase and I'll fix your wallet"
_message_ids = itertools.count(1_311_000_000_000_000_001)

SEED_PHRASE = CheckHit(
    layer="scam",
    check="seed_phrase",
    score=0.97,
    reason="asks for a seed phrase",
    evidence={"phrase": "seed phrase"},
)
SUPPORT_SCAM = CheckHit(layer="scam", check="support_scam", score=0.9, reason="poses as support", evidence={})


def person_on_both(name: str = "Maya") -> CommunityUser:
    """One person, linked on Discord and on Telegram."""
    person = CommunityUserFactory.create(display_name=name)
    PlatformIdentityFactory.create(
        community_user=person,
        platform=Platform.DISCORD,
        external_id=DISCORD_ID,
        username="maya",
        linked_at=timezone.now(),
    )
    PlatformIdentityFactory.create(
        community_user=person,
        platform=Platform.TELEGRAM,
        external_id=TELEGRAM_ID,
        username="maya_tg",
        linked_at=timezone.now(),
    )
    return person


def scam(
    platform: str = Platform.DISCORD, *, text: str = SCAM_TEXT, author_id: str = "", **fields: object
) -> InboundMessage:
    author = author_id or (DISCORD_ID if platform == Platform.DISCORD else TELEGRAM_ID)
    chat = DISCORD_CHANNEL if platform == Platform.DISCORD else TELEGRAM_GROUP
    return InboundMessage(
        platform=platform,
        chat_id=str(fields.pop("chat_id", chat)),
        message_id=str(fields.pop("message_id", next(_message_ids))),
        author_id=author,
        text=text,
        sent_at=timezone.now() - dt.timedelta(seconds=1),
        **fields,  # type: ignore[arg-type]
    )


def removal(*checks: CheckHit, weight: int = 1, decision_id: int | None = None) -> Judgement:
    return Judgement(
        verdict=Verdict.REMOVE,
        score=max((c.score for c in checks), default=0.97),
        checks=checks or (SEED_PHRASE,),
        strike_weight=weight,
        decision_id=decision_id,
    )


def twin_calls() -> list[tuple[str, str, str, str]]:
    """(platform, operation, space, user or message) of every call the twin recorded, in order."""
    return [
        (platform, operation, space, user or message)
        for platform, operation, space, user, message in ModerationCall.objects.order_by("pk").values_list(
            "platform", "operation", "space", "user_external_id", "message_id"
        )
    ]


def direct_messages() -> list[tuple[str, str, str]]:
    """(platform, recipient channel, text) of every direct message the twin sent, in order."""
    return list(
        OutboxMessage.objects.filter(kind=OutboxMessage.Kind.DM)
        .order_by("pk")
        .values_list("platform", "channel", "text")
    )
