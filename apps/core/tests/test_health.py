"""``/health/``: every dependency checked for real; failures reported without hanging or naming hosts."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from celery import Celery
from django.core.cache.backends.redis import RedisCache
from django.db import connections
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as DjangoSettings

from apps.core.health import (
    BREAKERS_UNCHECKED_REASON,
    EMBEDDED_BROKER_REASON,
    CheckResult,
    check_broker,
    check_cache,
    check_channel_layer,
    check_database,
)
from apps.core.models import CircuitBreakerState, Heartbeat
from coinlink.celery import app as celery_app

pytestmark = pytest.mark.django_db

# Nothing listens on port 1, so every client there fails with a real "connection refused".
REFUSED_REDIS = "redis://127.0.0.1:1/0"
# The dependencies probed in their own threads; "circuit_breakers" reports the outside services' breakers,
# "workers" and "beat" the heartbeats of those processes.
CHECK_NAMES = {"database", "cache", "broker", "channel_layer"}
HEARTBEAT_CHECKS = {"workers", "beat"}


def _beat(name: str, kind: str, *, age: float, stopped: bool = False) -> Heartbeat:
    now = timezone.now()
    return Heartbeat.objects.create(
        name=name,
        kind=kind,
        started_at=now - dt.timedelta(hours=1),
        last_seen=now - dt.timedelta(seconds=age),
        stopped_at=now if stopped else None,
    )


@pytest.fixture
def processes_alive() -> None:
    """A worker and beat that have just recorded their heartbeat, as a running deployment's have."""
    _beat("celery@web-1", Heartbeat.Kind.WORKER, age=5)
    _beat("beat@web-1:42", Heartbeat.Kind.BEAT, age=5)


@pytest.fixture
def embedded(settings: DjangoSettings, monkeypatch: pytest.MonkeyPatch, processes_alive: None) -> None:
    """The embedded default, even when the suite runs with REDIS_URL set (its runtime's worker and beat
    alive)."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "health-tests"}
    }
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)


@pytest.fixture
def database_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """New connections of the default alias go to a PostgreSQL port where nothing listens."""
    unreachable = {
        **connections.settings["default"],
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "coinlink",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": "1",
        "OPTIONS": {},
    }
    monkeypatch.setitem(connections.settings, "default", unreachable)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A TCP port that completes the handshake and then never answers: the worst kind of hung dependency."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()
    finally:
        server.close()


def _get_health(client: Client, **headers: str) -> tuple[int, dict[str, Any]]:
    response = client.get("/health/", headers=headers)
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def _assert_reason_is_safe(reason: object) -> None:
    assert isinstance(reason, str)
    assert reason
    for leak in ("127.0.0.1", "localhost", "redis://", "postgres", ":1"):
        assert leak not in reason


def test_all_ok_on_the_embedded_default(client: Client, embedded: None) -> None:
    status, body = _get_health(client)

    assert status == 200
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECK_NAMES | {"circuit_breakers"} | HEARTBEAT_CHECKS
    for name in HEARTBEAT_CHECKS:
        assert body["checks"][name] == {
            "ok": True,
            "reason": None,
            "latency_ms": body["checks"][name]["latency_ms"],
            "alive": 1,
            "last_seen_seconds": pytest.approx(5, abs=2),
        }
    assert body["checks"]["circuit_breakers"] == {
        "ok": True,
        "reason": None,
        "latency_ms": body["checks"]["circuit_breakers"]["latency_ms"],
        "services": {},
    }
    for name in CHECK_NAMES:
        check = body["checks"][name]
        assert set(check) == {"ok", "reason", "latency_ms"}
        assert check["ok"] is True, name
        assert isinstance(check["latency_ms"], float)
        assert check["latency_ms"] >= 0
    assert body["checks"]["database"]["reason"] is None
    assert body["checks"]["cache"]["reason"] is None
    assert body["checks"]["channel_layer"]["reason"] is None
    assert body["checks"]["broker"]["reason"] == EMBEDDED_BROKER_REASON


def test_needs_no_login_and_is_never_cached(client: Client, embedded: None) -> None:
    response = client.get("/health/")

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert client.post("/health/").status_code == 405


def test_database_down_is_503_failing(client: Client, embedded: None, database_down: None) -> None:
    status, body = _get_health(client)

    assert status == 503
    assert body["status"] == "failing"
    database = body["checks"]["database"]
    assert database["ok"] is False
    assert database["reason"] == "OperationalError"
    _assert_reason_is_safe(database["reason"])
    assert "127.0.0.1" not in json.dumps(body)
    assert all(body["checks"][name]["ok"] for name in CHECK_NAMES - {"database"})
    # Not read from a database that is down (nor left to hang on it).
    assert body["checks"]["circuit_breakers"] == {
        "ok": False,
        "reason": BREAKERS_UNCHECKED_REASON,
        "latency_ms": 0.0,
        "services": {},
    }
    for name in HEARTBEAT_CHECKS:
        assert body["checks"][name] == {
            "ok": False,
            "reason": BREAKERS_UNCHECKED_REASON,
            "latency_ms": 0.0,
            "alive": 0,
            "last_seen_seconds": None,
        }


def test_failing_cache_is_200_degraded(client: Client, embedded: None, settings: DjangoSettings) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REFUSED_REDIS}
    }

    status, body = _get_health(client)

    assert status == 200
    assert body["status"] == "degraded"
    assert body["checks"]["cache"]["ok"] is False
    _assert_reason_is_safe(body["checks"]["cache"]["reason"])
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["channel_layer"]["ok"] is True


def test_failing_channel_layer_is_200_degraded(
    client: Client, embedded: None, settings: DjangoSettings
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REFUSED_REDIS]}}
    }

    status, body = _get_health(client)

    assert status == 200
    assert body["status"] == "degraded"
    assert body["checks"]["channel_layer"]["ok"] is False
    _assert_reason_is_safe(body["checks"]["channel_layer"]["reason"])
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["cache"]["ok"] is True


def test_failing_broker_is_200_degraded(
    client: Client, embedded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    monkeypatch.setitem(celery_app.conf, "broker_url", REFUSED_REDIS)

    status, body = _get_health(client)

    assert status == 200
    assert body["status"] == "degraded"
    assert body["checks"]["broker"]["ok"] is False
    _assert_reason_is_safe(body["checks"]["broker"]["reason"])


def test_a_failure_shows_the_exception_class_and_logs_the_detail(
    database_down: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="apps.core.health"):
        result = check_database()

    assert result.ok is False
    assert result.reason == "OperationalError"
    # The detail (with the address) stays in the server log, where operators can read it.
    (record,) = caplog.records
    assert record.getMessage().startswith("health check database failed: OperationalError: ")
    assert "127.0.0.1" in record.getMessage()


def test_a_hung_dependency_times_out_instead_of_hanging(silent_server: tuple[str, int]) -> None:
    host, port = silent_server
    result = check_cache(timeout=0.5, cache=RedisCache(f"redis://{host}:{port}/0", {}))

    assert result == CheckResult(ok=False, reason="timed out after 0.5 s", latency_ms=result.latency_ms)
    assert 500 <= result.latency_ms < 1500


def test_a_broker_that_refuses_fails_within_the_timeout() -> None:
    app = Celery("health-test", broker=REFUSED_REDIS, set_as_current=False)

    result = check_broker(timeout=1.0, app=app)

    assert result.ok is False
    _assert_reason_is_safe(result.reason)
    assert result.latency_ms < 1500


@pytest.mark.redis
def test_all_ok_against_real_redis(
    client: Client, settings: DjangoSettings, monkeypatch: pytest.MonkeyPatch, processes_alive: None
) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": settings.REDIS_URL,
            "KEY_PREFIX": "coinlink-test",
        }
    }
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": "coinlink-test:asgi"},
        }
    }
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    monkeypatch.setitem(celery_app.conf, "broker_url", settings.REDIS_URL)

    status, body = _get_health(client)

    assert status == 200, body
    assert body["status"] == "ok"
    for name in CHECK_NAMES:
        assert body["checks"][name] == {
            "ok": True,
            "reason": None,
            "latency_ms": body["checks"][name]["latency_ms"],
        }
    # The direct calls agree with the view.
    assert check_broker().reason is None
    assert check_channel_layer().ok is True


def test_breakers_are_listed_and_an_open_one_degrades(client: Client, embedded: None) -> None:
    opened = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    CircuitBreakerState.objects.create(
        service="exchange",
        state=CircuitBreakerState.State.OPEN,
        consecutive_failures=5,
        opened_at=opened,
        last_error="TransientError: connect to 10.0.0.7:443 timed out",
    )
    CircuitBreakerState.objects.create(service="llm", consecutive_failures=1)
    CircuitBreakerState.objects.create(
        service="x", state=CircuitBreakerState.State.HALF_OPEN, opened_at=opened
    )

    status, body = _get_health(client)

    assert status == 200
    assert body["status"] == "degraded"
    assert all(body["checks"][name]["ok"] for name in CHECK_NAMES)
    breakers = body["checks"]["circuit_breakers"]
    assert (breakers["ok"], breakers["reason"]) == (False, "open: exchange")
    assert breakers["services"] == {
        "exchange": {"state": "open", "consecutive_failures": 5, "opened_at": "2025-03-01T12:30:00+00:00"},
        "llm": {"state": "closed", "consecutive_failures": 1, "opened_at": None},
        "x": {"state": "half_open", "consecutive_failures": 0, "opened_at": "2025-03-01T12:30:00+00:00"},
    }
    # The last error may name hosts: it stays in the admin.
    assert "10.0.0.7" not in json.dumps(body)


def test_breakers_closed_or_recovering_keep_the_status_ok(client: Client, embedded: None) -> None:
    CircuitBreakerState.objects.create(service="news", consecutive_failures=2)
    CircuitBreakerState.objects.create(service="x", state=CircuitBreakerState.State.HALF_OPEN)

    status, body = _get_health(client)

    assert (status, body["status"]) == (200, "ok")
    assert body["checks"]["circuit_breakers"]["ok"] is True


# --- workers and beat: their heartbeats -----------------------------------------------------------------------


def test_a_stale_worker_degrades_without_a_503(
    client: Client, embedded: None, settings: DjangoSettings
) -> None:
    settings.HEARTBEAT_STALE_SECONDS = 120
    Heartbeat.objects.filter(kind=Heartbeat.Kind.WORKER).update(
        last_seen=timezone.now() - dt.timedelta(seconds=300)
    )

    status, body = _get_health(client)

    assert (status, body["status"]) == (200, "degraded")
    workers = body["checks"]["workers"]
    assert (workers["ok"], workers["alive"]) == (False, 0)
    assert workers["reason"].startswith("stale: last heartbeat 30")
    assert workers["last_seen_seconds"] == pytest.approx(300, abs=2)
    # Beat is fine, and says so.
    assert (body["checks"]["beat"]["ok"], body["checks"]["beat"]["alive"]) == (True, 1)
    assert all(body["checks"][name]["ok"] for name in CHECK_NAMES)


def test_the_threshold_is_the_setting(client: Client, embedded: None, settings: DjangoSettings) -> None:
    Heartbeat.objects.update(last_seen=timezone.now() - dt.timedelta(seconds=60))

    settings.HEARTBEAT_STALE_SECONDS = 90
    assert _get_health(client)[1]["status"] == "ok"
    settings.HEARTBEAT_STALE_SECONDS = 30
    status, body = _get_health(client)
    assert (status, body["status"]) == (200, "degraded")
    assert not body["checks"]["workers"]["ok"]
    assert not body["checks"]["beat"]["ok"]


def test_no_heartbeat_at_all_and_a_clean_stop_are_told_apart(client: Client, embedded: None) -> None:
    Heartbeat.objects.filter(kind=Heartbeat.Kind.WORKER).delete()
    Heartbeat.objects.filter(kind=Heartbeat.Kind.BEAT).update(stopped_at=timezone.now())

    status, body = _get_health(client)

    assert (status, body["status"]) == (200, "degraded")
    assert body["checks"]["workers"] == {
        "ok": False,
        "reason": "no heartbeat yet",
        "latency_ms": body["checks"]["workers"]["latency_ms"],
        "alive": 0,
        "last_seen_seconds": None,
    }
    assert (body["checks"]["beat"]["ok"], body["checks"]["beat"]["reason"]) == (False, "stopped")


def test_one_live_worker_is_enough_and_each_is_counted(client: Client, embedded: None) -> None:
    _beat("celery@web-2", Heartbeat.Kind.WORKER, age=3)
    _beat("celery@web-3", Heartbeat.Kind.WORKER, age=3600)
    _beat("celery@web-4", Heartbeat.Kind.WORKER, age=1, stopped=True)

    status, body = _get_health(client)

    assert (status, body["status"]) == (200, "ok")
    assert body["checks"]["workers"]["alive"] == 2
    # The newest heartbeat of any of them, the stopped one's included.
    assert body["checks"]["workers"]["last_seen_seconds"] == pytest.approx(1, abs=1)


def test_bots_are_checked_once_a_deployment_runs_them(client: Client, embedded: None) -> None:
    # No bot has ever beaten (the embedded default): no bot check at all.
    assert not any(name.startswith("bot_") for name in _get_health(client)[1]["checks"])

    _beat("discord@bots-1:71", Heartbeat.Kind.BOT, age=5)
    _beat("telegram@bots-1:72", Heartbeat.Kind.BOT, age=900)
    _beat("telegram@bots-1:40", Heartbeat.Kind.BOT, age=7200, stopped=True)
    # A bot retired more than a day ago is not expected any more.
    _beat("xbot@old:9", Heartbeat.Kind.BOT, age=2 * 86400)

    status, body = _get_health(client)

    assert (status, body["status"]) == (200, "degraded")
    bots = {name: check for name, check in body["checks"].items() if name.startswith("bot_")}
    assert set(bots) == {"bot_discord", "bot_telegram"}
    assert (bots["bot_discord"]["ok"], bots["bot_discord"]["alive"]) == (True, 1)
    assert (bots["bot_telegram"]["ok"], bots["bot_telegram"]["alive"]) == (False, 0)
    assert bots["bot_telegram"]["reason"].startswith("stale: last heartbeat 90")
