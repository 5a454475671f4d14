"""One record per person across platforms, their platform identities, and every interaction."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import Platform, TimeStampedModel


class ModerationStanding(models.TextChoices):
    GOOD = "good", "Good standing"
    WARNED = "warned", "Warned"
    MUTED = "muted", "Muted"
    BANNED = "banned", "Banned"


class CommunityUser(TimeStampedModel):
    display_name = models.CharField(max_length=150)
    portal_user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="community_user",
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    engagement_score = models.FloatField(default=0.0)
    score_updated_at = models.DateTimeField(null=True, blank=True)
    standing = models.CharField(
        max_length=8, choices=ModerationStanding.choices, default=ModerationStanding.GOOD
    )
    muted_until = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        db_table = "community_users"
        ordering = ["-last_seen_at"]
        indexes = [
            models.Index(fields=["-engagement_score"], name="community_top_engaged"),
            models.Index(fields=["-last_seen_at"], name="community_recent"),
        ]

    def __str__(self) -> str:
        return self.display_name


class PlatformIdentity(TimeStampedModel):
    community_user = models.ForeignKey(CommunityUser, on_delete=models.CASCADE, related_name="identities")
    platform = models.CharField(max_length=12, choices=Platform.choices)
    external_id = models.CharField(max_length=64, help_text="The platform's stable user id")
    username = models.CharField(max_length=100, blank=True)
    display_name = models.CharField(max_length=150, blank=True)
    is_bot = models.BooleanField(default=False)
    linked_at = models.DateTimeField(null=True, blank=True, help_text="When the person proved it is theirs")

    class Meta:
        db_table = "platform_identities"
        ordering = ["platform", "username"]
        verbose_name_plural = "platform identities"
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "external_id"], name="platform_identities_natural_key"
            ),
        ]
        indexes = [models.Index(fields=["platform", "username"], name="identity_by_username")]

    def __str__(self) -> str:
        handle = f"@{self.username}" if self.username else self.external_id
        return f"{self.get_platform_display()} {handle}"


class InteractionKind(models.TextChoices):
    REPLY = "reply", "Reply"
    MENTION = "mention", "Mention"
    COMMENT = "comment", "Comment"
    MESSAGE = "message", "Message"
    DIRECT_MESSAGE = "dm", "Direct message"
    LIKE = "like", "Like"
    REPOST = "repost", "Repost"
    QUOTE = "quote", "Quote"
    REACTION = "reaction", "Reaction"
    JOIN = "join", "Joined"
    LEAVE = "leave", "Left"
    OFFER_CLICK = "offer_click", "Clicked an offer"


class UserInteraction(models.Model):
    community_user = models.ForeignKey(CommunityUser, on_delete=models.CASCADE, related_name="interactions")
    identity = models.ForeignKey(
        PlatformIdentity, null=True, blank=True, on_delete=models.SET_NULL, related_name="interactions"
    )
    platform = models.CharField(max_length=12, choices=Platform.choices)
    kind = models.CharField(max_length=12, choices=InteractionKind.choices)
    external_id = models.CharField(max_length=100, blank=True, help_text="The platform's message id, if any")
    content = models.ForeignKey(
        "content.PublishedContent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="interactions",
    )
    text = models.TextField(blank=True)
    is_question = models.BooleanField(default=False)
    sentiment = models.FloatField(null=True, blank=True)
    occurred_at = models.DateTimeField()
    responded_at = models.DateTimeField(null=True, blank=True)
    response_external_id = models.CharField(max_length=100, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "user_interactions"
        ordering = ["-occurred_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["platform", "external_id"],
                condition=~Q(external_id=""),
                name="user_interactions_natural_key",
            ),
        ]
        indexes = [
            models.Index(fields=["community_user", "-occurred_at"], name="interactions_by_user"),
            models.Index(fields=["platform", "kind", "-occurred_at"], name="interactions_by_kind"),
            models.Index(
                fields=["occurred_at"],
                condition=Q(is_question=True, responded_at__isnull=True),
                name="interactions_unanswered",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.get_kind_display()} on {self.get_platform_display()} at {self.occurred_at:%Y-%m-%d %H:%M}"
        )
