"""The community in the admin: one person with their platform identities, and their interactions
(read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.template.defaultfilters import truncatechars

from apps.community.models import CommunityUser, PlatformIdentity, UserInteraction
from apps.core.admin import ReadOnlyAdmin, SelectRelatedAdmin


class PlatformIdentityInline(admin.TabularInline):
    model = PlatformIdentity
    fields = ("platform", "external_id", "username", "display_name", "is_bot", "linked_at")
    extra = 0
    show_change_link = True


@admin.register(CommunityUser)
class CommunityUserAdmin(SelectRelatedAdmin):
    list_display = (
        "display_name",
        "portal_user",
        "standing",
        "engagement_score",
        "muted_until",
        "first_seen_at",
        "last_seen_at",
    )
    list_select_related = ("portal_user",)
    list_filter = ("standing",)
    search_fields = (
        "display_name",
        "identities__username",
        "identities__external_id",
        "portal_user__email",
    )
    date_hierarchy = "last_seen_at"
    autocomplete_fields = ("portal_user",)
    readonly_fields = ("engagement_score", "score_updated_at", "created_at", "updated_at")
    inlines = (PlatformIdentityInline,)


@admin.register(PlatformIdentity)
class PlatformIdentityAdmin(SelectRelatedAdmin):
    list_display = (
        "__str__",
        "community_user",
        "platform",
        "external_id",
        "display_name",
        "is_bot",
        "linked_at",
    )
    list_select_related = ("community_user",)
    list_filter = ("platform", "is_bot")
    search_fields = ("username", "external_id", "display_name", "community_user__display_name")
    autocomplete_fields = ("community_user",)
    readonly_fields = ("created_at", "updated_at")


@admin.register(UserInteraction)
class UserInteractionAdmin(ReadOnlyAdmin):
    list_display = (
        "occurred_at",
        "kind",
        "platform",
        "community_user",
        "identity",
        "excerpt",
        "is_question",
        "responded_at",
    )
    list_select_related = ("community_user", "identity")
    list_filter = ("platform", "kind", "is_question")
    search_fields = ("text", "external_id", "community_user__display_name", "identity__username")
    date_hierarchy = "occurred_at"
    show_full_result_count = False

    @admin.display(description="text")
    def excerpt(self, obj: UserInteraction) -> str:
        return truncatechars(obj.text, 80)
