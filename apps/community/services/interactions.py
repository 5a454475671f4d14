"""Recording what people say to us on the platforms, and our answers.

Every inbound message becomes one ``user_interactions`` row, keyed by the platform's message id (the table's
unique ``(platform, external_id)``), so reading a stream again, or two readers of one stream, record each
message once. Its author is the community record their platform identity belongs to: created on first sight,
and the same record on every platform once the person has linked their accounts (``linking`` owns that link
and folds the records together; here the identity's record is simply taken as it is). Bots are not people and
are never recorded.

An answer is claimed before it is sent (``responded_at`` set by a conditional UPDATE), so a message is
answered at most once however many workers look at it; a failed send gives the claim back.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.community.models import CommunityUser, InteractionKind, PlatformIdentity, UserInteraction
from apps.content.models import PublishedContent
from apps.core.models import Platform
from apps.integrations.sentiment import score_text
from apps.integrations.types import InboundEvent

Key = tuple[str, str]  # (platform, the platform's id)

# A reply to a later part of a thread names that part, not the thread's first post: posts published this long
# before the oldest event are searched by their parts too.
THREAD_PART_LOOKBACK = dt.timedelta(days=14)

# Words that open a question in English chat even when the question mark is left off.
INTERROGATIVES = frozenset(
    {
        "what",
        "whats",
        "what's",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "why",
        "how",
        "hows",
        "how's",
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "any",
        "anyone",
        "anybody",
    }
)
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_LEADING_MENTIONS = re.compile(r"^(?:\s*@\w+[\s,:]*)+")
_FIRST_WORD = re.compile(r"[a-z']+")


def is_question(text: str) -> bool:
    """Whether a message asks something: a question mark outside its links, or an interrogative first word
    after any leading @mentions ("how do I join", "@coinlink is this the daily").

    Deliberately simple: a statement that opens like a question ("do your own research") is rare in replies to
    a post, and answering it costs one friendly reply; a question it misses has no question mark and no
    question word up front.
    """
    without_links = _URL.sub(" ", text)
    if "?" in without_links or "？" in without_links:
        return True
    opening = _LEADING_MENTIONS.sub("", without_links).strip().lower()
    word = _FIRST_WORD.match(opening)
    return word is not None and word.group().replace("’", "'") in INTERROGATIVES


@dataclass(frozen=True)
class IngestResult:
    """What one batch of inbound events came to. ``interactions`` are the rows of the events not seen before,
    as stored, oldest first."""

    events: int
    interactions_new: int
    users_new: int
    questions_new: int
    bots_ignored: int
    interactions: tuple[UserInteraction, ...] = ()


@dataclass
class _Author:
    platform: str
    external_id: str
    username: str
    display_name: str
    first_seen: dt.datetime
    last_seen: dt.datetime

    def see(self, event: InboundEvent) -> None:
        self.first_seen = min(self.first_seen, event.occurred_at)
        if event.occurred_at >= self.last_seen:
            # The newest message carries the newest names.
            self.last_seen = event.occurred_at
            self.username = event.author_username or self.username
            self.display_name = event.author_display_name or self.display_name


def _by_platform(keys: Iterable[Key], field: str) -> Q:
    grouped: dict[str, list[str]] = {}
    for platform, external_id in keys:
        grouped.setdefault(platform, []).append(external_id)
    return reduce(or_, (Q(platform=p, **{f"{field}__in": ids}) for p, ids in grouped.items()), Q(pk__in=[]))


def _identities_get(keys: Iterable[Key]) -> dict[Key, PlatformIdentity]:
    identities = PlatformIdentity.objects.filter(_by_platform(keys, "external_id")).select_related(
        "community_user"
    )
    return {(i.platform, i.external_id): i for i in identities}


def _identities_resolve(
    authors: Mapping[Key, _Author], *, now: dt.datetime
) -> tuple[dict[Key, PlatformIdentity], int]:
    """The identity of every author (created with a community record of its own on first sight), its names
    and its person's last-seen time brought up to date; and how many records were created. A constant number
    of queries, however many authors."""
    found = _identities_get(authors)
    missing = [a for key, a in authors.items() if key not in found]
    created = 0
    if missing:
        people = CommunityUser.objects.bulk_create(
            [
                CommunityUser(
                    display_name=(a.display_name or a.username or f"{a.platform} {a.external_id}")[:150],
                    first_seen_at=a.first_seen,
                    last_seen_at=a.last_seen,
                )
                for a in missing
            ]
        )
        PlatformIdentity.objects.bulk_create(
            [
                PlatformIdentity(
                    community_user=person,
                    platform=a.platform,
                    external_id=a.external_id,
                    username=a.username[:100],
                    display_name=a.display_name[:150],
                )
                for person, a in zip(people, missing, strict=True)
            ],
            ignore_conflicts=True,
        )
        landed = _identities_get((a.platform, a.external_id) for a in missing)
        # Another writer (a bot process, a member linking the account) created one of these identities in the
        # same instant: its record is the person's, and the one made here for them is dropped.
        orphans = [
            person.pk
            for person, a in zip(people, missing, strict=True)
            if landed[(a.platform, a.external_id)].community_user_id != person.pk
        ]
        if orphans:
            CommunityUser.objects.filter(pk__in=orphans).delete()
        created = len(people) - len(orphans)
        found.update(landed)

    renamed = []
    seen: dict[int, CommunityUser] = {}
    moved: set[int] = set()
    for key, identity in found.items():
        author = authors[key]
        username = author.username[:100] or identity.username
        display_name = author.display_name[:150] or identity.display_name
        if (username, display_name) != (identity.username, identity.display_name):
            identity.username, identity.display_name, identity.updated_at = username, display_name, now
            renamed.append(identity)
        person = seen.setdefault(identity.community_user_id, identity.community_user)
        if author.last_seen > person.last_seen_at:
            person.last_seen_at, person.updated_at = author.last_seen, now
            moved.add(person.pk)
    if renamed:
        PlatformIdentity.objects.bulk_update(renamed, ["username", "display_name", "updated_at"])
    if moved:
        CommunityUser.objects.bulk_update([seen[pk] for pk in moved], ["last_seen_at", "updated_at"])
    return found, created


@transaction.atomic
def community_user_for_identity(
    *,
    platform: str,
    external_id: str,
    username: str = "",
    display_name: str = "",
    is_bot: bool = False,
    seen_at: dt.datetime | None = None,
) -> CommunityUser | None:
    """The community record of whoever holds this platform account: the linked person's when they linked it,
    a new record of its own on first sight. None for a bot (an account we know, or are told, is one)."""
    if platform not in Platform.values:
        raise ValueError(f"unknown platform {platform!r}")
    if is_bot:
        return None
    now = timezone.now()
    seen_at = seen_at or now
    key = (platform, external_id)
    author = _Author(platform, external_id, username, display_name, seen_at, seen_at)
    identities, _ = _identities_resolve({key: author}, now=now)
    identity = identities.get(key)
    if identity is None or identity.is_bot:
        return None
    return identity.community_user


def _published_content_ids(events: Sequence[InboundEvent]) -> dict[Key, int]:
    """The post each event answers, by (platform, the post's id or the id of any of its parts), in one
    query."""
    wanted = {(e.platform, e.in_reply_to) for e in events if e.in_reply_to}
    if not wanted:
        return {}
    platforms = {platform for platform, _ in wanted}
    oldest = min(e.occurred_at for e in events) - THREAD_PART_LOOKBACK
    rows = PublishedContent.objects.filter(
        _by_platform(wanted, "external_id") | Q(platform__in=platforms, published_at__gte=oldest)
    ).values_list("id", "platform", "external_id", "part_ids")
    found: dict[Key, int] = {}
    for content_id, platform, external_id, part_ids in rows:
        for post_id in [external_id, *(part_ids or [])]:
            found.setdefault((platform, str(post_id)), content_id)
    return found


def _kind(event: InboundEvent) -> str:
    return event.kind if event.kind in InteractionKind.values else InteractionKind.MESSAGE


def interactions_ingest(*, events: Sequence[InboundEvent], now: dt.datetime | None = None) -> IngestResult:
    """Record inbound events from the platforms as interactions of their authors; an event recorded before,
    or from a bot, changes nothing. A constant number of queries, however many events."""
    now = now or timezone.now()
    unique: dict[Key, InboundEvent] = {}
    for event in events:
        if event.external_id and event.author_id:
            unique.setdefault((event.platform, event.external_id), event)
    bots = sum(1 for e in unique.values() if e.is_bot)
    candidates = {key: e for key, e in unique.items() if not e.is_bot}
    if not candidates:
        return IngestResult(len(events), 0, 0, 0, bots)
    known = set(
        UserInteraction.objects.filter(_by_platform(candidates, "external_id")).values_list(
            "platform", "external_id"
        )
    )
    fresh = [e for key, e in candidates.items() if key not in known]
    if not fresh:
        return IngestResult(len(events), 0, 0, 0, bots)

    with transaction.atomic():
        authors: dict[Key, _Author] = {}
        for event in fresh:
            key = (event.platform, event.author_id)
            if key in authors:
                authors[key].see(event)
            else:
                authors[key] = _Author(
                    event.platform,
                    event.author_id,
                    event.author_username,
                    event.author_display_name,
                    event.occurred_at,
                    event.occurred_at,
                )
        identities, users_new = _identities_resolve(authors, now=now)
        posts = _published_content_ids(fresh)
        rows = []
        for event in fresh:
            identity = identities.get((event.platform, event.author_id))
            if identity is None or identity.is_bot:
                bots += 1  # an account the operators marked as a bot
                continue
            rows.append(
                UserInteraction(
                    community_user_id=identity.community_user_id,
                    identity=identity,
                    platform=event.platform,
                    kind=_kind(event),
                    external_id=event.external_id,
                    content_id=posts.get((event.platform, event.in_reply_to)) if event.in_reply_to else None,
                    text=event.text,
                    is_question=is_question(event.text),
                    sentiment=score_text(event.text) if event.text.strip() else None,
                    occurred_at=event.occurred_at,
                )
            )
        if rows:
            UserInteraction.objects.bulk_create(rows, ignore_conflicts=True)
        stored = tuple(
            UserInteraction.objects.filter(
                _by_platform(((r.platform, r.external_id) for r in rows), "external_id")
            )
            .select_related("community_user", "identity")
            .order_by("occurred_at", "id")
        )
    return IngestResult(
        events=len(events),
        interactions_new=len(stored),
        users_new=users_new,
        questions_new=sum(1 for i in stored if i.is_question),
        bots_ignored=bots,
        interactions=stored,
    )


# --- answers ----------------------------------------------------------------------------------------------------


def interaction_reply_claim(*, interaction_id: int, at: dt.datetime) -> bool:
    """Take the right to answer a message; False when it is answered (or being answered) already."""
    return bool(
        UserInteraction.objects.filter(pk=interaction_id, responded_at__isnull=True).update(responded_at=at)
    )


def interaction_reply_release(*, interaction_id: int, claimed_at: dt.datetime) -> bool:
    """Give back a claim whose answer could not be sent, so a later run may try again."""
    return bool(
        UserInteraction.objects.filter(
            pk=interaction_id, responded_at=claimed_at, response_external_id=""
        ).update(responded_at=None)
    )


def interaction_reply_record(*, interaction_id: int, response_external_id: str) -> None:
    """Remember the platform's id of the answer sent under a claim."""
    UserInteraction.objects.filter(pk=interaction_id).update(response_external_id=response_external_id)
