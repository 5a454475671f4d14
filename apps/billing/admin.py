"""Money in the admin: plans with their prices, customers, subscriptions, the entitlement ledger, the offer
funnel, new members' onboarding steps (read-only), and Stripe's events (read-only, but a failed one can be
processed again)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from apps.accounts.models import User
from apps.billing.models import (
    BillingCustomer,
    CheckoutTwinSession,
    ConversionAttempt,
    Entitlement,
    OnboardingStep,
    Plan,
    PlanPrice,
    StripeEvent,
    Subscription,
)
from apps.billing.services.entitlements import (
    entitlement_grant_complimentary,
    entitlement_key_validate,
    entitlement_revoke,
)
from apps.billing.services.webhooks import stripe_events_requeue
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
    actions = ("process_again",)

    @admin.action(description="Process the selected events again")
    def process_again(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        # Safe for any operator who may read the events: processing re-reads Stripe and changes only what
        # Stripe's current state calls for.
        total = queryset.count()
        queued = stripe_events_requeue(event_ids=queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            f"Queued {queued} of {total} selected events; processed ones are left alone.",
            messages.INFO,
        )

    @admin.display(description="payload")
    def payload_pretty(self, obj: StripeEvent) -> SafeString:
        return pretty_json(obj.payload)

    @admin.display(description="error")
    def error_pretty(self, obj: StripeEvent) -> SafeString:
        return preformatted(obj.error)


class ComplimentaryGrantForm(forms.Form):
    user = forms.ModelChoiceField(
        queryset=User.objects.all(),
        widget=AutocompleteSelect(Entitlement._meta.get_field("user"), admin.site),
    )
    keys = forms.CharField(
        max_length=500,
        widget=forms.TextInput(attrs={"size": 60}),
        help_text="Comma-separated, e.g. portal.premium, discord.role:123456789012345678",
    )
    days = forms.IntegerField(
        min_value=1, max_value=3650, initial=30, help_text="Access ends by itself after this"
    )
    reason = forms.CharField(max_length=200, widget=forms.TextInput(attrs={"size": 60}))

    def clean_keys(self) -> list[str]:
        keys: list[str] = []
        errors: list[ValidationError] = []
        for raw in self.cleaned_data["keys"].replace("\n", ",").split(","):
            if not raw.strip():
                continue
            try:
                keys.append(entitlement_key_validate(raw))
            except ValidationError as exc:
                errors.append(exc)
        if errors:
            raise ValidationError(errors)
        if not keys:
            raise ValidationError("Name at least one key.")
        return list(dict.fromkeys(keys))


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
    actions = ("revoke",)

    def get_urls(self) -> list[URLPattern]:
        grant = path(
            "grant-complimentary/",
            self.admin_site.admin_view(self.grant_complimentary_view),
            name="billing_entitlement_grant_complimentary",
        )
        return [grant, *super().get_urls()]

    def grant_complimentary_view(self, request: HttpRequest) -> HttpResponse:
        """Give a user keys for some days, free: the operator's way to open access outside Stripe."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ComplimentaryGrantForm(request.POST or None, initial={"user": request.GET.get("user")})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            ends_at = timezone.now() + dt.timedelta(days=data["days"])
            user = data["user"]
            operator = request.user if isinstance(request.user, User) else None
            rows = entitlement_grant_complimentary(
                user=user, keys=data["keys"], ends_at=ends_at, granted_by=operator, reason=data["reason"]
            )
            for row in rows:
                self.log_addition(
                    request, row, f"Complimentary grant for {data['days']} days: {data['reason']}"
                )
            self.message_user(
                request,
                f"{user} has {', '.join(data['keys'])} until at least {ends_at:%Y-%m-%d %H:%M} UTC.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(
                reverse("admin:billing_entitlement_changelist") + f"?user__id__exact={user.pk}"
            )
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Grant complimentary access",
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/billing/entitlement/grant_complimentary.html", context)

    @admin.action(description="Revoke the selected entitlements now", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Entitlement]) -> None:
        total = queryset.count()
        changes = entitlement_revoke(
            entitlement_ids=queryset.values_list("pk", flat=True), reason=f"by {request.user}"
        )
        self.message_user(
            request,
            f"Revoked {len(changes)} of {total} selected; the rest were already revoked.",
            messages.INFO,
        )


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


@admin.register(CheckoutTwinSession)
class CheckoutTwinSessionAdmin(ReadOnlyAdmin):
    """The local checkout twin's sessions (development only), to follow a demo checkout."""

    list_display = ("id", "user", "price", "status", "trial_period_days", "created_at", "completed_at")
    list_filter = ("status",)
    search_fields = ("id", "user__email", "stripe_subscription_id")
    list_select_related = ("user", "price__plan")
    date_hierarchy = "created_at"


@admin.register(OnboardingStep)
class OnboardingStepAdmin(ReadOnlyAdmin):
    """What the onboarding agent sent each new member, skipped (and why) or failed to send."""

    list_display = ("user", "step", "status", "channel", "sent_at", "created_at")
    list_filter = ("step", "status", "channel")
    search_fields = ("user__email", "detail")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    fields = ("user", "step", "status", "channel", "sent_at", "detail", "created_at")
    readonly_fields = ("created_at",)
