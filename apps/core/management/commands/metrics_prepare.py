"""Empty the Prometheus multi-process directory before a deployment's processes start on this machine."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.metrics import prepare_multiprocess_dir


class Command(BaseCommand):
    help = (
        "Create PROMETHEUS_MULTIPROC_DIR, or remove the metric files earlier processes left in it. Run it once "
        "per machine before starting the web and worker processes, never while they run: their counts would "
        "be lost."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--directory", default="", help="the directory (default: the PROMETHEUS_MULTIPROC_DIR setting)"
        )

    def handle(self, *args: Any, directory: str = "", **options: Any) -> None:
        path = directory or settings.PROMETHEUS_MULTIPROC_DIR
        if not path:
            # Nothing to prepare: without the variable every process keeps its own in-memory registry.
            self.stdout.write("PROMETHEUS_MULTIPROC_DIR is not set: metrics are per process, nothing to do")
            return
        try:
            removed = prepare_multiprocess_dir(path)
        except OSError as exc:
            raise CommandError(f"cannot prepare {path}: {exc}") from exc
        self.stdout.write(f"{path}: ready ({removed} metric files of earlier processes removed)")
