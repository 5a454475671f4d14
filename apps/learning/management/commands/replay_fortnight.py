"""``manage.py replay_fortnight [--days 14] [--step-hours 2]``: the self-learning loop over a simulated
fortnight, on the demo world.

The clock is moved back to the start of the period and steps forward through it; at every step the content
funnel's agents run as one pipeline in this process, exactly as beat would run them (market scanner,
analysis, strategist, creation, images, publishing, analytics, on the offline twins), and once a simulated
day the phase 4 agents run after them (A/B testing, strategy tuning, performance analytics, the feedback
loop). The twins' simulated audience (``apps.integrations.audience``) engages with each post by its
platform, format, time of day and tone, so the loop has something true to find: it ends with a decided A/B
test, arm weights moved toward the arms that audience prefers, the strategy changes that moved them in the
admin, and the agents' performance snapshots, all on the self-learning dashboard.

Moving the clock needs ``time-machine`` (a development extra, installed by ``make run``). Refused in
production: it writes a fortnight of posts that never went out.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from apps.agents.models import AgentRun, AgentRunStatus, PipelineRun, RunTrigger
from apps.agents.orchestrator import run_in_this_process
from apps.agents.selectors import agent_config_get
from apps.agents.services import pipeline_run_start
from apps.content.agents.creation import ContentCreationAgent
from apps.content.agents.strategist import Arm, ContentStrategistAgent
from apps.content.models import PublishedContent
from apps.experiments.models import ABTest
from apps.integrations import audience
from apps.learning.models import StrategyChange
from apps.learning.tuning import Tones

FUNNEL = (
    "market_scanner",
    "analysis",
    "content_strategist",
    "content_creation",
    "image_generation",
    "publishing",
    "analytics",
)
LEARNING = ("ab_testing", "strategy_tuning", "performance_analytics", "feedback_loop")


def strategy_expected_rate(
    arm_weights: Mapping[str, Mapping[str, float]], tones: Mapping[str, Mapping[str, Any]]
) -> dict[str, tuple[float, float, float]]:
    """Per platform: the audience's expected engagement rate under the weights, under equal weights over the
    same arms, and of the best of them, so a replay can say how far the strategy moved toward the best."""
    figures = {}
    for platform, arms in arm_weights.items():
        rates = {
            key: audience.arm_expected_rate(
                platform=platform, format=arm.format, bucket=arm.bucket, tone=tones.get(arm.tone, {})
            )
            for key, arm in ((key, Arm.parse(key)) for key in arms)
        }
        total = sum(arms.values()) or 1.0
        learnt = sum(rates[key] * weight for key, weight in arms.items()) / total
        figures[platform] = (learnt, sum(rates.values()) / len(rates), max(rates.values()))
    return figures


class Command(BaseCommand):
    help = "Replay a simulated fortnight of the content funnel and the self-learning loop on the demo world."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=14, help="simulated days, ending now (default 14)")
        parser.add_argument(
            "--step-hours", type=int, default=2, help="hours between funnel runs (default 2; 1 to 6)"
        )
        parser.add_argument(
            "--unless-replayed",
            action="store_true",
            help="do nothing when the database already holds agent runs from before yesterday (make run's guard)",
        )
        parser.add_argument("--force", action="store_true", help="run even with DJANGO_ENV=production")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION and not options["force"]:
            raise CommandError("refusing to replay a simulated fortnight into a production database")
        days, step = options["days"], options["step_hours"]
        if not 1 <= days <= 60:
            raise CommandError("--days must be from 1 to 60")
        if not 1 <= step <= 6:
            raise CommandError("--step-hours must be from 1 to 6")
        try:
            import time_machine
        except ImportError:
            raise CommandError(
                "replay_fortnight moves the clock with time-machine, a development extra: "
                'pip install -e ".[dev]" (make run installs it)'
            ) from None

        # Every task's line in the log would bury the day-by-day report.
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
        if (
            options["unless_replayed"]
            and AgentRun.objects.filter(queued_at__lt=timezone.now() - dt.timedelta(days=1)).exists()
        ):
            self.stdout.write("This database already has days of agent runs: nothing replayed.")
            return
        end = timezone.now().replace(minute=0, second=0, microsecond=0)
        start = end - dt.timedelta(days=days)
        first_change = StrategyChange.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        self.stdout.write(
            f"Replaying {days} days from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, "
            f"the funnel every {step} h and the learning loop after the last run of each day."
        )
        began = time.monotonic()
        moment = start
        while moment < end:
            following = moment + dt.timedelta(hours=step)
            learn = following.date() != moment.date() or following >= end
            names = [*FUNNEL, *(LEARNING if learn else ())]
            # The clock ticks from the simulated moment, so runs take their real durations.
            with time_machine.travel(moment, tick=True):
                pipeline = self._run(names)
                if learn:
                    self._report_day(pipeline, moment)
            moment += dt.timedelta(hours=step)
        self._summary(first_change=first_change, elapsed=time.monotonic() - began)

    def _run(self, names: list[str]) -> PipelineRun:
        with run_in_this_process(), transaction.atomic():
            pipeline = pipeline_run_start(agent_names=names, trigger=RunTrigger.MANUAL)
        pipeline.refresh_from_db()
        failed = AgentRun.objects.filter(pipeline_run=pipeline, status=AgentRunStatus.FAILED).values_list(
            "agent_name", "error"
        )
        for agent_name, error in failed:
            self.stderr.write(f"  {timezone.now():%m-%d %H:%M} {agent_name} failed: {error.splitlines()[0]}")
        return pipeline

    def _report_day(self, pipeline: PipelineRun, moment: dt.datetime) -> None:
        day_start = moment.replace(hour=0)
        posts = PublishedContent.objects.filter(
            published_at__gte=day_start, published_at__lt=day_start + dt.timedelta(days=1)
        ).count()
        running = ABTest.objects.filter(status=ABTest.Status.RUNNING).order_by("started_at").first()
        test = (
            f"test {running.slug}: {running.result.get('reason', 'not evaluated')}" if running else "no test"
        )
        applied = StrategyChange.objects.filter(
            cycle__in=AgentRun.objects.filter(pipeline_run=pipeline, agent_name="feedback_loop").values("pk"),
            status=StrategyChange.Status.APPLIED,
        ).count()
        self.stdout.write(f"{moment:%Y-%m-%d}: {posts} posts; {applied} strategy changes applied; {test}")

    def _summary(self, *, first_change: int, elapsed: float) -> None:
        decided = ABTest.objects.exclude(decision="").order_by("decided_at")
        self.stdout.write("")
        self.stdout.write(f"Replayed in {elapsed:.0f} s.")
        for test in decided:
            winner = f" ({test.winner.key}: {test.winner.name})" if test.winner else ""
            self.stdout.write(
                f"A/B test {test.slug}: {test.get_decision_display()}{winner}; {test.result.get('reason', '')}"
            )
        changes = StrategyChange.objects.filter(pk__gt=first_change)
        by_status = {s: changes.filter(status=s).count() for s in StrategyChange.Status.values}
        self.stdout.write(
            "Strategy changes: " + ", ".join(f"{n} {status}" for status, n in by_status.items() if n)
        )
        config = agent_config_get(agent_name=ContentStrategistAgent.name)
        params = ContentStrategistAgent.validate_parameters(config.parameters if config else {})
        creation = agent_config_get(agent_name=ContentCreationAgent.name)
        tones = Tones.from_params(
            ContentCreationAgent.validate_parameters(creation.parameters if creation else {})
        ).presets
        for platform, (learnt, even, best) in sorted(
            strategy_expected_rate(params["arm_weights"], tones).items()
        ):
            self.stdout.write(
                f"{platform}: the audience's expected engagement under the learnt weights {learnt:.2%}, "
                f"under equal weights {even:.2%}, of the best arm {best:.2%}"
            )
        if not params["arm_weights"]:
            self.stdout.write(
                "No arm weights were applied: see the strategy tuning agent's runs in the admin."
            )
