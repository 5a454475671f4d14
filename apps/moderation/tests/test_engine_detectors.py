"""The crypto-scam detectors, each with messages it must catch and ordinary messages it must leave alone."""

from __future__ import annotations

import pytest

from apps.moderation.engine import detectors
from apps.moderation.engine.text import fold_message, normalise_domain


def checks(text: str) -> set[str]:
    folded = fold_message(text)
    return {hit.check for detector in detectors.TEXT_DETECTORS for hit in detector(folded)}


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("Please send your 12 word seed phrase to support to verify your wallet", "seed_phrase"),
        ("Your wallet is out of sync, enter your recovery phrase at the link", "seed_phrase"),
        ("To fix it paste your private key in the form", "seed_phrase"),
        ("s\u0435\u0435d phr\u0430se needed to validate your account, type it here", "seed_phrase"),
        ("Having withdrawal issues? Contact support on WhatsApp, they answer fast", "support_scam"),
        ("Kindly DM the admin, he will help you", "support_scam"),
        ("Admins will help you with the deposit, message them now", "support_scam"),
        ("Dm me for recovery of your lost funds", "support_scam"),
        ("Send 0.5 ETH and receive 1 ETH back instantly!", "fake_giveaway"),
        ("Double your BTC in 10 minutes, official event", "fake_giveaway"),
        ("Claim your free airdrop now before it ends: arb-claim.xyz", "fake_giveaway"),
        ("The airdrop is now live! connect your wallet to claim", "fake_giveaway"),
        ("Our recovery experts can get your stolen crypto back", "recovery_scam"),
        ("Hire a hacker to recover your lost BTC", "recovery_scam"),
        ("I got scammed and contacted this guy who got my funds back, dm him", "recovery_scam"),
        ("WINNER!! You have been selected for a £900 prize reward! To claim call 09061701461", "prize_spam"),
        (
            "Free entry in 2 a weekly comp to win cup final tickets. Text WIN to 87121 to receive entry",
            "prize_spam",
        ),
        ("Earn $500 daily from home, DM for details", "easy_money"),
        ("Guaranteed profit every week with my signals", "easy_money"),
    ],
)
def test_detector_catches(text: str, check: str) -> None:
    assert check in checks(text)


@pytest.mark.parametrize(
    "text",
    [
        "Reminder: never share your seed phrase with anyone, admins will never ask for it",
        "Write your recovery phrase on paper and store it somewhere safe",
        "How do I contact support about a failed payment?",
        "The airdrop was disappointing honestly, got 40 tokens",
        "I lost money on that trade, lesson learned",
        "Ok lar... Joking wif u oni...",
        "Sorry, I'll call later",
        "I won the office quiz today haha, free coffee for a week",
        "Call me when you get this, nothing urgent",
        "Did you claim the table by the window?",
        "Finally upgraded my home office, new monitor for work",
        "BTC holding above the 200 day moving average",
    ],
)
def test_ordinary_messages_trigger_nothing_strong(text: str) -> None:
    folded = fold_message(text)
    strong = [hit for detector in detectors.TEXT_DETECTORS for hit in detector(folded) if hit.score >= 0.5]
    assert strong == []


def test_dm_me_alone_is_weak() -> None:
    [hit] = detectors.support_scam(fold_message("dm me"))
    assert hit.score < 0.5


def test_wallet_addresses_by_chain() -> None:
    text = (
        "eth 0x52908400098527886E0F7030069857D2E4169EE7 btc bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh "
        "tron TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE sol 7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV"
    )
    chains = [chain for chain, _ in detectors.wallet_addresses(text)]
    assert chains == ["evm", "btc", "tron", "sol"]
    assert detectors.wallet_addresses("an extraordinarilylongwordwithoutdigitsatall here") == []


def test_impersonation_of_protected_names() -> None:
    protected = detectors.ProtectedNames.build(["CoinLink", "@satoshi_admin", ""])
    [hit] = detectors.impersonation(username="c0in1ink_support", display_name="", protected=protected)
    assert hit.check == "impersonation"
    assert hit.evidence["looks_like"] == "CoinLink"
    [hit] = detectors.impersonation(username="x", display_name="\u0421oinLink Official", protected=protected)
    assert hit.score == 0.95
    [hit] = detectors.impersonation(username="satoshi_admn", display_name="", protected=protected)
    assert hit.evidence["looks_like"] == "satoshi_admin"
    assert detectors.impersonation(username="coinbase_fan", display_name="Alice", protected=protected) == []
    assert detectors.impersonation(username="a", display_name="b", protected=detectors.ProtectedNames()) == []


def test_domain_checks_blocked_lookalike_and_brand_claims() -> None:
    blocked = frozenset({"drainer.xyz"})
    protected = frozenset({"metamask.io", "uniswap.org"})
    domains = [
        normalise_domain("https://app.drainer.xyz/claim"),  # subdomain of a blocked domain
        normalise_domain("https://met\u0430mask.io"),  # a Cyrillic a: punycode
        normalise_domain("rnetamask.io"),
        normalise_domain("uniswap-rewards-claim.com"),
        normalise_domain("docs.uniswap.org"),  # the real one
        normalise_domain("example.com"),
    ]
    hits = detectors.domain_checks(domains, blocked=blocked, protected_domains=protected)
    assert [(hit.check, hit.evidence["domain"]) for hit in hits] == [
        ("drainer_domain", "app.drainer.xyz"),
        ("lookalike_domain", domains[1]),
        ("lookalike_domain", "rnetamask.io"),
        ("lookalike_domain", "uniswap-rewards-claim.com"),
    ]
    assert hits[0].evidence["listed"] == "drainer.xyz"


@pytest.mark.parametrize(
    "text",
    [
        "If you lost funds to a scam, report it to the police, do not trust recovery services",
        'This is the classic "giveaway" or "double your money" fraud: send 1 ETH, get 2 back, never happens',
        "Americans lose billions to crypto scams. The playbook: fake exchanges, guaranteed returns",
        "i like doing this for free but they won't talk to you unless you pay",
        "New monitor making a huge difference for work from home",
    ],
)
def test_warnings_and_look_alike_words_are_not_scams(text: str) -> None:
    assert checks(text) == set()
