"""The Celery app: safe task defaults, beat from the database, discovery, and a real broker round trip."""

from __future__ import annotations

import importlib.util
import logging
import sys
import uuid

import pytest
from celery.app.log import Logging
from celery.contrib.testing.worker import start_worker
from celery.loaders import base as loaders_base
from celery.utils.imports import symbol_by_name
from celery.worker import state as worker_state
from django.apps import apps
from django_celery_beat.schedulers import DatabaseScheduler

from apps.core.logging import RequestIdFilter
from coinlink.celery import app as celery_app


@celery_app.task(name="coinlink.tests.echo")
def echo(value: str) -> str:
    """Registered before any worker starts, so the embedded worker below knows it."""
    return value


def test_tasks_and_results_are_json_only() -> None:
    # Pickle would let anyone who can write to the broker run code in a worker.
    assert celery_app.conf.task_serializer == "json"
    assert celery_app.conf.result_serializer == "json"
    assert list(celery_app.conf.accept_content) == ["json"]


def test_a_task_is_acknowledged_only_after_it_ran() -> None:
    assert celery_app.conf.task_acks_late is True
    assert celery_app.conf.task_reject_on_worker_lost is True
    assert celery_app.conf.worker_prefetch_multiplier == 1


def test_every_task_has_time_limits() -> None:
    soft = celery_app.conf.task_soft_time_limit
    hard = celery_app.conf.task_time_limit

    assert isinstance(soft, int)
    assert isinstance(hard, int)
    # The soft limit raises inside the task so it can clean up before the hard limit kills the process.
    assert 0 < soft < hard


def test_beat_reads_its_schedule_from_the_database() -> None:
    assert symbol_by_name(celery_app.conf.beat_scheduler) is DatabaseScheduler
    assert celery_app.conf.timezone == "UTC"


def test_autodiscovery_looks_in_every_installed_app_and_registers_what_it_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    searched: list[str] = []
    find = loaders_base.find_related_module

    def recording_find(package: str, related_name: str) -> object:
        searched.append(package)
        return find(package, related_name)

    monkeypatch.setattr(loaders_base, "find_related_module", recording_find)

    # What a worker does at start-up.
    celery_app.loader.import_default_modules()

    installed = [config.name for config in apps.get_app_configs()]
    assert searched == installed
    with_tasks = {f"{name}.tasks" for name in installed if importlib.util.find_spec(f"{name}.tasks")}
    assert with_tasks <= celery_app.loader.task_modules
    for module_name in with_tasks:
        defined = {
            obj.name
            for obj in vars(sys.modules[module_name]).values()
            if getattr(obj, "__module__", None) == module_name and hasattr(obj, "apply_async")
        }
        assert defined <= set(celery_app.tasks), module_name


def test_a_worker_keeps_the_django_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Logging, "_setup", False)

    celery_app.log.setup(loglevel="DEBUG")

    handlers = logging.getLogger().handlers
    assert any(any(isinstance(f, RequestIdFilter) for f in handler.filters) for handler in handlers)


@pytest.mark.redis
def test_a_task_travels_through_the_real_broker_to_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    # A queue of its own, so a worker running elsewhere on this machine cannot take the message.
    queue = f"coinlink-test-{uuid.uuid4().hex}"

    ran_before = worker_state.total_count[echo.name]

    with start_worker(celery_app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=20):
        result = echo.apply_async(args=["through redis"], queue=queue)

        assert result.get(timeout=15) == "through redis"

    assert celery_app.conf.broker_url.startswith("redis://")
    assert result.state == "SUCCESS"
    # Counted by the embedded worker: the task ran there, not in this process's eager path.
    assert worker_state.total_count[echo.name] == ran_before + 1
