"""A second opinion on borderline moderation cases from the LLM backend (``LLM_BACKEND``).

The moderation engine asks only about messages its own checks put in the review band, and the answer only
moves a message within that band (see ``apps.moderation.engine.core``). ``get_spam_judge()`` returns a callable
``judge(text) -> (is_spam, confidence, reason) | None``: with ``LLM_BACKEND=anthropic`` Claude answers through
the official SDK inside the ``llm`` circuit breaker; with the template writer (the offline default) the twin has
no opinion and always returns None, so the engine decides exactly as without an LLM.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.core.resilience import PermanentError, RetryPolicy, TransientError, guarded_call

SERVICE = "llm"
SYSTEM_PROMPT = (
    "You moderate a crypto community's group chat. Decide whether one message is spam or a scam: seed-phrase "
    "or private-key requests, fake support, impersonation, fake giveaways or airdrops, recovery scams, "
    "phishing or drainer links, pump groups, prize or premium-rate spam, unsolicited promotion. Ordinary chat, "
    "questions and crypto discussion (including warnings about scams) are not spam. Answer with one JSON "
    'object and nothing else: {"spam": true|false, "confidence": 0.0-1.0, "reason": "<=15 words"}.'
)
_JSON_RE = re.compile(r"\{.*\}", re.DOTALL)

SpamJudge = Callable[[str], "tuple[bool, float, str] | None"]


def parse_answer(text: str) -> tuple[bool, float, str] | None:
    """The model's JSON answer, or None when it did not give one (no opinion rather than a guess)."""
    match = _JSON_RE.search(text)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
        spam = data["spam"]
        confidence = float(data.get("confidence", 0.5))
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(spam, bool):
        return None
    return spam, max(0.0, min(1.0, confidence)), str(data.get("reason", ""))[:200]


class AnthropicSpamJudge:
    timeout_seconds = 20.0

    def __init__(
        self, *, api_key: str, model: str, base_url: str | None = None, policy: RetryPolicy | None = None
    ):
        import anthropic

        self._anthropic = anthropic
        self.model = model
        # One attempt: a message waits for its verdict, and without the LLM the engine still decides.
        self.policy = policy or RetryPolicy(max_attempts=1)
        self.client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url or None, timeout=self.timeout_seconds, max_retries=0
        )

    def __call__(self, text: str) -> tuple[bool, float, str] | None:
        return guarded_call(SERVICE, lambda: self._ask(text), policy=self.policy)

    def _ask(self, text: str) -> tuple[bool, float, str] | None:
        anthropic = self._anthropic
        try:
            message = self.client.messages.create(
                model=self.model,
                max_tokens=100,
                system=SYSTEM_PROMPT,
                messages=[{"role": "user", "content": f"Message:\n<<<\n{text[:2000]}\n>>>"}],
            )
        except anthropic.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in {408, 409, 429}:
                raise TransientError(f"Anthropic {exc.status_code}: {exc}", service=SERVICE) from exc
            raise PermanentError(f"Anthropic {exc.status_code}: {exc}", service=SERVICE) from exc
        except anthropic.APIConnectionError as exc:
            raise TransientError(f"Anthropic unreachable: {exc}", service=SERVICE) from exc
        answer = "".join(block.text for block in message.content if block.type == "text")
        return parse_answer(answer)


def template_spam_judge(text: str) -> tuple[bool, float, str] | None:
    """The offline twin: the template writer has no opinion about spam."""
    return None


def get_spam_judge() -> SpamJudge:
    if settings.LLM_BACKEND == "anthropic":
        if not settings.ANTHROPIC_API_KEY:
            raise ImproperlyConfigured("LLM_BACKEND=anthropic needs ANTHROPIC_API_KEY")
        return AnthropicSpamJudge(
            api_key=settings.ANTHROPIC_API_KEY,
            model=settings.ANTHROPIC_MODEL,
            base_url=settings.ANTHROPIC_BASE_URL or None,
        )
    return template_spam_judge
