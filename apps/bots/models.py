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


class JoinDecision(models.TextChoices):
    APPROVED = "approved", "Approved"
    DECLINED = "declined", "Declined"


class TelegramJoinRequest(models.Model):
    """A request to join a Telegram chat that needs approval (the private members' channel), and what the bot
    answered: approved for people the entitlement ledger lets in and whose bio the moderation engine does not
    remove, declined (with a message saying how to join) for everyone else. One row per request, so a
    redelivered update is answered once."""

    chat_id = models.CharField(max_length=64)
    user_id = models.CharField(max_length=64)
    requested_at = models.DateTimeField()
    username = models.CharField(max_length=100, blank=True)
    display_name = models.CharField(max_length=200, blank=True)
    bio = models.TextField(blank=True)
    decision = models.CharField(max_length=10, choices=JoinDecision.choices)
    reason = models.CharField(max_length=200)
    moderation_verdict = models.CharField(max_length=10, blank=True)
    answered = models.BooleanField(default=False, help_text="Telegram (or its offline twin) took the answer")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "telegram_join_requests"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["chat_id", "user_id", "requested_at"], name="telegram_join_requests_natural_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} to join {self.chat_id}: {self.get_decision_display()}"


class InboundCursor(models.Model):
    """Where an incremental read of a platform stands (X mentions: the newest post id read, ``since_id``), kept
    in the database so a restart or another worker continues from it."""

    name = models.CharField(max_length=100, unique=True)
    value = models.CharField(max_length=100, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "bot_inbound_cursors"

    def __str__(self) -> str:
        return f"{self.name} = {self.value or '(start)'}"
