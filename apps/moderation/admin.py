"""Moderation in the admin: rules, the actions taken, strikes and appeals."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Case, Model, QuerySet, When
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import truncatechars
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.accounts.models import User
from apps.core.admin import (
    ReadOnlyAdmin,
    ReadOnlyTabularInline,
    SelectRelatedAdmin,
    bulk_status_action,
    preformatted,
    pretty_json,
)
from apps.moderation.engine.text import normalise_domain
from apps.moderation.models import (
    ActionKind,
    Appeal,
    BlockedDomain,
    ClassifierTraining,
    ModerationAction,
    ModerationDecision,
    ModerationPolicy,
    ModerationRule,
    PlatformOperation,
    Strike,
    TrainingLabel,
)
from apps.moderation.services.appeals import appeals_decide
from apps.moderation.services.domains import blocked_domains_refresh, engine_config_changed
from apps.moderation.services.enforcement import (
    moderation_lift_for,
    moderation_operations_retry,
    moderation_policy_get,
)
from apps.moderation.services.labels import classifier_retrain, moderation_label


class ModerationRuleForm(forms.ModelForm):
    class Meta:
        model = ModerationRule
        fields = "__all__"  # noqa: DJ007 - the operator edits every field of a rule

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind, pattern = data.get("kind"), data.get("pattern", "")
        if kind in {"regex", "scam"}:
            for line in filter(None, (line.strip() for line in pattern.splitlines())):
                try:
                    re.compile(line)
                except re.error as exc:
                    raise forms.ValidationError(
                        {"pattern": f"{line!r} is not a regular expression: {exc}"}
                    ) from exc
        needs_limit = {"flood", "duplicate", "mentions", "emojis", "links", "length"}
        if kind in needs_limit and not data.get("limit"):
            raise forms.ValidationError({"limit": "This kind of rule needs a limit."})
        if not 0 <= (data.get("score") or 0) <= 1:
            raise forms.ValidationError({"score": "A score is between 0 and 1."})
        return data


@admin.register(ModerationRule)
class ModerationRuleAdmin(SelectRelatedAdmin):
    """Rules of the engine's first layer; every change reaches every bot and worker within seconds."""

    form = ModerationRuleForm
    list_display = (
        "name",
        "kind",
        "limit",
        "window_seconds",
        "score",
        "new_members_only",
        "action",
        "strike_weight",
        "is_active",
        "updated_at",
    )
    list_filter = ("is_active", "kind", "action", "new_members_only")
    search_fields = ("name", "pattern", "description")
    readonly_fields = ("created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: ModerationRule, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        engine_config_changed()

    def delete_model(self, request: HttpRequest, obj: ModerationRule) -> None:
        super().delete_model(request, obj)
        engine_config_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModerationRule]) -> None:
        super().delete_queryset(request, queryset)
        engine_config_changed()


class PlatformOperationInline(ReadOnlyTabularInline):
    model = PlatformOperation
    fields = (
        "platform",
        "operation",
        "space",
        "user_external_id",
        "until",
        "status",
        "attempts",
        "error",
        "applied_at",
    )
    show_change_link = False


@admin.register(ModerationAction)
class ModerationActionAdmin(SelectRelatedAdmin):
    """The audit of every action: the message, every check that fired, the score, who acted, and each platform
    call it made. Operators act through the bots' commands and the actions here (the services), not by adding
    rows by hand."""

    list_display = (
        "created_at",
        "community_user",
        "action",
        "platform",
        "actor",
        "checks_summary",
        "score",
        "strikes_after",
        "status",
        "moderator",
        "expires_at",
    )
    list_select_related = ("community_user", "rule", "moderator")
    list_filter = ("status", "action", "actor", "platform", "rule")
    search_fields = ("community_user__display_name", "reason", "message_text", "message_id")
    date_hierarchy = "created_at"
    inlines = (PlatformOperationInline,)
    fields = (
        "community_user",
        "identity",
        "platform",
        "action",
        "actor",
        "moderator",
        "reason",
        "message_block",
        "chat_id",
        "message_id",
        "checks_pretty",
        "score",
        "strikes_after",
        "decision",
        "rule",
        "status",
        "error",
        "expires_at",
        "applied_at",
        "ended_at",
        "reverted_at",
        "reverses",
        "created_at",
        "updated_at",
    )
    readonly_fields = tuple(f for f in fields if f != "expires_at")
    actions = ("retry_failed", "unban_people", "unmute_people")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="checks")
    def checks_summary(self, obj: ModerationAction) -> str:
        names = [str(c.get("check")) for c in obj.checks or [] if isinstance(c, dict)]
        return ", ".join(dict.fromkeys(names)) or "-"

    @admin.display(description="checks")
    def checks_pretty(self, obj: ModerationAction) -> SafeString:
        return pretty_json(obj.checks)

    @admin.display(description="message")
    def message_block(self, obj: ModerationAction) -> SafeString:
        return preformatted(obj.message_text)

    retry_failed = bulk_status_action(
        description="Retry the failed platform calls",
        change=lambda ids, user: moderation_operations_retry(action_ids=ids),
        message="{changed} failed platform calls of {selected} actions sent again.",
    )

    @admin.action(description="Unban these people everywhere", permissions=["change"])
    def unban_people(self, request: HttpRequest, queryset: QuerySet[ModerationAction]) -> None:
        people = set(queryset.values_list("community_user_id", flat=True))
        user = request.user if isinstance(request.user, User) else None
        lifted = moderation_lift_for(community_user_ids=people, action=ActionKind.UNBAN, actor=user)
        self.message_user(request, f"{lifted} people unbanned on every platform.")

    @admin.action(description="Unmute these people everywhere", permissions=["change"])
    def unmute_people(self, request: HttpRequest, queryset: QuerySet[ModerationAction]) -> None:
        people = set(queryset.values_list("community_user_id", flat=True))
        user = request.user if isinstance(request.user, User) else None
        lifted = moderation_lift_for(community_user_ids=people, action=ActionKind.UNMUTE, actor=user)
        self.message_user(request, f"{lifted} people unmuted on every platform.")


@admin.register(Strike)
class StrikeAdmin(SelectRelatedAdmin):
    """The one ledger per person: a strike counts towards the ladder until it expires or an appeal voids it."""

    list_display = ("community_user", "weight", "rule", "action", "created_at", "expires_at", "voided_at")
    list_select_related = ("community_user", "rule", "action__community_user")
    list_filter = ("rule", ("voided_at", admin.EmptyFieldListFilter))
    search_fields = ("community_user__display_name",)
    date_hierarchy = "created_at"
    autocomplete_fields = ("community_user", "action", "rule")
    readonly_fields = ("created_at", "voided_at")


@admin.register(Appeal)
class AppealAdmin(SelectRelatedAdmin):
    """The appeals queue: open ones first. Granting reverses the action on every platform, voids its strike,
    teaches the classifier the message was not spam and tells the member; denying tells the member. Write a
    decision note on an appeal before deciding to send it along."""

    list_display = (
        "created_at",
        "community_user",
        "action",
        "excerpt",
        "source",
        "status",
        "decided_by",
        "decided_at",
    )
    list_select_related = ("community_user", "action__community_user", "decided_by")
    list_filter = ("status", "source")
    search_fields = ("community_user__display_name", "message", "decision_note")
    date_hierarchy = "created_at"
    fields = (
        "community_user",
        "action",
        "action_reason",
        "action_message",
        "action_checks",
        "message",
        "source",
        "status",
        "decision_note",
        "decided_by",
        "decided_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = tuple(f for f in fields if f != "decision_note")
    actions = ("grant", "deny")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Appeal]:
        # Open appeals first: the queue.
        return (
            super()
            .get_queryset(request)
            .annotate(is_open=Case(When(status=Appeal.Status.OPEN, then=0), default=1))
            .order_by("is_open", "-created_at")
        )

    @admin.display(description="appeal")
    def excerpt(self, obj: Appeal) -> str:
        return truncatechars(obj.message, 80)

    @admin.display(description="why the action was taken")
    def action_reason(self, obj: Appeal) -> str:
        return obj.action.reason

    @admin.display(description="the message")
    def action_message(self, obj: Appeal) -> SafeString:
        return preformatted(obj.action.message_text)

    @admin.display(description="checks")
    def action_checks(self, obj: Appeal) -> SafeString:
        return pretty_json(obj.action.checks)

    grant = bulk_status_action(
        description="Grant: reverse the action everywhere and remove the strike",
        change=lambda ids, user: appeals_decide(appeal_ids=ids, granted=True, actor=user),
        message="{changed} of {selected} appeals granted (the others were already decided).",
    )
    deny = bulk_status_action(
        description="Deny: the action stands",
        change=lambda ids, user: appeals_decide(appeal_ids=ids, granted=False, actor=user),
        message="{changed} of {selected} appeals denied (the others were already decided).",
    )


@admin.register(ModerationPolicy)
class ModerationPolicyAdmin(admin.ModelAdmin):
    """The community's ladder: one row, created with the defaults the first time anyone reads it."""

    list_display = (
        "__str__",
        "mute_minutes",
        "strike_expiry_days",
        "operator_strike_weight",
        "notify_members",
    )
    readonly_fields = ("created_at", "updated_at")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        moderation_policy_get()
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not ModerationPolicy.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


# --- the engine's decisions, labels, domains and classifier --------------------------------------------------


def checks_table(checks: list[dict[str, Any]]) -> SafeString:
    """The checks that fired, one row each: layer, check, score, why, what matched."""
    if not checks:
        return format_html("<p>{}</p>", "No check fired.")
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
        (
            (
                item.get("layer", ""),
                item.get("check", ""),
                f"{float(item.get('score', 0)):.2f}",
                item.get("reason", ""),
                json.dumps(item.get("evidence", {}), ensure_ascii=False)[:300],
            )
            for item in checks
        ),
    )
    return format_html(
        "<table><thead><tr><th>layer</th><th>check</th><th>score</th><th>why</th><th>evidence</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        rows,
    )


def _label_action(label: str, description: str) -> Any:
    @admin.action(description=description)
    def action(
        modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[ModerationDecision]
    ) -> None:
        rows = list(queryset.select_related(None).only("id", "text"))
        for row in rows:
            moderation_label(
                text=row.text, label=label, source="operator", actor=request.user, decision_id=row.pk
            )
        modeladmin.message_user(
            request, f"{len(rows)} message(s) labelled {label}; the classifier has learnt them."
        )

    action.__name__ = f"label_{label}"
    return action


@admin.register(ModerationDecision)
class ModerationDecisionAdmin(ReadOnlyAdmin):
    """What the engine decided about each message and why. "Spam" and "Not spam" teach the classifier."""

    list_display = (
        "created_at",
        "platform",
        "author",
        "short_text",
        "verdict",
        "score",
        "check_names",
        "strike_weight",
    )
    list_select_related = ("community_user",)
    list_filter = ("verdict", "platform", "used_llm", "kind")
    search_fields = (
        "text",
        "author_username",
        "author_display_name",
        "author_id",
        "check_names",
        "message_id",
    )
    date_hierarchy = "created_at"
    actions = [
        _label_action("spam", "Spam: teach the classifier"),
        _label_action("ham", "Not spam: teach the classifier"),
    ]
    fields = (
        "verdict",
        "score",
        "strike_weight",
        "checks_shown",
        "text",
        "platform",
        "chat_id",
        "message_id",
        "kind",
        "author_id",
        "author_username",
        "author_display_name",
        "community_user",
        "sent_at",
        "classifier_score",
        "used_llm",
        "duration_ms",
        "labels_given",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="author")
    def author(self, obj: ModerationDecision) -> str:
        return obj.author_username or obj.author_display_name or obj.author_id

    @admin.display(description="text")
    def short_text(self, obj: ModerationDecision) -> str:
        return truncatechars(obj.text, 80)

    @admin.display(description="checks that fired")
    def checks_shown(self, obj: ModerationDecision) -> SafeString:
        return checks_table(obj.checks or [])

    @admin.display(description="labels")
    def labels_given(self, obj: ModerationDecision) -> str:
        return ", ".join(f"{label.label} ({label.get_source_display()})" for label in obj.labels.all()) or "-"


@admin.register(TrainingLabel)
class TrainingLabelAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "label", "source", "actor", "short_text", "decision")
    list_select_related = ("actor", "decision")
    list_filter = ("label", "source")
    search_fields = ("text",)
    date_hierarchy = "created_at"
    actions = ["retrain"]

    @admin.display(description="text")
    def short_text(self, obj: TrainingLabel) -> str:
        return truncatechars(obj.text, 100)

    @admin.action(description="Retrain the classifier from the seed set and every label")
    def retrain(self, request: HttpRequest, queryset: QuerySet[TrainingLabel]) -> None:
        result = classifier_retrain()
        self.message_user(
            request,
            f"Retrained on {result['examples']} examples ({result['labels']} labels): held-out precision "
            f"{result['holdout_precision']}, recall {result['holdout_recall']}.",
        )


@admin.register(ClassifierTraining)
class ClassifierTrainingAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "seed_examples", "label_examples", "last_label_id", "metrics")
    fields = ("created_at", "seed_examples", "label_examples", "last_label_id", "metrics_shown")
    readonly_fields = fields

    @admin.display(description="metrics")
    def metrics_shown(self, obj: ClassifierTraining) -> SafeString:
        return pretty_json(obj.metrics)


@admin.register(BlockedDomain)
class BlockedDomainAdmin(SelectRelatedAdmin):
    """Drainer and phishing domains. Operators add their own; feed and seed rows follow the feed."""

    list_display = ("domain", "source", "reason", "is_active", "last_seen_at", "updated_at")
    list_filter = ("source", "is_active")
    search_fields = ("domain", "reason")
    readonly_fields = ("last_seen_at", "created_at", "updated_at")
    actions = ["refresh_feed"]

    def save_model(self, request: HttpRequest, obj: BlockedDomain, form: Any, change: bool) -> None:
        obj.domain = normalise_domain(obj.domain) or obj.domain.strip().lower()
        if not change:
            obj.source = BlockedDomain.Source.OPERATOR
        super().save_model(request, obj, form, change)
        engine_config_changed()

    def delete_model(self, request: HttpRequest, obj: BlockedDomain) -> None:
        super().delete_model(request, obj)
        engine_config_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[BlockedDomain]) -> None:
        super().delete_queryset(request, queryset)
        engine_config_changed()

    @admin.action(description="Refresh the drainer feed now")
    def refresh_feed(self, request: HttpRequest, queryset: QuerySet[BlockedDomain]) -> None:
        result = blocked_domains_refresh()
        self.message_user(
            request,
            f"{result['listed']} domains listed by {result['source']} and the seed list: {result['added']} added, "
            f"{result['deactivated']} no longer listed; {result['active']} active.",
        )
