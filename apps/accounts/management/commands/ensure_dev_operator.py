from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import User

DEFAULT_EMAIL = "operator@coinlink.local"
DEFAULT_PASSWORD = "coinlink-operator"  # noqa: S105 - a local development credential, refused in production


class Command(BaseCommand):
    help = "Create (or reset) the local operator account for development and print how to log in."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError(
                "the development operator account is never created in production; use createsuperuser"
            )
        email = os.environ.get("DEV_OPERATOR_EMAIL", DEFAULT_EMAIL)
        password = os.environ.get("DEV_OPERATOR_PASSWORD", DEFAULT_PASSWORD)
        user = User.objects.filter(email=email).first()
        if user is None:
            User.objects.create_superuser(email=email, password=password, display_name="Operator")
            verb = "Created"
        else:
            if not user.check_password(password) or not (user.is_staff and user.is_superuser):
                user.set_password(password)
                user.is_staff = user.is_superuser = user.is_active = True
                user.save(update_fields=["password", "is_staff", "is_superuser", "is_active"])
            verb = "Found"
        self.stdout.write(
            f"{verb} the local operator: log in at {settings.SITE_URL}/admin/ as {email} / {password}"
        )
