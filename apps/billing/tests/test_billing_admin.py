"""The operator's billing tools in the admin: grant complimentary access, revoke entitlements, process a
Stripe event again."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import EntitlementFactory, StripeEventFactory
from apps.billing.models import Entitlement, EntitlementSource, StripeEventStatus, SyncStatus
from apps.billing.tasks import process_stripe_event, sync_entitlement

pytestmark = pytest.mark.django_db

GRANT_URL = reverse("admin:billing_entitlement_grant_complimentary")
T0 = dt.datetime(2026, 5, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def platform_syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(sync_entitlement, "delay", calls.append)
    return calls


@pytest.fixture
def operator() -> User:
    return UserFactory.create(staff=True)


@pytest.fixture
def staff_client(client: Client, operator: User) -> Client:
    client.force_login(operator)
    return client


def test_the_entitlements_page_offers_the_grant(staff_client: Client) -> None:
    page = staff_client.get(reverse("admin:billing_entitlement_changelist")).content.decode()

    assert GRANT_URL in page
    assert "Grant complimentary access" in page


def test_the_grant_form_renders_with_the_member_preselected(staff_client: Client) -> None:
    member = UserFactory.create()

    response = staff_client.get(GRANT_URL, {"user": member.pk})

    assert response.status_code == 200
    assert response.context["form"]["user"].value() == str(member.pk)
    assert b"admin/js/autocomplete.js" in response.content


def test_an_operator_grants_complimentary_access_for_some_days(
    staff_client: Client, operator: User, platform_syncs: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    member = UserFactory.create()
    form = {
        "user": member.pk,
        "keys": "portal.premium, telegram.channel:-100222",
        "days": 14,
        "reason": "Guest",
    }

    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(GRANT_URL, form)

    assert response.status_code == 302
    assert (
        response["Location"]
        == reverse("admin:billing_entitlement_changelist") + f"?user__id__exact={member.pk}"
    )
    rows = Entitlement.objects.filter(user=member).order_by("key")
    assert [(r.key, r.source, r.starts_at, r.ends_at, r.granted_by, r.reason) for r in rows] == [
        (
            "portal.premium",
            EntitlementSource.COMPLIMENTARY,
            T0,
            T0 + dt.timedelta(days=14),
            operator,
            "Guest",
        ),
        (
            "telegram.channel:-100222",
            EntitlementSource.COMPLIMENTARY,
            T0,
            T0 + dt.timedelta(days=14),
            operator,
            "Guest",
        ),
    ]
    assert platform_syncs == [rows.get(key="telegram.channel:-100222").pk]
    assert LogEntry.objects.filter(user=operator, action_flag=ADDITION).count() == 2
    # The redirect lands on the member's rows alone.
    EntitlementFactory.create()
    listing = staff_client.get(response["Location"])
    assert listing.status_code == 200
    assert {e.pk for e in listing.context["cl"].result_list} == set(rows.values_list("pk", flat=True))


@pytest.mark.parametrize(
    "form",
    [
        {"keys": "portal.premium, discord.role:not-a-number", "days": 7, "reason": "x"},
        {"keys": " , ", "days": 7, "reason": "x"},
        {"keys": "portal.premium", "days": 0, "reason": "x"},
        {"keys": "portal.premium", "days": 7, "reason": ""},
    ],
    ids=["bad key", "no key", "no days", "no reason"],
)
def test_a_bad_grant_is_shown_again_and_grants_nothing(staff_client: Client, form: dict[str, Any]) -> None:
    member = UserFactory.create()

    response = staff_client.post(GRANT_URL, {"user": member.pk, **form})

    assert response.status_code == 200
    assert response.context["form"].errors
    assert Entitlement.objects.count() == 0


def test_staff_without_the_add_permission_cannot_grant(client: Client) -> None:
    viewer = UserFactory.create(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_entitlement"))
    client.force_login(viewer)

    response = client.post(
        GRANT_URL, {"user": viewer.pk, "keys": "portal.premium", "days": 7, "reason": "me"}
    )

    assert response.status_code == 403
    assert Entitlement.objects.count() == 0


def test_revoke_takes_the_selected_rows_out_of_force(staff_client: Client, platform_syncs: list[int]) -> None:
    role = EntitlementFactory.create(key="discord.role:111")
    already = EntitlementFactory.create(revoked_at=T0)

    response = staff_client.post(
        reverse("admin:billing_entitlement_changelist"),
        {"action": "revoke", "_selected_action": [role.pk, already.pk]},
        follow=True,
    )

    role.refresh_from_db()
    already.refresh_from_db()
    assert role.revoked_at is not None
    assert role.sync_status == SyncStatus.PENDING
    assert already.revoked_at == T0
    assert [str(m) for m in response.context["messages"]] == [
        "Revoked 1 of 2 selected; the rest were already revoked."
    ]


def test_failed_events_can_be_processed_again(
    staff_client: Client, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    queued: list[int] = []
    monkeypatch.setattr(process_stripe_event, "delay", queued.append)
    failed = StripeEventFactory.create(status=StripeEventStatus.FAILED, error="boom")
    done = StripeEventFactory.create(status=StripeEventStatus.PROCESSED)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            reverse("admin:billing_stripeevent_changelist"),
            {"action": "process_again", "_selected_action": [failed.pk, done.pk]},
            follow=True,
        )

    failed.refresh_from_db()
    done.refresh_from_db()
    assert (failed.status, failed.error, done.status) == (
        StripeEventStatus.RECEIVED,
        "",
        StripeEventStatus.PROCESSED,
    )
    assert queued == [failed.pk]
    assert [str(m) for m in response.context["messages"]] == [
        "Queued 1 of 2 selected events; processed ones are left alone."
    ]
