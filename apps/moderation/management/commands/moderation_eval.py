"""``manage.py moderation_eval PATH``: judge labelled messages as the engine would judge a new member's first
message in a group (no history; no LLM unless ``--llm``) and print how it did.

PATH holds JSON lines ``{"text": ..., "label": "spam" | "ham"}`` (other keys are ignored). A message counts as
flagged when the verdict is REVIEW or REMOVE (``--flag remove`` counts REMOVE only). Printed: the verdicts, the
checks that fired with how often on spam and on ham, optionally the mistakes, and as the last line one JSON
object: ``n``, ``spam``, ``ham``, ``tp``, ``fp``, ``fn``, ``tn``, ``precision``, ``recall``,
``false_positive_rate``, ``f1``, ``decisions_per_second``, ``p95_ms`` and the verdict counts.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.moderation.engine.types import InboundMessage, Verdict
from apps.moderation.services.judging import current_state, moderation_evaluate


def read_labelled(path: Path) -> list[tuple[str, bool]]:
    rows: list[tuple[str, bool]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                label = row["label"]
                text = row["text"]
            except (ValueError, KeyError, TypeError) as exc:
                raise CommandError(f"{path}:{number}: not a {{'text', 'label'}} JSON line ({exc})") from exc
            if label not in {"spam", "ham"} or not isinstance(text, str):
                raise CommandError(f"{path}:{number}: label must be 'spam' or 'ham' and text a string")
            rows.append((text, label == "spam"))
    return rows


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


class Command(BaseCommand):
    help = "Judge labelled messages (JSON lines with text and label) and print precision, recall and speed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--llm", action="store_true", help="let the LLM confirm borderline messages")
        parser.add_argument("--platform", default="telegram", choices=["telegram", "discord", "x"])
        parser.add_argument(
            "--flag",
            default="review",
            choices=["review", "remove"],
            help="the verdict from which a message counts as flagged",
        )
        parser.add_argument(
            "--show-errors", type=int, default=0, metavar="N", help="print N mistakes of each kind"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"]
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        rows = read_labelled(path)
        if not rows:
            raise CommandError(f"{path} holds no labelled messages")
        flagged_verdicts = (
            {Verdict.REMOVE} if options["flag"] == "remove" else {Verdict.REMOVE, Verdict.REVIEW}
        )
        current_state()  # load rules and the classifier before the clock starts
        now = timezone.now()
        verdicts: Counter[str] = Counter()
        fired: dict[str, Counter[str]] = {}
        tp = fp = fn = tn = 0
        durations: list[float] = []
        mistakes: dict[str, list[str]] = {"false positive": [], "false negative": []}
        started = time.perf_counter()
        for number, (text, spam) in enumerate(rows):
            message = InboundMessage(
                platform=options["platform"],
                chat_id="moderation-eval",
                message_id=str(number),
                author_id=f"eval-{number}",
                text=text,
                sent_at=now,
                author_joined_at=now,
            )
            t0 = time.perf_counter()
            evaluation = moderation_evaluate(message=message, use_llm=options["llm"])
            durations.append(time.perf_counter() - t0)
            judgement = evaluation.judgement
            verdicts[judgement.verdict.value] += 1
            for check in dict.fromkeys(hit.check for hit in judgement.checks):
                fired.setdefault(check, Counter())["spam" if spam else "ham"] += 1
            flagged = judgement.verdict in flagged_verdicts
            tp += flagged and spam
            fp += flagged and not spam
            fn += (not flagged) and spam
            tn += (not flagged) and not spam
            if flagged != spam:
                kind = "false positive" if flagged else "false negative"
                if len(mistakes[kind]) < options["show_errors"]:
                    checks = ",".join(f"{h.check}={h.score:.2f}" for h in judgement.checks) or "-"
                    mistakes[kind].append(f"[{judgement.score:.2f} {checks}] {' '.join(text.split())[:160]}")
        elapsed = time.perf_counter() - started

        n = len(rows)
        self.stdout.write(
            f"{n} messages from {path} ({tp + fn} spam, {fp + tn} ham); flagged from {options['flag']}"
        )
        self.stdout.write("verdicts: " + ", ".join(f"{v.value} {verdicts[v.value]}" for v in Verdict))
        self.stdout.write(f"{'check':<22}{'fired':>7}{'on spam':>9}{'on ham':>8}")
        for check, counts in sorted(fired.items(), key=lambda item: -sum(item[1].values())):
            total = counts["spam"] + counts["ham"]
            self.stdout.write(f"{check:<22}{total:>7}{counts['spam']:>9}{counts['ham']:>8}")
        for kind, items in mistakes.items():
            for item in items:
                self.stdout.write(f"{kind}: {item}")
        durations.sort()
        precision = _ratio(tp, tp + fp)
        recall = _ratio(tp, tp + fn)
        f1 = round(2 * precision * recall / (precision + recall), 4) if precision and recall else None
        summary = {
            "n": n,
            "spam": tp + fn,
            "ham": fp + tn,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "tn": tn,
            "precision": precision,
            "recall": recall,
            "false_positive_rate": _ratio(fp, fp + tn),
            "f1": f1,
            "decisions_per_second": round(n / elapsed, 1) if elapsed else None,
            "p95_ms": round(durations[int(0.95 * (n - 1))] * 1000, 3),
            "flag_from": options["flag"],
            "verdicts": {v.value: verdicts[v.value] for v in Verdict},
            "llm": bool(options["llm"]),
        }
        self.stdout.write(json.dumps(summary))
