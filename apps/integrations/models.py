"""What the offline twins did instead of calling a platform: the outbox (what the publishing twin would have
sent to X, Telegram or Discord) and access grants (the roles and channel seats the access twin gave and took)."""

from __future__ import annotations

from django.db import models

from apps.core.models import Platform


class OutboxMessage(models.Model):
    class Kind(models.TextChoices):
        POST = "post", "Post"
        REPLY = "reply", "Reply"
        DM = "dm", "Direct message"

    platform = models.CharField(max_length=12, choices=Platform.choices)
    channel = models.CharField(
        max_length=100, blank=True, help_text="Channel, chat or account it would go to"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.POST)
    text = models.TextField()
    parts = models.JSONField(default=list, blank=True, help_text="Every part of a thread, in order")
    embed = models.JSONField(default=dict, blank=True, help_text="Discord embed, as it would be sent")
    has_image = models.BooleanField(default=False)
    image = models.FileField(upload_to="outbox/%Y/%m/", blank=True)
    reply_to = models.CharField(max_length=100, blank=True, help_text="External id of the message answered")
    idempotency_key = models.CharField(max_length=100)
    external_id = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "outbox_messages"
        ordering = ["-created_at", "-id"]
        constraints = [
            # Publishing the same draft twice records it once: the twin's idempotency.
            models.UniqueConstraint(fields=["platform", "idempotency_key"], name="outbox_idempotency"),
        ]
        indexes = [models.Index(fields=["platform", "-created_at"], name="outbox_recent")]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} {self.get_kind_display().lower()} {self.external_id}"


class AccessGrant(models.Model):
    """What the offline access twin did in place of Discord and Telegram: a role given or taken away, a member
    invited to (and, in the twin, at once joining) or removed from a channel. One row per platform, resource and
    person, holding the latest state; the twin answers who holds a role or sits in a channel from it."""

    class State(models.TextChoices):
        GRANTED = "granted", "Role granted"
        REVOKED = "revoked", "Role revoked"
        JOINED = "joined", "Invited and joined"
        REMOVED = "removed", "Removed from the channel"

    platform = models.CharField(max_length=12, choices=Platform.choices)
    resource = models.CharField(max_length=64, help_text="Discord role id or Telegram chat id")
    user_external_id = models.CharField(max_length=64, help_text="The platform's user id")
    state = models.CharField(max_length=8, choices=State.choices)
    invite_link = models.CharField(max_length=200, blank=True)
    invite_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "access_grants"
        ordering = ["platform", "resource", "user_external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "resource", "user_external_id"], name="access_grants_natural_key"
            ),
        ]
        indexes = [models.Index(fields=["platform", "resource", "state"], name="access_grants_holders")]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} {self.resource}: {self.user_external_id} {self.get_state_display()}"


class ModerationCall(models.Model):
    """What the offline moderation twin did in place of Discord and Telegram: every message deleted, every mute,
    unmute, ban and unban, in order (direct messages go to ``outbox_messages``, like every twin's messages)."""

    class Operation(models.TextChoices):
        DELETE_MESSAGE = "delete_message", "Delete message"
        MUTE = "mute", "Mute"
        UNMUTE = "unmute", "Unmute"
        BAN = "ban", "Ban"
        UNBAN = "unban", "Unban"

    platform = models.CharField(max_length=12, choices=Platform.choices)
    operation = models.CharField(max_length=16, choices=Operation.choices)
    space = models.CharField(
        max_length=100, blank=True, help_text="Telegram chat id or Discord server id (empty: the default one)"
    )
    user_external_id = models.CharField(max_length=64, blank=True, help_text="The platform's user id")
    message_id = models.CharField(max_length=100, blank=True)
    until = models.DateTimeField(null=True, blank=True, help_text="When a mute ends")
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "moderation_outbox"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["platform", "user_external_id", "-created_at"], name="moderation_outbox_by_user"
            )
        ]

    def __str__(self) -> str:
        who = self.user_external_id or self.message_id
        return f"{self.get_platform_display()} {self.get_operation_display().lower()} {who}"
