"""Money in the admin: plans with their prices, customers, subscriptions, the entitlement ledger, the offer
funnel, and Stripe's events (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.utils.safestring import SafeString

from apps.billing.models import (
    BillingCustomer,
    ConversionAttempt,
    Entitlement,
    Plan,
    PlanPrice,
    StripeEvent,
    Subscription,
)
from apps.core.admin import ReadOnlyAdmin, SelectRelatedAdmin, preformatted, pretty_json
from apps.core.models import format_money


class PlanPriceInline(admin.TabularInline):
    model = PlanPrice
    fields = ("interval", "amount_minor", "currency", "stripe_price_id", "is_active")
    extra = 0


@admin.register(Plan)
class PlanAdmin(SelectRelatedAdmin):
    list_display = ("name", "slug", "rank", "trial_days", "grace_days", "is_active", "stripe_product_id")
    list_filter = ("is_active",)
    search_fields = ("name", "slug", "stripe_product_id")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("created_at", "updated_at")
    inlines = (PlanPriceInline,)


@admin.register(PlanPrice)
class PlanPriceAdmin(SelectRelatedAdmin):
    list_display = ("__str__", "plan", "interval", "amount", "is_active", "stripe_price_id")
    list_select_related = ("plan",)
    list_filter = ("is_active", "interval", "currency", "plan")
    search_fields = ("plan__name", "stripe_price_id")
    autocomplete_fields = ("plan",)
    readonly_fields = ("created_at", "updated_at")

    @admin.display(description="amount", ordering="amount_minor")
    def amount(self, obj: PlanPrice) -> str:
        return format_money(obj.amount_minor, obj.currency)


@admin.register(BillingCustomer)
class BillingCustomerAdmin(SelectRelatedAdmin):
    list_display = ("stripe_customer_id", "user", "created_at", "deleted_at")
    list_select_related = ("user",)
    search_fields = ("stripe_customer_id", "user__email")
    autocomplete_fields = ("user",)
    readonly_fields = ("created_at", "updated_at")
    ordering = ("-created_at",)


@admin.register(Subscription)
class SubscriptionAdmin(SelectRelatedAdmin):
    list_display = (
        "user",
        "plan",
        "price",
        "status",
        "current_period_end",
        "cancel_at_period_end",
        "past_due_since",
        "stripe_subscription_id",
    )
    list_select_related = ("user", "plan", "price__plan")
    list_filter = ("status", "cancel_at_period_end", "plan")
    search_fields = ("user__email", "stripe_subscription_id", "stripe_customer_id")
    date_hierarchy = "created_at"
    autocomplete_fields = ("user", "plan", "price")
    readonly_fields = ("stripe_synced_at", "created_at", "updated_at")


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    list_display = (
        "stripe_id",
        "type",
        "status",
        "attempts",
        "livemode",
        "stripe_created",
        "received_at",
        "processed_at",
    )
    list_filter = ("status", "livemode", "type")
    search_fields = ("stripe_id", "type")
    date_hierarchy = "received_at"
    show_full_result_count = False
    fields = (
        "stripe_id",
        "type",
        "api_version",
        "livemode",
        "status",
        "attempts",
        "stripe_created",
        "received_at",
        "processed_at",
        "error_pretty",
        "payload_pretty",
    )
    readonly_fields = ("received_at", "error_pretty", "payload_pretty")

    @admin.display(description="payload")
    def payload_pretty(self, obj: StripeEvent) -> SafeString:
        return pretty_json(obj.payload)

    @admin.display(description="error")
    def error_pretty(self, obj: StripeEvent) -> SafeString:
        return preformatted(obj.error)


@admin.register(Entitlement)
class EntitlementAdmin(SelectRelatedAdmin):
    list_display = (
        "user",
        "key",
        "source",
        "starts_at",
        "ends_at",
        "revoked_at",
        "sync_status",
        "granted_by",
    )
    list_select_related = ("user", "granted_by")
    list_filter = ("source", "sync_status", "key")
    search_fields = ("user__email", "key", "reason")
    date_hierarchy = "starts_at"
    autocomplete_fields = ("user", "subscription", "granted_by")
    readonly_fields = ("sync_status", "sync_attempts", "synced_at", "sync_error", "created_at", "updated_at")


@admin.register(ConversionAttempt)
class ConversionAttemptAdmin(SelectRelatedAdmin):
    list_display = (
        "community_user",
        "offer_kind",
        "platform",
        "plan",
        "variant",
        "status",
        "score",
        "sent_at",
        "clicked_at",
        "converted_at",
    )
    list_select_related = ("community_user", "plan", "variant__test")
    list_filter = ("status", "offer_kind", "platform", "plan")
    search_fields = ("community_user__display_name", "promotion_code", "message")
    date_hierarchy = "created_at"
    autocomplete_fields = ("community_user", "plan", "variant", "subscription")
    fields = (
        "community_user",
        "platform",
        "plan",
        "offer_kind",
        "promotion_code",
        "variant",
        "message",
        "status",
        "score",
        "score_breakdown_pretty",
        "sent_at",
        "clicked_at",
        "converted_at",
        "subscription",
        "error",
        "token",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("score_breakdown_pretty", "token", "created_at", "updated_at")

    @admin.display(description="why chosen")
    def score_breakdown_pretty(self, obj: ConversionAttempt) -> SafeString:
        return pretty_json(obj.score_breakdown)
