"""The embedded default runs the agents inside the server process.

With no broker (``CELERY_TASK_ALWAYS_EAGER``) there is no ``celery beat`` and no worker, so when
``AGENTS_RUN_IN_PROCESS`` is on, ``runserver`` and ``daphne`` start three daemon threads:

- beat: Celery beat's ``Service`` with django-celery-beat's ``DatabaseScheduler``, reading the same schedules
  the admin edits. A due entry's ``apply_async`` runs the task eagerly, in this thread.
- worker: the agents' runs and pipelines, one at a time. The framework hands its Celery work here
  (``dispatch``) instead of running it eagerly where it was asked for, so an admin request or a beat tick
  returns at once while the agents work.
- deferred: the poller of ``deferred_tasks`` (``apps.agents.deferred``), the durable stand-in for a broker's
  delayed messages. Retries after their backoff (a Stripe read-back, a platform sync, an agent's next
  attempt) and work taken out of requests (a Stripe webhook's processing) run here, once due, and a restart
  loses none of them. It polls every ``DEFERRED_POLL_SECONDS`` and at once when a call is written.

Live events need one more step. The in-memory channel layer is a set of asyncio queues owned by the server's
event loop; an event put on them from another thread (through ``async_to_sync``'s own loop) is not thread-safe
and wakes nobody: the socket gets it only when daphne's once-a-second housekeeping wakes the loop (measured:
0 to 1 s late, uniformly). ``broadcast`` therefore sends from inside the server's loop when there is one.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.beat import Service
from celery.canvas import Signature
from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler

from apps.core.heartbeats import Beat, HeartbeatThread, process_name
from apps.core.models import Heartbeat
from coinlink.celery import app as celery_app

logger = logging.getLogger(__name__)


def should_start(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Only a process that serves the site runs the embedded scheduler: never tests, migrations or other
    commands, and under runserver's autoreloader only the child that serves (the parent just watches files
    and restarts it)."""
    if not settings.AGENTS_RUN_IN_PROCESS or not argv:
        return False
    program = Path(argv[0])
    if program.name == "daphne" or (program.name == "__main__.py" and program.parent.name == "daphne"):
        return True
    if len(argv) > 1 and argv[1] == "runserver":
        return environ.get("RUN_MAIN") == "true" or "--noreload" in argv
    return False


# How often the poller looks for due deferred calls; a call written in this process wakes it at once.
DEFERRED_POLL_SECONDS = 1.0


class EmbeddedWorker(threading.Thread):
    """Runs the submitted jobs one after the other, in the order they came."""

    def __init__(self) -> None:
        super().__init__(name="agents-worker", daemon=True)
        self._jobs: queue.Queue[Callable[[], object] | None] = queue.Queue()

    def submit(self, job: Callable[[], object]) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)

    def run(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                # Nothing closes a background thread's connection at the end of a request, so do it here,
                # or a connection the database dropped would fail every later job.
                close_old_connections()
                try:
                    job()
                except Exception:
                    logger.exception("embedded agent work failed")
                finally:
                    close_old_connections()
        finally:
            connections.close_all()


class DeferredPoller(threading.Thread):
    """Runs the deferred calls that are due, one after the other, then sleeps until the next poll or a wake."""

    def __init__(self, interval: float = DEFERRED_POLL_SECONDS) -> None:
        super().__init__(name="agents-deferred", daemon=True)
        self.interval = interval
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        from apps.agents.deferred import KEEP_SUCCEEDED, deferred_tasks_prune, deferred_tasks_run_due

        pruned_at = 0.0
        try:
            while not self._stopping.is_set():
                # Cleared before looking, so a call written while this one runs wakes the next look at once.
                self._wake.clear()
                close_old_connections()
                try:
                    deferred_tasks_run_due()
                    if time.monotonic() - pruned_at > 3600:
                        deferred_tasks_prune(finished_before=timezone.now() - KEEP_SUCCEEDED)
                        pruned_at = time.monotonic()
                except Exception:
                    logger.exception("the deferred task poller failed; polling again")
                finally:
                    close_old_connections()
                self._wake.wait(self.interval)
        finally:
            connections.close_all()


def _run_beat(service: Service) -> None:
    try:
        service.start()
    except Exception:
        logger.exception("the embedded scheduler stopped")
    finally:
        connections.close_all()


@dataclass
class EmbeddedRuntime:
    worker: EmbeddedWorker
    beat: threading.Thread
    service: Service
    poller: DeferredPoller | None = None

    def stop(self, timeout: float = 10.0) -> None:
        self.service.stop()
        self.worker.stop()
        if self.poller is not None:
            self.poller.stop()
        self.beat.join(timeout)
        self.worker.join(timeout)
        if self.poller is not None:
            self.poller.join(timeout)


_runtime: EmbeddedRuntime | None = None
_lock = threading.Lock()


def start() -> EmbeddedRuntime:
    """Start the embedded worker and beat threads (once per process)."""
    global _runtime
    with _lock:
        if _runtime is not None and _runtime.beat.is_alive():
            return _runtime
        worker = EmbeddedWorker()
        # No remote control: it would need a broker to listen on.
        service = Service(celery_app, scheduler_cls=DatabaseScheduler, remote_control=False)
        beat = threading.Thread(target=_run_beat, args=(service,), name="agents-beat", daemon=True)
        poller = DeferredPoller()
        _runtime = EmbeddedRuntime(worker=worker, beat=beat, service=service, poller=poller)
        worker.start()
        beat.start()
        poller.start()
        _start_heartbeat()
        logger.info("embedded agent scheduler started")
        return _runtime


def stop(timeout: float = 10.0) -> None:
    global _runtime, _heartbeat
    with _lock:
        runtime, _runtime = _runtime, None
        heartbeat, _heartbeat = _heartbeat, None
    if runtime is not None:
        runtime.stop(timeout)
    if heartbeat is not None:
        heartbeat.stop()


_heartbeat: HeartbeatThread | None = None


def _worker_alive() -> bool:
    runtime = _runtime
    return runtime is not None and runtime.worker.is_alive()


def _beat_alive() -> bool:
    runtime = _runtime
    return runtime is not None and runtime.beat.is_alive()


def _start_heartbeat() -> None:
    """The in-process worker and beat say they are alive like Celery's own (``apps.core.heartbeats``)."""
    global _heartbeat
    if _heartbeat is not None and _heartbeat.is_alive():
        return
    _heartbeat = HeartbeatThread(
        [
            Beat(kind=Heartbeat.Kind.WORKER, name=process_name("embedded-worker"), alive=_worker_alive),
            Beat(kind=Heartbeat.Kind.BEAT, name=process_name("embedded-beat"), alive=_beat_alive),
        ]
    )
    _heartbeat.start()


def dispatch(signature: Signature) -> None:
    """Send the framework's Celery work: to the broker, or in the embedded mode to the worker thread."""
    runtime = _runtime
    if runtime is not None and runtime.worker.is_alive() and celery_app.conf.task_always_eager:
        runtime.worker.submit(signature.apply_async)
    else:
        signature.apply_async()


def runs_deferred_calls() -> bool:
    """True in the process whose embedded runtime polls ``deferred_tasks``: only there are calls deferred."""
    runtime = _runtime
    return runtime is not None and runtime.poller is not None and runtime.poller.is_alive()


def wake() -> None:
    """Have the poller look for due deferred calls now rather than at its next poll."""
    runtime = _runtime
    if runtime is not None and runtime.poller is not None:
        runtime.poller.wake()


def sync_schedules_on_beat_start(**kwargs: Any) -> None:
    """beat_init receiver: every registered agent has its configuration and default schedule before beat
    (``celery beat`` in production, the embedded thread otherwise) reads the schedules."""
    from apps.agents.services import agent_config_sync

    try:
        agent_config_sync()
    except Exception:
        # Beat still serves the schedules that exist.
        logger.exception("could not create the agents' configurations and schedules")
