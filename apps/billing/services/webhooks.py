"""Stripe's webhooks: verify, store, acknowledge; then process once, after commit, in a task.

Ingest (``stripe_event_ingest``) checks the signature before anything is written, stores the event under
Stripe's unique event id (a redelivery finds the row and changes nothing) and enqueues its processing once the
row is committed. Processing (``stripe_event_process``) moves the row ``received → processing`` with a
conditional UPDATE, so of two workers handed the same event one does the work and the other stops; then
``processed``, ``ignored`` (no handler, or nothing of ours) or ``failed``. A transient failure puts the row
back to ``received`` for the task's next retry. A worker lost mid-processing leaves the row ``processing``:
the redelivery of its task (late acknowledgement) takes it over, and a periodic sweep queues again a row left
there past any task's time limit (``stripe_events_recover_abandoned``).

Handlers never trust the order or the payload of events: each reads the subscription's current state back from
Stripe and applies it (see ``subscriptions``), so duplicates and any order lead to the same result.

Refunds: a refund is money, not access. A full refund of a customer whose subscription Stripe reports canceled
revokes what that subscription still grants (a canceled subscription set to run to its period end would
otherwise keep it); a partial refund, or one on a live subscription, changes no access and is only logged,
with the event kept in ``stripe_events``.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.accounts.models import User
from apps.billing import stripe_client
from apps.billing.models import StripeEvent, StripeEventStatus, Subscription, SubscriptionStatus
from apps.billing.services.conversion import (
    conversion_attempt_record_checkout,
    conversion_attempt_record_payment,
)
from apps.billing.services.entitlements import entitlements_revoke_for_subscription
from apps.billing.services.subscriptions import (
    TERMINAL,
    StripeObjectUnmapped,
    billing_customer_link,
    billing_customer_mark_deleted,
    conversion_attempt_mark_converted,
    stripe_id,
    stripe_time,
    subscription_end_with_customer,
    subscription_record_payment_failure,
    subscription_sync_from_stripe,
)
from apps.core import metrics
from apps.core.resilience import PermanentError, TransientError

logger = logging.getLogger(__name__)


class StripeWebhookRejected(Exception):
    """The request is not a genuine, well-formed Stripe event: answer 400 and keep nothing."""


class EventNotOurs(Exception):
    """The event is genuine but concerns nothing we track (a one-off payment, say)."""


# --- ingest -------------------------------------------------------------------------------------------------


def stripe_event_ingest(*, payload: bytes, signature_header: str | None) -> StripeEvent:
    """Verify and store a webhook; its processing is enqueued once the row is committed. A redelivered event
    returns the stored row and is not processed again."""
    try:
        data = stripe_client.webhook_event_verify(payload=payload, signature_header=signature_header)
    except stripe_client.WebhookSignatureInvalid as exc:
        raise StripeWebhookRejected(f"signature: {exc}") from exc
    except ValueError as exc:
        raise StripeWebhookRejected("the signed body is not a JSON object") from exc
    event_id, event_type, created = data.get("id"), data.get("type"), stripe_time(data.get("created"))
    obj = (data.get("data") or {}).get("object") if isinstance(data.get("data"), Mapping) else None
    if not (isinstance(event_id, str) and event_id and isinstance(event_type, str) and created):
        raise StripeWebhookRejected("an event needs an id, a type and a creation time")
    if not isinstance(obj, Mapping):
        raise StripeWebhookRejected("an event needs data.object")
    with transaction.atomic():
        event, created_now = StripeEvent.objects.get_or_create(
            stripe_id=event_id,
            defaults={
                "type": event_type[:80],
                "api_version": str(data.get("api_version") or "")[:40],
                "livemode": bool(data.get("livemode")),
                "stripe_created": created,
                "payload": data,
            },
        )
        # A redelivery of an event still waiting (its first enqueue was lost, say) nudges it along; the
        # conditional claim keeps that from ever processing it twice.
        if created_now or event.status == StripeEventStatus.RECEIVED:
            _enqueue_processing(event.pk)
    if created_now:
        logger.info("stripe event %s (%s) stored", event.stripe_id, event.type)
        metrics.stripe_webhook_received(outcome="accepted", event_created=event.stripe_created)
    else:
        metrics.stripe_webhook_received(outcome="duplicate")
        logger.info("stripe event %s redelivered (%s); not stored again", event.stripe_id, event.status)
    return event


def _enqueue_processing(event_pk: int) -> None:
    # The tasks module imports these services; importing it at load time would be circular.
    from apps.billing.tasks import process_stripe_event

    transaction.on_commit(lambda: process_stripe_event.delay(event_pk))


def stripe_events_requeue(*, event_ids: Iterable[int]) -> int:
    """Process events again (an operator's decision, once the cause of a failure is fixed); returns how many
    were queued. Handlers re-read Stripe, so running one again is safe."""
    with transaction.atomic():
        ids = list(
            StripeEvent.objects.select_for_update()
            .filter(pk__in=list(event_ids))
            .exclude(status=StripeEventStatus.PROCESSED)
            .values_list("pk", flat=True)
        )
        StripeEvent.objects.filter(pk__in=ids).update(status=StripeEventStatus.RECEIVED, error="")
        for pk in ids:
            _enqueue_processing(pk)
    return len(ids)


# --- process ------------------------------------------------------------------------------------------------


def stripe_event_process(*, event_id: int, task_id: str = "") -> str | None:
    """Process a stored event, once. Returns the status it ended in, or None when another worker has it (or
    it is done). Raises ``TransientError`` (the row back at ``received``) when a retry may succeed.

    ``task_id`` is the delivering Celery task's id. With late acknowledgement a message whose worker died
    mid-processing is delivered again under the same id: finding the row still ``processing`` under its own
    claim, that delivery takes it over (the handlers re-read Stripe, so running one again is safe). A
    delivery of any other task finds the row claimed and stops."""
    claim = {"status": StripeEventStatus.PROCESSING, "attempts": F("attempts") + 1, "claimed_by": task_id}
    claimed = StripeEvent.objects.filter(pk=event_id, status=StripeEventStatus.RECEIVED).update(
        **claim, claimed_at=timezone.now()
    )
    if not claimed and task_id:
        claimed = StripeEvent.objects.filter(
            pk=event_id, status=StripeEventStatus.PROCESSING, claimed_by=task_id
        ).update(**claim, claimed_at=timezone.now())
        if claimed:
            logger.warning("stripe event #%s: its worker was lost mid-processing; processing again", event_id)
    if not claimed:
        return None
    event = StripeEvent.objects.get(pk=event_id)
    handler = HANDLERS.get(event.type)
    if handler is None:
        return _finish(event, StripeEventStatus.IGNORED, f"no handler for {event.type}")
    try:
        handler(event)
    except TransientError as exc:
        StripeEvent.objects.filter(pk=event.pk, status=StripeEventStatus.PROCESSING).update(
            status=StripeEventStatus.RECEIVED, error=f"attempt {event.attempts}: {exc}"[:5000]
        )
        logger.warning("stripe event %s: transient failure, will retry: %s", event.stripe_id, exc)
        raise
    except (StripeObjectUnmapped, EventNotOurs) as exc:
        logger.info("stripe event %s ignored: %s", event.stripe_id, exc)
        return _finish(event, StripeEventStatus.IGNORED, str(exc))
    except PermanentError as exc:
        logger.error("stripe event %s failed: %s", event.stripe_id, exc)
        return _finish(event, StripeEventStatus.FAILED, str(exc))
    except Exception:
        logger.exception("stripe event %s failed", event.stripe_id)
        return _finish(event, StripeEventStatus.FAILED, traceback.format_exc())
    return _finish(event, StripeEventStatus.PROCESSED, "")


def _finish(event: StripeEvent, status: str, error: str) -> str:
    if StripeEvent.objects.filter(pk=event.pk, status=StripeEventStatus.PROCESSING).update(
        status=status, processed_at=timezone.now(), error=error[:5000]
    ):
        metrics.stripe_event_processed(status=status)
    return status


def stripe_events_recover_abandoned(*, now: dt.datetime | None = None) -> int:
    """The periodic sweep (beat, ``billing.recover_stripe_events``): events left ``processing`` for longer
    than any task may run (``CELERY_TASK_TIME_LIMIT``, and a minute) lost their worker and their message;
    each goes back to ``received`` and is queued again. Returns how many.

    Exactly once all the same: whichever delivery claims the row first processes it (the conditional claim),
    and a late redelivery of the lost message finds it claimed by another task or done."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    with transaction.atomic():
        ids = list(
            StripeEvent.objects.select_for_update(skip_locked=True)
            .filter(status=StripeEventStatus.PROCESSING)
            .filter(Q(claimed_at__lt=cutoff) | Q(claimed_at__isnull=True, received_at__lt=cutoff))
            .values_list("pk", flat=True)
        )
        StripeEvent.objects.filter(pk__in=ids, status=StripeEventStatus.PROCESSING).update(
            status=StripeEventStatus.RECEIVED,
            claimed_by="",
            error="recovered: left processing by a lost worker",
        )
        for pk in ids:
            _enqueue_processing(pk)
    if ids:
        logger.warning("recovered %d stripe events left processing by a lost worker", len(ids))
    return len(ids)


def stripe_event_mark_failed(*, event_id: int, error: str) -> bool:
    """The task's retries ran out: park the event as failed for an operator."""
    return (
        StripeEvent.objects.filter(pk=event_id, status=StripeEventStatus.RECEIVED).update(
            status=StripeEventStatus.FAILED, processed_at=timezone.now(), error=error[:5000]
        )
        > 0
    )


# --- handlers -----------------------------------------------------------------------------------------------


def _object(event: StripeEvent) -> Mapping[str, Any]:
    return event.payload["data"]["object"]


def _sync_from_stripe(subscription_id: str) -> Subscription:
    snapshot = stripe_client.subscription_retrieve(subscription_id)
    read_at = timezone.now()
    return subscription_sync_from_stripe(stripe_subscription=snapshot, event_created=read_at)


def _checkout_session_completed(event: StripeEvent) -> None:
    session = _object(event)
    subscription_id = stripe_id(session.get("subscription"))
    if session.get("mode") != "subscription" or not subscription_id:
        raise EventNotOurs(f"checkout session {session.get('id')} is not a subscription checkout")
    metadata = session.get("metadata") or {}
    customer_id = stripe_id(session.get("customer"))
    user = _checkout_user(session.get("client_reference_id"), metadata.get("user_id"))
    if user is not None and customer_id:
        billing_customer_link(user=user, stripe_customer_id=customer_id)
    subscription = _sync_from_stripe(subscription_id)
    token = metadata.get("conversion_token")
    if token and conversion_attempt_mark_converted(token=token, subscription=subscription):
        logger.info("conversion %s converted into subscription %s", token, subscription_id)
        conversion_attempt_record_checkout(token=token, subscription=subscription, at=event.stripe_created)


def _checkout_user(*candidates: Any) -> User | None:
    for candidate in candidates:
        try:
            pk = int(candidate)
        except (TypeError, ValueError):
            continue
        if user := User.objects.filter(pk=pk).first():
            return user
    return None


def _subscription_changed(event: StripeEvent) -> None:
    data = _object(event)
    try:
        _sync_from_stripe(stripe_id(data))
    except PermanentError:
        if event.type != "customer.subscription.deleted":
            raise
        # A deleted subscription may be gone from the API; its deletion event is its final state.
        subscription_sync_from_stripe(stripe_subscription=data, event_created=event.stripe_created)


def _invoice_subscription_id(invoice: Mapping[str, Any]) -> str:
    # API versions from 2025 on name the subscription under parent.subscription_details; older ones at the top.
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {} if isinstance(parent, Mapping) else {}
    return stripe_id(invoice.get("subscription")) or stripe_id(details.get("subscription"))


def _invoice_paid(event: StripeEvent) -> None:
    invoice = _object(event)
    subscription_id = _invoice_subscription_id(invoice)
    if not subscription_id:
        raise EventNotOurs(f"invoice {invoice.get('id')} belongs to no subscription")
    subscription = _sync_from_stripe(subscription_id)
    # What an offer brought in: its A/B test's paid conversion and revenue (a trial's $0 invoice is neither).
    conversion_attempt_record_payment(
        subscription=subscription, amount_minor=int(invoice.get("amount_paid") or 0), at=event.stripe_created
    )


def _invoice_payment_failed(event: StripeEvent) -> None:
    invoice = _object(event)
    subscription_id = _invoice_subscription_id(invoice)
    if not subscription_id:
        raise EventNotOurs(f"invoice {invoice.get('id')} belongs to no subscription")
    subscription = _sync_from_stripe(subscription_id)
    if subscription.status == SubscriptionStatus.PAST_DUE:
        subscription_record_payment_failure(subscription=subscription, failed_at=event.stripe_created)


def _charge_refunded(event: StripeEvent) -> None:
    charge = _object(event)
    customer_id = stripe_id(charge.get("customer"))
    if not customer_id:
        raise EventNotOurs(f"charge {charge.get('id')} has no customer")
    amount, refunded = int(charge.get("amount") or 0), int(charge.get("amount_refunded") or 0)
    full = bool(charge.get("refunded")) or (amount > 0 and refunded >= amount)
    now = timezone.now()
    # The customer's subscriptions that may still grant something: re-read them before judging.
    candidates = (
        Subscription.objects.filter(stripe_customer_id=customer_id)
        .filter(
            ~Q(status__in=TERMINAL) | Q(entitlements__revoked_at__isnull=True, entitlements__ends_at__gt=now)
        )
        .distinct()
    )
    subscriptions = [
        _sync_from_stripe(str(s.stripe_subscription_id)) for s in candidates if s.stripe_subscription_id
    ]
    logger.info(
        "charge %s of customer %s refunded %s of %s %s (%s)",
        charge.get("id"),
        customer_id,
        refunded,
        amount,
        charge.get("currency", ""),
        "full" if full else "partial",
    )
    if not full:
        return
    for subscription in subscriptions:
        if subscription.status == SubscriptionStatus.CANCELED:
            entitlements_revoke_for_subscription(
                subscription=subscription, reason=f"full refund of {charge.get('id')}"
            )


def _customer_deleted(event: StripeEvent) -> None:
    customer_id = stripe_id(_object(event))
    deleted_at: dt.datetime = event.stripe_created
    billing_customer_mark_deleted(stripe_customer_id=customer_id, deleted_at=deleted_at)
    for subscription in Subscription.objects.filter(stripe_customer_id=customer_id):
        subscription_end_with_customer(subscription=subscription, deleted_at=deleted_at)


HANDLERS: dict[str, Callable[[StripeEvent], None]] = {
    "checkout.session.completed": _checkout_session_completed,
    "customer.subscription.created": _subscription_changed,
    "customer.subscription.updated": _subscription_changed,
    "customer.subscription.deleted": _subscription_changed,
    "customer.subscription.paused": _subscription_changed,
    "customer.subscription.resumed": _subscription_changed,
    "invoice.paid": _invoice_paid,
    "invoice.payment_failed": _invoice_payment_failed,
    "charge.refunded": _charge_refunded,
    "customer.deleted": _customer_deleted,
}
