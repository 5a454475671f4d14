"""Heartbeats: the thread every worker and beat runs, the Celery signals that start and stop it, the embedded
runtime's, and the admin page that shows them. ``/health/``'s reading of them is in test_health.py; real
worker and beat processes writing them are in tests/test_topology.py."""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
from django.db import OperationalError, connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django.fixtures import Settings as DjangoSettings

from apps.accounts.factories import UserFactory
from apps.agents import scheduler
from apps.core.admin import heartbeat_state
from apps.core.heartbeats import Beat, HeartbeatThread, process_name
from apps.core.models import Heartbeat
from coinlink import celery as celery_module
from coinlink.celery import app as celery_app

WORKER = Heartbeat.Kind.WORKER
BEAT = Heartbeat.Kind.BEAT


def _poll(ready: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for ``ready()`` while other threads write: the in-memory SQLite test database answers a read of a
    table another thread is writing with "table is locked" at once instead of waiting, so try again."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except OperationalError:
            pass
        time.sleep(0.05)


@pytest.mark.django_db
def test_a_beat_records_the_process_and_a_later_one_only_moves_last_seen_on() -> None:
    thread = HeartbeatThread([Beat(kind=WORKER, name="celery@a", details=lambda: {"concurrency": 2})])

    thread.beat_now()
    first = Heartbeat.objects.get(name="celery@a")
    thread.beat_now()
    second = Heartbeat.objects.get(name="celery@a")

    assert (first.kind, first.hostname, first.pid, first.stopped_at) == (
        WORKER,
        socket.gethostname(),
        os.getpid(),
        None,
    )
    assert first.details == {"concurrency": 2}
    assert second.started_at == first.started_at
    assert second.last_seen > first.last_seen
    assert Heartbeat.objects.count() == 1


@pytest.mark.django_db
def test_a_restart_under_the_same_name_starts_again_and_clears_the_stop() -> None:
    long_ago = timezone.now() - dt.timedelta(days=1)
    Heartbeat.objects.create(
        name="celery@a", kind=WORKER, started_at=long_ago, last_seen=long_ago, stopped_at=long_ago
    )

    HeartbeatThread([Beat(kind=WORKER, name="celery@a")]).beat_now()

    row = Heartbeat.objects.get(name="celery@a")
    assert row.started_at > long_ago
    assert row.stopped_at is None


@pytest.mark.django_db
def test_a_part_that_stopped_working_stops_beating() -> None:
    working = {"worker": True}
    thread = HeartbeatThread(
        [
            Beat(kind=WORKER, name="embedded-worker@a:1", alive=lambda: working["worker"]),
            Beat(kind=BEAT, name="embedded-beat@a:1"),
        ]
    )
    thread.beat_now()
    seen = Heartbeat.objects.get(name="embedded-worker@a:1").last_seen

    working["worker"] = False
    thread.beat_now()

    assert Heartbeat.objects.get(name="embedded-worker@a:1").last_seen == seen
    assert Heartbeat.objects.get(name="embedded-beat@a:1").last_seen > seen


@pytest.mark.django_db
def test_a_database_error_is_logged_and_the_next_beat_tries_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from apps.core import heartbeats

    def broken(**kwargs: object) -> None:
        raise RuntimeError("database went away")

    thread = HeartbeatThread([Beat(kind=WORKER, name="celery@a")])
    with monkeypatch.context() as patch:
        patch.setattr(heartbeats, "heartbeat_beat", broken)
        thread.beat_now()
    assert "could not record a heartbeat" in caplog.text
    assert not Heartbeat.objects.exists()

    thread.beat_now()
    assert Heartbeat.objects.filter(name="celery@a").exists()


@pytest.mark.django_db(transaction=True)
def test_after_a_failed_write_the_thread_tries_again_within_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.core import heartbeats

    real, calls = heartbeats.heartbeat_beat, []

    def locked_once(**kwargs: object) -> None:
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("database table is locked")
        real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(heartbeats, "heartbeat_beat", locked_once)
    thread = HeartbeatThread([Beat(kind=WORKER, name="celery@retry")], interval=3600)
    thread.start()
    try:
        _poll(lambda: len(calls) >= 2, seconds=5)
    finally:
        thread.stop()
    assert len(calls) == 2
    assert Heartbeat.objects.filter(name="celery@retry").exists()
    connections.close_all()


def test_process_names_are_unique_per_process() -> None:
    assert process_name("beat") == f"beat@{socket.gethostname()}:{os.getpid()}"


@pytest.fixture
def no_threads_left() -> Iterator[None]:
    yield
    for thread in celery_module._heartbeats.values():
        thread.stop()
    celery_module._heartbeats.clear()
    connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_the_worker_signals_start_the_heartbeat_and_a_clean_shutdown_records_the_stop(
    settings: DjangoSettings, no_threads_left: None
) -> None:
    settings.HEARTBEAT_INTERVAL_SECONDS = 0.05
    consumer = SimpleNamespace(
        hostname="celery@node-1",
        controller=SimpleNamespace(concurrency=4),
        task_consumer=SimpleNamespace(queues=[SimpleNamespace(name="celery")]),
    )

    celery_module.start_worker_heartbeat(sender=consumer)
    thread = celery_module._heartbeats["worker"]

    def beat_twice() -> bool:
        row = Heartbeat.objects.filter(name="celery@node-1").first()
        return row is not None and row.last_seen > row.started_at

    _poll(beat_twice)
    celery_module.stop_worker_heartbeat()
    row = Heartbeat.objects.filter(name="celery@node-1").first()
    assert row is not None
    assert row.last_seen > row.started_at, "it beats again after the first one"
    assert (row.kind, row.details) == (WORKER, {"concurrency": 4, "queues": ["celery"]})

    assert not thread.is_alive()
    assert Heartbeat.objects.get(name="celery@node-1").stopped_at is not None
    assert "worker" not in celery_module._heartbeats


@pytest.mark.django_db(transaction=True)
def test_beat_init_starts_the_beat_heartbeat(no_threads_left: None) -> None:
    celery_module.start_beat_heartbeat(sender=None)
    thread = celery_module._heartbeats["beat"]
    _poll(lambda: Heartbeat.objects.filter(kind=BEAT).exists())
    thread.stop()

    row = Heartbeat.objects.get(kind=BEAT)
    assert row.name == f"beat@{socket.gethostname()}"
    assert Heartbeat.objects.get(kind=BEAT).stopped_at is not None


def test_the_signals_are_connected() -> None:
    from celery import signals

    assert celery_module.start_worker_heartbeat in [ref() for _, ref in signals.worker_ready.receivers]
    assert celery_module.stop_worker_heartbeat in [ref() for _, ref in signals.worker_shutdown.receivers]
    assert celery_module.start_beat_heartbeat in [ref() for _, ref in signals.beat_init.receivers]


@pytest.mark.django_db(transaction=True)
def test_the_embedded_runtime_beats_for_its_worker_and_beat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(celery_app.conf, "beat_max_loop_interval", 0.2)
    try:
        scheduler.start()
        _poll(lambda: Heartbeat.objects.count() >= 2)
    finally:
        scheduler.stop(timeout=10)
    rows = {row.kind: row.name for row in Heartbeat.objects.all()}

    assert rows == {WORKER: process_name("embedded-worker"), BEAT: process_name("embedded-beat")}
    assert all(row.stopped_at is not None for row in Heartbeat.objects.all())
    connections.close_all()


# --- the admin ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_lists_each_process_alive_stale_or_stopped(
    client: Client, settings: DjangoSettings
) -> None:
    settings.HEARTBEAT_STALE_SECONDS = 120
    now = timezone.now()
    for name, kind, age, stopped in (
        ("celery@alive", WORKER, 10, False),
        ("celery@lost", WORKER, 600, False),
        ("beat@gone:7", BEAT, 5, True),
    ):
        Heartbeat.objects.create(
            name=name,
            kind=kind,
            hostname="host",
            started_at=now - dt.timedelta(hours=1),
            last_seen=now - dt.timedelta(seconds=age),
            stopped_at=now if stopped else None,
        )
    client.force_login(UserFactory.create(staff=True))

    response = client.get(reverse("admin:core_heartbeat_changelist"))

    assert response.status_code == 200
    page = response.content.decode()
    for name in ("celery@alive", "celery@lost", "beat@gone:7"):
        assert name in page
    states = {row.name: heartbeat_state(row) for row in Heartbeat.objects.all()}
    assert states == {"celery@alive": "alive", "celery@lost": "stale", "beat@gone:7": "stopped"}
    assert page.count(">alive</strong>") == 1
    assert page.count(">stale</strong>") == 1
    assert page.count(">stopped</strong>") == 1
    assert "600 s ago" in page or "601 s ago" in page
    # Written by the processes alone: nobody adds or edits one by hand.
    assert client.get(reverse("admin:core_heartbeat_add")).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_the_embedded_beat_thread_is_left_to_the_embedded_runtimes_heartbeat(no_threads_left: None) -> None:
    import threading

    # Beat's Service sends beat_init from whatever thread runs it: the embedded runtime's is not the main one.
    thread = threading.Thread(target=celery_module.start_beat_heartbeat, kwargs={"sender": None})
    thread.start()
    thread.join()

    assert "beat" not in celery_module._heartbeats
    assert not Heartbeat.objects.exists()
