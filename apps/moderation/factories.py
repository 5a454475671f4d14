"""Factories shared by the tests and the demo seed."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from apps.community.factories import CommunityUserFactory
from apps.core.models import Platform
from apps.moderation.models import (
    ActionKind,
    ActionStatus,
    Appeal,
    BlockedDomain,
    ModerationAction,
    ModerationDecision,
    ModerationRule,
    Strike,
    TrainingLabel,
)


class ModerationRuleFactory(DjangoModelFactory[ModerationRule]):
    class Meta:
        model = ModerationRule
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"No giveaway scams {n}")
    kind = ModerationRule.Kind.SCAM
    pattern = "double your (btc|eth)\nsend .* to receive\nairdrop claim"
    action = ActionKind.DELETE_MESSAGE
    strike_weight = 2
    description = "Giveaway and doubling schemes are scams and are removed."


class ModerationActionFactory(DjangoModelFactory[ModerationAction]):
    class Meta:
        model = ModerationAction

    community_user = factory.SubFactory(CommunityUserFactory)
    platform = Platform.TELEGRAM
    action = ActionKind.WARN
    rule = factory.SubFactory(ModerationRuleFactory)
    reason = "Posted a giveaway scam link"
    status = ActionStatus.APPLIED
    applied_at = factory.LazyFunction(timezone.now)


class StrikeFactory(DjangoModelFactory[Strike]):
    class Meta:
        model = Strike

    action = factory.SubFactory(ModerationActionFactory)
    community_user = factory.SelfAttribute("action.community_user")
    rule = factory.SelfAttribute("action.rule")
    weight = 1
    expires_at = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(days=30))


class AppealFactory(DjangoModelFactory[Appeal]):
    class Meta:
        model = Appeal

    action = factory.SubFactory(ModerationActionFactory)
    community_user = factory.SelfAttribute("action.community_user")
    message = "That link was the official announcement, not a scam."


class ModerationDecisionFactory(DjangoModelFactory[ModerationDecision]):
    class Meta:
        model = ModerationDecision

    platform = Platform.TELEGRAM
    chat_id = "-1001234567890"
    message_id = factory.Sequence(lambda n: str(50_000 + n))
    author_id = factory.Sequence(lambda n: str(7_000_000 + n))
    author_username = factory.Sequence(lambda n: f"newcomer_{n}")
    community_user = factory.SubFactory(CommunityUserFactory)
    text = "Kindly DM the admin, he will help you restore your wallet with your seed phrase"
    sent_at = factory.LazyFunction(timezone.now)
    verdict = "remove"
    score = 0.99
    strike_weight = 3
    checks = factory.LazyFunction(
        lambda: [
            {
                "layer": "scam",
                "check": "seed_phrase",
                "score": 0.97,
                "reason": "asks for a seed phrase or private key",
                "evidence": {"phrase": "seed phrase", "asks": "restore"},
                "rule_id": None,
            }
        ]
    )
    check_names = "seed_phrase"
    classifier_score = 0.93


class TrainingLabelFactory(DjangoModelFactory[TrainingLabel]):
    class Meta:
        model = TrainingLabel

    text = "Vote for my tulip garden in the county flower contest via the poll in my bio"
    text_hash = factory.Sequence(lambda n: f"{n:064x}")
    label = TrainingLabel.Label.SPAM
    source = TrainingLabel.Source.OPERATOR


class BlockedDomainFactory(DjangoModelFactory[BlockedDomain]):
    class Meta:
        model = BlockedDomain
        django_get_or_create = ("domain",)

    domain = factory.Sequence(lambda n: f"drainer-{n}.example")
    source = BlockedDomain.Source.OPERATOR
    reason = "seen in a scam wave"
