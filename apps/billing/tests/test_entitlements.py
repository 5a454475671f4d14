"""The entitlement ledger: what each subscription state grants, that deriving it twice changes nothing, the
grace policy, access that ends by itself, complimentary grants and revocations, the platform sync queue, and
the reads every other app makes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.accounts.factories import UserFactory
from apps.billing.factories import EntitlementFactory, PlanFactory, SubscriptionFactory
from apps.billing.models import Entitlement, EntitlementSource, Subscription, SubscriptionStatus, SyncStatus
from apps.billing.selectors import (
    entitled_user_ids,
    entitlement_list_active,
    member_access_state,
    user_entitlement_keys,
    user_has_entitlement,
)
from apps.billing.services.entitlements import (
    RENEWAL_LEEWAY,
    entitlement_grant_complimentary,
    entitlement_revoke,
    entitlements_expire_due,
    entitlements_sync_for_subscription,
)
from apps.billing.tasks import sync_entitlement

pytestmark = pytest.mark.django_db

PREMIUM, ELITE, ROLE, CHANNEL = (
    "portal.premium",
    "portal.elite",
    "discord.role:111",
    "telegram.channel:-100222",
)
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def platform_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(sync_entitlement, "delay", calls.append)
    return calls


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def _subscription(
    status: str = SubscriptionStatus.ACTIVE,
    *,
    keys: tuple[str, ...] = (PREMIUM, ROLE),
    grace_days: int = 3,
    grace_keys: tuple[str, ...] = (),
    **fields: Any,
) -> Subscription:
    plan = PlanFactory.create(
        entitlement_keys=list(keys), grace_days=grace_days, grace_entitlement_keys=list(grace_keys)
    )
    defaults: dict[str, Any] = {
        "current_period_start": T0 - dt.timedelta(days=1),
        "current_period_end": T0 + dt.timedelta(days=29),
    }
    return SubscriptionFactory.create(plan=plan, status=status, **(defaults | fields))


def _sync(subscription: Subscription, capture: Any) -> list[Any]:
    with capture(execute=True):
        return entitlements_sync_for_subscription(subscription=subscription)


def _live(subscription: Subscription) -> list[tuple[str, str, dt.datetime | None]]:
    now = timezone.now()
    rows = Entitlement.objects.filter(subscription=subscription, revoked_at__isnull=True, ends_at__gt=now)
    return sorted(rows.values_list("key", "source", "ends_at"))


# --- what each state grants ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize(
    ("status", "fields", "source", "ends_at"),
    [
        (
            SubscriptionStatus.TRIALING,
            {"trial_end": T0 + dt.timedelta(days=5)},
            EntitlementSource.TRIAL,
            T0 + dt.timedelta(days=5) + RENEWAL_LEEWAY,
        ),
        (
            SubscriptionStatus.ACTIVE,
            {},
            EntitlementSource.SUBSCRIPTION,
            T0 + dt.timedelta(days=29) + RENEWAL_LEEWAY,
        ),
        # Set to cancel at the period end: no renewal is coming, so no leeway.
        (
            SubscriptionStatus.ACTIVE,
            {"cancel_at_period_end": True},
            EntitlementSource.SUBSCRIPTION,
            T0 + dt.timedelta(days=29),
        ),
        (
            SubscriptionStatus.TRIALING,
            {"trial_end": T0 + dt.timedelta(days=5), "cancel_at_period_end": True},
            EntitlementSource.TRIAL,
            T0 + dt.timedelta(days=5),
        ),
        (
            SubscriptionStatus.PAST_DUE,
            {"past_due_since": T0 - dt.timedelta(days=1)},
            EntitlementSource.GRACE,
            T0 + dt.timedelta(days=2),
        ),
        (
            SubscriptionStatus.CANCELED,
            {"cancel_at_period_end": True, "canceled_at": T0 - dt.timedelta(hours=1)},
            EntitlementSource.SUBSCRIPTION,
            T0 + dt.timedelta(days=29),
        ),
        (
            SubscriptionStatus.CANCELED,
            {"ended_at": T0 + dt.timedelta(days=2)},
            EntitlementSource.SUBSCRIPTION,
            T0 + dt.timedelta(days=2),
        ),
    ],
    ids=[
        "trialing",
        "active",
        "active, canceling",
        "trialing, canceling",
        "past due",
        "canceled, to period end",
        "canceled, ending later",
    ],
)
def test_a_state_that_grants_access(
    django_capture_on_commit_callbacks: Any,
    platform_syncs: list[int],
    status: str,
    fields: dict[str, Any],
    source: str,
    ends_at: dt.datetime,
) -> None:
    subscription = _subscription(status, **fields)

    changes = _sync(subscription, django_capture_on_commit_callbacks)

    assert _live(subscription) == [(ROLE, source, ends_at), (PREMIUM, source, ends_at)]
    assert sorted((c.key, c.action) for c in changes) == [(ROLE, "granted"), (PREMIUM, "granted")]
    role = Entitlement.objects.get(key=ROLE)
    premium = Entitlement.objects.get(key=PREMIUM)
    assert (role.user, role.starts_at, role.sync_status) == (subscription.user, T0, SyncStatus.PENDING)
    assert premium.sync_status == SyncStatus.NOT_NEEDED
    assert platform_syncs == [role.pk]


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize(
    ("status", "fields"),
    [
        (SubscriptionStatus.INCOMPLETE, {}),
        (SubscriptionStatus.INCOMPLETE_EXPIRED, {}),
        (SubscriptionStatus.UNPAID, {"past_due_since": T0 - dt.timedelta(days=1)}),
        (SubscriptionStatus.PAUSED, {}),
        (SubscriptionStatus.CANCELED, {"ended_at": T0 - dt.timedelta(minutes=1)}),
        # Canceled at once, though the period had days to run: ends now.
        (SubscriptionStatus.CANCELED, {"ended_at": T0, "cancel_at_period_end": True}),
        (SubscriptionStatus.PAST_DUE, {"past_due_since": T0 - dt.timedelta(days=3)}),
        (SubscriptionStatus.ACTIVE, {"current_period_end": T0 - dt.timedelta(days=1, seconds=1)}),
    ],
    ids=[
        "incomplete",
        "incomplete expired",
        "unpaid",
        "paused",
        "canceled",
        "canceled now, period to run",
        "past due beyond grace",
        "active, renewal overdue beyond the leeway",
    ],
)
def test_a_state_that_grants_nothing_ends_what_was_granted(
    django_capture_on_commit_callbacks: Any, platform_syncs: list[int], status: str, fields: dict[str, Any]
) -> None:
    subscription = _subscription()
    _sync(subscription, django_capture_on_commit_callbacks)
    platform_syncs.clear()
    Subscription.objects.filter(pk=subscription.pk).update(status=status, **fields)

    with time_machine.travel(T0 + dt.timedelta(minutes=5), tick=False):
        changes = _sync(subscription, django_capture_on_commit_callbacks)

        assert _live(subscription) == []
        assert not user_has_entitlement(user=subscription.user, key=PREMIUM)
    assert sorted((c.key, c.action) for c in changes) == [(ROLE, "ended"), (PREMIUM, "ended")]
    assert set(Entitlement.objects.values_list("ends_at", flat=True)) == {T0 + dt.timedelta(minutes=5)}
    role = Entitlement.objects.get(key=ROLE)
    assert (role.sync_status, platform_syncs) == (SyncStatus.PENDING, [role.pk])


def test_deriving_twice_changes_nothing(clock: Any, django_capture_on_commit_callbacks: Any) -> None:
    subscription = _subscription()
    _sync(subscription, django_capture_on_commit_callbacks)
    rows = list(Entitlement.objects.order_by("pk").values())

    clock.shift(dt.timedelta(hours=3))
    assert _sync(subscription, django_capture_on_commit_callbacks) == []
    assert list(Entitlement.objects.order_by("pk").values()) == rows


def test_a_renewal_moves_the_same_rows_end_rather_than_adding_rows(
    clock: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscription = _subscription()
    _sync(subscription, django_capture_on_commit_callbacks)
    ids = set(Entitlement.objects.values_list("pk", flat=True))
    clock.shift(dt.timedelta(days=29))
    Subscription.objects.filter(pk=subscription.pk).update(
        current_period_start=T0 + dt.timedelta(days=29), current_period_end=T0 + dt.timedelta(days=59)
    )

    changes = _sync(subscription, django_capture_on_commit_callbacks)

    assert {c.action for c in changes} == {"extended"}
    assert set(Entitlement.objects.values_list("pk", flat=True)) == ids
    assert set(Entitlement.objects.values_list("ends_at", flat=True)) == {
        T0 + dt.timedelta(days=59) + RENEWAL_LEEWAY
    }


def test_asking_to_cancel_at_the_period_end_drops_the_leeway_and_changing_ones_mind_restores_it(
    clock: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscription = _subscription(keys=(PREMIUM,))
    _sync(subscription, django_capture_on_commit_callbacks)
    period_end = T0 + dt.timedelta(days=29)

    Subscription.objects.filter(pk=subscription.pk).update(cancel_at_period_end=True)
    assert [c.action for c in _sync(subscription, django_capture_on_commit_callbacks)] == ["shortened"]
    assert _live(subscription) == [(PREMIUM, EntitlementSource.SUBSCRIPTION, period_end)]

    Subscription.objects.filter(pk=subscription.pk).update(cancel_at_period_end=False)
    assert [c.action for c in _sync(subscription, django_capture_on_commit_callbacks)] == ["extended"]
    assert _live(subscription) == [(PREMIUM, EntitlementSource.SUBSCRIPTION, period_end + RENEWAL_LEEWAY)]
    assert Entitlement.objects.count() == 1


def test_a_plan_change_ends_the_keys_no_longer_granted_and_grants_the_new_ones(
    clock: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscription = _subscription(keys=(PREMIUM, ROLE))
    _sync(subscription, django_capture_on_commit_callbacks)
    premium_row = Entitlement.objects.get(key=PREMIUM).pk
    Subscription.objects.filter(pk=subscription.pk).update(
        plan=PlanFactory.create(entitlement_keys=[PREMIUM, ELITE, CHANNEL])
    )
    clock.shift(dt.timedelta(minutes=1))

    changes = _sync(subscription, django_capture_on_commit_callbacks)

    assert sorted((c.key, c.action) for c in changes) == [
        (ROLE, "ended"),
        (ELITE, "granted"),
        (CHANNEL, "granted"),
    ]
    assert {key for key, _, _ in _live(subscription)} == {PREMIUM, ELITE, CHANNEL}
    assert Entitlement.objects.get(key=PREMIUM, ends_at__gt=timezone.now()).pk == premium_row


# --- grace --------------------------------------------------------------------------------------------------


def test_grace_keeps_every_key_for_the_plans_days_then_lets_go(
    clock: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscription = _subscription(SubscriptionStatus.PAST_DUE, grace_days=3, past_due_since=T0)
    _sync(subscription, django_capture_on_commit_callbacks)

    assert _live(subscription) == [
        (ROLE, EntitlementSource.GRACE, T0 + dt.timedelta(days=3)),
        (PREMIUM, EntitlementSource.GRACE, T0 + dt.timedelta(days=3)),
    ]
    assert member_access_state(user=subscription.user) == "past_due_grace"

    clock.shift(dt.timedelta(days=3, seconds=1))
    assert user_entitlement_keys(user=subscription.user) == set()
    assert member_access_state(user=subscription.user) == "past_due_expired"


def test_grace_can_keep_only_the_plans_grace_keys(
    clock: Any, django_capture_on_commit_callbacks: Any, platform_syncs: list[int]
) -> None:
    subscription = _subscription(grace_days=5, grace_keys=(PREMIUM,))
    _sync(subscription, django_capture_on_commit_callbacks)
    platform_syncs.clear()
    clock.shift(dt.timedelta(hours=1))
    Subscription.objects.filter(pk=subscription.pk).update(
        status=SubscriptionStatus.PAST_DUE, past_due_since=timezone.now()
    )

    _sync(subscription, django_capture_on_commit_callbacks)

    assert user_entitlement_keys(user=subscription.user) == {PREMIUM}
    assert _live(subscription) == [(PREMIUM, EntitlementSource.GRACE, T0 + dt.timedelta(days=5, hours=1))]
    # The role is taken away on the platform at once.
    role = Entitlement.objects.get(key=ROLE)
    assert (role.ends_at, role.sync_status, platform_syncs) == (timezone.now(), SyncStatus.PENDING, [role.pk])


def test_paying_during_grace_brings_back_everything(
    clock: Any, django_capture_on_commit_callbacks: Any
) -> None:
    subscription = _subscription(SubscriptionStatus.PAST_DUE, grace_keys=(PREMIUM,), past_due_since=T0)
    _sync(subscription, django_capture_on_commit_callbacks)
    clock.shift(dt.timedelta(days=1))
    Subscription.objects.filter(pk=subscription.pk).update(
        status=SubscriptionStatus.ACTIVE, past_due_since=None
    )

    _sync(subscription, django_capture_on_commit_callbacks)

    assert user_entitlement_keys(user=subscription.user) == {PREMIUM, ROLE}
    assert {source for _, source, _ in _live(subscription)} == {EntitlementSource.SUBSCRIPTION}


def test_no_grace_days_means_no_grace(clock: Any, django_capture_on_commit_callbacks: Any) -> None:
    subscription = _subscription(SubscriptionStatus.PAST_DUE, grace_days=0, past_due_since=T0)

    _sync(subscription, django_capture_on_commit_callbacks)

    assert _live(subscription) == []


# --- access that ends by itself -----------------------------------------------------------------------------


def test_cancel_at_period_end_keeps_access_to_the_period_end_then_loses_it(
    clock: Any, django_capture_on_commit_callbacks: Any, platform_syncs: list[int]
) -> None:
    period_end = T0 + dt.timedelta(days=10)
    subscription = _subscription(cancel_at_period_end=True, current_period_end=period_end)
    _sync(subscription, django_capture_on_commit_callbacks)
    role = Entitlement.objects.get(key=ROLE)
    # The platform sync ran and gave the role.
    Entitlement.objects.filter(pk=role.pk).update(sync_status=SyncStatus.SYNCED, synced_at=T0)
    platform_syncs.clear()

    clock.move_to(period_end - dt.timedelta(minutes=1))
    assert user_entitlement_keys(user=subscription.user) == {PREMIUM, ROLE}
    assert member_access_state(user=subscription.user) == "active"
    with django_capture_on_commit_callbacks(execute=True):
        assert entitlements_expire_due(now=timezone.now()) == 0

    clock.move_to(period_end + dt.timedelta(seconds=1))
    assert user_entitlement_keys(user=subscription.user) == set()
    assert list(entitled_user_ids(key=ROLE)) == []
    # Nothing had to be written for access to end; the expiry run takes the role away on Discord, once.
    with django_capture_on_commit_callbacks(execute=True):
        assert entitlements_expire_due(now=timezone.now()) == 1
        assert entitlements_expire_due(now=timezone.now()) == 0
    assert platform_syncs == [role.pk]
    assert Entitlement.objects.get(pk=role.pk).sync_status == SyncStatus.PENDING


def test_expiry_leaves_what_the_platform_already_heard_about(
    clock: Any, django_capture_on_commit_callbacks: Any, platform_syncs: list[int]
) -> None:
    ended = T0 - dt.timedelta(hours=1)
    heard = EntitlementFactory.create(
        key=ROLE,
        starts_at=T0 - dt.timedelta(days=2),
        ends_at=ended,
        sync_status=SyncStatus.SYNCED,
        synced_at=ended + dt.timedelta(minutes=1),
    )
    pending = EntitlementFactory.create(
        key=ROLE, starts_at=T0 - dt.timedelta(days=2), ends_at=ended, sync_status=SyncStatus.PENDING
    )
    failed = EntitlementFactory.create(
        key=CHANNEL, starts_at=T0 - dt.timedelta(days=2), ends_at=ended, sync_status=SyncStatus.FAILED
    )
    portal_only = EntitlementFactory.create(key=PREMIUM, starts_at=T0 - dt.timedelta(days=2), ends_at=ended)
    unheard = EntitlementFactory.create(
        key=CHANNEL,
        starts_at=T0 - dt.timedelta(days=2),
        ends_at=ended,
        sync_status=SyncStatus.SYNCED,
        synced_at=T0 - dt.timedelta(days=2),
    )
    revoked = EntitlementFactory.create(
        key=ROLE,
        starts_at=T0 - dt.timedelta(days=2),
        ends_at=T0 + dt.timedelta(days=9),
        revoked_at=ended,
        sync_status=SyncStatus.SYNCED,
        synced_at=T0 - dt.timedelta(days=2),
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert entitlements_expire_due(now=T0) == 2

    assert sorted(platform_syncs) == sorted([unheard.pk, revoked.pk])
    assert {heard.pk, pending.pk, failed.pk, portal_only.pk}.isdisjoint(platform_syncs)


def test_a_complimentary_grant_ends_by_itself(
    clock: Any, django_capture_on_commit_callbacks: Any, platform_syncs: list[int]
) -> None:
    user, operator = UserFactory.create(), UserFactory.create(staff=True)

    with django_capture_on_commit_callbacks(execute=True):
        rows = entitlement_grant_complimentary(
            user=user,
            keys=[PREMIUM, CHANNEL],
            ends_at=T0 + dt.timedelta(days=7),
            granted_by=operator,
            reason="Podcast guest",
        )

    assert [(r.key, r.source, r.starts_at, r.ends_at, r.granted_by) for r in rows] == [
        (PREMIUM, EntitlementSource.COMPLIMENTARY, T0, T0 + dt.timedelta(days=7), operator),
        (CHANNEL, EntitlementSource.COMPLIMENTARY, T0, T0 + dt.timedelta(days=7), operator),
    ]
    assert platform_syncs == [rows[1].pk]
    # The platform sync ran and added the member to the channel.
    Entitlement.objects.filter(pk=rows[1].pk).update(sync_status=SyncStatus.SYNCED, synced_at=T0)
    assert user_entitlement_keys(user=user) == {PREMIUM, CHANNEL}
    # Access comes from the ledger alone; with no subscription the display state stays "free".
    assert member_access_state(user=user) == "free"

    clock.move_to(T0 + dt.timedelta(days=7, seconds=1))
    assert user_entitlement_keys(user=user) == set()
    with django_capture_on_commit_callbacks(execute=True):
        assert entitlements_expire_due(now=timezone.now()) == 1
    assert platform_syncs == [rows[1].pk, rows[1].pk]


def test_granting_again_extends_never_shortens_and_never_duplicates(
    clock: Any, django_capture_on_commit_callbacks: Any
) -> None:
    user = UserFactory.create()

    def grant(days: int) -> Entitlement:
        return entitlement_grant_complimentary(
            user=user,
            keys=[PREMIUM],
            ends_at=T0 + dt.timedelta(days=days),
            granted_by=None,
            reason="Beta tester",
        )[0]

    first = grant(7)

    longer, shorter = grant(30), grant(1)

    assert first.pk == longer.pk == shorter.pk
    assert Entitlement.objects.get().ends_at == T0 + dt.timedelta(days=30)


@pytest.mark.parametrize(
    ("keys", "ends_in"),
    [([], 7), (["portal"], 7), (["discord.role:abc"], 7), (["telegram.channel:"], 7), ([PREMIUM], -1)],
    ids=["no keys", "bare app", "role not a number", "no chat", "ends in the past"],
)
def test_a_bad_complimentary_grant_is_refused(clock: Any, keys: list[str], ends_in: int) -> None:
    with pytest.raises(ValidationError):
        entitlement_grant_complimentary(
            user=UserFactory.create(),
            keys=keys,
            ends_at=T0 + dt.timedelta(days=ends_in),
            granted_by=None,
            reason="x",
        )
    assert Entitlement.objects.count() == 0


# --- revocation ---------------------------------------------------------------------------------------------


def test_a_revocation_holds_for_its_period_and_a_new_period_grants_again(
    clock: Any, django_capture_on_commit_callbacks: Any, platform_syncs: list[int]
) -> None:
    subscription = _subscription()
    _sync(subscription, django_capture_on_commit_callbacks)
    role = Entitlement.objects.get(key=ROLE)
    platform_syncs.clear()
    clock.shift(dt.timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=True):
        changes = entitlement_revoke(entitlement_ids=[role.pk], reason="abuse report")
        assert entitlement_revoke(entitlement_ids=[role.pk], reason="again") == []

    role.refresh_from_db()
    assert [c.action for c in changes] == ["revoked"]
    assert (role.revoked_at, role.sync_status, platform_syncs) == (
        timezone.now(),
        SyncStatus.PENDING,
        [role.pk],
    )
    assert role.reason.endswith("revoked: abuse report")
    assert user_entitlement_keys(user=subscription.user) == {PREMIUM}
    assert _sync(subscription, django_capture_on_commit_callbacks) == []
    assert user_entitlement_keys(user=subscription.user) == {PREMIUM}

    clock.shift(dt.timedelta(days=29))
    Subscription.objects.filter(pk=subscription.pk).update(
        current_period_start=timezone.now(), current_period_end=timezone.now() + dt.timedelta(days=30)
    )
    _sync(subscription, django_capture_on_commit_callbacks)
    assert user_entitlement_keys(user=subscription.user) == {PREMIUM, ROLE}


# --- reads --------------------------------------------------------------------------------------------------


def test_no_user_has_no_entitlement() -> None:
    EntitlementFactory.create(key=PREMIUM)

    for nobody in (None, AnonymousUser()):
        assert user_has_entitlement(user=nobody, key=PREMIUM) is False
        assert user_entitlement_keys(user=nobody) == set()
        assert member_access_state(user=nobody) == "anonymous"


def test_rows_not_in_force_grant_nothing(clock: Any) -> None:
    user = UserFactory.create()
    EntitlementFactory.create(user=user, key=PREMIUM, starts_at=T0 + dt.timedelta(hours=1))
    EntitlementFactory.create(user=user, key=ELITE, starts_at=T0 - dt.timedelta(days=2), ends_at=T0)
    EntitlementFactory.create(user=user, key=ROLE, revoked_at=T0 - dt.timedelta(minutes=1))
    EntitlementFactory.create(user=user, key=CHANNEL, starts_at=T0 - dt.timedelta(days=2), ends_at=None)

    assert user_entitlement_keys(user=user) == {CHANNEL}
    assert [e.key for e in entitlement_list_active(user=user)] == [CHANNEL]
    assert user_entitlement_keys(user=user, now=T0 + dt.timedelta(hours=2)) == {PREMIUM, CHANNEL}
    assert user_has_entitlement(user=user, key=ELITE, now=T0 - dt.timedelta(days=1)) is True


def test_entitled_user_ids_names_each_holder_once(clock: Any) -> None:
    holder, other = UserFactory.create(), UserFactory.create()
    EntitlementFactory.create(user=holder, key=ROLE, starts_at=T0 - dt.timedelta(days=1))
    EntitlementFactory.create(
        user=holder, key=ROLE, source=EntitlementSource.COMPLIMENTARY, starts_at=T0 - dt.timedelta(days=1)
    )
    EntitlementFactory.create(user=other, key=CHANNEL, starts_at=T0 - dt.timedelta(days=1))

    assert list(entitled_user_ids(key=ROLE)) == [holder.pk]


@pytest.mark.usefixtures("clock")
@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "free"),
        ([SubscriptionStatus.INCOMPLETE], "free"),
        ([SubscriptionStatus.INCOMPLETE_EXPIRED], "free"),
        ([SubscriptionStatus.TRIALING], "trialing"),
        ([SubscriptionStatus.CANCELED, SubscriptionStatus.ACTIVE], "active"),
        # A newer abandoned checkout does not hide the membership that is running.
        ([SubscriptionStatus.ACTIVE, SubscriptionStatus.INCOMPLETE], "active"),
        ([SubscriptionStatus.UNPAID], "past_due_expired"),
        ([SubscriptionStatus.CANCELED], "canceled"),
        ([SubscriptionStatus.PAUSED], "canceled"),
    ],
)
def test_member_access_state(statuses: list[str], expected: str) -> None:
    user = UserFactory.create()
    for status in statuses:  # oldest first
        SubscriptionFactory.create(user=user, status=status)

    assert member_access_state(user=user) == expected
