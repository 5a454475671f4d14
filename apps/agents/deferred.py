"""Deferred task calls: the embedded default's durable stand-in for a broker's delayed messages.

With a broker, a task that must try again later raises ``task.retry(countdown=...)`` and the broker keeps the
message until then. Run eagerly (the embedded default) there is nobody to keep it: Celery would retry at once,
so seven retries of a Stripe read-back took two seconds. Here the call is written to ``deferred_tasks`` instead
(task name, arguments, Celery's retry count, when it is due) and the embedded runtime's poller
(``apps.agents.scheduler``) runs it through the task's own ``apply`` once it is due, with the right
``retries``, so the task's retry policy and its "give up, mark the row failed" code decide as they do under
Celery. Rows live in the database, so a restart loses nothing: a row claimed by a process that died is taken
again once its lease has expired.

Only a process whose embedded runtime runs (the server on the embedded default) writes rows; anywhere else
(a broker, tests, one-off commands) the tasks behave as they always did.

- ``DeferrableTask``: a Celery task base whose ``delay``/``apply_async`` is kept as a deferred call, so the
  work leaves the caller (a Stripe webhook is answered once stored, and processed by the poller).
- ``task_retry_deferred``: a task's next attempt, after its backoff.
- ``task_give_up_deferred``: the task gave up; the row says so too.
- ``deferred_tasks_run_due``: what the poller does each time it wakes (and, hourly, ``deferred_tasks_prune``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from celery import Task
from celery.result import AsyncResult
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.agents import scheduler
from apps.agents.models import DeferredTask, DeferredTaskStatus
from apps.core.resilience import RateLimited, RetryPolicy, TransientError

logger = logging.getLogger(__name__)

# Longer than any deferred call runs (a Stripe event, a platform sync, an agent's attempt): a row still
# ``running`` past it was left by a process that died, and another takes it.
LEASE = dt.timedelta(minutes=10)
# Succeeded calls are kept this long for the admin, then pruned by the poller.
KEEP_SUCCEEDED = dt.timedelta(days=7)
# Eager task ids of deferred calls name their row and attempt: "deferred-<row>-<retries>". A run taken again
# after a restart carries the same id, which is how an agent run left ``running`` knows it is its own.
_TASK_ID_PREFIX = "deferred-"


def _task_id(row_id: int, retries: int) -> str:
    return f"{_TASK_ID_PREFIX}{row_id}-{retries}"


def _row_id(task: Task) -> int | None:
    """The deferred row whose call this task is running, if it is one."""
    task_id = task.request.id or ""
    if not task_id.startswith(_TASK_ID_PREFIX):
        return None
    row, _, _ = task_id.removeprefix(_TASK_ID_PREFIX).partition("-")
    return int(row) if row.isdigit() else None


def _deferring(task: Task) -> bool:
    return bool(task.app.conf.task_always_eager) and scheduler.runs_deferred_calls()


def deferred_task_schedule(
    *,
    task_name: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    retries: int = 0,
    countdown: float = 0.0,
    error: str = "",
) -> DeferredTask:
    """Keep a call of ``task_name`` for the poller, due in ``countdown`` seconds. Arguments must be JSON."""
    row = DeferredTask.objects.create(
        task_name=task_name,
        args=list(args),
        kwargs=dict(kwargs or {}),
        retries=retries,
        eta=timezone.now() + dt.timedelta(seconds=max(0.0, countdown)),
        last_error=error[:5000],
    )
    # Wake the poller once the row can be seen, so work due now does not wait for the next poll.
    transaction.on_commit(scheduler.wake)
    return row


def task_retry_deferred(task: Task, *, countdown: float, error: str) -> bool:
    """Keep the running task's next attempt (Celery's ``retries`` + 1) for ``countdown`` seconds from now.
    False, and nothing written, where no embedded runtime will come back for it: the caller retries its own
    way (``task.retry`` with a broker)."""
    if not (task.request.is_eager and _deferring(task)):
        return False
    retries = task.request.retries + 1
    eta = timezone.now() + dt.timedelta(seconds=max(0.0, countdown))
    row_id = _row_id(task)
    # The attempt that failed ran from a row: the same row waits for the next one, so the admin shows one
    # call with its attempts and last error rather than one row per attempt.
    if row_id is not None and DeferredTask.objects.filter(
        pk=row_id, status=DeferredTaskStatus.RUNNING
    ).update(
        status=DeferredTaskStatus.PENDING,
        retries=retries,
        eta=eta,
        locked_until=None,
        last_error=error[:5000],
        updated_at=timezone.now(),
    ):
        transaction.on_commit(scheduler.wake)
    else:
        deferred_task_schedule(
            task_name=task.name,
            args=list(task.request.args or ()),
            kwargs=dict(task.request.kwargs or {}),
            retries=retries,
            countdown=countdown,
            error=error,
        )
    logger.info("%s: attempt %d deferred until %s: %s", task.name, retries + 1, eta.isoformat(), error)
    return True


def task_retry_with_backoff(task: Task, policy: RetryPolicy, exc: TransientError, *args: Any) -> Any:
    """Try the running task again later, with the policy's jittered exponential backoff and no sooner than a
    platform asked us to wait (``RateLimited``).

    With a broker, Celery's countdown retry (raises ``Retry``). Run eagerly by the embedded runtime (no broker
    to keep the message), the next attempt is kept in ``deferred_tasks`` for the same wait and this attempt
    ends here (None). Run eagerly anywhere else (a one-off command, the tests: nothing would come back for a
    deferred call), the next attempt runs at once and its result is returned."""
    wait = policy.delay(task.request.retries + 1)
    if isinstance(exc, RateLimited):
        wait = max(wait, exc.retry_after)
    if task.request.is_eager:
        if task_retry_deferred(task, countdown=wait, error=str(exc)):
            return None
        return task.apply(args=args, retries=task.request.retries + 1).result
    raise task.retry(exc=exc, countdown=wait) from exc


def task_give_up_deferred(task: Task, *, error: str) -> bool:
    """The running task gave up (its retries ran out, or the other side refused for good): when it runs from
    a deferred row, that row is failed with ``error``."""
    row_id = _row_id(task)
    if row_id is None:
        return False
    return _settle(row_id, task.request.retries, DeferredTaskStatus.FAILED, error=error)


class DeferrableTask(Task):  # type: ignore[misc]
    """A task whose calls the embedded runtime keeps in ``deferred_tasks`` instead of running them eagerly in
    the caller (a web request, say); anywhere else, Celery's own ``apply_async``."""

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        task_id: str | None = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: str | None = None,
        **options: Any,
    ) -> AsyncResult:
        # Callbacks would need a canvas the poller does not keep; such calls keep Celery's behaviour.
        if _deferring(self) and link is None and link_error is None:
            countdown = float(options.get("countdown") or 0)
            if (eta := options.get("eta")) is not None:
                countdown = (eta - timezone.now()).total_seconds()
            row = deferred_task_schedule(
                task_name=self.name, args=list(args or ()), kwargs=dict(kwargs or {}), countdown=countdown
            )
            return self.AsyncResult(_task_id(row.pk, 0))
        return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow, **options)


# --- the poller's side --------------------------------------------------------------------------------------


def _settle(row_id: int, retries: int, status: str, *, error: str | None = None) -> bool:
    """Close a running row, unless the call moved it already (deferred its next attempt, or gave up)."""
    changes: dict[str, Any] = {"status": status, "locked_until": None, "updated_at": timezone.now()}
    if error is not None:
        changes["last_error"] = error[:5000]
    return bool(
        DeferredTask.objects.filter(pk=row_id, status=DeferredTaskStatus.RUNNING, retries=retries).update(
            **changes
        )
    )


def deferred_tasks_claim_due(*, now: dt.datetime, limit: int = 20) -> list[DeferredTask]:
    """Take the rows due at ``now``: pending ones whose time has come and running ones whose runner's lease
    ran out. Each is moved by a conditional UPDATE from the state it was read in, so of two pollers one
    takes it."""
    due = DeferredTask.objects.filter(
        Q(status=DeferredTaskStatus.PENDING, eta__lte=now)
        | Q(status=DeferredTaskStatus.RUNNING, locked_until__lt=now)
    ).order_by("eta", "id")[:limit]
    claimed = []
    for row in due:
        if DeferredTask.objects.filter(pk=row.pk, status=row.status, locked_until=row.locked_until).update(
            status=DeferredTaskStatus.RUNNING, locked_until=now + LEASE, updated_at=now
        ):
            if row.status == DeferredTaskStatus.RUNNING:
                logger.warning(
                    "deferred %s #%s: its runner was lost; running it again", row.task_name, row.pk
                )
            row.status, row.locked_until = DeferredTaskStatus.RUNNING, now + LEASE
            claimed.append(row)
    return claimed


def deferred_task_run(*, row: DeferredTask) -> str:
    """Run one claimed call through its task's ``apply`` with the row's ``retries``; returns the row's
    status after it."""
    from coinlink.celery import app as celery_app

    task = celery_app.tasks.get(row.task_name)
    if task is None:
        # Task modules are imported where they are first used: a server that has just started has not
        # imported the one that wrote the row (before the restart), so import them all and look again.
        celery_app.loader.import_default_modules()
        task = celery_app.tasks.get(row.task_name)
    if task is None:
        _settle(row.pk, row.retries, DeferredTaskStatus.FAILED, error=f"no task named {row.task_name!r}")
        return DeferredTaskStatus.FAILED
    try:
        task.apply(
            args=row.args,
            kwargs=row.kwargs,
            retries=row.retries,
            task_id=_task_id(row.pk, row.retries),
            throw=True,
        )
    except Exception as exc:
        # A bug, not an outside service (the tasks retry those themselves): keep it for an operator.
        logger.exception("deferred %s #%s failed", row.task_name, row.pk)
        _settle(row.pk, row.retries, DeferredTaskStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
    else:
        _settle(row.pk, row.retries, DeferredTaskStatus.SUCCEEDED)
    return DeferredTask.objects.get(pk=row.pk).status


def deferred_tasks_run_due(*, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Run the calls due now (at most ``limit``), one after the other; returns how many ran. Each is claimed
    just before it runs, so its lease counts from its own start."""
    ran = 0
    while ran < limit:
        claimed = deferred_tasks_claim_due(now=now or timezone.now(), limit=1)
        if not claimed:
            break
        deferred_task_run(row=claimed[0])
        ran += 1
    return ran


def deferred_tasks_prune(*, finished_before: dt.datetime) -> int:
    """Delete the calls that succeeded before ``finished_before``; failed ones stay for an operator."""
    deleted, _ = DeferredTask.objects.filter(
        status=DeferredTaskStatus.SUCCEEDED, updated_at__lt=finished_before
    ).delete()
    return deleted


def deferred_tasks_run_now(*, row_ids: Iterable[int]) -> int:
    """An operator's "run now": pending and failed rows become due at once (failed ones keep their retry
    count, so a task that gave up gives up again after one more failure). Returns how many moved."""
    changed = DeferredTask.objects.filter(
        pk__in=list(row_ids), status__in=[DeferredTaskStatus.PENDING, DeferredTaskStatus.FAILED]
    ).update(
        status=DeferredTaskStatus.PENDING, eta=timezone.now(), locked_until=None, updated_at=timezone.now()
    )
    if changed:
        transaction.on_commit(scheduler.wake)
    return changed
