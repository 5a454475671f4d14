"""The demo world that ``manage.py seed_demo`` builds for a newcomer, from the factories the tests use.

Everything is keyed by natural keys and generated from fixed seeds, so a second run finds every row in place
and writes nothing. Times are anchored to the start of the current UTC day.

Where the platform has a service for something, the seed goes through it rather than writing rows of its own,
so the demo shows what the platform would have made: insights are what the analysis service finds in the
seeded candles and sentiment, members' access is what the entitlement ledger grants for their subscriptions,
and every agent has its configuration and schedule.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.agents.factories import PerformanceSnapshotFactory
from apps.agents.models import AgentConfig, PerformanceSnapshot
from apps.agents.services import agent_config_clean_parameters, agent_config_sync
from apps.billing.factories import PlanFactory, SubscriptionFactory
from apps.billing.models import (
    BillingCustomer,
    BillingInterval,
    Plan,
    PlanPrice,
    Subscription,
    SubscriptionStatus,
)
from apps.billing.services.entitlements import entitlements_sync_for_subscription
from apps.billing.services.subscriptions import billing_customer_link
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory, UserInteractionFactory
from apps.community.models import CommunityUser, InteractionKind, PlatformIdentity, UserInteraction
from apps.content import limits
from apps.content.agents.publishing import PublishingAgent
from apps.content.agents.strategist import ContentStrategistAgent
from apps.content.factories import ExclusiveContentFactory, PublishedContentFactory
from apps.content.models import ContentFormat, ExclusiveContent, PublishedContent
from apps.core.models import Platform
from apps.experiments.models import ABTest, ABTestVariant, Assignment, Hypothesis, Outcome
from apps.integrations.market_simulator import simulate_ohlcv
from apps.learning.models import AlertRule
from apps.market.agents import AnalysisAgent
from apps.market.factories import MarketDataFactory, NewsArticleFactory, SentimentDataFactory
from apps.market.models import Insight, MarketData, NewsArticle, SentimentData
from apps.market.services import insights_detect
from apps.moderation.engine.types import InboundMessage
from apps.moderation.factories import ModerationRuleFactory
from apps.moderation.models import Appeal, AppealSource, ModerationAction, ModerationDecision, ModerationRule
from apps.moderation.services.appeals import appeal_open
from apps.moderation.services.enforcement import moderation_enforce
from apps.moderation.services.judging import moderation_judge

WATCHLIST = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT")
DEMO_EXCHANGE = "simulated"
DEMO_TIMEFRAME = "1h"
HISTORY_DAYS = 30
# The analysis is replayed hour by hour over this many hours before the anchor, as its hourly runs would have.
INSIGHT_REPLAY_HOURS = 24
# Posts of the most recent insights, spread over X, Telegram and Discord.
DEMO_POSTS = 15
# How long after an insight its post went out.
POST_DELAY = dt.timedelta(minutes=25)
# Entitlement keys of the demo plans: made-up ids in the shapes the ledger accepts (a Discord role is a
# snowflake, a Telegram channel an @username), so the access twin can carry them like real ones.
DEMO_DISCORD_MEMBERS_ROLE = "discord.role:1300000000000000001"
DEMO_DISCORD_ELITE_ROLE = "discord.role:1300000000000000002"
DEMO_TELEGRAM_CHANNEL = "telegram.channel:@coinlink_demo_vip"
COMMUNITY_SIZE = 300
DEMO_MEMBER_EMAIL = "member@coinlink.local"
DEMO_MEMBER_PASSWORD = "coinlink-member"  # noqa: S105 - a published demo credential, development only

# How often each platform's community does each thing, so the demo funnel looks like a real one.
_KIND_WEIGHTS = {
    Platform.X: {
        InteractionKind.LIKE: 50,
        InteractionKind.REPLY: 15,
        InteractionKind.REPOST: 12,
        InteractionKind.MENTION: 8,
        InteractionKind.QUOTE: 5,
    },
    Platform.TELEGRAM: {InteractionKind.MESSAGE: 60, InteractionKind.REACTION: 30, InteractionKind.JOIN: 3},
    Platform.DISCORD: {InteractionKind.MESSAGE: 55, InteractionKind.REACTION: 35, InteractionKind.JOIN: 3},
}
_QUESTIONS = (
    "What's your target for {coin} this week?",
    "Is this {coin} volume spike real or a wash?",
    "How do you read the RSI on {coin} right now?",
    "Would you add to {coin} here or wait for a retest?",
)
_REMARKS = (
    "Great call on {coin} yesterday",
    "{coin} looking strong on the 4h",
    "Thanks for the chart, very clear",
    "Holding my {coin} through this chop",
    "That breakout on {coin} was clean",
)
_NEWS = (
    ("Spot {coin} ETF inflows hit a three-week high", 0.52),
    ("{coin} developers ship long-awaited network upgrade", 0.44),
    ("Exchange outflows of {coin} climb as holders move to cold storage", 0.31),
    ("Regulators open consultation on stablecoin reserves", -0.12),
    ("Large {coin} transfer to exchange sparks sell-off fears", -0.41),
    ("Derivatives funding for {coin} turns negative", -0.22),
)


@dataclass
class SeedReport:
    created: Counter[str] = field(default_factory=Counter)

    def add(self, table: str, count: int) -> None:
        if count:
            self.created[table] += count

    @property
    def total(self) -> int:
        return sum(self.created.values())


def _bulk_insert(model: type, rows: list, report: SeedReport) -> None:  # type: ignore[type-arg]
    """Insert rows that are not there yet; existing natural keys are left untouched."""
    before = model.objects.count()  # type: ignore[attr-defined]
    model.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)  # type: ignore[attr-defined]
    report.add(model._meta.db_table, model.objects.count() - before)  # type: ignore[attr-defined]


def seed_demo(*, anchor: dt.datetime | None = None) -> SeedReport:
    """Build the demo world, or complete it where rows are missing; returns what was created."""
    anchor = anchor or timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    report = SeedReport()
    with transaction.atomic():
        plans = _seed_plans(report)
        _seed_market(anchor, report)
        insights = _seed_insights(anchor, report)
        posts = _seed_published(anchor, insights, report)
        _seed_community(anchor, posts, report)
        _seed_members(anchor, plans, report)
        _seed_exclusive(anchor, report)
        _seed_experiment(anchor, posts, report)
        _seed_moderation(anchor, report)
        _seed_snapshots(anchor, report)
        # Every agent in the admin with its schedule from the start, not only once beat first runs.
        report.add(AgentConfig._meta.db_table, len(agent_config_sync()))
        _seed_posting_plan()
    return report


# The demo creator posts a dozen times a day on X (under the free API tier's 17) and six on Telegram and
# Discord: the volume at which a fortnight decides an A/B test on posts.
DEMO_SLOTS = {
    "x": [
        "07:00",
        "08:00",
        "09:00",
        "10:00",
        "11:00",
        "12:00",
        "13:00",
        "15:00",
        "17:00",
        "19:00",
        "20:00",
        "21:00",
    ],
    "telegram": ["08:00", "10:00", "12:00", "16:00", "19:00", "21:00"],
    "discord": ["09:00", "11:00", "13:00", "17:00", "19:00", "21:00"],
}
DEMO_DAILY_CAPS = {"x": 12, "telegram": 6, "discord": 6}


def _seed_posting_plan() -> None:
    """The demo creator's posting times and caps, set once as an operator would in the admin (a later edit
    there is kept: parameters already set are not overwritten)."""
    for agent, wanted in (
        (ContentStrategistAgent, {"slots": DEMO_SLOTS, "daily_caps": DEMO_DAILY_CAPS}),
        (PublishingAgent, {"daily_caps": DEMO_DAILY_CAPS}),
    ):
        config, _ = AgentConfig.objects.get_or_create(agent_name=agent.name)
        missing = {key: value for key, value in wanted.items() if key not in config.parameters}
        if missing:
            config.parameters = agent_config_clean_parameters(
                agent_name=agent.name, parameters={**config.parameters, **missing}
            )
            config.save(update_fields=["parameters", "updated_at"])


def _seed_plans(report: SeedReport) -> dict[str, Plan]:
    specs = [
        (
            "pro",
            "Pro",
            1,
            7,
            2900,
            29000,
            ["portal.premium", DEMO_DISCORD_MEMBERS_ROLE, DEMO_TELEGRAM_CHANNEL],
        ),
        (
            "elite",
            "Elite",
            2,
            0,
            7900,
            79000,
            [
                "portal.premium",
                "portal.elite",
                DEMO_DISCORD_MEMBERS_ROLE,
                DEMO_DISCORD_ELITE_ROLE,
                DEMO_TELEGRAM_CHANNEL,
            ],
        ),
    ]
    plans: dict[str, Plan] = {}
    for slug, name, rank, trial_days, monthly, yearly, keys in specs:
        existed = Plan.objects.filter(slug=slug).exists()
        plan = PlanFactory.create(
            slug=slug,
            name=name,
            rank=rank,
            trial_days=trial_days,
            entitlement_keys=keys,
            grace_entitlement_keys=["portal.premium"],
        )
        report.add("plans", 0 if existed else 1)
        for interval, amount in ((BillingInterval.MONTH, monthly), (BillingInterval.YEAR, yearly)):
            _, created = PlanPrice.objects.get_or_create(
                plan=plan,
                interval=interval,
                currency="usd",
                is_active=True,
                defaults={"amount_minor": amount},
            )
            report.add("plan_prices", int(created))
        plans[slug] = plan
    return plans


def _seed_market(anchor: dt.datetime, report: SeedReport) -> None:
    candles = []
    for symbol in WATCHLIST:
        for c in simulate_ohlcv(symbol, DEMO_TIMEFRAME, anchor, HISTORY_DAYS * 24):
            candles.append(
                MarketDataFactory.build(
                    exchange=DEMO_EXCHANGE,
                    symbol=symbol,
                    timeframe=DEMO_TIMEFRAME,
                    ts=c.ts,
                    open=c.open,
                    high=c.high,
                    low=c.low,
                    close=c.close,
                    volume=c.volume,
                )
            )
    _bulk_insert(MarketData, candles, report)

    rng = random.Random(11)  # noqa: S311 - demo data
    articles = []
    for i in range(24):
        symbol = WATCHLIST[i % len(WATCHLIST)]
        title, score = _NEWS[i % len(_NEWS)]
        articles.append(
            NewsArticleFactory.build(
                source=("CoinDesk", "The Block", "Decrypt")[i % 3],
                guid=f"demo-news-{i}",
                url=f"https://news.example.com/demo/{i}",
                title=title.format(coin=symbol.split("/")[0]),
                published_at=anchor - dt.timedelta(hours=3 * i + rng.randint(0, 2)),
                symbols=[symbol],
                sentiment_score=score,
                sentiment_label="bullish" if score > 0.05 else ("bearish" if score < -0.05 else "neutral"),
            )
        )
    _bulk_insert(NewsArticle, articles, report)

    windows = []
    for symbol in WATCHLIST:
        srng = random.Random(symbol)  # noqa: S311 - demo data
        for hour in range(48):
            end = anchor - dt.timedelta(hours=hour)
            n = srng.randint(40, 260)
            pos, neg = srng.randint(0, n // 2), srng.randint(0, n // 3)
            windows.append(
                SentimentDataFactory.build(
                    symbol=symbol,
                    source="x",
                    window_start=end - dt.timedelta(hours=1),
                    window_end=end,
                    sample_size=n,
                    positive=pos,
                    negative=neg,
                    neutral=n - pos - neg,
                    score=round((pos - neg) / n, 4),
                )
            )
    _bulk_insert(SentimentData, windows, report)


def _seed_insights(anchor: dt.datetime, report: SeedReport) -> list[Insight]:
    """What the hourly analysis would have found over the day up to the anchor: the analysis service, with the
    agent's default parameters, run on the seeded candles and sentiment at each hour. Its cooldown keeps a
    signal from being reported twice, so a second run finds every one already there and creates nothing."""
    params = AnalysisAgent.default_parameters
    since = anchor - dt.timedelta(hours=INSIGHT_REPLAY_HOURS)
    for hours_before in range(INSIGHT_REPLAY_HOURS, -1, -1):
        created = insights_detect(
            now=anchor - dt.timedelta(hours=hours_before),
            symbols=list(WATCHLIST),
            timeframe=DEMO_TIMEFRAME,
            min_confidence=params["min_confidence"],
            cooldown_hours=params["cooldown_hours"],
        )
        report.add(Insight._meta.db_table, len(created))
    return list(
        Insight.objects.filter(
            symbol__in=WATCHLIST, detected_at__gte=since, detected_at__lte=anchor
        ).order_by("detected_at", "id")
    )


def _seed_published(
    anchor: dt.datetime, insights: list[Insight], report: SeedReport
) -> list[PublishedContent]:
    """Posts of the most recent insights that went out before the anchor, outside the quiet hours."""
    rng = random.Random(5)  # noqa: S311 - demo data
    quiet = limits.quiet_hours()
    postable = [
        insight
        for insight in insights
        if insight.detected_at + POST_DELAY < anchor and (insight.detected_at + POST_DELAY).hour not in quiet
    ]
    rows = []
    platforms = (Platform.X, Platform.TELEGRAM, Platform.DISCORD)
    day = f"{anchor:%Y%m%d}"
    for i, insight in enumerate(postable[-DEMO_POSTS:]):
        platform = platforms[i % 3]
        coin = insight.symbol.split("/")[0]
        impressions = rng.randint(800, 12000)
        likes, reposts, replies = rng.randint(10, 400), rng.randint(0, 80), rng.randint(0, 40)
        published_at = insight.detected_at + POST_DELAY
        url = {
            Platform.X: f"https://x.com/coinlink/status/{1_800_000_000_000_000_000 + int(published_at.timestamp())}",
            Platform.TELEGRAM: f"https://t.me/coinlink_demo/{day}{i:02d}",
            Platform.DISCORD: "",
        }[platform]
        close = insight.evidence.get("close")
        price = f" ${coin} last at {close:,}." if close is not None else ""
        rows.append(
            PublishedContentFactory.build(
                platform=platform,
                format=ContentFormat.SINGLE_POST if platform == Platform.X else ContentFormat.LONG_POST,
                external_id=f"demo-{platform}-{day}-{i}",
                url=url,
                text=f"{insight.headline}.{price} {settings.POST_DISCLAIMER}".strip(),
                published_at=published_at,
                metrics={"impressions": impressions, "likes": likes, "reposts": reposts, "replies": replies},
                engagement_rate=round((likes + reposts + replies) / impressions, 4),
            )
        )
    _bulk_insert(PublishedContent, rows, report)
    return list(PublishedContent.objects.filter(external_id__startswith="demo-").order_by("published_at"))


def _seed_community(anchor: dt.datetime, posts: list[PublishedContent], report: SeedReport) -> None:
    platforms = (Platform.X, Platform.TELEGRAM, Platform.DISCORD)
    existing = set(
        PlatformIdentity.objects.filter(external_id__startswith="demo-").values_list(
            "platform", "external_id"
        )
    )
    identities: list[PlatformIdentity] = []
    for i in range(COMMUNITY_SIZE):
        # One generator per person, so skipping people already there leaves everyone else the same.
        rng = random.Random(f"person-{i}")  # noqa: S311 - demo data
        home = platforms[rng.choices(range(3), weights=(45, 35, 20))[0]]
        also = platforms[(platforms.index(home) + 1) % 3] if rng.random() < 0.15 else None
        handle = f"{rng.choice(('sats', 'hodl', 'chart', 'degen', 'whale', 'alpha', 'moon'))}_{i:03d}"
        # Plain strings: an enum member hashes differently from its value, and ``existing`` holds values.
        keys = [(home.value, f"demo-{home.value}-{i}")] + (
            [(also.value, f"demo-{also.value}-{i}")] if also else []
        )
        if all(k in existing for k in keys):
            continue
        first_seen = anchor - dt.timedelta(days=rng.randint(3, 120), minutes=rng.randint(0, 1439))
        person = CommunityUserFactory(display_name=handle.replace("_", " ").title(), first_seen_at=first_seen)
        report.add("community_users", 1)
        for platform, external_id in keys:
            identities.append(
                PlatformIdentityFactory.create(
                    community_user=person,
                    platform=platform,
                    external_id=external_id,
                    username=handle,
                    linked_at=first_seen if also else None,
                )
            )
            report.add("platform_identities", 1)

    all_identities = list(
        PlatformIdentity.objects.filter(external_id__startswith="demo-").select_related("community_user")
    )
    interactions = []
    for identity in all_identities:
        irng = random.Random(identity.external_id)  # noqa: S311 - demo data
        activity = irng.choice((0, 1, 2, 4, 8, 16, 32))
        kinds = _KIND_WEIGHTS[Platform(identity.platform)]
        platform_posts = [p for p in posts if p.platform == identity.platform]
        last_seen = identity.community_user.first_seen_at
        for j in range(activity):
            kind = irng.choices(list(kinds), weights=list(kinds.values()))[0]
            occurred = anchor - dt.timedelta(days=irng.uniform(0, 30))
            coin = irng.choice(WATCHLIST).split("/")[0]
            question = kind in (InteractionKind.REPLY, InteractionKind.MESSAGE, InteractionKind.MENTION) and (
                irng.random() < 0.2
            )
            text = ""
            if kind in (
                InteractionKind.REPLY,
                InteractionKind.MESSAGE,
                InteractionKind.MENTION,
                InteractionKind.QUOTE,
            ):
                text = irng.choice(_QUESTIONS if question else _REMARKS).format(coin=coin)
            interactions.append(
                UserInteractionFactory.build(
                    identity=identity,
                    community_user=identity.community_user,
                    platform=identity.platform,
                    kind=kind,
                    external_id=f"{identity.external_id}-{j}",
                    content=irng.choice(platform_posts) if platform_posts and irng.random() < 0.7 else None,
                    text=text,
                    is_question=question,
                    occurred_at=occurred,
                )
            )
            last_seen = max(last_seen, occurred)
        if (
            last_seen != identity.community_user.last_seen_at
            and identity.community_user.last_seen_at < last_seen
        ):
            CommunityUser.objects.filter(pk=identity.community_user_id, last_seen_at__lt=last_seen).update(
                last_seen_at=last_seen
            )
    _bulk_insert(UserInteraction, interactions, report)


# A dozen portal members in every subscription state: (status, set to cancel at the period end).
_MEMBER_STATES = (
    (SubscriptionStatus.ACTIVE, False),
    (SubscriptionStatus.ACTIVE, False),
    (SubscriptionStatus.ACTIVE, False),
    (SubscriptionStatus.ACTIVE, False),
    (SubscriptionStatus.ACTIVE, False),
    (SubscriptionStatus.TRIALING, False),
    (SubscriptionStatus.TRIALING, False),
    (SubscriptionStatus.PAST_DUE, False),
    (SubscriptionStatus.CANCELED, False),
    (SubscriptionStatus.ACTIVE, False),
    (SubscriptionStatus.ACTIVE, True),
    (SubscriptionStatus.UNPAID, False),
)


def _subscription_terms(i: int, status: str, anchor: dt.datetime, plan: Plan) -> dict[str, object]:
    """The billing period and dates Stripe would report for the i-th member's subscription at the anchor."""
    day = dt.timedelta(days=1)
    if status == SubscriptionStatus.TRIALING:
        trial_start = anchor - (1 + i % 5) * day
        trial_end = trial_start + (plan.trial_days or 7) * day
        return {"current_period_start": trial_start, "current_period_end": trial_end, "trial_end": trial_end}
    if status == SubscriptionStatus.PAST_DUE:
        # The renewal's payment failed yesterday: Stripe has opened the new period and retries the card.
        return {
            "current_period_start": anchor - day,
            "current_period_end": anchor + 29 * day,
            "past_due_since": anchor - day,
        }
    if status == SubscriptionStatus.UNPAID:
        # Stripe gave up retrying: long past the plan's grace.
        return {
            "current_period_start": anchor - 20 * day,
            "current_period_end": anchor + 10 * day,
            "past_due_since": anchor - 20 * day,
        }
    if status == SubscriptionStatus.CANCELED:
        # Cancelled a week ago to end with the period, which ended two days ago.
        return {
            "current_period_start": anchor - 32 * day,
            "current_period_end": anchor - 2 * day,
            "canceled_at": anchor - 9 * day,
            "ended_at": anchor - 2 * day,
        }
    # Monthly renewals since the member joined; the current period holds the anchor.
    start = anchor - (5 + 7 * i) * day
    period_start = start + 30 * ((anchor - start).days // 30) * day
    return {"current_period_start": period_start, "current_period_end": period_start + 30 * day}


def _seed_members(anchor: dt.datetime, plans: dict[str, Plan], report: SeedReport) -> None:
    """Portal members, each linked to a community user, paying through a billing customer; their access is
    whatever the entitlement ledger grants for their subscription's state at the anchor (past-due members
    keep the plan's grace keys for its grace days; canceled and unpaid ones get nothing)."""
    linkable = list(
        CommunityUser.objects.filter(portal_user__isnull=True, identities__external_id__startswith="demo-")
        .order_by("id")
        .distinct()[: len(_MEMBER_STATES)]
    )
    for i, (status, cancel_at_period_end) in enumerate(_MEMBER_STATES):
        email = DEMO_MEMBER_EMAIL if i == 0 else f"demo-member-{i}@coinlink.local"
        user = User.objects.filter(email=email).first()
        existed = user is not None
        if user is None:
            # Only the first demo member can log in; the rest get unusable passwords (and no slow hashing).
            user = UserFactory.create(
                email=email,
                display_name=f"Demo member {i}",
                password=DEMO_MEMBER_PASSWORD if i == 0 else None,
            )
            report.add(User._meta.db_table, 1)
        if not existed and i < len(linkable):
            CommunityUser.objects.filter(pk=linkable[i].pk).update(portal_user=user)
        customer_id = f"cus_demo{i:010d}"
        if not BillingCustomer.objects.filter(user=user).exists():
            billing_customer_link(user=user, stripe_customer_id=customer_id)
            report.add(BillingCustomer._meta.db_table, 1)
        plan = plans["elite" if i % 5 == 4 else "pro"]
        sub_id = f"sub_demo{i:010d}"
        subscription = Subscription.objects.filter(stripe_subscription_id=sub_id).first()
        if subscription is None:
            subscription = SubscriptionFactory.create(
                user=user,
                plan=plan,
                price=plan.prices.get(interval=BillingInterval.MONTH, is_active=True),
                stripe_subscription_id=sub_id,
                stripe_customer_id=customer_id,
                status=status,
                cancel_at_period_end=cancel_at_period_end,
                **_subscription_terms(i, status, anchor, plan),
            )
            report.add(Subscription._meta.db_table, 1)
        changes = entitlements_sync_for_subscription(subscription=subscription, now=anchor)
        report.add("entitlements", sum(1 for change in changes if change.action == "granted"))


def _seed_exclusive(anchor: dt.datetime, report: SeedReport) -> None:
    week = (anchor - dt.timedelta(days=anchor.weekday())).date()
    specs = [
        ("weekly-market-report-demo", "Weekly market report", ExclusiveContent.Kind.MARKET_REPORT, week),
        (
            "reading-volume-spikes",
            "Reading volume spikes without getting faked out",
            ExclusiveContent.Kind.GUIDE,
            None,
        ),
        ("rsi-divergence-playbook", "The RSI divergence playbook", ExclusiveContent.Kind.ANALYSIS, None),
    ]
    for slug, title, kind, period in specs:
        if ExclusiveContent.objects.filter(slug=slug).exists():
            continue
        ExclusiveContentFactory(slug=slug, title=title, kind=kind, period_start=period, published_at=anchor)
        report.add("exclusive_content", 1)


def _seed_experiment(anchor: dt.datetime, posts: list[PublishedContent], report: SeedReport) -> None:
    """A running test on posts with its seeded posts exposed and measured (as publishing and the analytics
    agent record them), the operators' queue of what to test next, and an alert rule on the agents."""
    test, created = ABTest.objects.get_or_create(
        slug="post-opening-line",
        defaults={
            "name": "Opening line: question vs statement",
            "subject": ABTest.Subject.POST,
            "hypothesis": "Opening with a question earns more engagement than opening with the finding.",
            "metric": "engagement_rate",
            "status": ABTest.Status.RUNNING,
            # Started a fortnight ago, so that a replayed fortnight (replay_fortnight) falls inside it.
            "started_at": anchor - dt.timedelta(days=14),
            "horizon_days": 28,
            "min_sample_size": 50,
            # The interval is tightest around the exposures a fortnight of posts brings.
            "sequential_tuning": 250,
        },
    )
    report.add("ab_tests", int(created))
    variants = {}
    for key, name, payload in (
        ("A", "Statement opening", {"opening": "statement"}),
        ("B", "Question opening", {"opening": "question"}),
    ):
        variant, created = ABTestVariant.objects.get_or_create(
            test=test, key=key, defaults={"name": name, "payload": payload, "is_control": key == "A"}
        )
        report.add("ab_test_variants", int(created))
        variants[key] = variant
    rows = [
        Assignment(
            test=test,
            variant=variants["AB"[i % 2]],
            subject_key=f"post:{post.external_id}",
            exposed_at=post.published_at,
        )
        for i, post in enumerate(posts)
    ]
    _bulk_insert(Assignment, rows, report)
    assignments = Assignment.objects.filter(test=test, subject_key__in=[r.subject_key for r in rows])
    rates = {f"post:{post.external_id}": post for post in posts if post.engagement_rate is not None}
    outcomes = [
        Outcome(
            assignment=assignment,
            test=test,
            variant_id=assignment.variant_id,
            metric="engagement_rate",
            value=float(rates[assignment.subject_key].engagement_rate or 0.0),
            recorded_at=rates[assignment.subject_key].published_at + dt.timedelta(hours=1),
        )
        for assignment in assignments
        if assignment.subject_key in rates
    ]
    _bulk_insert(Outcome, outcomes, report)
    for position, (title, subject, dimension, metric, payloads) in enumerate(DEMO_HYPOTHESES):
        _, created = Hypothesis.objects.get_or_create(
            title=title,
            defaults={
                "subject": subject,
                "dimension": dimension,
                "metric": metric,
                "position": position,
                "min_sample_size": 50,
                "variants": [
                    {"key": key, "name": name, "payload": payload, "weight": 1, "is_control": key == "A"}
                    for key, name, payload in payloads
                ],
            },
        )
        report.add("experiment_hypotheses", int(created))
    _, created = AlertRule.objects.get_or_create(
        name="Publishing succeeds less than 90% of the time",
        defaults={
            "metric": "agent.success_rate",
            "scope": "agent:publishing",
            "comparison": AlertRule.Comparison.BELOW,
            "threshold": 0.9,
        },
    )
    report.add("alert_rules", int(created))


# What the operators queued to test next: (title, subject, dimension, metric, variants (key, name, payload)).
DEMO_HYPOTHESES: tuple[tuple[str, str, str, str, tuple[tuple[str, str, dict[str, object]], ...]], ...] = (
    (
        "A deeper first discount converts more offers",
        "offer",
        "offer_discount",
        "conversion",
        (
            ("A", "20% off", {"offer": "promotion_code", "promotion_code": "WELCOME20"}),
            ("B", "30% off", {"offer": "promotion_code", "promotion_code": "WELCOME30"}),
        ),
    ),
    (
        "Asking for views beats asking for follows",
        "post",
        "cta",
        "engagement_rate",
        (("A", "Follow", {"cta": "follow"}), ("B", "Discuss", {"cta": "discuss"})),
    ),
)


# What the demo community says in its chats: three scams from two people and ordinary chatter, judged and acted
# on by the real engine and ladder (the platforms are the outbox twin), so the admin shows the whole flow.
DEMO_CHAT = {Platform.TELEGRAM: "-1001000000001", Platform.DISCORD: "1000000000000000001"}
DEMO_MESSAGES: tuple[tuple[str, int, str, str], ...] = (
    # (platform, which of its demo people in creation order, message id, text)
    ("telegram", 0, "demo-mod-1", "gm all, BTC holding the range nicely today"),
    ("telegram", 1, "demo-mod-2", "Wallet not syncing? DM me and our support admin will help you restore it"),
    (
        "telegram",
        1,
        "demo-mod-3",
        "Official airdrop is live, claim your airdrop now before it ends: bit.ly/cl41m",
    ),
    ("discord", 1, "demo-mod-4", "Send 1 ETH to the giveaway wallet and receive 2 ETH back instantly!"),
    ("discord", 1, "demo-mod-5", "Support here: verify your wallet by entering your 12 word seed phrase"),
    ("discord", 0, "demo-mod-6", "Anyone watching the SOL funding rate flip negative?"),
)
DEMO_APPEAL = "I was only asking about the airdrop, I did not post a scam."


def _seed_moderation(anchor: dt.datetime, report: SeedReport) -> None:
    for name, kind, extra in (
        (
            "Giveaway and doubling scams",
            ModerationRule.Kind.SCAM,
            {"pattern": "double your (btc|eth|sol)\nsend .* (to|and) receive\nclaim (your )?airdrop"},
        ),
        # A deny list, not an allow list: members share news links all day, and an allow list would remove them.
        (
            "Fake CoinLink support sites",
            ModerationRule.Kind.LINK_DENY,
            {"pattern": "coinlink-support.com\ncoinlink-airdrop.net\ncoinlink-wallet-sync.io"},
        ),
        ("Flooding", ModerationRule.Kind.FLOOD, {"pattern": "", "limit": 5, "window_seconds": 10}),
    ):
        existed = ModerationRule.objects.filter(name=name).exists()
        ModerationRuleFactory(name=name, kind=kind, **extra)
        report.add("moderation_rules", 0 if existed else 1)

    before = {model: model.objects.count() for model in (ModerationDecision, ModerationAction, Appeal)}
    people = {
        platform: list(
            PlatformIdentity.objects.filter(platform=platform, external_id__startswith="demo-").order_by(
                "pk"
            )[:2]
        )
        for platform in DEMO_CHAT
    }
    for minutes, (platform, which, message_id, text) in enumerate(DEMO_MESSAGES):
        identity = people[Platform(platform)][which]
        message = InboundMessage(
            platform=platform,
            chat_id=DEMO_CHAT[Platform(platform)],
            message_id=message_id,
            author_id=identity.external_id,
            author_username=identity.username,
            text=text,
            sent_at=anchor - dt.timedelta(hours=3) + dt.timedelta(minutes=minutes),
        )
        # A second run finds each message judged and acted on already, and changes nothing.
        moderation_enforce(message=message, judgement=moderation_judge(message=message))
    appealed = ModerationAction.objects.filter(message_id="demo-mod-3").first()
    if appealed is not None and not Appeal.objects.filter(action=appealed).exists():
        appeal_open(message=DEMO_APPEAL, action_id=appealed.pk, source=AppealSource.BOT)
    for model, count in before.items():
        report.add(model._meta.db_table, model.objects.count() - count)


def _seed_snapshots(anchor: dt.datetime, report: SeedReport) -> None:
    rng = random.Random(9)  # noqa: S311 - demo data
    rows = []
    for day in range(14):
        captured = anchor - dt.timedelta(days=day)
        for platform in ("x", "telegram", "discord"):
            rows.append(
                PerformanceSnapshotFactory.build(
                    metric="engagement_rate",
                    scope=f"platform:{platform}",
                    captured_at=captured,
                    value=round(rng.uniform(0.015, 0.07), 4),
                    sample_size=rng.randint(3, 12),
                )
            )
    _bulk_insert(PerformanceSnapshot, rows, report)
