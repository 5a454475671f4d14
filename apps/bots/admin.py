"""The bots in the admin, read-only: the Telegram updates received (webhook or polling) and how processing went,
the answers to join requests, and where incremental reads stand."""

from __future__ import annotations

from django.contrib import admin
from django.utils.safestring import SafeString

from apps.bots.models import InboundCursor, TelegramJoinRequest, TelegramUpdate
from apps.core.admin import ReadOnlyAdmin, pretty_json


@admin.register(TelegramUpdate)
class TelegramUpdateAdmin(ReadOnlyAdmin):
    list_display = ("update_id", "status", "received_at", "processed_at")
    list_filter = ("status",)
    search_fields = ("update_id",)
    date_hierarchy = "received_at"
    fields = ("update_id", "status", "received_at", "processed_at", "error", "payload_json")

    @admin.display(description="payload")
    def payload_json(self, obj: TelegramUpdate) -> SafeString:
        return pretty_json(obj.payload)


@admin.register(TelegramJoinRequest)
class TelegramJoinRequestAdmin(ReadOnlyAdmin):
    list_display = (
        "user_id",
        "username",
        "chat_id",
        "decision",
        "reason",
        "moderation_verdict",
        "answered",
        "created_at",
    )
    list_filter = ("decision", "answered", "moderation_verdict")
    search_fields = ("user_id", "username", "display_name", "chat_id")
    date_hierarchy = "created_at"


@admin.register(InboundCursor)
class InboundCursorAdmin(ReadOnlyAdmin):
    list_display = ("name", "value", "updated_at")
