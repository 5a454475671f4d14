"""Text and link normalisation shared by every layer: folding look-alike characters, the "skeleton" of a name
(what it looks like, so ``Co1nLink`` and ``CoinLink`` spelt with a Cyrillic Es compare equal to ``coinlink``), and
finding links and normalising their domains (IDNA/punycode, ``www.``, ports, shorteners)."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from urllib.parse import urlsplit

import idna

# Characters that render like Latin letters: Cyrillic, Greek, Armenian and a few symbols. Unicode's full
# confusables table is larger; these are the ones scammers use in practice in names and domains.
_CONFUSABLES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "һ": "h", "ӏ": "l", "ɡ": "g", "ո": "n", "ս": "u", "ց": "g", "օ": "o", "ք": "p",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "γ": "y", "μ": "u",
    # Latin extensions and symbols
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŀ": "l", "ƅ": "b", "ɑ": "a", "ɩ": "i", "ʀ": "r",
    "ꓲ": "l", "ǀ": "l", "│": "l", "∣": "l", "ß": "ss", "æ": "ae", "œ": "oe",
}  # fmt: skip
# Digits and symbols read as letters in names ("c0inl1nk", "$upport").
_LEET = {
    "0": "o",
    "1": "l",
    "3": "e",
    "4": "a",
    "5": "s",
    "7": "t",
    "8": "b",
    "@": "a",
    "$": "s",
    "!": "i",
    "|": "l",
}
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e"), None)
_CONFUSABLE_TABLE = str.maketrans(_CONFUSABLES)
_LEET_TABLE = str.maketrans(_LEET)


@lru_cache(maxsize=4096)
def fold(text: str) -> str:
    """Lower case, compatibility forms (full-width, mathematical bold letters) folded, accents and zero-width
    characters removed, look-alike letters mapped to Latin. Keeps digits and punctuation."""
    text = unicodedata.normalize("NFKD", text.translate(_ZERO_WIDTH)).casefold()
    if not text.isascii():
        # Combining marks are never ASCII: a decomposed text that is ASCII has none to drop (most messages).
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.translate(_CONFUSABLE_TABLE)


def fold_message(text: str) -> str:
    """``fold`` for whole messages: ASCII text (most of them) only needs lower case, and skipping the Unicode
    pass keeps the hot path fast."""
    if text.isascii():
        return text.lower()
    return fold(text)


@lru_cache(maxsize=4096)
def skeleton(name: str) -> str:
    """What a name looks like: folded, digits and symbols read as letters, separators dropped, and the pairs
    that render like one letter merged (``rn`` → ``m``, ``vv`` → ``w``, ``i``/``l`` → ``l``)."""
    text = fold(name).translate(_LEET_TABLE)
    text = re.sub(r"[^a-z0-9]", "", text)
    return text.replace("rn", "m").replace("vv", "w").replace("i", "l")


def within_one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one inserted, deleted or replaced character."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la > lb:
        a, b, la, lb = b, a, lb, la
    i = 0
    while i < la and a[i] == b[i]:
        i += 1
    if la == lb:
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]


# --- links ------------------------------------------------------------------------------------------------------

# Bare domains ("claim-eth.xyz/drop") are found only with a known top-level domain, so "e.g." or "v2.0" are not.
_TLDS = [
    "com",
    "net",
    "org",
    "io",
    "co",
    "xyz",
    "fun",
    "lol",
    "app",
    "finance",
    "site",
    "online",
    "top",
    "live",
    "info",
    "me",
    "gg",
    "cc",
    "to",
    "ly",
    "link",
    "click",
    "club",
    "vip",
    "pro",
    "shop",
    "store",
    "tech",
    "dev",
    "ai",
    "ws",
    "bz",
    "pw",
    "ru",
    "cn",
    "uk",
    "us",
    "de",
    "fr",
    "es",
    "it",
    "nl",
    "eu",
    "ca",
    "au",
    "in",
    "br",
    "tk",
    "ml",
    "ga",
    "cf",
    "gq",
    "cx",
    "sh",
    "claims",
    "claim",
    "gift",
    "money",
    "cash",
    "network",
    "digital",
    "world",
    "space",
    "website",
    "icu",
    "cyou",
    "sbs",
    "bond",
    "win",
    "bid",
    "events",
    "zone",
    "today",
    "tv",
    "biz",
    "one",
    "page",
    "host",
    "services",
    "support",
    "exchange",
    "wallet",
    "tokens",
    "dao",
    "xn--[a-z0-9-]+",
]
_URL_RE = re.compile(
    r"(?:https?://|hxxps?://)[^\s<>\"'\)\]]+"
    r"|(?<![\w@.-])(?:www\.)?(?:[a-z0-9\u00a1-\uffff](?:[a-z0-9\u00a1-\uffff-]{0,61}[a-z0-9\u00a1-\uffff])?\.)+"
    r"(?:" + "|".join(_TLDS) + r")(?![\w-])(?:/[^\s<>\"'\)\]]*)?",
    re.IGNORECASE,
)

URL_SHORTENERS = frozenset(
    [
        "bit.ly",
        "tinyurl.com",
        "t.ly",
        "goo.gl",
        "ow.ly",
        "is.gd",
        "buff.ly",
        "rebrand.ly",
        "cutt.ly",
        "shorturl.at",
        "rb.gy",
        "tiny.cc",
        "bl.ink",
        "s.id",
        "v.gd",
        "qr.ae",
        "lnkd.in",
        "t2m.io",
        "short.io",
        "y2u.be",
        "shorte.st",
        "adf.ly",
        "linktr.ee",
        "bitly.com",
    ]
)


_TLD_SET = frozenset(t for t in _TLDS if not t.startswith("xn--"))
_OPENING_PUNCTUATION = "([<{'\"“‘"


def _may_be_link(token: str) -> bool:
    if "://" in token:
        return True
    host = token.lstrip(_OPENING_PUNCTUATION).split("/", 1)[0].rstrip(".,;:!?)]}'\"”’")
    tld = host.rsplit(".", 1)[-1].lower() if "." in host else ""
    return tld in _TLD_SET or tld.startswith("xn--")


def find_links(text: str) -> list[str]:
    """Every link in ``text``: full URLs and bare domains with a known top-level domain. Whitespace-separated
    tokens are screened first, so the full pattern only runs on the few that may be links."""
    if "." not in text:
        return []
    links: list[str] = []
    for token in text.split():
        if "." in token and _may_be_link(token):
            links.extend(match.group(0).rstrip(".,;:!?") for match in _URL_RE.finditer(token))
    return links


@lru_cache(maxsize=8192)
def normalise_domain(value: str) -> str:
    """The registrable form of a link's host: lower case, no scheme, user, port, path or ``www.``, IDNA labels
    as punycode (``xn--...``). Returns "" when there is no host."""
    value = value.strip()
    if not value:
        return ""
    if "://" not in value:
        value = "http://" + value
    try:
        host = urlsplit(value.replace("hxxp", "http", 1)).hostname or ""
    except ValueError:
        return ""
    host = host.strip(".").lower()
    if host.startswith("www."):
        host = host[4:]
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            # Not valid IDNA (mixed scripts that IDNA 2008 refuses): keep a folded form so it still compares.
            host = "".join(ch if ch.isascii() else "?" for ch in fold(host))
    return host


@lru_cache(maxsize=8192)
def display_domain(domain: str) -> str:
    """The Unicode form of a punycode domain (what a person sees), for look-alike comparison."""
    if "xn--" not in domain:
        return domain
    try:
        return idna.decode(domain)
    except idna.IDNAError:
        return domain


def domain_and_parents(domain: str) -> list[str]:
    """``a.b.example.com`` → ``[a.b.example.com, b.example.com, example.com]`` (never the bare TLD)."""
    parts = domain.split(".")
    return [".".join(parts[i:]) for i in range(len(parts) - 1)]


def registrable_label(domain: str) -> str:
    """The name part people read: ``login.metamask.io`` → ``metamask``; ``a.co.uk`` style suffixes are rare
    enough in scams that the second-to-last label is good enough."""
    parts = display_domain(domain).split(".")
    return parts[-2] if len(parts) >= 2 else parts[0]
