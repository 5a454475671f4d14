"""The Celery app. Configuration comes from Django settings (the CELERY_ namespace)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coinlink.settings")

app = Celery("coinlink")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def configure_worker_logging(**kwargs: Any) -> None:
    """Workers log exactly as the web does (settings.LOGGING, JSON lines in production).

    Without a receiver here Celery replaces the root handlers with its own plain-text format, so worker lines
    would lose the JSON shape and the log level would come from ``celery worker -l`` instead of LOG_LEVEL.
    """
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
