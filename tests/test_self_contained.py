"""A fresh clone is the truth: nothing in the project reaches outside its own folder for data (the Stripe
example objects and every other fixture live in ``fixtures/``)."""

from __future__ import annotations

import re
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
# A path that climbs out of the project (BASE_DIR.parent, "../something") to read a file.
OUTSIDE = re.compile(r"""BASE_DIR\)?\s*\.parent|["']\.\./[\w-]+/|parents?\[\d\]\s*/\s*["']shared""")
SOURCE_DIRS = ("apps", "coinlink", "bench", "tests", "fixtures")


def _sources() -> list[Path]:
    files = [path for folder in SOURCE_DIRS for path in (ROOT / folder).rglob("*.py")]
    return [path for path in files if "migrations" not in path.parts and path != Path(__file__)]


def test_no_source_reads_outside_the_project() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]

    assert offenders == []


def test_the_stripe_examples_are_in_the_project_with_their_source() -> None:
    folder = ROOT / "fixtures" / "stripe"

    assert (folder / "fixtures3.json").stat().st_size > 100_000
    assert "MIT licence" in (folder / "README.md").read_text()
