"""The engine in the admin: decisions with their checks, labelling from the list, rules and domains."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.moderation.models import BlockedDomain, ModerationDecision, ModerationRule, TrainingLabel
from apps.moderation.services.judging import moderation_judge
from apps.moderation.tests.engine_support import fresh_engine, message

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_engine")]
__all__ = ["fresh_engine"]

SCAM = "Kindly DM the admin on whatsapp, he will help you restore your wallet with your seed phrase"


def test_decision_page_shows_every_check_readably(admin_client: Client) -> None:
    judgement = moderation_judge(message=message(SCAM))
    response = admin_client.get(
        reverse("admin:moderation_moderationdecision_change", args=[judgement.decision_id])
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "<th>check</th>" in page
    assert "<td>seed_phrase</td>" in page
    assert "asks for a seed phrase or private key" in page
    listing = admin_client.get(
        reverse("admin:moderation_moderationdecision_changelist"), {"verdict": "remove"}
    )
    assert "seed_phrase" in listing.content.decode()


def test_labelling_decisions_from_the_list_teaches_the_classifier(
    admin_client: Client, admin_user: Any
) -> None:
    judgement = moderation_judge(message=message("perfectly normal chat about tulips"))
    response = admin_client.post(
        reverse("admin:moderation_moderationdecision_changelist"),
        {"action": "label_spam", "_selected_action": [judgement.decision_id]},
        follow=True,
    )
    assert "1 message(s) labelled spam" in response.content.decode()
    label = TrainingLabel.objects.get()
    assert (label.label, label.source, label.actor, label.decision_id) == (
        "spam",
        "operator",
        admin_user,
        judgement.decision_id,
    )
    assert ModerationDecision.objects.get().labels.count() == 1


def test_rule_form_refuses_a_broken_regex_and_a_missing_limit(admin_client: Client) -> None:
    url = reverse("admin:moderation_moderationrule_add")
    base = {
        "name": "r",
        "platforms": "[]",
        "action": "warn",
        "strike_weight": 1,
        "score": 0.9,
        "is_active": "on",
    }
    response = admin_client.post(url, {**base, "kind": "regex", "pattern": "([oops"})
    assert "is not a regular expression" in response.content.decode()
    response = admin_client.post(url, {**base, "kind": "flood", "pattern": ""})
    assert "needs a limit" in response.content.decode()
    assert ModerationRule.objects.count() == 0
    response = admin_client.post(url, {**base, "kind": "keyword", "pattern": "casino"})
    assert response.status_code == 302
    assert ModerationRule.objects.get().pattern == "casino"


def test_operator_domains_are_stored_normalised(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:moderation_blockeddomain_add"),
        {
            "domain": "https://WWW.Scam-Site.example/claim",
            "source": "feed",
            "reason": "seen today",
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    row = BlockedDomain.objects.get()
    assert (row.domain, row.source) == ("scam-site.example", "operator")
