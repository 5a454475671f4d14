"""The Celery app. Configuration comes from Django settings (the CELERY_ namespace)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coinlink.settings")

app = Celery("coinlink")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _metrics_receiver(handler: str) -> Callable[..., None]:
    """A receiver that imports apps.core.metrics on first use: this module is imported before the settings
    are read, and prometheus_client must not be imported before the settings' .env may set
    PROMETHEUS_MULTIPROC_DIR."""

    def receive(**kwargs: Any) -> None:
        from apps.core import metrics

        getattr(metrics, handler)(**kwargs)

    return receive


# Metrics: each message is stamped when published so a worker can tell how long it waited, finished tasks are
# counted, and a worker child that exits drops its live gauges in multi-process mode.
for _signal, _handler in (
    (signals.before_task_publish, "celery_before_task_publish"),
    (signals.task_prerun, "celery_task_prerun"),
    (signals.task_postrun, "celery_task_postrun"),
    (signals.worker_process_shutdown, "celery_worker_process_shutdown"),
):
    _signal.connect(_metrics_receiver(_handler), weak=False)


@signals.setup_logging.connect
def configure_worker_logging(**kwargs: Any) -> None:
    """Workers log exactly as the web does (settings.LOGGING, JSON lines in production).

    Without a receiver here Celery replaces the root handlers with its own plain-text format, so worker lines
    would lose the JSON shape and the log level would come from ``celery worker -l`` instead of LOG_LEVEL.
    """
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)


# --- heartbeats (apps.core.heartbeats): each worker and beat records a sign of life for /health/ and the admin.
_heartbeats: dict[str, Any] = {}


@signals.worker_ready.connect
def start_worker_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    """In the worker's main process, once its pool is up; named after the Celery node (``worker@host``)."""
    from apps.core.heartbeats import Beat, HeartbeatThread
    from apps.core.models import Heartbeat

    name = str(getattr(sender, "hostname", "") or "worker")
    pool = getattr(getattr(sender, "controller", None), "concurrency", None)
    queues = sorted(q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", []) or [])
    details: dict[str, object] = {"concurrency": pool, "queues": queues}
    thread = HeartbeatThread([Beat(kind=Heartbeat.Kind.WORKER, name=name, details=lambda: details)])
    _heartbeats["worker"] = thread
    thread.start()


@signals.worker_shutdown.connect
def stop_worker_heartbeat(**kwargs: Any) -> None:
    if (thread := _heartbeats.pop("worker", None)) is not None:
        thread.stop()


@signals.beat_init.connect
def start_beat_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    """``celery beat``: one row per machine's beat (a deployment runs one; a restart reuses the row), stopped
    cleanly when it exits (SIGTERM or Ctrl-C)."""
    import atexit
    import socket
    import threading

    from apps.core.heartbeats import Beat, HeartbeatThread
    from apps.core.models import Heartbeat

    if threading.current_thread() is not threading.main_thread():
        # The embedded runtime's beat (a thread of the server; apps.agents.scheduler) beats on its own.
        return
    thread = HeartbeatThread([Beat(kind=Heartbeat.Kind.BEAT, name=f"beat@{socket.gethostname()}")])
    _heartbeats["beat"] = thread
    thread.start()
    atexit.register(thread.stop)
