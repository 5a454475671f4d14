"""Layer 3: the classifier's seed model, operator labels learnt live in every process, and full retraining."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.cache import cache

from apps.accounts.factories import UserFactory
from apps.moderation.engine.classifier import LogisticModel
from apps.moderation.engine.types import Verdict
from apps.moderation.models import ClassifierTraining, TrainingLabel
from apps.moderation.services import labels
from apps.moderation.services.judging import moderation_judge
from apps.moderation.services.labels import (
    VERSION_KEY,
    ClassifierHolder,
    classifier_retrain,
    moderation_label,
    seed_examples,
)
from apps.moderation.tests.engine_support import fresh_engine, message

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_engine")]
__all__ = ["fresh_engine"]

# A new kind of spam none of the detectors knows and the seed set has never seen.
NOVEL = "Vote for grandma's tulip garden in the county flower contest via the poll in my bio"


def test_seed_files_hold_both_labels_and_never_the_holdout() -> None:
    examples = seed_examples()
    assert len(examples) > 2500
    assert {spam for _, spam in examples} == {True, False}
    holdout = set()
    for path in labels.SEED_DIR.glob("*_holdout.jsonl"):
        holdout |= {line for line in path.read_text(encoding="utf-8").splitlines() if line}
    assert holdout
    train_texts = {text for text, _ in examples}
    assert not train_texts & {json.loads(line)["text"] for line in holdout}


def test_seed_model_separates_spam_from_chat() -> None:
    model = labels.seed_model()
    assert model.spam_probability("Claim your free airdrop now, connect wallet at drop-claim.xyz") > 0.6
    assert model.spam_probability("what do you all think about the ETH roadmap?") < 0.4


def test_an_operator_label_is_learnt_at_once_and_by_every_process(
    django_capture_on_commit_callbacks: Any,
) -> None:
    other_process = ClassifierHolder()  # what another bot or worker holds in memory
    before = moderation_judge(message=message(NOVEL), record=False)
    assert before.verdict == Verdict.ALLOW
    assert other_process.current().spam_probability(NOVEL) < 0.4

    operator = UserFactory(staff=True)
    with django_capture_on_commit_callbacks(execute=True):
        label = moderation_label(text=NOVEL, label="spam", source="operator", actor=operator)
    assert (label.label, label.source, label.actor) == ("spam", "operator", operator)
    assert cache.get(VERSION_KEY) == f"0:{label.pk}"

    after = moderation_judge(message=message(NOVEL, message_id="again"), record=False)
    classifier_hit = next(h for h in after.checks if h.check == "classifier")
    assert classifier_hit.score >= 0.85
    assert after.verdict == Verdict.REMOVE
    # The other process sees the new version in the shared cache and learns the same label: same weights.
    assert other_process.current().spam_probability(NOVEL) == pytest.approx(
        labels.classifier.current().spam_probability(NOVEL)
    )
    # Similar messages move too, not only the exact text.
    similar = "Please vote for my grandma's tulip garden in the flower contest, poll in bio"
    assert labels.classifier.current().spam_probability(similar) > 0.5


def test_a_granted_appeal_teaches_ham() -> None:
    text = "Send me the link to the podcast you mentioned, claim your seat early for the AMA"
    model = labels.classifier.current()
    moderation_label(text=text, label="ham", source="appeal")
    assert labels.classifier.current().spam_probability(text) <= 0.1
    assert model is labels.classifier.current()  # taught in place, not reloaded


def test_bad_labels_are_refused_and_nothing_is_stored() -> None:
    with pytest.raises(ValueError, match="label must be"):
        moderation_label(text="x", label="maybe", source="operator")
    with pytest.raises(ValueError, match="source must be"):
        moderation_label(text="x", label="spam", source="someone")
    assert TrainingLabel.objects.count() == 0


def test_retraining_stores_a_model_every_process_loads(
    django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    moderation_label(text=NOVEL, label="spam", source="operator")
    with django_capture_on_commit_callbacks(execute=True):
        result = classifier_retrain()
    training = ClassifierTraining.objects.get()
    assert result["training_id"] == training.pk
    assert result["labels"] == 1
    assert training.label_examples == 1
    assert training.last_label_id == TrainingLabel.objects.get().pk
    assert result["holdout_precision"] > 0.85
    assert result["holdout_n"] > 500
    loaded = LogisticModel.loads(bytes(training.weights))
    holder = ClassifierHolder()
    assert holder.current().spam_probability(NOVEL) == pytest.approx(loaded.spam_probability(NOVEL), rel=1e-5)
    assert holder.training_id == training.pk
    # A label after the retraining is taught on top of it.
    moderation_label(text="tulip garden poll, vote now", label="spam", source="operator")
    holder.mark_stale()
    holder.current()
    assert holder.label_id == TrainingLabel.objects.latest("id").pk
