from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.dashboard.demo import DEMO_MEMBER_EMAIL, DEMO_MEMBER_PASSWORD, seed_demo


class Command(BaseCommand):
    help = "Fill the database with a realistic demo world. Running it again changes nothing."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--force", action="store_true", help="Allow seeding in production mode")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION and not options["force"]:
            raise CommandError("refusing to seed demo data in production (pass --force if you mean it)")
        report = seed_demo()
        if not report.total:
            self.stdout.write("Demo world already in place: nothing to do.")
            return
        for table, count in sorted(report.created.items()):
            self.stdout.write(f"  {table:<24} +{count}")
        self.stdout.write(self.style.SUCCESS(f"Demo world seeded ({report.total} rows)."))
        if settings.DEBUG:
            self.stdout.write(f"Demo member login: {DEMO_MEMBER_EMAIL} / {DEMO_MEMBER_PASSWORD}")
