"""The outbox in the admin: what the offline publishers recorded instead of sending, read-only."""

from __future__ import annotations

from django.contrib import admin
from django.template.defaultfilters import truncatechars
from django.utils.safestring import SafeString

from apps.core.admin import ReadOnlyAdmin, preformatted, pretty_json
from apps.integrations.models import AccessGrant, ModerationCall, OutboxMessage


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("external_id", "platform", "kind", "channel", "excerpt", "has_image", "created_at")
    list_filter = ("platform", "kind", "has_image")
    search_fields = ("text", "external_id", "idempotency_key", "channel")
    date_hierarchy = "created_at"
    fields = (
        "platform",
        "kind",
        "channel",
        "external_id",
        "url",
        "reply_to",
        "idempotency_key",
        "created_at",
        "text_block",
        "parts_json",
        "embed_json",
        "has_image",
        "image",
    )
    readonly_fields = fields

    @admin.display(description="text")
    def excerpt(self, obj: OutboxMessage) -> str:
        return truncatechars(obj.text, 80)

    @admin.display(description="text")
    def text_block(self, obj: OutboxMessage) -> SafeString:
        return preformatted(obj.text)

    @admin.display(description="parts")
    def parts_json(self, obj: OutboxMessage) -> SafeString:
        return pretty_json(obj.parts)

    @admin.display(description="embed")
    def embed_json(self, obj: OutboxMessage) -> SafeString:
        return pretty_json(obj.embed)


@admin.register(AccessGrant)
class AccessGrantAdmin(ReadOnlyAdmin):
    """What the offline access twin did in place of Discord and Telegram (roles, channel invites)."""

    list_display = ("platform", "resource", "user_external_id", "state", "invite_expires_at", "updated_at")
    list_filter = ("platform", "state")
    search_fields = ("resource", "user_external_id")
    date_hierarchy = "updated_at"


@admin.register(ModerationCall)
class ModerationCallAdmin(ReadOnlyAdmin):
    """What the offline moderation twin did in place of Discord and Telegram (deletions, mutes, bans)."""

    list_display = ("created_at", "platform", "operation", "space", "user_external_id", "message_id", "until")
    list_filter = ("platform", "operation")
    search_fields = ("space", "user_external_id", "message_id", "reason")
    date_hierarchy = "created_at"
