"""The offer funnel: approaching the community's most engaged people with a membership offer by direct message,
and following each offer (a ``conversion_attempts`` row) from sent to clicked, converted, ignored or failed.

An offer is written before it is sent, with its tracked link (``SITE_URL/o/<token>/``) and the copy of the
A/B variant the person is assigned to, and is marked sent (``sent_at``) once the platform took it: a
transient failure leaves it undelivered for the next run to send again under the same idempotency key, a
refusal (the person blocks direct messages) marks it failed with the platform's error. Every move between
states is a conditional UPDATE on the state it leaves, so nothing is counted twice. The checkout that follows a
click credits the offer through the token in its metadata (``subscriptions.conversion_attempt_mark_converted``).

An offer with an A/B variant feeds its test (subject ``offer``, keyed by the person): sending it exposes the
person's assignment, and the click, the checkout, the paid conversion and the revenue of the invoices paid
are its outcomes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from apps.billing.models import ConversionAttempt, ConversionStatus, Plan, Subscription, SubscriptionStatus
from apps.billing.selectors import (
    conversion_attempt_get_by_token,
    conversion_attempts_undelivered,
    conversion_candidates,
    reachable_identities,
)
from apps.billing.services.checkout import user_had_trial
from apps.billing.services.plans import plan_list_for_sale
from apps.community.models import CommunityUser, InteractionKind, PlatformIdentity, UserInteraction
from apps.community.selectors import InteractionMix, community_user_interaction_mix, community_user_scores
from apps.core.resilience import PermanentError, TransientError
from apps.experiments.services import assignment_for, exposure_record, outcome_record
from apps.integrations.publishers import get_publisher
from apps.integrations.publishers.base import DM_PREFIX
from apps.integrations.types import OutboundPost, Publisher

logger = logging.getLogger(__name__)

OfferKind = ConversionAttempt.OfferKind
# An offer a platform would not take for this long is given up (failed) rather than sent late.
UNDELIVERED_GIVE_UP = dt.timedelta(hours=24)
# Link previews fetch the link as soon as the message lands: those are not the person clicking.
LINK_PREVIEW_AGENTS = ("telegrambot", "discordbot", "twitterbot", "facebookexternalhit", "slackbot")

# The copy. A variant's payload may set ``tone`` (a key below), ``opening`` (its own first line, "{name}"
# filled in), ``cta`` (the words before the link), ``offer`` ("trial_link" or "promotion_code") and
# ``promotion_code`` (its own Stripe code: the discount under test, instead of the run's).
OPENINGS = {
    "friendly": "Hi {name}! Thanks for being such an active part of the CoinLink community lately.",
    "direct": "{name}, you're one of the most engaged people in our community.",
    "exclusive": "{name}, we're inviting a handful of our most active community members to join us.",
}
DEFAULT_TONE = "friendly"
DEFAULT_CTA = "Have a look"
OFFER_LINES = {
    OfferKind.TRIAL_LINK: (
        "Try {plan} free for {trial_days} days: the members' analysis, the private channels and the library."
    ),
    OfferKind.PROMOTION_CODE: "Use the code {code} at checkout for a discount on {plan}.",
}


# Offers are A/B tested per person: the subject and key their variant is assigned, exposed and measured under.
OFFER_SUBJECT = "offer"


def offer_subject_key(community_user_id: int) -> str:
    return f"community_user:{community_user_id}"


@dataclass(frozen=True, slots=True)
class OfferTerms:
    """What this run offers: a plan, and a Stripe promotion code for people who cannot have its trial."""

    plan: Plan
    promotion_code: str = ""


@dataclass
class OfferOutcome:
    sent: int = 0
    failed: int = 0
    undelivered: int = 0
    attempt_ids: list[int] = field(default_factory=list)


def offer_url(attempt: ConversionAttempt) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("portal:offer_click", args=[attempt.token])


def offer_plan_get(*, plan_slug: str = "") -> Plan | None:
    """The plan offered: the one named, else the cheapest tier for sale."""
    for plan in plan_list_for_sale(currency=settings.BILLING_CURRENCY):
        if plan.prices_for_sale and (not plan_slug or plan.slug == plan_slug):  # type: ignore[attr-defined]
            return plan
    return None


def offer_kind_for(*, person: CommunityUser, terms: OfferTerms, payload: Mapping[str, Any]) -> str | None:
    """A trial link while the plan has a trial this person has not used, else the promotion code; a variant
    may ask for either when it is possible. None when there is nothing to offer."""
    trial = bool(terms.plan.trial_days) and not (
        person.portal_user is not None and user_had_trial(user=person.portal_user)
    )
    possible = [
        kind
        for kind, ok in (
            (OfferKind.TRIAL_LINK, trial),
            (OfferKind.PROMOTION_CODE, bool(terms.promotion_code)),
        )
        if ok
    ]
    wanted = payload.get("offer")
    if wanted in possible:
        return str(wanted)
    return str(possible[0]) if possible else None


def offer_message(
    *, person: CommunityUser, kind: str, terms: OfferTerms, link: str, payload: Mapping[str, Any]
) -> str:
    """The direct message: an opening in the variant's tone, the offer, and the call to action with the link."""
    name = (person.display_name.split() or ["there"])[0]
    opening = payload.get("opening")
    if not isinstance(opening, str) or not opening.strip():
        opening = OPENINGS.get(str(payload.get("tone", DEFAULT_TONE)), OPENINGS[DEFAULT_TONE])
    cta = payload.get("cta")
    if not isinstance(cta, str) or not cta.strip():
        cta = DEFAULT_CTA
    offer = OFFER_LINES[OfferKind(kind)].format(
        plan=terms.plan.name, trial_days=terms.plan.trial_days, code=terms.promotion_code
    )
    return f"{opening.replace('{name}', name).strip()}\n\n{offer}\n\n{cta.strip()}: {link}"


def conversion_attempts_mark_ignored(*, sent_before: dt.datetime) -> int:
    """Offers sent before ``sent_before`` and never clicked become ignored; returns how many."""
    now = timezone.now()
    return ConversionAttempt.objects.filter(
        status=ConversionStatus.SENT, sent_at__isnull=False, sent_at__lt=sent_before
    ).update(status=ConversionStatus.IGNORED, updated_at=now)


def conversion_attempt_mark_clicked(*, token: str, at: dt.datetime | None = None) -> ConversionAttempt | None:
    """Record a click on an offer link: the first click of a sent (or already ignored) offer moves it to
    clicked and records an ``offer_click`` interaction of the person; later clicks change nothing. Returns the
    offer, or None for a token that names none."""
    attempt = conversion_attempt_get_by_token(token=token)
    if attempt is None:
        return None
    at = at or timezone.now()
    with transaction.atomic():
        clicked = ConversionAttempt.objects.filter(
            pk=attempt.pk, status__in=(ConversionStatus.SENT, ConversionStatus.IGNORED)
        ).update(status=ConversionStatus.CLICKED, clicked_at=at, updated_at=at)
        if clicked:
            UserInteraction.objects.create(
                community_user_id=attempt.community_user_id,
                platform=attempt.platform,
                kind=InteractionKind.OFFER_CLICK,
                # One click per offer, whatever races: the table's natural key.
                external_id=f"offer-click:{attempt.token}",
                occurred_at=at,
            )
            if attempt.variant_id is not None:
                outcome_record(
                    subject=OFFER_SUBJECT,
                    subject_key=offer_subject_key(attempt.community_user_id),
                    metric="click",
                    value=1.0,
                    at=at,
                )
    attempt.refresh_from_db()
    return attempt


def _deliver(attempt: ConversionAttempt, *, identity: PlatformIdentity, publisher: Publisher) -> str:
    """Send one written offer; returns "sent", "failed" or "undelivered" (a transient failure: kept for the
    next run). Raises nothing from the platform."""
    post = OutboundPost(
        platform=attempt.platform,
        text=attempt.message,
        idempotency_key=f"conversion-offer:{attempt.token}",
        channel=f"{DM_PREFIX}{identity.external_id}",
    )
    unsent = ConversionAttempt.objects.filter(
        pk=attempt.pk, status=ConversionStatus.SENT, sent_at__isnull=True
    )
    try:
        publisher.publish(post)
    except TransientError as exc:
        unsent.update(error=f"retrying: {exc}"[:2000], updated_at=timezone.now())
        logger.warning("offer %s to %s not delivered yet: %s", attempt.pk, identity, exc)
        return "undelivered"
    except (PermanentError, ImproperlyConfigured) as exc:
        unsent.update(status=ConversionStatus.FAILED, error=str(exc)[:2000], updated_at=timezone.now())
        logger.info("offer %s to %s failed: %s", attempt.pk, identity, exc)
        return "failed"
    now = timezone.now()
    if unsent.update(sent_at=now, error="", updated_at=now) and attempt.variant_id is not None:
        # The person has now seen their variant's copy: from here the offer counts in its test.
        exposure_record(
            subject=OFFER_SUBJECT, subject_key=offer_subject_key(attempt.community_user_id), at=now
        )
    return "sent"


@dataclass(frozen=True, slots=True)
class OfferTarget:
    """A chosen person, where to reach them, and why they were chosen."""

    person: CommunityUser
    identity: PlatformIdentity
    score: float
    breakdown: dict[str, Any]


def conversion_offers_send(
    *, targets: Sequence[OfferTarget], terms: OfferTerms, publishers: Mapping[str, Publisher]
) -> OfferOutcome:
    """Write and send one offer to each target, on the target identity's platform."""
    outcome = OfferOutcome()
    paused: set[str] = set()
    for target in targets:
        platform = target.identity.platform
        if platform in paused or platform not in publishers:
            continue
        variant = assignment_for(subject=OFFER_SUBJECT, subject_key=offer_subject_key(target.person.pk))
        payload = variant.payload if variant is not None and isinstance(variant.payload, dict) else {}
        code = payload.get("promotion_code")
        offered = (
            replace(terms, promotion_code=code.strip()) if isinstance(code, str) and code.strip() else terms
        )
        kind = offer_kind_for(person=target.person, terms=offered, payload=payload)
        if kind is None:
            continue
        attempt = ConversionAttempt(
            community_user=target.person,
            platform=platform,
            plan=offered.plan,
            offer_kind=kind,
            promotion_code=offered.promotion_code if kind == OfferKind.PROMOTION_CODE else "",
            variant=variant,
            score=target.score,
            score_breakdown=target.breakdown,
            status=ConversionStatus.SENT,
        )
        attempt.message = offer_message(
            person=target.person, kind=kind, terms=offered, link=offer_url(attempt), payload=payload
        )
        attempt.save()
        outcome.attempt_ids.append(attempt.pk)
        result = _deliver(attempt, identity=target.identity, publisher=publishers[platform])
        _count(outcome, result)
        if result == "undelivered":
            paused.add(platform)  # the platform is struggling: the rest of its offers wait for the next run
    return outcome


def conversion_offers_resend(
    *, now: dt.datetime, publishers: Mapping[str, Publisher], limit: int
) -> OfferOutcome:
    """Send again the offers a platform did not take last time (same link, same idempotency key); those
    undelivered for ``UNDELIVERED_GIVE_UP`` fail."""
    outcome = OfferOutcome()
    stale = ConversionAttempt.objects.filter(
        status=ConversionStatus.SENT, sent_at__isnull=True, created_at__lt=now - UNDELIVERED_GIVE_UP
    )
    for attempt in stale:
        given_up = ConversionAttempt.objects.filter(
            pk=attempt.pk, status=ConversionStatus.SENT, sent_at__isnull=True
        ).update(
            status=ConversionStatus.FAILED,
            error=f"not delivered within {UNDELIVERED_GIVE_UP}: {attempt.error}"[:2000],
            updated_at=timezone.now(),
        )
        outcome.failed += given_up
    waiting = list(conversion_attempts_undelivered(since=now - UNDELIVERED_GIVE_UP)[:limit])
    identities = reachable_identities(
        community_user_ids={a.community_user_id for a in waiting}, platforms=list(publishers)
    )
    paused: set[str] = set()
    for attempt in waiting:
        identity = identities.get((attempt.community_user_id, attempt.platform))
        if attempt.platform in paused or identity is None:
            continue
        result = _deliver(attempt, identity=identity, publisher=publishers[attempt.platform])
        _count(outcome, result)
        outcome.attempt_ids.append(attempt.pk)
        if result == "undelivered":
            paused.add(attempt.platform)
    return outcome


def conversion_attempt_record_checkout(*, token: str, subscription: Subscription, at: dt.datetime) -> bool:
    """The A/B outcomes of the checkout an offer's link led to: ``checkout``, and ``conversion`` too when
    the subscription is paid from the start (a trial converts when its first invoice is paid). False when
    the offer carried no variant."""
    attempt = conversion_attempt_get_by_token(token=token)
    if attempt is None or attempt.variant_id is None:
        return False
    key = offer_subject_key(attempt.community_user_id)
    if subscription.status == SubscriptionStatus.ACTIVE:
        outcome_record(subject=OFFER_SUBJECT, subject_key=key, metric="conversion", value=1.0, at=at)
    return outcome_record(subject=OFFER_SUBJECT, subject_key=key, metric="checkout", value=1.0, at=at)


def conversion_attempt_record_payment(
    *, subscription: Subscription, amount_minor: int, at: dt.datetime
) -> bool:
    """A paid invoice of a subscription an offer converted into: the offer's A/B outcomes ``conversion``
    (paid now) and ``revenue`` (the amount added to what it brought so far). False when no offer with a
    variant led to the subscription, or nothing was paid."""
    if amount_minor <= 0:
        return False
    attempt = (
        ConversionAttempt.objects.filter(
            subscription=subscription, status=ConversionStatus.CONVERTED, variant__isnull=False
        )
        .order_by("-converted_at", "-pk")
        .only("pk", "community_user_id", "variant_id")
        .first()
    )
    if attempt is None:
        return False
    key = offer_subject_key(attempt.community_user_id)
    outcome_record(subject=OFFER_SUBJECT, subject_key=key, metric="conversion", value=1.0, at=at)
    return outcome_record(
        subject=OFFER_SUBJECT,
        subject_key=key,
        metric="revenue",
        value=float(amount_minor),
        at=at,
        accumulate=True,
    )


def _count(outcome: OfferOutcome, result: str) -> None:
    if result == "sent":
        outcome.sent += 1
    elif result == "failed":
        outcome.failed += 1
    else:
        outcome.undelivered += 1


def publishers_for(platforms: Sequence[str]) -> dict[str, Publisher]:
    """The publisher of each platform that has one configured."""
    found: dict[str, Publisher] = {}
    for platform in platforms:
        try:
            found[platform] = get_publisher(platform)
        except ImproperlyConfigured as exc:
            logger.warning("no direct messages on %s: %s", platform, exc)
    return found


@dataclass(frozen=True, slots=True)
class ScoreFormula:
    """The engagement score's parameters (see ``apps.community.selectors.community_user_scores``)."""

    weights: Mapping[str, float]
    window_days: int
    recent_days: float
    older_factor: float
    active_day_points: float

    def window(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        return now - dt.timedelta(days=self.window_days), now

    def describe(self) -> str:
        return (
            f"recent_points + {self.older_factor:g} * older_points + {self.active_day_points:g} * active_days "
            f"(recent: the last {self.recent_days:g} days of {self.window_days})"
        )


def conversion_targets_choose(
    *,
    now: dt.datetime,
    formula: ScoreFormula,
    min_score: float,
    cooldown_days: int,
    platforms: Sequence[str],
    limit: int,
) -> tuple[int, list[OfferTarget]]:
    """Whom to approach this run, best first, each on the reachable platform where they engage most, with the
    components of their score (``score_breakdown``): how many people are eligible, and the first ``limit``.
    A fixed number of queries, however many people are scored or chosen."""
    eligible = conversion_candidates(
        now=now, min_score=min_score, cooldown_days=cooldown_days, platforms=platforms
    )
    count = eligible.count()
    if not count or limit <= 0:
        return count, []
    people = list(eligible.select_related("portal_user")[:limit])
    ids = [person.pk for person in people]
    since, until = formula.window(now)
    components = {
        row["community_user_id"]: row
        for row in community_user_scores(
            since=since,
            now=until,
            weights=formula.weights,
            recent_days=formula.recent_days,
            older_factor=formula.older_factor,
            active_day_points=formula.active_day_points,
        ).filter(community_user_id__in=ids)
    }
    mixes = community_user_interaction_mix(
        community_user_ids=ids, since=since, now=until, weights=formula.weights
    )
    identities = reachable_identities(community_user_ids=ids, platforms=platforms)
    targets = []
    for person in people:
        row = components.get(person.pk)
        reachable = [platform for platform in platforms if (person.pk, platform) in identities]
        if row is None or not reachable:
            continue
        mix = mixes.get(person.pk, InteractionMix())
        platform = mix.top_platform(reachable) or reachable[0]
        breakdown = {
            "score": row["score"],
            "formula": formula.describe(),
            "recent_points": row["recent_points"],
            "older_points": row["older_points"],
            "active_days": row["active_days"],
            "interactions": row["interactions"],
            "recent_interactions": row["recent_interactions"],
            "kinds": dict(sorted(mix.kinds.items())),
            "platform_points": dict(sorted(mix.platform_points.items())),
            "platform": platform,
            "weights": {str(kind): float(weight) for kind, weight in formula.weights.items()},
        }
        targets.append(
            OfferTarget(
                person=person,
                identity=identities[(person.pk, platform)],
                score=float(row["score"]),
                breakdown=breakdown,
            )
        )
    return count, targets
