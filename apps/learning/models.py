"""Phase 4's own rows: the log of strategy changes applied to the other phases' agents (each reversible), the
freeze switch that stops them, and the operator's alert rules on the platform's own performance.

The app sits above the domain apps (it reads content, billing and the agent framework's runs to learn from
them, and writes the agents' parameters); nothing below imports it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel


class StrategyChange(TimeStampedModel):
    """One parameter of one agent, changed (or proposed to be) for a reason, with the evidence and the values
    before and after, so an operator can see why the strategy is what it is and put any step back."""

    class Source(models.TextChoices):
        AB_TEST = "ab_test", "A/B test decision"
        STRATEGY_TUNING = "strategy_tuning", "Strategy tuning (bandit)"
        PERFORMANCE = "performance", "Performance analytics"
        OPERATOR = "operator", "Operator"

    class Status(models.TextChoices):
        PROPOSED = "proposed", "Proposed"
        APPLIED = "applied", "Applied"
        SKIPPED = "skipped", "Skipped"
        SUPERSEDED = "superseded", "Superseded"
        REVERTED = "reverted", "Reverted"

    agent_name = models.CharField(max_length=60, help_text="Whose parameter: e.g. content_strategist")
    parameter = models.CharField(max_length=60, help_text="The top-level parameter changed, e.g. arm_weights")
    source = models.CharField(max_length=16, choices=Source.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PROPOSED)
    reason = models.TextField(help_text="Why, in a sentence an operator reads")
    evidence = models.JSONField(default=dict, blank=True, help_text="The figures behind the change")
    target = models.JSONField(null=True, blank=True, help_text="The value learnt, before bounding")
    before = models.JSONField(null=True, blank=True, help_text="The value in force before the change")
    after = models.JSONField(null=True, blank=True, help_text="The value applied (bounded toward the target)")
    cycle = models.PositiveIntegerField(
        null=True, blank=True, help_text="The coordinator's run that applied or skipped it"
    )
    applied_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=200, blank=True)
    reverted_at = models.DateTimeField(null=True, blank=True)
    reverted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "strategy_changes"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="strategy_changes_queue"),
            models.Index(fields=["agent_name", "parameter", "-applied_at"], name="strategy_changes_history"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_name}.{self.parameter} ({self.get_status_display()})"


class LearningControl(TimeStampedModel):
    """One row: the freeze switch. While frozen, no strategy change is applied (proposals are skipped),
    whatever the agents learn; reverts by hand still work."""

    frozen = models.BooleanField(default=False)
    reason = models.CharField(max_length=200, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "learning_control"
        verbose_name = "learning switch"
        verbose_name_plural = "learning switch"

    def __str__(self) -> str:
        return "frozen" if self.frozen else "learning"


class AlertRule(TimeStampedModel):
    """A threshold on one of the performance figures the performance analytics agent records."""

    class Comparison(models.TextChoices):
        ABOVE = "above", "Above"
        BELOW = "below", "Below"

    name = models.CharField(max_length=120)
    metric = models.CharField(
        max_length=60, help_text="A performance_snapshots metric, e.g. agent.success_rate"
    )
    scope = models.CharField(
        max_length=100, blank=True, help_text="Its scope (agent:publishing); empty matches every scope"
    )
    comparison = models.CharField(max_length=5, choices=Comparison.choices)
    threshold = models.FloatField()
    enabled = models.BooleanField(default=True)
    notify_platforms = models.JSONField(
        default=list,
        blank=True,
        help_text='Where operators are told besides the dashboard: ["discord", "telegram"]',
    )
    cooldown_minutes = models.PositiveIntegerField(
        default=60, help_text="A rule fires once per scope in this time"
    )

    class Meta:
        db_table = "alert_rules"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    """A rule that fired: the figure, and where the operators were told."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    scope = models.CharField(max_length=100, blank=True)
    value = models.FloatField()
    message = models.TextField()
    fired_at = models.DateTimeField()
    delivered = models.JSONField(default=dict, blank=True, help_text="Per platform: sent, or the error")

    class Meta:
        db_table = "alerts"
        ordering = ["-fired_at"]
        indexes = [models.Index(fields=["rule", "scope", "-fired_at"], name="alerts_cooldown")]
        constraints = [
            models.CheckConstraint(condition=~Q(message=""), name="alerts_message_present"),
        ]

    def __str__(self) -> str:
        return f"{self.rule.name} [{self.scope}] = {self.value:g}"
