"""A member's journey in a real browser (Debian's headless Chromium driven by Selenium) against the live app:
sign up, choose a plan, pay on the checkout twin, read a members' piece; then the membership is cancelled at
the period's end, the period ends, and the same page refuses them.

The cancellation arrives as Stripe would report it, through the billing services a webhook calls. The app
serves from a thread of this process (``live_server``), so moving the clock with time_machine moves it for
the server too. The member stays signed in across the month (a long session), so the refusal is the
entitlement ledger's, not an expired session's.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.utils import timezone
from pytest_django.fixtures import Settings as DjangoSettings
from pytest_django.live_server_helper import LiveServer

from apps.billing.factories import PlanFactory, PlanPriceFactory
from apps.billing.models import Entitlement, Subscription
from apps.billing.services.entitlements import entitlements_expire_due
from apps.billing.services.subscriptions import subscription_sync_from_stripe
from apps.content.factories import ExclusiveContentFactory

pytestmark = pytest.mark.browser

EMAIL = "new.member@example.com"
PASSWORD = "Correct-Horse-Battery-42"
BODY = "Divergence between price and RSI on the daily chart is the tell this playbook is built around."
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


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    # Imported here: without Selenium the module still collects, and the browser marker skips it (or, in CI,
    # fails it).
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    # Both paths given, so Selenium never looks for (or downloads) a browser of its own.
    options.binary_location = "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    # The performance log carries each response's status code, which WebDriver does not expose.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def _status_of(driver: Any, url: str) -> int | None:
    """The HTTP status of the last document response for ``url`` since the log was last read."""
    status = None
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived" and message["params"]["type"] == "Document":
            response = message["params"]["response"]
            if response["url"] == url:
                status = response["status"]
    return status


def _stripe_subscription(sub: Subscription, **changes: Any) -> dict[str, Any]:
    """The subscription as ``GET /v1/subscriptions/{id}`` returns it (the billing period on its item)."""
    assert sub.price is not None
    assert sub.current_period_start is not None
    assert sub.current_period_end is not None
    return {
        "id": sub.stripe_subscription_id,
        "object": "subscription",
        "customer": sub.stripe_customer_id,
        "status": sub.status,
        "cancel_at": None,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "canceled_at": None,
        "ended_at": None,
        "trial_end": None,
        "metadata": {"user_id": str(sub.user_id)},
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_e2e",
                    "object": "subscription_item",
                    "current_period_start": int(sub.current_period_start.timestamp()),
                    "current_period_end": int(sub.current_period_end.timestamp()),
                    "price": {
                        "id": sub.price.stripe_price_id,
                        "object": "price",
                        "product": sub.plan.stripe_product_id,
                        "recurring": {"interval": sub.price.interval, "interval_count": 1},
                    },
                    "quantity": 1,
                }
            ],
        },
        **changes,
    }


def test_member_signs_up_pays_reads_and_loses_access_when_the_period_ends(
    browser: Any, live_server: LiveServer, settings: DjangoSettings, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    # The twin sends the member back to SITE_URL, which must be this server.
    settings.SITE_URL = live_server.url
    settings.SESSION_COOKIE_AGE = 60 * 60 * 24 * 90
    plan = PlanFactory.create(slug="pro", name="Pro", trial_days=0, entitlement_keys=["portal.premium"])
    PlanPriceFactory.create(plan=plan, amount_minor=2900)
    piece = ExclusiveContentFactory.create(
        slug="rsi-divergence-playbook",
        title="The RSI divergence playbook",
        summary="How to read RSI divergences without getting faked out.",
        body=BODY,
    )
    piece_url = f"{live_server.url}/library/{piece.slug}/"

    # Sign up with an email and a password.
    browser.get(f"{live_server.url}/accounts/signup/")
    browser.find_element(By.NAME, "email").send_keys(EMAIL)
    browser.find_element(By.NAME, "password1").send_keys(PASSWORD)
    browser.find_element(By.NAME, "password2").send_keys(PASSWORD)
    browser.find_element(By.XPATH, "//form[.//input[@name='password2']]//button[@type='submit']").click()
    browser.find_element(By.XPATH, "//button[normalize-space()='Log out']")

    # Choose the plan, then pay on the checkout twin.
    browser.get(f"{live_server.url}/plans/")
    browser.find_element(
        By.XPATH,
        "//form[@action='/plans/pro/checkout/'][.//input[@name='interval' and @value='month']]//button",
    ).click()
    # A click only dispatches the form's POST: wait for the browser to land on the next page.
    _wait_for_url(browser, "/billing/twin/checkout/cs_twin_")
    assert "Subscribe to Pro" in browser.find_element(By.TAG_NAME, "h1").text
    browser.find_element(By.XPATH, "//button[normalize-space()='Pay (test)']").click()

    # Back on the success page, with access.
    _wait_for_url(browser, "/billing/success/?session_id=cs_twin_")
    assert browser.current_url.startswith(f"{live_server.url}/billing/success/?session_id=cs_twin_")
    assert "Your Pro membership is active." in browser.find_element(By.CLASS_NAME, "checkout-result").text
    subscription = Subscription.objects.select_related("plan", "price").get(user__email=EMAIL)
    assert subscription.status == "active"

    # The library, and the piece in full.
    browser.find_element(By.LINK_TEXT, "Open the members' library").click()
    browser.find_element(By.LINK_TEXT, piece.title).click()
    _wait_for_url(browser, f"/library/{piece.slug}/")
    assert browser.current_url == piece_url
    assert BODY in browser.find_element(By.CLASS_NAME, "library-piece__body").text
    assert _status_of(browser, piece_url) == 200
    # Kept under pytest's temporary directory, for a look at what the member saw.
    browser.save_screenshot(str(tmp_path / "library-piece.png"))

    # The member cancels: Stripe reports the subscription set to end with the period, and access now ends
    # there, with no renewal leeway.
    period_end = subscription.current_period_end
    assert period_end is not None
    canceling = _stripe_subscription(
        subscription, cancel_at_period_end=True, canceled_at=int(timezone.now().timestamp())
    )
    subscription_sync_from_stripe(stripe_subscription=canceling, event_created=timezone.now())
    row = Entitlement.objects.get(user__email=EMAIL, key="portal.premium", revoked_at__isnull=True)
    assert row.ends_at == period_end
    # Until then the piece is still theirs.
    browser.refresh()
    assert BODY in browser.find_element(By.CLASS_NAME, "library-piece__body").text

    with time_machine.travel(period_end + dt.timedelta(minutes=5)):
        # The period is over: Stripe ends the subscription (customer.subscription.deleted), and the periodic
        # expiry runs.
        ended = _stripe_subscription(
            subscription,
            status="canceled",
            cancel_at_period_end=True,
            canceled_at=canceling["canceled_at"],
            ended_at=int(period_end.timestamp()),
        )
        subscription_sync_from_stripe(stripe_subscription=ended, event_created=timezone.now())
        entitlements_expire_due(now=timezone.now())
        subscription.refresh_from_db()
        assert subscription.status == "canceled"

        browser.refresh()
        assert _status_of(browser, piece_url) == 403
        page = browser.find_element(By.TAG_NAME, "main").text
        assert "This piece is for members." in page
        assert BODY not in browser.page_source
        assert not browser.find_elements(By.CLASS_NAME, "library-piece__body")
        # Still signed in: the ledger refused them, not an expired session.
        browser.find_element(By.XPATH, "//button[normalize-space()='Log out']")
        browser.save_screenshot(str(tmp_path / "library-piece-refused.png"))


def _wait_for_url(browser: Any, fragment: str, timeout: float = 15.0) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout).until(lambda driver: fragment in driver.current_url)
