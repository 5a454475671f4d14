"""``manage.py run_pipeline``: progress for people at a terminal, plain lines for logs, and an exit code that
says whether an agent failed."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.agents.base import AgentContext, AgentResult
from apps.agents.models import AgentRunStatus, PipelineRun
from apps.agents.services import agent_config_pause, agent_config_sync
from coinlink.celery import app as celery_app

# The command commits its own transaction before the pipeline is sent, like in production.
pytestmark = pytest.mark.django_db(transaction=True)

TIME = r"\d\d:\d\d:\d\d"


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def _lines(out: StringIO) -> list[str]:
    # The clock and the durations vary; everything else is exact.
    text = re.sub(rf"^{TIME}  ", "", out.getvalue(), flags=re.MULTILINE)
    return [re.sub(r"\d+\.\d s", "N s", line).rstrip() for line in text.splitlines()]


def test_once_runs_here_and_prints_each_transition(world: Callable[..., None], log: list[str]) -> None:
    world()
    out = StringIO()

    call_command("run_pipeline", "--once", "--agents", "writer,scanner,analysis", stdout=out)

    pipeline = PipelineRun.objects.get()
    assert log == ["scanner", "analysis", "writer"]
    assert _lines(out) == [
        f"Pipeline run #{pipeline.pk}: 3 agents in this process.",
        "scanner                   queued     attempt 1",
        "analysis                  queued     attempt 1",
        "writer                    queued     attempt 1",
        "scanner                   running    attempt 1  N s",
        "scanner                   succeeded  attempt 1  N s  scanner=1  scanner done",
        "analysis                  running    attempt 1  N s",
        "analysis                  succeeded  attempt 1  N s  analysis=1  analysis done",
        "writer                    running    attempt 1  N s",
        "writer                    succeeded  attempt 1  N s  writer=1  writer done",
        "",
        f"Pipeline run #{pipeline.pk} succeeded: 3 succeeded, 0 failed, 0 skipped in N s.",
    ]


def test_once_exits_non_zero_when_an_agent_failed(world: Callable[..., None]) -> None:
    world(fail=("analysis",))
    out = StringIO()

    with pytest.raises(CommandError, match=r"^failed: analysis$") as raised:
        call_command("run_pipeline", "--once", "--agents", "scanner,analysis,writer", stdout=out)

    assert raised.value.returncode == 1
    lines = _lines(out)
    assert "analysis                  failed     attempt 1  N s  RuntimeError: analysis broke" in lines
    assert (
        "writer                    skipped    attempt 1  dependency analysis failed in this pipeline run"
        in lines
    )
    assert lines[-1].endswith("partial: 1 succeeded, 1 failed, 1 skipped in N s.")


def test_once_runs_in_process_even_with_a_broker(
    world: Callable[..., None], monkeypatch: pytest.MonkeyPatch, log: list[str]
) -> None:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    world()

    call_command("run_pipeline", "--once", "--agents", "news", stdout=StringIO())

    assert log == ["news"]
    assert celery_app.conf.task_always_eager is False


def test_at_a_terminal_the_table_is_redrawn_in_place(world: Callable[..., None]) -> None:
    world()
    out = Terminal()

    call_command("run_pipeline", "--once", "--agents", "scanner,news", stdout=out)

    text = out.getvalue()
    # Each redraw goes back over the three lines of the table before: four transitions, then the last look.
    assert text.count("\x1b[3F\x1b[J") == 5
    last_table = text.rsplit("\x1b[3F\x1b[J", 1)[1]
    rows = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in last_table.splitlines()[:3]]
    assert [row.split() for row in rows] == [
        ["AGENT", "PHASE", "STATUS", "TRY", "TIME", "RESULT"],
        ["news", "1", "succeeded", "1", *rows[1].split()[4:6], "news", "done"],
        ["scanner", "1", "succeeded", "1", *rows[2].split()[4:6], "scanner", "done"],
    ]


def test_without_once_it_follows_the_run_to_its_end(world: Callable[..., None], log: list[str]) -> None:
    # No broker here: the pipeline runs as it is sent, and following it ends at once.
    world()
    out = StringIO()

    call_command("run_pipeline", stdout=out)

    assert log == ["news", "scanner", "analysis", "writer", "publisher"]
    assert PipelineRun.objects.get().status == PipelineRun.Status.SUCCEEDED
    assert _lines(out)[-1].endswith("succeeded: 5 succeeded, 0 failed, 0 skipped in N s.")


def test_unknown_agents_are_refused_before_anything_runs(world: Callable[..., None]) -> None:
    world()

    with pytest.raises(CommandError) as raised:
        call_command("run_pipeline", "--once", "--agents", "scanner,scanr", stdout=StringIO())

    assert str(raised.value) == (
        "unknown agents: scanr (registered: analysis, news, scanner, writer, publisher)"
    )
    assert not PipelineRun.objects.exists()


def test_no_agents_at_all() -> None:
    with pytest.raises(CommandError, match=r"^no agents are registered$"):
        call_command("run_pipeline", "--once", stdout=StringIO())


def test_the_skipped_count_does_not_fail_the_command(world: Callable[..., None]) -> None:
    world()
    call_command("run_pipeline", "--once", "--agents", "scanner", stdout=StringIO())
    # A second pipeline with the scanner paused: skipped, nothing failed, exit status 0.
    agent_config_sync()
    agent_config_pause(agent_names=["scanner"])

    call_command("run_pipeline", "--once", "--agents", "scanner", stdout=StringIO())

    latest = PipelineRun.objects.latest("pk")
    assert latest.agent_runs.get().status == AgentRunStatus.SKIPPED


def test_a_degraded_pipeline_exits_zero_and_says_why(agent: Callable[..., object]) -> None:
    def scan(ctx: AgentContext) -> AgentResult:
        return AgentResult(counters=Counter({"candles": 5, "errors.exchange": 1}), summary="5 candles")

    agent("scanner", scan)
    out = StringIO()

    call_command("run_pipeline", "--once", stdout=out)

    pipeline = PipelineRun.objects.get()
    assert pipeline.status == PipelineRun.Status.DEGRADED
    assert _lines(out)[-2:] == [
        f"Pipeline run #{pipeline.pk} degraded: 1 succeeded, 0 failed, 0 skipped in N s.",
        "Degraded: scanner: errors.exchange=1",
    ]
