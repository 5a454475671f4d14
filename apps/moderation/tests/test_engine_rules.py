"""Layer 1: operator rules from the admin (keywords, regular expressions, link allow and deny lists, limits,
flood, duplicate text, new members), through ``moderation_judge``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from apps.moderation.engine.rules import compile_rule
from apps.moderation.engine.types import Verdict
from apps.moderation.factories import ModerationRuleFactory
from apps.moderation.models import ModerationRule
from apps.moderation.services.domains import engine_config_changed
from apps.moderation.services.judging import moderation_judge
from apps.moderation.tests.engine_support import fresh_engine, message

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_engine")]
__all__ = ["fresh_engine"]


def rule(kind: str, **fields: Any) -> ModerationRule:
    return ModerationRuleFactory.create(
        kind=kind, pattern=fields.pop("pattern", ""), score=fields.pop("score", 0.9), **fields
    )


def checks_of(text: str, **overrides: Any) -> dict[str, Any]:
    judgement = moderation_judge(message=message(text, **overrides), record=False)
    return {hit.check: hit for hit in judgement.checks}


def test_keyword_rule_matches_whole_folded_words() -> None:
    banned = rule("keyword", pattern="casino\nfree money", strike_weight=2, description="No gambling ads")
    hit = checks_of("Best CASIN\u041e bonus today")["keyword"]  # Cyrillic capital O
    assert hit.rule_id == banned.pk
    assert hit.reason == "No gambling ads"
    assert hit.evidence == {"rule": banned.name, "matched": "casino"}
    judgement = moderation_judge(message=message("get free   money here"), record=False)
    assert judgement.verdict == Verdict.REMOVE
    assert judgement.strike_weight == 2
    assert "keyword" not in checks_of("casinos of the world")  # whole words only
    assert "keyword" not in checks_of("money for free")


def test_regex_rule_and_a_broken_one_that_is_skipped() -> None:
    rule("regex", pattern=r"\bt\.me/\+\w+")
    rule("regex", name="broken", pattern="([unclosed")
    assert compile_rule(ModerationRule.objects.get(name="broken")) is None
    assert checks_of("join t.me/+AbCdEf now")["regex"].evidence["matched"] == "t.me/+AbCdEf"
    assert "regex" not in checks_of("join t.me/coinlink now")


def test_link_deny_list_covers_subdomains_and_normalised_spellings() -> None:
    rule("link_deny", pattern="badsite.com\nhttps://WWW.Other.net/path")
    assert checks_of("go to https://login.badsite.com/x")["link_denylist"].evidence["listed"] == "badsite.com"
    assert checks_of("see other.net")["link_denylist"].evidence["domain"] == "other.net"
    assert "link_denylist" not in checks_of("see notbadsite.com")


def test_link_allow_list_flags_only_other_domains() -> None:
    rule("link", pattern="coinlink.io\ncoingecko.com")
    assert "link_not_allowed" not in checks_of(
        "chart: https://www.coingecko.com/en/coins/bitcoin and coinlink.io/plans"
    )
    assert checks_of("chart: https://tradingview.com/x")["link_not_allowed"].evidence["domains"] == [
        "tradingview.com"
    ]


def test_limits_on_mentions_emojis_links_and_length() -> None:
    rule("mentions", limit=3)
    rule("emojis", limit=4)
    rule("links", limit=1)
    rule("length", limit=50)
    hits = checks_of("@aa @bb @cc <@123> 🚀🚀🚀🚀🚀 a.com b.com " + "x" * 20)
    assert hits["mentions_limit"].evidence["count"] == 4
    assert hits["emojis_limit"].evidence["count"] == 5
    assert hits["links_limit"].evidence["count"] == 2
    assert hits["length_limit"].evidence["count"] > 50
    assert checks_of("@aa @bb 🚀 a.com short") == {}


def test_rules_for_one_platform_and_new_members_only() -> None:
    rule("keyword", pattern="promo", platforms=["discord"])
    rule("new_member_text", pattern="check my profile", name="newcomers")
    assert "keyword" not in checks_of("promo code inside")
    assert "keyword" in checks_of("promo code inside", platform="discord")
    newcomer = {"author_joined_at": timezone.now() - dt.timedelta(minutes=5)}
    assert "new_member_keyword" in checks_of("hey, check my profile", **newcomer)
    # Someone who joined long ago counts as new for their first MODERATION_NEW_MEMBER_MESSAGES messages only.
    first = [moderation_judge(message=message("hey, check my profile", author_id="old")) for _ in range(3)]
    later = moderation_judge(message=message("hey, check my profile", author_id="old"))
    assert all(any(h.check == "new_member_keyword" for h in j.checks) for j in first)
    assert [h.check for h in later.checks] == []


def test_new_member_link_rule_uses_join_date() -> None:
    rule("new_member_link", window_seconds=3600, score=0.7)
    fresh = timezone.now() - dt.timedelta(minutes=10)
    assert checks_of("look at example.com", author_joined_at=fresh)["new_member_link"].rule_id is not None
    assert "new_member_link" not in checks_of("look at example.com")


def test_flood_counts_per_author_in_the_shared_cache(settings: Any) -> None:
    settings.MODERATION_FLOOD_MESSAGES = 0
    rule("flood", limit=3, window_seconds=60)
    # At the start of a minute, so the five messages share one window bucket: across a bucket boundary the
    # sliding-window estimate counts the previous bucket only for the part still inside the window.
    now = timezone.now().replace(second=0, microsecond=0)
    verdicts = [
        moderation_judge(message=message(f"message {i}", sent_at=now + dt.timedelta(seconds=i))).verdict
        for i in range(5)
    ]
    assert verdicts == [Verdict.ALLOW, Verdict.ALLOW, Verdict.ALLOW, Verdict.REMOVE, Verdict.REMOVE]
    # Another author is not flooding.
    assert moderation_judge(message=message("hello", author_id="other", sent_at=now)).verdict == Verdict.ALLOW


def test_builtin_flood_limit_from_settings(settings: Any) -> None:
    settings.MODERATION_FLOOD_MESSAGES = 2
    settings.MODERATION_FLOOD_SECONDS = 10
    now = timezone.now()
    judged = [moderation_judge(message=message(f"hi {i}", sent_at=now)) for i in range(3)]
    assert [j.verdict for j in judged] == [Verdict.ALLOW, Verdict.ALLOW, Verdict.REMOVE]
    assert judged[2].checks[0].check == "flood"


def test_same_text_from_several_people_within_an_hour(settings: Any) -> None:
    settings.MODERATION_DUPLICATE_AUTHORS = 3
    text = "Check out this amazing opportunity everyone"
    now = timezone.now()
    first = moderation_judge(message=message(text, author_id="a1", sent_at=now))
    again = moderation_judge(message=message(text, author_id="a1", sent_at=now))  # the same person twice
    second = moderation_judge(message=message(text.upper(), author_id="a2", sent_at=now))
    third = moderation_judge(message=message(text, author_id="a3", sent_at=now + dt.timedelta(minutes=5)))
    assert "duplicate_text" not in {h.check for j in (first, again, second) for h in j.checks}
    hit = next(h for h in third.checks if h.check == "duplicate_text")
    assert hit.evidence == {"authors": 3}


def test_rule_changes_reach_the_engine_after_the_version_bump(
    django_capture_on_commit_callbacks: Any,
) -> None:
    assert checks_of("buy followers cheap") == {}
    rule("keyword", pattern="buy followers")
    # The state is kept (up to a minute) until the shared version changes...
    assert checks_of("buy followers cheap") == {}
    with django_capture_on_commit_callbacks(execute=True):
        engine_config_changed()
    # ...and reloaded as soon as it does.
    assert "keyword" in checks_of("buy followers cheap")


def test_regex_lines_are_searched_together_yet_each_can_match() -> None:
    rule("scam", pattern="double your (btc|eth)\n(?i)send .* to receive\n(a)irdrop \\1")
    assert checks_of("DOUBLE your ETH today")["scam_pattern"].evidence["matched"] == "DOUBLE your ETH"
    assert checks_of("send 1 to receive 2")["scam_pattern"].evidence["matched"] == "send 1 to receive"
    assert checks_of("airdrop a")["scam_pattern"].evidence["matched"] == "airdrop a"
