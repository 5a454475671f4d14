"""Shared primitives for every domain app: a timestamped base model and the platform choices."""

from __future__ import annotations

from django.db import models


class Platform(models.TextChoices):
    X = "x", "X"
    TELEGRAM = "telegram", "Telegram"
    DISCORD = "discord", "Discord"


class Currency(models.TextChoices):
    USD = "usd", "USD"
    EUR = "eur", "EUR"
    GBP = "gbp", "GBP"


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


def format_money(amount_minor: int, currency: str) -> str:
    """Money is stored as integer minor units; this renders it for people (2-decimal currencies only)."""
    symbol = {"usd": "$", "eur": "€", "gbp": "£"}.get(currency.lower(), currency.upper() + " ")
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 100)
    return f"{sign}{symbol}{units:,}.{cents:02d}"


class CircuitBreakerState(models.Model):
    """The shared state of one outside service's circuit breaker, so every process sees the same state."""

    class State(models.TextChoices):
        CLOSED = "closed", "Closed (calls flow)"
        OPEN = "open", "Open (calls refused)"
        HALF_OPEN = "half_open", "Half-open (one trial call)"

    service = models.CharField(max_length=40, unique=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.CLOSED)
    consecutive_failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "circuit_breakers"
        ordering = ["service"]

    def __str__(self) -> str:
        return f"{self.service}: {self.get_state_display()}"


class Heartbeat(models.Model):
    """The last sign of life of one long-running process (a Celery worker, beat, a bot), so ``/health/``, the
    admin and ``/metrics`` can tell a stopped process from a quiet one wherever it runs."""

    class Kind(models.TextChoices):
        WORKER = "worker", "Celery worker"
        BEAT = "beat", "Celery beat"
        WEB = "web", "Web process"
        BOT = "bot", "Bot"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    # Unique per process: the Celery node name (worker@host), "beat@host", "discord@host:pid", ...
    name = models.CharField(max_length=200, unique=True)
    hostname = models.CharField(max_length=200, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Set on a clean shutdown")
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "heartbeats"
        ordering = ["kind", "name"]
        indexes = [models.Index(fields=["kind", "-last_seen"], name="heartbeats_recent")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name}"
