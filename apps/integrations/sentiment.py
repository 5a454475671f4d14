"""Sentiment of short market texts: VADER, taught how crypto people talk.

VADER scores social-media English well but has never heard of a rug pull; the crypto lexicon below adds the
slang with valences on VADER's own scale (-4 to +4, where "good" is 1.9 and "horrible" -2.5).
"""

from __future__ import annotations

import functools
from typing import Literal

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

# VADER's customary cut-offs for its compound score.
BULLISH_AT = 0.05
BEARISH_AT = -0.05

CRYPTO_LEXICON: dict[str, float] = {
    # direction
    "bullish": 2.5,
    "bearish": -2.5,
    "bull": 1.5,
    "bulls": 1.3,
    "bear": -1.5,
    "bears": -1.3,
    "uptrend": 1.6,
    "downtrend": -1.6,
    "breakout": 2.0,
    "breakdown": -2.0,
    "rally": 2.0,
    "rallied": 2.0,
    "rallying": 2.0,
    "surge": 1.8,
    "surges": 1.8,
    "soar": 2.2,
    "soars": 2.2,
    "bounce": 1.0,
    "recovery": 1.5,
    "accumulating": 1.2,
    "accumulation": 1.2,
    "inflows": 1.2,
    "outflows": -1.2,
    "plunge": -2.3,
    "plunges": -2.3,
    "slump": -2.0,
    "slumps": -2.0,
    "slides": -1.2,
    "bleeding": -2.0,
    "tank": -1.8,
    "tanking": -2.2,
    "crash": -2.6,
    "crashed": -2.6,
    "crashing": -2.6,
    "selloff": -2.0,
    "sell-off": -2.0,
    "bloodbath": -3.0,
    "capitulation": -2.5,
    "liquidated": -2.2,
    "liquidations": -1.6,
    "ath": 2.3,
    # slang
    "moon": 2.0,
    "mooning": 2.8,
    "moonshot": 2.0,
    "rocket": 1.5,  # also what VADER reads for the 🚀 emoji
    "lambo": 2.0,
    "pump": 1.2,
    "pumping": 1.5,
    "pumped": 1.4,
    "dump": -1.8,
    "dumping": -2.0,
    "dumped": -1.8,
    "hodl": 1.5,
    "hodling": 1.5,
    "btfd": 1.5,
    "dip": -0.8,
    "wagmi": 2.5,
    "ngmi": -2.5,
    "fomo": 0.8,
    "fud": -1.5,
    "rekt": -2.8,
    "rug": -2.6,
    "rugged": -2.9,
    "rugpull": -3.0,
    "scam": -3.0,
    "scammers": -3.0,
    "ponzi": -3.0,
    "honeypot": -2.5,
    "exploit": -2.5,
    "exploited": -2.8,
    "hack": -2.5,
    "hacked": -2.8,
    "drained": -2.5,
    "bagholder": -2.0,
    "bagholders": -2.0,
    "shill": -1.0,
    "shilling": -1.0,
    "delisted": -2.5,
    "delisting": -2.0,
    "depeg": -2.5,
    "overbought": -0.6,
    "oversold": 0.6,
}

Label = Literal["bullish", "neutral", "bearish"]


@functools.cache
def analyzer() -> SentimentIntensityAnalyzer:
    """The one analyzer of the process (loading VADER's lexicon takes a while); built on first use."""
    instance = SentimentIntensityAnalyzer()
    instance.lexicon.update(CRYPTO_LEXICON)
    return instance


def score_text(text: str) -> float:
    """VADER's compound score, in [-1, 1]."""
    if not text.strip():
        return 0.0
    return float(analyzer().polarity_scores(text)["compound"])


def label_for(score: float) -> Label:
    if score >= BULLISH_AT:
        return "bullish"
    if score <= BEARISH_AT:
        return "bearish"
    return "neutral"
