"""Failed attempts (passwords, API credentials) counted in the shared cache, and the lockouts they lead to.

Counting lives in the cache every web process shares, so a guesser spreading requests over processes or machines
meets one budget. A budget is ``limit`` failures within ``period`` seconds of the first; reaching it locks the
key for ``period`` seconds. Counters are atomic (``add`` then ``incr``), so parallel guesses are all counted.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass

from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from rest_framework.throttling import BaseThrottle

_RATE = re.compile(r"([1-9]\d*)/(\d*)(s|sec|second|m|min|minute|h|hour|d|day)s?")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class FailureBudget:
    limit: int
    period: int

    @classmethod
    def parse(cls, rate: str, *, setting: str) -> FailureBudget:
        """``"5/15m"``: five failures in fifteen minutes (``"20/h"``, ``"10/min"`` as DRF writes rates)."""
        match = _RATE.fullmatch(rate)
        if not match:
            raise ImproperlyConfigured(f"{setting} must look like 5/15m or 20/h, not {rate!r}")
        return cls(limit=int(match[1]), period=max(1, int(match[2] or 1)) * _UNIT_SECONDS[match[3][0]])


def client_address(request: HttpRequest) -> str:
    """The caller's address as DRF's throttles see it: ``REMOTE_ADDR``, or the ``X-Forwarded-For`` entry the
    ``NUM_PROXIES`` trusted proxies in front of us added."""
    return BaseThrottle().get_ident(request) or "unknown"  # type: ignore[arg-type]


class FailureCounter:
    def __init__(self, scope: str) -> None:
        self.scope = scope

    def _key(self, kind: str, ident: str) -> str:
        # Hashed: an identity is whatever a caller typed, and cache keys must stay short and plain.
        digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return f"failures:{self.scope}:{kind}:{digest}"

    def blocked_for(self, ident: str, *, now: float | None = None) -> float:
        """Seconds left of the lockout of ``ident``; 0 when it may try."""
        until = cache.get(self._key("lock", ident))
        now = time.time() if now is None else now
        return max(0.0, float(until) - now) if until else 0.0

    def record(self, ident: str, budget: FailureBudget, *, now: float | None = None) -> float:
        """Count one failure; the lockout it starts (seconds), or 0 while the budget lasts."""
        now = time.time() if now is None else now
        key = self._key("count", ident)
        cache.add(key, 0, timeout=budget.period)
        try:
            failures = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=budget.period)
            failures = 1
        if failures < budget.limit:
            return 0.0
        cache.set(self._key("lock", ident), now + budget.period, timeout=budget.period + 1)
        cache.delete(key)
        return float(budget.period)

    def clear(self, ident: str) -> None:
        cache.delete_many([self._key("count", ident), self._key("lock", ident)])
