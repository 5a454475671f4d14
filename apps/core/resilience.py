"""Resilience for every call to the outside world: error kinds, a retry policy with exponential backoff and
jitter, a circuit breaker per service whose state lives in the database (shared by every process), and a
rate limiter that keeps to a platform's quota and to the waits the platform itself asks for.

Integrations translate their library's errors into ``TransientError`` (worth retrying: timeouts, 5xx,
connection failures), ``RateLimited`` (the platform said wait) or ``PermanentError`` (a 4xx that will not
change on retry). The agent framework retries only transient errors.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Q
from django.utils import timezone

from apps.core import metrics
from apps.core.models import CircuitBreakerState

logger = logging.getLogger(__name__)
T = TypeVar("T")


class IntegrationError(Exception):
    """A call to an outside service failed."""

    def __init__(self, message: str, *, service: str = "") -> None:
        super().__init__(message)
        self.service = service


class TransientError(IntegrationError):
    """Worth retrying: a timeout, a connection failure, a 5xx."""


class RateLimited(TransientError):
    """The platform asked us to wait ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float, service: str = "", bucket: str = "") -> None:
        super().__init__(message, service=service)
        self.retry_after = max(0.0, retry_after)
        self.bucket = bucket


class CircuitOpenError(TransientError):
    """The service's breaker is open: the call was not made."""


class PermanentError(IntegrationError):
    """Will fail the same way again (bad request, forbidden, not found): do not retry."""


# --- retry --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0
    # The longest platform-requested wait we sit out in-process; longer ones go back to the caller (a task
    # then reschedules itself instead of holding a worker).
    max_rate_limit_wait: float = 60.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Backoff before retry number ``attempt`` (1-based): exponential, capped, with full jitter."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return (rng or random).uniform(ceiling / 2, ceiling)

    def call(
        self,
        fn: Callable[[], T],
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> T:
        attempt = 1
        while True:
            try:
                return fn()
            except RateLimited as exc:
                if attempt >= self.max_attempts or exc.retry_after > self.max_rate_limit_wait:
                    raise
                wait = exc.retry_after
            except CircuitOpenError:
                raise
            except TransientError:
                if attempt >= self.max_attempts:
                    raise
                wait = self.delay(attempt, rng)
            logger.info("retrying after %.2fs (attempt %d of %d)", wait, attempt + 1, self.max_attempts)
            sleep(wait)
            attempt += 1


# --- circuit breaker ----------------------------------------------------------------------------------------


class CircuitBreaker:
    """Closed → open after ``failure_threshold`` consecutive transient failures; after ``reset_timeout``
    seconds one caller wins the half-open trial (a conditional UPDATE), and its outcome closes or reopens it.
    Rate limiting is not an outage and does not count."""

    def __init__(
        self, service: str, *, failure_threshold: int | None = None, reset_timeout: float | None = None
    ):
        self.service = service
        self.failure_threshold = failure_threshold or settings.CIRCUIT_BREAKER_FAILURES
        self.reset_timeout = (
            reset_timeout if reset_timeout is not None else settings.CIRCUIT_BREAKER_RESET_SECONDS
        )

    def _row(self) -> CircuitBreakerState:
        row, _ = CircuitBreakerState.objects.get_or_create(service=self.service)
        return row

    @property
    def state(self) -> str:
        return self._row().state

    def allow(self) -> bool:
        row = self._row()
        if row.state == CircuitBreakerState.State.CLOSED:
            return True
        now = timezone.now()
        due = row.opened_at is not None and now - row.opened_at >= timedelta(seconds=self.reset_timeout)
        if row.state == CircuitBreakerState.State.OPEN and due:
            # Only one caller wins the half-open trial.
            won = CircuitBreakerState.objects.filter(
                pk=row.pk, state=CircuitBreakerState.State.OPEN, opened_at=row.opened_at
            ).update(state=CircuitBreakerState.State.HALF_OPEN, updated_at=now)
            return bool(won)
        return False

    def is_open(self) -> bool:
        """True while calls would be refused (open and not yet due for a trial)."""
        row = self._row()
        if row.state != CircuitBreakerState.State.OPEN or row.opened_at is None:
            return False
        return timezone.now() - row.opened_at < timedelta(seconds=self.reset_timeout)

    def record_success(self) -> None:
        CircuitBreakerState.objects.filter(
            Q(service=self.service)
            & (~Q(state=CircuitBreakerState.State.CLOSED) | Q(consecutive_failures__gt=0))
        ).update(
            state=CircuitBreakerState.State.CLOSED,
            consecutive_failures=0,
            opened_at=None,
            last_success_at=timezone.now(),
            updated_at=timezone.now(),
        )

    def record_failure(self, error: BaseException) -> None:
        now = timezone.now()
        self._row()
        CircuitBreakerState.objects.filter(service=self.service).update(
            consecutive_failures=F("consecutive_failures") + 1,
            last_failure_at=now,
            last_error=f"{type(error).__name__}: {error}"[:2000],
            updated_at=now,
        )
        row = self._row()
        if row.state == CircuitBreakerState.State.HALF_OPEN or (
            row.state == CircuitBreakerState.State.CLOSED
            and row.consecutive_failures >= self.failure_threshold
        ):
            if CircuitBreakerState.objects.filter(pk=row.pk, state=row.state).update(
                state=CircuitBreakerState.State.OPEN, opened_at=now, updated_at=now
            ):
                metrics.circuit_breaker_opened(service=self.service)
            logger.warning(
                "circuit breaker for %s opened after %d failures", self.service, row.consecutive_failures
            )

    @contextmanager
    def guard(self) -> Iterator[None]:
        if not self.allow():
            raise CircuitOpenError(f"{self.service} is unavailable (circuit open)", service=self.service)
        try:
            yield
        except RateLimited:
            raise
        except TransientError as exc:
            self.record_failure(exc)
            raise
        else:
            self.record_success()

    def call(self, fn: Callable[[], T]) -> T:
        with self.guard():
            return fn()


def breaker(service: str) -> CircuitBreaker:
    return CircuitBreaker(service)


def guarded_call(service: str, fn: Callable[[], T], *, policy: RetryPolicy | None = None) -> T:
    """The one way integrations call out: retries (transient errors, platform waits) inside the breaker."""
    circuit = CircuitBreaker(service)
    return (policy or RetryPolicy()).call(lambda: circuit.call(fn))


# --- rate limits --------------------------------------------------------------------------------------------


def retry_after_from_headers(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait according to a platform's headers: ``Retry-After`` (seconds or an HTTP date),
    Discord's ``X-RateLimit-Reset-After``, or X's ``x-rate-limit-reset`` (epoch seconds)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    now = time.time() if now is None else now
    if value := lowered.get("retry-after"):
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return max(0.0, parsed.timestamp() - now)
    if value := lowered.get("x-ratelimit-reset-after"):
        return max(0.0, float(value))
    if value := lowered.get("x-rate-limit-reset"):
        return max(0.0, float(value) - now)
    return None


class RateLimiter:
    """Fixed-window quotas and platform-imposed waits, kept in the shared cache so that every worker keeps to
    the same budget. ``acquire`` never sleeps: it answers how long the caller must wait (0 when it may go)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def _key(self, *parts: object) -> str:
        return ":".join(["ratelimit", self.namespace, *map(str, parts)])

    def blocked_for(self, bucket: str, *, now: float | None = None) -> float:
        until = cache.get(self._key("block", bucket))
        now = time.time() if now is None else now
        return max(0.0, float(until) - now) if until else 0.0

    def block(self, bucket: str, seconds: float, *, now: float | None = None) -> None:
        """Remember that the platform asked us to wait (a 429, or a Discord bucket with nothing remaining)."""
        now = time.time() if now is None else now
        until = now + max(0.0, seconds)
        current = cache.get(self._key("block", bucket))
        if not current or float(current) < until:
            cache.set(self._key("block", bucket), until, timeout=int(seconds) + 5)

    def acquire(self, bucket: str, *, limit: int, per: float, now: float | None = None) -> float:
        now = time.time() if now is None else now
        if wait := self.blocked_for(bucket, now=now):
            return wait
        window = int(now // per)
        key = self._key("window", bucket, window)
        cache.add(key, 0, timeout=int(per) + 5)
        try:
            used = cache.incr(key)
        except ValueError:  # the key expired between add and incr
            cache.set(key, 1, timeout=int(per) + 5)
            used = 1
        if used <= limit:
            return 0.0
        return (window + 1) * per - now

    def wait(
        self,
        bucket: str,
        *,
        limit: int,
        per: float,
        max_wait: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Sleep until the quota allows a call, or raise ``RateLimited`` when that would take too long."""
        while (delay := self.acquire(bucket, limit=limit, per=per)) > 0:
            if delay > max_wait:
                raise RateLimited(
                    f"{self.namespace} quota for {bucket} exhausted", retry_after=delay, bucket=bucket
                )
            sleep(delay)
