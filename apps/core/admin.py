"""The operator admin's branding, the pieces every app's admin shares, the circuit breakers and the
processes' heartbeats."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.core.models import CircuitBreakerState, Heartbeat
from apps.core.services import circuit_breaker_reset

admin.site.site_header = "CoinLink operations"
admin.site.site_title = "CoinLink admin"
admin.site.index_title = "Operate the platform"


def pretty_json(value: Any) -> SafeString:
    """Indented, escaped JSON for a read-only detail view."""
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, cls=DjangoJSONEncoder)
    return format_html("<pre>{}</pre>", text)


def preformatted(text: str) -> SafeString:
    return format_html("<pre>{}</pre>", text)


AdminAction = Callable[[admin.ModelAdmin, HttpRequest, QuerySet[Any]], None]


def bulk_status_action(
    *, description: str, change: Callable[[list[Any], Any], int], message: str, field: str = "pk"
) -> AdminAction:
    """An admin action that hands the selected rows (their ``field`` values, and the operator) to a service that
    moves them from one status to the next, and says how many moved. The services change only rows in the
    right state, so ``message`` (formatted with ``changed`` and ``selected``) tells the operator about the rest.
    """

    @admin.action(description=description, permissions=["change"])
    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        keys = list(queryset.values_list(field, flat=True))
        changed = change(keys, request.user)
        modeladmin.message_user(request, message.format(changed=changed, selected=len(keys)))

    return action


class ReadOnlyTabularInline(admin.TabularInline):
    """Child rows shown on their parent for reading (a pipeline's runs, a plan's drafts), each linking to its
    own page; ``readonly_fields`` follows ``fields``."""

    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> tuple[str, ...]:
        # An inline's fields are plain names (never fieldset groups), so they are the read-only fields as given.
        return tuple(str(field) for field in self.fields or ())

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class SelectRelatedAdmin(admin.ModelAdmin):
    """Loads ``list_select_related`` with every row this admin reads, not only the changelist's: the
    autocomplete endpoint renders each result with ``__str__``, and several of those cross foreign keys.

    Always give ``list_select_related`` as a tuple: left at False, the changelist would replace it with a bare
    ``select_related()``, which skips nullable foreign keys."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if isinstance(self.list_select_related, list | tuple) and self.list_select_related:
            queryset = queryset.select_related(*self.list_select_related)
        return queryset


class ReadOnlyAdmin(SelectRelatedAdmin):
    """Logs and events are written by the system alone: operators read them, and only a superuser may delete
    (to clear test data, say)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return bool(request.user.is_superuser)


@admin.register(CircuitBreakerState)
class CircuitBreakerStateAdmin(ReadOnlyAdmin):
    """The breakers are moved by the calls themselves; an operator may only close one by hand."""

    list_display = (
        "service",
        "state",
        "consecutive_failures",
        "opened_at",
        "last_failure_at",
        "last_success_at",
        "updated_at",
    )
    list_filter = ("state",)
    search_fields = ("service", "last_error")
    fields = (
        "service",
        "state",
        "consecutive_failures",
        "opened_at",
        "last_failure_at",
        "last_success_at",
        "updated_at",
        "last_error_pretty",
    )
    readonly_fields = ("updated_at", "last_error_pretty")
    actions = ("reset",)

    @admin.display(description="last error")
    def last_error_pretty(self, obj: CircuitBreakerState) -> SafeString:
        return preformatted(obj.last_error)

    @admin.action(description="Reset (close) selected breakers", permissions=["reset"])
    def reset(self, request: HttpRequest, queryset: QuerySet[CircuitBreakerState]) -> None:
        services = list(queryset.values_list("service", flat=True))
        closed = sum(circuit_breaker_reset(service=service) for service in services)
        self.message_user(
            request,
            f"Closed {closed} of {len(services)} selected breakers; the rest were closed already.",
            messages.SUCCESS,
        )

    def has_reset_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("core.change_circuitbreakerstate"))


def heartbeat_state(obj: Heartbeat, *, now: Any = None) -> str:
    """``alive``, ``stale`` (silent for longer than HEARTBEAT_STALE_SECONDS: lost, or hung) or ``stopped``."""
    if obj.stopped_at is not None:
        return "stopped"
    age = ((now or timezone.now()) - obj.last_seen).total_seconds()
    return "alive" if age <= settings.HEARTBEAT_STALE_SECONDS else "stale"


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin):
    """Which workers, beat and bots are alive: written by the processes themselves (apps.core.heartbeats); a
    superuser may delete the row of a process that is gone for good."""

    list_display = ("name", "kind", "state", "seconds_since", "hostname", "pid", "started_at", "last_seen")
    list_filter = ("kind",)
    search_fields = ("name", "hostname")
    ordering = ("kind", "-last_seen")
    fields = ("name", "kind", "hostname", "pid", "started_at", "last_seen", "stopped_at", "details_pretty")
    readonly_fields = ("details_pretty",)

    @admin.display(description="state")
    def state(self, obj: Heartbeat) -> SafeString:
        state = heartbeat_state(obj)
        colour = {"alive": "green", "stale": "#c00", "stopped": "grey"}[state]
        return format_html('<strong style="color: {}">{}</strong>', colour, state)

    @admin.display(description="last heartbeat", ordering="last_seen")
    def seconds_since(self, obj: Heartbeat) -> str:
        return f"{max(0, int((timezone.now() - obj.last_seen).total_seconds()))} s ago"

    @admin.display(description="details")
    def details_pretty(self, obj: Heartbeat) -> SafeString:
        return pretty_json(obj.details)
