"""Heartbeats of the long-running processes: a daemon thread per process records a sign of life every
``HEARTBEAT_INTERVAL_SECONDS`` (``apps.core.services.heartbeat_beat``) and a clean stop on the way out.

Celery workers and beat start one from their signals (``coinlink.celery``); the embedded runtime starts one
for its in-process worker and beat (``apps.agents.scheduler``). A thread of its own, rather than a hook in the
work, because a worker busy with one long agent run is alive all the same, and an idle one must say so too.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections, connections

from apps.core.services import heartbeat_beat, heartbeat_stop

logger = logging.getLogger(__name__)

# After a failed write, the next try comes this soon (or at the interval, if that is sooner).
RETRY_SECONDS = 1.0


def process_name(prefix: str) -> str:
    """A name unique to this process on this machine, e.g. ``beat@host:1234``."""
    return f"{prefix}@{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Beat:
    """One row this thread keeps alive: its kind (``Heartbeat.Kind``), unique name and what it reports;
    ``alive`` says whether the part it stands for still works (a beat is skipped when it does not, so the row
    goes stale as the part would)."""

    kind: str
    name: str
    details: Callable[[], dict[str, object]] = field(default=dict)
    alive: Callable[[], bool] = field(default=lambda: True)


class HeartbeatThread(threading.Thread):
    """Beats for each of ``beats`` at once, then every ``interval`` seconds, until ``stop()``."""

    def __init__(self, beats: list[Beat], *, interval: float | None = None) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.beats = beats
        self.interval = interval if interval is not None else settings.HEARTBEAT_INTERVAL_SECONDS
        self._stopping = threading.Event()
        self._first = True

    def beat_now(self) -> bool:
        """Record every beat now; False when the database refused (the caller tries again soon)."""
        try:
            for beat in self.beats:
                if not beat.alive():
                    continue
                heartbeat_beat(
                    kind=beat.kind,
                    name=beat.name,
                    hostname=socket.gethostname(),
                    pid=os.getpid(),
                    details=beat.details(),
                    starting=self._first,
                )
            self._first = False
        except Exception:
            # A database blip must not end the heartbeats for good: try again soon, not a whole interval
            # later, or a monitor would see a live process as stale.
            logger.exception("could not record a heartbeat")
            return False
        return True

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                # A connection the database dropped between beats is replaced, not reused.
                close_old_connections()
                recorded = self.beat_now()
                self._stopping.wait(self.interval if recorded else min(self.interval, RETRY_SECONDS))
        finally:
            connections.close_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating and record the clean stop (from the caller's thread, so it is written even when this
        thread is stuck in a slow write)."""
        self._stopping.set()
        self.join(timeout)
        for beat in self.beats:
            try:
                heartbeat_stop(name=beat.name)
            except Exception:
                logger.exception("could not record the stop of %s", beat.name)
