"""Writes on the shared primitives: an operator closing a circuit breaker by hand."""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from apps.core.models import CircuitBreakerState, Heartbeat

CLOSED = CircuitBreakerState.State.CLOSED


def circuit_breaker_reset(*, service: str) -> bool:
    """Close the service's breaker and forget its failure streak (an operator knows the service is back).
    Returns False when it was closed with no failures counted already."""
    breaker = CircuitBreakerState.objects.filter(service=service)
    return bool(
        breaker.filter(~Q(state=CLOSED) | Q(consecutive_failures__gt=0)).update(
            state=CLOSED, consecutive_failures=0, opened_at=None, updated_at=timezone.now()
        )
    )


def heartbeat_beat(
    *,
    kind: str,
    name: str,
    hostname: str = "",
    pid: int | None = None,
    details: dict[str, object] | None = None,
    starting: bool = False,
) -> None:
    """Record that a process is alive now (one row per process name; a restart under the same name reuses it,
    and says so with ``starting``)."""
    now = timezone.now()
    updated = Heartbeat.objects.filter(name=name).update(
        **({"started_at": now} if starting else {}),
        kind=kind,
        hostname=hostname,
        pid=pid,
        last_seen=now,
        stopped_at=None,
        **({"details": details} if details is not None else {}),
    )
    if not updated:
        Heartbeat.objects.update_or_create(
            name=name,
            defaults={
                "kind": kind,
                "hostname": hostname,
                "pid": pid,
                "started_at": now,
                "last_seen": now,
                "stopped_at": None,
                "details": details or {},
            },
        )


def heartbeat_stop(*, name: str) -> None:
    """A clean shutdown: the process is gone on purpose, not lost."""
    Heartbeat.objects.filter(name=name).update(stopped_at=timezone.now())
