"""Suite-wide fixtures and the rule that CI never skips the real PostgreSQL, Redis and browser tests."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest
from django.conf import settings


def _uses_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _browser_available() -> bool:
    """Debian's headless Chromium with its chromedriver, and Selenium to drive them."""
    return bool(
        shutil.which("chromium") and shutil.which("chromedriver") and importlib.util.find_spec("selenium")
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    in_ci = bool(os.environ.get("CI"))
    for item in items:
        for marker, available, needs, failure in (
            ("postgres", _uses_postgres(), "DATABASE_URL", "_fail_missing_service"),
            ("redis", bool(settings.REDIS_URL), "REDIS_URL", "_fail_missing_service"),
            ("browser", _browser_available(), "chromium, chromedriver and selenium", "_fail_missing_browser"),
        ):
            if item.get_closest_marker(marker) and not available:
                if in_ci:
                    # In CI a missing service is an error, never a skip.
                    item.fixturenames.insert(0, failure)  # type: ignore[attr-defined]
                else:
                    item.add_marker(pytest.mark.skip(reason=f"needs {needs}"))


@pytest.fixture
def _fail_missing_service(request: pytest.FixtureRequest) -> None:
    pytest.fail("CI must run this test against the real service; its URL variable is unset")


@pytest.fixture
def _fail_missing_browser(request: pytest.FixtureRequest) -> None:
    pytest.fail(
        "CI must run the browser tests: install chromium and chromium-driver (apt) and selenium (the dev extras)"
    )


@pytest.fixture(autouse=True)
def _media_root(settings: object, tmp_path_factory: pytest.TempPathFactory) -> None:
    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")  # type: ignore[attr-defined]
    settings.PRIVATE_MEDIA_ROOT = tmp_path_factory.mktemp("private-media")  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: object) -> None:
    # The production hasher is deliberately slow; tests only need hashing to round-trip.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _no_pipeline_schedule(settings: object) -> None:
    # The pipeline is scheduled by default (AGENT_PIPELINE_SCHEDULE); tests see only the schedules they make,
    # and the test of the default sets it back.
    settings.AGENT_PIPELINE_SCHEDULE = ""  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    # With REDIS_URL the cache is shared and outlives a test: throttle counters and the like must not leak.
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _eager_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks run in the test's own process, as on the embedded default, even when the suite runs with
    REDIS_URL (CI): a ``.delay()`` must not vanish into a broker no worker reads. The tests of the real
    broker path start their own worker and switch this off."""
    from coinlink.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)
