"""Billing's tasks: the platform sync retries until the platform agrees and parks the row when it never does;
retries wait as long as a platform asked; the expiry runs on a schedule."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import Retry
from django.conf import settings

from apps.agents.deferred import task_retry_with_backoff
from apps.billing.factories import EntitlementFactory
from apps.billing.models import Entitlement, SyncStatus
from apps.billing.tasks import PLATFORM_SYNC_BACKOFF, expire_entitlements, sync_entitlement
from apps.core.resilience import PermanentError, RateLimited, TransientError
from coinlink.celery import app

pytestmark = pytest.mark.django_db


@dataclass
class StandInAccessSync:
    """Where the access-sync service would be: records calls and fails as told."""

    calls: list[int] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    def entitlement_sync_to_platform(self, *, entitlement_id: int) -> None:
        self.calls.append(entitlement_id)
        if self.failures:
            raise self.failures.pop(0)


@pytest.fixture
def access_sync(monkeypatch: pytest.MonkeyPatch) -> StandInAccessSync:
    stand_in = StandInAccessSync()
    module = types.ModuleType("apps.billing.services.access_sync")
    module.entitlement_sync_to_platform = stand_in.entitlement_sync_to_platform  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "apps.billing.services.access_sync", module)
    return stand_in


def test_a_platform_sync_is_retried_until_the_platform_agrees(access_sync: StandInAccessSync) -> None:
    row = EntitlementFactory.create(key="discord.role:111", sync_status=SyncStatus.PENDING)
    access_sync.failures = [TransientError("discord 502"), TransientError("discord 502")]

    sync_entitlement.delay(row.pk)

    assert access_sync.calls == [row.pk] * 3
    assert Entitlement.objects.get(pk=row.pk).sync_status == SyncStatus.PENDING


def test_a_platform_sync_that_never_succeeds_parks_the_row_as_failed(access_sync: StandInAccessSync) -> None:
    row = EntitlementFactory.create(key="telegram.channel:-100", sync_status=SyncStatus.PENDING)
    access_sync.failures = [TransientError("telegram timeout")] * 20

    sync_entitlement.delay(row.pk)

    attempts = PLATFORM_SYNC_BACKOFF.max_attempts
    assert len(access_sync.calls) == attempts
    row.refresh_from_db()
    assert row.sync_status == SyncStatus.FAILED
    assert row.sync_error == f"gave up after {attempts} attempts: telegram timeout"


def test_a_platform_refusal_is_not_retried(access_sync: StandInAccessSync) -> None:
    row = EntitlementFactory.create(key="discord.role:111", sync_status=SyncStatus.PENDING)
    access_sync.failures = [PermanentError("Missing Permissions")]

    sync_entitlement.delay(row.pk)

    assert access_sync.calls == [row.pk]
    row.refresh_from_db()
    assert (row.sync_status, row.sync_error) == (SyncStatus.FAILED, "Missing Permissions")


def test_a_retry_waits_at_least_as_long_as_the_platform_asked() -> None:
    scheduled: dict[str, Any] = {}

    def retry(*, exc: Exception, countdown: float) -> Retry:
        scheduled["countdown"] = countdown
        return Retry(exc=exc, when=countdown)

    worker_task = SimpleNamespace(request=SimpleNamespace(is_eager=False, retries=0), retry=retry)

    with pytest.raises(Retry):
        task_retry_with_backoff(
            worker_task, PLATFORM_SYNC_BACKOFF, RateLimited("slow down", retry_after=600), 1
        )  # type: ignore[arg-type]
    assert scheduled["countdown"] == 600

    with pytest.raises(Retry):
        task_retry_with_backoff(worker_task, PLATFORM_SYNC_BACKOFF, TransientError("502"), 1)  # type: ignore[arg-type]
    assert PLATFORM_SYNC_BACKOFF.base_delay / 2 <= scheduled["countdown"] <= PLATFORM_SYNC_BACKOFF.base_delay


def test_the_expiry_runs_on_the_beat_schedule() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["billing.expire_entitlements"]

    assert entry["task"] == expire_entitlements.name == "billing.expire_entitlements"
    assert entry["task"] in app.tasks
    assert entry["schedule"] <= 600
