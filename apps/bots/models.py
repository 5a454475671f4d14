"""What the bots receive from the platforms, kept under the platform's own id so each arrives once."""

from __future__ import annotations

from django.db import models


class TelegramUpdateStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSING = "processing", "Processing"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed"


class TelegramUpdate(models.Model):
    """An update Telegram delivered to the bot's webhook. Telegram redelivers an update until it gets a 200, so
    ``update_id`` is unique and a redelivery is dropped."""

    update_id = models.BigIntegerField(unique=True)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=TelegramUpdateStatus.choices, default=TelegramUpdateStatus.RECEIVED
    )
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        db_table = "telegram_updates"
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"Telegram update {self.update_id} ({self.get_status_display()})"
