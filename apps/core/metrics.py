"""Prometheus metrics: every metric CoinLink exports, the one-line helpers the instrumented code calls, the
collectors that read state at scrape time, and the rule for who may scrape ``/metrics``.

Counters and histograms are counted where things happen, in whichever process that is (a daphne web process,
a Celery worker's child, beat, a bot). With ``PROMETHEUS_MULTIPROC_DIR`` in the environment of every process
of a machine, prometheus_client keeps each process's values in its own memory-mapped file in that directory
and a scrape of any web process adds them all up, so the totals are exact however many processes served the
requests. The variable must be set before prometheus_client is first imported (the Procfile sets it for every
process) and the directory emptied before the processes of a deployment start (``manage.py metrics_prepare``),
or counts of a previous deployment would be added again. Without it (the embedded default, one process) the
ordinary in-process registry is used.

Gauges of shared state (circuit breakers, heartbeats, Celery queue lengths) are not kept by any process: they
are read from the database and the broker when ``/metrics`` is scraped, so they are right whichever process
answers, and no dead process leaves a stale value behind.

Label values are bounded: HTTP requests are labelled with the resolved URL pattern, never the raw path.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

# Create the directory before prometheus_client opens its files in it: a missing directory would break the
# first metric created below, and with it every import of this module.
if _multiproc_dir := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(_multiproc_dir, exist_ok=True)

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# Decided by prometheus_client when it was imported, from PROMETHEUS_MULTIPROC_DIR.
MULTIPROCESS: bool = bool(getattr(values.ValueClass, "_multiprocess", False))
if settings.configured and settings.PROMETHEUS_MULTIPROC_DIR and not MULTIPROCESS:
    # Each process would count on its own and a scrape would show one process's share: refuse to start.
    raise ImproperlyConfigured(
        "PROMETHEUS_MULTIPROC_DIR is set, but prometheus_client was imported before it was: put it in the "
        "process environment (the Procfile), not only in a .env file read later"
    )

# How long a scrape waits for the broker before leaving the queue lengths out.
BROKER_TIMEOUT = 1.0
# Per-process heartbeats older than this are left out of the per-process gauge: a process that died long ago
# should not keep a series (and an alert) for ever. The per-kind gauge still shows its age.
HEARTBEAT_PROCESS_WINDOW = 24 * 3600

# --- HTTP ---------------------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "coinlink_http_requests",
    "HTTP requests answered, by resolved URL route, method and status code.",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "coinlink_http_request_duration_seconds",
    "Time to answer an HTTP request, by resolved URL route and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
# Routes of requests that matched no URL pattern (a 404, or a redirect before resolution).
UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# --- agents -------------------------------------------------------------------------------------------------

AGENT_RUNS = Counter(
    "coinlink_agent_runs",
    "Agent runs that ended, by agent and final status (succeeded, failed, skipped).",
    ["agent", "status"],
)
AGENT_RUN_RETRIES = Counter(
    "coinlink_agent_run_retries", "Agent run attempts that failed transiently and were retried.", ["agent"]
)
AGENT_RUN_DURATION = Histogram(
    "coinlink_agent_run_duration_seconds",
    "Duration of the last attempt of ended agent runs that started, by agent and final status.",
    ["agent", "status"],
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
# AgentRun statuses (apps.agents.models.AgentRunStatus; core cannot import the agents app).
AGENT_RUN_ENDED = frozenset({"succeeded", "failed", "skipped"})
AGENT_RUN_RETRYING = "retrying"

PIPELINE_RUNS = Counter(
    "coinlink_pipeline_runs",
    "Pipeline runs that ended, by final status (succeeded, degraded, partial, failed, cancelled).",
    ["status"],
)
# PipelineRun statuses that have not ended yet.
PIPELINE_RUN_OPEN = frozenset({"queued", "running"})

# --- circuit breakers ---------------------------------------------------------------------------------------

CIRCUIT_BREAKER_OPENED = Counter(
    "coinlink_circuit_breaker_opened", "Times an outside service's circuit breaker opened.", ["service"]
)

# --- publishing ---------------------------------------------------------------------------------------------

PUBLISHES = Counter(
    "coinlink_publishes",
    "Posts the publishing agent tried to publish, by platform and outcome "
    "(published, retry_later, failed, outcome_unknown).",
    ["platform", "outcome"],
)
PUBLISH_OUTCOMES = frozenset({"published", "retry_later", "failed", "outcome_unknown"})

# --- Stripe -------------------------------------------------------------------------------------------------

STRIPE_WEBHOOKS = Counter(
    "coinlink_stripe_webhooks",
    "Stripe webhook requests, by outcome (accepted: a new event stored; duplicate: a redelivery; "
    "rejected: bad signature or malformed, answered 400).",
    ["outcome"],
)
STRIPE_WEBHOOK_LAG = Histogram(
    "coinlink_stripe_webhook_lag_seconds",
    "Time from Stripe creating an event to this platform accepting its webhook.",
    buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0),
)
STRIPE_EVENTS_PROCESSED = Counter(
    "coinlink_stripe_events_processed",
    "Stored Stripe events whose processing ended, by status (processed, ignored, failed).",
    ["status"],
)
WEBHOOK_OUTCOMES = frozenset({"accepted", "duplicate", "rejected"})

# --- Celery -------------------------------------------------------------------------------------------------

CELERY_TASK_WAIT = Histogram(
    "coinlink_celery_task_wait_seconds",
    "Time a task message waited between being published (or its ETA) and a worker starting it, by task.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
CELERY_TASKS = Counter(
    "coinlink_celery_tasks", "Celery tasks a worker finished, by task and final state.", ["task", "state"]
)
# A message header stamped at publish time (epoch seconds), read when a worker starts the task.
PUBLISHED_AT_HEADER = "coinlink_published_at"

# --- moderation ---------------------------------------------------------------------------------------------

MODERATION_DECISIONS = Counter(
    "coinlink_moderation_decisions",
    "Moderation decisions taken, by platform and action (warn, delete_message, mute, unmute, ban, unban).",
    ["platform", "action"],
)
MODERATION_JUDGEMENTS = Counter(
    "coinlink_moderation_judgements",
    "Inbound messages the moderation engine judged, by platform and verdict (allow, review, remove).",
    ["platform", "verdict"],
)


# --- helpers the instrumented code calls --------------------------------------------------------------------


def http_request_observe(*, route: str, method: str, status: int, seconds: float) -> None:
    method = method if method in _METHODS else "other"
    HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    HTTP_REQUEST_DURATION.labels(route=route, method=method).observe(seconds)


def agent_run_changed(*, agent: str, status: str, duration_ms: int | None) -> None:
    """Called on every transition of an agent run; counts the ones that end it or retry it."""
    if status == AGENT_RUN_RETRYING:
        AGENT_RUN_RETRIES.labels(agent=agent).inc()
    elif status in AGENT_RUN_ENDED:
        AGENT_RUNS.labels(agent=agent, status=status).inc()
        if duration_ms is not None:
            AGENT_RUN_DURATION.labels(agent=agent, status=status).observe(duration_ms / 1000)


def pipeline_run_changed(*, status: str) -> None:
    """Called on every transition of a pipeline run; counts the one that ends it."""
    if status not in PIPELINE_RUN_OPEN:
        PIPELINE_RUNS.labels(status=status).inc()


def circuit_breaker_opened(*, service: str) -> None:
    CIRCUIT_BREAKER_OPENED.labels(service=service).inc()


def publish_outcome(*, platform: str, outcome: str) -> None:
    if outcome not in PUBLISH_OUTCOMES:
        raise ValueError(f"unknown publish outcome {outcome!r}")
    PUBLISHES.labels(platform=platform, outcome=outcome).inc()


def stripe_webhook_received(*, outcome: str, event_created: datetime | None = None) -> None:
    """``event_created``: when Stripe created an accepted event, to observe the delivery lag."""
    if outcome not in WEBHOOK_OUTCOMES:
        raise ValueError(f"unknown webhook outcome {outcome!r}")
    STRIPE_WEBHOOKS.labels(outcome=outcome).inc()
    if event_created is not None:
        # Clamped: Stripe's clock and ours may disagree by a little.
        STRIPE_WEBHOOK_LAG.observe(max(0.0, time.time() - event_created.timestamp()))


def stripe_event_processed(*, status: str) -> None:
    STRIPE_EVENTS_PROCESSED.labels(status=status).inc()


def moderation_decision(*, platform: str, action: str) -> None:
    """One action taken on a member (its audit row committed), by the engine or an operator."""
    MODERATION_DECISIONS.labels(platform=platform, action=action).inc()


def moderation_judgement(*, platform: str, verdict: str) -> None:
    """One inbound message judged and recorded (a redelivery is not counted again)."""
    MODERATION_JUDGEMENTS.labels(platform=platform, verdict=verdict).inc()


# --- Celery signals (connected in coinlink/celery.py) -------------------------------------------------------


def celery_before_task_publish(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    # Set on every publish, retries included: the wait is for this message, not the first one.
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = time.time()


def celery_task_prerun(task: Any = None, **kwargs: Any) -> None:
    request = getattr(task, "request", None)
    published = getattr(request, PUBLISHED_AT_HEADER, None)
    if published is None or getattr(request, "is_eager", False):
        return
    start = float(published)
    eta = getattr(request, "eta", None)
    if eta:
        # A task scheduled for later (countdown, retry backoff) waits from its ETA, not from its publication.
        eta_time = datetime.fromisoformat(eta) if isinstance(eta, str) else eta
        start = max(start, eta_time.timestamp())
    CELERY_TASK_WAIT.labels(task=task.name).observe(max(0.0, time.time() - start))


def celery_task_postrun(task: Any = None, state: str | None = None, **kwargs: Any) -> None:
    if task is None or getattr(getattr(task, "request", None), "is_eager", False):
        return
    CELERY_TASKS.labels(task=task.name, state=state or "UNKNOWN").inc()


def celery_worker_process_shutdown(pid: int | None = None, **kwargs: Any) -> None:
    """A worker's child process is exiting: drop its live gauges (its counters stay counted)."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(pid or os.getpid())


# --- HTTP middleware ----------------------------------------------------------------------------------------


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        # Answered before URL resolution (a middleware's redirect, say): what the path would have resolved to.
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return UNMATCHED_ROUTE
    return match.route or UNMATCHED_ROUTE


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by its URL pattern. First in MIDDLEWARE, so it also counts the
    answers other middleware give (redirects, refusals) and times the whole stack."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        http_request_observe(
            route=_route(request),
            method=request.method or "",
            status=response.status_code,
            seconds=time.perf_counter() - started,
        )
        return response


# --- scrape-time collectors ---------------------------------------------------------------------------------


def _bounded(fn: Callable[[], Any], timeout: float) -> Any:
    """``fn()`` in a daemon thread, abandoned after ``timeout``: a stuck broker must not hang the scrape."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # reported to the caller, never lost with the thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="metrics-broker", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def celery_queue_names(conf: Mapping[str, Any]) -> list[str]:
    """The default queue, the declared queues and any queue a route sends tasks to."""
    names = {conf.get("task_default_queue") or "celery"}
    names |= {queue.name for queue in conf.get("task_queues") or ()}
    routes = conf.get("task_routes") or {}
    if isinstance(routes, Mapping):
        names |= {
            route["queue"] for route in routes.values() if isinstance(route, Mapping) and "queue" in route
        }
    return sorted(str(name) for name in names)


def celery_queue_lengths(
    app: Any, names: Iterable[str], *, timeout: float = BROKER_TIMEOUT
) -> dict[str, int]:
    """Messages waiting in each queue, as the broker counts them (Redis: LLEN of the queue's lists, one per
    priority; RabbitMQ: a passive declare). A queue the broker does not know yet holds nothing."""

    def read() -> dict[str, int]:
        lengths: dict[str, int] = {}
        with app.connection_for_read(connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
            for name in names:
                # A channel of its own: RabbitMQ closes the channel on which a passive declare fails.
                channel = connection.channel()
                try:
                    lengths[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
                except Exception as exc:
                    if not _is_missing_queue(exc):
                        raise
                    lengths[name] = 0
                finally:
                    try:
                        channel.close()
                    except Exception:  # already closed by the broker after a missing queue
                        logger.debug("closing a broker channel failed", exc_info=True)
        return lengths

    return _bounded(read, timeout * 3)


def _is_missing_queue(exc: Exception) -> bool:
    return type(exc).__name__ in {"ChannelError", "NotFound"} or "NOT_FOUND" in str(exc)


class StateCollector(Collector):
    """Gauges read at scrape time from the database and the broker. A source that cannot be read is left out
    and reported by ``coinlink_metrics_source_up`` (0), so the rest of the scrape still works."""

    def __init__(self, *, now: Callable[[], float] = time.time, broker_app: Any = None) -> None:
        self.now = now
        self.broker_app = broker_app

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "coinlink_metrics_source_up",
            "Whether a scrape-time source of metrics could be read (database, broker).",
            labels=["source"],
        )
        try:
            families = [*self._breakers(), *self._heartbeats()]
        except Exception:
            logger.warning("metrics: the database could not be read", exc_info=True)
            up.add_metric(["database"], 0)
        else:
            up.add_metric(["database"], 1)
            yield from families
        broker = self._queues()
        if broker is not None:
            up.add_metric(["broker"], 1 if broker else 0)
            if broker:
                yield broker[0]
        yield up

    def _breakers(self) -> list[Metric]:
        from apps.core.models import CircuitBreakerState

        state = GaugeMetricFamily(
            "coinlink_circuit_breaker_state",
            "Each outside service's circuit breaker: 1 for its current state (closed, open, half_open).",
            labels=["service", "state"],
        )
        failures = GaugeMetricFamily(
            "coinlink_circuit_breaker_consecutive_failures",
            "Consecutive transient failures an outside service's breaker has counted.",
            labels=["service"],
        )
        states = [choice.value for choice in CircuitBreakerState.State]
        for row in CircuitBreakerState.objects.order_by("service").values(
            "service", "state", "consecutive_failures"
        ):
            for name in states:
                state.add_metric([row["service"], name], 1 if row["state"] == name else 0)
            failures.add_metric([row["service"]], row["consecutive_failures"])
        return [state, failures]

    def _heartbeats(self) -> list[Metric]:
        from django.db.models import Max

        from apps.core.models import Heartbeat

        now = self.now()
        by_kind = GaugeMetricFamily(
            "coinlink_heartbeat_age_seconds",
            "Seconds since the latest heartbeat of any process of a kind (worker, beat, bot, web).",
            labels=["kind"],
        )
        for row in Heartbeat.objects.values("kind").annotate(last=Max("last_seen")).order_by("kind"):
            by_kind.add_metric([row["kind"]], max(0.0, now - row["last"].timestamp()))
        per_process = GaugeMetricFamily(
            "coinlink_heartbeat_process_age_seconds",
            "Seconds since each running process's last heartbeat (processes stopped cleanly, or silent for a "
            "day, are left out).",
            labels=["kind", "name"],
        )
        cutoff = datetime.fromtimestamp(now - HEARTBEAT_PROCESS_WINDOW, tz=UTC)
        for kind, name, last_seen in (
            Heartbeat.objects.filter(stopped_at__isnull=True, last_seen__gte=cutoff)
            .order_by("kind", "name")
            .values_list("kind", "name", "last_seen")
        ):
            per_process.add_metric([kind, name], max(0.0, now - last_seen.timestamp()))
        return [by_kind, per_process]

    def _queues(self) -> list[Metric] | None:
        """The queue-length family; [] when the broker could not be read; None with no broker at all."""
        from coinlink.celery import app as celery_app

        app = self.broker_app or celery_app
        if app.conf.task_always_eager:
            return None  # the embedded default: tasks run in-process, nothing ever waits in a queue
        lengths = GaugeMetricFamily(
            "coinlink_celery_queue_length", "Messages waiting in each Celery queue.", labels=["queue"]
        )
        try:
            found = celery_queue_lengths(app, celery_queue_names(app.conf))
        except Exception as exc:
            logger.warning("metrics: the broker could not be read: %s: %s", type(exc).__name__, exc)
            return []
        for name, length in found.items():
            lengths.add_metric([name], length)
        return [lengths]


class _DefaultRegistry(Collector):
    """The process's own registry, for a scrape without multi-process mode."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(*, state: Collector | None = None) -> tuple[bytes, str]:
    """The text a scrape gets, and its content type: every process's counters and the shared state."""
    registry = CollectorRegistry()
    if MULTIPROCESS:
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_DefaultRegistry())
    registry.register(state or StateCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


# --- who may scrape -----------------------------------------------------------------------------------------


def scrape_allowed(*, remote_addr: str, authorization: str, token: str, allowed: Collection[str]) -> bool:
    """A scraper gets in with ``Authorization: Bearer <METRICS_TOKEN>`` or from an address within one of
    ``METRICS_ALLOWED_IPS`` (addresses or networks). With neither configured nobody does."""
    if token:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(network, strict=False) for network in allowed)


def prepare_multiprocess_dir(path: str) -> int:
    """Empty (or create) the multi-process directory before a deployment's processes start; returns how many
    files of earlier processes were removed."""
    os.makedirs(path, exist_ok=True)
    removed = 0
    for entry in os.scandir(path):
        if entry.is_file() and entry.name.endswith(".db"):
            os.remove(entry.path)
            removed += 1
    return removed
