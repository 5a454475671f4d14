"""The agent framework in the admin: per-agent configuration with run now, pause, resume and run-a-pipeline
actions (schedules are django-celery-beat's periodic tasks, linked from each configuration), and the run logs
(read-only)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import pluralize, truncatechars
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from apps.agents import registry
from apps.agents.base import BaseAgent
from apps.agents.deferred import deferred_tasks_run_now
from apps.agents.models import (
    AgentConfig,
    AgentRun,
    AgentRunStatus,
    DeferredTask,
    PerformanceSnapshot,
    PipelineRun,
    RunTrigger,
)
from apps.agents.orchestrator import InvalidPipeline
from apps.agents.services import (
    agent_config_clean_parameters,
    agent_config_pause,
    agent_config_resume,
    agent_config_sync,
    agent_run_enqueue,
    pipeline_run_start,
)
from apps.core.admin import (
    ReadOnlyAdmin,
    ReadOnlyTabularInline,
    SelectRelatedAdmin,
    bulk_status_action,
    preformatted,
    pretty_json,
)


class AgentConfigForm(forms.ModelForm):
    class Meta:
        model = AgentConfig
        fields = ("enabled", "paused", "parameters", "notes", "periodic_task")

    def clean_parameters(self) -> dict[str, Any]:
        return agent_config_clean_parameters(
            agent_name=self.instance.agent_name, parameters=self.cleaned_data["parameters"]
        )


def _registered(name: str) -> type[BaseAgent] | None:
    try:
        return registry.get(name)
    except registry.UnknownAgent:
        return None


@admin.register(AgentConfig)
class AgentConfigAdmin(SelectRelatedAdmin):
    form = AgentConfigForm
    list_display = ("agent_name", "phase", "enabled", "paused", "schedule", "last_run", "updated_at")
    list_filter = ("enabled", "paused")
    search_fields = ("agent_name", "notes")
    list_select_related = (
        "periodic_task",
        "periodic_task__crontab",
        "periodic_task__interval",
        "periodic_task__clocked",
        "periodic_task__solar",
    )
    raw_id_fields = ("periodic_task",)
    fields = (
        "agent_name",
        "description",
        "phase",
        "services",
        "depends_on",
        "enabled",
        "paused",
        "parameters",
        "default_parameters",
        "periodic_task",
        "notes",
        "created_at",
        "updated_at",
    )
    readonly_fields = (
        "agent_name",
        "description",
        "phase",
        "services",
        "depends_on",
        "default_parameters",
        "created_at",
        "updated_at",
    )
    actions = ("run_now", "pause", "resume", "run_pipeline_now")

    def get_queryset(self, request: HttpRequest) -> QuerySet[AgentConfig]:
        latest = AgentRun.objects.filter(agent_name=OuterRef("agent_name")).order_by("-queued_at")
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_run_status=Subquery(latest.values("status")[:1]),
                last_run_at=Subquery(latest.values("queued_at")[:1]),
            )
        )

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Configurations are made on demand: every registered agent is listed, ready to run, pause or tune.
        agent_config_sync()
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # One configuration per registered agent, created by the framework.
        return False

    @admin.display(description="description")
    def description(self, obj: AgentConfig) -> str:
        agent = _registered(obj.agent_name)
        return agent.description if agent else "(no agent of this name is registered)"

    @admin.display(description="phase")
    def phase(self, obj: AgentConfig) -> str:
        agent = _registered(obj.agent_name)
        return str(agent.phase) if agent else "-"

    @admin.display(description="services")
    def services(self, obj: AgentConfig) -> str:
        agent = _registered(obj.agent_name)
        return ", ".join(agent.services) if agent and agent.services else "-"

    @admin.display(description="depends on")
    def depends_on(self, obj: AgentConfig) -> str:
        agent = _registered(obj.agent_name)
        return ", ".join(agent.depends_on) if agent and agent.depends_on else "-"

    @admin.display(description="default parameters")
    def default_parameters(self, obj: AgentConfig) -> SafeString:
        agent = _registered(obj.agent_name)
        return pretty_json(agent.default_parameters if agent else {})

    @admin.display(description="schedule")
    def schedule(self, obj: AgentConfig) -> str:
        task = obj.periodic_task
        if task is None:
            return "-"
        when = str(task.crontab or task.interval or task.clocked or task.solar or "")
        return when if task.enabled else f"{when} (off)"

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, obj: AgentConfig) -> str:
        status = getattr(obj, "last_run_status", None)
        when = getattr(obj, "last_run_at", None)
        if status is None or when is None:
            return "-"
        return f"{AgentRunStatus(status).label}, {timesince(when)} ago"

    @admin.action(description="Run selected agents now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[AgentConfig]) -> None:
        names = sorted(queryset.values_list("agent_name", flat=True))
        runs = [agent_run_enqueue(agent_name=name, trigger=RunTrigger.MANUAL) for name in names]
        self.message_user(
            request, f"Queued {len(runs)} run{pluralize(len(runs))}: {', '.join(names)}.", messages.SUCCESS
        )

    pause = bulk_status_action(
        description="Pause selected agents (scheduled and pipeline runs)",
        change=lambda names, user: agent_config_pause(agent_names=names),
        message="Paused {changed} of {selected} selected agents; the rest were already paused.",
        field="agent_name",
    )

    resume = bulk_status_action(
        description="Resume selected agents",
        change=lambda names, user: agent_config_resume(agent_names=names),
        message="Resumed {changed} of {selected} selected agents; the rest were not paused.",
        field="agent_name",
    )

    @admin.action(description="Run a pipeline of the selected agents now", permissions=["change"])
    def run_pipeline_now(self, request: HttpRequest, queryset: QuerySet[AgentConfig]) -> None:
        names = list(queryset.values_list("agent_name", flat=True))
        try:
            pipeline = pipeline_run_start(agent_names=names, trigger=RunTrigger.MANUAL)
        except (registry.UnknownAgent, InvalidPipeline) as exc:
            problem = f"no agent named {exc} is registered" if isinstance(exc, registry.UnknownAgent) else exc
            self.message_user(request, f"No pipeline started: {problem}.", messages.ERROR)
            return
        url = reverse("admin:agents_pipelinerun_change", args=[pipeline.pk])
        self.message_user(
            request,
            format_html(
                'Started <a href="{}">pipeline run #{}</a>: {}.', url, pipeline.pk, ", ".join(pipeline.agents)
            ),
            messages.SUCCESS,
        )


class AgentRunInline(ReadOnlyTabularInline):
    model = AgentRun
    fields = (
        "agent_name",
        "status",
        "attempt",
        "started_at",
        "finished_at",
        "duration_ms",
        "degraded_reason",
    )


@admin.register(PipelineRun)
class PipelineRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "status", "trigger", "queued_at", "started_at", "finished_at")
    list_filter = ("status", "trigger", "name")
    search_fields = ("name", "error")
    date_hierarchy = "queued_at"
    fields = (
        "name",
        "status",
        "trigger",
        "agents_pretty",
        "queued_at",
        "started_at",
        "finished_at",
        "summary_pretty",
        "degraded_reason_pretty",
        "error_pretty",
    )
    readonly_fields = (
        "queued_at",
        "agents_pretty",
        "summary_pretty",
        "degraded_reason_pretty",
        "error_pretty",
    )
    inlines = (AgentRunInline,)

    @admin.display(description="agents")
    def agents_pretty(self, obj: PipelineRun) -> SafeString:
        return pretty_json(obj.agents)

    @admin.display(description="summary")
    def summary_pretty(self, obj: PipelineRun) -> SafeString:
        return pretty_json(obj.summary)

    @admin.display(description="error")
    def error_pretty(self, obj: PipelineRun) -> SafeString:
        return preformatted(obj.error)

    @admin.display(description="degraded because")
    def degraded_reason_pretty(self, obj: PipelineRun) -> SafeString:
        return preformatted(obj.degraded_reason)


@admin.register(AgentRun)
class AgentRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "agent_name",
        "status",
        "trigger",
        "attempt",
        "pipeline_run",
        "queued_at",
        "duration_ms",
        "summary_excerpt",
    )
    list_select_related = ("pipeline_run",)
    list_filter = ("status", "trigger", "agent_name")
    search_fields = ("agent_name", "celery_task_id", "summary", "error")
    date_hierarchy = "queued_at"
    show_full_result_count = False
    fields = (
        "agent_name",
        "status",
        "trigger",
        "pipeline_run",
        "attempt",
        "celery_task_id",
        "queued_at",
        "started_at",
        "finished_at",
        "duration_ms",
        "summary",
        "degraded_reason",
        "counters_pretty",
        "error_pretty",
        "traceback_pretty",
    )
    readonly_fields = ("queued_at", "counters_pretty", "error_pretty", "traceback_pretty")

    @admin.display(description="summary")
    def summary_excerpt(self, obj: AgentRun) -> str:
        if obj.degraded_reason:
            return truncatechars(f"degraded ({obj.degraded_reason}): {obj.summary}", 80)
        return truncatechars(obj.summary, 80)

    @admin.display(description="counters")
    def counters_pretty(self, obj: AgentRun) -> SafeString:
        return pretty_json(obj.counters)

    @admin.display(description="error")
    def error_pretty(self, obj: AgentRun) -> SafeString:
        return preformatted(obj.error)

    @admin.display(description="traceback")
    def traceback_pretty(self, obj: AgentRun) -> SafeString:
        return preformatted(obj.traceback)


@admin.register(PerformanceSnapshot)
class PerformanceSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("metric", "scope", "value", "sample_size", "captured_at")
    list_filter = ("metric",)
    search_fields = ("metric", "scope")
    date_hierarchy = "captured_at"
    show_full_result_count = False
    fields = ("metric", "scope", "value", "sample_size", "captured_at", "details_pretty")
    readonly_fields = ("details_pretty",)

    @admin.display(description="details")
    def details_pretty(self, obj: PerformanceSnapshot) -> SafeString:
        return pretty_json(obj.details)


@admin.register(DeferredTask)
class DeferredTaskAdmin(ReadOnlyAdmin):
    """Task calls the embedded default keeps for later (retries after their backoff, webhook processing): when
    each is due, which attempt it is and why the last one failed. With a broker, Celery keeps these instead."""

    list_display = ("task_name", "args", "status", "eta", "attempt", "last_error_excerpt", "updated_at")
    list_filter = ("status", "task_name")
    search_fields = ("task_name", "last_error")
    date_hierarchy = "eta"
    show_full_result_count = False
    fields = (
        "task_name",
        "args",
        "kwargs",
        "status",
        "eta",
        "attempt",
        "locked_until",
        "created_at",
        "updated_at",
        "last_error_pretty",
    )
    readonly_fields = ("attempt", "created_at", "updated_at", "last_error_pretty")
    actions = ("run_now",)

    @admin.display(description="attempt", ordering="retries")
    def attempt(self, obj: DeferredTask) -> int:
        return obj.retries + 1

    @admin.display(description="last error")
    def last_error_excerpt(self, obj: DeferredTask) -> str:
        return truncatechars(obj.last_error, 80)

    @admin.display(description="last error")
    def last_error_pretty(self, obj: DeferredTask) -> SafeString:
        return preformatted(obj.last_error)

    @admin.action(description="Run selected calls now (pending or failed)", permissions=["run"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[DeferredTask]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        moved = deferred_tasks_run_now(row_ids=ids)
        self.message_user(
            request, f"{moved} of {len(ids)} selected calls are due now; the rest are running or done."
        )

    def has_run_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("agents.change_deferredtask"))
