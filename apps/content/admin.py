"""The content pipeline in the admin: plans with their drafts, draft review, what was published, the members'
library and media."""

from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars
from django.utils.safestring import SafeString

from apps.content.models import (
    ContentDraft,
    ContentPlan,
    DraftStatus,
    ExclusiveContent,
    Media,
    PublishedContent,
)
from apps.content.selectors import content_draft_waiting_count
from apps.content.services import (
    content_draft_approve,
    content_draft_reject,
    exclusive_content_archive,
    exclusive_content_publish,
)
from apps.core.admin import ReadOnlyTabularInline, SelectRelatedAdmin, bulk_status_action, pretty_json


class ContentDraftInline(ReadOnlyTabularInline):
    model = ContentDraft
    fields = ("status", "platform", "format", "generator", "excerpt", "created_at")

    @admin.display(description="body")
    def excerpt(self, obj: ContentDraft) -> str:
        return truncatechars(obj.body, 80)


@admin.register(ContentPlan)
class ContentPlanAdmin(SelectRelatedAdmin):
    list_display = ("topic", "platform", "format", "status", "scheduled_for", "priority", "insight")
    list_select_related = ("insight",)
    list_filter = ("status", "platform", "format")
    search_fields = ("topic", "insight__headline", "insight__symbol")
    date_hierarchy = "scheduled_for"
    autocomplete_fields = ("insight", "repurposed_from")
    fields = (
        "topic",
        "platform",
        "format",
        "status",
        "scheduled_for",
        "priority",
        "insight",
        "repurposed_from",
        "weights_pretty",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("weights_pretty", "created_at", "updated_at")
    inlines = (ContentDraftInline,)

    @admin.display(description="strategy weights")
    def weights_pretty(self, obj: ContentPlan) -> SafeString:
        return pretty_json(obj.weights)


class WaitingForApprovalFilter(admin.SimpleListFilter):
    """First in the sidebar, with the count: the drafts an operator has to approve or reject (production
    approves none by itself, CONTENT_AUTO_APPROVE_PLATFORMS)."""

    title = "approval"
    parameter_name = "waiting"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", f"Waiting for approval ({content_draft_waiting_count()})")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ContentDraft]) -> QuerySet[ContentDraft]:
        if self.value() == "yes":
            return queryset.filter(status=DraftStatus.PENDING_REVIEW)
        return queryset


@admin.register(ContentDraft)
class ContentDraftAdmin(SelectRelatedAdmin):
    list_display = (
        "__str__",
        "plan",
        "status",
        "generator",
        "variant",
        "approved_by",
        "approved_at",
        "created_at",
    )
    list_select_related = ("plan", "variant__test", "approved_by")
    list_filter = (WaitingForApprovalFilter, "status", "platform", "format", "generator")
    search_fields = ("body", "plan__topic")
    date_hierarchy = "created_at"
    autocomplete_fields = ("plan", "image", "variant")
    fields = (
        "plan",
        "platform",
        "format",
        "status",
        "body",
        "parts",
        "embed",
        "image",
        "generator",
        "variant",
        "checks_pretty",
        "approved_by",
        "approved_at",
        "publish_attempts",
        "last_error",
        "idempotency_key",
        "created_at",
        "updated_at",
    )
    readonly_fields = (
        "checks_pretty",
        "approved_by",
        "approved_at",
        "publish_attempts",
        "last_error",
        "idempotency_key",
        "created_at",
        "updated_at",
    )
    actions = ("approve", "reject")

    @admin.display(description="checks")
    def checks_pretty(self, obj: ContentDraft) -> SafeString:
        return pretty_json(obj.checks)

    approve = bulk_status_action(
        description="Approve selected drafts",
        change=lambda ids, user: content_draft_approve(draft_ids=ids, approved_by=user),
        message="Approved {changed} of {selected} selected drafts; only drafts pending review change.",
    )

    reject = bulk_status_action(
        description="Reject selected drafts",
        change=lambda ids, user: content_draft_reject(draft_ids=ids),
        message="Rejected {changed} of {selected} selected drafts; only drafts pending review change.",
    )


@admin.register(PublishedContent)
class PublishedContentAdmin(SelectRelatedAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = (
        "__str__",
        "platform",
        "format",
        "audience",
        "published_at",
        "engagement_rate",
        "metrics_updated_at",
    )
    list_filter = ("platform", "format", "audience")
    search_fields = ("text", "external_id", "url")
    date_hierarchy = "published_at"
    autocomplete_fields = ("draft", "exclusive_content")
    fields = (
        "platform",
        "format",
        "audience",
        "exclusive_content",
        "external_id",
        "part_ids",
        "url",
        "text",
        "published_at",
        "draft",
        "engagement_rate",
        "metrics_pretty",
        "metrics_updated_at",
    )
    readonly_fields = ("metrics_pretty", "engagement_rate", "metrics_updated_at")

    @admin.display(description="metrics")
    def metrics_pretty(self, obj: PublishedContent) -> SafeString:
        return pretty_json(obj.metrics)


@admin.register(ExclusiveContent)
class ExclusiveContentAdmin(SelectRelatedAdmin):
    list_display = (
        "title",
        "kind",
        "status",
        "published_at",
        "period_start",
        "required_entitlement",
        "author",
    )
    list_select_related = ("author",)
    list_filter = ("status", "kind", "required_entitlement")
    search_fields = ("title", "slug", "summary")
    date_hierarchy = "published_at"
    prepopulated_fields = {"slug": ("title",)}
    autocomplete_fields = ("media", "author")
    readonly_fields = ("created_at", "updated_at")
    actions = ("publish", "archive")

    publish = bulk_status_action(
        description="Publish selected to the members' library",
        change=lambda ids, user: exclusive_content_publish(content_ids=ids),
        message="Published {changed} of {selected} selected; the rest were already published.",
    )

    archive = bulk_status_action(
        description="Archive selected",
        change=lambda ids, user: exclusive_content_archive(content_ids=ids),
        message="Archived {changed} of {selected} selected; the rest were already archived.",
    )


@admin.register(Media)
class MediaAdmin(SelectRelatedAdmin):
    list_display = (
        "__str__",
        "kind",
        "content_type",
        "width",
        "height",
        "size_bytes",
        "is_exclusive",
        "created_at",
    )
    list_filter = ("kind", "is_exclusive", "content_type")
    search_fields = ("alt_text", "file", "sha256")
    date_hierarchy = "created_at"
    readonly_fields = ("sha256", "size_bytes", "created_at", "updated_at")
