from __future__ import annotations

import datetime as dt
import random

import pytest
import time_machine
from django.utils import timezone

from apps.core.models import CircuitBreakerState
from apps.core.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    PermanentError,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    TransientError,
    guarded_call,
    retry_after_from_headers,
)


class Flaky:
    def __init__(self, *outcomes: BaseException | str) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def test_retry_backs_off_exponentially_with_jitter() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=6.0)
    rng = random.Random(1)
    delays = [policy.delay(n, rng) for n in (1, 2, 3, 4, 5)]
    for delay, ceiling in zip(delays, (1, 2, 4, 6, 6), strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == 5  # jittered, not a fixed ladder


def test_retry_retries_transient_errors_only() -> None:
    slept: list[float] = []
    fn = Flaky(TransientError("503"), TransientError("timeout"), "ok")
    assert RetryPolicy(max_attempts=3).call(fn, sleep=slept.append) == "ok"
    assert fn.calls == 3
    assert len(slept) == 2

    permanent = Flaky(PermanentError("400 bad request"), "never")
    with pytest.raises(PermanentError):
        RetryPolicy(max_attempts=3).call(permanent, sleep=slept.append)
    assert permanent.calls == 1

    exhausted = Flaky(TransientError("a"), TransientError("b"), "late")
    with pytest.raises(TransientError, match="b"):
        RetryPolicy(max_attempts=2).call(exhausted, sleep=lambda s: None)


def test_retry_waits_out_the_platforms_own_delay() -> None:
    slept: list[float] = []
    fn = Flaky(RateLimited("429", retry_after=7.5), "ok")
    assert RetryPolicy(max_attempts=3).call(fn, sleep=slept.append) == "ok"
    assert slept == [7.5]
    too_long = Flaky(RateLimited("429", retry_after=900), "never")
    with pytest.raises(RateLimited):
        RetryPolicy(max_attempts=3, max_rate_limit_wait=60).call(too_long, sleep=slept.append)
    assert too_long.calls == 1


@pytest.mark.django_db
def test_breaker_opens_after_consecutive_failures_and_refuses_calls() -> None:
    circuit = CircuitBreaker("exchange", failure_threshold=3, reset_timeout=30)
    for _ in range(3):
        with pytest.raises(TransientError):
            circuit.call(Flaky(TransientError("502")))
    row = CircuitBreakerState.objects.get(service="exchange")
    assert (row.state, row.consecutive_failures) == ("open", 3)
    assert "502" in row.last_error
    untouched = Flaky("ok")
    with pytest.raises(CircuitOpenError):
        circuit.call(untouched)
    assert untouched.calls == 0
    assert circuit.is_open()


@pytest.mark.django_db
def test_breaker_half_open_trial_closes_or_reopens() -> None:
    circuit = CircuitBreaker("x", failure_threshold=1, reset_timeout=30)
    with pytest.raises(TransientError):
        circuit.call(Flaky(TransientError("down")))
    later = timezone.now() + dt.timedelta(seconds=31)
    with time_machine.travel(later, tick=False):
        assert not circuit.is_open()
        assert circuit.allow()  # this caller wins the trial ...
        assert not circuit.allow()  # ... and nobody else gets through meanwhile
        circuit.record_failure(TransientError("still down"))
        assert CircuitBreakerState.objects.get(service="x").state == "open"
    with time_machine.travel(later + dt.timedelta(seconds=31), tick=False):
        assert circuit.call(Flaky("ok")) == "ok"
    row = CircuitBreakerState.objects.get(service="x")
    assert (row.state, row.consecutive_failures) == ("closed", 0)


@pytest.mark.django_db
def test_rate_limits_and_client_errors_do_not_trip_the_breaker() -> None:
    circuit = CircuitBreaker("telegram", failure_threshold=1)
    with pytest.raises(RateLimited):
        circuit.call(Flaky(RateLimited("429", retry_after=1)))
    with pytest.raises(PermanentError):
        circuit.call(Flaky(PermanentError("403")))
    assert CircuitBreakerState.objects.get(service="telegram").state == "closed"


@pytest.mark.django_db
def test_guarded_call_retries_inside_the_breaker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda s: None)
    fn = Flaky(TransientError("blip"), "ok")
    assert guarded_call("news", fn) == "ok"
    assert CircuitBreakerState.objects.get(service="news").consecutive_failures == 0


def test_retry_after_headers() -> None:
    now = 1_800_000_000.0
    assert retry_after_from_headers({"Retry-After": "12"}, now=now) == 12.0
    assert retry_after_from_headers(
        {"retry-after": "Fri, 15 Jan 2027 08:00:30 GMT"}, now=now
    ) == pytest.approx(dt.datetime(2027, 1, 15, 8, 0, 30, tzinfo=dt.UTC).timestamp() - now)
    assert retry_after_from_headers({"X-RateLimit-Reset-After": "0.75"}, now=now) == 0.75
    assert retry_after_from_headers({"x-rate-limit-reset": str(int(now) + 90)}, now=now) == 90.0
    assert retry_after_from_headers({"content-type": "application/json"}, now=now) is None


def test_rate_limiter_keeps_to_the_quota_and_to_platform_blocks() -> None:
    limiter = RateLimiter("test-platform")
    now = 1_000_040.0  # 20 s into a 60 s window (windows start at multiples of 60)
    assert [limiter.acquire("chat:1", limit=2, per=60, now=now) for _ in range(2)] == [0.0, 0.0]
    assert limiter.acquire("chat:1", limit=2, per=60, now=now) == pytest.approx(40.0)
    assert limiter.acquire("chat:2", limit=2, per=60, now=now) == 0.0  # buckets are independent
    assert limiter.acquire("chat:1", limit=2, per=60, now=now + 40) == 0.0  # next window

    limiter.block("route:/channels/1/messages", 5.0, now=now)
    assert limiter.acquire("route:/channels/1/messages", limit=100, per=1, now=now + 1) == pytest.approx(4.0)
    assert limiter.acquire("route:/channels/1/messages", limit=100, per=1, now=now + 6) == 0.0


def test_rate_limiter_wait_sleeps_or_hands_back() -> None:
    limiter = RateLimiter("wait-test")
    slept: list[float] = []
    with time_machine.travel(dt.datetime(2026, 11, 1, tzinfo=dt.UTC), tick=False) as clock:

        def sleep(seconds: float) -> None:
            slept.append(seconds)
            clock.shift(seconds)

        limiter.block("b", 2.0)
        limiter.wait("b", limit=10, per=1, max_wait=5, sleep=sleep)
    assert slept == [2.0]
    limiter.block("c", 120.0)
    with pytest.raises(RateLimited) as info:
        limiter.wait("c", limit=10, per=1, max_wait=5)
    assert info.value.retry_after > 100
