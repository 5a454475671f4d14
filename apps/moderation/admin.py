"""Moderation in the admin: rules, the actions taken, strikes and appeals."""

from __future__ import annotations

from django.contrib import admin
from django.utils.safestring import SafeString

from apps.core.admin import SelectRelatedAdmin, pretty_json
from apps.moderation.models import Appeal, ModerationAction, ModerationRule, Strike


@admin.register(ModerationRule)
class ModerationRuleAdmin(SelectRelatedAdmin):
    list_display = ("name", "kind", "action", "strike_weight", "is_active", "updated_at")
    list_filter = ("is_active", "kind", "action")
    search_fields = ("name", "pattern", "description")
    readonly_fields = ("created_at", "updated_at")


@admin.register(ModerationAction)
class ModerationActionAdmin(SelectRelatedAdmin):
    list_display = (
        "community_user",
        "action",
        "platform",
        "rule",
        "status",
        "moderator",
        "created_at",
        "applied_at",
        "expires_at",
    )
    list_select_related = ("community_user", "rule", "moderator")
    list_filter = ("status", "action", "platform", "rule")
    search_fields = ("community_user__display_name", "reason")
    date_hierarchy = "created_at"
    autocomplete_fields = ("community_user", "identity", "rule", "interaction", "moderator")
    fields = (
        "community_user",
        "identity",
        "platform",
        "action",
        "rule",
        "interaction",
        "reason",
        "evidence_pretty",
        "moderator",
        "status",
        "expires_at",
        "applied_at",
        "error",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("evidence_pretty", "applied_at", "error", "created_at", "updated_at")

    @admin.display(description="evidence")
    def evidence_pretty(self, obj: ModerationAction) -> SafeString:
        return pretty_json(obj.evidence)


@admin.register(Strike)
class StrikeAdmin(SelectRelatedAdmin):
    list_display = ("community_user", "weight", "rule", "action", "created_at", "expires_at", "voided_at")
    list_select_related = ("community_user", "rule", "action__community_user")
    list_filter = ("rule",)
    search_fields = ("community_user__display_name",)
    date_hierarchy = "created_at"
    autocomplete_fields = ("community_user", "action", "rule")
    readonly_fields = ("created_at",)


@admin.register(Appeal)
class AppealAdmin(SelectRelatedAdmin):
    list_display = ("community_user", "action", "status", "created_at", "decided_by", "decided_at")
    list_select_related = ("community_user", "action__community_user", "decided_by")
    list_filter = ("status",)
    search_fields = ("community_user__display_name", "message", "decision_note")
    date_hierarchy = "created_at"
    autocomplete_fields = ("action", "community_user", "decided_by")
    readonly_fields = ("created_at", "updated_at")
