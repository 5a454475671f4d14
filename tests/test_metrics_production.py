"""/metrics under the real production settings (a fresh Python process with DJANGO_ENV=production): closed
to everyone by default, open to the configured token and addresses, and a short token refused at start."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parent.parent
TOKEN = secrets.token_urlsafe(32)
# Asks /metrics from a given address, with or without the token, and prints the status code.
PROBE = """
import django

django.setup()
from django.test import Client
for address, auth in (("127.0.0.1", ""), ("10.1.2.3", ""), ("127.0.0.1", "Bearer wrong"), ("127.0.0.1", "Bearer {token}")):
    response = Client(REMOTE_ADDR=address).get(
        "/metrics", HTTP_HOST="coinlink.example", HTTP_AUTHORIZATION=auth, secure=True
    )
    print(address, auth[:8], response.status_code)
"""


def _manage(tmp_path: Path, code: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("METRICS_", "PROMETHEUS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="coinlink.settings",
        DJANGO_ENV="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        ALLOWED_HOSTS="coinlink.example",
        DATABASE_URL=f"sqlite:///{tmp_path / 'production.sqlite3'}",
        # Dummies, assembled so no scanner takes one for a leaked key.
        STRIPE_SECRET_KEY="sk_" + "live_" + secrets.token_hex(12),
        STRIPE_WEBHOOK_SECRET="whsec_" + secrets.token_hex(16),
        **extra,
    )
    return subprocess.run(  # noqa: S603 - our own interpreter with fixed code
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_closes_metrics_to_everyone_by_default(tmp_path: Path) -> None:
    result = _manage(tmp_path, PROBE.format(token=TOKEN))

    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.split("\n")[:4]
        == [
            "127.0.0.1  403",  # not even loopback
            "10.1.2.3  403",
            "127.0.0.1 Bearer w 403",
            "127.0.0.1 Bearer " + TOKEN[:1] + " 403",  # no token is configured, so none is right
        ]
    )


def test_production_opens_metrics_to_its_token_and_its_addresses(tmp_path: Path) -> None:
    result = _manage(
        tmp_path, PROBE.format(token=TOKEN), METRICS_TOKEN=TOKEN, METRICS_ALLOWED_IPS="10.0.0.0/8"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:4] == [
        "127.0.0.1  403",
        "10.1.2.3  200",
        "127.0.0.1 Bearer w 403",
        "127.0.0.1 Bearer " + TOKEN[:1] + " 200",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("METRICS_TOKEN", "short-token", "METRICS_TOKEN must be 32 characters or more in production"),
        ("METRICS_ALLOWED_IPS", "10.0.0.0/8,intranet", "METRICS_ALLOWED_IPS must list addresses or networks"),
    ],
)
def test_production_refuses_a_weak_token_or_a_bad_address(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    result = _manage(tmp_path, "import django; django.setup(); print('started')", **{variable: value})

    assert result.returncode != 0
    assert "started" not in result.stdout
    assert message in result.stderr
