"""Compare who actually holds each Discord role and sits in each Telegram channel with who the ledger entitles;
``--fix`` gives the missing access and takes away the extra. Exit status: 0 in sync (or everything found was
repaired), 1 drift, 2 a platform could not be checked."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.models import User
from apps.billing.services.access_sync import DriftEntry, ResourceDrift, entitlements_drift
from apps.core.models import Platform

_FIXED = {
    "granted": "role given",
    "revoked": "role taken away",
    "invited": "invite link sent",
    "member": "joined meanwhile",
    "removed": "removed from the channel",
}


class Command(BaseCommand):
    emails: dict[int, str]
    help = (
        "Report Discord roles and Telegram channel seats that disagree with the entitlement ledger "
        "(exit 1 on drift); --fix repairs them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--fix",
            action="store_true",
            help="give missing access and take away access nobody is entitled to",
        )
        parser.add_argument(
            "--platform", choices=[Platform.DISCORD, Platform.TELEGRAM], help="check only one"
        )

    def handle(self, *args: Any, fix: bool, platform: str | None, **options: Any) -> None:
        report = entitlements_drift(platform=platform, fix=fix)
        if not report.resources:
            self.stdout.write(
                "No plan or entitlement names a Discord role or Telegram channel: nothing to check."
            )
            return
        user_ids = {
            entry.user_id
            for resource in report.resources
            for entry in resource.missing + resource.extra
            if entry.user_id is not None
        } | {user_id for resource in report.resources for user_id in resource.unlinked}
        self.emails = dict(User.objects.filter(pk__in=user_ids).values_list("pk", "email"))
        for resource in report.resources:
            self._resource(resource)

        drifted = [r for r in report.resources if r.drifted]
        if report.errors:
            raise CommandError(
                f"{len(report.errors)} of {len(report.resources)} could not be checked", returncode=2
            )
        if fix and drifted:
            unrepaired = sum(len(r.unrepaired) for r in report.resources)
            if unrepaired:
                raise CommandError(f"{unrepaired} could not be repaired", returncode=1)
            self.stdout.write(
                self.style.SUCCESS(f"Repaired drift in {len(drifted)} of {len(report.resources)}.")
            )
        elif drifted:
            raise CommandError(
                f"drift in {len(drifted)} of {len(report.resources)}: run with --fix to repair", returncode=1
            )
        else:
            self.stdout.write(self.style.SUCCESS(f"All {len(report.resources)} in sync with the ledger."))

    def _member(self, user_id: int | None) -> str:
        if user_id is None:
            return "not linked to a CoinLink member"
        return f"user {user_id} {self.emails.get(user_id, '')}".rstrip()

    def _entry(self, resource: ResourceDrift, entry: DriftEntry) -> str:
        line = f"    {resource.target.platform} {entry.account} ({self._member(entry.user_id)})"
        if entry.fix_error:
            return f"{line}: NOT REPAIRED: {entry.fix_error}"
        if entry.fixed:
            return f"{line}: {_FIXED[entry.fixed]}"
        return line

    def _resource(self, resource: ResourceDrift) -> None:
        target = resource.target
        if target.platform == Platform.DISCORD:
            place, has, lacks = f"Discord role {target.resource}", "holding the role", "without the role"
            counted = f"{resource.checked} hold the role"
        else:
            place, has, lacks = f"Telegram channel {target.resource}", "in the channel", "not in the channel"
            counted = f"{resource.checked} linked Telegram accounts asked about"
        self.stdout.write(
            self.style.MIGRATE_HEADING(f"{place} ({resource.key}): {resource.entitled} entitled, {counted}")
        )
        if target.platform == Platform.TELEGRAM:
            self.stdout.write(
                "  note: Telegram's Bot API cannot list a channel's members, so only the Telegram accounts linked "
                "to CoinLink were checked; anyone else in the channel is not seen."
            )
        if resource.error:
            self.stdout.write(self.style.ERROR(f"  could not be checked: {resource.error}"))
            return
        if resource.missing:
            self.stdout.write(self.style.WARNING(f"  missing access (entitled, {lacks}):"))
            for entry in resource.missing:
                self.stdout.write(self._entry(resource, entry))
        if resource.extra:
            self.stdout.write(self.style.WARNING(f"  extra access ({has}, not entitled):"))
            for entry in resource.extra:
                self.stdout.write(self._entry(resource, entry))
        if resource.unlinked:
            label = Platform(target.platform).label
            self.stdout.write(
                f"  entitled, but no {label} account linked (nothing to act on until they link):"
            )
            for user_id in resource.unlinked:
                self.stdout.write(f"    {self._member(user_id)}")
        if not resource.drifted:
            self.stdout.write(self.style.SUCCESS("  in sync"))
