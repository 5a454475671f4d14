"""Factories shared by the tests and the demo seed."""

from __future__ import annotations

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from apps.learning.models import Alert, AlertRule, StrategyChange


class StrategyChangeFactory(DjangoModelFactory[StrategyChange]):
    class Meta:
        model = StrategyChange

    agent_name = "content_strategist"
    parameter = "platform_weights"
    source = StrategyChange.Source.STRATEGY_TUNING
    status = StrategyChange.Status.PROPOSED
    reason = "Posts on X earned twice the engagement of Discord over the last fortnight."
    evidence = factory.LazyFunction(lambda: {"engagement_rate": {"x": 0.052, "discord": 0.026}, "posts": 84})
    target = factory.LazyFunction(lambda: {"x": 1.2, "telegram": 0.8, "discord": 0.5})


class AlertRuleFactory(DjangoModelFactory[AlertRule]):
    class Meta:
        model = AlertRule

    name = factory.Sequence(lambda n: f"Publishing keeps failing {n}")
    metric = "agent.success_rate"
    scope = "agent:publishing"
    comparison = AlertRule.Comparison.BELOW
    threshold = 0.9
    notify_platforms = factory.LazyFunction(lambda: ["discord"])
    cooldown_minutes = 60


class AlertFactory(DjangoModelFactory[Alert]):
    class Meta:
        model = Alert

    rule = factory.SubFactory(AlertRuleFactory)
    scope = factory.SelfAttribute("rule.scope")
    value = 0.5
    message = factory.LazyAttribute(
        lambda o: f"CoinLink alert: {o.rule.name}. {o.rule.metric} is {o.value:g}."
    )
    fired_at = factory.LazyFunction(timezone.now)
    delivered = factory.LazyFunction(
        lambda: {"discord": {"status": "sent", "external_id": "outbox-discord-1"}}
    )
