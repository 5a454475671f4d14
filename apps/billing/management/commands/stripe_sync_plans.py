from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.billing.services.plans import StripeNotConfigured, plans_sync_to_stripe
from apps.core.resilience import IntegrationError


class Command(BaseCommand):
    help = (
        "Create or update a Stripe product for every plan and a Stripe price for every plan price, storing "
        "their ids. Safe to run again: unchanged plans cause no writes in Stripe."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = plans_sync_to_stripe()
        except StripeNotConfigured as exc:
            raise CommandError(str(exc)) from exc
        except IntegrationError as exc:
            raise CommandError(f"Stripe refused or failed: {exc}") from exc
        for label, ids in (
            ("products created", report.products_created),
            ("products updated", report.products_updated),
            ("prices created", report.prices_created),
            ("prices archived", report.prices_archived),
            ("prices reactivated", report.prices_reactivated),
        ):
            self.stdout.write(f"{label}: {len(ids)}" + (f" ({', '.join(ids)})" if ids else ""))
        self.stdout.write(
            self.style.SUCCESS(
                "Stripe catalogue updated." if report.changed else "Stripe catalogue already up to date."
            )
        )
