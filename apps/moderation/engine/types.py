"""The moderation engine's value types: what comes in (a message), what each check says, what the engine decides.

Shared with the enforcement side and the bots (see the contract in issue 7); fields may grow, never change.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class InboundMessage:
    platform: str  # apps.core.models.Platform value: "x" | "telegram" | "discord"
    chat_id: str  # Discord channel id, Telegram chat id, "x" for X replies
    message_id: str  # the platform's message id (with platform+chat: a unique key)
    author_id: str  # the platform's user id
    text: str
    sent_at: datetime.datetime  # aware UTC
    author_username: str = ""
    author_display_name: str = ""
    kind: str = "message"  # "message" | "edited" | "reply" | "join_request_bio"
    author_joined_at: datetime.datetime | None = None  # when they joined the community (new-member checks)
    author_is_staff: bool = False  # operators, moderators and our own bot: never moderated
    links: tuple[str, ...] = ()  # URLs the platform parsed out (entities); the engine also finds them in text


@dataclass(frozen=True)
class CheckHit:
    layer: str  # "rules" | "scam" | "classifier" | "llm"
    check: str  # "seed_phrase", "support_scam", "impersonation", "drainer_domain", "link_denylist", ...
    score: float  # 0..1, this check's confidence
    reason: str  # why, for people ("asks for a seed phrase")
    evidence: dict[str, Any] = field(default_factory=dict)  # what matched
    rule_id: int | None = None  # the operator rule (ModerationRule) that fired, if any

    def as_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "check": self.check,
            "score": round(float(self.score), 4),
            "reason": self.reason,
            "evidence": self.evidence,
            "rule_id": self.rule_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckHit:
        return cls(
            layer=str(data.get("layer", "")),
            check=str(data.get("check", "")),
            score=float(data.get("score", 0.0)),
            reason=str(data.get("reason", "")),
            evidence=dict(data.get("evidence") or {}),
            rule_id=data.get("rule_id"),
        )


class Verdict(StrEnum):
    ALLOW = "allow"
    REVIEW = "review"
    REMOVE = "remove"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    score: float  # combined 0..1
    checks: tuple[CheckHit, ...]  # every check that fired
    strike_weight: int  # 0 for allow; how many strikes this message is worth
    decision_id: int | None = None  # the ModerationDecision row (audit), when recorded
