"""Sign-up, email confirmation, login, logout and password reset, driven through allauth's real views."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from apps.accounts.factories import UserFactory
from apps.accounts.models import User

pytestmark = pytest.mark.django_db

FACTORY_PASSWORD = "correct-horse-battery"
NEW_PASSWORD = "ledger-orbit-quartz-81"
# Markers only CoinLink's base.html prints, so a page carrying them was rendered inside the site layout.
SITE_LAYOUT_MARKERS = ('<a class="brand"', "Skip to main content", '<nav class="site-nav" aria-label="Main">')


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    # allauth counts attempts (one reset email per address per 3 minutes) in the cache, which outlives a test.
    cache.clear()
    yield
    cache.clear()


def _link_in(message: mail.EmailMessage, path_prefix: str) -> str:
    """The path of the one link in an email that points under ``path_prefix``."""
    links = [urlsplit(url).path for url in re.findall(r"https?://\S+", str(message.body))]
    matching = [link for link in links if link.startswith(path_prefix)]
    assert len(matching) == 1, f"expected one {path_prefix} link in {links}"
    return matching[0]


def _assert_in_site_layout(html: str) -> None:
    for marker in SITE_LAYOUT_MARKERS:
        assert marker in html


def _logged_in_user_id(client: Client) -> str | None:
    return client.session.get(SESSION_KEY)


def test_signup_and_login_pages_render_inside_the_site_layout(client: Client) -> None:
    for name in ("account_signup", "account_login", "account_reset_password"):
        response = client.get(reverse(name))

        assert response.status_code == 200
        assert "base.html" in [t.name for t in response.templates]
        _assert_in_site_layout(response.content.decode())


def test_signup_creates_user_sends_confirmation_and_the_link_verifies_the_email(client: Client) -> None:
    response = client.post(
        reverse("account_signup"),
        {"email": "new.member@example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    # Verification is optional in development, so the new member is logged straight in.
    assert response["Location"] == reverse("portal:account")
    user = User.objects.get()
    assert user.email == "new.member@example.com"
    assert user.check_password(NEW_PASSWORD)
    assert _logged_in_user_id(client) == str(user.pk)
    address = EmailAddress.objects.get(user=user)
    assert (address.email, address.primary, address.verified) == ("new.member@example.com", True, False)

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new.member@example.com"]
    assert message.subject.startswith("[CoinLink] ")
    confirm_path = _link_in(message, "/accounts/confirm-email/")

    # A GET only shows the confirmation page; a crawler prefetching the link must not confirm it.
    page = client.get(confirm_path)
    assert page.status_code == 200
    _assert_in_site_layout(page.content.decode())
    address.refresh_from_db()
    assert address.verified is False

    confirmed = client.post(confirm_path)

    assert confirmed.status_code == 302
    address.refresh_from_db()
    assert address.verified is True


def test_signup_with_an_email_already_taken_creates_nothing(client: Client) -> None:
    UserFactory.create(email="taken@example.com")

    response = client.post(
        reverse("account_signup"),
        {"email": "taken@example.com", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 200
    assert response.context["form"].errors["email"]
    assert User.objects.count() == 1
    assert _logged_in_user_id(client) is None


def test_login_with_email_then_logout_by_post(client: Client) -> None:
    user = UserFactory.create(email="trader@example.com")

    response = client.post(
        reverse("account_login"), {"login": "Trader@Example.com", "password": FACTORY_PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("portal:account")
    assert _logged_in_user_id(client) == str(user.pk)
    account_page = client.get(reverse("portal:account"))
    assert account_page.status_code == 200
    assert "trader@example.com" in account_page.content.decode()

    # GET only asks for confirmation: logging out must not be triggerable by a link or an <img>.
    confirm = client.get(reverse("account_logout"))
    assert confirm.status_code == 200
    _assert_in_site_layout(confirm.content.decode())
    assert _logged_in_user_id(client) == str(user.pk)

    response = client.post(reverse("account_logout"))

    assert response.status_code == 302
    assert response["Location"] == reverse("portal:home")
    assert _logged_in_user_id(client) is None
    assert client.get(reverse("portal:account")).status_code == 302


def test_login_with_a_wrong_password_is_refused_and_changes_nothing(client: Client) -> None:
    user = UserFactory.create(email="trader@example.com")
    password_hash = user.password

    response = client.post(
        reverse("account_login"), {"login": "trader@example.com", "password": "not-the-password"}
    )

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    _assert_in_site_layout(response.content.decode())
    assert _logged_in_user_id(client) is None
    user.refresh_from_db()
    assert user.password == password_hash
    assert user.last_login is None
    assert mail.outbox == []
    assert client.get(reverse("portal:account")).status_code == 302


def test_password_reset_by_emailed_link_sets_a_new_password(client: Client) -> None:
    user = UserFactory.create(email="forgetful@example.com")

    response = client.post(reverse("account_reset_password"), {"email": "forgetful@example.com"})

    assert response.status_code == 302
    assert response["Location"] == reverse("account_reset_password_done")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["forgetful@example.com"]
    assert message.subject.startswith("[CoinLink] ")
    reset_path = _link_in(message, "/accounts/password/reset/key/")

    # allauth swaps the key in the URL for one kept in the session, so the key never leaks via Referer.
    form_page = client.get(reset_path, follow=True)
    assert form_page.status_code == 200
    assert "form" in form_page.context
    _assert_in_site_layout(form_page.content.decode())
    set_password_path = form_page.redirect_chain[-1][0]

    response = client.post(set_password_path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == reverse("account_reset_password_from_key_done")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert not user.check_password(FACTORY_PASSWORD)

    client.logout()
    refused = client.post(reverse("account_login"), {"login": user.email, "password": FACTORY_PASSWORD})
    assert refused.status_code == 200
    assert _logged_in_user_id(client) is None
    accepted = client.post(reverse("account_login"), {"login": user.email, "password": NEW_PASSWORD})
    assert accepted.status_code == 302
    assert _logged_in_user_id(client) == str(user.pk)


def test_a_used_reset_link_cannot_set_the_password_again(client: Client) -> None:
    user = UserFactory.create(email="forgetful@example.com")
    client.post(reverse("account_reset_password"), {"email": user.email})
    reset_path = _link_in(mail.outbox[0], "/accounts/password/reset/key/")
    set_password_path = client.get(reset_path, follow=True).redirect_chain[-1][0]
    client.post(set_password_path, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD})

    replay = Client()
    page = replay.get(reset_path, follow=True)

    assert page.status_code == 200
    assert page.context["token_fail"] is True
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


class TestUserManager:
    def test_create_user_normalises_the_email_to_lower_case(self) -> None:
        user = User.objects.create_user("Mixed.Case@EXAMPLE.Com", password=FACTORY_PASSWORD)

        assert user.email == "mixed.case@example.com"
        assert user.check_password(FACTORY_PASSWORD)
        assert (user.is_staff, user.is_superuser, user.is_active) == (False, False, True)
        assert User.objects.get(email="mixed.case@example.com") == user

    def test_create_user_without_password_cannot_log_in_with_one(self) -> None:
        user = User.objects.create_user("nopassword@example.com")

        assert not user.has_usable_password()

    def test_create_superuser_sets_staff_and_superuser(self) -> None:
        admin = User.objects.create_superuser("Ops@Example.com", password=FACTORY_PASSWORD)

        assert admin.email == "ops@example.com"
        assert (admin.is_staff, admin.is_superuser) == (True, True)

    def test_create_superuser_refuses_to_make_a_non_staff_superuser(self) -> None:
        with pytest.raises(ValueError, match="superuser must be staff"):
            User.objects.create_superuser("ops@example.com", password=FACTORY_PASSWORD, is_staff=False)

        assert not User.objects.exists()

    @pytest.mark.parametrize("email", ["", None])
    def test_a_user_without_email_is_refused(self, email: str | None) -> None:
        with pytest.raises(ValueError, match="needs an email"):
            User.objects.create_user(email, password=FACTORY_PASSWORD)  # type: ignore[arg-type]

        assert not User.objects.exists()
