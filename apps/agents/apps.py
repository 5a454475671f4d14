from __future__ import annotations

import os
import sys

from celery.signals import beat_init
from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class AgentsConfig(AppConfig):
    name = "apps.agents"
    label = "agents"

    def ready(self) -> None:
        autodiscover_modules("agents")

        # Registered with Celery in every process, not only in workers: the framework sends its tasks by name.
        from apps.agents import scheduler, tasks  # noqa: F401

        beat_init.connect(scheduler.sync_schedules_on_beat_start, dispatch_uid="apps.agents.sync_schedules")
        if scheduler.should_start(sys.argv, os.environ):
            scheduler.start()
