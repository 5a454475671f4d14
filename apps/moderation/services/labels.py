"""Training labels and the classifier every process judges with.

The seed model is trained from the labelled messages in ``fixtures/moderation/`` (``*_train.jsonl``; the
``*_holdout.jsonl`` files are never trained on) once per process, or loaded from the latest
``ClassifierTraining`` row when a full retraining has stored one. Labels stored since (``moderation_label``)
are then taught one by one, in id order, with ``LogisticModel.learn_one``: every process ends up with the same
weights.

Freshness without a restart: the shared cache holds a version, ``"<training id>:<last label id>"``, bumped
after each label or retraining commits. A process compares it with its own at most every
``MODERATION_REFRESH_SECONDS`` and, when it differs (or the cache lost it), reads the database, which is the
truth: a newer training is loaded, newer labels are taught.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Max

from apps.moderation.engine.classifier import LogisticModel
from apps.moderation.engine.rules import text_key
from apps.moderation.models import ClassifierTraining, TrainingLabel

logger = logging.getLogger(__name__)

VERSION_KEY = "moderation:classifier:version"
SEED_DIR = Path(settings.BASE_DIR) / "fixtures" / "moderation"


def seed_examples(directory: Path = SEED_DIR) -> list[tuple[str, bool]]:
    """The seed set: every ``*_train.jsonl`` in ``fixtures/moderation``."""
    examples: list[tuple[str, bool]] = []
    for path in sorted(directory.glob("*_train.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    row = json.loads(line)
                    examples.append((row["text"], row["label"] == "spam"))
    return examples


_seed_lock = threading.Lock()
_seed_cache: dict[str, bytes] = {}


def seed_model() -> LogisticModel:
    """The model trained on the seed set alone; trained once per process (about two seconds) and copied."""
    examples = seed_examples()
    digest = hashlib.sha256(repr(examples).encode()).hexdigest()
    with _seed_lock:
        blob = _seed_cache.get(digest)
        if blob is None:
            model = LogisticModel()
            model.train([(text, spam, 1.0) for text, spam in examples])
            blob = _seed_cache[digest] = model.dumps()
    return LogisticModel.loads(blob)


def _database_version() -> tuple[int, int]:
    training_id = ClassifierTraining.objects.order_by("-id").values_list("id", flat=True).first() or 0
    label_id = TrainingLabel.objects.aggregate(last=Max("id"))["last"] or 0
    return training_id, label_id


def _publish_version() -> None:
    training_id, label_id = _database_version()
    cache.set(VERSION_KEY, f"{training_id}:{label_id}", timeout=None)


@dataclass
class ClassifierHolder:
    """One process's classifier and where it is up to."""

    model: LogisticModel | None = None
    training_id: int = -1
    label_id: int = 0
    checked_at: float = 0.0
    cache_version: str | None = None
    stale: bool = True
    lock: threading.RLock = field(default_factory=threading.RLock)

    def mark_stale(self) -> None:
        self.stale = True

    def reset(self) -> None:
        with self.lock:
            self.model, self.training_id, self.label_id, self.cache_version, self.stale = (
                None,
                -1,
                0,
                None,
                True,
            )

    def current(self) -> LogisticModel:
        now = time.monotonic()
        if (
            not self.stale
            and self.model is not None
            and now - self.checked_at < settings.MODERATION_REFRESH_SECONDS
        ):
            return self.model
        with self.lock:
            self.checked_at = now
            version = cache.get(VERSION_KEY)
            if self.model is None or self.stale or version is None or version != self.cache_version:
                self._sync()
                self.cache_version = version
            self.stale = False
            assert self.model is not None
            return self.model

    def _sync(self) -> None:
        latest = ClassifierTraining.objects.order_by("-id").first()
        latest_id = latest.pk if latest else 0
        if self.model is None or latest_id != self.training_id:
            if latest is not None and latest.weights:
                self.model = LogisticModel.loads(bytes(latest.weights))
                self.label_id = latest.last_label_id
            else:
                self.model = seed_model()
                self.label_id = 0
            self.training_id = latest_id
        for label in (
            TrainingLabel.objects.filter(id__gt=self.label_id).order_by("id").only("id", "text", "label")
        ):
            self.model.learn_one(label.text, label.label == TrainingLabel.Label.SPAM)
            self.label_id = label.pk


classifier = ClassifierHolder()


def classifier_current() -> LogisticModel:
    return classifier.current()


def moderation_label(
    *,
    text: str,
    label: str,
    source: str,
    actor: Any = None,
    decision_id: int | None = None,
) -> TrainingLabel:
    """Store a training label and teach the classifier at once: this process on its next judgement (it reads
    the new row), every other process once the new version reaches the shared cache after commit."""
    if label not in TrainingLabel.Label.values:
        raise ValueError(f"label must be one of {TrainingLabel.Label.values}, not {label!r}")
    if source not in TrainingLabel.Source.values:
        raise ValueError(f"source must be one of {TrainingLabel.Source.values}, not {source!r}")
    row = TrainingLabel.objects.create(
        text=text,
        text_hash=text_key(text),
        label=label,
        source=source,
        actor=actor if getattr(actor, "pk", None) else None,
        decision_id=decision_id,
    )
    classifier.mark_stale()
    transaction.on_commit(_publish_version)
    return row


def classifier_retrain() -> dict[str, Any]:
    """Train from scratch on the seed set and every stored label (labels weigh ``MODERATION_LABEL_WEIGHT``),
    measure the result on the project's held-out files, store it, and make every process load it."""
    started = time.perf_counter()
    examples = [(text, spam, 1.0) for text, spam in seed_examples()]
    labels = list(TrainingLabel.objects.order_by("id").values_list("id", "text", "label"))
    weight = settings.MODERATION_LABEL_WEIGHT
    examples += [(text, label == TrainingLabel.Label.SPAM, weight) for _, text, label in labels]
    model = LogisticModel()
    fit = model.train(examples)
    metrics = {**fit, **holdout_metrics(model), "seconds": round(time.perf_counter() - started, 2)}
    training = ClassifierTraining.objects.create(
        seed_examples=len(examples) - len(labels),
        label_examples=len(labels),
        last_label_id=labels[-1][0] if labels else 0,
        metrics=metrics,
        weights=model.dumps(),
    )
    classifier.mark_stale()
    transaction.on_commit(_publish_version)
    logger.info("classifier retrained", extra={"training_id": training.pk, **metrics})
    return {"training_id": training.pk, "labels": len(labels), **metrics}


def holdout_metrics(model: LogisticModel, *, threshold: float | None = None) -> dict[str, Any]:
    """The classifier alone on ``fixtures/moderation/*_holdout.jsonl`` at the classifier's firing score."""
    threshold = settings.MODERATION_CLASSIFIER_MIN_SCORE if threshold is None else threshold
    tp = fp = fn = tn = 0
    for path in sorted(SEED_DIR.glob("*_holdout.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            flagged = model.spam_probability(row["text"]) >= threshold
            spam = row["label"] == "spam"
            tp += flagged and spam
            fp += flagged and not spam
            fn += (not flagged) and spam
            tn += (not flagged) and not spam
    return {
        "holdout_n": tp + fp + fn + tn,
        "holdout_precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "holdout_recall": round(tp / (tp + fn), 4) if tp + fn else None,
    }
