"""Factories shared by the tests and the demo seed."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from apps.accounts.factories import UserFactory
from apps.billing.models import (
    BillingCustomer,
    BillingInterval,
    ConversionAttempt,
    ConversionStatus,
    Entitlement,
    EntitlementSource,
    Plan,
    PlanPrice,
    StripeEvent,
    Subscription,
    SubscriptionStatus,
)
from apps.community.factories import CommunityUserFactory
from apps.core.models import Platform


class PlanFactory(DjangoModelFactory[Plan]):
    class Meta:
        model = Plan
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Pro {n}")
    slug = factory.Sequence(lambda n: f"pro-{n}")
    description = "Daily members-only analysis, the private Telegram channel and the members' Discord role."
    benefits = factory.LazyFunction(
        lambda: ["Weekly market report", "Private Telegram channel", "Members' Discord role"]
    )
    rank = 2
    trial_days = 7
    entitlement_keys = factory.LazyFunction(lambda: ["portal.premium"])


class PlanPriceFactory(DjangoModelFactory[PlanPrice]):
    class Meta:
        model = PlanPrice

    plan = factory.SubFactory(PlanFactory)
    interval = BillingInterval.MONTH
    amount_minor = 2900
    currency = "usd"


class BillingCustomerFactory(DjangoModelFactory[BillingCustomer]):
    class Meta:
        model = BillingCustomer

    user = factory.SubFactory(UserFactory)
    stripe_customer_id = factory.Sequence(lambda n: f"cus_demo{n:010d}")


class SubscriptionFactory(DjangoModelFactory[Subscription]):
    class Meta:
        model = Subscription

    user = factory.SubFactory(UserFactory)
    plan = factory.SubFactory(PlanFactory)
    price = factory.SubFactory(PlanPriceFactory, plan=factory.SelfAttribute("..plan"))
    stripe_subscription_id = factory.Sequence(lambda n: f"sub_demo{n:010d}")
    stripe_customer_id = factory.Sequence(lambda n: f"cus_demo{n:010d}")
    status = SubscriptionStatus.ACTIVE
    current_period_start = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=3))
    current_period_end = factory.LazyAttribute(lambda o: o.current_period_start + dt.timedelta(days=30))


class EntitlementFactory(DjangoModelFactory[Entitlement]):
    class Meta:
        model = Entitlement

    user = factory.SubFactory(UserFactory)
    key = "portal.premium"
    source = EntitlementSource.MANUAL
    starts_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=1))
    ends_at = factory.LazyAttribute(lambda o: o.starts_at + dt.timedelta(days=30))
    reason = "Demo grant"


class StripeEventFactory(DjangoModelFactory[StripeEvent]):
    class Meta:
        model = StripeEvent

    stripe_id = factory.Sequence(lambda n: f"evt_demo{n:014d}")
    type = "customer.subscription.updated"
    api_version = "2025-08-27.basil"
    stripe_created = factory.LazyFunction(timezone.now)
    payload = factory.LazyAttribute(lambda o: {"id": o.stripe_id, "object": "event", "type": o.type})


class ConversionAttemptFactory(DjangoModelFactory[ConversionAttempt]):
    class Meta:
        model = ConversionAttempt

    community_user = factory.SubFactory(CommunityUserFactory)
    platform = Platform.TELEGRAM
    offer_kind = ConversionAttempt.OfferKind.TRIAL_LINK
    score = 0.8
    score_breakdown = factory.LazyFunction(lambda: {"recency": 0.4, "frequency": 0.3, "kind": 0.1})
    message = "You've been one of our most active members this month: here's a 7-day trial of Pro."
    status = ConversionStatus.SENT
    sent_at = factory.LazyFunction(timezone.now)
