"""/metrics is exact across processes: two daphne web processes share one PROMETHEUS_MULTIPROC_DIR, answer
10,000 requests between them, and a scrape of either counts exactly 10,000; and with a broker, tasks run by the
children of a Celery worker process are counted in what a web process exposes."""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from coinlink.celery import app as celery_app
from tests.processes import free_port, running

ROOT = Path(__file__).resolve().parent.parent
ROUTE = "billing/stripe/webhook/"
# A cheap request that touches no database: the webhook refuses GET (405) before doing anything.
PATH = "/" + ROUTE
REQUESTS = 10_000
CONNECTIONS = 8

pytestmark = pytest.mark.processes


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CI"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="coinlink.settings",
        DJANGO_ENV="test",
        DATABASE_URL=f"sqlite:///{tmp_path / 'metrics.sqlite3'}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        AGENTS_RUN_IN_PROCESS="false",
        LOG_LEVEL="ERROR",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A migrated SQLite file and an emptied metrics directory, as a deployment prepares them."""
    env = _environment(tmp_path)
    for command in (["migrate", "--noinput", "-v0"], ["metrics_prepare"]):
        subprocess.run(  # noqa: S603 - our own interpreter and manage.py
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, timeout=120
        )
    return tmp_path


@contextlib.contextmanager
def _daphne(env: dict[str, str], log: Path) -> Iterator[int]:
    port = free_port()
    with running(
        ["daphne", "-b", "127.0.0.1", "-p", str(port), "coinlink.asgi:application"], env, log, port=port
    ):
        yield port


def _send(port: int, count: int, statuses: Counter[int], lock: threading.Lock) -> None:
    """``count`` GETs over one keep-alive connection."""
    seen: Counter[int] = Counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(count):
            connection.request("GET", PATH, headers={"Host": "127.0.0.1"})
            response = connection.getresponse()
            response.read()
            seen[response.status] += 1
    finally:
        connection.close()
        with lock:
            statuses.update(seen)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics", headers={"Host": "127.0.0.1"})
        response = connection.getresponse()
        body = response.read().decode()
    finally:
        connection.close()
    assert response.status == 200, body[:500]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def _route_total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {
        dict(labels)["status"]: count
        for (name, labels), count in samples.items()
        if name == "coinlink_http_requests_total" and dict(labels)["route"] == ROUTE
    }


def test_two_web_processes_count_ten_thousand_requests_exactly(prepared: Path) -> None:
    env = _environment(prepared)
    with _daphne(env, prepared / "web1.log") as first, _daphne(env, prepared / "web2.log") as second:
        statuses: Counter[int] = Counter()
        lock = threading.Lock()
        ports = [first, second] * (CONNECTIONS // 2)
        threads = [
            threading.Thread(target=_send, args=(port, REQUESTS // CONNECTIONS, statuses, lock))
            for port in ports
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert statuses == {405: REQUESTS}

        from_first, from_second = _scrape(first), _scrape(second)

    assert _route_total(from_first) == {"405": REQUESTS}
    assert _route_total(from_second) == {"405": REQUESTS}
    assert (
        from_first[("coinlink_http_request_duration_seconds_count", (("method", "GET"), ("route", ROUTE)))]
        == REQUESTS
    )
    # Counted by two processes, each in its own file, added up by the scrape.
    counter_files = sorted(p.name for p in (prepared / "prometheus").glob("counter_*.db"))
    assert len(counter_files) == 2, counter_files
    # The shared state was read from the database by the process that answered.
    assert from_first[("coinlink_metrics_source_up", (("source", "database"),))] == 1


@pytest.mark.redis
def test_tasks_run_by_a_workers_children_are_counted_in_the_web_scrape(
    prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    queue = f"coinlink-metrics-{os.getpid()}-{time.monotonic_ns()}"
    env = _environment(prepared, REDIS_URL=settings.REDIS_URL)
    tasks = 40
    worker = [
        "celery",
        "-A",
        "coinlink",
        "worker",
        "-Q",
        queue,
        "-c",
        "2",
        "--pool",
        "prefork",
        "-l",
        "error",
    ]
    with running(worker, env, prepared / "worker.log"), _daphne(env, prepared / "web.log") as port:
        for n in range(tasks):
            # A built-in task: it needs nothing but a worker.
            celery_app.send_task("celery.accumulate", args=[n], queue=queue)
        deadline = time.monotonic() + 60
        done = ("coinlink_celery_tasks_total", (("state", "SUCCESS"), ("task", "celery.accumulate")))
        while (samples := _scrape(port)).get(done, 0) < tasks:
            assert time.monotonic() < deadline, (prepared / "worker.log").read_text()[-3000:]
            time.sleep(0.25)

    assert samples[done] == tasks
    assert samples[("coinlink_celery_task_wait_seconds_count", (("task", "celery.accumulate"),))] == tasks
    assert samples[("coinlink_metrics_source_up", (("source", "broker"),))] == 1
    assert ("coinlink_celery_queue_length", (("queue", "celery"),)) in samples
    # The tasks ran in the worker's children, not in the web process: their own files hold the counts.
    assert len(list((prepared / "prometheus").glob("counter_*.db"))) >= 2
