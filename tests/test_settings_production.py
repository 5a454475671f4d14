"""Production settings as they run: ``manage.py`` in a fresh process with DJANGO_ENV=production."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.deploy

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HOST = "coinlink.example"


@pytest.fixture
def production_env(tmp_path: Path) -> dict[str, str]:
    """The parent's environment (PATH, REDIS_URL, ...) with the production variables on top."""
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(48),  # 64 characters
            "ALLOWED_HOSTS": HOST,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'production.sqlite3'}",
            # Asked for and ignored: production never runs with DEBUG on.
            "DEBUG": "true",
            # Dummies: nothing here calls Stripe, but production refuses to start without them (and refuses
            # test-mode keys). Assembled, so no scanner takes a dummy for a leaked key.
            "STRIPE_SECRET_KEY": "sk_" + "live_" + secrets.token_hex(12),
            "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
        }
    )
    # Knobs that loosen the hardening keep their defaults here: the defaults are what these tests pin down.
    for knob in (
        "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS",
        "LOG_FORMAT",
        "STRIPE_ALLOW_TEST_KEYS",
        "STRIPE_PUBLISHABLE_KEY",
        "API_DOCS_PUBLIC",
    ):
        env.pop(knob, None)
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_deploy_check_passes_without_a_single_warning(production_env: dict[str, str]) -> None:
    result = _manage(production_env, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


def test_production_hardening_is_on(production_env: dict[str, str]) -> None:
    names = [
        "DEBUG",
        "ALLOWED_HOSTS",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_SSL_REDIRECT",
        "SECURE_REDIRECT_EXEMPT",
        "SECURE_HSTS_SECONDS",
        "LOG_FORMAT",
        "API_DOCS_PUBLIC",
        "STRIPE_ALLOW_TEST_KEYS",
    ]
    script = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {names!r}}}))"
    )

    result = _manage(production_env, "shell", "-c", script)

    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {
        "DEBUG": False,
        "ALLOWED_HOSTS": [HOST],
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        # The health report and the metrics answer over plain HTTP, for probes and scrapers that call a process directly.
        "SECURE_REDIRECT_EXEMPT": ["^health/$", "^metrics$"],
        "SECURE_HSTS_SECONDS": 31536000,
        "LOG_FORMAT": "json",
        "API_DOCS_PUBLIC": False,
        "STRIPE_ALLOW_TEST_KEYS": False,
    }


def test_refuses_to_start_without_a_secret_key(production_env: dict[str, str]) -> None:
    # Empty rather than unset, so a developer's .env cannot fill it in behind the test's back.
    production_env["SECRET_KEY"] = ""

    result = _manage(production_env, "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_refuses_a_short_secret_key(production_env: dict[str, str]) -> None:
    production_env["SECRET_KEY"] = secrets.token_hex(16)

    result = _manage(production_env, "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY" in result.stderr


def test_refuses_the_development_secret_key_committed_in_settings(production_env: dict[str, str]) -> None:
    committed = re.search(
        r'"(dev-insecure-[0-9a-f]+)"', (PROJECT_ROOT / "coinlink" / "settings.py").read_text()
    )
    assert committed is not None
    production_env["SECRET_KEY"] = committed[1]

    result = _manage(production_env, "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "production refuses the development SECRET_KEY" in result.stderr


def test_refuses_allowed_hosts_star(production_env: dict[str, str]) -> None:
    production_env["ALLOWED_HOSTS"] = f"{HOST},*"

    result = _manage(production_env, "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "production refuses ALLOWED_HOSTS=*" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRIPE_SECRET_KEY", "sk_test_" + "0" * 24),
        ("STRIPE_SECRET_KEY", "rk_test_" + "0" * 24),
        ("STRIPE_PUBLISHABLE_KEY", "pk_test_" + "0" * 24),
    ],
    ids=["secret", "restricted", "publishable"],
)
def test_refuses_stripe_test_keys(production_env: dict[str, str], name: str, value: str) -> None:
    production_env[name] = value

    result = _manage(production_env, "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{name} is a Stripe test-mode key" in result.stderr
    assert "STRIPE_ALLOW_TEST_KEYS" in result.stderr


def test_stripe_test_keys_when_a_test_mode_deployment_is_meant(production_env: dict[str, str]) -> None:
    production_env["STRIPE_SECRET_KEY"] = "sk_test_" + "0" * 24
    production_env["STRIPE_ALLOW_TEST_KEYS"] = "true"

    result = _manage(production_env, "check")

    assert result.returncode == 0, result.stderr


def test_refuses_a_webhook_secret_that_is_no_signing_secret(production_env: dict[str, str]) -> None:
    production_env["STRIPE_WEBHOOK_SECRET"] = secrets.token_hex(16)

    result = _manage(production_env, "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret" in result.stderr


def test_the_api_schema_and_docs_are_staff_only(production_env: dict[str, str]) -> None:
    script = (
        "import json; from django.test import Client; c = Client(); "
        f"print(json.dumps([c.get(u, HTTP_HOST='{HOST}', secure=True).status_code "
        "for u in ['/api/schema/', '/api/docs/', '/api/redoc/']]))"
    )

    result = _manage(production_env, "shell", "-c", script)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [403, 403, 403]


def test_refuses_to_start_without_allowed_hosts(production_env: dict[str, str]) -> None:
    production_env["ALLOWED_HOSTS"] = ""

    result = _manage(production_env, "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "ALLOWED_HOSTS" in result.stderr


@pytest.mark.parametrize("name", ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"])
def test_refuses_to_start_without_its_stripe_secrets(production_env: dict[str, str], name: str) -> None:
    production_env[name] = ""

    result = _manage(production_env, "check")

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr


def test_only_the_health_report_answers_over_plain_http(production_env: dict[str, str]) -> None:
    script = (
        "import json; from django.test import Client; c = Client(); "
        f"h = c.get('/health/', HTTP_HOST='{HOST}'); a = c.get('/admin/', HTTP_HOST='{HOST}'); "
        "print(json.dumps([h.status_code, h['Content-Type'], a.status_code, a.get('Location')]))"
    )

    result = _manage(production_env, "shell", "-c", script)

    assert result.returncode == 0, result.stderr
    health_status, content_type, admin_status, location = json.loads(result.stdout.strip().splitlines()[-1])
    assert (health_status, content_type) == (200, "application/json")
    assert (admin_status, location) == (301, f"https://{HOST}/admin/")
