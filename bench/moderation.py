"""The moderation engine's decisions per second and its latency from an update's arrival to the decision,
against a bare regular-expression pass over the same messages.

    python bench/moderation.py [--quick] [--keep]

The messages: the project's held-out labelled messages (``fixtures/moderation/*_holdout.jsonl``: English
crypto posts from X, Telegram group messages, the project's own SMS-style and crypto-scam messages), repeated
to 20,000 (``--quick``: 2,000; each repetition with its round appended, so it is a text of its own),
each from one of 500 authors (a tenth of them new members), in a fresh
database migrated in-process (see ``bench/_common.py``) with twelve operator rules of every kind and the
seed drainer list. The process is pinned to one core.

Timed, after a warm-up that loads the rules and trains the seed classifier:

- the engine's non-LLM path, ``Engine.judge`` with the state ``moderation_judge`` uses and the flood,
  duplicate and first-message history in the cache (the local-memory cache here: Redis in production adds a
  round trip per counter); decisions per second, and the same through ``moderation_evaluate`` (what
  ``moderation_eval`` calls);
- the baseline: one compiled regular expression of 30 scam phrases searched in each message, the least a
  filter can do;
- from an update's arrival to the decision: a Telegram ``message`` update as JSON bytes, parsed, turned into an
  ``InboundMessage`` and given to ``moderation_judge`` (identity lookup, judging, the audit row written and
  committed), one message at a time; p50, p95 and p99, and decisions per second that way.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    bench_database,
    human,
    line,
    parse_args,
    percentile,
    print_header,
    setup_django,
    times,
)

FULL = 20_000
QUICK = 2_000
AUTHORS = 500
BASELINE_PHRASES = [
    "seed phrase", "recovery phrase", "private key", "dm me", "contact support", "admin will help",
    "send 1", "get 2 back", "double your", "claim your", "airdrop", "giveaway", "recover your", "hacker",
    "whatsapp", "t.me/", "wa.me/", "free entry", "winner", "prize", "call 09", "txt", "guaranteed",
    "earn $", "per day", "bit.ly", "connect your wallet", "validate", "sync your wallet", "urgent",
]  # fmt: skip


def pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity here)"


def load_messages(count: int) -> list[str]:
    root = Path(__file__).resolve().parent.parent / "fixtures" / "moderation"
    texts = [
        json.loads(line)["text"]
        for path in sorted(root.glob("*_holdout.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    # Each repetition made distinct (its round appended), so that the duplicate-text checks fire where the
    # messages themselves repeat, not because the benchmark does.
    return [
        texts[i % len(texts)] + (f" ({i // len(texts)})" if i >= len(texts) else "") for i in range(count)
    ]


def make_rules() -> None:
    from apps.moderation.models import ModerationRule

    kinds: list[dict[str, Any]] = [
        {"kind": "keyword", "pattern": "casino\nescort\nfree money\nloan offer\nforex signals"},
        {"kind": "regex", "pattern": r"\bt\.me/\+\w+\n(?:https?://)?discord\.gg/\w+"},
        {"kind": "scam", "pattern": "double your (btc|eth)\nsend .* to receive\nairdrop claim"},
        {"kind": "link_deny", "pattern": "grabify.link\niplogger.org\nbadsite.example"},
        {
            "kind": "link",
            "pattern": "coinlink.io\ncoingecko.com\ncoinmarketcap.com\netherscan.io",
            "score": 0.3,
        },
        {"kind": "mentions", "limit": 5},
        {"kind": "emojis", "limit": 12},
        {"kind": "links", "limit": 3},
        {"kind": "length", "limit": 1500},
        {"kind": "flood", "limit": 6, "window_seconds": 10},
        {"kind": "duplicate", "limit": 3, "window_seconds": 3600},
        {"kind": "new_member_link", "window_seconds": 86400, "score": 0.3, "new_members_only": True},
    ]
    for number, fields in enumerate(kinds):
        ModerationRule.objects.create(name=f"bench rule {number} ({fields['kind']})", **fields)


def telegram_update(number: int, text: str, when: dt.datetime) -> bytes:
    author = 10_000 + number % AUTHORS
    return json.dumps(
        {
            "update_id": 900_000 + number,
            "message": {
                "message_id": number,
                "date": int(when.timestamp()),
                "chat": {"id": -1001234567890, "type": "supergroup", "title": "CoinLink"},
                "from": {
                    "id": author,
                    "is_bot": False,
                    "first_name": f"Member {author}",
                    "username": f"m{author}",
                },
                "text": text,
            },
        }
    ).encode()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    count = QUICK if args.quick else FULL
    with bench_database("moderation", keep=args.keep) as db:
        print_header("Moderation engine: decisions per second and time to decision", db, quick=args.quick)
        print(f"  {pin_to_one_core()}")
        setup_django(db)
        run(count)


def run(count: int) -> None:
    import time

    from django.db import connection
    from django.utils import timezone

    from apps.moderation.engine.core import Engine
    from apps.moderation.engine.types import InboundMessage
    from apps.moderation.services.judging import (
        current_state,
        engine_config,
        moderation_evaluate,
        moderation_judge,
        shared_history,
    )

    make_rules()
    texts = load_messages(count)
    now = timezone.now()
    new_since = now - dt.timedelta(hours=1)
    old_since = now - dt.timedelta(days=90)

    def message(number: int, text: str) -> InboundMessage:
        author = 10_000 + number % AUTHORS
        return InboundMessage(
            platform="telegram",
            chat_id="-1001234567890",
            message_id=str(number),
            author_id=str(author),
            text=text,
            # Spread over an hour, so flood windows hold a realistic few messages per author.
            sent_at=now + dt.timedelta(seconds=number * 3600 / count),
            author_username=f"m{author}",
            author_display_name=f"Member {author}",
            author_joined_at=new_since if author % 10 == 0 else old_since,
        )

    started = time.perf_counter()
    state = current_state()
    print(
        f"  warm-up: rules, domains and the seed classifier loaded in {human(time.perf_counter() - started)}"
    )
    messages = [message(i, text) for i, text in enumerate(texts)]
    engine = Engine(engine_config())
    history = shared_history()
    for item in messages[:200]:
        engine.judge(item, state, history=history)

    baseline_re = re.compile("|".join(re.escape(p) for p in BASELINE_PHRASES), re.IGNORECASE)

    def baseline() -> int:
        return sum(1 for text in texts if baseline_re.search(text))

    def engine_pass() -> list[Any]:
        return [engine.judge(item, state, history=history).judgement.verdict for item in messages]

    def evaluate_pass() -> list[Any]:
        return [moderation_evaluate(message=item).judgement.verdict for item in messages]

    results: dict[str, float] = {}
    cpu: dict[str, float] = {}
    outcomes: dict[str, Any] = {}
    for name, fn in (("baseline", baseline), ("engine", engine_pass), ("evaluate", evaluate_pass)):
        t0, c0 = time.perf_counter(), time.process_time()
        outcomes[name] = fn()
        results[name] = time.perf_counter() - t0
        cpu[name] = time.process_time() - c0
    verdicts = Counter(outcomes["engine"])
    flagged = baseline()

    # From an update's arrival to the decision, one at a time, each decision committed.
    latencies: list[float] = []
    t_all = time.perf_counter()
    for number, text in enumerate(texts):
        raw = telegram_update(count + number, text, now)
        t0 = time.perf_counter()
        update = json.loads(raw)["message"]
        sender = update["from"]
        inbound = InboundMessage(
            platform="telegram",
            chat_id=str(update["chat"]["id"]),
            message_id=str(update["message_id"]),
            author_id=str(sender["id"]),
            text=update.get("text", ""),
            sent_at=dt.datetime.fromtimestamp(update["date"], tz=dt.UTC),
            author_username=sender.get("username", ""),
            author_display_name=sender.get("first_name", ""),
        )
        moderation_judge(message=inbound)
        latencies.append(time.perf_counter() - t0)
    total_judge = time.perf_counter() - t_all

    print(
        f"\n  {count:,} messages ({len(set(texts))} distinct), {AUTHORS} authors, database {connection.vendor}"
    )
    engine_rate = count / results["engine"]
    baseline_rate = count / results["baseline"]
    # Wall time counts whatever else the machine runs; CPU time is this process's own core.
    line("bare regex pass (30 phrases), decisions/s", f"{baseline_rate:,.0f}", f"flags {flagged:,}")
    line("engine, non-LLM path, decisions/s (wall)", f"{engine_rate:,.0f}", "goal >= 5,000 on one core")
    line("engine, non-LLM path, decisions per CPU second", f"{count / cpu['engine']:,.0f}")
    line("moderation_evaluate (moderation_eval), decisions/s", f"{count / results['evaluate']:,.0f}")
    line("engine verdicts", ", ".join(f"{k.value} {v:,}" for k, v in sorted(verdicts.items())))
    line("engine time / bare regex time", times(results["engine"] / results["baseline"]))
    line("engine CPU time / bare regex CPU time", times(cpu["engine"] / cpu["baseline"]))
    print()
    line("update arrival -> decision recorded, p50", human(percentile(latencies, 50)))
    line("update arrival -> decision recorded, p95", human(percentile(latencies, 95)), "goal < 50 ms")
    line("update arrival -> decision recorded, p99", human(percentile(latencies, 99)))
    line("moderation_judge with the audit row, decisions/s", f"{count / total_judge:,.0f}")
    line(
        "p95 / bare regex time per message", times(percentile(latencies, 95) / (results["baseline"] / count))
    )


if __name__ == "__main__":
    main()
