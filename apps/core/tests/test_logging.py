"""Structured logging: JSON lines with the request id, and the id carried from the request to its logs."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from pytest_django.fixtures import Settings as DjangoSettings

from apps.core.logging import JsonFormatter, RequestIdFilter, request_id_var
from apps.core.middleware import RequestIdMiddleware

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


class _Capture:
    """A logger wired the way settings.LOGGING wires the console handler: the filter, then the formatter."""

    def __init__(self, logger: logging.Logger, stream: io.StringIO, handler: logging.Handler) -> None:
        self.logger = logger
        self.stream = stream
        self.handler = handler

    def lines(self) -> list[dict[str, object]]:
        text = self.stream.getvalue()
        assert text.endswith("\n")
        return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def capture() -> Iterator[_Capture]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("coinlink.test.logging")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield _Capture(logger, stream, handler)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_one_json_object_per_line_with_the_standard_fields_and_extras(capture: _Capture) -> None:
    capture.logger.info("agent %s finished", "market_scanner", extra={"agent": "market_scanner", "rows": 12})
    capture.logger.warning("two\nlines stay on one", extra={"at": datetime(2025, 3, 1)})

    first, second = capture.lines()

    assert set(first) == {"time", "level", "logger", "message", "request_id", "agent", "rows"}
    assert first["level"] == "INFO"
    assert first["logger"] == "coinlink.test.logging"
    assert first["message"] == "agent market_scanner finished"
    assert first["request_id"] == "-"
    assert (first["agent"], first["rows"]) == ("market_scanner", 12)
    logged_at = datetime.fromisoformat(str(first["time"]))
    assert logged_at.utcoffset() is not None
    assert logged_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    # Values JSON cannot hold are written as text rather than breaking the line.
    assert second["message"] == "two\nlines stay on one"
    assert second["at"] == "2025-03-01 00:00:00"


def test_an_exception_is_kept_inside_its_line(capture: _Capture) -> None:
    try:
        raise ValueError("bad tick")
    except ValueError:
        capture.logger.exception("ingest failed")

    (line,) = capture.lines()

    assert line["level"] == "ERROR"
    assert line["message"] == "ingest failed"
    assert "ValueError: bad tick" in str(line["exception"])


def test_the_request_id_in_context_lands_on_the_line(capture: _Capture) -> None:
    token = request_id_var.set("req-12345678")
    try:
        capture.logger.info("inside")
    finally:
        request_id_var.reset(token)
    capture.logger.info("outside")

    inside, outside = capture.lines()
    assert inside["request_id"] == "req-12345678"
    assert outside["request_id"] == "-"


def _middleware(logger: logging.Logger) -> RequestIdMiddleware:
    def view(request: HttpRequest) -> HttpResponse:
        logger.info("handling %s", request.path)
        return HttpResponse("ok")

    return RequestIdMiddleware(view)


def test_a_sane_incoming_id_is_honoured_and_on_the_logs(capture: _Capture) -> None:
    request = RequestFactory().get("/x/", headers={"X-Request-ID": "trace-0123456789.abc_DEF"})

    response = _middleware(capture.logger)(request)

    assert response["X-Request-ID"] == "trace-0123456789.abc_DEF"
    (line,) = capture.lines()
    assert line["message"] == "handling /x/"
    assert line["request_id"] == "trace-0123456789.abc_DEF"
    assert request_id_var.get() == "-"


@pytest.mark.parametrize(
    "incoming",
    [
        "short",
        "x" * 65,
        "has space in it",
        "new\nline-injected",
        "semi;colon;value",
        "",
    ],
)
def test_an_insane_or_missing_id_is_replaced(capture: _Capture, incoming: str) -> None:
    headers = {"X-Request-ID": incoming} if incoming else {}
    request = RequestFactory().get("/x/", headers=headers)

    response = _middleware(capture.logger)(request)

    request_id = response["X-Request-ID"]
    assert GENERATED_ID.match(request_id)
    assert request.request_id == request_id  # type: ignore[attr-defined]
    (line,) = capture.lines()
    assert line["request_id"] == request_id


def test_each_request_gets_its_own_id(capture: _Capture) -> None:
    middleware = _middleware(capture.logger)

    ids = {middleware(RequestFactory().get("/x/"))["X-Request-ID"] for _ in range(3)}

    assert len(ids) == 3


@pytest.mark.django_db
def test_through_the_site_the_id_reaches_logs_written_in_other_threads(
    client: Client, settings: DjangoSettings, caplog: pytest.LogCaptureFixture
) -> None:
    # A cache that refuses makes /health/ log a warning from its probe thread.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    caplog.handler.addFilter(RequestIdFilter())

    with caplog.at_level(logging.WARNING, logger="apps.core.health"):
        response = client.get("/health/", headers={"X-Request-ID": "monitor-probe-0001"})

    assert response["X-Request-ID"] == "monitor-probe-0001"
    cache_records = [r for r in caplog.records if r.getMessage().startswith("health check cache failed")]
    assert [r.request_id for r in cache_records] == ["monitor-probe-0001"]  # type: ignore[attr-defined]
