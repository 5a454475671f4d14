"""Writes on the shared primitives: an operator closing a circuit breaker by hand."""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from apps.core.models import CircuitBreakerState

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
