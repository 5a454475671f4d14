"""The learning admin: a change's page shows what moved and offers Revert (a CSRF-protected POST, for staff with
the permission), the changelist action reverts several, refusals come back as messages with nothing changed;
the freeze switch records who froze; alert rules accept only platforms alerts can go to."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.agents.models import AgentConfig
from apps.learning.models import AlertRule, LearningControl, StrategyChange
from apps.learning.services import strategy_change_propose, strategy_changes_apply

pytestmark = pytest.mark.django_db

STRATEGIST = "content_strategist"


@pytest.fixture
def operator() -> User:
    return UserFactory.create(staff=True)


@pytest.fixture
def staff_client(client: Client, operator: User) -> Client:
    client.force_login(operator)
    return client


def _applied(target: Any, parameter: str = "platform_weights") -> StrategyChange:
    change = strategy_change_propose(
        agent_name=STRATEGIST,
        parameter=parameter,
        target=target,
        source=StrategyChange.Source.STRATEGY_TUNING,
        reason="X earns more",
        evidence={"posts": 40},
    )
    strategy_changes_apply(cycle=3, now=change.created_at, max_changes=5, max_step=0.2)
    change.refresh_from_db()
    return change


def _messages(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _revert_url(change: StrategyChange) -> str:
    return reverse("admin:learning_strategychange_revert", args=[change.pk])


def _change_url(change: StrategyChange) -> str:
    return reverse("admin:learning_strategychange_change", args=[change.pk])


def test_the_change_page_shows_what_moved_and_a_revert_button(staff_client: Client) -> None:
    change = _applied({"x": 2.0, "telegram": 0.8, "discord": 0.6})

    page = staff_client.get(_change_url(change)).content.decode()

    assert "<tr><td><code>x</code></td><td>1.0</td><td>1.2</td><td>2.0</td></tr>" in page
    assert "<code>telegram</code>" not in page
    assert f'action="{_revert_url(change)}"' in page
    assert "csrfmiddlewaretoken" in page
    assert "Revert this change" in page


def test_no_revert_button_on_a_change_that_is_not_applied(staff_client: Client) -> None:
    change = _applied({"x": 1.0})  # already in force: skipped

    page = staff_client.get(_change_url(change)).content.decode()

    assert change.status == "skipped"
    assert "Revert this change" not in page


def test_the_revert_button_puts_the_value_back(staff_client: Client, operator: User) -> None:
    change = _applied({"x": 2.0})

    response = staff_client.post(_revert_url(change))

    assert response.status_code == 302
    assert response["Location"] == _change_url(change)
    change.refresh_from_db()
    assert (change.status, change.reverted_by) == ("reverted", operator)
    assert AgentConfig.objects.get(agent_name=STRATEGIST).parameters == {}
    assert _messages(response) == [
        f"Reverted change #{change.pk}: content_strategist.platform_weights is back to its value before."
    ]


def test_a_refused_revert_says_why_and_changes_nothing(staff_client: Client) -> None:
    first = _applied({"x": 2.0})
    _applied({"x": 2.0})
    parameters = AgentConfig.objects.get(agent_name=STRATEGIST).parameters
    rows = list(StrategyChange.objects.order_by("pk").values())

    response = staff_client.post(_revert_url(first))

    assert response.status_code == 302
    assert _messages(response) == [
        f"Not reverted: change #{first.pk} (content_strategist.platform_weights) was superseded by a later "
        "change: platform_weights no longer holds the value it applied"
    ]
    assert AgentConfig.objects.get(agent_name=STRATEGIST).parameters == parameters
    assert list(StrategyChange.objects.order_by("pk").values()) == rows


def test_revert_needs_a_post_with_the_csrf_token_and_the_permission(operator: User) -> None:
    change = _applied({"x": 2.0})
    guarded = Client(enforce_csrf_checks=True)
    guarded.force_login(operator)
    assert guarded.get(_revert_url(change)).status_code == 405
    assert guarded.post(_revert_url(change)).status_code == 403

    viewer = UserFactory.create(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_strategychange"))
    client = Client()
    client.force_login(viewer)
    assert "Revert this change" not in client.get(_change_url(change)).content.decode()
    assert client.post(_revert_url(change)).status_code == 403

    change.refresh_from_db()
    assert change.status == "applied"


def test_the_revert_action_reverts_the_selected_and_reports_refusals(staff_client: Client) -> None:
    weights = _applied({"x": 2.0})
    priority = _applied(0.1, parameter="min_priority")
    waiting = strategy_change_propose(
        agent_name=STRATEGIST, parameter="weights", target={}, source="operator", reason="r", evidence={}
    )

    response = staff_client.post(
        reverse("admin:learning_strategychange_changelist"),
        {"action": "revert", "_selected_action": [weights.pk, priority.pk, waiting.pk]},
        follow=True,
    )

    assert response.status_code == 200
    statuses = dict(
        StrategyChange.objects.filter(pk__in=[weights.pk, priority.pk, waiting.pk]).values_list(
            "pk", "status"
        )
    )
    assert statuses == {weights.pk: "reverted", priority.pk: "reverted", waiting.pk: "proposed"}
    assert [str(m) for m in response.context["messages"]] == [
        f"Not reverted: change #{waiting.pk} (content_strategist.weights) is proposed: only applied changes revert",
        "Reverted 2 of 3 selected changes.",
    ]


def test_the_freeze_switch_records_who_froze_learning(staff_client: Client, operator: User) -> None:
    changelist = reverse("admin:learning_learningcontrol_changelist")
    staff_client.get(changelist)
    control = LearningControl.objects.get()

    staff_client.post(changelist, {"action": "freeze", "_selected_action": [control.pk]})
    control.refresh_from_db()
    assert (control.frozen, control.changed_by, control.reason) == (
        True,
        operator,
        f"frozen by {operator} in the admin",
    )

    response = staff_client.post(
        reverse("admin:learning_learningcontrol_change", args=[control.pk]), {"frozen": "", "reason": "done"}
    )
    assert response.status_code == 302
    control.refresh_from_db()
    assert (control.frozen, control.reason, control.changed_by) == (False, "done", operator)
    assert staff_client.get(reverse("admin:learning_learningcontrol_add")).status_code == 403


def test_an_alert_rule_names_only_platforms_alerts_go_to(staff_client: Client) -> None:
    data = {
        "name": "Publishing fails",
        "metric": "agent.success_rate",
        "scope": "agent:publishing",
        "comparison": "below",
        "threshold": "0.9",
        "enabled": "on",
        "cooldown_minutes": "60",
    }
    add = reverse("admin:learning_alertrule_add")

    refused = staff_client.post(add, {**data, "notify_platforms": '["x"]'})
    accepted = staff_client.post(add, {**data, "notify_platforms": '["discord", "discord", "telegram"]'})

    assert refused.status_code == 200
    assert (
        "A list of platforms among discord, telegram, e.g. [&quot;discord&quot;]." in refused.content.decode()
    )
    assert accepted.status_code == 302
    assert list(AlertRule.objects.values_list("notify_platforms", flat=True)) == [["discord", "telegram"]]
