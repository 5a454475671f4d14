"""The moderation app's agent: the community moderator."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from django.core.exceptions import ValidationError

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.core import live
from apps.core.resilience import IntegrationError
from apps.moderation.models import ClassifierTraining, TrainingLabel
from apps.moderation.services.enforcement import day_start, moderation_expire, moderation_report_record


def _labels_since_last_training() -> bool:
    """Operators or appeals have labelled messages since the classifier was last trained (a full retraining
    takes seconds of CPU: not worth it for nothing new)."""
    latest = TrainingLabel.objects.order_by("-id").values_list("id", flat=True).first()
    trained = ClassifierTraining.objects.order_by("-id").values_list("last_label_id", flat=True).first()
    return latest is not None and (trained is None or latest > trained)


@register
class CommunityModeratorAgent(BaseAgent):
    name = "community_moderator"
    phase = 3
    description = (
        "Ends timed mutes whose time is up (lifting them on a platform that would still hold one) and restores "
        "the standing of people whose strikes expired; refreshes the drainer-domain feed and retrains the "
        "moderation classifier from new operator and appeal labels; reports each day's actions by check and "
        "the appeals granted (the false-positive rate) into performance snapshots and the live dashboard."
    )
    # Its platform calls go through the retried operation tasks, so an open breaker does not stop its upkeep.
    service_policy = "none"
    default_schedule = "*/15 * * * *"
    default_parameters: ClassVar[dict[str, Any]] = {
        # Days reported each run, today included: appeals decided later change a past day's false positives.
        "report_days": 7,
        "refresh_domains": True,
        "retrain_classifier": True,
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        if not 1 <= params["report_days"] <= 90:
            raise ValidationError("community_moderator.report_days must be from 1 to 90")
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        now = ctx.now
        result = AgentResult()
        expiry = moderation_expire(now=now, since=now - dt.timedelta(days=1))
        result.incr("mutes_ended", expiry.mutes_ended)
        result.incr("mutes_lifted_on_platforms", expiry.mutes_lifted_on_platforms)
        result.incr("strikes_expired", expiry.strikes_expired)
        result.incr("people_restored", expiry.people_restored)

        if params["refresh_domains"]:
            from apps.moderation.services.domains import blocked_domains_refresh

            try:
                refreshed = blocked_domains_refresh()
            except IntegrationError as exc:
                # The feed is down: the domains it listed last time stay blocked; the next run tries again.
                result.incr("errors.drainer_feed")
                result.degrade(f"drainer-domain feed not refreshed: {exc}")
            else:
                result.incr("domains_added", int(refreshed.get("added", 0)))
        if params["retrain_classifier"] and _labels_since_last_training():
            from apps.moderation.services.labels import classifier_retrain

            trained = classifier_retrain()
            result.incr("classifier_retrained")
            result.incr("classifier_labels", int(trained.get("labels", 0)))

        today = day_start(now)
        reports = [
            moderation_report_record(day=today - dt.timedelta(days=back), now=now)
            for back in range(params["report_days"])
        ]
        latest = reports[0]
        result.incr("snapshots", sum(r["snapshots"] for r in reports))
        live.broadcast(live.DASHBOARD_GROUP, "moderation_report", {**latest, "run_id": ctx.run_id})
        rate = latest["false_positive_rate"]
        result.summary = (
            f"today: {latest['actions']} actions"
            + (
                f" ({', '.join(f'{k} {v}' for k, v in sorted(latest['by_check'].items()))})"
                if latest["by_check"]
                else ""
            )
            + f", {latest['appeals_granted']} appeals granted"
            + (f", false-positive rate {rate:.1%}" if rate is not None else "")
            + f"; {expiry.mutes_ended} mutes ended, {expiry.people_restored} people back in good standing"
        )
        return result
