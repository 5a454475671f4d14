"""The production topology as real processes: daphne, two Celery workers and beat, each its own OS process,
on the test's PostgreSQL database and Redis.

- Steady state: beat starts a pipeline that goes through the broker and finishes; a Stripe webhook answered
  by the web process is processed by a worker; ``/health/`` on the web process sees both workers and beat
  alive from their heartbeats.
- Losing a worker: a whole worker (its process group: the main process and its pool) is killed with SIGKILL
  in the middle of an agent run, or of a Stripe event's processing. The message, acknowledged only once a
  task ends, goes to the other worker after the broker's visibility timeout (5 s here), and that delivery
  takes over the row its lost worker left ``running`` / ``processing``: the work finishes exactly once.

"In the middle" is made reliable with slow fakes, not sleeps in the product: each worker reads the news, or
Stripe, from its own fake server on loopback (so the test knows which worker took the task), and each fake
takes a few seconds to answer. The subprocesses share the database with the test through pytest-django's
transactional test database, whose name goes to them in DATABASE_URL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apps.agents import registry
from apps.agents.models import AgentRun, AgentRunStatus, PipelineRun, RunTrigger
from apps.agents.services import RUN_PIPELINE_TASK, agent_run_enqueue
from apps.billing.models import Entitlement, StripeEvent, StripeEventStatus, Subscription
from apps.billing.services.webhooks import stripe_event_ingest
from apps.billing.tests import stripe_fakes
from apps.core.models import Heartbeat
from apps.market.models import NewsArticle
from coinlink.celery import app as celery_app
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
HOSTNAME = socket.gethostname()
VISIBILITY_TIMEOUT = 5
# Long enough to kill the worker that asked; well under the clients' own timeouts and the visibility timeout
# plus what the other worker needs to finish.
SLOW_ANSWER_SECONDS = 3.0

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
]


# --- the processes ------------------------------------------------------------------------------------------


def _database_url() -> str:
    """The test database pytest-django made (``test_...``), for the subprocesses."""
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _environment(**extra: str) -> dict[str, str]:
    dropped = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CI"}
    env = {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("PROMETHEUS_")}
    env.update(
        DJANGO_SETTINGS_MODULE="coinlink.settings",
        DJANGO_ENV="test",
        DATABASE_URL=_database_url(),
        REDIS_URL=settings.REDIS_URL,
        AGENTS_RUN_IN_PROCESS="false",
        # Only the schedules a test makes: the default pipeline schedule could fire mid-test.
        AGENT_PIPELINE_SCHEDULE="off",
        CELERY_BROKER_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT),
        HEARTBEAT_INTERVAL_SECONDS="1",
        HEARTBEAT_STALE_SECONDS="15",
        STRIPE_SECRET_KEY=stripe_fakes.SECRET_KEY,
        STRIPE_WEBHOOK_SECRET=stripe_fakes.WEBHOOK_SECRET,
        NEWS_BACKEND="files",
        LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Topology:
    """The processes a test started; each in its own process group, so a kill takes a worker's pool too."""

    logs: Path
    processes: dict[str, Process] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Process:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
                [sys.executable, "-m", *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = Process(name, popen, log)
        return self.processes[name]

    def worker(self, name: str, **env: str) -> Process:
        args = ["celery", "-A", "coinlink", "worker", "-n", f"{name}@%h", "--concurrency", "1", "-l", "info"]
        return self.start(name, [*args, "--without-mingle", "--without-gossip"], _environment(**env))

    def beat(self) -> Process:
        return self.start("beat", ["celery", "-A", "coinlink", "beat", "-l", "info"], _environment())

    def web(self, port: int) -> Process:
        args = ["daphne", "-b", "127.0.0.1", "-p", str(port), "coinlink.asgi:application"]
        return self.start("web", args, _environment())

    def kill(self, name: str) -> None:
        """SIGKILL the process and everything it started (a worker's pool children), as a lost machine."""
        process = self.processes[name]
        os.killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait(timeout=20)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.popen.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait(timeout=20)

    def diagnostics(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.output()[-4000:]}" for p in self.processes.values())


def _wait_for(what: str, condition: Callable[[], Any], topology: Topology, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        for process in topology.processes.values():
            if process.popen.poll() is not None and process.popen.returncode not in (-signal.SIGKILL,):
                pytest.fail(f"{process.name} exited ({process.popen.returncode}):\n{topology.diagnostics()}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n{topology.diagnostics()}")


def _wait_ready(
    topology: Topology, *, workers: list[str], beat: bool = False, web: int | None = None
) -> None:
    """Workers and beat are ready once they have beaten (their heartbeat starts when they are); the web
    process once it listens."""
    names = [f"{worker}@{HOSTNAME}" for worker in workers]

    def ready() -> bool:
        alive = set(Heartbeat.objects.filter(stopped_at=None).values_list("name", "kind"))
        return all((name, Heartbeat.Kind.WORKER) in alive for name in names) and (
            not beat or any(kind == Heartbeat.Kind.BEAT for _, kind in alive)
        )

    _wait_for("the workers and beat to beat", ready, topology, timeout=90)
    if web is not None:

        def listening() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", web), timeout=1):
                return True
            return False

        _wait_for("the web process to listen", listening, topology, timeout=60)


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This test process sends its tasks to the real broker (the suite's default is eager), which starts
    empty: no message or unacknowledged delivery left by an earlier test."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    monkeypatch.setitem(celery_app.conf, "task_always_eager", False)
    monkeypatch.setitem(celery_app.conf, "broker_url", settings.REDIS_URL)
    monkeypatch.setitem(celery_app.conf, "result_backend", settings.REDIS_URL)
    yield
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture
def topology(tmp_path: Path, broker: None) -> Iterator[Topology]:
    started = Topology(logs=tmp_path)
    try:
        yield started
    finally:
        started.stop()


# --- the fakes ----------------------------------------------------------------------------------------------

FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Fake desk</title><link>http://127.0.0.1/</link><description>t</description>
<item><title>Bitcoin holds its range as ETF flows slow</title><link>http://127.0.0.1/btc-range</link>
<guid>fake-btc-range</guid><description>BTC traders wait.</description><pubDate>{date}</pubDate></item>
</channel></rss>"""


@dataclass
class SlowFeeds:
    """News feeds on loopback, one path per worker; every answer takes ``latency`` seconds."""

    server: HTTPServer
    latency: float
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, worker: str) -> str:
        return self.server.url_for(f"/feeds/{worker}.xml")

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.requests.append(request.path.rsplit("/", 1)[-1].removesuffix(".xml"))
        time.sleep(self.latency)
        date = timezone.now().strftime("%a, %d %b %Y %H:%M:%S +0000")
        return Response(FEED.format(date=date), content_type="application/rss+xml")


@pytest.fixture
def slow_feeds() -> Iterator[SlowFeeds]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    feeds = SlowFeeds(server=server, latency=SLOW_ANSWER_SECONDS)
    server.expect_request("/feeds/a.xml").respond_with_handler(feeds.handle)
    server.expect_request("/feeds/b.xml").respond_with_handler(feeds.handle)
    try:
        yield feeds
    finally:
        server.clear()
        server.stop()


@contextlib.contextmanager
def _fake_stripe(latency: float) -> Iterator[stripe_fakes.FakeStripe]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    fake = stripe_fakes.FakeStripe(server)
    fake.latency = latency
    try:
        yield fake
    finally:
        server.clear()
        server.stop()


def _api_base(fake: stripe_fakes.FakeStripe) -> str:
    return fake.server.url_for("/").rstrip("/")


def _subscription_event(member: stripe_fakes.Member) -> tuple[dict[str, Any], dict[str, Any]]:
    """A live subscription as Stripe has it now, and the ``customer.subscription.updated`` event about it."""
    now = stripe_fakes.at_second(timezone.now())
    subscription = stripe_fakes.subscription_object(
        subscription_id=stripe_fakes.unique("sub"),
        customer=member.customer_id,
        price_id=str(member.price.stripe_price_id),
        period_start=now - dt.timedelta(days=1),
        period_end=now + dt.timedelta(days=29),
    )
    return subscription, stripe_fakes.event("customer.subscription.updated", subscription, created=now)


def _post_webhook(port: int, data: dict[str, Any]) -> tuple[int, bytes]:
    import http.client

    body = json.dumps(data)
    web = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        web.request(
            "POST",
            stripe_fakes.WEBHOOK_URL,
            body=body,
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": stripe_fakes.sign(body),
                "Host": "127.0.0.1",
            },
        )
        response = web.getresponse()
        return response.status, response.read()
    finally:
        web.close()


def _get_health(port: int) -> dict[str, Any]:
    import http.client

    web = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        web.request("GET", "/health/", headers={"Host": "127.0.0.1"})
        response = web.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        web.close()


# --- steady state -------------------------------------------------------------------------------------------


def test_beat_runs_a_pipeline_through_the_broker_and_health_sees_every_process(topology: Topology) -> None:
    port = free_port()
    topology.web(port)
    topology.worker("a")
    topology.worker("b")
    topology.beat()
    _wait_ready(topology, workers=["a", "b"], beat=True, web=port)

    health = _get_health(port)
    assert health["status"] == "ok", health
    assert (health["checks"]["workers"]["ok"], health["checks"]["workers"]["alive"]) == (True, 2)
    assert (health["checks"]["beat"]["ok"], health["checks"]["beat"]["alive"]) == (True, 1)
    assert health["checks"]["broker"] == {
        "ok": True,
        "reason": None,
        "latency_ms": pytest.approx(0, abs=2000),
    }

    # Beat picks the new schedule up from the database and sends the pipeline to the broker once.
    PeriodicTask.objects.create(
        name="pipeline, once",
        task=RUN_PIPELINE_TASK,
        interval=IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS),
        one_off=True,
    )
    pipeline = _wait_for(
        "the pipeline to finish",
        lambda: PipelineRun.objects.filter(finished_at__isnull=False).first(),
        topology,
        timeout=120,
    )

    runs = AgentRun.objects.filter(pipeline_run=pipeline)
    assert pipeline.trigger == RunTrigger.SCHEDULE
    assert pipeline.status == PipelineRun.Status.SUCCEEDED, list(runs.values_list("agent_name", "error"))
    assert PipelineRun.objects.count() == 1
    assert sorted(runs.values_list("agent_name", flat=True)) == sorted(a.name for a in registry.all_agents())
    assert set(runs.values_list("status", flat=True)) == {AgentRunStatus.SUCCEEDED}
    # Through the broker: every run was a Celery task of its own, taken by the workers (not run in beat).
    task_ids = set(runs.values_list("celery_task_id", flat=True))
    assert len(task_ids) == runs.count()
    logs = topology.processes["a"].output() + topology.processes["b"].output()
    assert all(f"execute_agent_run[{task_id}] succeeded" in logs for task_id in task_ids)
    assert "execute_agent_run" not in topology.processes["beat"].output()


def test_a_stripe_webhook_answered_by_the_web_process_is_processed_by_a_worker(topology: Topology) -> None:
    with _fake_stripe(latency=0) as fake:
        port = free_port()
        topology.web(port)
        topology.worker("a", STRIPE_API_BASE=_api_base(fake))
        topology.worker("b", STRIPE_API_BASE=_api_base(fake))
        _wait_ready(topology, workers=["a", "b"], web=port)
        member = stripe_fakes.member()
        subscription, event = _subscription_event(member)
        fake.put(subscription)

        status, body = _post_webhook(port, event)

        assert (status, json.loads(body)) == (200, {"received": True, "id": event["id"]})
        stored = _wait_for(
            "the event to be processed",
            lambda: StripeEvent.objects.filter(
                stripe_id=event["id"], status=StripeEventStatus.PROCESSED
            ).first(),
            topology,
        )
        assert stored.attempts == 1
        assert fake.reads(subscription["id"]) == 1
        synced = Subscription.objects.get(stripe_subscription_id=subscription["id"])
        assert (synced.user_id, synced.status) == (member.user.pk, "active")
        assert set(
            Entitlement.objects.filter(user=member.user, revoked_at=None).values_list("key", flat=True)
        ) == {"portal.premium", "discord.role:111"}
        # The web process stored and answered; a worker did the processing.
        logs = topology.processes["a"].output() + topology.processes["b"].output()
        assert f"process_stripe_event[{stored.claimed_by}] succeeded" in logs
        assert "process_stripe_event" not in topology.processes["web"].output()


# --- losing a worker ----------------------------------------------------------------------------------------


def test_a_worker_killed_mid_run_loses_nothing_the_other_takes_the_run_over(
    topology: Topology, slow_feeds: SlowFeeds
) -> None:
    for worker in ("a", "b"):
        topology.worker(worker, NEWS_BACKEND="rss", NEWS_FEEDS=slow_feeds.url(worker))
    _wait_ready(topology, workers=["a", "b"])

    run = agent_run_enqueue(agent_name="market_scanner", trigger=RunTrigger.MANUAL)

    # The run is in the middle: its worker is waiting for the (slow) news feed.
    holder = _wait_for("a worker to read the news", lambda: slow_feeds.requests[:1], topology)[0]
    other = {"a": "b", "b": "a"}[holder]
    in_flight = AgentRun.objects.get(pk=run.pk)
    assert in_flight.status == AgentRunStatus.RUNNING
    topology.kill(holder)

    finished = _wait_for(
        "the run to finish on the other worker",
        lambda: AgentRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        topology,
        timeout=60,
    )

    assert finished.status == AgentRunStatus.SUCCEEDED, (finished.error, topology.diagnostics())
    # The same task (late acknowledgement): its message came back after the visibility timeout.
    assert finished.celery_task_id == in_flight.celery_task_id
    assert slow_feeds.requests == [holder, other]
    other_log = topology.processes[other].output()
    assert f"agent run #{run.pk}: its worker was lost mid-run; running it again" in other_log
    assert f"execute_agent_run[{finished.celery_task_id}] succeeded" in other_log
    # Once: one run row, one article from the feed, and the agent's flight free again.
    assert AgentRun.objects.filter(agent_name="market_scanner").count() == 1
    assert NewsArticle.objects.filter(url="http://127.0.0.1/btc-range").count() == 1
    assert not AgentRun.objects.filter(status=AgentRunStatus.RUNNING).exists()


def test_a_worker_killed_mid_stripe_event_loses_nothing_the_other_takes_it_over(
    topology: Topology, settings: Any
) -> None:
    settings.STRIPE_WEBHOOK_SECRET = stripe_fakes.WEBHOOK_SECRET
    with _fake_stripe(SLOW_ANSWER_SECONDS) as stripe_a, _fake_stripe(SLOW_ANSWER_SECONDS) as stripe_b:
        fakes = {"a": stripe_a, "b": stripe_b}
        for worker, fake in fakes.items():
            topology.worker(worker, STRIPE_API_BASE=_api_base(fake))
        _wait_ready(topology, workers=["a", "b"])
        member = stripe_fakes.member()
        subscription, event = _subscription_event(member)
        for fake in fakes.values():
            fake.put(subscription)

        body = json.dumps(event)
        stored = stripe_event_ingest(payload=body.encode(), signature_header=stripe_fakes.sign(body))

        holder = _wait_for(
            "a worker to read the subscription back from Stripe",
            lambda: next((name for name, fake in fakes.items() if fake.reads()), None),
            topology,
        )
        other = {"a": "b", "b": "a"}[holder]
        in_flight = StripeEvent.objects.get(pk=stored.pk)
        assert (in_flight.status, in_flight.attempts) == (StripeEventStatus.PROCESSING, 1)
        topology.kill(holder)

        done = _wait_for(
            "the event to be processed by the other worker",
            lambda: StripeEvent.objects.filter(pk=stored.pk, status=StripeEventStatus.PROCESSED).first(),
            topology,
            timeout=60,
        )

        # Taken over by the redelivery of the same task, and processed once more: never twice at once.
        assert (done.attempts, done.claimed_by, done.error) == (2, in_flight.claimed_by, "")
        assert (fakes[holder].reads(), fakes[other].reads()) == (1, 1)
        other_log = topology.processes[other].output()
        assert f"stripe event #{stored.pk}: its worker was lost mid-processing; processing again" in other_log
        assert Subscription.objects.filter(stripe_subscription_id=subscription["id"]).count() == 1
        granted = Entitlement.objects.filter(user=member.user, revoked_at=None)
        assert sorted(granted.values_list("key", flat=True)) == ["discord.role:111", "portal.premium"]


def _pool_children(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def test_a_pool_child_killed_mid_run_is_requeued_at_once_and_the_run_taken_over(
    topology: Topology, slow_feeds: SlowFeeds
) -> None:
    for worker in ("a", "b"):
        topology.worker(worker, NEWS_BACKEND="rss", NEWS_FEEDS=slow_feeds.url(worker))
    _wait_ready(topology, workers=["a", "b"])

    run = agent_run_enqueue(agent_name="market_scanner", trigger=RunTrigger.MANUAL)
    holder = _wait_for("a worker to read the news", lambda: slow_feeds.requests[:1], topology)[0]
    in_flight = AgentRun.objects.get(pk=run.pk)
    assert in_flight.status == AgentRunStatus.RUNNING
    (child,) = _pool_children(topology.processes[holder].popen.pid)
    os.kill(child, signal.SIGKILL)

    finished = _wait_for(
        "the run to finish",
        lambda: AgentRun.objects.filter(pk=run.pk, finished_at__isnull=False).first(),
        topology,
        timeout=60,
    )

    # The parent rejected the message back to the queue rather than recording the task as failed, and the
    # delivery that took it (the parent's new child or the other worker) ran the same run to its end.
    assert finished.status == AgentRunStatus.SUCCEEDED, (finished.error, topology.diagnostics())
    assert finished.celery_task_id == in_flight.celery_task_id
    assert len(slow_feeds.requests) == 2
    logs = topology.processes["a"].output() + topology.processes["b"].output()
    assert f"agent run #{run.pk}: its worker was lost mid-run; running it again" in logs
    assert AgentRun.objects.filter(agent_name="market_scanner").count() == 1
    assert NewsArticle.objects.filter(url="http://127.0.0.1/btc-range").count() == 1
