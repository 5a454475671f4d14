"""``manage.py run_pipeline [--agents a,b] [--once]``: run a pipeline and watch it.

At a terminal the agents are a table redrawn in place as they move; piped to a file or a log, each transition
is one plain line. ``--once`` runs the whole pipeline here, in this process, and exits non-zero when an agent
failed (for cron, CI, or a first look on a fresh machine); without it the pipeline goes to the broker and this
command follows it by polling until it is done.
"""

from __future__ import annotations

import shutil
import time
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.core.management.color import Style
from django.db import transaction
from django.utils import timezone

from apps.agents import registry, selectors
from apps.agents.models import AgentRun, AgentRunStatus, PipelineRun, RunTrigger
from apps.agents.orchestrator import InvalidPipeline, run_in_this_process
from apps.agents.services import agent_run_changed, pipeline_run_start
from coinlink.celery import app as celery_app

COLUMNS = ("agent", "phase", "status", "try", "time", "result")


def _phase(agent_name: str) -> str:
    try:
        return str(registry.get(agent_name).phase)
    except registry.UnknownAgent:
        return "-"


def _seconds(run: AgentRun, now: datetime) -> str:
    if run.duration_ms is not None and run.status != AgentRunStatus.RUNNING:
        return f"{run.duration_ms / 1000:.1f} s"
    if run.status == AgentRunStatus.RUNNING and run.started_at is not None:
        return f"{(now - run.started_at).total_seconds():.1f} s"
    return ""


def _result(run: AgentRun) -> str:
    if run.status in (AgentRunStatus.FAILED, AgentRunStatus.RETRYING):
        return run.error.splitlines()[0] if run.error else ""
    if run.status == AgentRunStatus.SKIPPED:
        return run.summary
    counters = " ".join(f"{key}={value}" for key, value in sorted(run.counters.items()))
    return "  ".join(part for part in (counters, run.summary) if part)


class ProgressDisplay:
    """Shows one pipeline run's agents: a table redrawn in place at a terminal, one line a change otherwise."""

    def __init__(self, out: OutputWrapper, style: Style, *, tty: bool) -> None:
        self.out = out
        self.style = style
        self.tty = tty
        self.pipeline_run_id: int | None = None
        self._drawn_lines = 0
        self._seen: dict[int, tuple[str, int]] = {}

    def _colour(self, status: str, text: str) -> str:
        if not self.tty:
            return text
        paint = {
            AgentRunStatus.SUCCEEDED: self.style.SUCCESS,
            AgentRunStatus.FAILED: self.style.ERROR,
            AgentRunStatus.RETRYING: self.style.WARNING,
            AgentRunStatus.SKIPPED: self.style.NOTICE,
        }.get(AgentRunStatus(status))
        return paint(text) if paint else text

    def refresh(self) -> None:
        if self.pipeline_run_id is None:
            return
        runs = list(selectors.agent_run_list_for_pipeline(pipeline_run_id=self.pipeline_run_id))
        if self.tty:
            self._redraw(runs)
        else:
            self._print_changes(runs)

    def _redraw(self, runs: list[AgentRun]) -> None:
        now = timezone.now()
        rows = [
            (
                run.agent_name,
                _phase(run.agent_name),
                run.status,
                str(run.attempt),
                _seconds(run, now),
                # One line per agent: the summary says it best; the counters are in the admin.
                (run.summary if run.status == AgentRunStatus.SUCCEEDED and run.summary else _result(run)),
            )
            for run in runs
        ]
        widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(COLUMNS[:-1])]
        # A line that wrapped would take two rows of the screen and throw the redraw off by one.
        room = max(0, shutil.get_terminal_size().columns - sum(widths) - 2 * len(widths) - 1)
        lines = [
            "  ".join(c.upper().ljust(w) for c, w in zip(COLUMNS[:-1], widths, strict=True)) + "  RESULT"
        ]
        for row in rows:
            cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
            cells[2] = self._colour(row[2], cells[2])
            lines.append("  ".join(cells) + "  " + row[-1][:room])
        if self._drawn_lines:
            # Back to the table's first line, and clear what was drawn before.
            self.out.write(f"\x1b[{self._drawn_lines}F\x1b[J", ending="")
        self.out.write("\n".join(lines))
        self.out.flush()
        self._drawn_lines = len(lines)

    def _print_changes(self, runs: list[AgentRun]) -> None:
        now = timezone.now()
        for run in runs:
            state = (run.status, run.attempt)
            if self._seen.get(run.pk) == state:
                continue
            self._seen[run.pk] = state
            parts = [
                timezone.localtime(now).strftime("%H:%M:%S"),
                run.agent_name.ljust(24),
                run.status.ljust(9),
                f"attempt {run.attempt}",
                _seconds(run, now),
                _result(run),
            ]
            self.out.write("  ".join(part for part in parts if part).rstrip())
        self.out.flush()

    def on_run_changed(self, sender: type[AgentRun], run: AgentRun, **kwargs: Any) -> None:
        if run.pipeline_run_id is not None and run.pipeline_run_id == self.pipeline_run_id:
            self.refresh()


class Command(BaseCommand):
    help = "Run a pipeline of the agents (all registered agents unless --agents) and show its progress."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--agents",
            help="comma-separated agent names to run (their order comes from phases and dependencies)",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="run the pipeline in this process, wait for it, exit 1 if an agent failed",
        )
        parser.add_argument(
            "--poll", type=float, default=0.5, help="seconds between progress checks when following workers"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        agent_names = self._agent_names(options["agents"])
        display = ProgressDisplay(self.stdout, self.style, tty=self.stdout.isatty())
        agent_run_changed.connect(display.on_run_changed, sender=AgentRun)
        try:
            pipeline = self._start(agent_names, display, once=options["once"])
            try:
                pipeline = self._follow(pipeline, display, poll=options["poll"])
            except KeyboardInterrupt:
                self.stdout.write(f"\nStopped following pipeline run #{pipeline.pk}; it carries on.")
                return
        finally:
            agent_run_changed.disconnect(display.on_run_changed, sender=AgentRun)
        self._report(pipeline)

    def _agent_names(self, option: str | None) -> list[str] | None:
        registered = registry.names()
        if not registered:
            raise CommandError("no agents are registered")
        if option is None:
            return None
        names = [name.strip() for name in option.split(",") if name.strip()]
        if not names:
            raise CommandError("--agents names no agent")
        if unknown := [name for name in names if name not in registered]:
            raise CommandError(f"unknown agents: {', '.join(unknown)} (registered: {', '.join(registered)})")
        return list(dict.fromkeys(names))

    def _start(self, agent_names: list[str] | None, display: ProgressDisplay, *, once: bool) -> PipelineRun:
        with run_in_this_process() if once else nullcontext():
            try:
                # The canvas is sent when this block commits, so the display knows which run to follow
                # before the first agent moves (with --once, everything happens during the commit).
                with transaction.atomic():
                    pipeline = pipeline_run_start(agent_names=agent_names, trigger=RunTrigger.MANUAL)
                    display.pipeline_run_id = pipeline.pk
                    self.stdout.write(
                        f"Pipeline run #{pipeline.pk}: {len(pipeline.agents)} agents"
                        f"{' in this process' if once or celery_app.conf.task_always_eager else ''}."
                    )
                    display.refresh()
            except InvalidPipeline as exc:
                raise CommandError(str(exc)) from exc
        return pipeline

    def _follow(self, pipeline: PipelineRun, display: ProgressDisplay, *, poll: float) -> PipelineRun:
        while True:
            pipeline.refresh_from_db()
            display.refresh()
            if pipeline.status in selectors.PIPELINE_FINISHED_STATUSES:
                return pipeline
            time.sleep(poll)

    def _report(self, pipeline: PipelineRun) -> None:
        summary = pipeline.summary
        elapsed = ""
        if pipeline.started_at and pipeline.finished_at:
            elapsed = f" in {(pipeline.finished_at - pipeline.started_at).total_seconds():.1f} s"
        line = (
            f"Pipeline run #{pipeline.pk} {pipeline.status}: {summary.get('succeeded', 0)} succeeded, "
            f"{summary.get('failed', 0)} failed, {summary.get('skipped', 0)} skipped{elapsed}."
        )
        failed = list(
            selectors.agent_run_list_for_pipeline(pipeline_run_id=pipeline.pk)
            .filter(status=AgentRunStatus.FAILED)
            .values_list("agent_name", flat=True)
        )
        self.stdout.write("")
        if failed:
            self.stdout.write(self.style.ERROR(line))
            raise CommandError(f"failed: {', '.join(failed)}", returncode=1)
        if pipeline.degraded_reason:
            # Everything ran, so the exit status stays 0, but the figures are incomplete: say why.
            self.stdout.write(self.style.WARNING(line))
            self.stdout.write(self.style.WARNING(f"Degraded: {pipeline.degraded_reason}"))
            return
        self.stdout.write(self.style.SUCCESS(line))
