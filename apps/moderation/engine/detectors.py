"""Layer 2: the crypto-scam detectors. Each is a pure function of the folded text (and the message's context)
that returns the hits it found; patterns are compiled once. Scores say how sure a detector is on its own: the
engine combines them with the rules and the classifier."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from apps.moderation.engine.text import (
    display_domain,
    domain_and_parents,
    registrable_label,
    skeleton,
    within_one_edit,
)
from apps.moderation.engine.types import CheckHit

LAYER = "scam"


def _rx(pattern: str) -> re.Pattern[str]:
    # Detectors read folded (lower-case) text, so no IGNORECASE; ASCII word boundaries are enough for English
    # patterns and make matching several times faster (as does leaving DOTALL out).
    return re.compile(pattern, re.ASCII)


def _has_any(text: str, triggers: re.Pattern[str]) -> bool:
    """A cheap first pass: a detector's regular expressions run only when one of its words is there."""
    return triggers.search(text) is not None


def _words(*words: str) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(word) for word in words))


_SEED_TRIGGERS = _words(
    "seed",
    "recovery",
    "secret",
    "backup",
    "mnemonic",
    "wallet",
    "passphrase",
    "word",
    "private",
    "keystore",
)
_SUPPORT_TRIGGERS = _words(
    "dm", "d.m", "pm", "inbox", "message", "msg", "text", "write", "reach", "contact", "chat", "talk", "ping",
    "hit up", "admin", "support", "ticket", "help", "kindly", "whatsapp", "telegram", "signal", "moderator",
)  # fmt: skip
_GIVEAWAY_TRIGGERS = _words(
    "send", "doubl", "airdrop", "allocation", "reward", "token", "nft", "mint", "giveaway", "bonus", "prize",
    "claim", "wallet", "eligible", "qualified", "first ",
)  # fmt: skip
_RECOVERY_TRIGGERS = _words("recover", "hacker", "lost", "stolen", "scammed", "hacked")
_EASY_MONEY_TRIGGERS = _words(
    "earn",
    "make",
    "making",
    "profit",
    "paid",
    "work",
    "job",
    "passive",
    "guaranteed",
    "%",
)


# A warning ("never share your seed phrase") is advice, not a request.
_NEGATION = _rx(r"\b(never|don'?t|do not|dont|no one|nobody|won'?t|will not|not)\b[^.!?\n]{0,40}$")

# --- seed phrases and private keys ----------------------------------------------------------------------------
_KEY_MATERIAL = r"(seed|recovery|secret|backup|mnemonic|wallet|passphrase|12[- ]word|24[- ]word|twelve[- ]word)\s*(phrase|words?|keys?)"
_KEY_MATERIAL_RE = _rx(rf"\b{_KEY_MATERIAL}\b|\bprivate\s*keys?\b|\bmnemonic\b|\bkeystore\b")
_ASK = _rx(
    r"\b(send|share|enter|provide|give|type|dm|input|verify|validate|import|submit|paste|drop|post|need|"
    r"require|upload|sync|synchroni[sz]e|rectify|connect|restore|fill|confirm|write|tell|reply with|link)\b"
)


def _sentence(text: str, start: int, end: int) -> tuple[str, str]:
    """The sentence around ``text[start:end]`` and the punctuation that ends it ("" at the end of the text)."""
    left = max(text.rfind(mark, 0, start) for mark in ".!?\n") + 1
    ends = [i for i in (text.find(mark, end) for mark in ".!?\n") if i != -1]
    right = min(ends) if ends else len(text)
    return text[left:right], text[right : right + 1]


# Advice about keeping a seed phrase safe, not a request for it.
_SAFE_KEEPING = _rx(
    r"\b(paper|offline|safe(ly)?|stor(e|ing)|back ?up|notebook|metal|steel|never|nobody|no one)\b"
)
# A sentence that warns about a scam ("do not trust recovery services", "the classic 'double your money'
# fraud") describes it; it is not one.
_WARNING = _rx(
    r"\b(scams?|scammers?|fraud|frauds|red flags?|beware|warning|playbook|phishing|avoid|report(ed)?|fake|"
    r"impersonat\w*|(do not|don'?t|dont|never) (trust|send|share|click|fall|believe|pay|connect|chase))\b"
)


def _warns(text: str, match: re.Match[str]) -> bool:
    sentence, _ = _sentence(text, match.start(), match.end())
    return _WARNING.search(sentence) is not None


_QUESTION_START = _rx(r"^\s*(how|where|who|what|which|when|why|can|could|is|are|does|do|should|anyone|any)\b")


def seed_phrase(text: str) -> list[CheckHit]:
    if not _has_any(text, _SEED_TRIGGERS):
        return []
    for match in _KEY_MATERIAL_RE.finditer(text):
        start = max(0, match.start() - 60)
        before, after = text[start : match.start()], text[match.end() : match.end() + 40]
        ask = _ASK.search(before) or _ASK.search(after)
        if not ask:
            continue
        sentence, _ = _sentence(text, match.start(), match.end())
        if _NEGATION.search(text[start : match.start()]) or _SAFE_KEEPING.search(sentence):
            continue
        return [
            CheckHit(
                layer=LAYER,
                check="seed_phrase",
                score=0.97,
                reason="asks for a seed phrase or private key",
                evidence={"phrase": match.group(0), "asks": ask.group(0)},
            )
        ]
    return []


# --- support scams --------------------------------------------------------------------------------------------
_CONTACT = r"(dm|d\.m|pm|inbox|message|msg|text|write|reach out|contact|chat with|talk to|ping|hit up|send a message)"
_SUPPORT_STRONG = _rx(
    rf"\b{_CONTACT}\b[^.!?\n]{{0,30}}\b(support|admin|help ?desk|customer (care|service)|live agent|"
    r"technical team|tech team|the team|moderator|mod|official)\b"
    r"|\b(admin|support|moderator|official team|help ?desk)s? (will|can|would) (help|assist|resolve|fix|sort)"
    r"|\b(open|submit|raise|create) a (support )?ticket\b[^.!?\n]{0,40}(via|at|on|here|link|http|\.\w)"
    r"|\bfor (help|assistance|support)[^.!?\n]{0,25}\b(dm|contact|message|whatsapp|telegram|t\.me|wa\.me)\b"
    r"|\bkindly\b[^.!?\n]{0,40}\b(dm|contact|message|reach|inbox)\b"
)
_SUPPORT_MONEY = _rx(
    rf"\b{_CONTACT}\b( me| us)?[^.!?\n]{{0,25}}\b(for|to)\b[^.!?\n]{{0,25}}\b(recover|recovery|profit|earn|"
    r"signals?|invest|trading|withdraw|unlock|refund|help with your|assist|fix your|free (money|crypto|btc)|"
    r"details|more info|gains|get (them|it) for free)"
    r"|\b(dm|inbox|pm) (me|us) (now|asap|for|to)\b[^.!?\n]{0,30}(profit|earn|money|crypto|btc|usdt|\$)"
    r"|\b(whatsapp|telegram|signal)\s*:?\s*(\+|wa\.me|t\.me|@)"
)
_DM_ME = _rx(r"\b(dm|inbox|pm) (me|us)\b|\bsend me a (dm|direct message)\b|\bcheck your (dm|inbox)")


def support_scam(text: str) -> list[CheckHit]:
    if not _has_any(text, _SUPPORT_TRIGGERS):
        return []
    match = _SUPPORT_STRONG.search(text)
    if match:
        sentence, end = _sentence(text, match.start(), match.end())
        if end != "?" and not _QUESTION_START.search(sentence):
            return [_support_hit(0.92, "sends people to a fake support contact", match.group(0))]
    match = _SUPPORT_MONEY.search(text)
    if match:
        return [
            _support_hit(0.88, "moves the conversation to private messages for money or help", match.group(0))
        ]
    match = _DM_ME.search(text)
    if match:
        return [_support_hit(0.35, "asks people to message privately", match.group(0))]
    return []


def _support_hit(score: float, reason: str, phrase: str) -> CheckHit:
    return CheckHit(
        layer=LAYER, check="support_scam", score=score, reason=reason, evidence={"phrase": phrase}
    )


# --- fake giveaways and airdrops ------------------------------------------------------------------------------
_COIN = r"(btc|eth|bnb|sol|usdt|usdc|trx|xrp|doge|ada|matic|ton|bitcoin|ether|ethereum|solana|coins?|tokens?)"
_GIVEAWAY = _rx(
    rf"\bsend\b[^.!?\n]{{0,20}}\b(\d+(\.\d+)?|any amount|some)\s*{_COIN}?[^.!?\n]{{0,40}}\b(get|receive|"
    r"return|back|double|2x|x2|twice)\b"
    rf"|\bdoubl(e|ing) your\b[^.!?\n]{{0,15}}({_COIN}|money|crypto|funds|investment)"
    r"|\b(claim|grab|collect|get|receive|redeem) (your|the|free|now)?\s*(free |exclusive |\$?\w+ )?"
    r"(airdrop|allocation|rewards?|tokens|nft|mint|giveaway|bonus|prize)\b[^.!?\n]{0,60}"
    r"(now|here|link|below|https?|www|\.\w{2,}|before|today|asap|fast|limited|while|👇|⬇)"
    r"|\b(airdrop|giveaway|rewards?|claim|allocation)\b[^.!?\n]{0,15}\b(is )?(now )?(live|open|active)\b"
    r"[^.!?\n]{0,40}(claim|link|https?|www|\.\w{2,}/|connect|👇)"
    r"|\b(connect|link|verify|sync) (your )?wallet\b[^.!?\n]{0,40}\b(claim|receive|eligible|airdrop|reward|bonus)"
    r"|\b(eligible|qualified) (wallets?|users|addresses)\b[^.!?\n]{0,60}(claim|receive|airdrop|reward)"
    r"|\bfirst \d+ (people|users|persons|wallets)\b[^.!?\n]{0,40}\b(send|get|receive|claim)"
    r"|\bgiveaway\b[^.!?\n]{0,60}\bsend\b"
)


def giveaway(text: str) -> list[CheckHit]:
    if not _has_any(text, _GIVEAWAY_TRIGGERS):
        return []
    match = _GIVEAWAY.search(text)
    if not match or _warns(text, match):
        return []
    return [
        CheckHit(
            layer=LAYER,
            check="fake_giveaway",
            score=0.93,
            reason="a fake giveaway or airdrop claim",
            evidence={"phrase": match.group(0)[:120]},
        )
    ]


# --- recovery scams -------------------------------------------------------------------------------------------
_RECOVERY = _rx(
    r"\brecover(y|ing)? (expert|service|agent|specialist|hacker|team|company|firm|support)s?\b"
    r"|\b(funds?|crypto|asset|bitcoin|wallet|scam) recovery\b"
    r"|\brecover (your |my )?(lost|stolen|scammed|hacked)\b"
    r"|\bhire (a |an )?(hacker|ethical hacker)\b"
    r"|\b(lost|stolen|scammed|hacked)\b[^.!?\n]{0,60}\b(dm|contact|reach out|message|write to|inbox)\b"
    r"[^.!?\n]{0,40}\b(recover|recovery|get (it|them|your \w+) back|help)"
    r"|\b(got|been|were|was) scammed\b[^.!?\n]{0,60}\b(dm|contact|message|reach)\b"
)


def recovery_scam(text: str) -> list[CheckHit]:
    if not _has_any(text, _RECOVERY_TRIGGERS):
        return []
    match = _RECOVERY.search(text)
    if not match or _warns(text, match):
        return []
    return [
        CheckHit(
            layer=LAYER,
            check="recovery_scam",
            score=0.92,
            reason="offers to recover lost or stolen funds",
            evidence={"phrase": match.group(0)[:120]},
        )
    ]


# --- SMS-style prize and premium-rate spam --------------------------------------------------------------------
# (name, words that must be there for the pattern to be tried, pattern)
_SMS_FEATURES: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = (
    ("premium_number", _words("08", "09"), _rx(r"\b0(8|9)\d{8,9}\b")),
    (
        "short_code",
        _words("txt", "text", "send", "reply", "sms"),
        _rx(
            r"\b(txt|text|send|reply|sms)\b[^.!?\n]{0,30}\bto\s+\d{5}\b|\b\d{5}\b[^.!?\n]{0,15}\b(txt|text|sms|reply)\b"
        ),
    ),
    (
        "prize",
        _words("won", "win", "award", "select", "guarantee", "prize", "reward"),
        _rx(r"\b(won(?!')|win|winner|winning|awarded|selected|guaranteed|prize|cash prize|reward)\b"),
    ),
    (
        "money",
        _words("£", "€", "$", "pound", "gbp", "usd", "cash", "prize"),
        _rx(r"[£€$]\s?\d|\b\d+\s?(pounds|gbp|usd)\b|\b\d{3,}\s?(cash|prize)"),
    ),
    ("claim", _words("claim", "collect", "redeem"), _rx(r"\b(claim|collect|redeem)\b")),
    (
        "urgent",
        _words("urgent", "final", "act now", "expire", "limited time", "last chance"),
        _rx(r"\b(urgent|final (attempt|notice|chance)|act now|expires?|limited time|last chance)\b"),
    ),
    (
        "free",
        _words(
            "free",
        ),
        _rx(r"\bfree\b"),
    ),
    (
        "opt_out",
        _words("stop", "end", "unsubscribe", "opt"),
        _rx(
            r"\b(stop|end|unsubscribe|opt ?out)\b[^.!?\n]{0,15}\b(to|txt|text|reply|sms|\d{5})\b|\breply stop\b"
        ),
    ),
    (
        "charges",
        _words("0p", "5p", "/min", "per min", "ppm", "t&c", "t & c", "16+", "18+", "std", "cost"),
        _rx(r"\b\d+p\b|/min\b|\bper min|\bppm\b|\bt&c|\bt ?& ?cs?\b|\b1[68]\+|\bstd (txt )?rate|\bcost \d"),
    ),
    (
        "call_now",
        _words(
            "call",
        ),
        _rx(r"\bcall\b[^.!?\n]{0,20}(\b0\d{9,10}\b|\bnow\b|\bfree\b)"),
    ),
    (
        "mobile",
        _words("mobile", "phone", "number"),
        _rx(
            r"\b(your|ur) (mobile|phone|number)\b[^.!?\n]{0,40}\b(won|selected|chosen|awarded|entitled|update)"
        ),
    ),
)


def sms_prize(text: str) -> list[CheckHit]:
    found = [
        name for name, triggers, pattern in _SMS_FEATURES if _has_any(text, triggers) and pattern.search(text)
    ]
    strong = {"premium_number", "short_code", "charges", "opt_out", "mobile"} & set(found)
    if len(found) < 2 or (len(found) < 3 and not strong):
        return []
    score = min(0.97, 0.45 + 0.14 * len(found) + (0.1 if strong else 0.0))
    return [
        CheckHit(
            layer=LAYER,
            check="prize_spam",
            score=round(score, 3),
            reason="prize, premium-rate or subscription spam",
            evidence={"signals": found},
        )
    ]


# --- easy money and task scams --------------------------------------------------------------------------------
_EASY_MONEY = _rx(
    r"\b(earn|make|making|profit|get paid)\b[^.!?\n]{0,25}(\$|£|€|usd|usdt)?\s?\d[\d,.]*k?\s?(\$|£|€|usd|usdt)?"
    r"[^.!?\n]{0,25}\b(daily|per day|a day|each day|weekly|per week|a week|per hour|from home|in \d+ (hours|days))"
    r"|\b(work|job) from home\b[^.!?\n]{0,40}(\$|£|€|\bearn|\bincome|\bpaid|\bper (day|week|hour)|\bdm\b|whatsapp|telegram)|\bpassive income\b[^.!?\n]{0,40}\b(dm|join|link|contact|whatsapp|telegram)"
    r"|\bguaranteed (profit|returns?|income)\b|\b\d{2,4}% (daily|weekly|guaranteed|roi)\b"
)


def easy_money(text: str) -> list[CheckHit]:
    if not _has_any(text, _EASY_MONEY_TRIGGERS):
        return []
    match = _EASY_MONEY.search(text)
    if not match or _warns(text, match):
        return []
    return [
        CheckHit(
            layer=LAYER,
            check="easy_money",
            score=0.8,
            reason="promises easy or guaranteed income",
            evidence={"phrase": match.group(0)[:120]},
        )
    ]


# --- wallet addresses -----------------------------------------------------------------------------------------
_WALLETS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("evm", re.compile(r"\b0x[a-fA-F0-9]{40}\b")),
    ("btc", re.compile(r"\b(bc1[a-z0-9]{25,59}|[13][a-km-zA-HJ-NP-Z1-9]{25,34})\b")),
    ("tron", re.compile(r"\bT[1-9A-HJ-NP-Za-km-z]{33}\b")),
    ("sol", re.compile(r"(?<![/\w])[1-9A-HJ-NP-Za-km-z]{32,44}(?![/\w])")),
)


def wallet_addresses(raw_text: str) -> list[tuple[str, str]]:
    """(chain, address) for every address-shaped string; Solana's plain base58 needs a digit and both cases,
    so that long words are not taken for addresses."""
    found: list[tuple[str, str]] = []
    if not any(len(token) >= 25 for token in raw_text.split()):
        return found
    seen: set[str] = set()
    for chain, pattern in _WALLETS:
        for match in pattern.finditer(raw_text):
            value = match.group(0)
            if value in seen:
                continue
            if chain == "sol" and not (
                any(c.isdigit() for c in value)
                and any(c.isupper() for c in value)
                and any(c.islower() for c in value)
            ):
                continue
            seen.add(value)
            found.append((chain, value))
    return found


# --- impersonation --------------------------------------------------------------------------------------------
_STAFF_WORDS = ("admin", "support", "moderator", "official", "helpdesk", "customercare", "team", "mod")


@dataclass(frozen=True)
class ProtectedNames:
    """The names nobody but their owners may look like: the creator, the bot, the admins. Kept as skeletons
    (see ``text.skeleton``) with the original spelling for the evidence."""

    skeletons: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, names: Iterable[str]) -> ProtectedNames:
        out: dict[str, str] = {}
        for name in names:
            name = (name or "").strip().lstrip("@")
            key = skeleton(name)
            if len(key) >= 3:
                out.setdefault(key, name)
        return cls(out)


def impersonation(*, username: str, display_name: str, protected: ProtectedNames) -> list[CheckHit]:
    if not protected.skeletons:
        return []
    for shown in (display_name, username):
        if not shown:
            continue
        key = skeleton(shown)
        if len(key) < 3:
            continue
        stripped = key
        for word in _STAFF_WORDS:
            stripped = stripped.replace(skeleton(word), "")
        for candidate in {key, stripped}:
            if not candidate:
                continue
            for protected_key, original in protected.skeletons.items():
                exact = candidate == protected_key
                close = len(protected_key) >= 5 and within_one_edit(candidate, protected_key)
                if exact or close:
                    return [
                        CheckHit(
                            layer=LAYER,
                            check="impersonation",
                            score=0.95 if exact else 0.9,
                            reason=f"name looks like {original!r}",
                            evidence={"name": shown, "looks_like": original},
                        )
                    ]
    return []


# --- domains --------------------------------------------------------------------------------------------------
# Brands whose look-alike domains drain wallets; an operator's allow list adds their own.
KNOWN_BRAND_DOMAINS = frozenset(
    [
        "metamask.io",
        "binance.com",
        "coinbase.com",
        "uniswap.org",
        "opensea.io",
        "phantom.app",
        "ledger.com",
        "trezor.io",
        "etherscan.io",
        "pancakeswap.finance",
        "trustwallet.com",
        "kraken.com",
        "blockchain.com",
        "arbitrum.io",
        "optimism.io",
        "walletconnect.com",
        "lido.fi",
        "aave.com",
        "curve.fi",
        "1inch.io",
        "bybit.com",
        "okx.com",
        "kucoin.com",
        "solana.com",
        "ethereum.org",
        "base.org",
        "layerzero.network",
        "zksync.io",
        "starknet.io",
        "magiceden.io",
        "blur.io",
        "jup.ag",
        "raydium.io",
        "debank.com",
        "revoke.cash",
        "rabby.io",
        "exodus.com",
        "coinlink.io",
    ]
)
_SCAM_DOMAIN_WORDS = _rx(
    r"(claim|airdrop|reward|bonus|giveaway|drop|verify|validat|restore|recover|sync|rectif|unlock|support|"
    r"connect|wallet-?fix|dapp|migrat|secure|refund)"
)


def domain_checks(
    domains: Iterable[str],
    *,
    blocked: frozenset[str],
    protected_domains: frozenset[str],
) -> list[CheckHit]:
    hits: list[CheckHit] = []
    protected_labels = {skeleton(registrable_label(d)): d for d in protected_domains}
    for domain in domains:
        parents = domain_and_parents(domain)
        listed = next((p for p in parents if p in blocked), None)
        if listed:
            hits.append(
                CheckHit(
                    layer=LAYER,
                    check="drainer_domain",
                    score=0.98,
                    reason="links to a known drainer or phishing site",
                    evidence={"domain": domain, "listed": listed},
                )
            )
            continue
        if any(p in protected_domains for p in parents):
            continue
        label = registrable_label(domain)
        label_key = skeleton(label)
        for brand_key, brand in protected_labels.items():
            if label_key == brand_key or (len(brand_key) >= 5 and within_one_edit(label_key, brand_key)):
                hits.append(
                    CheckHit(
                        layer=LAYER,
                        check="lookalike_domain",
                        score=0.95,
                        reason=f"a look-alike of {brand}",
                        evidence={"domain": domain, "shown_as": display_domain(domain), "looks_like": brand},
                    )
                )
                break
            if (
                len(brand_key) >= 5
                and brand_key in label_key
                and _SCAM_DOMAIN_WORDS.search(display_domain(domain))
            ):
                hits.append(
                    CheckHit(
                        layer=LAYER,
                        check="lookalike_domain",
                        score=0.9,
                        reason=f"uses the name of {brand} in a claim or support domain",
                        evidence={"domain": domain, "looks_like": brand},
                    )
                )
                break
    return hits


TEXT_DETECTORS: tuple[Callable[[str], list[CheckHit]], ...] = (
    seed_phrase,
    support_scam,
    giveaway,
    recovery_scam,
    sms_prize,
    easy_money,
)
