"""Writers turn a ``WritingBrief`` into post text: ``AnthropicWriter`` asks Claude, ``TemplateWriter`` (the
offline twin, and the fallback whenever the LLM is unavailable or its text fails the content checks) fills
templates. ``get_writer()`` picks one by ``settings.LLM_BACKEND``.

Numbers. Every number a writer may print comes from the brief's evidence, formatted by ``format_number``.
``allowed_number_tokens(evidence, symbol=...)`` re-derives every string that formatting can produce for the
evidence, and ``unexpected_numbers(text, evidence, symbol=...)`` lists the numbers in a text that are not among
them, so the content checks can hold any writer, the LLM included, to the evidence. Numbers are compared as
``number_tokens`` finds them (``64,123.45``, ``+3.42%``, ``1.23M``), sign-insensitively.

Evidence keys the template writer uses, per insight type. Every key is optional: a phrasing that needs a key the
evidence lacks is skipped, and with no numbers at all the post still reads (it just says less). The kind after
each key is how it is formatted (see ``EVIDENCE_KINDS``):

- ``price_move``: ``close`` (price), ``change_pct`` (percent, signed), ``window_hours`` (plain), ``high``,
  ``low`` (price)
- ``rsi_overbought``, ``rsi_oversold``: ``rsi`` (indicator), ``period`` (count), ``close`` (price),
  ``threshold`` (indicator, the line that was crossed, e.g. 70)
- ``macd_bullish_cross``, ``macd_bearish_cross``: ``macd``, ``signal``, ``histogram`` (value), ``close`` (price)
- ``bollinger_breakout_up``, ``bollinger_breakout_down``: ``close``, ``upper``, ``lower``, ``middle`` (price),
  ``period`` (count), ``stddev`` (plain)
- ``volume_spike``: ``volume``, ``mean_volume`` (volume), ``zscore`` (indicator), ``ratio`` (multiple),
  ``close`` (price)
- ``sentiment_shift``: ``score``, ``previous_score``, ``delta`` (score, signed), ``sample_size`` (count),
  ``source`` (text, e.g. "X" or "news")
- format ``digest``: ``items``, a list of ``{"insight_type", "symbol", "evidence"}`` (each evidence as above)

Tone (the A/B variant's payload) keys the template writer honours, unknown keys ignored: ``opening``
(``"question"`` starts the post with a question; ``"statement"``, the default, with the finding), ``length``
(``"short"`` leaves out the detail sentence, ``"long"`` keeps every detail), ``emoji`` (true: one leading
direction emoji), ``cta`` (``"follow"``, ``"join"`` or ``"discuss"``: a closing line), ``hashtags`` (default
on for X and Telegram).

Length. ``brief.max_chars`` bounds the text as the platform counts it (``text_length``: X weighs most emoji and
CJK as 2 and a URL as 23). For the ``x_thread`` format it bounds each part; parts are separated by
``THREAD_SEPARATOR`` and ``split_thread`` takes them apart again.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.core.resilience import (
    PermanentError,
    RateLimited,
    RetryPolicy,
    TransientError,
    guarded_call,
    retry_after_from_headers,
)
from apps.integrations.types import Writer, WritingBrief

SERVICE = "llm"
THREAD_SEPARATOR = "\n\n"
DISCLAIMER = "Not financial advice."

# --- numbers ------------------------------------------------------------------------------------------------

_USD_QUOTES = {"USD", "USDT", "USDC", "BUSD", "DAI", "FDUSD", "TUSD"}


def _fixed(value: float) -> str:
    """Two decimals with thousands separators from 1 up; below 1, enough decimals for 4 significant digits.
    Never scientific notation, whose exponent would read as a number of its own."""
    magnitude = abs(value)
    if magnitude >= 1 or magnitude == 0:
        return f"{value:,.2f}"
    decimals = min(12, 3 - math.floor(math.log10(magnitude)))
    text = f"{value:.{decimals}f}".rstrip("0")
    return text if float(text) != 0 else f"{value:.2f}"


def _plain(value: float) -> str:
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return "0" if text in {"-0", ""} else text


def _compact(value: float) -> str:
    magnitude = abs(value)
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if magnitude >= threshold:
            return f"{value / threshold:,.2f}{suffix}"
    return _fixed(value)


NUMBER_FORMATS: dict[str, Callable[[float], str]] = {
    "price": _fixed,
    "value": _fixed,
    "percent": lambda v: f"{v:+.2f}%",
    "percent_abs": lambda v: f"{abs(v):.2f}%",
    "indicator": lambda v: f"{v:.2f}",
    "count": lambda v: f"{round(v):,}",
    "volume": _compact,
    "multiple": lambda v: f"{v:.1f}x",
    "plain": _plain,
    "score": lambda v: f"{v:+.2f}",
}

# How each evidence key is formatted; a key may be shown in more than one way.
EVIDENCE_KINDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("close", "open", "high", "low", "upper", "lower", "middle", "price", "previous_close", "last"),
        ("price",),
    ),
    **dict.fromkeys(("change_pct", "change_24h_pct", "pct"), ("percent", "percent_abs")),
    **dict.fromkeys(("window_hours", "hours", "stddev", "threshold"), ("plain",)),
    **dict.fromkeys(("rsi", "zscore"), ("indicator",)),
    **dict.fromkeys(("period", "sample_size", "count"), ("count",)),
    **dict.fromkeys(("macd", "signal", "histogram"), ("value",)),
    **dict.fromkeys(("volume", "mean_volume", "quote_volume"), ("volume",)),
    "ratio": ("multiple",),
    **dict.fromkeys(("score", "previous_score", "delta"), ("score",)),
}
# A key no one told us about may still be quoted by the LLM in any common shape.
DEFAULT_KINDS: tuple[str, ...] = ("value", "plain", "count", "percent", "indicator", "volume")

NUMBER_TOKEN = re.compile(r"[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:%|[KMB](?![A-Za-z]))?")


def format_number(value: float, kind: str) -> str:
    """The one way a number from the evidence is written in a post."""
    return NUMBER_FORMATS[kind](float(value))


def number_tokens(text: str) -> list[str]:
    return NUMBER_TOKEN.findall(text)


def _unsigned(token: str) -> str:
    return token.lstrip("+-")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _walk(evidence: object, key: str = "") -> Iterable[tuple[str, object]]:
    if isinstance(evidence, Mapping):
        for k, v in evidence.items():
            yield from _walk(v, str(k))
    elif isinstance(evidence, list | tuple):
        for item in evidence:
            yield from _walk(item, key)
    else:
        yield key, evidence


def allowed_number_tokens(evidence: Mapping[str, Any], *, symbol: str = "") -> set[str]:
    """Every number token that formatting the evidence (and naming the symbol) can produce, unsigned."""
    allowed = {_unsigned(t) for t in number_tokens(symbol)}
    for key, value in _walk(evidence):
        if isinstance(value, str):
            allowed.update(_unsigned(t) for t in number_tokens(value))
        elif _is_number(value):
            for kind in EVIDENCE_KINDS.get(key, DEFAULT_KINDS):
                allowed.update(_unsigned(t) for t in number_tokens(format_number(value, kind)))  # type: ignore[arg-type]
    return allowed


def unexpected_numbers(text: str, evidence: Mapping[str, Any], *, symbol: str = "") -> list[str]:
    """The numbers in ``text`` that the evidence does not back, in order of appearance."""
    allowed = allowed_number_tokens(evidence, symbol=symbol)
    return [token for token in number_tokens(text) if _unsigned(token) not in allowed]


# --- length -------------------------------------------------------------------------------------------------

_URL = re.compile(r"https?://\S+")
# X counts these code points as 1 and every other (emoji, CJK, ...) as 2; a URL is always 23.
_X_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))


def _x_weight(char: str) -> int:
    code = ord(char)
    return 1 if any(lo <= code <= hi for lo, hi in _X_LIGHT_RANGES) else 2


def text_length(text: str, platform: str) -> int:
    """Length as the platform counts it against its limit."""
    if platform != "x":
        return len(text)
    urls = _URL.findall(text)
    rest = _URL.sub("", text)
    return 23 * len(urls) + sum(_x_weight(c) for c in rest)


def split_thread(text: str) -> list[str]:
    return [part.strip() for part in text.split(THREAD_SEPARATOR) if part.strip()]


# --- the template writer ------------------------------------------------------------------------------------

_FORMATTER = string.Formatter()


def _fields(template: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in _FORMATTER.parse(template) if name)


# Fields that carry a number; the writer prefers phrasings that use more of them.
_NUMERIC_FIELDS = frozenset(
    {
        "close",
        "change_pct",
        "change_abs",
        "window",
        "high",
        "low",
        "rsi",
        "period",
        "threshold",
        "macd",
        "signal",
        "histogram",
        "upper",
        "lower",
        "middle",
        "stddev",
        "volume",
        "mean_volume",
        "zscore",
        "ratio",
        "score",
        "previous_score",
        "delta",
        "sample_size",
    }
)

_UP = {"rsi_overbought", "macd_bullish_cross", "bollinger_breakout_up", "volume_spike"}
_DOWN = {"rsi_oversold", "macd_bearish_cross", "bollinger_breakout_down"}

# type -> (main sentences, detail sentences, opening questions)
_PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "price_move": (
        (
            "{asset} is {direction} {change_abs} over {window}, trading at {close}.",
            "{asset} moved {change_pct} in {window} and now sits at {close}.",
            "A {size} move on {asset}: {change_pct} over {window}, last at {close}.",
            "{asset} printed {close}, a {change_abs} move {direction} across {window}.",
            "{asset} is {direction} {change_abs} over {window}.",
            "{asset} moved {change_pct} and trades at {close}.",
            "{asset} is {direction} {change_abs}.",
            "{asset} trades at {close} after a {size} move.",
            "{asset} is on the move.",
            "Price action on {asset} just picked up.",
        ),
        (
            "The range so far runs from {low} to {high}.",
            "High of the window: {high}. Low: {low}.",
            "Moves this size usually bring volatility with them: sizing matters more than direction.",
            "One candle is not a trend, so watch where it settles.",
        ),
        (
            "Did you catch the {asset} move?",
            "What is driving {asset} right now?",
            "Is {asset} finally waking up?",
        ),
    ),
    "rsi_overbought": (
        (
            "{asset} RSI({period}) has climbed to {rsi}, above the {threshold} line, with price at {close}.",
            "RSI({period}) on {asset} reads {rsi}: overbought territory, price {close}.",
            "{asset} looks stretched: RSI {rsi} with price at {close}.",
            "Momentum on {asset} is running hot, RSI at {rsi} against a {threshold} threshold.",
            "{asset} RSI is at {rsi}, in overbought territory.",
            "{asset} trades at {close} with RSI in overbought territory.",
            "{asset} momentum has pushed into overbought territory.",
            "{asset} is running hot on momentum.",
        ),
        (
            "Overbought can stay overbought; it flags a stretched move, not a top.",
            "Stretched readings often cool off through time as much as through price.",
            "Worth watching whether momentum fades or price keeps grinding.",
        ),
        (
            "Is {asset} getting ahead of itself?",
            "How long can {asset} stay this hot?",
            "Overheated, or just strong?",
        ),
    ),
    "rsi_oversold": (
        (
            "{asset} RSI({period}) has dropped to {rsi}, below the {threshold} line, with price at {close}.",
            "RSI({period}) on {asset} reads {rsi}: oversold territory, price {close}.",
            "{asset} looks washed out: RSI {rsi} with price at {close}.",
            "Selling on {asset} has pushed RSI down to {rsi} against a {threshold} threshold.",
            "{asset} RSI is at {rsi}, in oversold territory.",
            "{asset} trades at {close} with RSI in oversold territory.",
            "{asset} momentum has slipped into oversold territory.",
            "{asset} sellers have been in control.",
        ),
        (
            "Oversold can stay oversold; it flags exhaustion risk, not a bottom.",
            "Bounces from readings like this are common and often short-lived.",
            "Worth watching whether sellers ease off from here.",
        ),
        (
            "Is {asset} running out of sellers?",
            "Capitulation on {asset}, or more to come?",
            "How much further can {asset} sell off?",
        ),
    ),
    "macd_bullish_cross": (
        (
            "{asset} MACD just crossed above its signal line ({macd} vs {signal}), price {close}.",
            "Bullish MACD cross on {asset}: MACD {macd}, signal {signal}, histogram {histogram}.",
            "{asset} momentum turned up: the MACD histogram flipped to {histogram} with price at {close}.",
            "{asset} MACD crossed above signal ({macd} vs {signal}).",
            "{asset} printed a bullish MACD cross at {close}.",
            "{asset} just printed a bullish MACD cross.",
            "Momentum on {asset} is turning up on the MACD.",
        ),
        (
            "Crosses are lagging by design: they confirm a turn more than they predict one.",
            "A cross near the zero line tends to matter more than one far from it.",
            "Confirmation comes from follow-through, not the cross itself.",
        ),
        (
            "Is {asset} momentum turning?",
            "Bulls back in charge of {asset}?",
            "Did you see the {asset} MACD?",
        ),
    ),
    "macd_bearish_cross": (
        (
            "{asset} MACD just crossed below its signal line ({macd} vs {signal}), price {close}.",
            "Bearish MACD cross on {asset}: MACD {macd}, signal {signal}, histogram {histogram}.",
            "{asset} momentum turned down: the MACD histogram flipped to {histogram} with price at {close}.",
            "{asset} MACD crossed below signal ({macd} vs {signal}).",
            "{asset} printed a bearish MACD cross at {close}.",
            "{asset} just printed a bearish MACD cross.",
            "Momentum on {asset} is rolling over on the MACD.",
        ),
        (
            "Crosses are lagging by design: they confirm a turn more than they predict one.",
            "A cross near the zero line tends to matter more than one far from it.",
            "Confirmation comes from follow-through, not the cross itself.",
        ),
        (
            "Is {asset} losing steam?",
            "Are the bears taking over {asset}?",
            "Did you see the {asset} MACD?",
        ),
    ),
    "bollinger_breakout_up": (
        (
            "{asset} closed at {close}, above its upper Bollinger Band at {upper} ({period}-period, {stddev} std dev).",
            "{asset} broke out above the upper band: {close} vs {upper}, midline {middle}.",
            "Volatility expansion on {asset}: price {close} pushed through the upper band at {upper}.",
            "{asset} is trading above its upper Bollinger Band at {upper}.",
            "{asset} pushed through the upper Bollinger Band at {close}.",
            "{asset} broke out above its upper Bollinger Band.",
            "Volatility is expanding to the upside on {asset}.",
        ),
        (
            "Band breaks often mean volatility is back rather than a new trend.",
            "A close back inside the bands would make this a false start.",
            "The midline at {middle} is the level that keeps the move honest.",
        ),
        (
            "Is {asset} breaking out?",
            "Volatility is back on {asset}: real breakout or fakeout?",
            "Did you see {asset} leave its bands?",
        ),
    ),
    "bollinger_breakout_down": (
        (
            "{asset} closed at {close}, below its lower Bollinger Band at {lower} ({period}-period, {stddev} std dev).",
            "{asset} broke down below the lower band: {close} vs {lower}, midline {middle}.",
            "Volatility expansion on {asset}: price {close} dropped through the lower band at {lower}.",
            "{asset} is trading below its lower Bollinger Band at {lower}.",
            "{asset} dropped through the lower Bollinger Band at {close}.",
            "{asset} broke down below its lower Bollinger Band.",
            "Volatility is expanding to the downside on {asset}.",
        ),
        (
            "Band breaks often mean volatility is back rather than a new trend.",
            "A close back inside the bands would make this a false start.",
            "The midline at {middle} is the level that keeps the move honest.",
        ),
        (
            "Is {asset} breaking down?",
            "Volatility is back on {asset}: real breakdown or shakeout?",
            "Did you see {asset} drop out of its bands?",
        ),
    ),
    "volume_spike": (
        (
            "{asset} volume hit {volume}, against a recent average of {mean_volume} ({zscore} standard deviations).",
            "Unusual activity on {asset}: {volume} traded, {ratio} the usual {mean_volume}.",
            "{asset} is seeing heavy volume: {volume} vs an average of {mean_volume}, price {close}.",
            "{asset} volume spiked to {volume}, {zscore} standard deviations above normal.",
            "{asset} traded {volume}, well above its average of {mean_volume}.",
            "{asset} traded {ratio} its usual volume.",
            "{asset} volume just spiked well above normal.",
            "Something is moving {asset}: volume is way above normal.",
        ),
        (
            "Volume confirms interest, not direction.",
            "Spikes like this often come before bigger moves, in either direction.",
            "Worth checking whether price follows the volume.",
        ),
        (
            "Who is trading all this {asset}?",
            "Why is {asset} volume exploding?",
            "What does {asset} volume know that price does not?",
        ),
    ),
    "sentiment_shift": (
        (
            "Sentiment on {asset} {mood} from {previous_score} to {score} ({delta}) across {sample_size} posts{from_source}.",
            "{asset} mood check: sentiment score {score}, {delta} from {previous_score}, {sample_size} posts{from_source}.",
            "The crowd on {asset} {mood}: sentiment moved {delta} to {score}{from_source}.",
            "{asset} sentiment {mood} to {score} from {previous_score}.",
            "{asset} sentiment {mood}, now at {score}.",
            "Sentiment on {asset} just {mood}{from_source}.",
            "The conversation around {asset} just changed tone.",
        ),
        (
            "Sentiment is a mood reading, not a signal on its own.",
            "Crowd mood tends to follow price as often as it leads it.",
        ),
        (
            "Has the mood on {asset} changed?",
            "Is the crowd turning on {asset}?",
            "Feeling the shift on {asset}?",
        ),
    ),
}
# One short line per insight in a digest, richest first.
_DIGEST_LINES: dict[str, tuple[str, ...]] = {
    "price_move": (
        "{asset} {direction} {change_abs} over {window}, at {close}",
        "{asset} {direction} {change_abs} over {window}",
        "{asset} {direction} {change_abs}",
        "{asset} at {close} after a {size} move",
    ),
    "rsi_overbought": ("{asset} RSI at {rsi}, overbought", "{asset} RSI in overbought territory"),
    "rsi_oversold": ("{asset} RSI at {rsi}, oversold", "{asset} RSI in oversold territory"),
    "macd_bullish_cross": ("{asset} bullish MACD cross at {close}", "{asset} bullish MACD cross"),
    "macd_bearish_cross": ("{asset} bearish MACD cross at {close}", "{asset} bearish MACD cross"),
    "bollinger_breakout_up": (
        "{asset} above its upper band at {close}",
        "{asset} broke above its upper band",
    ),
    "bollinger_breakout_down": (
        "{asset} below its lower band at {close}",
        "{asset} broke below its lower band",
    ),
    "volume_spike": (
        "{asset} volume {volume}, {ratio} normal",
        "{asset} volume {volume}",
        "{asset} volume spike",
    ),
    "sentiment_shift": (
        "{asset} sentiment {mood} to {score} ({delta})",
        "{asset} sentiment {mood} to {score}",
        "{asset} sentiment {mood}",
    ),
}
_GENERIC = (
    ("{asset} is worth a look today.", "Something is happening on {asset}."),
    ("Levels over predictions.",),
    ("What is going on with {asset}?",),
)

_CLOSERS = (
    DISCLAIMER,
    f"Data, not predictions. {DISCLAIMER}",
    f"Manage risk. {DISCLAIMER}",
    f"Watching, not chasing. {DISCLAIMER}",
)
_CTAS = {
    "follow": ("Follow for the daily read.", "Follow for more data-first updates."),
    "join": ("The full breakdown is in the members' library.", "Members get the full breakdown."),
    "discuss": ("What's your read?", "Agree or disagree? Tell me why."),
}
_EMOJI = {"up": "📈", "down": "📉", "neutral": "🔎"}
_CHART_NOTES = ("Chart below.", "Chart attached.")


def _asset(symbol: str) -> str:
    return symbol.split("/")[0].split(":")[0].strip() or "the market"


def _fields_for(brief_type: str, symbol: str, evidence: Mapping[str, Any]) -> dict[str, str]:
    """Everything a template may print, already formatted; a field is absent when the evidence lacks it."""
    num = {k: float(v) for k, v in evidence.items() if _is_number(v)}
    quote = symbol.split("/")[1].split(":")[0].upper() if "/" in symbol else ""
    fields: dict[str, str] = {"asset": _asset(symbol)}

    def price(value: float) -> str:
        text = format_number(value, "price")
        if not quote or quote in _USD_QUOTES:
            return f"${text}" if value >= 0 else f"-${text.lstrip('-')}"
        return f"{text} {quote}"

    for key in ("close", "high", "low", "upper", "lower", "middle"):
        if key in num:
            fields[key] = price(num[key])
    for key, kind in (
        ("rsi", "indicator"),
        ("threshold", "plain"),
        ("zscore", "indicator"),
        ("period", "count"),
        ("sample_size", "count"),
        ("macd", "value"),
        ("signal", "value"),
        ("histogram", "value"),
        ("stddev", "plain"),
        ("volume", "volume"),
        ("mean_volume", "volume"),
        ("ratio", "multiple"),
        ("score", "score"),
        ("previous_score", "score"),
        ("delta", "score"),
    ):
        if key in num:
            fields[key] = format_number(num[key], kind)
    if "change_pct" in num:
        change = num["change_pct"]
        fields["change_pct"] = format_number(change, "percent")
        fields["change_abs"] = format_number(change, "percent_abs")
        fields["direction"] = "up" if change >= 0 else "down"
        fields["size"] = "sharp" if abs(change) >= 5 else "notable"
    else:
        fields["size"] = "sharp"
    if "window_hours" in num:
        hours = num["window_hours"]
        plain = format_number(hours, "plain")
        fields["window"] = "the last hour" if plain == "1" else f"the last {plain} hours"
    shift = num.get("delta")
    if shift is None and "score" in num and "previous_score" in num:
        shift = num["score"] - num["previous_score"]
    if shift is not None:
        fields["mood"] = "improved" if shift >= 0 else "soured"
    elif "score" in num:
        fields["mood"] = "turned positive" if num["score"] >= 0 else "turned negative"
    else:
        fields["mood"] = "shifted"
    source = evidence.get("source")
    fields["from_source"] = f" on {source}" if isinstance(source, str) and source.strip() else ""
    if brief_type in _UP:
        fields.setdefault("direction", "up")
    elif brief_type in _DOWN:
        fields.setdefault("direction", "down")
    return fields


def _usable(templates: Iterable[str], fields: Mapping[str, str]) -> list[str]:
    """The templates whose fields the evidence fills, richest first (stable within a tier)."""
    usable = [t for t in templates if _fields(t) <= fields.keys()]
    return sorted(usable, key=lambda t: -len(_fields(t) & _NUMERIC_FIELDS))


def _pick(rng: random.Random, templates: list[str]) -> list[str]:
    """The candidates in the order to try them: a seeded choice among the richest tier first, then the rest
    from richest to plainest, so a tight limit falls back to a shorter phrasing."""
    if not templates:
        return []
    top = len(_fields(templates[0]) & _NUMERIC_FIELDS)
    tier = [t for t in templates if len(_fields(t) & _NUMERIC_FIELDS) == top]
    first = rng.choice(tier)
    return [first, *[t for t in templates if t != first]]


@dataclass
class _Segment:
    text: str
    drop_order: int  # lower drops first; REQUIRED never drops
    paragraph: bool = False  # set apart by a blank line (hashtags)


REQUIRED = 99


class TemplateWriter:
    """The offline writer: readable posts from templates, every number straight from the evidence."""

    name = "templates"

    def write(self, brief: WritingBrief) -> str:
        if brief.format == "digest":
            return self._digest(brief)
        # Seeded: the same brief always reads the same; a different seed picks other phrasings.
        rng = random.Random(f"{brief.seed}:{brief.insight_type}:{brief.platform}:{brief.format}")  # noqa: S311
        fields = _fields_for(brief.insight_type, brief.symbol, brief.evidence)
        mains, details, questions = _PHRASES.get(brief.insight_type, _GENERIC)
        main_candidates = _pick(rng, _usable(mains, fields)) or [_GENERIC[0][0]]
        detail_candidates = _usable(details, fields)
        rng.shuffle(detail_candidates)
        question = rng.choice(_usable(questions, fields) or list(_GENERIC[2]))
        closer = rng.choice(_CLOSERS)
        tone = brief.tone or {}
        if tone.get("opening") == "statement":
            # Opening with the finding itself: no headline that asks.
            main_candidates = [m for m in main_candidates if "?" not in m] or main_candidates
        cta_options = _CTAS.get(str(tone.get("cta", "")))
        cta = rng.choice(cta_options) if cta_options else ""
        emoji = _EMOJI[self._direction(brief.insight_type, fields)] if tone.get("emoji") else ""
        asks = tone.get("opening") == "question"
        hashtags = tone.get("hashtags", brief.platform in {"x", "telegram"})
        tags = f"#{re.sub(r'[^A-Za-z0-9]', '', fields['asset'])} #crypto" if hashtags else ""
        length = tone.get("length")
        n_details = 0 if length == "short" else (len(detail_candidates) if length == "long" else 1)
        if brief.format == "long_post":
            n_details = len(detail_candidates)
        chosen_details = [d.format_map(fields) for d in detail_candidates[:n_details]]
        chart = rng.choice(_CHART_NOTES) if brief.format == "telegram_chart_post" else ""
        opening = question.format_map(fields) if asks else ""

        if brief.format == "x_thread":
            return self._thread(
                brief, main_candidates, fields, opening, emoji, detail_candidates, closer, cta, tags
            )

        for main in main_candidates:
            lead = " ".join(x for x in (emoji, opening, main.format_map(fields)) if x)
            segments = [
                _Segment(lead, REQUIRED),
                *[_Segment(d, 10 + i) for i, d in enumerate(chosen_details)],
                _Segment(chart, 40),
                _Segment(cta, 50),
                _Segment(closer, 60),
                _Segment(tags, 5, paragraph=True),
            ]
            text = self._fit(segments, brief)
            if text is not None:
                return text
        return self._last_resort(brief, opening)

    @staticmethod
    def _direction(insight_type: str, fields: Mapping[str, str]) -> str:
        if insight_type in _UP or fields.get("direction") == "up" or fields.get("mood") == "improved":
            return "up"
        if insight_type in _DOWN or fields.get("direction") == "down" or fields.get("mood") == "soured":
            return "down"
        return "neutral"

    @staticmethod
    def _join(segments: list[_Segment]) -> str:
        body = " ".join(s.text for s in segments if not s.paragraph)
        return "\n\n".join([body, *(s.text for s in segments if s.paragraph)])

    def _fit(self, segments: list[_Segment], brief: WritingBrief) -> str | None:
        """Drop optional segments, least important first, until the text fits; None when the lead alone
        does not."""
        kept = [s for s in segments if s.text]
        while True:
            text = self._join(kept)
            if text_length(text, brief.platform) <= brief.max_chars:
                return text
            optional = [s for s in kept if s.drop_order != REQUIRED]
            if not optional:
                return None
            kept.remove(min(optional, key=lambda s: s.drop_order))

    def _thread(
        self,
        brief: WritingBrief,
        main_candidates: list[str],
        fields: Mapping[str, str],
        opening: str,
        emoji: str,
        detail_candidates: list[str],
        closer: str,
        cta: str,
        tags: str,
    ) -> str:
        def fits(text: str) -> bool:
            return bool(text) and text_length(text, brief.platform) <= brief.max_chars

        first = next(
            (
                lead
                for main in main_candidates
                if fits(lead := " ".join(x for x in (emoji, opening, main.format_map(fields)) if x))
            ),
            None,
        )
        if first is None:
            return self._last_resort(brief, opening)
        parts = [first]
        parts += [d.format_map(fields) for d in detail_candidates[:2] if fits(d.format_map(fields))]
        ending = next(
            (
                text
                for text in (
                    " ".join(x for x in (cta, closer) if x) + (f"\n{tags}" if tags else ""),
                    " ".join(x for x in (cta, closer) if x),
                    closer,
                )
                if fits(text)
            ),
            "",
        )
        if ending:
            parts.append(ending)
        return THREAD_SEPARATOR.join(parts)

    @staticmethod
    def _last_resort(brief: WritingBrief, opening: str) -> str:
        """A limit too tight for any phrasing: a number-free line, cut at a word boundary if it must be."""
        text = "What is moving the market?" if opening else "Market update."
        if text_length(text, brief.platform) <= brief.max_chars:
            return text
        return _truncate(text, brief.max_chars, brief.platform)

    def _digest(self, brief: WritingBrief) -> str:
        rng = random.Random(f"{brief.seed}:digest:{brief.platform}")  # noqa: S311
        items = brief.evidence.get("items") or []
        title = rng.choice(("This week in the market:", "Weekly digest:", "The week's signals:"))
        if (brief.tone or {}).get("opening") == "question":
            title = rng.choice(("Missed this week's moves?", "What moved this week?"))
        lines = []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, Mapping):
                continue
            kind = str(item.get("insight_type") or item.get("type") or "")
            symbol = str(item.get("symbol") or "")
            evidence = item.get("evidence") if isinstance(item.get("evidence"), Mapping) else {}
            fields = _fields_for(kind, symbol, evidence)  # type: ignore[arg-type]
            usable = _usable(_DIGEST_LINES.get(kind, ()), fields) or ["{asset}: worth a look"]
            lines.append("• " + usable[0].format_map(fields))
        closer = rng.choice(_CLOSERS)
        # Keep as many insights as fit, shortening the closing line before giving up an insight.
        for count in range(len(lines), -1, -1):
            for ending in dict.fromkeys((closer, DISCLAIMER, "")):
                text = "\n".join(x for x in (title, *lines[:count], ending) if x)
                if text_length(text, brief.platform) <= brief.max_chars:
                    return text
        return self._last_resort(brief, "")


def _truncate(text: str, limit: int, platform: str) -> str:
    words = text.split()
    while words and text_length(" ".join(words) + "…", platform) > limit:
        words.pop()
    if words:
        return " ".join(words) + "…"
    out = ""
    for char in text:
        if text_length(out + char, platform) > limit:
            break
        out += char
    return out


# --- the LLM writer -----------------------------------------------------------------------------------------

SYSTEM_PROMPT = """You write social media posts for an independent crypto market analyst who runs a paid \
community. Voice: plain, calm and specific, like a trader explaining a chart to a friend. No hype, no \
superlatives, no "to the moon". Never promise or imply profit, never predict a price, never tell anyone to buy \
or sell: this is commentary, not financial advice. Use only the numbers given in the brief, written exactly as \
given; do not compute, round or invent any other number (no targets, dates, percentages or counts of your own). \
Stay within the character limit. Reply with the post text only: no preamble, no quotes around it."""

_FORMAT_GUIDE = {
    "single_post": "one standalone post",
    "x_thread": "an X thread of 2 to 4 posts, separated by one blank line; no numbering like 1/3",
    "telegram_chart_post": "a Telegram channel post that goes out as the caption of a chart image",
    "discord_embed": "the description of a Discord embed",
    "long_post": "a longer explanatory post of a few short paragraphs",
    "digest": "a weekly digest with one short line per item",
}
_TONE_GUIDE = {
    ("opening", "question"): "Open with a question.",
    ("opening", "statement"): "Open with the finding itself.",
    ("length", "short"): "Keep it short: the finding and nothing else.",
    ("length", "long"): "Include every detail given.",
    ("cta", "follow"): "End by inviting readers to follow for more.",
    ("cta", "join"): "End by mentioning that members get the full breakdown.",
    ("cta", "discuss"): "End by asking readers for their view.",
    ("emoji", True): "You may use one emoji.",
    ("hashtags", True): "End with one or two relevant hashtags.",
    ("hashtags", False): "No hashtags.",
}


def _evidence_lines(evidence: Mapping[str, Any], indent: str = "- ") -> list[str]:
    lines = []
    for key, value in evidence.items():
        if isinstance(value, Mapping):
            lines.append(f"{indent}{key}:")
            lines += _evidence_lines(value, "  " + indent)
        elif isinstance(value, list):
            lines.append(f"{indent}{key}:")
            for item in value:
                if isinstance(item, Mapping):
                    lines += _evidence_lines(item, "  " + indent)
                    lines.append("")
                else:
                    lines.append(f"  {indent}{item}")
        elif _is_number(value):
            kind = EVIDENCE_KINDS.get(key, ("value",))[0]
            lines.append(f"{indent}{key}: {format_number(value, kind)}")
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


def build_prompt(brief: WritingBrief) -> str:
    limit = (
        f"at most {brief.max_chars} characters per post in the thread"
        if brief.format == "x_thread"
        else f"at most {brief.max_chars} characters"
    )
    if brief.platform == "x":
        limit += " (X counts an emoji as 2 and a link as 23)"
    given = brief.tone or {}
    tone = [guide for (key, value), guide in _TONE_GUIDE.items() if key in given and given[key] == value]
    extra = {k: v for k, v in given.items() if (k, v) not in _TONE_GUIDE}
    if extra:
        tone.append(f"Other style notes: {extra}")
    lines = [
        f"Platform: {brief.platform}",
        f"Format: {_FORMAT_GUIDE.get(brief.format, brief.format)}",
        f"Length: {limit}",
        f"Symbol: {brief.symbol}",
        f"Signal: {brief.insight_type.replace('_', ' ')}",
        f"Headline from the analysis: {brief.headline}",
        "Numbers (quote them exactly as written):",
        *_evidence_lines(brief.evidence),
    ]
    if tone:
        lines += ["Style:", *[f"- {t}" for t in tone]]
    return "\n".join(lines)


class AnthropicWriter:
    """Claude through the official SDK. The SDK's own retries are off: ``guarded_call`` retries transient
    errors inside the ``llm`` circuit breaker, so an outage opens the breaker instead of stacking retries."""

    name = "anthropic"
    timeout_seconds = 60.0

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        import anthropic

        self._anthropic = anthropic
        self.model = model
        self.policy = policy or RetryPolicy()
        self.client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url or None, timeout=self.timeout_seconds, max_retries=0
        )

    def write(self, brief: WritingBrief) -> str:
        return guarded_call(SERVICE, lambda: self._create(brief), policy=self.policy)

    def _create(self, brief: WritingBrief) -> str:
        anthropic = self._anthropic
        # Roughly 3 characters a token, with room for a thread.
        max_tokens = min(4096, max(256, brief.max_chars * (4 if brief.format == "x_thread" else 1)))
        try:
            message = self.client.messages.create(
                model=self.model,
                max_tokens=max_tokens,
                system=SYSTEM_PROMPT,
                messages=[{"role": "user", "content": build_prompt(brief)}],
            )
        except anthropic.RateLimitError as exc:
            wait = retry_after_from_headers(dict(exc.response.headers))
            raise RateLimited(
                f"Anthropic rate limit: {exc}", retry_after=30.0 if wait is None else wait, service=SERVICE
            ) from exc
        except anthropic.APIStatusError as exc:
            # 5xx (529 is "overloaded"), 408 timeout and 409 conflict are worth another try; other 4xx are not.
            if exc.status_code >= 500 or exc.status_code in {408, 409}:
                raise TransientError(f"Anthropic {exc.status_code}: {exc}", service=SERVICE) from exc
            raise PermanentError(f"Anthropic {exc.status_code}: {exc}", service=SERVICE) from exc
        except anthropic.APIConnectionError as exc:  # includes APITimeoutError
            raise TransientError(f"Anthropic unreachable: {exc}", service=SERVICE) from exc
        text = "".join(block.text for block in message.content if block.type == "text").strip()
        if not text:
            raise PermanentError(f"Anthropic returned no text (stop reason {message.stop_reason})")
        return text


def get_writer() -> Writer:
    """The writer ``settings.LLM_BACKEND`` names; ``TemplateWriter`` needs nothing and is always available."""
    if settings.LLM_BACKEND == "anthropic":
        if not settings.ANTHROPIC_API_KEY:
            raise ImproperlyConfigured("LLM_BACKEND=anthropic needs ANTHROPIC_API_KEY")
        return AnthropicWriter(
            api_key=settings.ANTHROPIC_API_KEY,
            model=settings.ANTHROPIC_MODEL,
            base_url=settings.ANTHROPIC_BASE_URL or None,
        )
    return TemplateWriter()
