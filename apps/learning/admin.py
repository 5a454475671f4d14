"""The self-learning loop in the admin: the strategy-change log (each step readable, and reversible), the freeze
switch, the alert rules operators set and the alerts that fired."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.defaultfilters import truncatechars
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.accounts.models import User
from apps.core.admin import ReadOnlyAdmin, pretty_json
from apps.learning.models import Alert, AlertRule, LearningControl, StrategyChange
from apps.learning.services import (
    ALERT_PLATFORMS,
    learning_control_get,
    learning_freeze,
    strategy_change_revert,
)

_MISSING = object()


def _operator(request: HttpRequest) -> User | None:
    return request.user if isinstance(request.user, User) else None


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every value inside nested tables, by its dotted path; a non-table is its own single leaf."""
    if isinstance(value, dict) and value:
        leaves: dict[str, Any] = {}
        for key, item in value.items():
            leaves.update(_leaves(item, f"{prefix}.{key}" if prefix else str(key)))
        return leaves
    return {prefix or "(value)": value}


def _cell(value: Any) -> str:
    return "—" if value is _MISSING else json.dumps(value, ensure_ascii=False, sort_keys=True)


def differences_table(change: StrategyChange) -> SafeString:
    """What the change moved, one row per value that differs between before, after and the target."""
    columns = [_leaves(change.before), _leaves(change.after), _leaves(change.target)]
    paths = sorted({key for column in columns for key in column})
    rows = [
        (key, *(_cell(column.get(key, _MISSING)) for column in columns))
        for key in paths
        if len({_cell(column.get(key, _MISSING)) for column in columns}) > 1
    ]
    if not rows:
        return format_html("<p>{}</p>", "Nothing differs.")
    body = format_html_join("", "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)
    return format_html(
        "<table><thead><tr><th>value</th><th>before</th><th>after</th><th>target</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        body,
    )


@admin.register(StrategyChange)
class StrategyChangeAdmin(ReadOnlyAdmin):
    """The log is written by the loop; operators read it and put steps back (an action, or the button on a
    change's page), which the log then shows as an operator's change."""

    list_display = (
        "id",
        "agent_name",
        "parameter",
        "source",
        "status",
        "created_at",
        "applied_at",
        "short_reason",
    )
    list_filter = ("status", "source", "agent_name", "parameter")
    search_fields = ("agent_name", "parameter", "reason", "skip_reason")
    date_hierarchy = "created_at"
    list_select_related = ("reverted_by",)
    fields = (
        "agent_name",
        "parameter",
        "source",
        "status",
        "reason",
        "differences",
        "cycle",
        "created_at",
        "applied_at",
        "skip_reason",
        "reverted_at",
        "reverted_by",
        "evidence_pretty",
        "before_pretty",
        "after_pretty",
        "target_pretty",
    )
    readonly_fields = fields
    actions = ("revert",)
    change_form_template = "admin/learning/strategychange/change_form.html"

    @admin.display(description="reason")
    def short_reason(self, obj: StrategyChange) -> str:
        return truncatechars(obj.reason, 100)

    @admin.display(description="what changed")
    def differences(self, obj: StrategyChange) -> SafeString:
        return differences_table(obj)

    @admin.display(description="evidence")
    def evidence_pretty(self, obj: StrategyChange) -> SafeString:
        return pretty_json(obj.evidence)

    @admin.display(description="before")
    def before_pretty(self, obj: StrategyChange) -> SafeString:
        return pretty_json(obj.before)

    @admin.display(description="after")
    def after_pretty(self, obj: StrategyChange) -> SafeString:
        return pretty_json(obj.after)

    @admin.display(description="target")
    def target_pretty(self, obj: StrategyChange) -> SafeString:
        return pretty_json(obj.target)

    def has_revert_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("learning.change_strategychange"))

    def _revert(self, request: HttpRequest, change_id: int) -> bool:
        try:
            strategy_change_revert(change_id=change_id, user=_operator(request))
        except ValidationError as exc:
            self.message_user(request, f"Not reverted: {'; '.join(exc.messages)}", messages.ERROR)
            return False
        return True

    @admin.action(description="Revert selected changes", permissions=["revert"])
    def revert(self, request: HttpRequest, queryset: QuerySet[StrategyChange]) -> None:
        # Newest first: when two selected changes touched one parameter, the later one goes back first.
        ids = list(queryset.order_by("-applied_at", "-pk").values_list("pk", flat=True))
        reverted = sum(self._revert(request, change_id) for change_id in ids)
        self.message_user(request, f"Reverted {reverted} of {len(ids)} selected changes.", messages.INFO)

    def get_urls(self) -> list[URLPattern]:
        revert = path(
            "<path:object_id>/revert/",
            self.admin_site.admin_view(self.revert_view),
            name="learning_strategychange_revert",
        )
        return [revert, *super().get_urls()]

    def revert_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's Revert button (a POST, under the admin's CSRF protection)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_revert_permission(request):
            raise PermissionDenied
        change = self.get_object(request, object_id)
        if change is None:
            raise Http404(f"there is no strategy change {object_id}")
        if self._revert(request, change.pk):
            self.message_user(
                request,
                f"Reverted change #{change.pk}: {change.agent_name}.{change.parameter} is back to its value before.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:learning_strategychange_change", args=[change.pk]))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        change = self.get_object(request, object_id)
        can_revert = (
            change is not None
            and change.status == StrategyChange.Status.APPLIED
            and self.has_revert_permission(request)
        )
        context = {**(extra_context or {}), "can_revert": can_revert}
        return super().change_view(request, object_id, form_url, context)


@admin.register(LearningControl)
class LearningControlAdmin(admin.ModelAdmin):
    """The freeze switch: one row, created unfrozen the first time anyone reads it. Saving it, or the actions,
    records who froze or unfroze learning and why."""

    list_display = ("__str__", "frozen", "reason", "changed_by", "updated_at")
    list_select_related = ("changed_by",)
    fields = ("frozen", "reason", "changed_by", "created_at", "updated_at")
    readonly_fields = ("changed_by", "created_at", "updated_at")
    actions = ("freeze", "unfreeze")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        learning_control_get()
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not LearningControl.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LearningControl, form: Any, change: bool) -> None:
        learning_freeze(frozen=obj.frozen, user=_operator(request), reason=obj.reason)

    @admin.action(description="Freeze learning (no strategy change is applied)", permissions=["change"])
    def freeze(self, request: HttpRequest, queryset: QuerySet[LearningControl]) -> None:
        learning_freeze(frozen=True, user=_operator(request), reason=f"frozen by {request.user} in the admin")
        self.message_user(
            request, "Learning is frozen: proposals are skipped until you unfreeze.", messages.WARNING
        )

    @admin.action(description="Unfreeze learning", permissions=["change"])
    def unfreeze(self, request: HttpRequest, queryset: QuerySet[LearningControl]) -> None:
        learning_freeze(
            frozen=False, user=_operator(request), reason=f"unfrozen by {request.user} in the admin"
        )
        self.message_user(
            request, "Learning is on: the next cycle applies what was learnt.", messages.SUCCESS
        )


class AlertRuleForm(forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = (
            "name",
            "metric",
            "scope",
            "comparison",
            "threshold",
            "enabled",
            "notify_platforms",
            "cooldown_minutes",
        )

    def clean_notify_platforms(self) -> list[str]:
        platforms = self.cleaned_data["notify_platforms"]
        if not isinstance(platforms, list) or any(p not in ALERT_PLATFORMS for p in platforms):
            raise ValidationError(
                f'A list of platforms among {", ".join(ALERT_PLATFORMS)}, e.g. ["discord"].'
            )
        return list(dict.fromkeys(platforms))


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = (
        "name",
        "metric",
        "scope",
        "comparison",
        "threshold",
        "enabled",
        "notify_platforms",
        "cooldown_minutes",
    )
    list_filter = ("enabled", "comparison", "metric")
    search_fields = ("name", "metric", "scope")
    readonly_fields = ("created_at", "updated_at")


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ("fired_at", "rule", "scope", "value", "delivery")
    list_select_related = ("rule",)
    list_filter = ("rule",)
    search_fields = ("rule__name", "scope", "message")
    date_hierarchy = "fired_at"
    fields = ("rule", "scope", "value", "message", "fired_at", "delivered_pretty")
    readonly_fields = fields

    @admin.display(description="delivered")
    def delivery(self, obj: Alert) -> str:
        outcomes = [
            f"{platform}: {outcome.get('status', '?')}" for platform, outcome in obj.delivered.items()
        ]
        return ", ".join(outcomes) or "dashboard only"

    @admin.display(description="delivered")
    def delivered_pretty(self, obj: Alert) -> SafeString:
        return pretty_json(obj.delivered)
