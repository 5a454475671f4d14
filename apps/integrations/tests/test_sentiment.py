"""Sentiment: VADER with the crypto lexicon scores crypto talk the way a trader reads it."""

from __future__ import annotations

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from apps.integrations.sentiment import CRYPTO_LEXICON, analyzer, label_for, score_text


def test_crypto_slang_moves_scores_the_right_way() -> None:
    assert score_text("BTC is mooning, so bullish") > 0.5
    assert score_text("got rekt, total rug pull scam") < -0.5
    # Plain VADER has never heard of most of it.
    plain = SentimentIntensityAnalyzer()
    assert plain.polarity_scores("BTC is mooning, so bullish")["compound"] == 0.0
    assert score_text("hodl, wagmi") > 0.5 > plain.polarity_scores("hodl, wagmi")["compound"]


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("$SOL breakout above 150, new ATH incoming", "bullish"),
        ("Bought the dip, btfd, wagmi", "bullish"),
        ("Whales dumping, capitulation everywhere, ngmi", "bearish"),
        ("Exchange hacked, funds drained, another rugpull", "bearish"),
        ("Too much FUD, bears getting liquidated", "bearish"),
        ("ETH is trading at 3,000 today", "neutral"),
        ("", "neutral"),
    ],
)
def test_labels_follow_the_score(text: str, label: str) -> None:
    assert label_for(score_text(text)) == label


def test_vader_rules_still_apply_to_the_new_words() -> None:
    assert score_text("not bullish at all") < 0 < score_text("bullish")
    assert score_text("VERY BULLISH!!!") > score_text("bullish")


def test_label_thresholds() -> None:
    assert label_for(0.05) == "bullish"
    assert label_for(0.0499) == "neutral"
    assert label_for(-0.0499) == "neutral"
    assert label_for(-0.05) == "bearish"


def test_one_shared_analyzer_carries_the_crypto_lexicon() -> None:
    assert analyzer() is analyzer()
    assert all(analyzer().lexicon[word] == valence for word, valence in CRYPTO_LEXICON.items())
    assert all(-4 <= valence <= 4 for valence in CRYPTO_LEXICON.values())
    assert all(-1 <= score_text(t) <= 1 for t in ("moon moon moon moon moon", "scam rug rekt " * 20))
