"""The engine: runs the four layers over one message and combines what fired into a verdict.

Pure code. Everything it needs from the database (rules, blocked domains, protected names, the classifier) is
handed to it in an ``EngineState``; what it remembers between messages goes through a ``History``.

Combining: each check that fired has a score, how sure it is on its own. The message's score is their
noisy-OR, ``1 - Π(1 - score)``: one sure check is enough, several weak ones add up, and a weak one alone stays
weak. At ``remove_threshold`` or above the verdict is REMOVE, at ``review_threshold`` or above REVIEW (an
operator decides), below ALLOW. The LLM, when asked, only looks at messages whose score is in the review band
and only moves them within it (see ``_llm``): it never decides alone.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from apps.moderation.engine import detectors
from apps.moderation.engine.classifier import LogisticModel
from apps.moderation.engine.rules import CompiledRule, History, NoHistory, RuleInput, run_rules
from apps.moderation.engine.text import (
    URL_SHORTENERS,
    domain_and_parents,
    find_links,
    fold_message,
    normalise_domain,
)
from apps.moderation.engine.types import CheckHit, InboundMessage, Judgement, Verdict

# Strikes a REMOVE is worth by the strongest check; operator rules carry their own weight.
CHECK_STRIKES = {
    "seed_phrase": 3,
    "drainer_domain": 3,
    "lookalike_domain": 3,
    "impersonation": 3,
    "fake_giveaway": 2,
    "recovery_scam": 2,
    "support_scam": 2,
    "prize_spam": 1,
    "easy_money": 1,
    "classifier": 1,
}

# An LLM's answer: (is_spam, confidence 0..1, reason). None when it has no opinion or is unavailable.
LLMJudge = Callable[[str], "tuple[bool, float, str] | None"]


@dataclass(frozen=True)
class EngineConfig:
    remove_threshold: float = 0.85
    review_threshold: float = 0.6
    classifier_min_score: float = 0.4
    new_member_seconds: int = 86400
    new_member_messages: int = 3
    new_member_link_score: float = 0.2
    wallet_new_member_score: float = 0.3
    shortener_score: float = 0.4
    flood_messages: int = 0  # built-in flood limit (0: off): more than this many messages in flood_seconds
    flood_seconds: int = 10
    duplicate_authors: int = 0  # built-in: this many people sending the same text within duplicate_seconds
    duplicate_seconds: int = 3600


@dataclass
class EngineState:
    """What the engine needs from outside, loaded by the services and refreshed when it changes."""

    rules: tuple[CompiledRule, ...] = ()
    blocked_domains: frozenset[str] = frozenset()
    allowed_domains: frozenset[str] = frozenset()  # operators' allow lists: never a look-alike of themselves
    protected_domains: frozenset[str] = detectors.KNOWN_BRAND_DOMAINS
    protected_names: detectors.ProtectedNames = field(default_factory=detectors.ProtectedNames)
    classifier: LogisticModel | None = None


@dataclass
class Evaluation:
    """A judgement with what the audit row keeps besides it."""

    judgement: Judgement
    classifier_score: float | None
    used_llm: bool
    duration_ms: float


class _OnceHistory:
    """One message's view of the history: asking twice (a flood rule and the built-in flood limit with the
    same window) records the message once and gives the same answer."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.answers: dict[tuple[str, int], int] = {}

    def messages_in_window(self, *, author: str, window_seconds: int, now: datetime.datetime) -> int:
        key = ("flood", window_seconds)
        if key not in self.answers:
            self.answers[key] = self.history.messages_in_window(
                author=author, window_seconds=window_seconds, now=now
            )
        return self.answers[key]

    def authors_with_text(
        self, *, text: str, author: str, window_seconds: int, now: datetime.datetime
    ) -> int:
        key = ("duplicate", window_seconds)
        if key not in self.answers:
            self.answers[key] = self.history.authors_with_text(
                text=text, author=author, window_seconds=window_seconds, now=now
            )
        return self.answers[key]

    def messages_before(self, *, author: str) -> int:
        key = ("before", 0)
        if key not in self.answers:
            self.answers[key] = self.history.messages_before(author=author)
        return self.answers[key]


def combine(hits: Iterable[CheckHit]) -> float:
    remaining = 1.0
    for hit in hits:
        remaining *= 1.0 - max(0.0, min(1.0, hit.score))
    return 1.0 - remaining


class Engine:
    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()

    def verdict_for(self, score: float) -> Verdict:
        if score >= self.config.remove_threshold:
            return Verdict.REMOVE
        if score >= self.config.review_threshold:
            return Verdict.REVIEW
        return Verdict.ALLOW

    def judge(
        self,
        message: InboundMessage,
        state: EngineState,
        *,
        history: History | None = None,
        llm: LLMJudge | None = None,
        now: datetime.datetime | None = None,
    ) -> Evaluation:
        started = time.perf_counter()
        if message.author_is_staff:
            judgement = Judgement(
                verdict=Verdict.ALLOW, score=0.0, checks=(), strike_weight=0, decision_id=None
            )
            return Evaluation(judgement, None, False, (time.perf_counter() - started) * 1000)
        history = _OnceHistory(history or NoHistory())
        config = self.config
        now = now or message.sent_at
        author = f"{message.platform}:{message.author_id}"
        text = message.text or ""
        folded = fold_message(text)

        links = list(dict.fromkeys([*message.links, *find_links(text)]))
        domains = tuple(dict.fromkeys(d for d in (normalise_domain(link) for link in links) if d))
        joined_ago = (now - message.author_joined_at).total_seconds() if message.author_joined_at else None
        before = history.messages_before(author=author)
        is_new = (joined_ago is not None and joined_ago < config.new_member_seconds) or (
            before < config.new_member_messages
        )

        hits: list[CheckHit] = []
        # Layer 1: operator rules, then the built-in flood and duplicate limits.
        data = RuleInput(
            platform=message.platform,
            author=author,
            text=text,
            folded=folded,
            domains=domains,
            is_new=is_new,
            joined_seconds_ago=joined_ago,
            now=now,
        )
        hits.extend(run_rules(state.rules, data, history))
        fired = {hit.check for hit in hits}
        hits.extend(hit for hit in self._builtin_limits(data, history) if hit.check not in fired)

        # Layer 2: scam detectors.
        for detector in detectors.TEXT_DETECTORS:
            hits.extend(detector(folded))
        hits.extend(
            detectors.impersonation(
                username=message.author_username,
                display_name=message.author_display_name,
                protected=state.protected_names,
            )
        )
        if domains:
            hits.extend(
                detectors.domain_checks(
                    domains,
                    blocked=state.blocked_domains,
                    protected_domains=state.protected_domains | state.allowed_domains,
                )
            )
            operator_new_member_rule = any(hit.check == "new_member_link" for hit in hits)
            hits.extend(
                self._link_context(
                    domains, is_new=is_new and not operator_new_member_rule, allowed=state.allowed_domains
                )
            )
        if is_new:
            wallets = detectors.wallet_addresses(text)
            if wallets:
                hits.append(
                    CheckHit(
                        layer="scam",
                        check="wallet_new_member",
                        score=config.wallet_new_member_score,
                        reason="a wallet address from a new member",
                        evidence={"addresses": [{"chain": c, "address": a} for c, a in wallets[:5]]},
                    )
                )

        # Layer 3: the classifier.
        classifier_score: float | None = None
        if state.classifier is not None and state.classifier.trained and text.strip():
            classifier_score = state.classifier.spam_probability(text, domains=domains)
            if classifier_score >= config.classifier_min_score:
                hits.append(
                    CheckHit(
                        layer="classifier",
                        check="classifier",
                        score=round(classifier_score, 4),
                        reason="reads like spam the classifier has learnt",
                        evidence={"probability": round(classifier_score, 4)},
                    )
                )

        score = combine(hits)
        used_llm = False
        if llm is not None and hits and config.review_threshold <= score < config.remove_threshold:
            llm_hit = self._llm(llm, text)
            if llm_hit is not None:
                used_llm = True
                hits.append(llm_hit)
                score = self._with_llm(score, llm_hit)

        verdict = self.verdict_for(score)
        judgement = Judgement(
            verdict=verdict,
            score=round(score, 4),
            checks=tuple(hits),
            strike_weight=self._strikes(verdict, hits, state.rules),
            decision_id=None,
        )
        return Evaluation(judgement, classifier_score, used_llm, (time.perf_counter() - started) * 1000)

    def _builtin_limits(self, data: RuleInput, history: History) -> list[CheckHit]:
        config = self.config
        hits: list[CheckHit] = []
        if config.flood_messages:
            count = history.messages_in_window(
                author=data.author, window_seconds=config.flood_seconds, now=data.now
            )
            if count > config.flood_messages:
                hits.append(
                    CheckHit(
                        layer="rules",
                        check="flood",
                        score=0.9,
                        reason=f"{count} messages in {config.flood_seconds} s",
                        evidence={
                            "count": count,
                            "limit": config.flood_messages,
                            "seconds": config.flood_seconds,
                        },
                    )
                )
        if config.duplicate_authors and len(data.text) >= 20:
            authors = history.authors_with_text(
                text=data.text, author=data.author, window_seconds=config.duplicate_seconds, now=data.now
            )
            if authors >= config.duplicate_authors:
                hits.append(
                    CheckHit(
                        layer="rules",
                        check="duplicate_text",
                        score=0.9,
                        reason=f"the same text from {authors} people within {config.duplicate_seconds // 60} min",
                        evidence={"authors": authors},
                    )
                )
        return hits

    def _link_context(
        self, domains: tuple[str, ...], *, is_new: bool, allowed: frozenset[str]
    ) -> list[CheckHit]:
        config = self.config
        hits: list[CheckHit] = []
        shorteners = [d for d in domains if d in URL_SHORTENERS]
        if shorteners:
            hits.append(
                CheckHit(
                    layer="rules",
                    check="url_shortener",
                    score=config.shortener_score,
                    reason="a shortened link hides where it goes",
                    evidence={"domains": shorteners},
                )
            )
        unknown = [d for d in domains if not any(p in allowed for p in domain_and_parents(d))]
        if is_new and unknown and config.new_member_link_score > 0:
            hits.append(
                CheckHit(
                    layer="rules",
                    check="new_member_link",
                    score=config.new_member_link_score,
                    reason="a link from a new member",
                    evidence={"domains": unknown[:5]},
                )
            )
        return hits

    @staticmethod
    def _llm(llm: LLMJudge, text: str) -> CheckHit | None:
        try:
            answer = llm(text)
        except Exception as exc:
            return CheckHit(
                layer="llm",
                check="llm",
                score=0.0,
                reason="the LLM was unavailable",
                evidence={"error": str(exc)[:200]},
            )
        if answer is None:
            return None
        is_spam, confidence, reason = answer
        confidence = max(0.0, min(1.0, confidence))
        return CheckHit(
            layer="llm",
            check="llm",
            score=round(confidence if is_spam else 0.0, 4),
            reason=reason or ("the LLM reads it as spam" if is_spam else "the LLM reads it as harmless"),
            evidence={"spam": is_spam, "confidence": round(confidence, 4)},
        )

    def _with_llm(self, score: float, hit: CheckHit) -> float:
        """A borderline score moved by the LLM's opinion, but never past what the other checks allow on their
        own: a spam answer may lift it to REMOVE only when it is confident; a harmless answer drops it under
        the review line."""
        if hit.evidence.get("spam") is True:
            return 1.0 - (1.0 - score) * (1.0 - hit.score)
        if hit.evidence.get("spam") is False and hit.evidence.get("confidence", 0) >= 0.5:
            return min(score, self.config.review_threshold - 0.01)
        return score

    @staticmethod
    def _strikes(verdict: Verdict, hits: list[CheckHit], rules: tuple[CompiledRule, ...]) -> int:
        if verdict == Verdict.ALLOW:
            return 0
        weights = {rule.id: rule.strike_weight for rule in rules}
        best = 1
        for hit in hits:
            if hit.rule_id is not None:
                best = max(best, weights.get(hit.rule_id, 1))
            else:
                best = max(best, CHECK_STRIKES.get(hit.check, 1) if hit.score >= 0.5 else 1)
        return best
