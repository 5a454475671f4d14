"""The content strategist: which new insights become posts, where, in which format and when.

Every (insight, platform) pair gets a priority, a weighted sum of the insight's confidence, a weight for its
type, its recency and a weight for the platform. The weights are data: the agent's parameters (defaults here,
overrides in its AgentConfig, where the strategy tuning adjusts them), and the ones in force are copied onto
each plan. Pairs are then given posting slots best first: each platform posts at its slot times, one post a
slot, no more than its daily cap, never in the quiet hours, never after the insight expires. An insight is
planned once (a conditional UPDATE from new to planned, with its plans in the same transaction) and gets at
most one plan per platform.

Where the strategy tuning has learnt which kinds of post do well, ``arm_weights`` names them per platform: an
arm is a format, a time of day (``BUCKETS``) and a tone preset of the creation agent. Each plan of such a
platform then draws its arm by those weights, with a generator seeded by the insight and the platform (so a
run replayed plans the same), takes the arm's format and the first free slot in the arm's time of day (any
free slot when that part of the day is full), and carries the arm in its weights for the writer and for the
tuning's bookkeeping. A platform without arm weights is planned as before: its configured format, the first
free slot.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from django.core.exceptions import ValidationError

from apps.agents import selectors as agent_selectors
from apps.agents.base import AgentContext, AgentResult, BaseAgent
from apps.agents.registry import register
from apps.content import limits, selectors, services
from apps.content.agents.creation import ContentCreationAgent
from apps.content.models import ContentFormat
from apps.core.models import Platform
from apps.core.timeofday import BUCKETS
from apps.market.models import Insight

FACTORS = ("confidence", "insight_type", "recency", "platform")
# Parameters that are tables: an override changes the entries it names and keeps the other defaults.
TABLES = ("weights", "type_weights", "platform_weights", "formats", "slots")
_SLOT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# The formats a platform's post can take.
PLATFORM_FORMATS: dict[str, frozenset[str]] = {
    Platform.X: frozenset({ContentFormat.SINGLE_POST, ContentFormat.X_THREAD}),
    Platform.TELEGRAM: frozenset(
        {ContentFormat.SINGLE_POST, ContentFormat.TELEGRAM_CHART_POST, ContentFormat.LONG_POST}
    ),
    Platform.DISCORD: frozenset({ContentFormat.SINGLE_POST, ContentFormat.DISCORD_EMBED}),
}
ARM_SEPARATOR = "|"


@dataclass(frozen=True)
class Arm:
    """A kind of post the strategy can choose for a platform: its format, time of day and tone preset."""

    format: str
    bucket: str
    tone: str

    @property
    def key(self) -> str:
        return ARM_SEPARATOR.join((self.format, self.bucket, self.tone))

    @classmethod
    def parse(cls, key: str) -> Arm:
        parts = key.split(ARM_SEPARATOR)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"an arm is format|bucket|tone, not {key!r}")
        return cls(format=parts[0], bucket=parts[1], tone=parts[2])

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "format": self.format, "bucket": self.bucket, "tone": self.tone}


class Schedule:
    """The free posting slots of each platform from ``now`` on, over ``horizon_days`` more days.

    A slot is a time of day ("HH:MM", UTC) and holds one post; a platform's UTC day holds at most its cap of
    posts (every active plan that day counts, at a slot time or not); slots in the quiet hours are never used.
    """

    def __init__(
        self,
        *,
        now: dt.datetime,
        slots: Mapping[str, Sequence[str]],
        caps: Mapping[str, int],
        quiet: frozenset[int],
        horizon_days: int,
        booked: Mapping[str, Sequence[dt.datetime]],
    ) -> None:
        self.now = now
        self.slots = {p: sorted({_parse_slot(s) for s in times}) for p, times in slots.items()}
        self.caps = dict(caps)
        self.quiet = quiet
        self.horizon_days = horizon_days
        self.per_day: dict[tuple[str, dt.date], int] = defaultdict(int)
        self.taken: set[tuple[str, dt.datetime]] = set()
        for platform, times in booked.items():
            for when in times:
                self.book(platform, when)

    @classmethod
    def load(
        cls,
        *,
        now: dt.datetime,
        slots: Mapping[str, Sequence[str]],
        caps: Mapping[str, int],
        quiet: frozenset[int],
        horizon_days: int,
    ) -> Schedule:
        start = dt.datetime.combine(now.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
        booked = selectors.content_plan_bookings(
            platforms=list(slots), since=start, until=start + dt.timedelta(days=horizon_days + 1)
        )
        return cls(now=now, slots=slots, caps=caps, quiet=quiet, horizon_days=horizon_days, booked=booked)

    def book(self, platform: str, when: dt.datetime) -> None:
        when = when.astimezone(dt.UTC)
        self.per_day[(platform, when.date())] += 1
        self.taken.add((platform, when))

    def next_free(
        self, platform: str, *, not_after: dt.datetime | None = None, bucket: str | None = None
    ) -> dt.datetime | None:
        """The earliest free slot of the platform (within the time of day ``bucket`` names, when it names
        one), or None when there is none before ``not_after`` within the horizon."""
        cap = self.caps.get(platform)
        today = self.now.astimezone(dt.UTC).date()
        slots = [s for s in self.slots.get(platform, []) if bucket is None or s.hour in BUCKETS[bucket]]
        for offset in range(self.horizon_days + 1):
            day = today + dt.timedelta(days=offset)
            if cap is not None and self.per_day[(platform, day)] >= cap:
                continue
            for slot in slots:
                when = dt.datetime.combine(day, slot, dt.UTC)
                if not_after is not None and when > not_after:
                    return None
                if when < self.now or when.hour in self.quiet or (platform, when) in self.taken:
                    continue
                return when
        return None


def _parse_slot(text: str) -> dt.time:
    match = _SLOT.match(text)
    if match is None:
        raise ValueError(f"a slot is a UTC time like 09:30, not {text!r}")
    return dt.time(int(match[1]), int(match[2]))


def buckets_with_slots(times: Sequence[str], quiet: frozenset[int]) -> list[str]:
    """The times of day in which a platform has a slot outside the quiet hours, in ``BUCKETS`` order."""
    hours = {_parse_slot(t).hour for t in times} - quiet
    return [name for name, span in BUCKETS.items() if hours & set(span)]


def check_arm_weights(
    arm_weights: Mapping[str, Any], *, tones: Mapping[str, Any], problems: list[str]
) -> None:
    """Every platform's arms: a format the platform takes, a time of day, a tone preset the creation agent
    has; weights of 0 or more, not all 0."""
    for platform, arms in arm_weights.items():
        where = f"arm_weights.{platform}"
        if platform not in Platform.values:
            problems.append(f"arm_weights: unknown platform {platform!r}")
            continue
        if not isinstance(arms, dict):
            problems.append(f"{where} must be a table of format|bucket|tone: weight")
            continue
        for key, weight in arms.items():
            try:
                arm = Arm.parse(key)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            if arm.format not in PLATFORM_FORMATS[platform]:
                problems.append(f"{where}: {arm.format!r} is not a format for that platform")
            if arm.bucket not in BUCKETS:
                problems.append(f"{where}: {arm.bucket!r} is not a time of day ({', '.join(BUCKETS)})")
            if arm.tone not in tones:
                problems.append(f"{where}: {arm.tone!r} is not a tone preset of content_creation")
            if not (_number(weight) and weight >= 0):
                problems.append(f"{where}: the weight of {key} must be a number, 0 or more")
        if arms and not any(_number(w) and w > 0 for w in arms.values()):
            problems.append(f"{where}: at least one weight must be above 0")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_schedule_parameters(params: Mapping[str, Any], problems: list[str]) -> None:
    """Slots, caps and quiet hours, as the strategist and the repurposing agent read them."""
    for platform, times in params["slots"].items():
        if platform not in Platform.values:
            problems.append(f"slots: unknown platform {platform!r}")
        elif not isinstance(times, list) or not all(isinstance(t, str) and _SLOT.match(t) for t in times):
            problems.append(f"slots.{platform} must be a list of UTC times like 09:30")
    for platform, cap in params["daily_caps"].items():
        if platform not in Platform.values or not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
            problems.append(f"daily_caps.{platform} must be a platform's whole number of posts, 0 or more")
    try:
        limits.parse_quiet_hours(params["quiet_hours"])
    except ValueError as exc:
        problems.append(f"quiet_hours: {exc}")
    if params["horizon_days"] < 0:
        problems.append("horizon_days must be 0 or more")


@register
class ContentStrategistAgent(BaseAgent):
    name = "content_strategist"
    phase = 1
    description = (
        "Plans posts from new insights: platform, format and posting slot, by a weighted priority whose "
        "weights are parameters; per-platform daily caps and quiet hours; each insight planned once."
    )
    depends_on = ("analysis",)
    default_parameters: ClassVar[dict[str, Any]] = {
        "platforms": ["x", "telegram", "discord"],
        # The strategy: priority = sum(weight * factor), every factor in [0, 1].
        "weights": {"confidence": 0.5, "insight_type": 0.2, "recency": 0.2, "platform": 0.1},
        "type_weights": {
            "price_move": 0.9,
            "bollinger_breakout_up": 0.8,
            "bollinger_breakout_down": 0.8,
            "volume_spike": 0.7,
            "rsi_overbought": 0.6,
            "rsi_oversold": 0.6,
            "sentiment_shift": 0.6,
            "macd_bullish_cross": 0.5,
            "macd_bearish_cross": 0.5,
        },
        "platform_weights": {"x": 1.0, "telegram": 0.8, "discord": 0.6},
        # Per platform, the arms ("format|bucket|tone": weight) its plans are drawn from; a platform left out
        # (or empty) takes its format from ``formats`` and the first free slot. Set by the strategy tuning.
        "arm_weights": {},
        # Hours after which an insight's recency factor has halved.
        "recency_half_life_hours": 6.0,
        # Pairs scoring below this are not planned.
        "min_priority": 0.0,
        "formats": {"x": "single_post", "telegram": "telegram_chart_post", "discord": "discord_embed"},
        # On X, an insight this confident gets a thread rather than a single post.
        "x_thread_min_confidence": 0.8,
        # Posting times per platform, UTC.
        "slots": {
            "x": ["07:00", "09:00", "11:00", "13:00", "15:00", "17:00", "19:00", "21:00"],
            "telegram": ["08:00", "12:00", "16:00", "20:00"],
            "discord": ["09:00", "13:00", "17:00", "21:00"],
        },
        # Posts per platform and UTC day; a platform left out takes CONTENT_DAILY_CAPS.
        "daily_caps": {},
        # UTC hours with no posts ("0-6", "22-6", "none"); empty takes CONTENT_QUIET_HOURS.
        "quiet_hours": "",
        # How many days ahead a slot may be.
        "horizon_days": 1,
        # Insights older than this are not planned any more (nor are expired ones).
        "max_insight_age_hours": 24.0,
        "batch_size": 200,
    }

    @classmethod
    def validate_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        params = super().validate_parameters(parameters)
        for table in TABLES:
            params[table] = {**cls.default_parameters[table], **params[table]}
        problems: list[str] = []
        if unknown := set(params["platforms"]) - set(Platform.values):
            problems.append(f"platforms: unknown {sorted(unknown)}")
        if unknown := set(params["weights"]) - set(FACTORS):
            problems.append(f"weights: unknown factors {sorted(unknown)}; known: {', '.join(FACTORS)}")
        for group in ("weights", "type_weights", "platform_weights"):
            if not all(_number(v) and v >= 0 for v in params[group].values()):
                problems.append(f"{group}: every weight is a number, 0 or more")
        for platform, format in params["formats"].items():
            if format not in PLATFORM_FORMATS.get(platform, ()):
                problems.append(f"formats.{platform}: {format!r} is not a format for that platform")
        if params["recency_half_life_hours"] <= 0:
            problems.append("recency_half_life_hours must be more than 0")
        if params["arm_weights"]:
            check_arm_weights(params["arm_weights"], tones=_creation_tones(), problems=problems)
        check_schedule_parameters(params, problems)
        if problems:
            raise ValidationError(problems)
        return params

    def execute(self, ctx: AgentContext) -> AgentResult:
        params = self.validate_parameters(ctx.parameters)
        result = AgentResult()
        result.counters.update(dict.fromkeys(("insights_planned", "plans", "expired", "unscheduled"), 0))
        now = ctx.now
        result.incr(
            "expired",
            services.insight_expire(
                insight_ids=selectors.insight_ids_gone_stale(
                    now=now, max_age_hours=params["max_insight_age_hours"]
                )
            ),
        )
        insights = selectors.insight_list_plannable(
            now=now, max_age_hours=params["max_insight_age_hours"], limit=params["batch_size"]
        )
        platforms = [p for p in params["platforms"] if params["slots"].get(p)]
        schedule = Schedule.load(
            now=now,
            slots={p: params["slots"][p] for p in platforms},
            caps=limits.daily_caps(params["daily_caps"]),
            quiet=limits.quiet_hours(params["quiet_hours"]),
            horizon_days=params["horizon_days"],
        )

        scored = [
            (self.score(insight, platform, params, now), insight, platform)
            for insight in insights
            for platform in platforms
        ]
        # Best first, so the strongest insights take the scarce slots; ties in a stable order.
        scored.sort(key=lambda item: (-item[0][0], item[1].pk, platforms.index(item[2])))
        wanted: dict[int, list[services.PlanSpec]] = defaultdict(list)
        for (priority, factors), insight, platform in scored:
            if priority < params["min_priority"]:
                result.incr("below_min_priority")
                continue
            weights: dict[str, Any] = {**params["weights"], "factors": factors}
            arm = self.draw_arm(insight, platform, params)
            if arm is None:
                format = self.format_for(insight, platform, params)
                when = schedule.next_free(platform, not_after=insight.expires_at)
            else:
                format = arm.format
                weights["arm"] = arm.as_dict()
                when = schedule.next_free(platform, not_after=insight.expires_at, bucket=arm.bucket)
                if when is None:
                    when = schedule.next_free(platform, not_after=insight.expires_at)
                    if when is not None:
                        result.incr("arm.fallback_slot")
            if when is None:
                result.incr(f"no_slot.{platform}")
                continue
            schedule.book(platform, when)
            wanted[insight.pk].append(
                services.PlanSpec(
                    platform=platform,
                    format=format,
                    scheduled_for=when,
                    priority=round(priority, 6),
                    weights=weights,
                    topic=insight.headline,
                )
            )

        for insight in insights:
            specs = wanted.get(insight.pk)
            if not specs:
                result.incr("unscheduled")
                continue
            created = services.content_plans_create_for_insight(insight_id=insight.pk, plans=specs)
            if not created:
                result.incr("already_planned")
                continue
            result.incr("insights_planned")
            result.incr("plans", len(created))
            for plan in created:
                result.incr(f"plans.{plan.platform}")
        counters = result.counters
        result.summary = (
            f"{counters['plans']} plans for {counters['insights_planned']} insights; "
            f"{counters['unscheduled']} without a free slot, {counters['expired']} expired unplanned"
        )
        return result

    @staticmethod
    def score(
        insight: Insight, platform: str, params: Mapping[str, Any], now: dt.datetime
    ) -> tuple[float, dict[str, float]]:
        """The pair's priority and the factors it was made of."""
        age_hours = max(0.0, (now - insight.detected_at).total_seconds() / 3600)
        factors = {
            "confidence": float(insight.confidence),
            "insight_type": float(params["type_weights"].get(insight.type, 0.5)),
            "recency": 0.5 ** (age_hours / params["recency_half_life_hours"]),
            "platform": float(params["platform_weights"].get(platform, 0.0)),
        }
        factors = {k: round(v, 6) for k, v in factors.items()}
        weights = params["weights"]
        return sum(float(weights.get(k, 0.0)) * v for k, v in factors.items()), factors

    @staticmethod
    def draw_arm(insight: Insight, platform: str, params: Mapping[str, Any]) -> Arm | None:
        """The plan's arm, drawn by the platform's arm weights; None when the platform has none. Seeded by the
        insight and the platform: the same plan draws the same arm whenever it is planned."""
        arms = params["arm_weights"].get(platform)
        if not arms:
            return None
        keys = sorted(arms)
        rng = random.Random(f"{insight.pk}:{platform}")  # noqa: S311 (a draw to reproduce, not a secret)
        return Arm.parse(rng.choices(keys, weights=[float(arms[k]) for k in keys])[0])

    @staticmethod
    def format_for(insight: Insight, platform: str, params: Mapping[str, Any]) -> str:
        if platform == Platform.X and insight.confidence >= params["x_thread_min_confidence"]:
            return ContentFormat.X_THREAD
        return str(params["formats"].get(platform, ContentFormat.SINGLE_POST))


def _creation_tones() -> dict[str, Any]:
    """The tone presets in force in the creation agent, which the arms' tones name."""
    config = agent_selectors.agent_config_get(agent_name=ContentCreationAgent.name)
    params = ContentCreationAgent.validate_parameters(config.parameters if config else {})
    return dict(params["tones"])


def strategist_schedule(*, now: dt.datetime) -> Schedule:
    """The strategist's schedule as its configuration stands, for other agents that plan posts."""
    config = agent_selectors.agent_config_get(agent_name=ContentStrategistAgent.name)
    params = ContentStrategistAgent.validate_parameters(config.parameters if config else {})
    return Schedule.load(
        now=now,
        slots={p: params["slots"][p] for p in Platform.values if params["slots"].get(p)},
        caps=limits.daily_caps(params["daily_caps"]),
        quiet=limits.quiet_hours(params["quiet_hours"]),
        horizon_days=params["horizon_days"],
    )
