"""What the real publishers share: retries inside the platform's circuit breaker with an injectable sleep,
running an async client from sync code, splitting text to a platform's limit, and remembering which parts
of a multi-part post already went out so a retry does not post them twice."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from django.core.cache import cache

from apps.core.resilience import CircuitBreaker, RetryPolicy

T = TypeVar("T")
Sleep = Callable[[float], None]

# A direct message goes to ``channel="dm:<the platform's user id>"``.
DM_PREFIX = "dm:"


def guarded(service: str, fn: Callable[[], T], *, policy: RetryPolicy, sleep: Sleep = time.sleep) -> T:
    """``apps.core.resilience.guarded_call`` with the sleep passed through, so a platform's requested wait
    can be observed (and skipped) in tests."""
    circuit = CircuitBreaker(service)
    return policy.call(lambda: circuit.call(fn), sleep=sleep)


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run an async client call to completion from sync code, in a fresh event loop that closes with it.
    Publishers touch the database (circuit breakers), so async callers reach them through ``sync_to_async``,
    whose worker thread has no loop of its own."""

    async def main() -> T:
        return await factory()

    return asyncio.run(main())


def chunks(text: str, limit: int) -> list[str]:
    """Split text into pieces of at most ``limit`` characters, at a paragraph, line or word break when one
    is near enough."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < limit // 2:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def stable_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


class PublishProgress:
    """The ids of the parts of one post already published, in the shared cache for a day: X and Telegram
    have no idempotency key, so a retried thread resumes after its last posted part instead of starting over.
    """

    def __init__(self, platform: str, idempotency_key: str) -> None:
        self.key = f"publish-progress:{platform}:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"

    def sent(self) -> list[str]:
        return list(cache.get(self.key) or [])

    def record(self, ids: list[str]) -> None:
        cache.set(self.key, ids, timeout=24 * 3600)
