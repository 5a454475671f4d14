"""The embedded default: beat and a worker thread inside the serving process, started only where the site is
served, and live events that reach the server's sockets at once from those threads."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import daphne.server
import pytest
from channels.layers import get_channel_layer
from django.db import connections
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from pytest_django.fixtures import Settings as DjangoSettings

from apps.agents import scheduler
from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.models import AgentConfig, AgentRun, AgentRunStatus, RunTrigger
from apps.core import live
from apps.core.live import DASHBOARD_GROUP
from coinlink.celery import app as celery_app

AgentFactory = Callable[..., type[BaseAgent]]


@pytest.mark.parametrize(
    ("argv", "environ", "expected"),
    [
        (["manage.py", "runserver"], {"RUN_MAIN": "true"}, True),
        (["manage.py", "runserver", "127.0.0.1:8000", "--noreload"], {}, True),
        (["/venv/bin/daphne", "-b", "127.0.0.1", "coinlink.asgi:application"], {}, True),
        (["/venv/lib/python3.11/site-packages/daphne/__main__.py", "coinlink.asgi:application"], {}, True),
        # The autoreloader's parent only watches files; its child (RUN_MAIN) serves.
        (["manage.py", "runserver"], {}, False),
        (["manage.py", "migrate"], {"RUN_MAIN": "true"}, False),
        (["manage.py", "run_pipeline", "--once"], {}, False),
        (["manage.py", "shell"], {}, False),
        (["/venv/bin/celery", "-A", "coinlink", "worker"], {}, False),
        (["/venv/bin/pytest"], {}, False),
        ([], {}, False),
    ],
)
def test_only_serving_processes_start_it(
    settings: DjangoSettings, argv: list[str], environ: dict[str, str], expected: bool
) -> None:
    settings.AGENTS_RUN_IN_PROCESS = True
    assert scheduler.should_start(argv, environ) is expected

    settings.AGENTS_RUN_IN_PROCESS = False
    assert scheduler.should_start(argv, environ) is False


def test_it_is_not_running_in_tests() -> None:
    assert scheduler._runtime is None
    assert not any(thread.name in {"agents-beat", "agents-worker"} for thread in threading.enumerate())


def test_dispatch_hands_the_work_to_the_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = scheduler.EmbeddedWorker()
    worker.start()
    monkeypatch.setattr(
        scheduler,
        "_runtime",
        scheduler.EmbeddedRuntime(worker=worker, beat=threading.Thread(), service=None),  # type: ignore[arg-type]
    )
    ran: list[str] = []
    done = threading.Event()

    class Work:
        def apply_async(self) -> None:
            ran.append(threading.current_thread().name)
            done.set()

    try:
        scheduler.dispatch(Work())  # type: ignore[arg-type]
        assert done.wait(5)
    finally:
        worker.stop()
        worker.join(5)

    assert ran == ["agents-worker"]


def test_without_the_embedded_worker_dispatch_sends_at_once() -> None:
    ran: list[str] = []

    class Work:
        def apply_async(self) -> None:
            ran.append(threading.current_thread().name)

    scheduler.dispatch(Work())  # type: ignore[arg-type]

    assert ran == [threading.current_thread().name]


@pytest.fixture
def fast_beat(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(celery_app.conf, "beat_max_loop_interval", 0.2)
    yield
    scheduler.stop(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_the_embedded_scheduler_runs_a_due_schedule_in_the_worker_thread(
    agent: AgentFactory, fast_beat: None
) -> None:
    ran = threading.Event()
    threads: list[str] = []

    def behaviour(ctx: AgentContext) -> AgentResult:
        threads.append(threading.current_thread().name)
        ran.set()
        return AgentResult(summary="ran on schedule")

    agent("ticker", behaviour, default_schedule="0 0 1 1 *")
    PeriodicTask.objects.create(
        name="ticker every second",
        task="apps.agents.tasks.run_agent",
        kwargs=json.dumps({"agent_name": "ticker"}),
        interval=IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS),
    )

    scheduler.start()
    assert ran.wait(15)
    scheduler.stop(timeout=10)

    assert threads[0] == "agents-worker"
    run = AgentRun.objects.filter(status=AgentRunStatus.SUCCEEDED).first()
    assert run is not None
    assert (run.agent_name, run.trigger, run.summary) == ("ticker", RunTrigger.SCHEDULE, "ran on schedule")
    # beat_init made the configuration and the default schedule of every registered agent.
    config = AgentConfig.objects.get(agent_name="ticker")
    assert config.periodic_task is not None
    assert config.periodic_task.crontab is not None
    assert str(config.periodic_task.crontab.minute) == "0"
    connections.close_all()


# --- live events from the embedded threads ------------------------------------------------------------------


class ServerLoop:
    """An event loop in its own thread standing in for daphne's, with one dashboard socket listening."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.joined = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def listen(self) -> None:
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(DASHBOARD_GROUP, channel)
        self.joined.set()
        while True:
            message = await layer.receive(channel)
            self.received.append((time.monotonic(), message))

    def __enter__(self) -> ServerLoop:
        self.thread.start()
        self.listener = asyncio.run_coroutine_threadsafe(self.listen(), self.loop)
        assert self.joined.wait(5)
        return self

    async def _stop_listening(self) -> None:
        self.listener.cancel()
        await asyncio.gather(asyncio.wrap_future(self.listener), return_exceptions=True)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop_listening(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


@pytest.fixture
def in_memory_layer(settings: DjangoSettings) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def test_events_from_another_thread_are_sent_inside_the_server_loop(
    in_memory_layer: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ServerLoop() as server:
        monkeypatch.setattr(daphne.server, "twisted_loop", server.loop)
        sent = time.monotonic()

        live.broadcast(DASHBOARD_GROUP, "agent_run", {"id": 1, "status": "running"})

        assert server.wait_for(1, timeout=2)
    delivered, message = server.received[0]
    assert (message["event"], message["payload"]) == ("agent_run", {"id": 1, "status": "running"})
    assert delivered - sent < 0.2


def test_why_the_bridge_exists(in_memory_layer: None) -> None:
    """Sent from a foreign thread straight into the in-memory layer (here daphne's loop is not known to
    ``live``), an event waits until something else wakes the server's loop (in daphne, its once-a-second
    housekeeping)."""
    with ServerLoop() as server:
        live.broadcast(DASHBOARD_GROUP, "agent_run", {"id": 1})

        assert not server.wait_for(1, timeout=0.3)
        server.loop.call_soon_threadsafe(lambda: None)
        assert server.wait_for(1, timeout=2)
