"""The admin's sign-in is limited per (account, address) and per address, never per account alone."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django.fixtures import Settings

from apps.accounts.factories import UserFactory
from apps.accounts.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
OPERATOR_DESK = "198.51.100.7"
ATTACKER = "203.0.113.66"


@pytest.fixture(autouse=True)
def _fresh_counters(settings: Settings) -> Iterator[None]:
    settings.ADMIN_LOGIN_FAILURE_RATE = "5/15min"
    settings.ADMIN_LOGIN_ADDRESS_FAILURE_RATE = "12/15min"
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def operator() -> User:
    return UserFactory.create(email="ops@coinlink.example", staff=True)


def _sign_in(email: str, password: str, address: str) -> tuple[int, Client]:
    client = Client(REMOTE_ADDR=address)
    response = client.post(
        reverse("admin:login"), {"username": email, "password": password, "next": "/admin/"}
    )
    return response.status_code, client


def _signed_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


def test_thirty_wrong_passwords_are_not_all_answered(operator: User) -> None:
    statuses = [_sign_in(operator.email, f"guess-{i}", ATTACKER)[0] for i in range(30)]

    assert statuses == [200] * 5 + [429] * 25


def test_the_lockout_page_says_why_and_when(operator: User) -> None:
    for i in range(5):
        _sign_in(operator.email, f"guess-{i}", ATTACKER)
    client = Client(REMOTE_ADDR=ATTACKER)

    response = client.post(reverse("admin:login"), {"username": operator.email, "password": PASSWORD})

    assert response.status_code == 429
    assert response["Retry-After"] == str(15 * 60)
    html = response.content.decode()
    assert "Too many failed sign-ins" in html
    assert "paused here for 15 minutes" in html
    # The right password was not even checked: no session.
    assert not _signed_in(client)


def test_an_attacker_elsewhere_cannot_lock_the_operator_out(operator: User) -> None:
    attempts = [_sign_in(operator.email, f"guess-{i}", ATTACKER)[0] for i in range(30)]
    assert 429 in attempts

    status, client = _sign_in(operator.email, PASSWORD, OPERATOR_DESK)

    assert status == 302
    assert _signed_in(client)


def test_the_account_is_locked_at_that_address_even_for_the_right_password(operator: User) -> None:
    for i in range(5):
        _sign_in(operator.email.upper(), f"guess-{i}", OPERATOR_DESK)  # the same account, however typed

    status, client = _sign_in(operator.email, PASSWORD, OPERATOR_DESK)

    assert status == 429
    assert not _signed_in(client)


def test_an_address_guessing_across_accounts_is_locked_out(operator: User) -> None:
    statuses = [_sign_in(f"user{i}@coinlink.example", "guess", ATTACKER)[0] for i in range(12)]
    assert statuses == [200] * 12

    assert _sign_in(operator.email, PASSWORD, ATTACKER)[0] == 429
    assert _sign_in(operator.email, PASSWORD, OPERATOR_DESK)[0] == 302


def test_a_success_clears_the_pair(operator: User) -> None:
    for i in range(4):
        _sign_in(operator.email, f"typo-{i}", OPERATOR_DESK)
    assert _sign_in(operator.email, PASSWORD, OPERATOR_DESK)[0] == 302

    statuses = [_sign_in(operator.email, f"typo-{i}", OPERATOR_DESK)[0] for i in range(4)]

    assert statuses == [200] * 4
    assert _sign_in(operator.email, PASSWORD, OPERATOR_DESK)[0] == 302


def test_the_lockout_ends_after_its_period(operator: User) -> None:
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for i in range(5):
            _sign_in(operator.email, f"guess-{i}", OPERATOR_DESK)
        assert _sign_in(operator.email, PASSWORD, OPERATOR_DESK)[0] == 429

    with time_machine.travel(start + dt.timedelta(minutes=15, seconds=1), tick=False):
        assert _sign_in(operator.email, PASSWORD, OPERATOR_DESK)[0] == 302


def test_a_member_without_staff_rights_counts_as_a_failure() -> None:
    member = UserFactory.create(email="member@coinlink.example")

    statuses = [_sign_in(member.email, PASSWORD, ATTACKER)[0] for _ in range(6)]

    assert statuses == [200] * 5 + [429]
