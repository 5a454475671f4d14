"""Carrying actions out through the real Telegram client against a fake Bot API on loopback: the task retries
outages, ends a refused call or one that ran out of retries ``failed`` with its error, and the action shows it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pytest_django.fixtures import Settings
from pytest_httpserver import HTTPServer

from apps.community.factories import PlatformIdentityFactory
from apps.core.models import Platform
from apps.moderation.models import ActionKind, ActionStatus, OperationKind, OperationStatus, PlatformOperation
from apps.moderation.services.enforcement import (
    moderation_enforce,
    moderation_operations_retry,
    moderation_policy_get,
)
from apps.moderation.tasks import OPERATION_BACKOFF
from apps.moderation.tests.enforcement_support import TELEGRAM_GROUP, TELEGRAM_ID, removal, scam

pytestmark = pytest.mark.django_db

TOKEN = "123456:TEST-token"
Capture = Callable[..., Any]


@pytest.fixture(autouse=True)
def telegram_api(httpserver: HTTPServer, settings: Settings) -> HTTPServer:
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    settings.MODERATION_TELEGRAM_CHATS = []
    settings.CIRCUIT_BREAKER_FAILURES = 100  # these tests count attempts, not the breaker
    PlatformIdentityFactory(platform=Platform.TELEGRAM, external_id=TELEGRAM_ID)
    policy = moderation_policy_get()
    policy.notify_members = False
    policy.save()
    return httpserver


def _delete(httpserver: HTTPServer) -> Any:
    return httpserver.expect_oneshot_request(f"/bot{TOKEN}/deleteMessage", method="POST")


def _error(code: int, description: str) -> dict[str, Any]:
    return {"ok": False, "error_code": code, "description": description}


def _enforce(capture: Capture) -> tuple[int, PlatformOperation]:
    with capture(execute=True):
        (action,) = moderation_enforce(message=scam(Platform.TELEGRAM), judgement=removal())
    (operation,) = PlatformOperation.objects.filter(action=action)
    return action.pk, operation


def test_an_outage_is_retried_until_the_call_lands(
    httpserver: HTTPServer, django_capture_on_commit_callbacks: Capture
) -> None:
    _delete(httpserver).respond_with_json(_error(502, "Bad Gateway"), status=502)
    _delete(httpserver).respond_with_json(_error(500, "Internal Server Error"), status=500)
    _delete(httpserver).respond_with_json({"ok": True, "result": True})

    _action_id, operation = _enforce(django_capture_on_commit_callbacks)

    assert (operation.operation, operation.status, operation.attempts, operation.error) == (
        OperationKind.DELETE_MESSAGE,
        OperationStatus.APPLIED,
        3,
        "",
    )
    assert [r.form["chat_id"] for r, _ in httpserver.log] == [TELEGRAM_GROUP] * 3
    assert operation.action.status == ActionStatus.APPLIED
    assert operation.action.action == ActionKind.WARN


def test_a_refused_call_fails_at_once_and_the_action_shows_why(
    httpserver: HTTPServer, django_capture_on_commit_callbacks: Capture
) -> None:
    _delete(httpserver).respond_with_json(_error(400, "Bad Request: message can't be deleted"), status=400)

    action_id, operation = _enforce(django_capture_on_commit_callbacks)

    assert (operation.status, operation.attempts) == (OperationStatus.FAILED, 1)
    assert "can't be deleted" in operation.error
    operation.action.refresh_from_db()
    assert operation.action.status == ActionStatus.FAILED
    assert operation.action.error.startswith("Telegram: ")
    assert "can't be deleted" in operation.action.error

    # The operator fixes the bot's rights and retries from the admin.
    _delete(httpserver).respond_with_json({"ok": True, "result": True})
    with django_capture_on_commit_callbacks(execute=True):
        assert moderation_operations_retry(action_ids=[action_id]) == 1
    operation.refresh_from_db()
    assert (operation.status, operation.attempts, operation.error) == (OperationStatus.APPLIED, 2, "")
    operation.action.refresh_from_db()
    assert (operation.action.status, operation.action.error) == (ActionStatus.APPLIED, "")


def test_a_call_that_runs_out_of_retries_ends_failed(
    httpserver: HTTPServer, django_capture_on_commit_callbacks: Capture
) -> None:
    httpserver.expect_request(f"/bot{TOKEN}/deleteMessage").respond_with_json(
        _error(502, "Bad Gateway"), status=502
    )

    _action_id, operation = _enforce(django_capture_on_commit_callbacks)

    attempts = OPERATION_BACKOFF.max_attempts
    assert (operation.status, operation.attempts) == (OperationStatus.FAILED, attempts)
    assert operation.error.startswith(f"gave up after {attempts} attempts: ")
    assert len(httpserver.log) == attempts
    operation.action.refresh_from_db()
    assert operation.action.status == ActionStatus.FAILED


def test_a_notice_that_cannot_be_delivered_does_not_fail_the_action(
    httpserver: HTTPServer, django_capture_on_commit_callbacks: Capture
) -> None:
    policy = moderation_policy_get()
    policy.notify_members = True
    policy.save()
    _delete(httpserver).respond_with_json({"ok": True, "result": True})
    httpserver.expect_oneshot_request(f"/bot{TOKEN}/sendMessage").respond_with_json(
        _error(403, "Forbidden: bot can't initiate conversation with a user"), status=403
    )

    with django_capture_on_commit_callbacks(execute=True):
        (action,) = moderation_enforce(message=scam(Platform.TELEGRAM), judgement=removal())

    action.refresh_from_db()
    assert list(PlatformOperation.objects.filter(action=action).values_list("operation", "status")) == [
        (OperationKind.DELETE_MESSAGE, OperationStatus.APPLIED),
        (OperationKind.NOTIFY, OperationStatus.FAILED),
    ]
    assert action.status == ActionStatus.APPLIED
    assert action.error.startswith("notice not delivered: Telegram: ")
    assert "initiate conversation" in action.error
    (notice,) = [r for r, _ in httpserver.log if r.path.endswith("/sendMessage")]
    assert notice.form["chat_id"] == TELEGRAM_ID
    assert "/appeal" in notice.form["text"]
