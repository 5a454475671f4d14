"""Layer 1: the operators' rules, compiled once from their rows (``ModerationRule``) into plain objects the hot
path can run without the ORM, and the per-author history that flood, duplicate-text and first-message checks
need (``History``; the services give it the shared cache, so it holds across processes)."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from apps.moderation.engine.text import domain_and_parents, fold, normalise_domain
from apps.moderation.engine.types import CheckHit

LAYER = "rules"

# Mentions as each platform writes them: @name (X, Telegram), <@123> / <@!123> (Discord).
_MENTION_RE = re.compile(r"(?<![\w.])@\w{2,}|<@!?&?\d+>")


# Pictographs, dingbats and symbols; skin-tone modifiers (U+1F3FB-1F3FF) are left out, so a toned emoji counts once.
_EMOJI_RE = re.compile("[\U0001f000-\U0001f3fa\U0001f400-\U0001faff\u2600-\u27bf\u2b00-\u2bff]")


def count_emoji(text: str) -> int:
    if text.isascii():
        return 0
    return len(_EMOJI_RE.findall(text))


def count_mentions(text: str) -> int:
    return len(_MENTION_RE.findall(text)) if "@" in text else 0


def text_key(text: str) -> str:
    """The same text, whatever its case, spacing or look-alike letters."""
    return hashlib.sha256(" ".join(fold(text).split()).encode()).hexdigest()


class History(Protocol):
    """What the engine remembers between messages. Each method records the current message as it answers."""

    def messages_in_window(self, *, author: str, window_seconds: int, now: datetime.datetime) -> int:
        """Messages by ``author`` in the last ``window_seconds``, this one included."""
        ...

    def authors_with_text(
        self, *, text: str, author: str, window_seconds: int, now: datetime.datetime
    ) -> int:
        """Distinct authors who sent this text in the last ``window_seconds``, this author included."""
        ...

    def messages_before(self, *, author: str) -> int:
        """How many messages of ``author`` were judged before this one."""
        ...


class NoHistory:
    """Every message is the author's first: what ``moderation_eval`` judges."""

    def messages_in_window(self, *, author: str, window_seconds: int, now: datetime.datetime) -> int:
        return 1

    def authors_with_text(
        self, *, text: str, author: str, window_seconds: int, now: datetime.datetime
    ) -> int:
        return 1

    def messages_before(self, *, author: str) -> int:
        return 0


@dataclass(frozen=True)
class CompiledRule:
    id: int | None
    name: str
    kind: str
    platforms: frozenset[str]
    score: float
    strike_weight: int
    description: str
    limit: int | None = None
    window_seconds: int | None = None
    new_members_only: bool = False
    patterns: tuple[re.Pattern[str], ...] = ()
    domains: frozenset[str] = frozenset()

    def applies(self, *, platform: str, is_new: bool) -> bool:
        if self.platforms and platform not in self.platforms:
            return False
        return is_new or not self.new_members_only

    def hit(self, check: str, reason: str, evidence: dict[str, Any]) -> CheckHit:
        return CheckHit(
            layer=LAYER,
            check=check,
            score=self.score,
            reason=self.description or reason,
            evidence={"rule": self.name, **evidence},
            rule_id=self.id,
        )


def _lines(pattern: str) -> list[str]:
    return [line.strip() for line in (pattern or "").splitlines() if line.strip()]


def compile_rule(row: Any) -> CompiledRule | None:
    """A ``ModerationRule`` (or anything with its attributes) as a ``CompiledRule``; None when the rule cannot
    run (a regular expression that does not compile), so one bad rule never stops the others."""
    kind = row.kind
    patterns: list[re.Pattern[str]] = []
    domains: set[str] = set()
    try:
        if kind in {"keyword", "new_member_text"}:
            # Keywords match whole words of the folded text, so "scam" does not match "scampi" and full-width
            # or Cyrillic look-alike still matches "free".
            words = [r"\s+".join(map(re.escape, fold(line).split())) for line in _lines(row.pattern)]
            if words:
                patterns.append(re.compile(r"(?<!\w)(" + "|".join(words) + r")(?!\w)"))
        elif kind in {"regex", "scam"}:
            lines = _lines(row.pattern)
            compiled = [re.compile(line, re.IGNORECASE) for line in lines]
            # One search instead of one per line; lines with back-references keep their own pattern, since
            # their group numbers would shift in a combined one.
            if len(lines) > 1 and not any(re.search(r"\\\d|\(\?P=", line) for line in lines):
                with contextlib.suppress(re.error):  # e.g. a line's own global flags, allowed only first
                    compiled = [re.compile("|".join(f"(?:{line})" for line in lines), re.IGNORECASE)]
            patterns.extend(compiled)
        elif kind in {"link", "link_deny"}:
            domains.update(filter(None, (normalise_domain(line) for line in _lines(row.pattern))))
    except re.error:
        return None
    return CompiledRule(
        id=getattr(row, "pk", None),
        name=row.name,
        kind=kind,
        platforms=frozenset(row.platforms or ()),
        score=float(row.score),
        strike_weight=int(row.strike_weight),
        description=row.description or "",
        limit=row.limit,
        window_seconds=row.window_seconds,
        new_members_only=bool(row.new_members_only),
        patterns=tuple(patterns),
        domains=frozenset(domains),
    )


def compile_rules(rows: Iterable[Any]) -> tuple[CompiledRule, ...]:
    return tuple(rule for rule in (compile_rule(row) for row in rows) if rule is not None)


@dataclass(frozen=True)
class RuleInput:
    """What the rules look at, computed once per message."""

    platform: str
    author: str
    text: str
    folded: str
    domains: tuple[str, ...]
    is_new: bool
    joined_seconds_ago: float | None
    now: datetime.datetime


def run_rules(rules: Iterable[CompiledRule], data: RuleInput, history: History) -> list[CheckHit]:
    hits: list[CheckHit] = []
    for rule in rules:
        if not rule.applies(platform=data.platform, is_new=data.is_new):
            continue
        hit = _run(rule, data, history)
        if hit is not None:
            hits.append(hit)
    return hits


def _run(rule: CompiledRule, data: RuleInput, history: History) -> CheckHit | None:
    kind = rule.kind
    if kind in {"keyword", "regex", "scam"} or (kind == "new_member_text" and data.is_new):
        subject = data.folded if kind in {"keyword", "new_member_text"} else data.text
        for pattern in rule.patterns:
            match = pattern.search(subject)
            if match:
                check = {"new_member_text": "new_member_keyword", "scam": "scam_pattern"}.get(kind, kind)
                return rule.hit(check, f"matches {match.group(0)!r}", {"matched": match.group(0)})
        return None
    if kind == "link_deny":
        for domain in data.domains:
            listed = next((p for p in domain_and_parents(domain) if p in rule.domains), None)
            if listed:
                return rule.hit("link_denylist", f"links to {listed}", {"domain": domain, "listed": listed})
        return None
    if kind == "link":
        outside = [d for d in data.domains if not any(p in rule.domains for p in domain_and_parents(d))]
        if outside:
            return rule.hit(
                "link_not_allowed", "links to a domain outside the allow list", {"domains": outside}
            )
        return None
    if kind == "new_member_link":
        window = rule.window_seconds or 86400
        recent = data.joined_seconds_ago is not None and data.joined_seconds_ago < window
        if data.domains and (recent or data.is_new):
            return rule.hit("new_member_link", "a link from a new member", {"domains": list(data.domains)})
        return None
    if rule.limit is None:
        return None
    if kind in {"mentions", "emojis", "links", "length"}:
        if kind == "mentions":
            counted = count_mentions(data.text)
        elif kind == "emojis":
            counted = count_emoji(data.text)
        elif kind == "links":
            counted = len(data.domains)
        else:
            counted = len(data.text)
        if counted > rule.limit:
            return rule.hit(f"{kind}_limit", f"{counted} {kind}, more than {rule.limit}", {"count": counted})
        return None
    if kind == "flood":
        count = history.messages_in_window(
            author=data.author, window_seconds=rule.window_seconds or 10, now=data.now
        )
        if count > rule.limit:
            return rule.hit(
                "flood",
                f"{count} messages in {rule.window_seconds or 10} s",
                {"count": count, "limit": rule.limit},
            )
        return None
    if kind == "duplicate":
        authors = history.authors_with_text(
            text=data.text, author=data.author, window_seconds=rule.window_seconds or 3600, now=data.now
        )
        if authors >= rule.limit:
            return rule.hit("duplicate_text", f"the same text from {authors} people", {"authors": authors})
        return None
    return None
