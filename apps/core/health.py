"""Health checks of the services CoinLink depends on: database, cache, Celery broker and channel layer; the
state of the outside services' circuit breakers (an open breaker degrades the platform, it does not take it
down); and whether Celery workers and beat are alive, from their heartbeats (stale ones degrade it too).

Each check answers within its timeout whatever the dependency does, so a monitor polling ``/health/`` never
hangs on a stuck socket. A probe runs in its own daemon thread and is abandoned when the deadline passes; the
underlying client gives up on its own later. Reasons are short, fixed phrases or exception class names: the
exception text often names hosts, ports or URLs, so it goes to the server log only.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from asgiref.sync import async_to_sync
from celery import Celery
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from apps.core.models import CircuitBreakerState, Heartbeat
from coinlink.celery import app as celery_app

logger = logging.getLogger(__name__)

# A bot that has not beaten for this long is taken as retired, not down.
BOTS_EXPECTED_WITHIN = dt.timedelta(days=1)

CHECK_TIMEOUT = 2.0
Status = Literal["ok", "degraded", "failing"]
EMBEDDED_BROKER_REASON = "embedded: tasks run in-process"
BREAKERS_UNCHECKED_REASON = "not checked: the database is down"
HEARTBEATS_UNCHECKED_REASON = BREAKERS_UNCHECKED_REASON


class HealthCheckError(Exception):
    """A dependency answered, but wrongly; the message is safe to show to a monitor."""


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    reason: str | None
    latency_ms: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BreakerReport(CheckResult):
    """Not ok while any breaker is open; ``services`` lists each breaker's state."""

    services: dict[str, dict[str, Any]] = field(default_factory=dict)


def _bounded(name: str, probe: Callable[[], None], timeout: float) -> CheckResult:
    """Run ``probe`` with a deadline; it returns when the dependency works and raises when it does not."""
    outcome: dict[str, BaseException] = {}
    # The copied context keeps the request id on anything the probe logs.
    context = contextvars.copy_context()

    def target() -> None:
        try:
            context.run(probe)
        except BaseException as exc:  # a probe thread must never die silently
            outcome["error"] = exc

    started = time.perf_counter()
    thread = threading.Thread(target=target, name=f"health-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    latency_ms = round((time.perf_counter() - started) * 1000, 1)

    if thread.is_alive():
        logger.warning("health check %s timed out after %.1f s", name, timeout)
        return CheckResult(ok=False, reason=f"timed out after {timeout:g} s", latency_ms=latency_ms)
    error = outcome.get("error")
    if error is not None:
        # One line with the detail, not a traceback: monitors poll often and this is an expected failure.
        logger.warning("health check %s failed: %s: %s", name, type(error).__name__, error)
        reason = str(error) if isinstance(error, HealthCheckError) else type(error).__name__
        return CheckResult(ok=False, reason=reason, latency_ms=latency_ms)
    return CheckResult(ok=True, reason=None, latency_ms=latency_ms)


def check_database(timeout: float = CHECK_TIMEOUT) -> CheckResult:
    """``SELECT 1`` over a fresh connection of the default database."""

    def probe() -> None:
        # A connection of our own: Django connections may not cross threads, and one abandoned in a hung
        # connect must not be the connection the request goes on to use.
        connection = connections.create_connection(DEFAULT_DB_ALIAS)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                row = cursor.fetchone()
        finally:
            connection.close()
        if row is None or row[0] != 1:
            raise HealthCheckError("SELECT 1 returned an unexpected row")

    return _bounded("database", probe, timeout)


def check_cache(timeout: float = CHECK_TIMEOUT, cache: BaseCache | None = None) -> CheckResult:
    """Write a unique key to the default cache and read it back."""
    # Taken in the caller's thread: Django hands out a cache per thread (per request context under ASGI),
    # and a new one in every probe thread would leave a Redis connection pool behind each time.
    cache = cache if cache is not None else caches["default"]

    def probe() -> None:
        key = f"health:{uuid.uuid4().hex}"
        value = uuid.uuid4().hex
        cache.set(key, value, timeout=30)
        try:
            if cache.get(key) != value:
                raise HealthCheckError("value did not round-trip")
        finally:
            cache.delete(key)

    return _bounded("cache", probe, timeout)


def check_broker(timeout: float = CHECK_TIMEOUT, app: Celery | None = None) -> CheckResult:
    """Open a connection to the Celery broker, or report the embedded mode that has none."""
    app = app if app is not None else celery_app
    if app.conf.task_always_eager:
        return CheckResult(ok=True, reason=EMBEDDED_BROKER_REASON, latency_ms=0.0)

    def probe() -> None:
        connection = app.connection_for_write(connect_timeout=timeout)
        try:
            # interval_start=0: a second attempt straight away rather than after kombu's default 2 s pause.
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
        finally:
            connection.release()

    return _bounded("broker", probe, timeout)


async def _round_trip(layer: BaseChannelLayer, timeout: float) -> None:
    channel = await layer.new_channel()
    nonce = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.ping", "nonce": nonce})
    message = await asyncio.wait_for(layer.receive(channel), timeout)
    if message.get("nonce") != nonce:
        raise HealthCheckError("a different message came back")


def check_channel_layer(timeout: float = CHECK_TIMEOUT) -> CheckResult:
    """Send a message to a fresh channel of the default channel layer and receive it back."""

    def probe() -> None:
        layer = get_channel_layer()
        if layer is None:
            raise HealthCheckError("no channel layer configured")
        # The probe thread has no event loop of its own, so async_to_sync gives it a private one.
        async_to_sync(_round_trip)(layer, timeout)

    return _bounded("channel_layer", probe, timeout)


def check_circuit_breakers() -> BreakerReport:
    """Each outside service's breaker as the database has it (a service appears once it has been called)."""
    started = time.perf_counter()
    try:
        rows = list(
            CircuitBreakerState.objects.order_by("service").values(
                "service", "state", "consecutive_failures", "opened_at"
            )
        )
    except Exception as exc:
        logger.warning("health check circuit_breakers failed: %s: %s", type(exc).__name__, exc)
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return BreakerReport(ok=False, reason=type(exc).__name__, latency_ms=latency_ms)
    services = {
        row["service"]: {
            "state": row["state"],
            "consecutive_failures": row["consecutive_failures"],
            "opened_at": row["opened_at"].isoformat() if row["opened_at"] else None,
        }
        for row in rows
    }
    open_services = [name for name, row in services.items() if row["state"] == CircuitBreakerState.State.OPEN]
    return BreakerReport(
        ok=not open_services,
        reason=f"open: {', '.join(open_services)}" if open_services else None,
        latency_ms=round((time.perf_counter() - started) * 1000, 1),
        services=services,
    )


@dataclass(frozen=True)
class HeartbeatReport(CheckResult):
    """Ok while at least one process of the kind has beaten within ``HEARTBEAT_STALE_SECONDS``; ``alive``
    counts those, ``last_seen_seconds`` is the age of the newest heartbeat of any of them (None: never)."""

    alive: int = 0
    last_seen_seconds: float | None = None


def check_heartbeats(kind: str, *, now: dt.datetime | None = None, prefix: str = "") -> HeartbeatReport:
    """Whether the processes of ``kind`` (``Heartbeat.Kind``: Celery workers, beat) are alive, from the
    heartbeats they record (``apps.core.heartbeats``). Stale is degraded, never failing: the site still
    serves while the background work waits."""
    started = time.perf_counter()
    now = now or timezone.now()
    stale_after = settings.HEARTBEAT_STALE_SECONDS
    try:
        rows = list(
            Heartbeat.objects.filter(kind=kind, name__startswith=prefix).values("last_seen", "stopped_at")
        )
    except Exception as exc:
        logger.warning("health check heartbeats (%s) failed: %s: %s", kind, type(exc).__name__, exc)
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        return HeartbeatReport(ok=False, reason=type(exc).__name__, latency_ms=latency_ms)
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    running = [row["last_seen"] for row in rows if row["stopped_at"] is None]
    alive = sum(1 for seen in running if (now - seen).total_seconds() <= stale_after)
    newest = max((row["last_seen"] for row in rows), default=None)
    age = round(max(0.0, (now - newest).total_seconds()), 1) if newest else None
    if alive:
        reason = None
    elif newest is None:
        reason = "no heartbeat yet"
    elif not running:
        reason = "stopped"
    else:
        reason = f"stale: last heartbeat {age:g} s ago"
    return HeartbeatReport(
        ok=bool(alive), reason=reason, latency_ms=latency_ms, alive=alive, last_seen_seconds=age
    )


def run_checks() -> dict[str, CheckResult]:
    """Every check at once, so the whole report takes about one timeout, not one per dependency."""
    cache = caches["default"]
    checks: dict[str, Callable[[], CheckResult]] = {
        "database": check_database,
        "cache": lambda: check_cache(cache=cache),
        "broker": check_broker,
        "channel_layer": check_channel_layer,
    }
    with ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="health") as pool:
        futures = {name: pool.submit(contextvars.copy_context().run, check) for name, check in checks.items()}
        results: dict[str, CheckResult] = {name: future.result() for name, future in futures.items()}
    # Read in the calling thread, on the request's own connection (a probe thread's would be left open), and
    # only once the database has just answered, so this read cannot hang on a dead server.
    results["circuit_breakers"] = (
        check_circuit_breakers()
        if results["database"].ok
        else BreakerReport(ok=False, reason=BREAKERS_UNCHECKED_REASON, latency_ms=0.0)
    )
    for name, kind in (("workers", Heartbeat.Kind.WORKER), ("beat", Heartbeat.Kind.BEAT)):
        results[name] = (
            check_heartbeats(kind)
            if results["database"].ok
            else HeartbeatReport(ok=False, reason=HEARTBEATS_UNCHECKED_REASON, latency_ms=0.0)
        )
    if results["database"].ok:
        for bot in _bots_expected():
            results[f"bot_{bot}"] = check_heartbeats(Heartbeat.Kind.BOT, prefix=f"{bot}@")
    return results


def _bots_expected(*, now: dt.datetime | None = None) -> list[str]:
    """The bots this deployment runs: those that beat within the last day (``discord@host:pid`` names
    ``discord``). A deployment without bots (the embedded default) has no bot check at all."""
    since = (now or timezone.now()) - BOTS_EXPECTED_WITHIN
    try:
        names = list(
            Heartbeat.objects.filter(kind=Heartbeat.Kind.BOT, last_seen__gte=since).values_list(
                "name", flat=True
            )
        )
    except Exception as exc:
        # Like every check: the report still answers; the workers' and beat's checks show the same failure.
        logger.warning("health check bots failed: %s: %s", type(exc).__name__, exc)
        return []
    return sorted({name.partition("@")[0] for name in names})


def overall_status(results: dict[str, CheckResult]) -> Status:
    """``failing`` without the database (nothing works), ``degraded`` when anything else is down."""
    if not results["database"].ok:
        return "failing"
    if all(result.ok for result in results.values()):
        return "ok"
    return "degraded"
