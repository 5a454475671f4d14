"""The tracked offer link ``/o/<token>/``: a click moves the offer to clicked once, records the person's
``offer_click`` interaction and carries the offer to the plans page and checkout; an unknown or malformed token
is not found and writes nothing; link previews and later clicks change nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.test import Client

from apps.billing.factories import ConversionAttemptFactory
from apps.billing.models import ConversionAttempt, ConversionStatus
from apps.community.models import UserInteraction
from apps.portal.billing_views import OFFER_SESSION_KEY

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 6, 2, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


@pytest.fixture
def attempt(clock: Any) -> ConversionAttempt:
    with time_machine.travel(T0 - dt.timedelta(days=2), tick=False):
        return ConversionAttemptFactory.create(platform="discord")


def _link(attempt: ConversionAttempt) -> str:
    return f"/o/{attempt.token}/"


def _snapshot() -> tuple[list[Any], int]:
    return list(ConversionAttempt.objects.order_by("pk").values()), UserInteraction.objects.count()


def test_a_click_marks_the_offer_clicked_and_goes_to_the_plans_with_it(
    client: Client, attempt: ConversionAttempt
) -> None:
    response = client.get(_link(attempt))

    assert response.status_code == 302
    assert response["Location"] == f"/plans/?offer={attempt.token}"
    assert response["Cache-Control"].startswith("max-age=0")
    assert client.session[OFFER_SESSION_KEY] == str(attempt.token)
    attempt.refresh_from_db()
    assert (attempt.status, attempt.clicked_at, attempt.updated_at) == (ConversionStatus.CLICKED, T0, T0)
    click = UserInteraction.objects.get()
    assert (click.community_user_id, click.platform, click.kind, click.external_id, click.occurred_at) == (
        attempt.community_user_id,
        "discord",
        "offer_click",
        f"offer-click:{attempt.token}",
        T0,
    )
    assert client.get(response["Location"]).status_code == 200


def test_a_second_click_changes_nothing(client: Client, attempt: ConversionAttempt, clock: Any) -> None:
    client.get(_link(attempt))
    before = _snapshot()
    clock.move_to(T0 + dt.timedelta(hours=5))

    again = Client().get(_link(attempt))

    assert again.status_code == 302
    assert _snapshot() == before
    attempt.refresh_from_db()
    assert attempt.clicked_at == T0


@pytest.mark.parametrize(
    "path",
    [f"/o/{uuid.UUID(int=7)}/", "/o/not-a-token/", "/o/'; DROP TABLE conversion_attempts; --/", "/o//"],
)
def test_an_unknown_or_malformed_token_is_not_found_and_writes_nothing(
    client: Client, attempt: ConversionAttempt, path: str
) -> None:
    before = _snapshot()

    response = client.get(path)

    assert response.status_code == 404
    assert _snapshot() == before
    assert OFFER_SESSION_KEY not in client.session


@pytest.mark.parametrize(
    "user_agent",
    [
        "TelegramBot (like TwitterBot)",
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "Twitterbot/1.0",
    ],
)
def test_a_link_preview_is_not_a_click(client: Client, attempt: ConversionAttempt, user_agent: str) -> None:
    before = _snapshot()

    response = client.get(_link(attempt), headers={"User-Agent": user_agent})

    assert response.status_code == 302
    assert _snapshot() == before


def test_a_head_request_is_not_a_click(client: Client, attempt: ConversionAttempt) -> None:
    before = _snapshot()

    assert client.head(_link(attempt)).status_code == 302
    assert _snapshot() == before


def test_the_link_takes_no_post(client: Client, attempt: ConversionAttempt) -> None:
    before = _snapshot()

    assert client.post(_link(attempt)).status_code == 405
    assert _snapshot() == before


def test_a_late_click_on_an_ignored_offer_still_counts(client: Client, attempt: ConversionAttempt) -> None:
    ConversionAttempt.objects.filter(pk=attempt.pk).update(status=ConversionStatus.IGNORED)

    client.get(_link(attempt))

    attempt.refresh_from_db()
    assert (attempt.status, attempt.clicked_at) == (ConversionStatus.CLICKED, T0)
    assert UserInteraction.objects.count() == 1


@pytest.mark.parametrize("status", [ConversionStatus.CONVERTED, ConversionStatus.FAILED])
def test_a_click_on_a_converted_or_failed_offer_only_redirects(
    client: Client, attempt: ConversionAttempt, status: str
) -> None:
    ConversionAttempt.objects.filter(pk=attempt.pk).update(status=status)
    before = _snapshot()

    response = client.get(_link(attempt))

    assert response["Location"] == f"/plans/?offer={attempt.token}"
    assert _snapshot() == before
