"""The agent framework's rows: per-agent configuration, every run (agent_logs), pipeline runs, and the KPI and
performance time series."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel


class AgentConfig(TimeStampedModel):
    agent_name = models.CharField(max_length=60, unique=True)
    enabled = models.BooleanField(default=True)
    paused = models.BooleanField(default=False, help_text="A paused agent's scheduled runs are skipped")
    parameters = models.JSONField(default=dict, blank=True, help_text="Validated by the agent on save")
    notes = models.TextField(blank=True)
    # The schedule itself lives in django-celery-beat, where beat (or the embedded scheduler) reads it and the
    # admin edits it; this link lets the agent's page show and reach it.
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="agent_config",
        help_text="The beat schedule that starts this agent; none when it runs only in pipelines or by hand",
    )

    class Meta:
        db_table = "agent_configs"
        ordering = ["agent_name"]

    def __str__(self) -> str:
        state = "paused" if self.paused else ("enabled" if self.enabled else "disabled")
        return f"{self.agent_name} ({state})"


class RunTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    PIPELINE = "pipeline", "Pipeline"
    MANUAL = "manual", "Manual"


class PipelineRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        # Every agent succeeded, but at least one worked without a source it needed (an exchange or feed
        # down, a platform refusing): the figures it produced are incomplete.
        DEGRADED = "degraded", "Succeeded, degraded"
        PARTIAL = "partial", "Partly failed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    name = models.CharField(max_length=60, default="full")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=10, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    agents = models.JSONField(default=list, blank=True, help_text="Agent names in the order planned")
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    degraded_reason = models.TextField(
        blank=True, help_text="Why a run that succeeded is degraded: each agent's failed sources"
    )

    class Meta:
        db_table = "pipeline_runs"
        ordering = ["-queued_at"]
        indexes = [models.Index(fields=["status", "-queued_at"], name="pipeline_runs_recent")]

    def __str__(self) -> str:
        return f"pipeline {self.name} #{self.pk} ({self.get_status_display()})"


class AgentRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    RETRYING = "retrying", "Retrying"


class AgentRun(models.Model):
    agent_name = models.CharField(max_length=60)
    status = models.CharField(max_length=10, choices=AgentRunStatus.choices, default=AgentRunStatus.QUEUED)
    trigger = models.CharField(max_length=10, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    pipeline_run = models.ForeignKey(
        PipelineRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="agent_runs"
    )
    attempt = models.PositiveSmallIntegerField(default=1)
    celery_task_id = models.CharField(max_length=64, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    counters = models.JSONField(default=dict, blank=True)
    summary = models.TextField(blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    degraded_reason = models.TextField(
        blank=True,
        help_text="Set when the run succeeded without some of its sources (errors.* or failed counters)",
    )

    class Meta:
        db_table = "agent_logs"
        ordering = ["-queued_at"]
        verbose_name = "agent run"
        indexes = [
            models.Index(fields=["agent_name", "-queued_at"], name="agent_logs_by_agent"),
            models.Index(fields=["status", "-queued_at"], name="agent_logs_by_status"),
        ]
        constraints = [
            # Single-flight per agent, enforced by the database across worker processes.
            models.UniqueConstraint(
                fields=["agent_name"], condition=Q(status="running"), name="agent_logs_single_flight"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agent_name} #{self.pk} ({self.get_status_display()})"


class PerformanceSnapshot(models.Model):
    """One observation of a KPI or performance figure. ``scope`` narrows it (a platform, a format, an agent)."""

    metric = models.CharField(max_length=60, help_text="e.g. mrr_minor, active_members, engagement_rate")
    # Long enough for an experiment's effect series, test:<slug, 80>|variant:<key, 20>|metric:<name, 40>.
    scope = models.CharField(
        max_length=200, blank=True, default="", help_text="e.g. platform:x, agent:analysis"
    )
    value = models.FloatField()
    sample_size = models.PositiveIntegerField(null=True, blank=True)
    captured_at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "performance_snapshots"
        ordering = ["-captured_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["metric", "scope", "captured_at"], name="performance_snapshots_key"
            ),
        ]
        indexes = [models.Index(fields=["metric", "scope", "-captured_at"], name="performance_series")]

    def __str__(self) -> str:
        scope = f" [{self.scope}]" if self.scope else ""
        return f"{self.metric}{scope} = {self.value:g} at {self.captured_at:%Y-%m-%d %H:%M}"


class DeferredTaskStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class DeferredTask(TimeStampedModel):
    """A Celery task call kept for later by the embedded default, which has no broker to hold it: a retry
    after its backoff, or work taken out of a request. The in-process poller runs it once ``eta`` is due
    (see ``apps.agents.deferred``); with a broker, Celery keeps these itself and no row is written."""

    task_name = models.CharField(max_length=200)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    retries = models.PositiveIntegerField(
        default=0, help_text="Celery's retry count for the next attempt (0 for the first)"
    )
    eta = models.DateTimeField(help_text="Not run before this time")
    status = models.CharField(
        max_length=10, choices=DeferredTaskStatus.choices, default=DeferredTaskStatus.PENDING
    )
    locked_until = models.DateTimeField(
        null=True, blank=True, help_text="While running: when another process may take it (its runner died)"
    )
    last_error = models.TextField(blank=True)

    class Meta:
        db_table = "deferred_tasks"
        ordering = ["eta", "id"]
        indexes = [models.Index(fields=["status", "eta"], name="deferred_tasks_due")]

    def __str__(self) -> str:
        return f"{self.task_name}{tuple(self.args)} ({self.get_status_display()}, attempt {self.retries + 1})"
