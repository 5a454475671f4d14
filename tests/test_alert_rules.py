"""The alert rules in ops/prometheus are valid Prometheus rules, and their unit tests (alerts.test.yml) pass:
each alert fires on the series that should trip it and stays quiet on the others. Needs ``promtool`` (Debian's
``prometheus`` package, which .ci/run installs): skipped without it, a failure in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parent.parent / "ops" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must check the alert rules: install promtool (apt-get install prometheus)")
        pytest.skip("needs promtool (apt-get install prometheus)")
    return path


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - promtool from PATH with fixed arguments
        [promtool, *args], cwd=RULES, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_alert_rules_are_valid(promtool: str) -> None:
    result = _run(promtool, "check", "rules", "alerts.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


def test_the_alerts_fire_when_and_only_when_they_should(promtool: str) -> None:
    result = _run(promtool, "test", "rules", "alerts.test.yml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    rules = (RULES / "alerts.yml").read_text()
    tests = (RULES / "alerts.test.yml").read_text()
    alerts = {
        line.split(":", 1)[1].strip() for line in rules.splitlines() if line.strip().startswith("- alert:")
    }

    assert len(alerts) == 12
    tested = {
        line.split(":", 1)[1].strip() for line in tests.splitlines() if line.strip().startswith("alertname:")
    }
    assert alerts == tested
