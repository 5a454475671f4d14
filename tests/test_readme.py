"""The README is part of the product: its settings table must name every variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _variables_read_by_code() -> set[str]:
    names: set[str] = set()
    pattern = re.compile(r"""(?:env\.\w+|env|os\.environ\.get|os\.getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']""")
    for path in [ROOT / "coinlink" / "settings.py", *ROOT.glob("apps/**/*.py")]:
        if "tests" in path.parts:
            continue
        names |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, flags=re.MULTILINE))
    variables = _variables_read_by_code()
    assert "DATABASE_URL" in variables  # the scan itself works
    assert variables - table == set()


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme
    assert "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci
