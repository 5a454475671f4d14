"""Community moderation: rules, the actions taken (warn, mute, ban, ...), strikes that escalate, and appeals."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import Platform, TimeStampedModel


class ActionKind(models.TextChoices):
    WARN = "warn", "Warn"
    DELETE_MESSAGE = "delete_message", "Delete message"
    MUTE = "mute", "Mute"
    UNMUTE = "unmute", "Unmute"
    BAN = "ban", "Ban"
    UNBAN = "unban", "Unban"


class ModerationRule(TimeStampedModel):
    class Kind(models.TextChoices):
        KEYWORD = "keyword", "Keyword list"
        REGEX = "regex", "Regular expression"
        LINK = "link", "Links from unknown domains"
        SCAM = "scam", "Scam pattern"
        FLOOD = "flood", "Flooding"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    pattern = models.TextField(blank=True, help_text="Keywords (one per line), regex, or allowed domains")
    platforms = models.JSONField(default=list, blank=True, help_text="Empty means every platform")
    action = models.CharField(max_length=16, choices=ActionKind.choices, default=ActionKind.WARN)
    strike_weight = models.PositiveSmallIntegerField(default=1)
    is_active = models.BooleanField(default=True)
    description = models.TextField(blank=True, help_text="Shown to the member when the rule is applied")

    class Meta:
        db_table = "moderation_rules"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ActionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPLIED = "applied", "Applied"
    FAILED = "failed", "Failed"
    REVERTED = "reverted", "Reverted"


class ModerationAction(TimeStampedModel):
    community_user = models.ForeignKey(
        "community.CommunityUser", on_delete=models.CASCADE, related_name="moderation_actions"
    )
    identity = models.ForeignKey(
        "community.PlatformIdentity", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    platform = models.CharField(max_length=12, choices=Platform.choices)
    action = models.CharField(max_length=16, choices=ActionKind.choices)
    rule = models.ForeignKey(
        ModerationRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions"
    )
    interaction = models.ForeignKey(
        "community.UserInteraction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField()
    evidence = models.JSONField(default=dict, blank=True)
    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when the moderator agent acted",
    )
    status = models.CharField(max_length=10, choices=ActionStatus.choices, default=ActionStatus.PENDING)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="For timed mutes and bans")
    applied_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        db_table = "moderation_actions"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["community_user", "-created_at"], name="moderation_by_user"),
            models.Index(fields=["status", "expires_at"], name="moderation_expiring"),
        ]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.community_user} on {self.get_platform_display()}"


class Strike(models.Model):
    community_user = models.ForeignKey(
        "community.CommunityUser", on_delete=models.CASCADE, related_name="strikes"
    )
    action = models.ForeignKey(ModerationAction, on_delete=models.CASCADE, related_name="strikes")
    rule = models.ForeignKey(
        ModerationRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    weight = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="Strikes stop counting towards escalation after this")
    voided_at = models.DateTimeField(null=True, blank=True, help_text="Set when an appeal is upheld")

    class Meta:
        db_table = "moderation_strikes"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["community_user", "expires_at"], name="strikes_active")]

    def __str__(self) -> str:
        return f"strike ×{self.weight} for {self.community_user}"


class Appeal(TimeStampedModel):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        UPHELD = "upheld", "Upheld (action reverted)"
        DENIED = "denied", "Denied"

    action = models.ForeignKey(ModerationAction, on_delete=models.CASCADE, related_name="appeals")
    community_user = models.ForeignKey(
        "community.CommunityUser", on_delete=models.CASCADE, related_name="appeals"
    )
    message = models.TextField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)

    class Meta:
        db_table = "moderation_appeals"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["action"], condition=Q(status="open"), name="moderation_one_open_appeal_per_action"
            ),
        ]

    def __str__(self) -> str:
        return f"appeal of {self.action} ({self.get_status_display()})"
