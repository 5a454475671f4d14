"""Layer 3: a small trainable text classifier, CPU only, NumPy only.

Features are hashed into ``2**bits`` buckets (no vocabulary to store or grow): lower-cased words, character
4-grams (hashed with NumPy over the whole message at once), and a few shape tokens
(a link, its domain, a cash tag, a long number, a mention, emoji, the length). Each message counts a feature
once, scaled so that a message's feature vector has unit length. The model is L2-regularised logistic
regression trained in full batches with Adam on a hand-rolled sparse matrix (``np.add.reduceat`` and
``np.bincount``: no SciPy). Naive Bayes was tried first and was far less precise on the same split.

Learning one label at once: ``learn_one`` takes gradient steps on that message alone until the model gives it
the label with a margin (``LIVE_TARGET``), and no further, so a label changes the model as little as it must.
Every process applies the same labels in the same order with the same steps, so they all end up with the same
weights; a full retraining (``train``) folds the labels in with the seed set.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from apps.moderation.engine.text import find_links, fold_message, normalise_domain

_WORD_RE = re.compile(r"[\w$#@']+|[^\w\s]", re.UNICODE)
_MULT = np.uint64(0x100000001B3)  # FNV-1a prime: a cheap rolling mix for character n-grams


def _shape(token: str) -> str | None:
    if token.startswith("$") and len(token) > 1 and not token[1:].replace(",", "").replace(".", "").isdigit():
        return "<cashtag>"
    if token.startswith("@") and len(token) > 1:
        return "<mention>"
    if token.startswith("#") and len(token) > 1:
        return "<hashtag>"
    if token.isdigit():
        return f"<num{min(len(token), 12)}>"
    return None


@dataclass
class HashedFeatures:
    """Word unigrams (with their shapes) and character 4-grams across the whole text, spaces included, so
    that the n-grams also span word boundaries. Word bigrams and 3+5-grams were measured too (5-fold
    cross-validation on the training files): no better, and slower."""

    bits: int = 17
    char_ngrams: tuple[int, ...] = (4,)

    @property
    def size(self) -> int:
        return 1 << self.bits

    def indices(self, text: str, *, domains: Iterable[str] | None = None) -> np.ndarray:
        """The distinct hashed feature indices of ``text`` (int64). ``domains``: the normalised domains of its
        links when the caller has them already."""
        folded = fold_message(text)
        mask = self.size - 1
        tokens: list[str] = []
        for word in _WORD_RE.findall(folded):
            tokens.append("w:" + word)
            if word[0] in "$@#" or word.isdigit():
                shaped = _shape(word)
                if shaped:
                    tokens.append(shaped)
        if domains is None:
            domains = [normalise_domain(link) for link in find_links(folded)]
        for domain in domains:
            tokens.append("<link>")
            if domain:
                tokens.append("d:" + domain)
        if not folded.isascii():
            emoji = sum(1 for ch in folded if ord(ch) >= 0x2190 and not ch.isalpha())
            if emoji:
                tokens.append(f"<emoji{min(emoji, 5)}>")
        tokens.append(f"<len{min(len(folded) // 40, 8)}>")
        crc = zlib.crc32
        parts = [np.array([crc(t.encode()) & mask for t in tokens], dtype=np.int64)]
        data = np.frombuffer((" " + folded + " ").encode("utf-8", "ignore"), dtype=np.uint8).astype(np.uint64)
        for n in self.char_ngrams:
            if data.size < n:
                continue
            count = data.size - n + 1
            h = (data[:count] ^ np.uint64(n * 7919)) * _MULT
            for k in range(1, n):
                h = (h ^ data[k : count + k]) * _MULT
            parts.append(((h >> np.uint64(20)) & np.uint64(mask)).astype(np.int64))
        return np.unique(np.concatenate(parts))


LIVE_TARGET = 0.9  # a labelled message ends up at least this sure of its label
LIVE_STEP = 1.0
LIVE_MAX_STEPS = 50


class LogisticModel:
    def __init__(self, features: HashedFeatures | None = None) -> None:
        self.features = features or HashedFeatures()
        self.weights = np.zeros(self.features.size, dtype=np.float64)
        self.bias = 0.0
        self.trained = False

    def _vector(self, text: str, domains: Iterable[str] | None = None) -> tuple[np.ndarray, float]:
        idx = self.features.indices(text, domains=domains)
        return idx, 1.0 / math.sqrt(max(1, idx.size))

    def log_odds(self, text: str, *, domains: Iterable[str] | None = None) -> float:
        idx, value = self._vector(text, domains)
        return float(self.weights[idx].sum()) * value + self.bias

    def spam_probability(self, text: str, *, domains: Iterable[str] | None = None) -> float:
        if not self.trained:
            return 0.0
        z = max(-50.0, min(50.0, self.log_odds(text, domains=domains)))
        return 1.0 / (1.0 + math.exp(-z))

    def train(
        self,
        examples: Sequence[tuple[str, bool, float]],
        *,
        epochs: int = 300,
        l2: float = 1e-5,
        learning_rate: float = 0.05,
    ) -> dict[str, float]:
        """Fit on ``(text, is_spam, weight)`` from scratch. Full-batch Adam; about a second per thousand
        messages on one core."""
        if not examples:
            return {"examples": 0}
        rows = [self._vector(text) for text, _, _ in examples]
        indices = np.concatenate([idx for idx, _ in rows])
        lengths = np.fromiter((idx.size for idx, _ in rows), dtype=np.int64, count=len(rows))
        values = np.repeat(np.fromiter((v for _, v in rows), dtype=np.float64, count=len(rows)), lengths)
        starts = np.zeros(len(rows), dtype=np.int64)
        starts[1:] = np.cumsum(lengths)[:-1]
        row_of = np.repeat(np.arange(len(rows)), lengths)
        y = np.fromiter((1.0 if spam else 0.0 for _, spam, _ in examples), dtype=np.float64, count=len(rows))
        sample_weight = np.fromiter((w for _, _, w in examples), dtype=np.float64, count=len(rows))
        sample_weight = sample_weight / sample_weight.sum()
        size = self.features.size
        w = np.zeros(size)
        b = 0.0
        m, v = np.zeros(size), np.zeros(size)
        mb = vb = 0.0
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        loss = 0.0
        for epoch in range(1, epochs + 1):
            z = np.add.reduceat(w[indices] * values, starts) + b
            p = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
            residual = (p - y) * sample_weight
            grad = np.bincount(indices, weights=residual[row_of] * values, minlength=size) + l2 * w
            grad_b = float(residual.sum())
            m = beta1 * m + (1 - beta1) * grad
            v = beta2 * v + (1 - beta2) * grad * grad
            w -= learning_rate * (m / (1 - beta1**epoch)) / (np.sqrt(v / (1 - beta2**epoch)) + eps)
            mb = beta1 * mb + (1 - beta1) * grad_b
            vb = beta2 * vb + (1 - beta2) * grad_b * grad_b
            b -= learning_rate * (mb / (1 - beta1**epoch)) / (math.sqrt(vb / (1 - beta2**epoch)) + eps)
            if epoch == epochs:
                loss = float(
                    -(sample_weight * (y * np.log(p + 1e-12) + (1 - y) * np.log(1 - p + 1e-12))).sum()
                )
        self.weights, self.bias, self.trained = w, b, True
        return {"examples": len(rows), "loss": round(loss, 5)}

    def learn_one(self, text: str, spam: bool) -> int:
        """Teach one labelled message now; returns the gradient steps it took (0 when already known)."""
        idx, value = self._vector(text)
        target = 1.0 if spam else 0.0
        steps = 0
        while steps <= LIVE_MAX_STEPS:
            z = float(self.weights[idx].sum()) * value + self.bias
            p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
            if (spam and p >= LIVE_TARGET) or (not spam and p <= 1 - LIVE_TARGET):
                break
            steps += 1
            # The feature vector has unit length, so one step moves the log-odds by LIVE_STEP * (target - p).
            self.weights[idx] += LIVE_STEP * (target - p) * value
        self.trained = True
        return steps

    def dumps(self) -> bytes:
        header = np.array([self.features.bits, self.bias], dtype=np.float64).tobytes()
        return zlib.compress(header + self.weights.astype(np.float32).tobytes(), level=6)

    @classmethod
    def loads(cls, blob: bytes) -> LogisticModel:
        raw = zlib.decompress(blob)
        bits, bias = np.frombuffer(raw[:16], dtype=np.float64)
        model = cls(HashedFeatures(bits=int(bits)))
        model.weights = np.frombuffer(raw[16:], dtype=np.float32).astype(np.float64)
        model.bias = float(bias)
        model.trained = True
        return model
