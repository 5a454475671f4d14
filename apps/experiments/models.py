"""A/B tests on posts and offers. The app depends only on core: other apps ask it for a variant by a subject
key (a string), so it never imports them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel


class ABTest(TimeStampedModel):
    class Subject(models.TextChoices):
        POST = "post", "Post copy"
        OFFER = "offer", "Offer message"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    subject = models.CharField(max_length=6, choices=Subject.choices)
    hypothesis = models.TextField(blank=True)
    metric = models.CharField(max_length=40, help_text="e.g. engagement_rate, click_rate, conversion_rate")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    min_sample_size = models.PositiveIntegerField(default=100, help_text="Per variant, before any decision")
    alpha = models.FloatField(default=0.05, help_text="Significance level")
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    winner = models.ForeignKey(
        "experiments.ABTestVariant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    result = models.JSONField(default=dict, blank=True, help_text="Statistics at the last evaluation")

    class Meta:
        db_table = "ab_tests"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(alpha__gt=0, alpha__lt=1), name="ab_tests_alpha_range"),
        ]

    def __str__(self) -> str:
        return self.name


class ABTestVariant(models.Model):
    test = models.ForeignKey(ABTest, on_delete=models.CASCADE, related_name="variants")
    key = models.CharField(max_length=20, help_text="Short label: A, B, ...")
    name = models.CharField(max_length=120)
    payload = models.JSONField(
        default=dict, blank=True, help_text="What the variant changes (tone, template, ...)"
    )
    weight = models.PositiveSmallIntegerField(default=1, help_text="Relative share of traffic")
    is_control = models.BooleanField(default=False)

    class Meta:
        db_table = "ab_test_variants"
        ordering = ["test", "key"]
        constraints = [models.UniqueConstraint(fields=["test", "key"], name="ab_test_variants_key")]

    def __str__(self) -> str:
        return f"{self.test.name} · {self.key} ({self.name})"


class Assignment(models.Model):
    test = models.ForeignKey(ABTest, on_delete=models.CASCADE, related_name="assignments")
    variant = models.ForeignKey(ABTestVariant, on_delete=models.CASCADE, related_name="assignments")
    subject_key = models.CharField(
        max_length=100, help_text="Who or what was assigned, e.g. draft:42, user:7"
    )
    assigned_at = models.DateTimeField(auto_now_add=True)
    exposed_at = models.DateTimeField(null=True, blank=True)
    converted_at = models.DateTimeField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True, help_text="Observed metric value for continuous metrics")

    class Meta:
        db_table = "assignments"
        ordering = ["-assigned_at"]
        constraints = [
            models.UniqueConstraint(fields=["test", "subject_key"], name="assignments_once_per_subject")
        ]
        indexes = [models.Index(fields=["variant", "converted_at"], name="assignments_outcomes")]

    def __str__(self) -> str:
        return f"{self.subject_key} → {self.variant.key}"
