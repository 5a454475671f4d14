"""A/B tests in the admin: tests with their variants, pause and resume, and the assignments."""

from __future__ import annotations

from django.contrib import admin
from django.utils.safestring import SafeString

from apps.core.admin import SelectRelatedAdmin, bulk_status_action, pretty_json
from apps.experiments.models import ABTest, ABTestVariant, Assignment
from apps.experiments.services import ab_test_pause, ab_test_resume


class ABTestVariantInline(admin.TabularInline):
    model = ABTestVariant
    fields = ("key", "name", "weight", "is_control", "payload")
    extra = 0


@admin.register(ABTest)
class ABTestAdmin(SelectRelatedAdmin):
    list_display = ("name", "subject", "metric", "status", "started_at", "ended_at", "winner")
    list_select_related = ("winner__test",)
    list_filter = ("status", "subject")
    search_fields = ("name", "slug", "hypothesis")
    date_hierarchy = "created_at"
    prepopulated_fields = {"slug": ("name",)}
    autocomplete_fields = ("winner",)
    fields = (
        "name",
        "slug",
        "subject",
        "hypothesis",
        "metric",
        "status",
        "min_sample_size",
        "alpha",
        "started_at",
        "ended_at",
        "winner",
        "result_pretty",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("result_pretty", "created_at", "updated_at")
    inlines = (ABTestVariantInline,)
    actions = ("pause", "resume")

    @admin.display(description="result")
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
