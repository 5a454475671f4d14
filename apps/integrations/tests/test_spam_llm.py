"""The LLM's second opinion on borderline moderation cases: Anthropic's SDK against a fake on loopback, and the
template twin, which has no opinion."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from pytest_httpserver import HTTPServer
from werkzeug import Response

from apps.core.resilience import PermanentError, RetryPolicy, TransientError
from apps.integrations.spam_llm import AnthropicSpamJudge, get_spam_judge, parse_answer, template_spam_judge


def _message(text: str) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 120, "output_tokens": 20},
    }


def _judge(httpserver: HTTPServer) -> AnthropicSpamJudge:
    return AnthropicSpamJudge(
        api_key="sk-ant-test",
        model="claude-sonnet-5-5",
        base_url=httpserver.url_for("/").rstrip("/"),
        policy=RetryPolicy(max_attempts=1),
    )


def test_parse_answer() -> None:
    assert parse_answer('{"spam": true, "confidence": 0.8, "reason": "fake support"}') == (
        True,
        0.8,
        "fake support",
    )
    assert parse_answer('Sure: {"spam": false, "confidence": 7}') == (False, 1.0, "")
    assert parse_answer("I think it is spam") is None
    assert parse_answer('{"spam": "yes"}') is None


@pytest.mark.django_db
def test_anthropic_answers_through_the_sdk(httpserver: HTTPServer) -> None:
    answer = '{"spam": true, "confidence": 0.92, "reason": "asks people to DM fake support"}'
    httpserver.expect_oneshot_request("/v1/messages", method="POST").respond_with_json(_message(answer))
    assert _judge(httpserver)("contact support on whatsapp") == (True, 0.92, "asks people to DM fake support")
    [(request, _)] = httpserver.log
    body = json.loads(request.data)
    assert body["model"] == "claude-sonnet-5-5"
    assert "contact support on whatsapp" in body["messages"][0]["content"]
    assert "crypto community" in body["system"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "error"), [(529, TransientError), (500, TransientError), (400, PermanentError)]
)
def test_anthropic_errors_are_classified(httpserver: HTTPServer, status: int, error: type[Exception]) -> None:
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "overloaded"}}
    httpserver.expect_request("/v1/messages").respond_with_response(
        Response(json.dumps(body), status=status, content_type="application/json")
    )
    with pytest.raises(error):
        _judge(httpserver)("hello")


def test_choice_by_settings(settings: Any) -> None:
    settings.LLM_BACKEND = "templates"
    assert get_spam_judge() is template_spam_judge
    assert template_spam_judge("anything") is None
    settings.LLM_BACKEND = "anthropic"
    settings.ANTHROPIC_API_KEY = ""
    with pytest.raises(ImproperlyConfigured):
        get_spam_judge()
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    assert isinstance(get_spam_judge(), AnthropicSpamJudge)
