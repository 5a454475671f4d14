"""Judging inbound messages: ``moderation_judge`` runs the engine with the database's rules, blocked domains,
protected names and the current classifier, and records the decision once per platform message.

The engine's state is loaded once per process and reloaded when the shared cache's version changes
(``domains.engine_config_changed``, called when rules or domains change) or after ``STATE_MAX_AGE`` seconds
whatever the cache says, so a lost cache entry costs a minute at most. Flood, duplicate-text and first-message
counts live in the shared cache (Redis in production), so they hold across every bot and worker process.
"""

from __future__ import annotations

import datetime
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.db import IntegrityError, transaction

from apps.community.models import PlatformIdentity
from apps.core import metrics
from apps.moderation.engine import detectors
from apps.moderation.engine.core import Engine, EngineConfig, EngineState, Evaluation, LLMJudge
from apps.moderation.engine.rules import NoHistory, compile_rules, text_key
from apps.moderation.engine.types import CheckHit, InboundMessage, Judgement, Verdict
from apps.moderation.models import BlockedDomain, ModerationDecision, ModerationRule
from apps.moderation.services.domains import ENGINE_VERSION_KEY, seed_domains
from apps.moderation.services.labels import classifier_current

logger = logging.getLogger(__name__)

STATE_MAX_AGE = 60.0
SEEN_TTL = 30 * 86400


def engine_config() -> EngineConfig:
    return EngineConfig(
        remove_threshold=settings.MODERATION_REMOVE_THRESHOLD,
        review_threshold=settings.MODERATION_REVIEW_THRESHOLD,
        classifier_min_score=settings.MODERATION_CLASSIFIER_MIN_SCORE,
        new_member_seconds=int(settings.MODERATION_NEW_MEMBER_HOURS * 3600),
        new_member_messages=settings.MODERATION_NEW_MEMBER_MESSAGES,
        flood_messages=settings.MODERATION_FLOOD_MESSAGES,
        flood_seconds=settings.MODERATION_FLOOD_SECONDS,
        duplicate_authors=settings.MODERATION_DUPLICATE_AUTHORS,
    )


# --- state ------------------------------------------------------------------------------------------------------


def protected_names() -> list[str]:
    """The creator, the bot, the configured names, and every name staff use on the platforms."""
    names = [*settings.MODERATION_PROTECTED_NAMES, settings.X_HANDLE, settings.TELEGRAM_LOGIN_BOT_USERNAME]
    staff = PlatformIdentity.objects.filter(community_user__portal_user__is_staff=True).values_list(
        "username", "display_name"
    )
    for username, display_name in staff:
        names += [username, display_name]
    return [name for name in names if name]


def load_state() -> EngineState:
    rules = compile_rules(ModerationRule.objects.filter(is_active=True).order_by("id"))
    listed = BlockedDomain.objects.filter(source__in=[BlockedDomain.Source.SEED, BlockedDomain.Source.FEED])
    if listed.exists():
        blocked = frozenset(BlockedDomain.objects.filter(is_active=True).values_list("domain", flat=True))
    else:
        # Never refreshed yet: the project's seed list, plus whatever operators added by hand.
        blocked = seed_domains() | frozenset(
            BlockedDomain.objects.filter(is_active=True).values_list("domain", flat=True)
        )
    allowed = frozenset(domain for rule in rules if rule.kind == "link" for domain in rule.domains)
    return EngineState(
        rules=rules,
        blocked_domains=blocked,
        allowed_domains=allowed,
        protected_names=detectors.ProtectedNames.build(protected_names()),
    )


@dataclass
class StateHolder:
    state: EngineState | None = None
    version: Any = None
    loaded_at: float = 0.0
    checked_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self) -> EngineState:
        now = time.monotonic()
        if self.state is not None and now - self.checked_at < settings.MODERATION_REFRESH_SECONDS:
            return self.state
        with self.lock:
            self.checked_at = now
            version = cache.get(ENGINE_VERSION_KEY)
            if self.state is None or version != self.version or now - self.loaded_at > STATE_MAX_AGE:
                self.state = load_state()
                self.version, self.loaded_at = version, now
            return self.state

    def reset(self) -> None:
        with self.lock:
            self.state = None


engine_state = StateHolder()


def moderation_state_reset() -> None:
    """Forget this process's engine state and classifier; the next judgement reloads both (tests, and after
    changing settings in a running shell)."""
    from apps.moderation.services import labels

    engine_state.reset()
    labels.classifier.reset()


def current_state() -> EngineState:
    state = engine_state.current()
    state.classifier = classifier_current()
    return state


# --- history in the shared cache --------------------------------------------------------------------------------


def _incr(store: BaseCache, key: str, timeout: int) -> int:
    store.add(key, 0, timeout=timeout)
    try:
        return int(store.incr(key))
    except ValueError:  # expired between add and incr
        store.set(key, 1, timeout=timeout)
        return 1


class CacheHistory:
    """Sliding-window counts on fixed buckets (the previous bucket weighted by how much of it is still in the
    window), with ``add``/``incr``, which are atomic on Redis, and one ``get_many`` for what is only read. With
    ``record`` False it only reads: a dry run sees the counts as they are, this message included, and changes
    nothing."""

    def __init__(self, *, record: bool = True) -> None:
        self.record = record
        self.store: BaseCache = caches["default"]

    def _count(self, key: str, timeout: int) -> int:
        if self.record:
            return _incr(self.store, key, timeout)
        return int(self.store.get(key) or 0) + 1

    def messages_in_window(self, *, author: str, window_seconds: int, now: datetime.datetime) -> int:
        ts = now.timestamp()
        bucket = int(ts // window_seconds)
        base = f"moderation:flood:{window_seconds}:{author}"
        current = self._count(f"{base}:{bucket}", window_seconds * 2 + 1)
        previous = self.store.get(f"{base}:{bucket - 1}") or 0
        still_in_window = 1.0 - (ts % window_seconds) / window_seconds
        return current + math.floor(previous * still_in_window)

    def authors_with_text(
        self, *, text: str, author: str, window_seconds: int, now: datetime.datetime
    ) -> int:
        ts = now.timestamp()
        bucket = int(ts // window_seconds)
        base = f"moderation:dup:{window_seconds}:{text_key(text)[:40]}"
        timeout = window_seconds * 2 + 1
        member, count_key = f"{base}:{bucket}:{author}", f"{base}:{bucket}"
        previous_member, previous_key = f"{base}:{bucket - 1}:{author}", f"{base}:{bucket - 1}"
        if self.record and self.store.add(member, 1, timeout=timeout):
            current = _incr(self.store, count_key, timeout)
            known = self.store.get_many([previous_key, previous_member])
        else:
            known = self.store.get_many([count_key, member, previous_key, previous_member])
            current = int(known.get(count_key) or 0) + (0 if member in known else 1)
        previous = int(known.get(previous_key) or 0)
        # Someone in both buckets is one person.
        both = 1 if previous and previous_member in known else 0
        return current + previous - both

    def messages_before(self, *, author: str) -> int:
        key = f"moderation:seen:{author}"
        if self.record:
            return _incr(self.store, key, SEEN_TTL) - 1
        return int(self.store.get(key) or 0)


class RedisHistory:
    """The same counts on Redis itself, one pipelined round trip per question (the generic ``CacheHistory``
    would make three to five): a counter per window bucket for floods, a set of authors per text and bucket for
    duplicates, a counter per author for first messages. Used when the default cache is Redis."""

    prefix = "coinlink:moderation"

    def __init__(self, client: Any, *, record: bool = True) -> None:
        self.client = client
        self.record = record

    def messages_in_window(self, *, author: str, window_seconds: int, now: datetime.datetime) -> int:
        ts = now.timestamp()
        bucket = int(ts // window_seconds)
        key = f"{self.prefix}:flood:{window_seconds}:{author}"
        pipe = self.client.pipeline(transaction=False)
        if self.record:
            pipe.incr(f"{key}:{bucket}")
            pipe.expire(f"{key}:{bucket}", window_seconds * 2 + 1)
        else:
            pipe.get(f"{key}:{bucket}")
        pipe.get(f"{key}:{bucket - 1}")
        answers = pipe.execute()
        current = int(answers[0] or 0) + (0 if self.record else 1)
        still_in_window = 1.0 - (ts % window_seconds) / window_seconds
        return current + math.floor(int(answers[-1] or 0) * still_in_window)

    def authors_with_text(
        self, *, text: str, author: str, window_seconds: int, now: datetime.datetime
    ) -> int:
        bucket = int(now.timestamp() // window_seconds)
        key = f"{self.prefix}:dup:{window_seconds}:{text_key(text)[:40]}"
        pipe = self.client.pipeline(transaction=False)
        if self.record:
            pipe.sadd(f"{key}:{bucket}", author)
            pipe.expire(f"{key}:{bucket}", window_seconds * 2 + 1)
        else:
            pipe.sismember(f"{key}:{bucket}", author)
        pipe.scard(f"{key}:{bucket}")
        pipe.scard(f"{key}:{bucket - 1}")
        pipe.sismember(f"{key}:{bucket - 1}", author)
        answers = pipe.execute()
        current, previous, in_previous = int(answers[-3]), int(answers[-2]), bool(answers[-1])
        if not self.record and not answers[0]:
            current += 1  # a dry run: this author would be one more
        return current + previous - (1 if in_previous else 0)

    def messages_before(self, *, author: str) -> int:
        key = f"{self.prefix}:seen:{author}"
        if not self.record:
            return int(self.client.get(key) or 0)
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(key)
        pipe.expire(key, SEEN_TTL)
        return int(pipe.execute()[0]) - 1


class _ProcessCounts:
    """Counters and author sets for ``ProcessHistory``, with their expiry times (monotonic seconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token = ""
        self.counters: dict[str, tuple[int, float]] = {}
        self.sets: dict[str, tuple[set[str], float]] = {}
        self.operations = 0

    def reset(self, token: str) -> None:
        with self.lock:
            self.token = token
            self.counters.clear()
            self.sets.clear()

    def _prune(self, now: float) -> None:
        self.operations += 1
        if self.operations % 10_000 == 0:
            self.counters = {k: v for k, v in self.counters.items() if v[1] > now}
            self.sets = {k: v for k, v in self.sets.items() if v[1] > now}

    def count(self, key: str, ttl: int, *, add: bool) -> int:
        now = time.monotonic()
        with self.lock:
            self._prune(now)
            value, expires = self.counters.get(key, (0, 0.0))
            if expires <= now:
                value = 0
            if add:
                value += 1
                self.counters[key] = (value, now + ttl)
            return value

    def members(self, key: str, ttl: int, *, add: str | None) -> set[str]:
        now = time.monotonic()
        with self.lock:
            self._prune(now)
            members, expires = self.sets.get(key, (set(), 0.0))
            if expires <= now:
                members = set()
            if add is not None:
                members.add(add)
                self.sets[key] = (members, now + ttl)
            return members


_process_counts = _ProcessCounts()
_HISTORY_GENERATION_KEY = "moderation:history:generation"


class ProcessHistory:
    """The history in this process's memory, for the local-memory cache, which is per process anyway: the same
    buckets as ``CacheHistory`` at a fraction of the cost (no pickling, no key validation). Clearing the cache
    clears it too (a token kept in the cache)."""

    def __init__(self, counts: _ProcessCounts, *, record: bool = True) -> None:
        self.counts = counts
        self.record = record

    def messages_in_window(self, *, author: str, window_seconds: int, now: datetime.datetime) -> int:
        ts = now.timestamp()
        bucket = int(ts // window_seconds)
        base = f"flood:{window_seconds}:{author}"
        ttl = window_seconds * 2 + 1
        current = self.counts.count(f"{base}:{bucket}", ttl, add=self.record) + (0 if self.record else 1)
        previous = self.counts.count(f"{base}:{bucket - 1}", ttl, add=False)
        still_in_window = 1.0 - (ts % window_seconds) / window_seconds
        return current + math.floor(previous * still_in_window)

    def authors_with_text(
        self, *, text: str, author: str, window_seconds: int, now: datetime.datetime
    ) -> int:
        bucket = int(now.timestamp() // window_seconds)
        base = f"dup:{window_seconds}:{text_key(text)[:40]}"
        ttl = window_seconds * 2 + 1
        current = self.counts.members(f"{base}:{bucket}", ttl, add=author if self.record else None)
        previous = self.counts.members(f"{base}:{bucket - 1}", ttl, add=None)
        return len(current | previous | {author})

    def messages_before(self, *, author: str) -> int:
        seen = self.counts.count(f"seen:{author}", SEEN_TTL, add=self.record)
        return seen - 1 if self.record else seen


def shared_history(*, record: bool = True) -> CacheHistory | RedisHistory | ProcessHistory:
    """The history every process shares: on Redis directly when the cache is Redis, in this process's memory
    with the (per-process) local-memory cache, through the cache API with any other backend."""
    store = caches["default"]
    if isinstance(store, RedisCache):
        return RedisHistory(store._cache.get_client(write=True), record=record)
    if isinstance(store, LocMemCache):
        token = store.get(_HISTORY_GENERATION_KEY)
        if token is None or token != _process_counts.token:
            token = uuid.uuid4().hex
            _process_counts.reset(token)
            store.set(_HISTORY_GENERATION_KEY, token, timeout=None)
        return ProcessHistory(_process_counts, record=record)
    return CacheHistory(record=record)


# --- judging ----------------------------------------------------------------------------------------------------


def judgement_from_decision(row: ModerationDecision) -> Judgement:
    return Judgement(
        verdict=Verdict(row.verdict),
        score=row.score,
        checks=tuple(CheckHit.from_dict(item) for item in row.checks or ()),
        strike_weight=row.strike_weight,
        decision_id=row.pk,
    )


_llm_judges: dict[tuple[str, str, str], LLMJudge] = {}


def _llm_judge(use_llm: bool | None) -> LLMJudge | None:
    """The LLM's second opinion when asked for (one client per process and configuration)."""
    if not (settings.MODERATION_LLM_CONFIRM if use_llm is None else use_llm):
        return None
    from apps.integrations.spam_llm import get_spam_judge

    key = (settings.LLM_BACKEND, settings.ANTHROPIC_MODEL, settings.ANTHROPIC_BASE_URL)
    if key not in _llm_judges:
        _llm_judges[key] = get_spam_judge()
    return _llm_judges[key]


def moderation_evaluate(
    *, message: InboundMessage, history: Any = None, use_llm: bool | None = False
) -> Evaluation:
    """The engine's judgement of ``message`` with the current state, recording nothing (``moderation_eval``
    and the benchmark use it; ``history`` None means the message is its author's first)."""
    return Engine(engine_config()).judge(
        message, current_state(), history=history or NoHistory(), llm=_llm_judge(use_llm)
    )


def moderation_judge(
    *, message: InboundMessage, record: bool = True, use_llm: bool | None = None
) -> Judgement:
    """Judge one inbound message. With ``record``, the decision is stored once per platform message: a
    redelivered message returns the stored judgement and is neither judged nor counted again. Staff (the
    message says so, or the author's identity belongs to a staff account) are allowed without checks.
    ``use_llm`` None follows ``MODERATION_LLM_CONFIRM``."""
    identity = (
        PlatformIdentity.objects.filter(platform=message.platform, external_id=message.author_id)
        .select_related("community_user__portal_user")
        .first()
    )
    portal_user = identity.community_user.portal_user if identity else None
    if portal_user is not None and portal_user.is_staff and not message.author_is_staff:
        message = _as_staff(message)
    if record:
        stored = ModerationDecision.objects.filter(
            platform=message.platform, chat_id=message.chat_id, message_id=message.message_id
        ).first()
        if stored is not None:
            return judgement_from_decision(stored)
    history = shared_history(record=record)
    evaluation = Engine(engine_config()).judge(
        message, current_state(), history=history, llm=_llm_judge(use_llm)
    )
    judgement = evaluation.judgement
    if not record:
        return judgement
    row = ModerationDecision(
        platform=message.platform,
        chat_id=message.chat_id,
        message_id=message.message_id,
        kind=message.kind,
        author_id=message.author_id,
        author_username=message.author_username[:100],
        author_display_name=message.author_display_name[:200],
        community_user_id=identity.community_user_id if identity else None,
        text=message.text,
        sent_at=message.sent_at,
        verdict=judgement.verdict.value,
        score=judgement.score,
        strike_weight=judgement.strike_weight,
        checks=[hit.as_dict() for hit in judgement.checks],
        check_names=",".join(dict.fromkeys(hit.check for hit in judgement.checks))[:255],
        classifier_score=evaluation.classifier_score,
        used_llm=evaluation.used_llm,
        duration_ms=round(evaluation.duration_ms, 3),
    )
    try:
        with transaction.atomic():
            row.save(force_insert=True)
    except IntegrityError:
        # The same message judged by another process a moment ago: its decision stands.
        stored = ModerationDecision.objects.get(
            platform=message.platform, chat_id=message.chat_id, message_id=message.message_id
        )
        return judgement_from_decision(stored)
    metrics.moderation_judgement(platform=message.platform, verdict=judgement.verdict.value)
    return Judgement(
        verdict=judgement.verdict,
        score=judgement.score,
        checks=judgement.checks,
        strike_weight=judgement.strike_weight,
        decision_id=row.pk,
    )


def _as_staff(message: InboundMessage) -> InboundMessage:
    return replace(message, author_is_staff=True)
