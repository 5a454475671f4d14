from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.accounts.models import User


@pytest.mark.django_db
def test_creates_operator_once_and_prints_login(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEV_OPERATOR_EMAIL", "ops@coinlink.local")
    monkeypatch.setenv("DEV_OPERATOR_PASSWORD", "a-long-local-password")
    out = StringIO()
    call_command("ensure_dev_operator", stdout=out)
    call_command("ensure_dev_operator", stdout=out)

    user = User.objects.get()
    assert (user.email, user.is_staff, user.is_superuser) == ("ops@coinlink.local", True, True)
    assert user.check_password("a-long-local-password")
    assert "ops@coinlink.local / a-long-local-password" in out.getvalue()


@pytest.mark.django_db
def test_refused_in_production(settings: object) -> None:
    settings.PRODUCTION = True  # type: ignore[attr-defined]
    with pytest.raises(CommandError):
        call_command("ensure_dev_operator")
    assert not User.objects.exists()
