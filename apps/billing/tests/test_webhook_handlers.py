"""What each Stripe event does. Every handler reads the subscription back from (fake) Stripe and applies that
state, whatever the event's own payload says."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from pytest_httpserver import HTTPServer

from apps.billing.factories import ConversionAttemptFactory
from apps.billing.models import (
    BillingCustomer,
    ConversionStatus,
    Entitlement,
    EntitlementSource,
    StripeEvent,
    StripeEventStatus,
    Subscription,
    SubscriptionStatus,
    SyncStatus,
)
from apps.billing.selectors import user_entitlement_keys
from apps.billing.services.entitlements import RENEWAL_LEEWAY
from apps.billing.tasks import sync_entitlement
from apps.billing.tests.stripe_fakes import (
    FakeStripe,
    Member,
    at_second,
    charge_object,
    checkout_session_object,
    customer_object,
    deliver,
    event,
    invoice_object,
    member,
    subscription_object,
    unique,
)

pytestmark = pytest.mark.django_db

PREMIUM, ROLE = "portal.premium", "discord.role:111"


@pytest.fixture
def fake_stripe(httpserver: HTTPServer, settings: Any) -> FakeStripe:
    return FakeStripe.install(httpserver, settings)


@pytest.fixture(autouse=True)
def platform_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(sync_entitlement, "delay", calls.append)
    return calls


@pytest.fixture
def now() -> dt.datetime:
    return at_second(timezone.now())


@pytest.fixture
def process(client: Client, django_capture_on_commit_callbacks: Any) -> Any:
    """Deliver an event and run what the delivery enqueued, as a worker would after the commit."""

    def run(data: dict[str, Any]) -> StripeEvent:
        with django_capture_on_commit_callbacks(execute=True):
            assert deliver(client, data).status_code == 200
        return StripeEvent.objects.get(stripe_id=data["id"])

    return run


def _active(m: Member, now: dt.datetime, **changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "subscription_id": unique("sub"),
        "customer": m.customer_id,
        "price_id": str(m.price.stripe_price_id),
        "period_start": now - dt.timedelta(days=1),
        "period_end": now + dt.timedelta(days=29),
    }
    return subscription_object(**(fields | changes))


def _live(user: Any) -> list[tuple[str, str, dt.datetime | None]]:
    rows = Entitlement.objects.filter(user=user, revoked_at__isnull=True, ends_at__gt=timezone.now())
    return sorted(rows.values_list("key", "source", "ends_at"))


# --- checkout.session.completed -----------------------------------------------------------------------------


def test_checkout_links_the_customer_syncs_the_subscription_and_credits_the_offer(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime, platform_syncs: list[int]
) -> None:
    m = member(linked=False)
    offer = ConversionAttemptFactory.create(plan=m.plan)
    sub = fake_stripe.put(_active(m, now))
    session = checkout_session_object(
        session_id=unique("cs"),
        customer=m.customer_id,
        subscription=sub["id"],
        user_id=m.user.pk,
        conversion_token=str(offer.token),
    )

    stored = process(event("checkout.session.completed", session, created=now))

    assert stored.status == StripeEventStatus.PROCESSED
    assert BillingCustomer.objects.get(user=m.user).stripe_customer_id == m.customer_id
    subscription = Subscription.objects.get()
    assert (subscription.user, subscription.plan, subscription.price, subscription.status) == (
        m.user,
        m.plan,
        m.price,
        SubscriptionStatus.ACTIVE,
    )
    # The billing period comes from the subscription's item, as Stripe keeps it.
    assert (subscription.current_period_start, subscription.current_period_end) == (
        now - dt.timedelta(days=1),
        now + dt.timedelta(days=29),
    )
    assert _live(m.user) == [
        (ROLE, EntitlementSource.SUBSCRIPTION, now + dt.timedelta(days=29) + RENEWAL_LEEWAY),
        (PREMIUM, EntitlementSource.SUBSCRIPTION, now + dt.timedelta(days=29) + RENEWAL_LEEWAY),
    ]
    offer.refresh_from_db()
    assert (offer.status, offer.subscription) == (ConversionStatus.CONVERTED, subscription)
    assert platform_syncs == [Entitlement.objects.get(key=ROLE).pk]


def test_a_second_checkout_event_for_the_same_offer_leaves_the_first_conversion(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime
) -> None:
    m = member(linked=False)
    offer = ConversionAttemptFactory.create()
    sub = fake_stripe.put(_active(m, now))
    session = checkout_session_object(
        session_id=unique("cs"),
        customer=m.customer_id,
        subscription=sub["id"],
        user_id=m.user.pk,
        conversion_token=str(offer.token),
    )
    process(event("checkout.session.completed", session, created=now))
    converted_at = type(offer).objects.get(pk=offer.pk).converted_at

    process(event("checkout.session.completed", session, created=now))

    offer.refresh_from_db()
    assert offer.converted_at == converted_at
    assert Subscription.objects.count() == 1


def test_a_subscription_event_before_the_checkout_is_ignored_then_the_checkout_places_it(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime
) -> None:
    m = member(linked=False)
    sub = fake_stripe.put(_active(m, now))

    early = process(event("customer.subscription.created", sub, created=now))

    assert early.status == StripeEventStatus.IGNORED
    assert "is linked to no user" in early.error
    assert Subscription.objects.count() == 0

    session = checkout_session_object(
        session_id=unique("cs"), customer=m.customer_id, subscription=sub["id"], user_id=m.user.pk
    )
    process(event("checkout.session.completed", session, created=now))

    assert Subscription.objects.get().user == m.user
    assert user_entitlement_keys(user=m.user) == {PREMIUM, ROLE}


def test_a_subscription_carrying_its_member_in_metadata_is_placed_without_a_checkout(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime
) -> None:
    m = member(linked=False)
    sub = fake_stripe.put(_active(m, now, metadata={"user_id": str(m.user.pk)}))

    process(event("customer.subscription.created", sub, created=now))

    assert Subscription.objects.get().user == m.user


def test_a_payment_checkout_is_not_ours(fake_stripe: FakeStripe, process: Any, now: dt.datetime) -> None:
    session = checkout_session_object(
        session_id=unique("cs"), customer="cus_x", subscription="", user_id=None
    )
    session["mode"] = "payment"

    stored = process(event("checkout.session.completed", session, created=now))

    assert stored.status == StripeEventStatus.IGNORED
    assert fake_stripe.calls == []


# --- customer.subscription.* --------------------------------------------------------------------------------


def test_the_state_read_back_from_stripe_wins_over_the_events_payload(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime
) -> None:
    m = member()
    stale_payload = _active(m, now)
    fake_stripe.put(
        stale_payload
        | {
            "status": "canceled",
            "canceled_at": int(now.timestamp()) - 60,
            "ended_at": int(now.timestamp()) - 60,
        }
    )

    process(event("customer.subscription.updated", stale_payload, created=now))

    assert Subscription.objects.get().status == SubscriptionStatus.CANCELED
    assert _live(m.user) == []


def test_a_trial_converting_to_active_swaps_the_trial_rows_for_paid_ones(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime, platform_syncs: list[int]
) -> None:
    m = member()
    trial_end = now + dt.timedelta(days=5)
    trialing = fake_stripe.put(_active(m, now, status="trialing", period_end=trial_end, trial_end=trial_end))
    process(event("customer.subscription.created", trialing, created=now))
    assert _live(m.user) == [
        (ROLE, EntitlementSource.TRIAL, trial_end + RENEWAL_LEEWAY),
        (PREMIUM, EntitlementSource.TRIAL, trial_end + RENEWAL_LEEWAY),
    ]

    active = fake_stripe.put(trialing | _active(m, now, subscription_id=trialing["id"]))
    process(event("customer.subscription.updated", active, created=now))

    period_end = now + dt.timedelta(days=29)
    assert _live(m.user) == [
        (ROLE, EntitlementSource.SUBSCRIPTION, period_end + RENEWAL_LEEWAY),
        (PREMIUM, EntitlementSource.SUBSCRIPTION, period_end + RENEWAL_LEEWAY),
    ]
    ended_trials = Entitlement.objects.filter(source=EntitlementSource.TRIAL)
    assert all(row.ends_at is not None and row.ends_at <= timezone.now() for row in ended_trials)
    # The role's trial row granted, then ended; its paid row granted: each goes to the platform sync.
    assert len(platform_syncs) == 3


def test_a_deleted_subscription_gone_from_the_api_takes_its_final_state_from_the_event(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime
) -> None:
    m = member()
    sub = fake_stripe.put(_active(m, now))
    process(event("customer.subscription.created", sub, created=now))
    fake_stripe.subscriptions.clear()
    final = sub | {
        "status": "canceled",
        "ended_at": int(now.timestamp()),
        "canceled_at": int(now.timestamp()),
    }

    stored = process(event("customer.subscription.deleted", final, created=now))

    assert stored.status == StripeEventStatus.PROCESSED
    assert Subscription.objects.get().status == SubscriptionStatus.CANCELED
    assert _live(m.user) == []


def test_an_update_for_a_subscription_stripe_does_not_know_fails(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime
) -> None:
    m = member()

    stored = process(event("customer.subscription.updated", _active(m, now), created=now))

    assert stored.status == StripeEventStatus.FAILED
    assert "No such subscription" in stored.error


# --- invoices -----------------------------------------------------------------------------------------------


def test_a_paid_renewal_extends_the_same_rows(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime
) -> None:
    m = member()
    sub = fake_stripe.put(_active(m, now))
    process(event("customer.subscription.created", sub, created=now))
    before = dict(Entitlement.objects.values_list("key", "pk"))

    renewed_end = now + dt.timedelta(days=59)
    fake_stripe.put(_active(m, now, subscription_id=sub["id"], period_start=now, period_end=renewed_end))
    invoice = invoice_object(invoice_id=unique("in"), customer=m.customer_id, subscription=sub["id"])
    process(event("invoice.paid", invoice, created=now))

    assert dict(Entitlement.objects.values_list("key", "pk")) == before
    assert _live(m.user) == [
        (ROLE, EntitlementSource.SUBSCRIPTION, renewed_end + RENEWAL_LEEWAY),
        (PREMIUM, EntitlementSource.SUBSCRIPTION, renewed_end + RENEWAL_LEEWAY),
    ]


def test_an_invoice_of_an_older_api_version_names_its_subscription_at_the_top(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime
) -> None:
    m = member()
    sub = fake_stripe.put(_active(m, now))
    invoice = invoice_object(invoice_id=unique("in"), customer=m.customer_id, subscription=None)
    invoice["subscription"] = sub["id"]

    process(event("invoice.paid", invoice, created=now))

    assert Subscription.objects.get().stripe_subscription_id == sub["id"]


def test_an_invoice_without_a_subscription_is_not_ours(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime
) -> None:
    invoice = invoice_object(invoice_id=unique("in"), customer="cus_x", subscription=None)

    stored = process(event("invoice.paid", invoice, created=now))

    assert stored.status == StripeEventStatus.IGNORED
    assert fake_stripe.calls == []


def test_a_failed_payment_starts_the_grace_period_from_the_failure(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime
) -> None:
    m = member(grace_days=3)
    sub = fake_stripe.put(_active(m, now))
    process(event("customer.subscription.created", sub, created=now))
    failed_at = now - dt.timedelta(hours=2)
    fake_stripe.put(sub | {"status": "past_due"})
    invoice = invoice_object(
        invoice_id=unique("in"), customer=m.customer_id, subscription=sub["id"], status="open"
    )

    process(event("invoice.payment_failed", invoice, created=failed_at))

    subscription = Subscription.objects.get()
    assert (subscription.status, subscription.past_due_since) == (SubscriptionStatus.PAST_DUE, failed_at)
    grace_end = failed_at + dt.timedelta(days=3)
    assert _live(m.user) == [
        (ROLE, EntitlementSource.GRACE, grace_end),
        (PREMIUM, EntitlementSource.GRACE, grace_end),
    ]


def test_a_failed_payment_already_recovered_changes_nothing(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime
) -> None:
    m = member()
    sub = fake_stripe.put(_active(m, now))
    process(event("customer.subscription.created", sub, created=now))
    rows = list(Entitlement.objects.values())
    invoice = invoice_object(
        invoice_id=unique("in"), customer=m.customer_id, subscription=sub["id"], status="paid"
    )

    process(event("invoice.payment_failed", invoice, created=now - dt.timedelta(hours=1)))

    subscription = Subscription.objects.get()
    assert (subscription.status, subscription.past_due_since) == (SubscriptionStatus.ACTIVE, None)
    assert list(Entitlement.objects.values()) == rows


# --- refunds ------------------------------------------------------------------------------------------------


def _canceled_to_period_end(m: Member, now: dt.datetime, subscription_id: str) -> dict[str, Any]:
    """Canceled, but set to run to the end of a period that is not over: it still grants."""
    return _active(
        m,
        now,
        subscription_id=subscription_id,
        status="canceled",
        cancel_at_period_end=True,
        canceled_at=now - dt.timedelta(hours=1),
    )


def test_a_full_refund_of_a_canceled_subscription_revokes_what_it_still_grants(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime, platform_syncs: list[int]
) -> None:
    m = member()
    sub = fake_stripe.put(_canceled_to_period_end(m, now, unique("sub")))
    process(event("customer.subscription.updated", sub, created=now))
    assert _live(m.user) == [
        (ROLE, EntitlementSource.SUBSCRIPTION, now + dt.timedelta(days=29)),
        (PREMIUM, EntitlementSource.SUBSCRIPTION, now + dt.timedelta(days=29)),
    ]
    platform_syncs.clear()
    charge = charge_object(charge_id=unique("ch"), customer=m.customer_id, amount=2900, amount_refunded=2900)

    process(event("charge.refunded", charge, created=now))

    assert user_entitlement_keys(user=m.user) == set()
    revoked = Entitlement.objects.get(key=ROLE)
    assert revoked.revoked_at is not None
    assert f"full refund of {charge['id']}" in revoked.reason
    assert (revoked.sync_status, platform_syncs) == (SyncStatus.PENDING, [revoked.pk])
    # The revocation holds for this period: a later event for the subscription does not grant again.
    process(event("customer.subscription.updated", sub, created=now))
    assert user_entitlement_keys(user=m.user) == set()


@pytest.mark.parametrize(
    ("amount_refunded", "status"),
    [(1000, "canceled"), (2900, "active")],
    ids=["partial", "live subscription"],
)
def test_other_refunds_change_no_access(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime, amount_refunded: int, status: str
) -> None:
    m = member()
    sub_id = unique("sub")
    sub = fake_stripe.put(
        _canceled_to_period_end(m, now, sub_id)
        if status == "canceled"
        else _active(m, now, subscription_id=sub_id)
    )
    process(event("customer.subscription.updated", sub, created=now))
    rows = list(Entitlement.objects.values())
    charge = charge_object(
        charge_id=unique("ch"), customer=m.customer_id, amount=2900, amount_refunded=amount_refunded
    )

    stored = process(event("charge.refunded", charge, created=now))

    assert stored.status == StripeEventStatus.PROCESSED
    assert list(Entitlement.objects.values()) == rows


# --- customer.deleted ---------------------------------------------------------------------------------------


def test_a_deleted_customer_ends_its_subscriptions_and_their_entitlements(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime, platform_syncs: list[int]
) -> None:
    m = member()
    sub = fake_stripe.put(_active(m, now))
    process(event("customer.subscription.created", sub, created=now))
    platform_syncs.clear()
    deleted_at = now

    stored = process(
        event("customer.deleted", customer_object(customer_id=m.customer_id), created=deleted_at)
    )

    assert stored.status == StripeEventStatus.PROCESSED
    assert BillingCustomer.objects.get(user=m.user).deleted_at == deleted_at
    subscription = Subscription.objects.get()
    assert (subscription.status, subscription.ended_at) == (SubscriptionStatus.CANCELED, deleted_at)
    assert user_entitlement_keys(user=m.user) == set()
    assert platform_syncs == [Entitlement.objects.get(key=ROLE).pk]
    # An older event read back later (Stripe has canceled it too) cannot revive it.
    fake_stripe.put(sub | {"status": "canceled", "ended_at": int(deleted_at.timestamp())})
    process(event("customer.subscription.updated", sub, created=now))
    assert user_entitlement_keys(user=m.user) == set()


# --- failures -----------------------------------------------------------------------------------------------


def test_stripe_down_retries_and_then_parks_the_event_as_failed(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime, settings: Any
) -> None:
    # One failure opens the breaker, so the eager retries fail fast instead of calling a dead Stripe again.
    settings.CIRCUIT_BREAKER_FAILURES = 1
    m = member()
    sub = _active(m, now)
    fake_stripe.fail_with(500, {"type": "api_error", "message": "Stripe is having a bad day"})

    stored = process(event("customer.subscription.updated", sub, created=now))

    assert stored.status == StripeEventStatus.FAILED
    assert stored.error.startswith("gave up after 7 attempts")
    assert stored.attempts == 7
    assert Subscription.objects.count() == 0


def test_a_bug_in_a_handler_fails_the_event_with_its_traceback(
    fake_stripe: FakeStripe, process: Any, now: dt.datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from apps.billing.services import webhooks

    def broken(event: StripeEvent) -> None:
        raise KeyError("surprise")

    monkeypatch.setitem(webhooks.HANDLERS, "invoice.paid", broken)
    invoice = invoice_object(invoice_id=unique("in"), customer="cus_x", subscription="sub_x")

    stored = process(event("invoice.paid", invoice, created=now))

    assert stored.status == StripeEventStatus.FAILED
    assert "KeyError: 'surprise'" in stored.error
    assert stored.attempts == 1
