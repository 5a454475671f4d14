"""Content creation: a draft for every plan that is due, written to its platform's limits and checked.

The writer is the one ``LLM_BACKEND`` names. Whatever it writes is held to the same checks before it may
become a draft: the platform's limits (``apps.content.limits``), every number traceable to the insight's
evidence (``unexpected_numbers``), no banned phrase (promises of profit and the like) and the disclaimer
present. A draft from the LLM that fails any of them, or an LLM that fails outright, is replaced by the
template writer's, which builds its text from the evidence alone. The checks of every attempt and the writer
that won are recorded on the draft.

The writer's tone is a preset of the ``tones`` parameter: the plan's arm names one when the strategist drew
the plan from arms, else the default ``tone`` applies; where an A/B test on posts is running, the plan's
variant (``assignment_for``) sets the keys its payload names over that preset. Variants are assigned
independently of arms, so each variant meets every arm alike: the test compares its payloads without bias,
and the bandit keeps learning which arms do best while a test runs. A draft that passed its checks on an
auto-approved platform (``CONTENT_AUTO_APPROVE_PLATFORMS``) is approved at once; any other waits for an
operator.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError

from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.content import limits, selectors, services
from apps.content.charts import label_for
from apps.content.models import ContentFormat, ContentPlan, Generator
from apps.core.models import Platform
from apps.core.resilience import IntegrationError, PermanentError
from apps.experiments.models import ABTest, ABTestVariant
from apps.experiments.services import assignment_for
from apps.integrations import llm
from apps.integrations.llm import THREAD_SEPARATOR, TemplateWriter, split_thread, text_length
from apps.integrations.types import Writer, WritingBrief

# What no post may say, whatever writes it; ``CONTENT_BANNED_PHRASES`` replaces the list.
DEFAULT_BANNED_PHRASES = (
    "guaranteed",
    "guarantee",
    "risk-free",
    "risk free",
    "can't lose",
    "cannot lose",
    "100x",
    "1000x",
    "to the moon",
    "financial advice",
    "buy now",
    "sell now",
    "get rich",
    "easy money",
    "free money",
)
# The tone keys the writers understand (the LLM prompt's style guide, ``llm._TONE_GUIDE``); a preset may use
# no other.
TONE_KEYS = ("opening", "length", "cta", "emoji", "hashtags")
EMBED_COLOUR = 0xF7B733  # the brand's accent
BRAND = "CoinLink"


def banned_phrases() -> tuple[str, ...]:
    return tuple(settings.CONTENT_BANNED_PHRASES) or DEFAULT_BANNED_PHRASES


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    # Whole words only ("100x" is not in "1100x"), with any run of spaces between the words.
    words = r"\s+".join(re.escape(w) for w in _normalise(phrase).split())
    return re.compile(rf"(?<![\w]){words}(?![\w])", re.IGNORECASE)


def _normalise(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


def _without_disclaimers(text: str, disclaimer: str) -> str:
    """The text with the disclaimer (ours and the template writer's own) taken out, so that its words
    ("financial advice") and any number in it are not held against the post. Case is kept: it tells
    "1.00K" (a number) from "1.00k"."""
    cleaned = _normalise(text)
    # With or without its closing stop: "... not financial advice, just data" is the disclaimer too.
    forms = {form for d in (disclaimer, llm.DISCLAIMER) for form in (d, d.rstrip(".!")) if form.strip()}
    for known in sorted(forms, key=len, reverse=True):
        cleaned = re.sub(re.escape(_normalise(known)), " ", cleaned, flags=re.IGNORECASE)
    return cleaned


def _contains(text: str, phrase: str) -> bool:
    return _normalise(phrase).casefold() in _normalise(text).casefold()


@dataclass
class Post:
    """A post as it will go out: ``content`` is the message text sent (a thread's parts joined by
    ``THREAD_SEPARATOR``; nothing for a Discord embed, whose text is the embed's description)."""

    body: str
    parts: list[str]
    embed: dict[str, Any]
    content: str


@dataclass
class Check:
    writer: str
    length: list[str] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    banned: list[str] = field(default_factory=list)
    disclaimer: bool = True
    error: str = ""

    @property
    def passed(self) -> bool:
        return not (self.error or self.length or self.numbers or self.banned) and self.disclaimer

    def as_dict(self) -> dict[str, Any]:
        if self.error:
            return {"writer": self.writer, "passed": False, "error": self.error}
        return {
            "writer": self.writer,
            "passed": self.passed,
            "length": self.length,
            "numbers": self.numbers,
            "banned": self.banned,
            "disclaimer": self.disclaimer,
        }


@dataclass(frozen=True)
class Subject:
    """What a plan is about, as a writer sees it."""

    insight_type: str
    symbol: str
    headline: str
    evidence: dict[str, Any]


def check_post(
    post: Post,
    *,
    platform: str,
    format: str,
    subject: Subject,
    writer: str,
    disclaimer: str,
    banned: Sequence[str],
) -> Check:
    has_image = format in limits.IMAGE_FORMATS
    check = Check(writer=writer)
    check.length = limits.problems(
        platform, format, post.content, embed=post.embed or None, has_image=has_image
    )
    embed = post.embed or {}
    readable = "\n".join(
        [
            post.content,
            str(embed.get("title", "")),
            str(embed.get("description", "")),
            str((embed.get("footer") or {}).get("text", "")),
        ]
    )
    scrubbed = _without_disclaimers(readable, disclaimer)
    check.numbers = llm.unexpected_numbers(scrubbed, subject.evidence, symbol=subject.symbol)
    check.banned = [p for p in banned if _phrase_pattern(p).search(scrubbed)]
    check.disclaimer = not disclaimer or _contains(readable, disclaimer)
    return check


class Composer:
    """Turns a writer's text into the post a platform gets: the disclaimer added (within the limit), a
    Telegram caption kept to one paragraph, a Discord embed built around it."""

    def __init__(self, *, platform: str, format: str, subject: Subject, disclaimer: str, cap: int | None):
        self.platform = platform
        self.format = format
        self.subject = subject
        self.disclaimer = disclaimer
        self.has_image = format in limits.IMAGE_FORMATS
        limit = limits.text_budget(platform, format, has_image=self.has_image)
        self.limit = min(limit, cap) if cap else limit
        self.caption = platform == Platform.TELEGRAM and self.has_image
        self.joiner = "\n" if self.caption else "\n\n"

    @property
    def thread(self) -> bool:
        return self.format == ContentFormat.X_THREAD

    def writer_budget(self) -> int:
        """What the writer may use: a thread's parts are whole posts (the disclaimer gets a part of its own
        when the last has no room); anything else leaves room for the disclaimer."""
        if self.thread or not self.disclaimer:
            return self.limit
        return max(1, self.limit - text_length(self.joiner + self.disclaimer, self.platform))

    def _has_disclaimer(self, text: str) -> bool:
        return not self.disclaimer or _contains(text, self.disclaimer)

    def compose(self, text: str) -> Post:
        text = text.strip()
        if self.thread:
            parts = split_thread(text)
            if not self._has_disclaimer(text):
                last = f"{parts[-1]}\n{self.disclaimer}" if parts else self.disclaimer
                if parts and text_length(last, self.platform) <= self.limit:
                    parts[-1] = last
                else:
                    parts.append(self.disclaimer)
            content = THREAD_SEPARATOR.join(parts)
            return Post(body=content, parts=parts, embed={}, content=content)
        if self.caption:
            text = re.sub(r"\n\s*\n", "\n", text)
        if not self._has_disclaimer(text):
            text = f"{text}{self.joiner}{self.disclaimer}" if text else self.disclaimer
        if self.format == ContentFormat.DISCORD_EMBED:
            embed = {
                "title": self.title()[: limits.DISCORD.embed_title],
                "description": text,
                "color": EMBED_COLOUR,
                "footer": {"text": f"{BRAND} · {self.subject.symbol}" if self.subject.symbol else BRAND},
            }
            return Post(body=text, parts=[], embed=embed, content="")
        return Post(body=text, parts=[], embed={}, content=text)

    def title(self) -> str:
        if self.subject.insight_type == "digest":
            return "Weekly digest"
        return f"{self.subject.symbol} · {label_for(self.subject.insight_type)}"


@register
class ContentCreationAgent(BaseAgent):
    name = "content_creation"
    phase = 1
    description = (
        "Writes a draft for every due plan within its platform's limits, with the disclaimer; LLM drafts that "
        "fail the length, number or phrase checks are replaced by the template writer's."
    )
    depends_on = ("content_strategist",)
    services = ("llm",)
    # With the LLM unavailable the template writer drafts alone.
    service_policy = "none"
    default_parameters: ClassVar[dict[str, Any]] = {
        # Plans due within this many minutes are drafted now, leaving operators time to review.
        "lead_minutes": 120,
        # A plan this many hours overdue (or whose insight has expired) is cancelled, not drafted.
        "stale_hours": 12.0,
        # Shorter than the platform allows, for formats where the platform's limit reads as a wall of text.
        "max_chars": {"discord_embed": 1500, "long_post": 3000},
        "batch_size": 50,
        # Tone presets for the writer, by name; an override adds or replaces presets and keeps the others.
        "tones": {
            "plain": {},
            "question": {"opening": "question"},
            "punchy": {"length": "short", "emoji": True},
            "discuss": {"cta": "discuss"},
        },
        # The preset used when neither the plan's arm nor an A/B test says otherwise.
        "tone": "plain",
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        for table in ("max_chars", "tones"):
            params[table] = {**cls.default_parameters[table], **params[table]}
        bad = [
            f"max_chars.{k} must be a whole number above 0"
            for k, v in params["max_chars"].items()
            if k not in ContentFormat.values or not isinstance(v, int) or isinstance(v, bool) or v < 1
        ]
        for name, tone in params["tones"].items():
            if not isinstance(tone, dict):
                bad.append(f"tones.{name} must be a table of tone keys ({', '.join(TONE_KEYS)})")
            elif unknown := sorted(set(tone) - set(TONE_KEYS)):
                bad.append(f"tones.{name}: unknown keys {unknown}; known: {', '.join(TONE_KEYS)}")
            elif not all(isinstance(v, str | bool) for v in tone.values()):
                bad.append(f"tones.{name}: every value is a word or true/false")
        if params["tone"] not in params["tones"]:
            bad.append(f"tone: {params['tone']!r} is not one of the tones presets")
        if bad:
            raise ValidationError(bad)
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        result = AgentResult()
        result.counters.update(dict.fromkeys(("drafts", "approved", "by_llm", "by_template", "cancelled"), 0))
        now = ctx.now
        run = _Run(writer=llm.get_writer(), params=params, result=result, ctx=ctx)
        due = selectors.content_plan_list_due(
            until=now + dt.timedelta(minutes=params["lead_minutes"]), limit=params["batch_size"]
        )
        for plan in due:
            run.draft(plan)
        counters = result.counters
        result.summary = (
            f"{counters['drafts']} drafts ({counters['by_llm']} by the LLM, {counters['by_template']} by "
            f"templates), {counters['approved']} approved, {counters['cancelled']} stale plans cancelled"
        )
        return result


@dataclass
class Written:
    """The post that won and the checks of every attempt, in order."""

    post: Post
    generator: str
    attempts: list[Check]
    # The LLM failed in a way its next call would too (an outage, a rate limit).
    llm_down: bool = False

    @property
    def passed(self) -> bool:
        return self.attempts[-1].passed

    def checks(self) -> dict[str, Any]:
        return {
            "attempts": [a.as_dict() for a in self.attempts],
            "winner": self.attempts[-1].writer,
            "passed": self.passed,
        }


def write_post(
    *,
    writer: Writer | None,
    platform: str,
    format: str,
    subject: Subject,
    tone: Mapping[str, Any],
    seed: int,
    disclaimer: str,
    banned: Sequence[str],
    cap: int | None = None,
) -> Written:
    """Ask ``writer`` (None: the template writer alone) for the post and check it; the template writer's
    post replaces one that fails its checks, or a writer that fails. No database access."""
    composer = Composer(platform=platform, format=format, subject=subject, disclaimer=disclaimer, cap=cap)
    brief = WritingBrief(
        platform=platform,
        format=format,
        insight_type=subject.insight_type,
        symbol=subject.symbol,
        headline=subject.headline,
        evidence=subject.evidence,
        max_chars=composer.writer_budget(),
        tone=dict(tone),
        seed=seed,
    )

    def attempt(candidate: Writer) -> tuple[Post | None, Check, IntegrationError | None]:
        try:
            text = candidate.write(brief)
        except IntegrationError as exc:
            return None, Check(writer=candidate.name, error=f"{type(exc).__name__}: {exc}"), exc
        post = composer.compose(text)
        check = check_post(
            post,
            platform=platform,
            format=format,
            subject=subject,
            writer=candidate.name,
            disclaimer=disclaimer,
            banned=banned,
        )
        return post, check, None

    attempts: list[Check] = []
    llm_down = False
    if writer is not None and writer.name != TemplateWriter.name:
        post, check, error = attempt(writer)
        attempts.append(check)
        if post is not None and check.passed:
            return Written(post=post, generator=Generator.LLM, attempts=attempts)
        llm_down = error is not None and not isinstance(error, PermanentError)
    post, check, error = attempt(TemplateWriter())
    attempts.append(check)
    if post is None:
        # The template writer calls nothing outside; failing is a bug, and it should be seen as one.
        raise RuntimeError(f"the template writer failed: {check.error}") from error
    return Written(post=post, generator=Generator.TEMPLATE, attempts=attempts, llm_down=llm_down)


class _Run:
    """One creation run: the writer, and whether the LLM is still worth asking."""

    def __init__(self, *, writer: Writer, params: Mapping[str, Any], result: AgentResult, ctx: AgentContext):
        self.writer: Writer | None = writer
        self.params = params
        self.result = result
        self.ctx = ctx
        self.disclaimer = str(settings.POST_DISCLAIMER).strip()
        self.banned = banned_phrases()

    def draft(self, plan: ContentPlan) -> None:
        now = self.ctx.now
        insight = plan.insight
        overdue = now - plan.scheduled_for > dt.timedelta(hours=self.params["stale_hours"])
        # A repurposing revisits a post that did well on purpose, after its insight's moment has passed.
        expired = (
            plan.repurposed_from_id is None
            and insight is not None
            and insight.expires_at is not None
            and insight.expires_at <= now
        )
        subject = self.subject(plan)
        if overdue or expired or subject is None:
            self.result.incr("cancelled", services.content_plan_cancel(plan_ids=[plan.pk]))
            return
        variant = assignment_for(subject=ABTest.Subject.POST, subject_key=f"plan:{plan.pk}")
        tone = self.tone(plan, variant)
        written = write_post(
            writer=self.writer,
            platform=plan.platform,
            format=plan.format,
            subject=subject,
            tone=tone,
            seed=plan.pk,
            disclaimer=self.disclaimer,
            banned=self.banned,
            cap=self.params["max_chars"].get(plan.format),
        )
        for check in written.attempts:
            if check.error:
                self.result.incr(f"errors.{check.writer}")
                self.ctx.logger.warning("plan #%s: %s failed: %s", plan.pk, check.writer, check.error)
            elif not check.passed:
                self.result.incr(f"rejected.{check.writer}")
        if written.llm_down:
            # An outage or a rate limit: the other drafts of this run go straight to the templates.
            self.writer = None
        if not written.passed:
            self.result.incr("checks_failed")
            self.ctx.logger.warning("plan #%s: even the template draft failed its checks", plan.pk)
        approved = written.passed and plan.platform in settings.CONTENT_AUTO_APPROVE_PLATFORMS
        post = written.post
        draft = services.content_draft_create(
            plan_id=plan.pk,
            spec=services.DraftSpec(
                body=post.body,
                parts=post.parts,
                embed=post.embed,
                generator=written.generator,
                checks=written.checks(),
                variant_id=variant.pk if variant is not None else None,
                approved=approved,
            ),
        )
        if draft is None:
            self.result.incr("already_drafted")
            return
        self.result.incr("drafts")
        self.result.incr("approved" if approved else "pending_review")
        self.result.incr("by_llm" if written.generator == Generator.LLM else "by_template")

    def tone(self, plan: ContentPlan, variant: ABTestVariant | None) -> dict[str, Any]:
        """The preset the plan's arm names (else the default preset), with the running A/B variant's payload
        over it. An arm naming a preset removed since the plan was made gets the default."""
        tones = self.params["tones"]
        arm = (plan.weights or {}).get("arm")
        name = arm.get("tone") if isinstance(arm, dict) else None
        tone = dict(tones[name] if isinstance(name, str) and name in tones else tones[self.params["tone"]])
        if variant is not None and isinstance(variant.payload, dict):
            tone.update(variant.payload)
        return tone

    @staticmethod
    def subject(plan: ContentPlan) -> Subject | None:
        if plan.format == ContentFormat.DIGEST:
            ids = [i for i in (plan.weights or {}).get("insight_ids", []) if isinstance(i, int)]
            items = selectors.insight_digest_items(insight_ids=ids)
            if not items:
                return None
            return Subject(insight_type="digest", symbol="", headline=plan.topic, evidence={"items": items})
        insight = plan.insight
        if insight is None:
            return None
        return Subject(
            insight_type=insight.type,
            symbol=insight.symbol,
            headline=insight.headline,
            evidence=dict(insight.evidence or {}),
        )
