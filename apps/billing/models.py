"""Money: plans and prices, Stripe customers and subscriptions, Stripe events, the entitlement ledger and the
offer funnel. Amounts are integer minor units with a currency."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import Currency, Platform, TimeStampedModel, format_money


class Plan(TimeStampedModel):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    description = models.TextField(blank=True)
    benefits = models.JSONField(default=list, blank=True, help_text="Lines shown on the plans page")
    rank = models.PositiveSmallIntegerField(default=1, help_text="Higher tiers have a higher rank")
    trial_days = models.PositiveSmallIntegerField(default=0)
    entitlement_keys = models.JSONField(
        default=list,
        blank=True,
        help_text='What a paying member gets, e.g. ["portal.premium", "discord.role:123", "telegram.channel:-100"]',
    )
    grace_days = models.PositiveSmallIntegerField(default=3, help_text="Days of access kept while past due")
    grace_entitlement_keys = models.JSONField(
        default=list,
        blank=True,
        help_text="What is kept during grace; empty keeps everything",
    )
    stripe_product_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        db_table = "plans"
        ordering = ["rank", "name"]

    def __str__(self) -> str:
        return self.name


class BillingInterval(models.TextChoices):
    MONTH = "month", "Monthly"
    YEAR = "year", "Yearly"


class PlanPrice(TimeStampedModel):
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="prices")
    interval = models.CharField(max_length=5, choices=BillingInterval.choices)
    amount_minor = models.PositiveIntegerField(help_text="In minor units (cents)")
    currency = models.CharField(max_length=3, choices=Currency.choices, default=Currency.USD)
    stripe_price_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        db_table = "plan_prices"
        ordering = ["plan__rank", "interval"]
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "interval", "currency"],
                condition=Q(is_active=True),
                name="plan_prices_one_active_per_interval",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan.name} {format_money(self.amount_minor, self.currency)}/{self.interval}"

    @property
    def monthly_amount_minor(self) -> int:
        return self.amount_minor if self.interval == BillingInterval.MONTH else round(self.amount_minor / 12)


class BillingCustomer(TimeStampedModel):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="billing_customer"
    )
    stripe_customer_id = models.CharField(max_length=64, unique=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "billing_customers"

    def __str__(self) -> str:
        return f"{self.stripe_customer_id} ({self.user})"


class SubscriptionStatus(models.TextChoices):
    INCOMPLETE = "incomplete", "Incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete, expired"
    TRIALING = "trialing", "Trialing"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    UNPAID = "unpaid", "Unpaid"
    CANCELED = "canceled", "Canceled"
    PAUSED = "paused", "Paused"


class Subscription(TimeStampedModel):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    price = models.ForeignKey(PlanPrice, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    stripe_subscription_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    stripe_customer_id = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(
        max_length=20, choices=SubscriptionStatus.choices, default=SubscriptionStatus.INCOMPLETE
    )
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    past_due_since = models.DateTimeField(null=True, blank=True)
    stripe_synced_at = models.DateTimeField(
        null=True, blank=True, help_text="Time of the Stripe state this row reflects; older news is ignored"
    )

    class Meta:
        db_table = "subscriptions"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "status"], name="subscriptions_by_user"),
            models.Index(fields=["status", "current_period_end"], name="subscriptions_renewals"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.plan} · {self.get_status_display()}"


class StripeEventStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSING = "processing", "Processing"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored (no handler)"
    FAILED = "failed", "Failed"


class StripeEvent(models.Model):
    stripe_id = models.CharField(max_length=64, unique=True)
    type = models.CharField(max_length=80, db_index=True)
    api_version = models.CharField(max_length=40, blank=True)
    livemode = models.BooleanField(default=False)
    stripe_created = models.DateTimeField(help_text="When Stripe created the event")
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=StripeEventStatus.choices, default=StripeEventStatus.RECEIVED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Who moved it to processing, and when: a redelivery of that same task takes a row its lost worker left
    # processing over, and the periodic sweep puts back one left there past any task's time limit.
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=255, blank=True, help_text="Celery task id of the last claim")
    error = models.TextField(blank=True)

    class Meta:
        db_table = "stripe_events"
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["status", "received_at"], name="stripe_events_pending")]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_id}"


class EntitlementSource(models.TextChoices):
    SUBSCRIPTION = "subscription", "Subscription"
    TRIAL = "trial", "Trial"
    GRACE = "grace", "Grace period"
    COMPLIMENTARY = "complimentary", "Complimentary"
    MANUAL = "manual", "Manual grant"


class SyncStatus(models.TextChoices):
    NOT_NEEDED = "not_needed", "Not needed"
    PENDING = "pending", "Pending"
    SYNCED = "synced", "Synced"
    FAILED = "failed", "Failed, retrying"


class Entitlement(TimeStampedModel):
    """The one ledger of who may use what. Keys: ``portal.premium``, ``discord.role:<role id>``,
    ``telegram.channel:<chat id>``. A row is in force between ``starts_at`` and ``ends_at`` unless revoked."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="entitlements")
    key = models.CharField(max_length=80)
    source = models.CharField(max_length=14, choices=EntitlementSource.choices)
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.CASCADE, related_name="entitlements"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Empty means until revoked")
    revoked_at = models.DateTimeField(null=True, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=200, blank=True)
    sync_status = models.CharField(max_length=10, choices=SyncStatus.choices, default=SyncStatus.NOT_NEEDED)
    sync_attempts = models.PositiveSmallIntegerField(default=0)
    synced_at = models.DateTimeField(null=True, blank=True)
    sync_error = models.TextField(blank=True)

    class Meta:
        db_table = "entitlements"
        ordering = ["-starts_at"]
        indexes = [
            models.Index(fields=["user", "key", "ends_at"], name="entitlements_lookup"),
            models.Index(fields=["key", "ends_at"], name="entitlements_by_key"),
            models.Index(fields=["sync_status"], name="entitlements_sync_queue"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__isnull=True) | Q(ends_at__gt=models.F("starts_at")),
                name="entitlements_ends_after_start",
            ),
            models.CheckConstraint(
                condition=~Q(source__in=["subscription", "trial", "grace"]) | Q(subscription__isnull=False),
                name="entitlements_subscription_source_has_subscription",
            ),
        ]

    def __str__(self) -> str:
        until = f"until {self.ends_at:%Y-%m-%d}" if self.ends_at else "open-ended"
        return f"{self.user} · {self.key} · {self.get_source_display()} {until}"


class ConversionStatus(models.TextChoices):
    SENT = "sent", "Sent"
    CLICKED = "clicked", "Clicked"
    CONVERTED = "converted", "Converted"
    IGNORED = "ignored", "Ignored"
    FAILED = "failed", "Failed to send"


class ConversionAttempt(TimeStampedModel):
    class OfferKind(models.TextChoices):
        PROMOTION_CODE = "promotion_code", "Promotion code"
        TRIAL_LINK = "trial_link", "Trial link"

    community_user = models.ForeignKey(
        "community.CommunityUser", on_delete=models.CASCADE, related_name="conversion_attempts"
    )
    platform = models.CharField(max_length=12, choices=Platform.choices)
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    offer_kind = models.CharField(max_length=16, choices=OfferKind.choices)
    promotion_code = models.CharField(max_length=64, blank=True)
    token = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, help_text="Tracks the click")
    variant = models.ForeignKey(
        "experiments.ABTestVariant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    score = models.FloatField(default=0.0)
    score_breakdown = models.JSONField(default=dict, blank=True, help_text="Why this person was chosen")
    message = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=ConversionStatus.choices, default=ConversionStatus.SENT)
    sent_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversion_attempts"
    )
    error = models.TextField(blank=True)

    class Meta:
        db_table = "conversion_attempts"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["community_user", "-sent_at"], name="conversion_cooldown"),
            models.Index(fields=["status", "-sent_at"], name="conversion_funnel"),
        ]

    def __str__(self) -> str:
        return f"{self.get_offer_kind_display()} to {self.community_user} ({self.get_status_display()})"


class CheckoutTwinSessionStatus(models.TextChoices):
    OPEN = "open", "Open"
    COMPLETE = "complete", "Complete"
    EXPIRED = "expired", "Expired"


class CheckoutTwinSession(TimeStampedModel):
    """A checkout session of the local checkout twin, the stand-in for Stripe Checkout when no Stripe key is
    configured (never in production). It keeps what Stripe keeps for a session, so paying it can replay the
    same subscription the real webhook would deliver."""

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="checkout_twin_sessions"
    )
    price = models.ForeignKey(PlanPrice, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(
        max_length=8, choices=CheckoutTwinSessionStatus.choices, default=CheckoutTwinSessionStatus.OPEN
    )
    trial_period_days = models.PositiveSmallIntegerField(null=True, blank=True)
    customer = models.CharField(max_length=64, blank=True, help_text="The existing Stripe customer, if any")
    customer_email = models.EmailField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    success_url = models.CharField(max_length=500)
    cancel_url = models.CharField(max_length=500)
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    stripe_subscription_id = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "checkout_twin_sessions"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.id} ({self.get_status_display()})"


class OnboardingStepKey(models.TextChoices):
    WELCOME = "welcome", "Welcome"
    LINK_ACCOUNTS = "link_accounts", "Link your accounts"
    TELEGRAM_INVITE = "telegram_invite", "Your Telegram invite"
    FIRST_EXCLUSIVE = "first_exclusive", "First exclusive piece"


class OnboardingStepStatus(models.TextChoices):
    PENDING = "pending", "Sending"
    SENT = "sent", "Sent"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


class OnboardingChannel(models.TextChoices):
    EMAIL = "email", "Email"
    TELEGRAM = "telegram", "Telegram"
    DISCORD = "discord", "Discord"


class OnboardingStep(models.Model):
    """One step of a new member's welcome sequence, at most once per member: the row is claimed (``pending``)
    before anything is sent, so a step is never delivered twice, and settles as sent, skipped (its goal was
    already met, with the reason) or failed (with the error)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="onboarding_steps"
    )
    step = models.CharField(max_length=20, choices=OnboardingStepKey.choices)
    status = models.CharField(
        max_length=8, choices=OnboardingStepStatus.choices, default=OnboardingStepStatus.PENDING
    )
    channel = models.CharField(
        max_length=8,
        choices=OnboardingChannel.choices,
        blank=True,
        help_text="Where it reached the member: a direct message when one went out, else email",
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    detail = models.TextField(
        blank=True, help_text="What was delivered where, why it was skipped, or the error"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "onboarding_steps"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "step"], name="onboarding_steps_once_per_member"),
        ]

    def __str__(self) -> str:
        return f"{self.get_step_display()} for {self.user} ({self.get_status_display()})"
