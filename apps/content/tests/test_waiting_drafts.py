"""Drafts waiting for an operator's approval: counted in the admin and on the dashboard, and announced to the
operators as one digest (a dashboard event and one email each) when new ones are waiting, never once per
draft and never twice for the same draft."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from pytest_django.fixtures import Settings as DjangoSettings

from apps.accounts.factories import UserFactory
from apps.content.factories import ContentDraftFactory, ContentPlanFactory
from apps.content.models import ContentDraft, DraftStatus
from apps.content.services import DIGEST_MAX_LISTED, content_drafts_announce_waiting
from apps.content.tasks import announce_waiting_drafts
from apps.core import live
from apps.core.models import Platform

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:content_contentdraft_changelist")
WAITING_URL = f"{CHANGELIST}?status__exact=pending_review"


@pytest.fixture
def broadcasts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    sent: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(live, "broadcast", lambda group, event, payload: sent.append((group, event, payload)))
    return sent


@pytest.fixture
def operators() -> list[str]:
    UserFactory.create(email="ops-1@coinlink.test", staff=True)
    UserFactory.create(email="ops-2@coinlink.test", staff=True)
    UserFactory.create(email="gone@coinlink.test", staff=True, is_active=False)
    UserFactory.create(email="member@coinlink.test")
    return ["ops-1@coinlink.test", "ops-2@coinlink.test"]


def _draft(
    body: str, *, platform: str = Platform.X, status: str = DraftStatus.PENDING_REVIEW
) -> ContentDraft:
    return ContentDraftFactory.create(
        plan=ContentPlanFactory.create(platform=platform), body=body, status=status
    )


def test_new_waiting_drafts_are_announced_once_as_one_digest(
    operators: list[str], broadcasts: list[tuple[str, str, dict[str, Any]]], settings: DjangoSettings
) -> None:
    settings.SITE_URL = "https://coinlink.example"
    first = _draft("BTC breaks out above its range", platform=Platform.X)
    second = _draft("ETH funding turns negative", platform=Platform.TELEGRAM)
    _draft("Already approved", status=DraftStatus.APPROVED)

    assert content_drafts_announce_waiting() == 2

    assert sorted(message.to[0] for message in mail.outbox) == operators
    assert all(len(message.to) == 1 for message in mail.outbox)
    message = mail.outbox[0]
    assert message.subject == "[CoinLink] 2 new drafts wait for your approval"
    assert "2 new drafts wait for approval (2 waiting in all):" in message.body
    assert "- X: BTC breaks out above its range" in message.body
    assert "- Telegram: ETH funding turns negative" in message.body
    assert "Already approved" not in message.body
    assert f"https://coinlink.example{WAITING_URL}" in message.body
    assert broadcasts == [("dashboard", "drafts_waiting", {"waiting": 2, "new": 2, "url": WAITING_URL})]
    assert ContentDraft.objects.filter(pk__in=[first.pk, second.pk], waiting_announced_at=None).count() == 0

    # Nothing new: nothing sent.
    assert content_drafts_announce_waiting() == 0
    assert len(mail.outbox) == 2
    assert len(broadcasts) == 1

    # One more: a digest of that one, with the total still waiting.
    _draft("SOL volume doubles")
    assert announce_waiting_drafts.apply().get() == 1
    later = mail.outbox[2]
    assert later.subject == "[CoinLink] 1 new draft waits for your approval"
    assert "1 new draft waits for approval (3 waiting in all):" in later.body
    assert "BTC breaks out" not in later.body
    assert broadcasts[-1] == ("dashboard", "drafts_waiting", {"waiting": 3, "new": 1, "url": WAITING_URL})


def test_a_big_digest_lists_the_first_drafts_and_counts_the_rest(
    operators: list[str], broadcasts: list[tuple[str, str, dict[str, Any]]]
) -> None:
    for n in range(DIGEST_MAX_LISTED + 3):
        _draft(f"draft number {n}")

    assert content_drafts_announce_waiting() == DIGEST_MAX_LISTED + 3

    body = mail.outbox[0].body
    assert body.count("\n- X: draft number") == DIGEST_MAX_LISTED
    assert "- and 3 more" in body


def test_a_failed_send_announces_nothing_and_is_tried_again(
    operators: list[str], broadcasts: list[tuple[str, str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.mail.backends.locmem import EmailBackend

    draft = _draft("BTC breaks out")

    def refuse(self: EmailBackend, messages: list[Any]) -> int:
        raise ConnectionRefusedError("smtp down")

    with monkeypatch.context() as patch:
        patch.setattr(EmailBackend, "send_messages", refuse)
        with pytest.raises(ConnectionRefusedError):
            content_drafts_announce_waiting()

    draft.refresh_from_db()
    assert draft.waiting_announced_at is None
    assert broadcasts == []
    assert content_drafts_announce_waiting() == 1
    assert len(mail.outbox) == 2


def test_without_operators_the_dashboard_still_hears_of_them(
    broadcasts: list[tuple[str, str, dict[str, Any]]],
) -> None:
    _draft("BTC breaks out")

    assert content_drafts_announce_waiting() == 1

    assert mail.outbox == []
    assert broadcasts[0][1:] == ("drafts_waiting", {"waiting": 1, "new": 1, "url": WAITING_URL})


def test_the_digest_is_scheduled_by_beat(settings: DjangoSettings) -> None:
    assert settings.CELERY_BEAT_SCHEDULE["content.announce_waiting_drafts"] == {
        "task": "content.announce_waiting_drafts",
        "schedule": 600.0,
    }


def test_the_admin_filter_shows_how_many_wait_and_lists_them(client: Client) -> None:
    waiting = [_draft("one"), _draft("two")]
    _draft("published", status=DraftStatus.PUBLISHED)
    client.force_login(UserFactory.create(staff=True))

    page = client.get(CHANGELIST)
    filtered = client.get(CHANGELIST, {"waiting": "yes"})

    assert "Waiting for approval (2)" in page.content.decode()
    assert page.context["cl"].result_count == 3
    assert {draft.pk for draft in filtered.context["cl"].result_list} == {draft.pk for draft in waiting}


def test_the_dashboard_shows_the_count_and_links_the_admin(client: Client) -> None:
    _draft("one")
    _draft("two")
    _draft("rejected", status=DraftStatus.REJECTED)
    client.force_login(UserFactory.create(staff=True))

    response = client.get(reverse("dashboard:index"))

    assert response.context["drafts_waiting"] == 2
    page = response.content.decode()
    assert '<span class="kpi__value" data-drafts-waiting>2</span>' in page
    assert f'href="{WAITING_URL}"' in page
