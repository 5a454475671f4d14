"""Assignment to A/B variants: deterministic by test and subject, weighted, sticky, stored once."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from django.utils import timezone

from apps.experiments.factories import ABTestFactory, ABTestVariantFactory
from apps.experiments.models import ABTest, Assignment
from apps.experiments.services import assignment_for

pytestmark = pytest.mark.django_db


def test_no_running_test_means_no_variant() -> None:
    ABTestVariantFactory.create(test=ABTestFactory.create(status=ABTest.Status.PAUSED))
    ABTestVariantFactory.create(test=ABTestFactory.create(subject=ABTest.Subject.OFFER))

    assert assignment_for(subject="post", subject_key="plan:1") is None
    assert Assignment.objects.count() == 0


def test_the_same_key_always_gets_the_same_variant_and_one_row() -> None:
    test = ABTestFactory.create()
    ABTestVariantFactory.create(test=test, key="A")
    ABTestVariantFactory.create(test=test, key="B")

    first = assignment_for(subject="post", subject_key="plan:42")
    again = [assignment_for(subject="post", subject_key="plan:42") for _ in range(5)]

    assert first is not None
    assert again == [first] * 5
    stored = Assignment.objects.get()
    assert (stored.test, stored.variant, stored.subject_key) == (test, first, "plan:42")


def test_the_choice_is_a_function_of_test_and_key_not_of_order_or_storage() -> None:
    test = ABTestFactory.create(slug="tone-1")
    ABTestVariantFactory.create(test=test, key="A")
    ABTestVariantFactory.create(test=test, key="B")
    keys = [f"plan:{n}" for n in range(60)]

    forward = {k: assignment_for(subject="post", subject_key=k) for k in keys}
    Assignment.objects.all().delete()
    backward = {k: assignment_for(subject="post", subject_key=k) for k in reversed(keys)}

    assert forward == backward
    assert {v.key for v in forward.values() if v} == {"A", "B"}


def test_assignment_follows_the_weights() -> None:
    test = ABTestFactory.create()
    heavy = ABTestVariantFactory.create(test=test, key="A", weight=3)
    light = ABTestVariantFactory.create(test=test, key="B", weight=1)
    ABTestVariantFactory.create(test=test, key="C", weight=0)

    counts = Counter(assignment_for(subject="post", subject_key=f"plan:{n}") for n in range(1200))

    assert set(counts) == {heavy, light}  # a variant weighing nothing gets nobody
    assert counts[heavy] / 1200 == pytest.approx(0.75, abs=0.04)


def test_an_assignment_sticks_when_the_weights_change() -> None:
    test = ABTestFactory.create()
    a = ABTestVariantFactory.create(test=test, key="A", weight=1)
    b = ABTestVariantFactory.create(test=test, key="B", weight=1)
    first = {n: assignment_for(subject="post", subject_key=f"plan:{n}") for n in range(20)}
    assert set(first.values()) == {a, b}

    type(a).objects.filter(pk=a.pk).update(weight=0)

    assert {n: assignment_for(subject="post", subject_key=f"plan:{n}") for n in range(20)} == first
    assert assignment_for(subject="post", subject_key="plan:new") == b


def test_the_first_started_running_test_is_used() -> None:
    older = ABTestFactory.create(started_at=timezone.now() - dt.timedelta(days=2))
    newer = ABTestFactory.create(started_at=timezone.now())
    ABTestVariantFactory.create(test=newer, key="A")
    only = ABTestVariantFactory.create(test=older, key="A")

    assert assignment_for(subject="post", subject_key="plan:1") == only


def test_a_test_without_weighted_variants_assigns_nothing() -> None:
    test = ABTestFactory.create()
    ABTestVariantFactory.create(test=test, key="A", weight=0)

    assert assignment_for(subject="post", subject_key="plan:1") is None
    assert Assignment.objects.count() == 0
