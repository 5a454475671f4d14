"""/metrics: who may scrape it, the HTTP, breaker, Celery and moderation instrumentation, and the gauges read
at scrape time (breakers, heartbeats, queue lengths). The cross-process count is tests/test_metrics_processes.py.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from apps.core import metrics
from apps.core.models import CircuitBreakerState, Heartbeat
from apps.core.resilience import CircuitBreaker, TransientError
from coinlink.celery import app as celery_app

TOKEN = "a-metrics-token-of-32-characters-at-least"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scraped(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


@celery_app.task(name="coinlink.tests.metrics_echo")
def metrics_echo(value: str) -> str:
    """Registered at import, before the embedded worker below starts."""
    return value


# --- who may scrape -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_development_scrapes_from_loopback_without_a_token(client: Client) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"# TYPE coinlink_http_requests_total counter" in response.content


@pytest.mark.django_db
def test_production_without_token_or_addresses_refuses_everyone(settings: Settings, client: Client) -> None:
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []

    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        response = client.get("/metrics", headers=headers)

        assert response.status_code == 403
        assert b"coinlink_" not in response.content


@pytest.mark.django_db
def test_a_token_lets_a_scraper_in_and_a_wrong_one_does_not(settings: Settings, client: Client) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []

    for refused in (
        {},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ):
        response = client.get("/metrics", headers=refused)
        assert response.status_code == 403, refused
        assert b"coinlink_" not in response.content

    accepted = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert accepted.status_code == 200
    assert b"coinlink_http_requests_total" in accepted.content


@pytest.mark.django_db
def test_an_allowed_address_gets_in_and_others_do_not(settings: Settings) -> None:
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8", "192.0.2.7"]

    assert Client(REMOTE_ADDR="10.20.30.40").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.7").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.8").get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 403
    # Whatever a client claims to be behind: only the direct peer counts.
    forwarded = Client(REMOTE_ADDR="203.0.113.5").get("/metrics", headers={"X-Forwarded-For": "10.1.1.1"})
    assert forwarded.status_code == 403


def test_metrics_answers_only_reads() -> None:
    assert Client().post("/metrics").status_code == 405


# --- HTTP ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_requests_are_counted_and_timed_by_route_never_by_raw_path(client: Client) -> None:
    route = "library/media/<int:pk>/"
    status = str(client.get("/library/media/1/").status_code)  # whatever the view answers a stranger
    before = value("coinlink_http_requests_total", route=route, method="GET", status=status)
    timed_before = value("coinlink_http_request_duration_seconds_count", route=route, method="GET")
    unmatched = value(
        "coinlink_http_requests_total", route=metrics.UNMATCHED_ROUTE, method="GET", status="404"
    )

    for pk in (101, 202, 303):
        assert str(client.get(f"/library/media/{pk}/").status_code) == status
    assert client.get("/no/such/page/anywhere/").status_code == 404

    assert value("coinlink_http_requests_total", route=route, method="GET", status=status) == before + 3
    assert (
        value("coinlink_http_request_duration_seconds_count", route=route, method="GET") == timed_before + 3
    )
    assert (
        value("coinlink_http_requests_total", route=metrics.UNMATCHED_ROUTE, method="GET", status="404")
        == unmatched + 1
    )
    body = client.get("/metrics").content.decode()
    assert "/library/media/101/" not in body
    assert "no/such/page" not in body


def test_an_unusual_method_is_one_label() -> None:
    before = value("coinlink_http_requests_total", route="health/", method="other", status="405")

    metrics.http_request_observe(route="health/", method="BREW", status=405, seconds=0.01)

    assert value("coinlink_http_requests_total", route="health/", method="other", status="405") == before + 1
    assert value("coinlink_http_requests_total", route="health/", method="BREW", status="405") == 0


# --- circuit breakers ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_breaker_opening_is_counted_once_and_its_state_scraped(client: Client) -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    circuit = CircuitBreaker(service, failure_threshold=2, reset_timeout=60)
    before = value("coinlink_circuit_breaker_opened_total", service=service)

    circuit.record_failure(TransientError("down"))
    assert value("coinlink_circuit_breaker_opened_total", service=service) == before
    circuit.record_failure(TransientError("down"))
    circuit.record_failure(TransientError("still down"))  # already open: not another opening

    assert circuit.state == CircuitBreakerState.State.OPEN
    assert value("coinlink_circuit_breaker_opened_total", service=service) == before + 1
    samples = scraped(client.get("/metrics").content)
    assert samples[("coinlink_circuit_breaker_state", (("service", service), ("state", "open")))] == 1
    assert samples[("coinlink_circuit_breaker_state", (("service", service), ("state", "closed")))] == 0
    assert samples[("coinlink_circuit_breaker_state", (("service", service), ("state", "half_open")))] == 0
    assert samples[("coinlink_circuit_breaker_consecutive_failures", (("service", service),))] == 3
    assert samples[("coinlink_metrics_source_up", (("source", "database"),))] == 1


# --- heartbeats ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_heartbeat_ages_per_kind_and_per_running_process() -> None:
    now = timezone.now()

    def beat(kind: str, name: str, seconds_ago: float, *, stopped: bool = False) -> None:
        seen = now - dt.timedelta(seconds=seconds_ago)
        Heartbeat.objects.create(
            kind=kind, name=name, started_at=seen, last_seen=seen, stopped_at=seen if stopped else None
        )

    beat("worker", "worker1@host", 20)
    beat("worker", "worker2@host", 300)
    beat("beat", "beat@host", 45)
    beat("bot", "discord@host:1", 9000, stopped=True)
    beat("bot", "telegram@host:2", 2 * 86400)  # died without a word two days ago

    collector = metrics.StateCollector(now=lambda: now.timestamp())
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }

    assert samples[("coinlink_heartbeat_age_seconds", (("kind", "worker"),))] == pytest.approx(20)
    assert samples[("coinlink_heartbeat_age_seconds", (("kind", "beat"),))] == pytest.approx(45)
    assert samples[("coinlink_heartbeat_age_seconds", (("kind", "bot"),))] == pytest.approx(9000)
    per_process = {
        labels: age
        for (name, labels), age in samples.items()
        if name == "coinlink_heartbeat_process_age_seconds"
    }
    assert per_process == {
        (("kind", "beat"), ("name", "beat@host")): pytest.approx(45),
        (("kind", "worker"), ("name", "worker1@host")): pytest.approx(20),
        (("kind", "worker"), ("name", "worker2@host")): pytest.approx(300),
    }


def test_without_the_database_the_scrape_still_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: metrics.StateCollector) -> list[object]:
        raise RuntimeError("connection refused")

    monkeypatch.setattr(metrics.StateCollector, "_breakers", broken)

    body, _ = metrics.exposition()

    samples = scraped(body)
    assert samples[("coinlink_metrics_source_up", (("source", "database"),))] == 0
    assert not any(name.startswith("coinlink_heartbeat") for name, _ in samples)
    # The processes' own counters are still there.
    assert b"# TYPE coinlink_http_requests_total counter" in body


# --- Celery -------------------------------------------------------------------------------------------------


def test_a_workers_task_wait_and_outcome_are_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    queue = f"coinlink-metrics-{uuid.uuid4().hex}"
    task = metrics_echo.name
    waited = value("coinlink_celery_task_wait_seconds_count", task=task)
    succeeded = value("coinlink_celery_tasks_total", task=task, state="SUCCESS")

    with start_worker(celery_app, pool="solo", perform_ping_check=False, queues=[queue], shutdown_timeout=20):
        for n in range(3):
            metrics_echo.apply_async(args=[f"message {n}"], queue=queue)
        deadline = time.monotonic() + 20
        while value("coinlink_celery_tasks_total", task=task, state="SUCCESS") < succeeded + 3:
            assert time.monotonic() < deadline, "the worker did not run the three tasks"
            time.sleep(0.05)

    assert value("coinlink_celery_task_wait_seconds_count", task=task) == waited + 3
    assert value("coinlink_celery_tasks_total", task=task, state="SUCCESS") == succeeded + 3
    # Waits are measured, and short here: a worker was already waiting for them.
    assert 0 < value("coinlink_celery_task_wait_seconds_sum", task=task) < 30


def test_an_eager_task_is_not_a_worker_task() -> None:
    waited = value("coinlink_celery_task_wait_seconds_count", task=metrics_echo.name)
    ran = value("coinlink_celery_tasks_total", task=metrics_echo.name, state="SUCCESS")

    assert metrics_echo.delay("here").get() == "here"

    assert value("coinlink_celery_task_wait_seconds_count", task=metrics_echo.name) == waited
    assert value("coinlink_celery_tasks_total", task=metrics_echo.name, state="SUCCESS") == ran


def test_a_task_scheduled_for_later_waits_from_its_eta() -> None:
    class Request:
        is_eager = False
        eta = dt.datetime.fromtimestamp(time.time() - 2, tz=dt.UTC).isoformat()

    class Task:
        name = "coinlink.tests.later"
        request = Request()

    setattr(Task.request, metrics.PUBLISHED_AT_HEADER, time.time() - 600)

    metrics.celery_task_prerun(task=Task())

    total = value("coinlink_celery_task_wait_seconds_sum", task="coinlink.tests.later")
    assert 2 <= total < 10
    assert value("coinlink_celery_task_wait_seconds_bucket", task="coinlink.tests.later", le="1.0") == 0
    assert value("coinlink_celery_task_wait_seconds_bucket", task="coinlink.tests.later", le="2.5") == 1


def test_queue_names_cover_defaults_declared_queues_and_routes() -> None:
    from kombu import Queue

    conf = {
        "task_default_queue": "celery",
        "task_queues": [Queue("agents"), Queue("celery")],
        "task_routes": {"billing.*": {"queue": "billing"}, "other": "not-a-dict"},
    }

    assert metrics.celery_queue_names(conf) == ["agents", "billing", "celery"]
    assert metrics.celery_queue_names({}) == ["celery"]


def test_the_embedded_default_has_no_queues_to_report() -> None:
    assert celery_app.conf.task_always_eager is True

    body, _ = metrics.exposition()

    assert b"coinlink_celery_queue_length" not in body
    assert b'coinlink_metrics_source_up{source="broker"}' not in body


def test_a_broker_that_does_not_answer_is_reported_not_waited_for() -> None:
    from celery import Celery

    dead = Celery("dead", broker="redis://127.0.0.1:1/0")
    dead.conf.task_always_eager = False
    collector = metrics.StateCollector(broker_app=dead)
    collector._breakers = lambda: []  # type: ignore[method-assign]
    collector._heartbeats = lambda: []  # type: ignore[method-assign]

    started = time.monotonic()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
    }

    assert time.monotonic() - started < 5
    assert samples[("coinlink_metrics_source_up", (("source", "broker"),))] == 0
    assert not any(name == "coinlink_celery_queue_length" for name, _ in samples)


@pytest.mark.redis
def test_queue_lengths_come_from_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    queue = f"coinlink-metrics-{uuid.uuid4().hex}"
    empty = f"coinlink-metrics-{uuid.uuid4().hex}"
    for n in range(4):
        metrics_echo.apply_async(args=[str(n)], queue=queue, priority=0 if n % 2 else 6)
    try:
        lengths = metrics.celery_queue_lengths(celery_app, [queue, empty])
    finally:
        with celery_app.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue)

    assert lengths == {queue: 4, empty: 0}


# --- moderation ---------------------------------------------------------------------------------------------


def test_moderation_decisions_are_counted_by_platform_and_action() -> None:
    before = value("coinlink_moderation_decisions_total", platform="telegram", action="mute")

    metrics.moderation_decision(platform="telegram", action="mute")
    metrics.moderation_decision(platform="telegram", action="mute")

    assert value("coinlink_moderation_decisions_total", platform="telegram", action="mute") == before + 2


# --- deployment ---------------------------------------------------------------------------------------------


def test_metrics_prepare_empties_the_directory_of_a_previous_deployment(tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    for name in ("counter_101.db", "histogram_102.db", "gauge_livesum_103.db"):
        (directory / name).write_bytes(b"\0" * 16)
    (directory / "README").write_text("not ours")

    call_command("metrics_prepare", directory=str(directory))

    assert sorted(p.name for p in directory.iterdir()) == ["README"]

    fresh = tmp_path / "new" / "prometheus"
    call_command("metrics_prepare", directory=str(fresh))
    assert fresh.is_dir()
