"""Every surface works under the Content-Security-Policy, in a real browser against a real daphne process.

An operator signs in to the admin, opens a changelist and a form, the live dashboard (whose websocket must
connect: daphne serves it, as in production), Swagger UI and ReDoc, and the portal. On each page the browser
reports no CSP violation (neither as a ``securitypolicyviolation`` event nor in the console) and the page's
scripts did their work: the dashboard says it is live, Swagger UI and ReDoc drew the schema. One check proves the
listener sees violations at all: an inline script without the nonce is refused and reported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import free_port, running

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent.parent
EMAIL = "operator@coinlink.example"
PASSWORD = "Csp-Operator-Password-42"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)
# Runs before any of the page's own scripts, in every document: CSP cannot block it, and it records what the
# policy refused.
VIOLATION_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.effectiveDirective + " refused " + (event.blockedURI || "inline"));
});
"""


REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CI"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="coinlink.settings",
        DJANGO_ENV="test",
        # Static files served by the app itself (development's way), from a collected STATIC_ROOT.
        DEBUG="true",
        STATIC_ROOT=str(tmp_path / "static"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'csp.sqlite3'}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        AGENTS_RUN_IN_PROCESS="false",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        DJANGO_SUPERUSER_EMAIL=EMAIL,
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(  # noqa: S603 - our own interpreter and manage.py with fixed arguments
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, timeout=300, capture_output=True
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """daphne, as the web process runs in production, on a migrated SQLite file with one operator."""
    env = _environment(tmp_path)
    (tmp_path / "prometheus").mkdir()
    _manage(env, "migrate", "--noinput", "-v0")
    _manage(env, "collectstatic", "--noinput", "-v0")
    _manage(env, "createsuperuser", "--noinput")
    port = free_port()
    daphne = ["daphne", "-b", "127.0.0.1", "-p", str(port), "coinlink.asgi:application"]
    with running(daphne, env, tmp_path / "daphne.log", port=port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    # Imported here: without Selenium the module still collects, and the browser marker skips it (or, in CI,
    # fails it).
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": VIOLATION_RECORDER})
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def _violations(driver: Any) -> list[str]:
    """What the policy refused on the current page, from the page's events and from the console."""
    recorded = list(driver.execute_script("return window.__cspViolations || [];"))
    console = [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]
    return recorded + console


def _wait_for(driver: Any, xpath: str, timeout: float = 20) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        expected_conditions.presence_of_element_located((By.XPATH, xpath))
    )


def test_every_surface_works_under_the_policy(browser: Any, server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # The admin: sign in, a changelist, a form with the admin's own scripts.
    browser.get(f"{server}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys(EMAIL)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.XPATH, "//input[@type='submit']").click()
    _wait_for(browser, "//a[contains(@href, '/admin/logout/')] | //form[@id='logout-form']")
    assert _violations(browser) == []
    for path in ("/admin/accounts/user/", "/admin/accounts/user/add/", "/admin/agents/agentconfig/"):
        browser.get(f"{server}{path}")
        _wait_for(browser, "//div[@id='content']")
        assert _violations(browser) == [], path

    # The live dashboard: its script opens the websocket to this host, and says so once it is open.
    browser.get(f"{server}/dashboard/")
    WebDriverWait(browser, 20).until(
        lambda driver: driver.find_element(By.CSS_SELECTOR, "[data-live-status]").text.startswith("Live:")
    )
    assert _violations(browser) == []

    # Swagger UI and ReDoc, from our static files: each fetches the schema and draws it.
    browser.get(f"{server}/api/docs/")
    title = _wait_for(browser, "//div[contains(@class, 'swagger-ui')]//h1[contains(@class, 'title')]")
    assert "CoinLink API" in title.text
    _wait_for(browser, "//*[contains(@class, 'opblock-tag')]")
    assert _violations(browser) == []

    browser.get(f"{server}/api/redoc/")
    heading = _wait_for(browser, "//div[@id='redoc-container']//h1 | //redoc//h1")
    assert "CoinLink API" in heading.text
    _wait_for(browser, "//*[normalize-space()='API docs by Redocly']")
    # The one refusal the policy is meant to make here: ReDoc's attribution logo, fetched from Redocly's CDN
    # (ReDoc hides the image when it does not load). Everything the page needs is our own.
    assert [v for v in _violations(browser) if REDOCLY_LOGO not in v] == []

    # The portal.
    for path in ("/", "/plans/", "/library/", "/account/"):
        browser.get(f"{server}{path}")
        _wait_for(browser, "//h1")
        assert _violations(browser) == [], path


def test_the_policy_is_enforced_and_seen(browser: Any, server: str) -> None:
    browser.get(f"{server}/")
    _wait_for(browser, "//h1")

    # An inline script without the response's nonce, as an injection would add one.
    browser.execute_script(
        "var s = document.createElement('script'); s.textContent = 'window.__ran = true;';"
        "document.body.appendChild(s);"
    )

    assert browser.execute_script("return window.__ran === true;") is False
    assert any(v.startswith("script-src-elem refused inline") for v in _violations(browser))
