"""A/B tests in the admin: create a test with its variants, weights, metrics and horizon, read its results
(per metric, each variant against the control) and its decision; the queue of hypotheses; the assignments
and their outcomes."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.core.admin import ReadOnlyAdmin, SelectRelatedAdmin, bulk_status_action, pretty_json
from apps.experiments.metrics import METRICS
from apps.experiments.models import ABTest, ABTestVariant, Assignment, Hypothesis, Outcome
from apps.experiments.services import ab_test_pause, ab_test_resume, hypothesis_problems

METRIC_CHOICES = [(name, f"{metric.label} ({name})") for name, metric in METRICS.items()]


def _unknown_metrics(value: Any) -> list[str]:
    if not isinstance(value, list):
        return ["(not a list)"]
    return [str(m) for m in value if m not in METRICS]


class ABTestForm(forms.ModelForm):
    metric = forms.ChoiceField(choices=METRIC_CHOICES, help_text="The primary metric, which decides the test")

    class Meta:
        model = ABTest
        fields = "__all__"  # noqa: DJ007 - the admin's fieldsets choose what is shown

    def clean_secondary_metrics(self) -> Any:
        value = self.cleaned_data["secondary_metrics"]
        unknown = _unknown_metrics(value)
        if unknown:
            raise forms.ValidationError(
                f"Unknown metrics: {', '.join(unknown)}. Known: {', '.join(sorted(METRICS))}."
            )
        return value


class ABTestVariantInline(admin.TabularInline):
    model = ABTestVariant
    fields = ("key", "name", "weight", "is_control", "payload")
    extra = 0


def _percent(value: Any) -> str:
    return f"{value:+.1%}" if isinstance(value, int | float) else "—"


def _number(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "—"


def result_table(test: ABTest) -> SafeString:
    """The last evaluation as tables: the decision and the split check, then per metric each variant's units
    and mean and each treatment's effect against the control with its interval, adjusted p and chance to
    win."""
    result = test.result if isinstance(test.result, dict) else {}
    if not result:
        return format_html("<p>{}</p>", "Not evaluated yet.")
    decision = result.get("decision") or "undecided"
    header = format_html(
        "<p><strong>{}</strong>: {}<br>Sample-ratio check p = {} (below 0.001 the split is broken); "
        "exposures {}</p>",
        decision,
        result.get("reason", ""),
        _number(result.get("srm_p_value"), ".4g"),
        ", ".join(f"{k} {n}" for k, n in sorted((result.get("exposures") or {}).items())),
    )
    tables = []
    for metric, figures in (result.get("metrics") or {}).items():
        variants = figures.get("variants") or {}
        comparisons = figures.get("comparisons") or {}
        rows = []
        for key, stats in sorted(variants.items()):
            comparison = comparisons.get(key)
            if comparison is None:
                rows.append(
                    (key, stats.get("n"), _number(stats.get("mean"), ".4g"), "control", "", "", "", "")
                )
                continue
            low, high = comparison.get("ci") or [None, None]
            rows.append(
                (
                    key,
                    stats.get("n"),
                    _number(stats.get("mean"), ".4g"),
                    _percent(comparison.get("effect")),
                    f"{_percent(low)} to {_percent(high)}",
                    _number(comparison.get("adjusted_p_value"), ".4f"),
                    _number(comparison.get("chance_to_win"), ".0%"),
                    ("significant" if comparison.get("significant") else "")
                    + (" · CUPED" if comparison.get("cuped") else ""),
                )
            )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rows,
        )
        tables.append(
            format_html(
                "<h4>{}</h4><table><thead><tr><th>variant</th><th>n</th><th>mean</th><th>effect</th>"
                "<th>interval</th><th>adjusted p</th><th>chance to win</th><th></th></tr></thead>"
                "<tbody>{}</tbody></table>",
                metric,
                body,
            )
        )
    return format_html("{}{}", header, format_html_join("", "{}", ((t,) for t in tables)))


@admin.register(ABTest)
class ABTestAdmin(SelectRelatedAdmin):
    form = ABTestForm
    list_display = (
        "name",
        "subject",
        "metric",
        "status",
        "decision",
        "started_at",
        "ended_at",
        "winner",
    )
    list_select_related = ("winner__test",)
    list_filter = ("status", "decision", "subject")
    search_fields = ("name", "slug", "hypothesis")
    date_hierarchy = "created_at"
    prepopulated_fields = {"slug": ("name",)}
    autocomplete_fields = ("winner",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "slug",
                    "subject",
                    "hypothesis",
                    "metric",
                    "secondary_metrics",
                    "status",
                    "started_at",
                    "ended_at",
                )
            },
        ),
        (
            "Statistics",
            {"fields": ("min_sample_size", "alpha", "horizon_days", "correction", "sequential_tuning")},
        ),
        (
            "Results",
            {
                "fields": (
                    "decision",
                    "decided_at",
                    "winner",
                    "srm_p_value",
                    "evaluated_at",
                    "results",
                    "result_pretty",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    readonly_fields = (
        "decision",
        "decided_at",
        "srm_p_value",
        "evaluated_at",
        "results",
        "result_pretty",
        "created_at",
        "updated_at",
    )
    inlines = (ABTestVariantInline,)
    actions = ("pause", "resume")

    @admin.display(description="results")
    def results(self, obj: ABTest) -> SafeString:
        return result_table(obj)

    @admin.display(description="result (raw)")
    def result_pretty(self, obj: ABTest) -> SafeString:
        return pretty_json(obj.result)

    pause = bulk_status_action(
        description="Pause selected running tests",
        change=lambda ids, user: ab_test_pause(test_ids=ids),
        message="Paused {changed} of {selected} selected tests; only running tests pause.",
    )

    resume = bulk_status_action(
        description="Resume selected paused tests",
        change=lambda ids, user: ab_test_resume(test_ids=ids),
        message="Resumed {changed} of {selected} selected tests; only paused tests resume.",
    )


@admin.register(ABTestVariant)
class ABTestVariantAdmin(SelectRelatedAdmin):
    list_display = ("__str__", "test", "key", "name", "weight", "is_control")
    list_select_related = ("test",)
    list_filter = ("is_control", "test")
    search_fields = ("key", "name", "test__name", "test__slug")
    autocomplete_fields = ("test",)


@admin.register(Assignment)
class AssignmentAdmin(SelectRelatedAdmin):
    list_display = ("subject_key", "test", "variant", "assigned_at", "exposed_at", "converted_at", "value")
    list_select_related = ("test", "variant__test")
    list_filter = ("test",)
    search_fields = ("subject_key", "test__name")
    date_hierarchy = "assigned_at"
    autocomplete_fields = ("test", "variant")
    readonly_fields = ("assigned_at",)


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyAdmin):
    """Written by the flows that measure them (analytics, billing); operators read them."""

    list_display = ("assignment", "test", "variant", "metric", "value", "pre_value", "recorded_at")
    list_select_related = ("assignment__variant", "test", "variant__test")
    list_filter = ("metric", "test")
    search_fields = ("assignment__subject_key", "metric", "test__name", "test__slug")
    date_hierarchy = "recorded_at"


class HypothesisForm(forms.ModelForm):
    metric = forms.ChoiceField(choices=METRIC_CHOICES)

    class Meta:
        model = Hypothesis
        fields = "__all__"  # noqa: DJ007 - the admin's fields choose what is shown

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("status", Hypothesis.Status.QUEUED) == Hypothesis.Status.QUEUED and not self.errors:
            candidate = Hypothesis(
                variants=cleaned.get("variants"),
                metric=cleaned.get("metric", ""),
                secondary_metrics=cleaned.get("secondary_metrics"),
            )
            problems = hypothesis_problems(candidate)
            if problems:
                raise forms.ValidationError([p[:1].upper() + p[1:] + "." for p in problems])
        return cleaned


@admin.register(Hypothesis)
class HypothesisAdmin(SelectRelatedAdmin):
    """The queue the A/B testing agent starts tests from: per subject, the first queued (lowest position)
    starts when no test on that subject is running."""

    form = HypothesisForm
    list_display = ("title", "subject", "dimension", "metric", "position", "status", "test")
    list_editable = ("position", "status")
    list_select_related = ("test",)
    list_filter = ("status", "subject", "dimension")
    search_fields = ("title", "statement")
    ordering = ("subject", "status", "position", "pk")
    fields = (
        "title",
        "subject",
        "dimension",
        "statement",
        "variants",
        "metric",
        "secondary_metrics",
        "horizon_days",
        "min_sample_size",
        "position",
        "status",
        "test",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("test", "created_at", "updated_at")
