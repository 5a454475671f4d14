"""The engagement agent: on the outbox twin (the default settings) it records the simulated audience once and
answers questions within the per-person daily limit, honestly; one failing platform does not stop the others;
and against a fake Bot API the real python-telegram-bot client reads a comment and sends the answer to it."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.utils import timezone
from pytest_httpserver import HTTPServer

from apps.agents.base import AgentContext, AgentResult
from apps.agents.models import AgentRun, AgentRunStatus
from apps.agents.services import agent_run_create, agent_run_execute
from apps.community.agents import EngagementAgent
from apps.community.factories import PlatformIdentityFactory
from apps.community.models import CommunityUser, ModerationStanding, PlatformIdentity, UserInteraction
from apps.community.services.interactions import is_question
from apps.community.services.replies import insight_reply_text, reply_opener, symbol_mentioned
from apps.content.factories import ContentDraftFactory, PublishedContentFactory
from apps.content.models import ContentFormat, PublishedContent
from apps.core.models import CircuitBreakerState
from apps.core.resilience import CircuitOpenError, PermanentError, TransientError
from apps.integrations.llm import DISCLAIMER, number_tokens, text_length, unexpected_numbers
from apps.integrations.models import OutboxMessage
from apps.integrations.publishers import get_publisher
from apps.integrations.publishers.outbox import OutboxPublisher
from apps.integrations.types import InboundEvent, OutboundPost
from apps.market.factories import InsightFactory
from apps.market.models import Insight, InsightType

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
PLATFORMS = ("x", "telegram", "discord")
EVIDENCE = {"rsi": 27.4, "period": 14, "close": 58123.5, "threshold": 30}
_URL = re.compile(r"https?://\S+")


@pytest.fixture(autouse=True)
def _twins(settings: Any) -> None:
    settings.X_BACKEND = settings.TELEGRAM_BACKEND = settings.DISCORD_BACKEND = "outbox"
    settings.X_HANDLE = "coinlink"
    settings.WATCHLIST = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    settings.SITE_URL = "https://coinlink.example"


@pytest.fixture
def clock() -> Iterator[Any]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def _engage(**parameters: Any) -> AgentResult:
    ctx = AgentContext(
        run_id=1, agent_name="engagement", trigger="manual", now=timezone.now(), parameters=parameters
    )
    return EngagementAgent().execute(ctx)


def _publish(platform: str, text: str, key: str, **fields: Any) -> PublishedContent:
    """Publish through the platform's publisher and record it as the publishing agent does."""
    result = get_publisher(platform).publish(OutboundPost(platform=platform, text=text, idempotency_key=key))
    return PublishedContentFactory.create(
        platform=platform,
        external_id=result.external_id,
        part_ids=list(result.part_ids),
        url=result.url,
        text=text,
        published_at=timezone.now(),
        **fields,
    )


def _audience_until(now: dt.datetime) -> list[InboundEvent]:
    """Every event the twin's audience has produced by ``now``, read without the agent."""
    with time_machine.travel(now, tick=False):
        return [e for p in PLATFORMS for e in OutboxPublisher(p).fetch_inbound(since=None)]


def _replies() -> list[OutboxMessage]:
    return list(
        OutboxMessage.objects.filter(kind__in=[OutboxMessage.Kind.REPLY, OutboxMessage.Kind.DM]).order_by(
            "pk"
        )
    )


def _assert_honest(text: str, insight: Insight | None) -> None:
    """An insight's answer quotes only its evidence numbers; a pointer quotes none (beyond its links)."""
    if insight is not None:
        assert unexpected_numbers(text, insight.evidence, symbol=insight.symbol) == []
        assert text.endswith(DISCLAIMER)
    else:
        assert number_tokens(_URL.sub("", text)) == []


# --- the simulated audience, end to end ----------------------------------------------------------------------


def test_the_audience_is_recorded_once_and_answered_within_the_limits(clock: Any) -> None:
    insight = InsightFactory.create(
        symbol="BTC/USDT", type=InsightType.RSI_OVERSOLD, evidence=EVIDENCE, detected_at=T0 - HOUR
    )
    draft = ContentDraftFactory.create(plan__insight=insight)
    btc_post = _publish("x", "#BTC RSI(14) reads 27.40, oversold. Not financial advice.", "d1", draft=draft)
    _publish("x", "ETH volume is 3.1x its daily average. Not financial advice.", "d2")
    _publish("telegram", "SOL closed above its upper Bollinger band. Not financial advice.", "d3")
    _publish("discord", "BTC sentiment on X jumps to +0.42. Not financial advice.", "d4")
    _publish("discord", "Weekly digest: ETH and SOL. Not financial advice.", "d5")
    for n in range(3):
        clock.shift(HOUR)
        for platform in PLATFORMS:
            _publish(platform, f"#SOL update {n}: range holds. Not financial advice.", f"sol-{platform}-{n}")

    first_run = T0 + 12 * HOUR
    clock.move_to(first_run)
    arrived = _audience_until(first_run)
    assert arrived  # the twin's audience has spoken

    result = _engage(max_replies_per_run=1000)

    authors = {(e.platform, e.author_id) for e in arrived}
    questions = [e for e in arrived if is_question(e.text)]
    assert result.counters["events"] == len(arrived)
    assert result.counters["interactions_new"] == len(arrived) == UserInteraction.objects.count()
    assert result.counters["users_new"] == len(authors) == CommunityUser.objects.count()
    assert PlatformIdentity.objects.count() == len(authors)
    assert result.counters["questions"] == len(questions) > 0
    assert not any(key.startswith("errors.") for key in result.counters)
    for event in arrived:
        row = UserInteraction.objects.select_related("content", "identity").get(
            platform=event.platform, external_id=event.external_id
        )
        assert row.identity is not None
        assert (row.identity.platform, row.identity.external_id) == (event.platform, event.author_id)
        assert row.content_id == (
            PublishedContent.objects.get(platform=event.platform, external_id=event.in_reply_to).pk
            if event.in_reply_to
            else None
        )
        assert row.community_user.last_seen_at >= event.occurred_at

    # Answers: at most two per person, every unanswered question is one over its asker's limit.
    sent = _replies()
    answered = UserInteraction.objects.filter(responded_at__isnull=False)
    assert result.counters["replies_sent"] == len(sent) == answered.count() > 0
    per_person = Counter(answered.values_list("community_user_id", flat=True))
    assert max(per_person.values()) <= 2
    waiting = UserInteraction.objects.filter(is_question=True, responded_at__isnull=True)
    assert result.counters["replies_skipped_limit"] == waiting.count()
    assert all(per_person[q.community_user_id] == 2 for q in waiting)
    for interaction in answered.select_related("identity"):
        (reply,) = [m for m in sent if m.idempotency_key == f"reply:{interaction.pk}"]
        assert interaction.response_external_id == reply.external_id
        assert reply.platform == interaction.platform
        if interaction.kind == "dm":
            assert interaction.identity is not None
            assert (reply.kind, reply.channel) == ("dm", f"dm:{interaction.identity.external_id}")
        else:
            assert (reply.kind, reply.reply_to) == ("reply", interaction.external_id)
        about_btc = interaction.content_id == btc_post.pk or symbol_mentioned(interaction.text, ["BTC/USDT"])
        _assert_honest(reply.text, insight if about_btc else None)
        if about_btc:
            assert reply.text.endswith(insight_reply_text(insight, platform=reply.platform))
        else:
            assert "members' library: https://coinlink.example/plans/" in reply.text
        assert (
            text_length(reply.text, reply.platform)
            <= {"x": 280, "telegram": 4096, "discord": 2000}[reply.platform]
        )

    # Read again at once: nothing new, nobody new, nothing said twice.
    tables = (UserInteraction.objects.count(), CommunityUser.objects.count(), OutboxMessage.objects.count())
    again = _engage(max_replies_per_run=1000)
    assert (again.counters["interactions_new"], again.counters["users_new"], again.counters["questions"]) == (
        0,
        0,
        0,
    )
    assert again.counters["replies_sent"] == 0
    assert (
        UserInteraction.objects.count(),
        CommunityUser.objects.count(),
        OutboxMessage.objects.count(),
    ) == tables

    # A day and a half later the rest of the audience has spoken: exactly what had not arrived yet is added.
    later = T0 + 40 * HOUR
    clock.move_to(later)
    everything = _audience_until(later)
    late = [e for e in everything if e.occurred_at > first_run]
    result = _engage(max_replies_per_run=1000)
    new_authors = {(e.platform, e.author_id) for e in late} - authors
    assert result.counters["interactions_new"] == len(late) == len(everything) - len(arrived)
    assert result.counters["users_new"] == len(new_authors)
    assert UserInteraction.objects.count() == len(everything)


def _scripted(monkeypatch: pytest.MonkeyPatch, events: list[InboundEvent]) -> None:
    """The twin's audience replaced by ``events`` (those that have happened by the clock's now); publishing
    still goes to the outbox."""

    def fetch_inbound(self: OutboxPublisher, *, since: dt.datetime | None) -> list[InboundEvent]:
        now = timezone.now()
        return [
            e
            for e in events
            if e.platform == self.platform
            and e.occurred_at <= now
            and (since is None or e.occurred_at > since)
        ]

    monkeypatch.setattr(OutboxPublisher, "fetch_inbound", fetch_inbound)


def _question(
    external_id: str, author_id: str, at: dt.datetime, text: str = "What timeframe is this on?", **fields: Any
) -> InboundEvent:
    defaults: dict[str, Any] = {"platform": "x", "kind": "reply", "author_username": f"u{author_id}"}
    return InboundEvent(
        external_id=external_id, author_id=author_id, occurred_at=at, text=text, **{**defaults, **fields}
    )


def test_a_person_gets_two_answers_a_day_however_many_questions(
    clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    day_two = T0 + 25 * HOUR
    events = [_question(f"a{n}", "111", T0 + n * MINUTE) for n in range(5)]
    events += [_question("b0", "222", T0 + 5 * MINUTE)]
    events += [_question(f"c{n}", "111", day_two + n * MINUTE) for n in range(5)]
    _scripted(monkeypatch, events)

    clock.move_to(T0 + 10 * MINUTE)
    first = _engage()
    second = _engage()
    clock.move_to(day_two + 10 * MINUTE)
    next_day = _engage()

    assert (
        first.counters["questions"],
        first.counters["replies_sent"],
        first.counters["replies_skipped_limit"],
    ) == (6, 3, 3)
    assert (second.counters["replies_sent"], second.counters["replies_skipped_limit"]) == (0, 3)
    # The day before's leftovers are too old to answer now; of the new five, two are answered again.
    assert (next_day.counters["replies_sent"], next_day.counters["replies_skipped_limit"]) == (2, 3)
    answered = list(
        UserInteraction.objects.filter(responded_at__isnull=False)
        .order_by("occurred_at")
        .values_list("external_id", flat=True)
    )
    assert answered == ["a0", "a1", "b0", "c0", "c1"]
    assert [m.reply_to for m in _replies()] == answered


def test_the_run_cap_defers_the_rest_to_the_next_run(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted(monkeypatch, [_question(f"q{n}", str(n), T0 + n * MINUTE) for n in range(3)])
    clock.move_to(T0 + 10 * MINUTE)

    first = _engage(max_replies_per_run=2)
    second = _engage(max_replies_per_run=2)

    assert (first.counters["replies_sent"], first.counters["replies_deferred"]) == (2, 1)
    assert (second.counters["replies_sent"], second.counters["replies_deferred"]) == (1, 0)
    assert [m.reply_to for m in _replies()] == ["q0", "q1", "q2"]


def test_old_questions_bots_and_muted_people_get_no_answer(
    clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    muted = PlatformIdentityFactory.create(
        platform="x", external_id="666", community_user__standing=ModerationStanding.MUTED
    )
    _scripted(
        monkeypatch,
        [
            _question("old", "1", T0 - 30 * HOUR),
            _question("bot", "2", T0, is_bot=True),
            _question("muted", muted.external_id, T0),
            _question("fresh", "3", T0),
        ],
    )
    clock.move_to(T0 + MINUTE)

    result = _engage(initial_lookback_hours=48)

    assert (result.counters["interactions_new"], result.counters["bots_ignored"]) == (3, 1)
    assert [m.reply_to for m in _replies()] == ["fresh"]


def test_a_failed_answer_is_given_back_and_sent_once_later(
    clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted(monkeypatch, [_question("q1", "1", T0, platform="telegram", kind="comment")])
    original = OutboxPublisher.publish
    outage = {"on": True}

    def flaky(self: OutboxPublisher, post: OutboundPost) -> Any:
        if outage["on"]:
            raise TransientError("Telegram: 502 Bad Gateway", service="telegram")
        return original(self, post)

    monkeypatch.setattr(OutboxPublisher, "publish", flaky)
    clock.move_to(T0 + MINUTE)

    failed = _engage()
    interaction = UserInteraction.objects.get()
    assert (failed.counters["replies_sent"], failed.counters["errors.telegram"]) == (0, 1)
    assert (interaction.responded_at, interaction.response_external_id) == (None, "")

    outage["on"] = False
    clock.move_to(T0 + 11 * MINUTE)
    recovered = _engage()
    again = _engage()

    interaction.refresh_from_db()
    assert (recovered.counters["replies_sent"], again.counters["replies_sent"]) == (1, 0)
    (reply,) = _replies()
    assert interaction.response_external_id == reply.external_id
    assert interaction.responded_at == T0 + 11 * MINUTE


def test_a_bug_while_sending_gives_the_claim_back_and_fails_the_run(
    clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted(monkeypatch, [_question("q1", "1", T0)])

    def broken(self: OutboxPublisher, post: OutboundPost) -> Any:
        raise ValueError("invalid literal for int()")

    monkeypatch.setattr(OutboxPublisher, "publish", broken)
    clock.move_to(T0 + MINUTE)

    with pytest.raises(ValueError, match="invalid literal"):
        _engage()
    assert UserInteraction.objects.get().responded_at is None


def test_answers_come_from_a_recent_insight_on_the_coin_asked_about(
    clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    btc = InsightFactory.create(symbol="BTC/USDT", evidence=EVIDENCE, detected_at=T0 - HOUR)
    InsightFactory.create(symbol="ETH/USDT", detected_at=T0 - 30 * HOUR)  # too old to be the latest read
    sol = InsightFactory.create(
        symbol="SOL/USDT",
        type=InsightType.MACD_BULLISH_CROSS,
        headline="SOL MACD crossed above its signal line",
        evidence={"macd": 0.42, "signal": 0.31, "histogram": 0.11, "close": 142.5},
        detected_at=T0 - 2 * HOUR,
    )
    sol_post = _publish(
        "x",
        "SOL MACD crossed above its signal line.",
        "sol",
        draft=ContentDraftFactory.create(plan__insight=sol),
    )
    other_post = _publish("x", "Weekly digest.", "digest")
    _scripted(
        monkeypatch,
        [
            _question("1", "1", T0, text="Is $btc oversold here?", author_display_name="Maya Chen"),
            _question("2", "2", T0, text="what about ethereum?", author_display_name="Leo"),
            _question("3", "3", T0, text="What timeframe is this on?", in_reply_to=sol_post.external_id),
            _question("4", "4", T0, text="What timeframe is this on?", in_reply_to=other_post.external_id),
        ],
    )
    clock.move_to(T0 + MINUTE)

    _engage()

    replies = {m.reply_to: m.text for m in _replies()}
    asked = UserInteraction.objects.select_related("identity", "community_user").get(external_id="1")
    assert replies["1"] == f"{reply_opener(asked)} {insight_reply_text(btc, platform='x')}"
    assert reply_opener(asked).endswith(", Maya!")
    assert replies["1"].endswith(
        "Latest read on BTC: RSI oversold. RSI 27.40; close 58,123.50 USDT. Not financial advice."
    )
    assert replies["3"].endswith(
        "SOL MACD crossed above its signal line. MACD 0.42; signal line 0.31; close 142.50 USDT. Not financial advice."
    )
    # Nothing recent on ETH, and nothing behind the digest: a pointer to our latest post (other than the one
    # asked about) and to the library.
    assert "Latest one: " + other_post.url in replies["2"]
    assert "Latest one: " + sol_post.url in replies["4"]
    for text in (replies["2"], replies["4"]):
        assert text.endswith(
            "The full breakdowns are in the members' library: https://coinlink.example/plans/"
        )
        _assert_honest(text, None)
    _assert_honest(replies["1"], btc)
    _assert_honest(replies["3"], sol)


def test_an_answer_from_an_insight_quotes_its_evidence_and_nothing_else() -> None:
    insight = InsightFactory.build(
        symbol="ETH/USDT",
        type=InsightType.PRICE_MOVE,
        headline="ETH up 5.2% in 24h",  # 5.2% is not how the evidence reads: the kind of signal stands in
        evidence={"close": 3120.456, "change_pct": 5.234, "window_hours": 24},
    )

    text = insight_reply_text(insight, platform="x")

    assert (
        text
        == "Latest read on ETH: Price move. +5.23% over 24 hours; close 3,120.46 USDT. Not financial advice."
    )
    assert unexpected_numbers(text, insight.evidence, symbol=insight.symbol) == []
    traceable = InsightFactory.build(
        symbol="SOL/USDT",
        headline="SOL MACD crossed above its signal line",
        evidence={"macd": 0.42, "signal": 0.31},
    )
    assert insight_reply_text(traceable, platform="x") == (
        "SOL MACD crossed above its signal line. MACD 0.42; signal line 0.31. Not financial advice."
    )


# --- one platform failing ----------------------------------------------------------------------------------------


def _failing(monkeypatch: pytest.MonkeyPatch, errors: dict[str, Exception]) -> None:
    original = OutboxPublisher.fetch_inbound

    def fetch_inbound(self: OutboxPublisher, *, since: dt.datetime | None) -> list[InboundEvent]:
        if self.platform in errors:
            raise errors[self.platform]
        return original(self, since=since)

    monkeypatch.setattr(OutboxPublisher, "fetch_inbound", fetch_inbound)


@pytest.mark.parametrize(
    "error",
    [
        TransientError("Telegram: timed out", service="telegram"),
        CircuitOpenError("telegram is unavailable (circuit open)", service="telegram"),
    ],
    ids=["outage", "breaker-open"],
)
def test_a_failing_platform_does_not_stop_the_others(
    clock: Any, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    for platform in PLATFORMS:
        for n in range(3):
            _publish(platform, f"BTC holds its range, day {n}. Not financial advice.", f"d-{platform}-{n}")
    clock.move_to(T0 + 12 * HOUR)
    arrived = [e for e in _audience_until(T0 + 12 * HOUR) if e.platform != "telegram"]
    _failing(monkeypatch, {"telegram": error})

    result = _engage(max_replies_per_run=1000)

    assert result.counters["errors.telegram"] == 1
    assert result.counters["interactions_new"] == len(arrived) > 0
    assert set(UserInteraction.objects.values_list("platform", flat=True)) == {"x", "discord"}
    assert result.counters["questions"] > 0
    assert result.counters["replies_sent"] == len(_replies()) > 0
    assert {m.platform for m in _replies()} <= {"x", "discord"}
    assert "failed: telegram" in result.summary


def test_every_platform_failing_fails_the_run(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing(
        monkeypatch,
        {
            "x": TransientError("X 503", service="x"),
            "telegram": PermanentError("Telegram: Conflict", service="telegram"),
            "discord": CircuitOpenError("discord is unavailable", service="discord"),
        },
    )
    with pytest.raises(TransientError, match="every platform failed") as raised:
        _engage()
    assert not isinstance(raised.value, CircuitOpenError)

    _failing(monkeypatch, {p: CircuitOpenError(f"{p} is unavailable", service=p) for p in PLATFORMS})
    with pytest.raises(CircuitOpenError):
        _engage()
    assert not UserInteraction.objects.exists()


# --- the real Telegram client against a fake Bot API ------------------------------------------------------------

TOKEN = "123456:TEST-token"
CHANNEL = {"id": -1001234567890, "type": "channel", "title": "CoinLink", "username": "coinlink"}
GROUP = {"id": -1009876543210, "type": "supergroup", "title": "CoinLink chat"}


def test_a_telegram_comment_is_recorded_and_answered_through_the_bot_api(
    settings: Any, httpserver: HTTPServer, clock: Any
) -> None:
    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    post = PublishedContentFactory.create(
        platform="telegram",
        external_id="42",
        url="https://t.me/coinlink/42",
        format=ContentFormat.TELEGRAM_CHART_POST,
    )
    date = int(T0.timestamp()) - 600
    mirror = {
        "message_id": 900,
        "date": date,
        "chat": GROUP,
        "sender_chat": CHANNEL,
        "is_automatic_forward": True,
        "forward_origin": {"type": "channel", "chat": CHANNEL, "message_id": 42, "date": date},
        "text": "SOL closed above its upper band",
    }
    maya = {"id": 111, "is_bot": False, "first_name": "Maya", "last_name": "Chen", "username": "mayatrades"}
    helper_bot = {"id": 999, "is_bot": True, "first_name": "GroupHelp", "username": "grouphelpbot"}
    updates = [
        {"update_id": 1, "message": mirror},
        {
            "update_id": 2,
            "message": {
                "message_id": 901,
                "date": date + 30,
                "chat": GROUP,
                "from": maya,
                "reply_to_message": mirror,
                "text": "What timeframe is this on?",
            },
        },
        {
            "update_id": 3,
            "message": {
                "message_id": 902,
                "date": date + 40,
                "chat": GROUP,
                "from": helper_bot,
                "text": "Welcome! Read the rules?",
            },
        },
    ]
    httpserver.expect_ordered_request(f"/bot{TOKEN}/getUpdates").respond_with_json(
        {"ok": True, "result": updates}
    )
    httpserver.expect_ordered_request(f"/bot{TOKEN}/sendMessage").respond_with_json(
        {
            "ok": True,
            "result": {"message_id": 903, "date": int(T0.timestamp()), "chat": GROUP, "text": "answer"},
        }
    )

    result = _engage()

    assert (
        result.counters["interactions_new"],
        result.counters["users_new"],
        result.counters["bots_ignored"],
    ) == (1, 1, 1)
    interaction = UserInteraction.objects.select_related("identity").get()
    assert (interaction.platform, interaction.kind, interaction.external_id) == (
        "telegram",
        "comment",
        f"{GROUP['id']}:901",
    )
    assert interaction.content == post
    assert interaction.identity is not None
    assert (interaction.identity.external_id, interaction.identity.username) == ("111", "mayatrades")
    assert interaction.community_user.display_name == "Maya Chen"
    assert interaction.is_question

    (_, _), (send, _) = httpserver.log
    assert send.form["chat_id"] == str(GROUP["id"])
    assert json.loads(send.form["reply_parameters"]) == {"message_id": 901}
    assert "members' library: https://coinlink.example/plans/" in send.form["text"]
    _assert_honest(send.form["text"], None)
    assert (result.counters["replies_sent"], interaction.response_external_id) == (1, "903")
    assert interaction.responded_at == T0


# --- through the framework ------------------------------------------------------------------------------------


def test_a_run_through_the_framework(clock: Any) -> None:
    _publish("x", "BTC holds its range. Not financial advice.", "d1")
    clock.move_to(T0 + 12 * HOUR)
    run = agent_run_create(agent_name="engagement", trigger="manual")

    agent_run_execute(run_id=run.pk)

    run = AgentRun.objects.get(pk=run.pk)
    assert run.status == AgentRunStatus.SUCCEEDED, run.error
    assert run.counters["interactions_new"] == UserInteraction.objects.count() > 0
    assert run.counters["replies_sent"] == len(_replies())


def test_a_breaker_open_at_the_start_holds_back_only_that_platform(clock: Any) -> None:
    """Engagement works with whichever platforms answer: a breaker found open at the start does not stop the
    run; only when every platform's breaker is open is the whole run skipped."""
    _publish("x", "BTC holds its range. Not financial advice.", "d1")
    clock.move_to(T0 + 12 * HOUR)
    CircuitBreakerState.objects.create(
        service="telegram", state=CircuitBreakerState.State.OPEN, opened_at=timezone.now()
    )
    run = agent_run_create(agent_name="engagement", trigger="manual")

    agent_run_execute(run_id=run.pk)

    run = AgentRun.objects.get(pk=run.pk)
    # Not skipped: the platforms still answering are worked (the offline twins consult no breaker).
    assert run.status == AgentRunStatus.SUCCEEDED, run.error
    assert run.counters["interactions_new"] > 0

    for service in ("x", "discord"):
        CircuitBreakerState.objects.update_or_create(
            service=service,
            defaults={"state": CircuitBreakerState.State.OPEN, "opened_at": timezone.now()},
        )
    run = agent_run_create(agent_name="engagement", trigger="manual")

    agent_run_execute(run_id=run.pk)

    run = AgentRun.objects.get(pk=run.pk)
    assert (run.status, run.summary) == (
        AgentRunStatus.SKIPPED,
        "circuit breakers open for x, telegram, discord",
    )


def test_with_the_bot_taking_telegram_updates_engagement_answers_what_the_bot_recorded(
    settings: Any, httpserver: HTTPServer, clock: Any
) -> None:
    """A webhook is set: getUpdates would only be refused (409), so the agent does not call it; the question
    reached the community through the bot's inbound path and is answered all the same."""
    from apps.bots.services import inbound_message_handle
    from apps.integrations.types import InboundEvent

    settings.TELEGRAM_BACKEND = "api"
    settings.TELEGRAM_BOT_TOKEN = TOKEN
    settings.TELEGRAM_CHANNEL_ID = "@coinlink"
    settings.TELEGRAM_WEBHOOK_SECRET = "s3cret"
    settings.TELEGRAM_API_BASE_URL = httpserver.url_for("/").rstrip("/")
    httpserver.expect_request(f"/bot{TOKEN}/sendMessage").respond_with_json(
        {"ok": True, "result": {"message_id": 903, "date": int(T0.timestamp()), "chat": GROUP, "text": "a"}}
    )
    inbound_message_handle(
        event=InboundEvent(
            platform="telegram",
            kind="message",
            external_id=f"{GROUP['id']}:901",
            author_id="111",
            author_username="mayatrades",
            occurred_at=T0 - 5 * MINUTE,
            text="What timeframe is the SOL chart on?",
            channel=str(GROUP["id"]),
        ),
        chat_id=str(GROUP["id"]),
        message_id="901",
    )

    result = _engage()

    assert [r.path.rsplit("/", 1)[-1] for r, _ in httpserver.log] == ["sendMessage"]
    assert result.counters["replies_sent"] == 1
    assert UserInteraction.objects.get().response_external_id == "903"
