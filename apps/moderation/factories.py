"""Factories shared by the tests and the demo seed."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from apps.community.factories import CommunityUserFactory
from apps.core.models import Platform
from apps.moderation.models import ActionKind, ActionStatus, Appeal, ModerationAction, ModerationRule, Strike


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
