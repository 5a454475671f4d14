"""Stripe webhooks through the real web server, against a bare one-INSERT view on the same server.

    python bench/webhooks.py [--quick] [--keep]

A fresh database (see ``bench/_common.py``) gets two plans with Stripe prices and 500 paying members (``--quick``:
100), each with a Stripe customer and a subscription (82% active, 8% trialing, 6% past due, 4% canceled) that
is synced once, as in steady state. A fake Stripe API (``http.server`` in a thread of this process) answers
``GET /v1/subscriptions/{id}`` with each subscription's state, for the re-reads processing makes.

The events are Stripe's own example objects (``fixtures/stripe/fixtures3.json``, through the builders the tests use
in ``apps/billing/tests/stripe_fakes.py``) with distinct ids, signed as Stripe signs them at the moment they are
sent, in a mix that follows each member's state: subscription updates and paid invoices for active members,
creations and checkouts for trials, failed payments while past due, deletions and refunds for canceled ones.

Each server is ``daphne -b 127.0.0.1 -p <free port> coinlink.asgi:application`` in a subprocess, with the
application's settings plus a URLconf (``bench/settings_bench.py``, ``bench/baseline_urls.py``) that adds the
baseline view. 8 client connections (http.client, keep-alive, threads of this process) post 2,000 events
(``--quick``: 300) to each endpoint after a warm-up. Two servers, one after the other:

A. the embedded default (Celery eager): processing runs after commit inside the request, so the webhook's
   figures include reading the subscription back from Stripe and applying it;
B. a broker configured (``CELERY_BROKER_URL``: Redis on 127.0.0.1:6379 when it answers, else the in-memory
   transport) and no worker: the request stores, queues and answers, i.e. ingest only, as production's web
   processes do. The events it stored are then processed in this process, one after the other, to time
   processing alone.

Both run with ``AGENTS_RUN_IN_PROCESS=false`` (no scheduled agents inside the server while it is measured).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import random
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    ROOT,
    BenchDatabase,
    QueryCounter,
    app_environment,
    bench_database,
    human,
    line,
    parse_args,
    percentile,
    print_header,
    setup_django,
    table,
    times,
)

FULL = {"members": 500, "events": 2000, "warmup": 100}
QUICK = {"members": 100, "events": 300, "warmup": 30}
CONCURRENCY = 8
# No measured load runs longer than this; what was sent by then is reported, with a note.
DEADLINE_SECONDS = 180.0
WEBHOOK_PATH = "/billing/stripe/webhook/"
BASELINE_PATH = "/bench/baseline/"
BROKER_REDIS = "redis://127.0.0.1:6379/15"
WEBHOOK_SECRET = "whsec_bench_5f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f"  # noqa: S105 - the bench server's own
STATUS_SHARE = {"active": 0.82, "trialing": 0.08, "past_due": 0.06, "canceled": 0.04}
# What Stripe sends about a member in each state, and how often.
EVENT_MIX = {
    "active": (
        ("customer.subscription.updated", 40),
        ("invoice.paid", 40),
        ("checkout.session.completed", 8),
        ("customer.subscription.created", 7),
        ("charge.refunded", 5),
    ),
    "trialing": (
        ("customer.subscription.updated", 50),
        ("customer.subscription.created", 30),
        ("checkout.session.completed", 20),
    ),
    "past_due": (("invoice.payment_failed", 70), ("customer.subscription.updated", 30)),
    "canceled": (("customer.subscription.deleted", 80), ("charge.refunded", 20)),
}


# --- the fake Stripe API ------------------------------------------------------------------------------------


class FakeStripe:
    """``GET /v1/subscriptions/{id}``: each subscription's current state, as the real client reads it."""

    PATH = re.compile(r"^/v1/subscriptions/(?P<id>[A-Za-z0-9_]+)$")

    def __init__(self) -> None:
        self.subscriptions: dict[str, bytes] = {}
        self.reads = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes; with Nagle's algorithm the second waits for the
                # client's delayed ACK (up to 40 ms), which Stripe's servers never make anyone wait.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                fake.reads += 1
                match = FakeStripe.PATH.match(self.path.split("?")[0])
                body = fake.subscriptions.get(match["id"]) if match else None
                status = 200 if body is not None else 404
                if body is None:
                    error = {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": "No such",
                    }
                    body = json.dumps({"error": error}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-stripe", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeStripe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the world and the events -------------------------------------------------------------------------------


@dataclass
class Member:
    user_id: int
    customer_id: str
    subscription_id: str
    price_id: str
    status: str
    subscription: dict[str, Any] = field(default_factory=dict)


def seed(count: int, fake: FakeStripe) -> list[Member]:
    """Plans, members with Stripe customers, their subscriptions in the fake Stripe and, synced once, in the
    database with their entitlements."""
    import datetime as dt

    from django.utils import timezone

    from apps.accounts.models import User
    from apps.billing.models import BillingCustomer, BillingInterval, Plan, PlanPrice
    from apps.billing.services.subscriptions import subscription_sync_from_stripe
    from apps.billing.tests import stripe_fakes

    prices = []
    for rank, slug, amount, keys in (
        (1, "pro", 2900, ["portal.premium", "discord.role:bench-members", "telegram.channel:bench-vip"]),
        (
            2,
            "elite",
            7900,
            ["portal.premium", "portal.elite", "discord.role:bench-members", "discord.role:bench-elite"],
        ),
    ):
        plan = Plan.objects.create(
            name=slug.title(),
            slug=slug,
            rank=rank,
            entitlement_keys=keys,
            grace_entitlement_keys=["portal.premium"],
        )
        prices.append(
            PlanPrice.objects.create(
                plan=plan,
                interval=BillingInterval.MONTH,
                amount_minor=amount,
                stripe_price_id=f"price_bench_{slug}",
            ).stripe_price_id
        )
    users = User.objects.bulk_create(
        [User(email=f"member{i:05d}@bench.coinlink.local", password="!") for i in range(count)]  # noqa: S106
    )
    rng = random.Random(5)
    now = stripe_fakes.at_second(timezone.now())
    members = []
    for i, user in enumerate(users):
        status = rng.choices(list(STATUS_SHARE), weights=list(STATUS_SHARE.values()))[0]
        member = Member(
            user_id=user.pk,
            customer_id=f"cus_bench{i:06d}",
            subscription_id=f"sub_bench{i:06d}",
            price_id=prices[0] if rng.random() < 0.8 else prices[1],
            status=status,
        )
        start = now - dt.timedelta(days=rng.randint(1, 29))
        member.subscription = stripe_fakes.subscription_object(
            subscription_id=member.subscription_id,
            customer=member.customer_id,
            price_id=member.price_id,
            status=status,
            period_start=start,
            period_end=start + dt.timedelta(days=30),
            trial_end=start + dt.timedelta(days=7) if status == "trialing" else None,
            canceled_at=now - dt.timedelta(days=1) if status == "canceled" else None,
            ended_at=now - dt.timedelta(days=1) if status == "canceled" else None,
        )
        fake.subscriptions[member.subscription_id] = json.dumps(member.subscription).encode()
        members.append(member)
    BillingCustomer.objects.bulk_create(
        [BillingCustomer(user_id=m.user_id, stripe_customer_id=m.customer_id) for m in members]
    )
    for member in members:
        subscription_sync_from_stripe(stripe_subscription=member.subscription, event_created=now)
    return members


def build_events(members: list[Member], count: int, *, run: str, seed: int) -> list[tuple[str, str]]:
    """``count`` (type, JSON body) of Stripe events about random members, ids unique to ``run``."""
    from django.utils import timezone

    from apps.billing.tests import stripe_fakes

    rng = random.Random(seed)
    now = timezone.now()
    events = []
    for i in range(count):
        member = rng.choice(members)
        kinds, weights = zip(*EVENT_MIX[member.status], strict=True)
        kind = rng.choices(kinds, weights=weights)[0]
        ref = f"bench_{run}_{i:06d}"
        if kind.startswith("customer.subscription."):
            obj = member.subscription
        elif kind.startswith("invoice."):
            obj = stripe_fakes.invoice_object(
                invoice_id=f"in_{ref}",
                customer=member.customer_id,
                subscription=member.subscription_id,
                status="paid" if kind == "invoice.paid" else "open",
            )
        elif kind == "checkout.session.completed":
            obj = stripe_fakes.checkout_session_object(
                session_id=f"cs_{ref}",
                customer=member.customer_id,
                subscription=member.subscription_id,
                user_id=member.user_id,
            )
        else:
            full = member.status == "canceled"
            obj = stripe_fakes.charge_object(
                charge_id=f"ch_{ref}",
                customer=member.customer_id,
                amount=2900,
                amount_refunded=2900 if full else 1000,
            )
        data = stripe_fakes.event(kind, obj, created=now, event_id=f"evt_{ref}")
        events.append((kind, json.dumps(data)))
    return events


# --- servers and load ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def daphne(env: dict[str, str], log: Path) -> Iterator[int]:
    """A daphne process serving the application on a free loopback port; stopped (by its pid) on exit."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "coinlink.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"daphne exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not listen within 90 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@dataclass
class Load:
    sent: int
    wall: float
    latencies: list[float]
    statuses: Counter[str]
    cut_short: bool

    @property
    def rate(self) -> float:
        return self.sent / self.wall if self.wall else 0.0

    def cells(self) -> list[str]:
        bad = sum(n for status, n in self.statuses.items() if status != "200")
        return [
            f"{self.sent:,}" + (" (deadline)" if self.cut_short else ""),
            f"{self.rate:,.1f}",
            human(percentile(self.latencies, 50)),
            human(percentile(self.latencies, 99)),
            f"{bad}" if not bad else f"{bad} {dict(self.statuses)}",
        ]


def post_all(
    port: int, path: str, bodies: list[str], *, sign: bool, deadline: float = DEADLINE_SECONDS
) -> Load:
    """POST every body over CONCURRENCY keep-alive connections; each request signed just before it is sent
    when ``sign``. Stops by itself at ``deadline`` seconds."""
    from apps.billing.tests import stripe_fakes

    work: queue.SimpleQueue[str] = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        seen: Counter[str] = Counter()
        while time.monotonic() < stop_at:
            try:
                body = work.get_nowait()
            except queue.Empty:
                break
            headers = {"Content-Type": "application/json"}
            if sign:
                headers["Stripe-Signature"] = stripe_fakes.sign(body, secret=WEBHOOK_SECRET)
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=body.encode(), headers=headers)
                response = connection.getresponse()
                response.read()
                status = str(response.status)
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine.append(time.perf_counter() - started)
            seen[status] += 1
        connection.close()
        with lock:
            latencies.extend(mine)
            statuses.update(seen)

    threads = [threading.Thread(target=client, name=f"client-{i}") for i in range(CONCURRENCY)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return Load(len(latencies), wall, latencies, statuses, cut_short=len(latencies) < len(bodies))


def redis_broker() -> str | None:
    """The Redis broker URL when Redis answers on loopback, else None."""
    try:
        import redis

        redis.Redis.from_url(BROKER_REDIS, socket_timeout=1).ping()
    except Exception:
        return None
    return BROKER_REDIS


def drop_bench_queue(broker: str | None) -> None:
    """Delete the benchmark's queue and kombu's bindings of it from Redis: only these keys."""
    if broker is None:
        return
    import redis

    from bench import settings_bench

    queue_name = settings_bench.CELERY_TASK_DEFAULT_QUEUE
    redis.Redis.from_url(broker, socket_timeout=2).delete(
        queue_name, f"_kombu.binding.{queue_name}", f"_kombu.binding_permanent.{queue_name}"
    )


def create_baseline_table() -> None:
    from django.db import connection

    from bench.baseline_urls import BASELINE_TABLE

    key = "INTEGER PRIMARY KEY AUTOINCREMENT" if connection.vendor == "sqlite" else "BIGSERIAL PRIMARY KEY"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {BASELINE_TABLE} (id {key}, received_at DOUBLE PRECISION NOT NULL, body TEXT NOT NULL)"
        )


def event_statuses(prefix: str) -> Counter[str]:
    from apps.billing.models import StripeEvent

    return Counter(StripeEvent.objects.filter(stripe_id__startswith=prefix).values_list("status", flat=True))


def measure_server(
    name: str,
    env: dict[str, str],
    db: BenchDatabase,
    fake: FakeStripe,
    *,
    baseline: list[str],
    warm: list[str],
    events: list[str],
) -> tuple[Load, Load, int]:
    """Warm the server up on both endpoints, then the baseline's load, then the webhook's; returns both loads
    and how many subscriptions the fake Stripe served during the webhook's."""
    from django.db import connections

    connections.close_all()
    with daphne(env, db.tmpdir / f"daphne-{name}.log") as port:
        post_all(port, BASELINE_PATH, warm, sign=False)
        post_all(port, WEBHOOK_PATH, warm, sign=True)
        base = post_all(port, BASELINE_PATH, baseline, sign=False)
        reads = fake.reads
        hooks = post_all(port, WEBHOOK_PATH, events, sign=True)
    return base, hooks, fake.reads - reads


def report(base: Load, hooks: Load, webhook_label: str) -> None:
    table(
        ["endpoint", "requests", "req/s", "p50", "p99", "non-200"],
        [["baseline: bare view, one INSERT", *base.cells()], [webhook_label, *hooks.cells()]],
    )
    line(
        "ratio webhook / baseline: throughput",
        times(hooks.rate / base.rate),
        f"latency p50 {times(percentile(hooks.latencies, 50) / percentile(base.latencies, 50))}, "
        f"p99 {times(percentile(hooks.latencies, 99) / percentile(base.latencies, 99))}",
    )


def main() -> None:
    args = parse_args("Stripe webhooks through daphne, against a bare one-INSERT view on the same server.")
    sizes = QUICK if args.quick else FULL
    with bench_database("webhooks", keep=args.keep) as db, FakeStripe() as fake:
        stripe_env = {
            "STRIPE_SECRET_KEY": "sk_test_coinlink_bench",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": fake.url,
        }
        os.environ.update(stripe_env)
        migrate_seconds = setup_django(db)
        print_header("Webhooks: Stripe events through daphne vs a bare one-INSERT view", db, quick=args.quick)

        started = time.perf_counter()
        create_baseline_table()
        members = seed(sizes["members"], fake)
        n, w = sizes["events"], sizes["warmup"]
        events = {
            run: build_events(members, count, run=run, seed=i)
            for i, (run, count) in enumerate((("warm-a", w), ("a", n), ("warm-b", w), ("b", n)))
        }
        baseline_bodies = [body for _, body in build_events(members, n, run="baseline", seed=9)]
        print(
            f"\nworld: {len(members)} members with subscriptions synced, {human(time.perf_counter() - started)} "
            f"({human(migrate_seconds)} to migrate); events: "
            + ", ".join(f"{kind} {count}" for kind, count in Counter(k for k, _ in events["a"]).most_common())
            + f"; {sum(len(b) for _, b in events['a']) / n / 1024:.1f} KiB a body on average"
        )
        env = {**os.environ, **app_environment(db), **stripe_env}
        env["DJANGO_SETTINGS_MODULE"] = "bench.settings_bench"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))

        def bodies(run: str) -> list[str]:
            return [body for _, body in events[run]]

        print(
            f"\nA. daphne on the embedded default (Celery eager): the webhook is stored, answered and processed "
            f"(Stripe read-back, subscription, entitlements) inside the request; {CONCURRENCY} connections"
        )
        base_a, hooks_a, reads = measure_server(
            "a", env, db, fake, baseline=baseline_bodies, warm=bodies("warm-a"), events=bodies("a")
        )
        report(base_a, hooks_a, "Stripe webhook, ingest + processing")
        statuses = event_statuses("evt_bench_a_")
        line(
            "events after the run",
            f"{sum(statuses.values()):,}",
            ", ".join(f"{n} {s}" for s, n in statuses.most_common())
            + f"; fake Stripe served {reads:,} subscriptions",
        )

        broker = redis_broker()
        broker_env = {
            **env,
            "CELERY_BROKER_URL": broker or "memory://",
            "CELERY_TASK_ALWAYS_EAGER": "false",
        }
        print(
            f"\nB. daphne with a broker ({'Redis' if broker else 'the in-memory transport: Redis did not answer'}) "
            f"and no worker: the webhook is stored, queued and answered (ingest only); {CONCURRENCY} connections"
        )
        drop_bench_queue(broker)
        try:
            base_b, hooks_b, _ = measure_server(
                "b", broker_env, db, fake, baseline=baseline_bodies, warm=bodies("warm-b"), events=bodies("b")
            )
        finally:
            drop_bench_queue(broker)
        report(base_b, hooks_b, "Stripe webhook, ingest only")
        statuses = event_statuses("evt_bench_b_")
        line(
            "events after the run",
            f"{sum(statuses.values()):,}",
            ", ".join(f"{n} {s}" for s, n in statuses.items()),
        )

        # Processing alone: the events B stored, one after the other in this process, as one worker would.
        from unittest import mock

        from django.db import connection

        from apps.billing import stripe_client
        from apps.billing.models import StripeEvent, StripeEventStatus
        from apps.billing.services.webhooks import stripe_event_process

        read_back = [0, 0.0]
        retrieve = stripe_client.subscription_retrieve

        def timed_retrieve(subscription_id: str) -> dict[str, Any]:
            began = time.perf_counter()
            try:
                return retrieve(subscription_id)
            finally:
                read_back[0] += 1
                read_back[1] += time.perf_counter() - began

        def process(prefix: str) -> list[float]:
            ids = StripeEvent.objects.filter(
                stripe_id__startswith=prefix, status=StripeEventStatus.RECEIVED
            ).values_list("pk", flat=True)
            took = []
            for pk in list(ids):
                began = time.perf_counter()
                stripe_event_process(event_id=pk)
                took.append(time.perf_counter() - began)
            return took

        process("evt_bench_warm-b_")
        counter = QueryCounter()
        began = time.perf_counter()
        with (
            connection.execute_wrapper(counter),
            mock.patch.object(stripe_client, "subscription_retrieve", timed_retrieve),
        ):
            took = process("evt_bench_b_")
        wall = time.perf_counter() - began
        statuses = event_statuses("evt_bench_b_")
        print(
            "\nprocessing alone: B's stored events through stripe_event_process, one after the other in this process"
        )
        if not took:
            print("  nothing to process")
            return
        count = len(took)
        line(
            "events processed",
            f"{count / wall:,.1f}/s",
            f"{count:,} events; p50 {human(percentile(took, 50))}, p99 {human(percentile(took, 99))}; "
            + ", ".join(f"{n} {s}" for s, n in statuses.most_common()),
        )
        line(
            "  Stripe read-back (HTTP to the fake + SDK)",
            human(read_back[1] / count),
            f"a event on average; {read_back[0]:,} reads",
        )
        line(
            "  database statements",
            human(counter.seconds["-"] / count),
            f"a event on average (time in execute); {counter.counts['-'] / count:.1f} statements an event",
        )
        line(
            "  the rest (Python: handlers, ORM, entitlements)",
            human(wall / count - (read_back[1] + counter.seconds["-"]) / count),
        )
        print("  slowest statements:")
        for _, n, seconds, sql in counter.slowest(4):
            print(f"    {n:>6,} x {seconds / n * 1000:6.2f} ms  {sql[:120]}")
        line(
            "webhook throughput, ingest only (B) / with processing (A)",
            times(hooks_b.rate / hooks_a.rate),
        )


if __name__ == "__main__":
    main()
