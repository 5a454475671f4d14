"""The content pipeline's rows: plans, drafts, what was published, media, and members-only content."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.core.signals import setting_changed
from django.db import models
from django.db.models import Q
from django.utils.functional import cached_property

from apps.core.models import Platform, TimeStampedModel


class ContentFormat(models.TextChoices):
    SINGLE_POST = "single_post", "Single post"
    X_THREAD = "x_thread", "X thread"
    TELEGRAM_CHART_POST = "telegram_chart_post", "Telegram post with chart"
    DISCORD_EMBED = "discord_embed", "Discord embed"
    LONG_POST = "long_post", "Long post"
    DIGEST = "digest", "Digest"


class PlanStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    DRAFTED = "drafted", "Drafted"
    PUBLISHED = "published", "Published"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


class ContentPlan(TimeStampedModel):
    insight = models.ForeignKey(
        "market.Insight", null=True, blank=True, on_delete=models.SET_NULL, related_name="content_plans"
    )
    repurposed_from = models.ForeignKey(
        "content.PublishedContent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="repurposing_plans",
        help_text="Set when the plan turns an earlier post into another format",
    )
    platform = models.CharField(max_length=12, choices=Platform.choices)
    format = models.CharField(max_length=24, choices=ContentFormat.choices)
    topic = models.CharField(max_length=200)
    scheduled_for = models.DateTimeField()
    priority = models.FloatField(default=0.0, help_text="Strategist's score; higher goes first")
    weights = models.JSONField(default=dict, blank=True, help_text="Strategy weights in force when planned")
    status = models.CharField(max_length=12, choices=PlanStatus.choices, default=PlanStatus.PLANNED)

    class Meta:
        db_table = "content_plans"
        ordering = ["scheduled_for"]
        indexes = [models.Index(fields=["status", "scheduled_for"], name="content_plans_due")]
        constraints = [
            # An insight is planned at most once per platform.
            models.UniqueConstraint(
                fields=["insight", "platform"],
                condition=Q(insight__isnull=False),
                name="content_plans_one_per_insight_platform",
            ),
            # A post is repurposed into a given platform and format once.
            models.UniqueConstraint(
                fields=["repurposed_from", "platform", "format"],
                condition=Q(repurposed_from__isnull=False),
                name="content_plans_repurpose_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} {self.get_format_display()}: {self.topic[:60]}"


class PrivateMediaStorage(FileSystemStorage):
    """Files kept under ``PRIVATE_MEDIA_ROOT``, which nothing serves directly.

    Whether a file is members-only can change after it is stored (``is_exclusive`` is switched on, or the file is
    attached to an exclusive piece), so every media file lives here rather than moving between roots; members
    fetch exclusive ones through the portal's entitlement-checked view, and public charts go to the platforms as
    bytes.
    """

    def __init__(self) -> None:
        super().__init__()
        setting_changed.connect(self._forget_private_root)

    @cached_property
    def base_location(self) -> str:
        return str(settings.PRIVATE_MEDIA_ROOT)

    def url(self, name: str | None) -> str:
        # No public address exists; an empty one (rather than an error) lets forms such as the admin's show
        # the field without a link.
        return ""

    def _forget_private_root(self, setting: str, **kwargs: Any) -> None:
        if setting == "PRIVATE_MEDIA_ROOT":
            self.__dict__.pop("base_location", None)
            self.__dict__.pop("location", None)


_private_media_storage = PrivateMediaStorage()


def private_media_storage() -> PrivateMediaStorage:
    """The storage of media files (a callable, so migrations name it instead of freezing a path)."""
    return _private_media_storage


class Media(TimeStampedModel):
    class Kind(models.TextChoices):
        CHART = "chart", "Chart card"
        IMAGE = "image", "Image"
        DOCUMENT = "document", "Document"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.CHART)
    file = models.FileField(upload_to="media/%Y/%m/", storage=private_media_storage)
    content_type = models.CharField(max_length=100, default="image/png")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    size_bytes = models.PositiveIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    alt_text = models.CharField(max_length=300, blank=True)
    is_exclusive = models.BooleanField(default=False, help_text="Served only to entitled members")

    class Meta:
        db_table = "media"
        ordering = ["-created_at"]
        verbose_name_plural = "media"

    def __str__(self) -> str:
        return self.alt_text or self.file.name or f"media #{self.pk}"


class DraftStatus(models.TextChoices):
    PENDING_REVIEW = "pending_review", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    PUBLISHING = "publishing", "Publishing"
    PUBLISHED = "published", "Published"
    FAILED = "failed", "Failed"


class Generator(models.TextChoices):
    LLM = "llm", "LLM"
    TEMPLATE = "template", "Template writer"
    OPERATOR = "operator", "Operator"


class ContentDraft(TimeStampedModel):
    plan = models.ForeignKey(ContentPlan, on_delete=models.CASCADE, related_name="drafts")
    platform = models.CharField(max_length=12, choices=Platform.choices)
    format = models.CharField(max_length=24, choices=ContentFormat.choices)
    body = models.TextField(help_text="The post text (the first part for a thread)")
    parts = models.JSONField(default=list, blank=True, help_text="Every part of a thread, in order")
    embed = models.JSONField(default=dict, blank=True, help_text="Discord embed, when the format has one")
    image = models.ForeignKey(Media, null=True, blank=True, on_delete=models.SET_NULL, related_name="drafts")
    generator = models.CharField(max_length=10, choices=Generator.choices, default=Generator.TEMPLATE)
    checks = models.JSONField(
        default=dict, blank=True, help_text="Results of the length/number/phrase checks"
    )
    variant = models.ForeignKey(
        "experiments.ABTestVariant", null=True, blank=True, on_delete=models.SET_NULL, related_name="drafts"
    )
    status = models.CharField(max_length=16, choices=DraftStatus.choices, default=DraftStatus.PENDING_REVIEW)
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    publish_attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # When operators were told this draft waits for their approval (one digest covers every new one).
    waiting_announced_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "content_drafts"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "platform"], name="content_drafts_queue")]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} draft: {self.body[:60]}"


class Audience(models.TextChoices):
    PUBLIC = "public", "Public"
    MEMBERS = "members", "Members only"


class PublishedContent(models.Model):
    draft = models.OneToOneField(
        ContentDraft, null=True, blank=True, on_delete=models.SET_NULL, related_name="published"
    )
    # Posts to the members' private channels are recorded here too (their metrics and replies are the
    # platform's like any other), but they are never part of the public feeds.
    audience = models.CharField(
        max_length=8,
        choices=Audience.choices,
        default=Audience.PUBLIC,
        help_text="Members-only posts went to the members' channels and never show in public lists",
    )
    exclusive_content = models.ForeignKey(
        "content.ExclusiveContent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="announcements",
        help_text="The library piece this post announces",
    )
    platform = models.CharField(max_length=12, choices=Platform.choices)
    format = models.CharField(max_length=24, choices=ContentFormat.choices, default=ContentFormat.SINGLE_POST)
    external_id = models.CharField(max_length=100, help_text="The platform's id of the (first) message")
    part_ids = models.JSONField(default=list, blank=True, help_text="Ids of every part of a thread")
    url = models.URLField(max_length=500, blank=True)
    text = models.TextField()
    published_at = models.DateTimeField()
    metrics = models.JSONField(default=dict, blank=True, help_text="Latest metrics pulled from the platform")
    engagement_rate = models.FloatField(null=True, blank=True)
    metrics_updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "published_content"
        ordering = ["-published_at"]
        verbose_name_plural = "published content"
        constraints = [
            models.UniqueConstraint(fields=["platform", "external_id"], name="published_content_natural_key"),
            # A library piece is announced once per platform.
            models.UniqueConstraint(
                fields=["exclusive_content", "platform"],
                condition=Q(exclusive_content__isnull=False),
                name="published_content_one_announcement_per_platform",
            ),
        ]
        indexes = [
            models.Index(fields=["platform", "-published_at"], name="published_recent"),
            models.Index(fields=["-published_at"], name="published_latest"),
            models.Index(fields=["-engagement_rate"], name="published_best"),
        ]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} {self.external_id}: {self.text[:60]}"


class ExclusiveStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"
    ARCHIVED = "archived", "Archived"


class ExclusiveContent(TimeStampedModel):
    class Kind(models.TextChoices):
        MARKET_REPORT = "market_report", "Weekly market report"
        ANALYSIS = "analysis", "Deep-dive analysis"
        GUIDE = "guide", "Guide"

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=220, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.ANALYSIS)
    summary = models.CharField(
        max_length=500, blank=True, help_text="Teaser; the only part shown to non-members"
    )
    body = models.TextField()
    required_entitlement = models.CharField(
        max_length=60, default="portal.premium", help_text="Entitlement key a member needs to read it"
    )
    status = models.CharField(max_length=10, choices=ExclusiveStatus.choices, default=ExclusiveStatus.DRAFT)
    published_at = models.DateTimeField(null=True, blank=True)
    period_start = models.DateField(null=True, blank=True, help_text="For periodic reports: the week covered")
    media = models.ManyToManyField(Media, blank=True, related_name="exclusive_content")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "exclusive_content"
        ordering = ["-published_at"]
        verbose_name_plural = "exclusive content"
        indexes = [models.Index(fields=["status", "-published_at"], name="exclusive_library")]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "period_start"],
                condition=Q(period_start__isnull=False),
                name="exclusive_one_report_per_period",
            ),
        ]

    def __str__(self) -> str:
        return self.title
