"""A/B tests on posts and offers, their bookkeeping and the queue of hypotheses to test next.

The app depends only on core (and the agent framework its A/B testing agent runs on): other apps ask it for a
variant by a subject key (a string), report when that variant was shown (an exposure) and what came of it (an
outcome per metric), so it never imports them."""

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

    class Decision(models.TextChoices):
        NONE = "", "Undecided"
        WINNER = "winner", "Winner"
        NO_DIFFERENCE = "no_difference", "No difference"
        BROKEN = "broken", "Broken (sample-ratio mismatch)"

    class Correction(models.TextChoices):
        HOLM = "holm", "Holm-Bonferroni (family-wise error)"
        BH = "bh", "Benjamini-Hochberg (false discovery rate)"

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    subject = models.CharField(max_length=6, choices=Subject.choices)
    hypothesis = models.TextField(blank=True)
    metric = models.CharField(
        max_length=40, help_text="The primary metric, which decides the test (see apps.experiments.metrics)"
    )
    secondary_metrics = models.JSONField(
        default=list, blank=True, help_text="More metrics to report (guardrails); corrected together"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    min_sample_size = models.PositiveIntegerField(default=100, help_text="Per variant, before any decision")
    alpha = models.FloatField(default=0.05, help_text="Significance level")
    horizon_days = models.PositiveSmallIntegerField(
        default=14, help_text="Days after the start at which the test stops whatever it shows"
    )
    correction = models.CharField(
        max_length=4,
        choices=Correction.choices,
        default=Correction.HOLM,
        help_text="Across metrics and variants",
    )
    sequential_tuning = models.PositiveIntegerField(
        default=5000, help_text="Total exposures at which the sequential interval is tightest"
    )
    decision = models.CharField(max_length=14, choices=Decision.choices, default=Decision.NONE, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    srm_p_value = models.FloatField(
        null=True, blank=True, help_text="Sample-ratio mismatch check at the last evaluation"
    )
    evaluated_at = models.DateTimeField(null=True, blank=True)
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
        indexes = [models.Index(fields=["status", "subject"], name="ab_tests_running")]

    def __str__(self) -> str:
        return self.name

    @property
    def metrics(self) -> list[str]:
        """The primary metric first, then the secondary ones."""
        return [self.metric, *[m for m in self.secondary_metrics if m != self.metric]]


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
    pre_values = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per metric, the unit's value before exposure, known when it was exposed (for CUPED)",
    )
    converted_at = models.DateTimeField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True, help_text="Observed metric value for continuous metrics")

    class Meta:
        db_table = "assignments"
        ordering = ["-assigned_at"]
        constraints = [
            models.UniqueConstraint(fields=["test", "subject_key"], name="assignments_once_per_subject")
        ]
        indexes = [
            models.Index(fields=["variant", "converted_at"], name="assignments_outcomes"),
            models.Index(fields=["test", "variant", "exposed_at"], name="assignments_exposed"),
        ]

    def __str__(self) -> str:
        return f"{self.subject_key} → {self.variant.key}"


class Outcome(models.Model):
    """What an exposed assignment produced on one metric (an engagement rate, a click, revenue), and its
    pre-period value where the metric has one (for CUPED). ``test`` and ``variant`` repeat the assignment's
    so that the per-variant sums are one indexed GROUP BY."""

    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="outcomes")
    test = models.ForeignKey(ABTest, on_delete=models.CASCADE, related_name="+")
    variant = models.ForeignKey(ABTestVariant, on_delete=models.CASCADE, related_name="+")
    metric = models.CharField(max_length=40)
    value = models.FloatField(default=0.0)
    pre_value = models.FloatField(null=True, blank=True, help_text="The same measure before exposure")
    recorded_at = models.DateTimeField()

    class Meta:
        db_table = "experiment_outcomes"
        ordering = ["-recorded_at"]
        constraints = [
            models.UniqueConstraint(fields=["assignment", "metric"], name="experiment_outcomes_once"),
        ]
        indexes = [models.Index(fields=["test", "metric", "variant"], name="experiment_outcomes_sums")]

    def __str__(self) -> str:
        return f"{self.assignment.subject_key} {self.metric} = {self.value:g}"


class Hypothesis(TimeStampedModel):
    """A test waiting its turn: operators edit the queue; the A/B testing agent starts the first queued one
    when no test on its subject is running."""

    class Dimension(models.TextChoices):
        TONE = "tone", "Tone"
        FORMAT = "format", "Format"
        CALL_TO_ACTION = "cta", "Call to action"
        OFFER_DISCOUNT = "offer_discount", "Offer discount"
        SEND_TIME = "send_time", "Send time"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        STARTED = "started", "Started"
        SKIPPED = "skipped", "Skipped"

    title = models.CharField(max_length=120)
    subject = models.CharField(max_length=6, choices=ABTest.Subject.choices)
    dimension = models.CharField(max_length=16, choices=Dimension.choices)
    statement = models.TextField(blank=True, help_text="What we expect and why")
    variants = models.JSONField(
        default=list,
        help_text='[{"key": "A", "name": "...", "payload": {...}, "weight": 1, "is_control": true}, ...]',
    )
    metric = models.CharField(max_length=40)
    secondary_metrics = models.JSONField(default=list, blank=True)
    horizon_days = models.PositiveSmallIntegerField(default=14)
    min_sample_size = models.PositiveIntegerField(default=100)
    position = models.PositiveIntegerField(default=0, help_text="Lower starts sooner")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    test = models.OneToOneField(
        ABTest, null=True, blank=True, on_delete=models.SET_NULL, related_name="source_hypothesis"
    )

    class Meta:
        db_table = "experiment_hypotheses"
        ordering = ["status", "position", "pk"]
        verbose_name_plural = "hypotheses"
        indexes = [models.Index(fields=["subject", "status", "position"], name="hypotheses_queue")]

    def __str__(self) -> str:
        return self.title
