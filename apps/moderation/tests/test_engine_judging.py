"""``moderation_judge``: the four layers together, the audit row, redelivery, staff, and the LLM's place."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from apps.accounts.factories import UserFactory
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.moderation.engine.core import Engine, EngineConfig, EngineState
from apps.moderation.engine.types import Verdict
from apps.moderation.models import BlockedDomain, ModerationDecision
from apps.moderation.services.judging import load_state, moderation_judge
from apps.moderation.tests.engine_support import fresh_engine, message

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_engine")]
__all__ = ["fresh_engine"]

SEED_SCAM = "Your wallet is out of sync. Please enter your 12 word seed phrase at the link to restore it"


def test_scam_is_removed_and_recorded_with_every_check() -> None:
    identity = PlatformIdentityFactory.create(platform="telegram", external_id="777")
    judgement = moderation_judge(message=message(SEED_SCAM, author_id="777", message_id="m1"))
    assert judgement.verdict == Verdict.REMOVE
    assert judgement.strike_weight == 3
    row = ModerationDecision.objects.get()
    assert judgement.decision_id == row.pk
    assert (row.platform, row.chat_id, row.message_id, row.author_id) == ("telegram", "-100123", "m1", "777")
    assert row.community_user_id == identity.community_user_id
    assert row.verdict == "remove"
    assert row.text == SEED_SCAM
    by_check = {item["check"]: item for item in row.checks}
    assert by_check["seed_phrase"]["layer"] == "scam"
    assert by_check["seed_phrase"]["reason"] == "asks for a seed phrase or private key"
    assert by_check["seed_phrase"]["evidence"]["phrase"] == "seed phrase"
    assert "seed_phrase" in row.check_names.split(",")
    assert row.classifier_score is not None
    assert row.duration_ms > 0


def test_a_redelivered_message_returns_the_stored_judgement_without_judging_again() -> None:
    first = moderation_judge(message=message(SEED_SCAM, message_id="dup"))
    # The same platform message again, even with other text: judged once, the stored decision stands.
    again = moderation_judge(message=message("hello", message_id="dup"))
    assert again == first
    assert ModerationDecision.objects.count() == 1
    # Another chat's message with the same id is another message.
    other = moderation_judge(message=message("hello", message_id="dup", chat_id="-100999"))
    assert other.verdict == Verdict.ALLOW
    assert ModerationDecision.objects.count() == 2


def test_ordinary_chat_is_allowed_with_no_strikes() -> None:
    for text in (
        "gm everyone, BTC looking strong today",
        "Ok lar... Joking wif u oni...",
        "Sorry, I'll call later",
    ):
        judgement = moderation_judge(message=message(text))
        assert judgement.verdict == Verdict.ALLOW, text
        assert judgement.strike_weight == 0


def test_staff_are_never_moderated() -> None:
    flagged_staff = moderation_judge(message=message(SEED_SCAM, author_is_staff=True))
    assert flagged_staff.verdict == Verdict.ALLOW
    assert flagged_staff.checks == ()
    # Known as staff through their linked portal account, even when the bot did not say so.
    staff = CommunityUserFactory(portal_user=UserFactory(staff=True))
    PlatformIdentityFactory(community_user=staff, platform="telegram", external_id="1")
    judgement = moderation_judge(message=message(SEED_SCAM, author_id="1"))
    assert judgement.verdict == Verdict.ALLOW
    assert ModerationDecision.objects.get(author_id="1").checks == []


def test_impersonating_a_staff_member_or_the_configured_names(settings: Any) -> None:
    settings.MODERATION_PROTECTED_NAMES = ["CoinLink"]
    staff = CommunityUserFactory(portal_user=UserFactory(staff=True), display_name="Satoshi Admin")
    PlatformIdentityFactory(community_user=staff, platform="discord", username="satoshi_nakamod")
    fake = moderation_judge(
        message=message("hi all", author_username="satoshi_nakarnod", author_display_name="x")
    )
    assert [h.check for h in fake.checks] == ["impersonation"]
    assert fake.checks[0].evidence["looks_like"] == "satoshi_nakamod"
    assert fake.verdict == Verdict.REMOVE
    bot = moderation_judge(message=message("hi", author_username="c0inlink_helpdesk", author_display_name=""))
    assert bot.checks[0].evidence["looks_like"] == "CoinLink"
    assert moderation_judge(message=message("hi", author_username="coin_fan")).verdict == Verdict.ALLOW


def test_drainer_domains_from_the_seed_list_before_any_refresh_and_operator_rows() -> None:
    judged = moderation_judge(message=message("new rewards at https://app.walletsync-node.xyz/claim"))
    hit = next(h for h in judged.checks if h.check == "drainer_domain")
    assert hit.evidence == {"domain": "app.walletsync-node.xyz", "listed": "walletsync-node.xyz"}
    assert judged.verdict == Verdict.REMOVE
    BlockedDomain.objects.create(domain="my-own-list.com", source=BlockedDomain.Source.OPERATOR)
    assert "my-own-list.com" in load_state().blocked_domains


def test_new_member_wallet_and_link_are_weak_signals_alone() -> None:
    # The rules and detectors alone (no classifier): a newcomer's wallet address and link are noted, not acted on.
    engine = Engine(EngineConfig())
    state = EngineState(rules=load_state().rules)
    text = "my address 0x52908400098527886E0F7030069857D2E4169EE7 see example.org"
    newcomer = engine.judge(message(text, author_id="n1", author_joined_at=timezone.now()), state).judgement
    assert [h.check for h in newcomer.checks] == ["new_member_link", "wallet_new_member"]
    assert newcomer.verdict == Verdict.ALLOW
    regular = moderation_judge(message=message(text), record=False)
    assert {h.check for h in regular.checks} & {"wallet_new_member", "new_member_link"} == set()


def test_the_llm_is_asked_about_borderline_messages_only_and_never_decides_alone() -> None:
    asked: list[str] = []

    def llm(text: str) -> tuple[bool, float, str]:
        asked.append(text)
        return (True, 0.9, "reads like a scam") if "spam" in text else (False, 0.9, "harmless")

    engine = Engine(EngineConfig(remove_threshold=0.85, review_threshold=0.6))
    state = EngineState(rules=load_state().rules)
    # Nothing fired: the LLM is not asked, and says nothing.
    quiet = engine.judge(message("totally spam-free hello"), state, llm=llm)
    assert asked == []
    assert quiet.judgement.verdict == Verdict.ALLOW
    # A borderline message (a weak check and a shortener): asked, and its answer moves it within its band.
    borderline = message("spam? dm me at bit.ly/x", author_id="new", author_joined_at=timezone.now())
    lifted = engine.judge(borderline, state, llm=llm)
    assert asked == [borderline.text]
    assert lifted.used_llm
    assert lifted.judgement.verdict == Verdict.REMOVE
    assert lifted.judgement.checks[-1].check == "llm"
    harmless = message("hey dm me at bit.ly/x", author_id="new", author_joined_at=timezone.now())
    lowered = engine.judge(harmless, state, llm=llm)
    assert lowered.judgement.verdict == Verdict.ALLOW
    assert lowered.judgement.score < 0.6

    def broken(text: str) -> tuple[bool, float, str]:
        raise RuntimeError("LLM down")

    unavailable = engine.judge(borderline, state, llm=broken)
    assert unavailable.judgement.verdict == Verdict.REVIEW  # what the other checks say
    assert unavailable.judgement.checks[-1].evidence == {"error": "LLM down"}


def test_llm_is_off_by_default_and_the_template_twin_has_no_opinion(settings: Any) -> None:
    settings.MODERATION_LLM_CONFIRM = True
    settings.LLM_BACKEND = "templates"
    text = "dm me for the link bit.ly/x"
    judged = moderation_judge(message=message(text, author_id="n2", author_joined_at=timezone.now()))
    assert "llm" not in {h.check for h in judged.checks}
    assert ModerationDecision.objects.get(author_id="n2").used_llm is False


def test_each_recorded_judgement_is_counted_once_in_the_metrics() -> None:
    def counted(verdict: str) -> float:
        labels = {"platform": "telegram", "verdict": verdict}
        return REGISTRY.get_sample_value("coinlink_moderation_judgements_total", labels) or 0.0

    removed, allowed = counted("remove"), counted("allow")

    moderation_judge(message=message(SEED_SCAM, message_id="metric-1"))
    moderation_judge(message=message(SEED_SCAM, message_id="metric-1"))  # a redelivery
    moderation_judge(message=message("gm everyone", message_id="metric-2"))
    moderation_judge(message=message(SEED_SCAM, message_id="metric-3"), record=False)

    assert (counted("remove"), counted("allow")) == (removed + 1, allowed + 1)
