"""The writers: the template twin over random evidence (length, numbers, determinism, variety, tone), and the
real Anthropic SDK against a fake Messages API on loopback (text, errors mapped, prompt as sent)."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from werkzeug import Response

from apps.core.models import CircuitBreakerState
from apps.core.resilience import PermanentError, RateLimited, RetryPolicy, TransientError
from apps.integrations.llm import (
    SYSTEM_PROMPT,
    THREAD_SEPARATOR,
    AnthropicWriter,
    TemplateWriter,
    allowed_number_tokens,
    format_number,
    get_writer,
    number_tokens,
    split_thread,
    text_length,
    unexpected_numbers,
)
from apps.integrations.types import WritingBrief

EVIDENCE_KEYS: dict[str, list[str]] = {
    "price_move": ["close", "change_pct", "window_hours", "high", "low"],
    "rsi_overbought": ["rsi", "period", "close", "threshold"],
    "rsi_oversold": ["rsi", "period", "close", "threshold"],
    "macd_bullish_cross": ["macd", "signal", "histogram", "close"],
    "macd_bearish_cross": ["macd", "signal", "histogram", "close"],
    "bollinger_breakout_up": ["close", "upper", "lower", "middle", "period", "stddev"],
    "bollinger_breakout_down": ["close", "upper", "lower", "middle", "period", "stddev"],
    "volume_spike": ["volume", "mean_volume", "zscore", "ratio", "close"],
    "sentiment_shift": ["score", "previous_score", "delta", "sample_size"],
}
FORMATS = ["single_post", "x_thread", "telegram_chart_post", "discord_embed", "long_post"]
SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDC", "ETH/BTC", "1INCH/USDT", "PEPE/USDT"]
TONES: list[dict[str, Any]] = [
    {},
    {"opening": "question"},
    {"opening": "statement", "cta": "join"},
    {"emoji": True, "cta": "discuss", "length": "long"},
    {"length": "short", "hashtags": False},
    {"cta": "follow", "opening": "question", "emoji": True},
]

numbers = st.one_of(
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1, max_value=1, allow_nan=False),
    st.integers(min_value=-(10**9), max_value=10**12),
    st.sampled_from([0, 0.0, 1, 70, 0.00001234, 64123.45, -3.5, 1e-9, float("nan"), float("inf")]),
)


@st.composite
def briefs(draw: st.DrawFn) -> WritingBrief:
    insight_type = draw(st.sampled_from(sorted(EVIDENCE_KEYS)))
    keys = draw(st.lists(st.sampled_from(EVIDENCE_KEYS[insight_type]), unique=True))
    evidence: dict[str, Any] = {key: draw(numbers) for key in keys}
    if insight_type == "sentiment_shift" and draw(st.booleans()):
        evidence["source"] = draw(st.sampled_from(["X", "news", "reddit", "r/Bitcoin 2024"]))
    platform = draw(st.sampled_from(["x", "telegram", "discord"]))
    return WritingBrief(
        platform=platform,
        format=draw(st.sampled_from(FORMATS)),
        insight_type=insight_type,
        symbol=draw(st.sampled_from(SYMBOLS)),
        headline="ignored by the template writer",
        evidence=evidence,
        max_chars=draw(
            st.one_of(st.integers(min_value=1, max_value=400), st.sampled_from([280, 1024, 2000]))
        ),
        tone=draw(st.sampled_from(TONES)),
        seed=draw(st.integers(min_value=0, max_value=2**31)),
    )


def _parts(brief: WritingBrief, text: str) -> list[str]:
    return split_thread(text) if brief.format == "x_thread" else [text]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(brief=briefs())
def test_template_posts_fit_use_only_evidence_numbers_and_are_deterministic(brief: WritingBrief) -> None:
    writer = TemplateWriter()

    text = writer.write(brief)

    assert text.strip()
    for part in _parts(brief, text):
        assert text_length(part, brief.platform) <= brief.max_chars
    assert unexpected_numbers(text, brief.evidence, symbol=brief.symbol) == []
    assert writer.write(brief) == text
    if brief.tone.get("opening") == "question":
        # Questions carry no numbers, so the first sentence mark is the question's own (a limit too tight for
        # any sentence leaves none).
        marks = [i for i in (text.find("?"), text.find(".")) if i >= 0]
        assert not marks or text[min(marks)] == "?"


@settings(max_examples=100, deadline=None)
@given(brief=briefs())
def test_template_posts_vary_with_the_seed(brief: WritingBrief) -> None:
    roomy = WritingBrief(
        **{**_as_kwargs(brief), "max_chars": 4000, "format": "single_post", "platform": "discord"}
    )
    texts = {
        TemplateWriter().write(WritingBrief(**{**_as_kwargs(roomy), "seed": seed})) for seed in range(12)
    }
    assert len(texts) >= 2


def _as_kwargs(brief: WritingBrief) -> dict[str, Any]:
    return {name: getattr(brief, name) for name in WritingBrief.__slots__}


@st.composite
def digests(draw: st.DrawFn) -> WritingBrief:
    items = []
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        brief = draw(briefs())
        items.append({"insight_type": brief.insight_type, "symbol": brief.symbol, "evidence": brief.evidence})
    return WritingBrief(
        platform=draw(st.sampled_from(["x", "telegram", "discord"])),
        format="digest",
        insight_type="",
        symbol="",
        headline="",
        evidence={"items": items},
        max_chars=draw(st.integers(min_value=1, max_value=2000)),
        tone=draw(st.sampled_from(TONES)),
        seed=draw(st.integers(min_value=0, max_value=2**31)),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(brief=digests())
def test_digests_fit_and_use_only_evidence_numbers(brief: WritingBrief) -> None:
    text = TemplateWriter().write(brief)

    assert text_length(text, brief.platform) <= brief.max_chars
    assert unexpected_numbers(text, brief.evidence) == []
    assert TemplateWriter().write(brief) == text


def test_a_question_opening_starts_with_the_question() -> None:
    brief = WritingBrief(
        platform="x",
        format="single_post",
        insight_type="rsi_overbought",
        symbol="ETH/USDT",
        headline="",
        evidence={"rsi": 78.4, "period": 14, "close": 3120.5, "threshold": 70},
        max_chars=280,
        tone={"opening": "question"},
        seed=3,
    )
    text = TemplateWriter().write(brief)
    first_sentence_end = min(i for i in (text.find("?"), text.find(".")) if i >= 0)
    assert text[first_sentence_end] == "?"
    assert "78.40" in text
    assert "RSI(14)" in text
    assert "$3,120.50" in text


@pytest.mark.parametrize("seed", range(12))
def test_a_statement_opening_asks_nothing_before_the_finding(seed: int) -> None:
    brief = WritingBrief(
        platform="x",
        format="single_post",
        insight_type="bollinger_breakout_up",
        symbol="BTC/USDT",
        headline="",
        evidence={"close": 105, "upper": 104, "period": 20, "stddev": 2.0},
        max_chars=280,
        tone={"opening": "statement"},
        seed=seed,
    )

    text = TemplateWriter().write(brief)

    assert "?" not in text.split("\n")[0].split(". ")[0]


def test_every_insight_type_reads_well_with_full_evidence() -> None:
    evidence = {
        "price_move": {"close": 64123.45, "change_pct": -5.31, "window_hours": 24},
        "rsi_oversold": {"rsi": 22.1, "period": 14, "close": 0.0000123},
        "bollinger_breakout_up": {"close": 105, "upper": 104, "period": 20, "stddev": 2.0},
        "volume_spike": {"volume": 123456789, "mean_volume": 23456789, "zscore": 4.2},
        "sentiment_shift": {"score": 0.42, "previous_score": -0.1, "delta": 0.52, "sample_size": 240},
    }
    expected = {
        "price_move": ["5.31%", "$64,123.45", "24 hours"],
        "rsi_oversold": ["22.10", "$0.0000123"],
        "bollinger_breakout_up": ["$105.00", "$104.00"],
        "volume_spike": ["123.46M", "23.46M"],
        "sentiment_shift": ["+0.42", "-0.10"],
    }
    for insight_type, numbers_ in evidence.items():
        texts = [
            TemplateWriter().write(
                WritingBrief(
                    platform="telegram",
                    format="single_post",
                    insight_type=insight_type,
                    symbol="BTC/USDT",
                    headline="",
                    evidence=numbers_,
                    max_chars=1024,
                    seed=seed,
                )
            )
            for seed in range(6)
        ]
        for text in texts:
            assert "BTC" in text
            assert "Not financial advice." in text
        # The richest phrasings carry the key numbers.
        assert any(all(value in text for value in expected[insight_type]) for text in texts), texts


def test_thread_parts_are_separate_posts() -> None:
    brief = WritingBrief(
        platform="x",
        format="x_thread",
        insight_type="macd_bullish_cross",
        symbol="SOL/USDT",
        headline="",
        evidence={"macd": 1.25, "signal": 0.98, "histogram": 0.27, "close": 145.2},
        max_chars=280,
        seed=1,
    )
    parts = split_thread(TemplateWriter().write(brief))
    assert len(parts) >= 3
    assert all(THREAD_SEPARATOR not in part and len(part) <= 280 for part in parts)


def test_digest_lists_each_insight_within_the_limit() -> None:
    items = [
        {
            "insight_type": "price_move",
            "symbol": "BTC/USDT",
            "evidence": {"change_pct": 4.2, "window_hours": 168},
        },
        {"insight_type": "rsi_oversold", "symbol": "ETH/USDT", "evidence": {"rsi": 27.5}},
        {"insight_type": "volume_spike", "symbol": "SOL/USDT", "evidence": {"volume": 5.2e6, "ratio": 3.1}},
    ]
    brief = WritingBrief(
        platform="telegram",
        format="digest",
        insight_type="",
        symbol="",
        headline="",
        evidence={"items": items},
        max_chars=1024,
    )
    text = TemplateWriter().write(brief)
    assert "BTC up 4.20% over the last 168 hours" in text
    assert "ETH RSI at 27.50, oversold" in text
    assert "SOL volume 5.20M, 3.1x normal" in text
    assert unexpected_numbers(text, brief.evidence) == []
    tight = TemplateWriter().write(WritingBrief(**{**_as_kwargs(brief), "max_chars": 90}))
    assert len(tight) <= 90
    assert "BTC" in tight


def test_number_helpers_agree_with_each_other() -> None:
    assert format_number(64123.456, "price") == "64,123.46"
    assert format_number(0.00001234, "price") == "0.00001234"
    assert format_number(-3.456, "percent") == "-3.46%"
    assert format_number(-3.456, "percent_abs") == "3.46%"
    assert format_number(123_456_789, "volume") == "123.46M"
    assert format_number(2.0, "plain") == "2"
    assert format_number(0.42, "score") == "+0.42"
    assert number_tokens("BTC at $64,123.46, up +3.46% on 1.2M, RSI(14).") == [
        "64,123.46",
        "+3.46%",
        "1.2M",
        "14",
    ]
    evidence = {"close": 64123.456, "change_pct": 3.456, "rsi": 71.234}
    assert {"64,123.46", "3.46%", "71.23"} <= allowed_number_tokens(evidence)
    assert unexpected_numbers("BTC at 64,123.46, RSI 71.23, target 70,000", evidence) == ["70,000"]
    assert text_length("up 📈 https://example.com/a/very/long/path/that/is/long", "x") == 3 + 2 + 1 + 23
    assert text_length("up 📈", "telegram") == 4


# --- Anthropic ----------------------------------------------------------------------------------------------

BRIEF = WritingBrief(
    platform="x",
    format="single_post",
    insight_type="price_move",
    symbol="BTC/USDT",
    headline="BTC up 3.4% in 24h",
    evidence={"close": 64123.45, "change_pct": 3.4, "window_hours": 24},
    max_chars=280,
    tone={"opening": "question", "cta": "discuss"},
)


def _message(text: str) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-5-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 312, "output_tokens": 48},
    }


def _writer(httpserver: HTTPServer, attempts: int = 1) -> AnthropicWriter:
    return AnthropicWriter(
        api_key="sk-ant-test",
        model="claude-sonnet-5-5",
        base_url=httpserver.url_for("/").rstrip("/"),
        policy=RetryPolicy(max_attempts=attempts, base_delay=0.0, max_delay=0.0),
    )


def _error(status: int, kind: str, headers: dict[str, str] | None = None) -> Response:
    body = {"type": "error", "error": {"type": kind, "message": kind.replace("_", " ")}}
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


@pytest.mark.django_db
def test_anthropic_returns_the_text_and_sends_the_brief(httpserver: HTTPServer) -> None:
    text = "Did you see BTC? Up 3.40% over the last 24 hours at $64,123.45. What's your read?"
    httpserver.expect_oneshot_request("/v1/messages", method="POST").respond_with_json(_message(text))

    assert _writer(httpserver).write(BRIEF) == text

    request = next(r for r, _ in httpserver.log if r.path == "/v1/messages")
    body = request.get_json()
    assert request.headers["Authorization"] == "Bearer sk-ant-test"
    assert body["model"] == "claude-sonnet-5-5"
    assert body["system"] == SYSTEM_PROMPT
    assert body["max_tokens"] == 280
    prompt = body["messages"][0]["content"]
    assert body["messages"][0]["role"] == "user"
    for line in ("close: 64,123.45", "change_pct: +3.40%", "window_hours: 24", "Open with a question."):
        assert line in prompt
    assert "at most 280 characters" in prompt


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "kind"), [(529, "overloaded_error"), (500, "api_error")])
def test_anthropic_overload_and_server_errors_are_transient(
    httpserver: HTTPServer, status: int, kind: str
) -> None:
    httpserver.expect_request("/v1/messages").respond_with_response(_error(status, kind))

    with pytest.raises(TransientError) as caught:
        _writer(httpserver).write(BRIEF)

    assert not isinstance(caught.value, RateLimited)
    assert len(httpserver.log) == 1  # the SDK's own retries are off
    assert CircuitBreakerState.objects.get(service="llm").consecutive_failures == 1


@pytest.mark.django_db
def test_anthropic_retries_a_transient_error_then_succeeds(httpserver: HTTPServer) -> None:
    httpserver.expect_ordered_request("/v1/messages").respond_with_response(_error(529, "overloaded_error"))
    httpserver.expect_ordered_request("/v1/messages").respond_with_json(_message("BTC at $64,123.45."))

    assert _writer(httpserver, attempts=2).write(BRIEF) == "BTC at $64,123.45."
    assert CircuitBreakerState.objects.get(service="llm").consecutive_failures == 0


@pytest.mark.django_db
def test_anthropic_rate_limit_carries_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/messages").respond_with_response(
        _error(429, "rate_limit_error", {"retry-after": "17"})
    )

    with pytest.raises(RateLimited) as caught:
        _writer(httpserver).write(BRIEF)

    assert caught.value.retry_after == 17.0
    # Being told to wait is not an outage.
    assert CircuitBreakerState.objects.get(service="llm").consecutive_failures == 0


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request_error"), (401, "authentication_error")])
def test_anthropic_client_errors_are_permanent(httpserver: HTTPServer, status: int, kind: str) -> None:
    httpserver.expect_request("/v1/messages").respond_with_response(_error(status, kind))

    with pytest.raises(PermanentError):
        _writer(httpserver, attempts=3).write(BRIEF)

    assert len(httpserver.log) == 1


@pytest.mark.django_db
def test_anthropic_unreachable_is_transient() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    writer = AnthropicWriter(
        api_key="k", model="m", base_url=f"http://127.0.0.1:{port}", policy=RetryPolicy(max_attempts=1)
    )

    with pytest.raises(TransientError, match="unreachable"):
        writer.write(BRIEF)


def test_get_writer_follows_the_setting(settings: Any) -> None:
    settings.LLM_BACKEND = "templates"
    assert isinstance(get_writer(), TemplateWriter)

    settings.LLM_BACKEND = "anthropic"
    settings.ANTHROPIC_API_KEY = ""
    with pytest.raises(ImproperlyConfigured, match="ANTHROPIC_API_KEY"):
        get_writer()

    settings.ANTHROPIC_API_KEY = "sk-ant-x"
    settings.ANTHROPIC_MODEL = "claude-sonnet-5-5"
    settings.ANTHROPIC_BASE_URL = "http://127.0.0.1:9"
    writer = get_writer()
    assert isinstance(writer, AnthropicWriter)
    assert writer.model == "claude-sonnet-5-5"
    assert str(writer.client.base_url).startswith("http://127.0.0.1:9")
