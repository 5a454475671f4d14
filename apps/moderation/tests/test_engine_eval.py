"""``manage.py moderation_eval``: counts per check, and one JSON object as the last line."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.moderation.tests.engine_support import fresh_engine

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_engine")]
__all__ = ["fresh_engine"]

ROWS = [
    ("Please send your 12 word seed phrase to our support team to verify your wallet", "spam"),
    ("Send 0.5 ETH to receive 1 ETH back instantly, official giveaway", "spam"),
    ("WINNER!! You have been selected for a £900 prize. To claim call 09061701461 now", "spam"),
    ("Ok lar... Joking wif u oni...", "ham"),
    ("BTC holding above the 200 day average, nice", "ham"),
    ("Never share your seed phrase with anyone, admins will never DM you", "ham"),
]


def run(tmp_path: Path, rows: list[tuple[str, str]], *args: str) -> list[str]:
    path = tmp_path / "labelled.jsonl"
    path.write_text(
        "".join(json.dumps({"text": t, "label": label, "source": "test"}) + "\n" for t, label in rows)
    )
    out = StringIO()
    call_command("moderation_eval", str(path), *args, stdout=out)
    return out.getvalue().splitlines()


def test_eval_prints_counts_per_check_and_a_json_summary_last(tmp_path: Path) -> None:
    lines = run(tmp_path, ROWS)
    summary = json.loads(lines[-1])
    assert {"n", "precision", "recall", "false_positive_rate", "decisions_per_second"} <= set(summary)
    assert summary["n"] == 6
    assert (summary["spam"], summary["ham"]) == (3, 3)
    assert (summary["tp"], summary["fp"], summary["fn"], summary["tn"]) == (3, 0, 0, 3)
    assert summary["precision"] == 1.0
    assert summary["recall"] == 1.0
    assert summary["false_positive_rate"] == 0.0
    assert summary["decisions_per_second"] > 0
    assert summary["llm"] is False
    table = {line.split()[0]: line.split()[1:] for line in lines[3:-1]}
    assert table["seed_phrase"] == ["1", "1", "0"]
    assert table["fake_giveaway"] == ["1", "1", "0"]
    assert table["prize_spam"] == ["1", "1", "0"]
    assert lines[1].startswith("verdicts: allow 3,")


def test_eval_counts_mistakes_and_shows_them(tmp_path: Path) -> None:
    rows = [
        ("what a lovely day", "spam"),
        ("Claim your free airdrop now at drop-claim.xyz before it ends", "ham"),
    ]
    lines = run(tmp_path, rows, "--show-errors", "5")
    summary = json.loads(lines[-1])
    assert (summary["tp"], summary["fp"], summary["fn"], summary["tn"]) == (0, 1, 1, 0)
    assert summary["precision"] == 0.0
    assert summary["false_positive_rate"] == 1.0
    assert any(line.startswith("false positive: [") and "fake_giveaway" in line for line in lines)
    assert any(line.startswith("false negative: [") and "lovely day" in line for line in lines)


def test_eval_refuses_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi", "label": "maybe"}\n')
    with pytest.raises(CommandError, match="label must be"):
        call_command("moderation_eval", str(bad), stdout=StringIO())
    with pytest.raises(CommandError, match="does not exist"):
        call_command("moderation_eval", str(tmp_path / "none.jsonl"), stdout=StringIO())
