"""The business's KPIs, read from the billing tables with aggregate SQL (five queries for the whole report).

Definitions (the dashboard, the admin's KPI page, ``/api/v1/kpis/`` and the ``kpi_snapshot`` agent all read
them from here):

- **Paying subscription**: ``active``, or ``past_due`` while still inside its plan's grace
  (``past_due_since`` + ``Plan.grace_days`` later than now: the member keeps access and Stripe is still
  retrying the card). Trialing subscriptions pay nothing yet; ``unpaid``, ``canceled``, ``incomplete`` and
  ``paused`` ones pay nothing.
- **MRR** (minor units, per currency of the price): the monthly equivalent of every paying subscription's
  price. A monthly price counts in full, a yearly price a twelfth; the yearly amounts of a currency are summed
  first and divided by 12 once, rounded half up to a whole minor unit, so MRR is never off by more than half a
  cent however many yearly members there are (per-subscription rounding would drift with their number). A
  subscription whose price is unknown (its ``PlanPrice`` was deleted) adds nothing.
- **Active members**: people (distinct users) with a paying subscription. **Trials**: people with a trialing
  subscription.
- **Churn** over a period [start, end): of the subscriptions that were paying at the start (created by then,
  out of any trial by then, not ended by then, and not one that never completed checkout), the share that
  ended during the period. A subscription has ended at ``ended_at``, or at ``canceled_at`` when it is canceled
  without an ``ended_at``; a cancellation scheduled for the period end is not an end. ``rate`` is None when
  nobody was paying at the start.
- **Conversion funnel** over a period: the offers sent in the period, and of those the ones clicked (a
  conversion counts as a click: the offer's link was followed to get there) and the ones converted, whenever
  that happened.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from django.db.models import Case, Count, DateTimeField, F, Q, Sum, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.billing.models import (
    BillingInterval,
    ConversionAttempt,
    ConversionStatus,
    Plan,
    Subscription,
    SubscriptionStatus,
)

DEFAULT_PERIOD_DAYS = 30
MAX_PERIOD_DAYS = 366
_PERIOD = re.compile(r"^([1-9][0-9]{0,2})d$")


def parse_period(value: str) -> int:
    """Days in a period written ``"30d"`` (1 to 366 days); ValueError otherwise."""
    match = _PERIOD.match(value.strip())
    if match is None or int(match.group(1)) > MAX_PERIOD_DAYS:
        raise ValueError(f"a period is a number of days from 1d to {MAX_PERIOD_DAYS}d, like 30d")
    return int(match.group(1))


@dataclass(frozen=True)
class SubscriptionKpis:
    mrr_minor: dict[str, int]
    active_members: int
    trials: int


@dataclass(frozen=True)
class Churn:
    subscriptions_at_start: int
    ended: int
    rate: float | None


@dataclass(frozen=True)
class Funnel:
    offers_sent: int
    clicked: int
    converted: int


@dataclass(frozen=True)
class KpiReport:
    as_of: dt.datetime
    period_days: int
    period_start: dt.datetime
    period_end: dt.datetime
    mrr_minor: dict[str, int]
    active_members: int
    trials: int
    churn: Churn
    funnel: Funnel


def _paying(*, now: dt.datetime) -> Q:
    """Subscriptions that pay now: active, or past due within their plan's grace."""
    in_grace = [
        Q(plan__grace_days=days, past_due_since__gt=now - dt.timedelta(days=days))
        for days in Plan.objects.filter(subscriptions__status=SubscriptionStatus.PAST_DUE)
        .order_by()
        .values_list("grace_days", flat=True)
        .distinct()
    ]
    paying = Q(status=SubscriptionStatus.ACTIVE)
    if in_grace:
        grace = in_grace[0]
        for q in in_grace[1:]:
            grace |= q
        paying |= Q(status=SubscriptionStatus.PAST_DUE) & grace
    return paying


def subscription_kpis(*, now: dt.datetime | None = None) -> SubscriptionKpis:
    """MRR per currency, active members and trials now (three queries)."""
    now = now or timezone.now()
    paying = _paying(now=now)
    monthly: dict[str, int] = {}
    yearly: dict[str, int] = {}
    for currency, interval, total in (
        Subscription.objects.filter(paying, price__isnull=False)
        .values_list("price__currency", "price__interval")
        .annotate(total=Sum("price__amount_minor"))
        .order_by()
    ):
        if interval == BillingInterval.MONTH:
            monthly[currency] = monthly.get(currency, 0) + total
        elif interval == BillingInterval.YEAR:
            yearly[currency] = yearly.get(currency, 0) + total
    mrr = {
        currency: monthly.get(currency, 0) + (yearly.get(currency, 0) + 6) // 12  # half up
        for currency in sorted(set(monthly) | set(yearly))
    }
    people = Subscription.objects.aggregate(
        active=Count("user", distinct=True, filter=paying),
        trials=Count("user", distinct=True, filter=Q(status=SubscriptionStatus.TRIALING)),
    )
    return SubscriptionKpis(mrr_minor=mrr, active_members=people["active"], trials=people["trials"])


_NEVER_STARTED = (SubscriptionStatus.INCOMPLETE, SubscriptionStatus.INCOMPLETE_EXPIRED)


def churn_in_period(*, start: dt.datetime, end: dt.datetime) -> Churn:
    """Of the subscriptions paying at ``start``, how many ended in [start, end) (one query)."""
    ended_at = Coalesce(
        "ended_at",
        Case(When(status=SubscriptionStatus.CANCELED, then=F("canceled_at")), output_field=DateTimeField()),
    )
    counts = (
        Subscription.objects.annotate(ended_on=ended_at)
        .filter(created_at__lte=start)
        .exclude(status__in=_NEVER_STARTED)
        .filter(Q(trial_end__isnull=True) | Q(trial_end__lte=start))
        .filter(Q(ended_on__isnull=True) | Q(ended_on__gte=start))
        .aggregate(at_start=Count("id"), ended=Count("id", filter=Q(ended_on__lt=end)))
    )
    at_start, ended = counts["at_start"], counts["ended"]
    return Churn(subscriptions_at_start=at_start, ended=ended, rate=ended / at_start if at_start else None)


def conversion_funnel(*, start: dt.datetime, end: dt.datetime) -> Funnel:
    """Offers sent in [start, end), and how many of them were clicked and converted (one query)."""
    converted = Q(status=ConversionStatus.CONVERTED) | Q(converted_at__isnull=False)
    counts = ConversionAttempt.objects.filter(sent_at__gte=start, sent_at__lt=end).aggregate(
        sent=Count("id"),
        clicked=Count("id", filter=Q(clicked_at__isnull=False) | converted),
        converted=Count("id", filter=converted),
    )
    return Funnel(offers_sent=counts["sent"], clicked=counts["clicked"], converted=counts["converted"])


def kpi_report(*, period_days: int = DEFAULT_PERIOD_DAYS, now: dt.datetime | None = None) -> KpiReport:
    """Every KPI: the state now, and churn and the funnel over the last ``period_days`` days."""
    if not 1 <= period_days <= MAX_PERIOD_DAYS:
        raise ValueError(f"period_days must be from 1 to {MAX_PERIOD_DAYS}")
    now = now or timezone.now()
    start = now - dt.timedelta(days=period_days)
    state = subscription_kpis(now=now)
    return KpiReport(
        as_of=now,
        period_days=period_days,
        period_start=start,
        period_end=now,
        mrr_minor=state.mrr_minor,
        active_members=state.active_members,
        trials=state.trials,
        churn=churn_in_period(start=start, end=now),
        funnel=conversion_funnel(start=start, end=now),
    )
