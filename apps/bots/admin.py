"""Telegram updates in the admin, read-only: what the webhook received and how processing went."""

from __future__ import annotations

from django.contrib import admin
from django.utils.safestring import SafeString

from apps.bots.models import TelegramUpdate
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
