"""The embedded default runs the agents inside the server process.

With no broker (``CELERY_TASK_ALWAYS_EAGER``) there is no ``celery beat`` and no worker, so when
``AGENTS_RUN_IN_PROCESS`` is on, ``runserver`` and ``daphne`` start two daemon threads:

- beat: Celery beat's ``Service`` with django-celery-beat's ``DatabaseScheduler``, reading the same schedules
  the admin edits. A due entry's ``apply_async`` runs the task eagerly, in this thread.
- worker: the agents' runs and pipelines, one at a time. The framework hands its Celery work here
  (``dispatch``) instead of running it eagerly where it was asked for, so an admin request or a beat tick
  returns at once while the agents work.

Live events need one more step. The in-memory channel layer is a set of asyncio queues owned by the server's
event loop; an event put on them from another thread (through ``async_to_sync``'s own loop) is not thread-safe
and wakes nobody: the socket gets it only when daphne's once-a-second housekeeping wakes the loop (measured:
0 to 1 s late, uniformly). ``broadcast`` therefore sends from inside the server's loop when there is one.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.beat import Service
from celery.canvas import Signature
from django.conf import settings
from django.db import close_old_connections, connections
from django_celery_beat.schedulers import DatabaseScheduler

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

    def stop(self, timeout: float = 10.0) -> None:
        self.service.stop()
        self.worker.stop()
        self.beat.join(timeout)
        self.worker.join(timeout)


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
        _runtime = EmbeddedRuntime(worker=worker, beat=beat, service=service)
        worker.start()
        beat.start()
        logger.info("embedded agent scheduler started")
        return _runtime


def stop(timeout: float = 10.0) -> None:
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.stop(timeout)


def dispatch(signature: Signature) -> None:
    """Send the framework's Celery work: to the broker, or in the embedded mode to the worker thread."""
    runtime = _runtime
    if runtime is not None and runtime.worker.is_alive() and celery_app.conf.task_always_eager:
        runtime.worker.submit(signature.apply_async)
    else:
        signature.apply_async()


def sync_schedules_on_beat_start(**kwargs: Any) -> None:
    """beat_init receiver: every registered agent has its configuration and default schedule before beat
    (``celery beat`` in production, the embedded thread otherwise) reads the schedules."""
    from apps.agents.services import agent_config_sync

    try:
        agent_config_sync()
    except Exception:
        # Beat still serves the schedules that exist.
        logger.exception("could not create the agents' configurations and schedules")
