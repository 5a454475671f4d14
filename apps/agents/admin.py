"""The agent framework in the admin: per-agent configuration, and the run logs (read-only)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars
from django.utils.safestring import SafeString

from apps.agents.models import AgentConfig, AgentRun, PerformanceSnapshot, PipelineRun
from apps.core.admin import ReadOnlyAdmin, SelectRelatedAdmin, preformatted, pretty_json


@admin.register(AgentConfig)
class AgentConfigAdmin(SelectRelatedAdmin):
    list_display = ("agent_name", "enabled", "paused", "updated_at")
    list_filter = ("enabled", "paused")
    search_fields = ("agent_name", "notes")
    readonly_fields = ("created_at", "updated_at")


class AgentRunInline(admin.TabularInline):
    model = AgentRun
    fields = ("agent_name", "status", "attempt", "started_at", "finished_at", "duration_ms")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


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
        "error_pretty",
    )
    readonly_fields = ("queued_at", "agents_pretty", "summary_pretty", "error_pretty")
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
        "counters_pretty",
        "error_pretty",
        "traceback_pretty",
    )
    readonly_fields = ("queued_at", "counters_pretty", "error_pretty", "traceback_pretty")

    @admin.display(description="summary")
    def summary_excerpt(self, obj: AgentRun) -> str:
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
