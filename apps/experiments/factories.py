"""Factories shared by the tests and the demo seed."""

from __future__ import annotations

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from apps.experiments.models import ABTest, ABTestVariant, Assignment, Hypothesis, Outcome


class ABTestFactory(DjangoModelFactory[ABTest]):
    class Meta:
        model = ABTest

    name = factory.Sequence(lambda n: f"Post tone test {n}")
    slug = factory.Sequence(lambda n: f"post-tone-{n}")
    subject = ABTest.Subject.POST
    hypothesis = "A question in the opening line earns more replies than a statement."
    metric = "engagement_rate"
    status = ABTest.Status.RUNNING
    started_at = factory.LazyFunction(timezone.now)


class ABTestVariantFactory(DjangoModelFactory[ABTestVariant]):
    class Meta:
        model = ABTestVariant

    test = factory.SubFactory(ABTestFactory)
    key = factory.Sequence(lambda n: chr(ord("A") + n % 26))
    name = factory.LazyAttribute(lambda o: f"Variant {o.key}")
    payload = factory.LazyFunction(lambda: {"tone": "neutral"})
    is_control = factory.LazyAttribute(lambda o: o.key == "A")


class AssignmentFactory(DjangoModelFactory[Assignment]):
    class Meta:
        model = Assignment

    variant = factory.SubFactory(ABTestVariantFactory)
    test = factory.SelfAttribute("variant.test")
    subject_key = factory.Sequence(lambda n: f"draft:{n}")


class OutcomeFactory(DjangoModelFactory[Outcome]):
    class Meta:
        model = Outcome

    assignment = factory.SubFactory(AssignmentFactory, exposed_at=factory.LazyFunction(timezone.now))
    test = factory.SelfAttribute("assignment.test")
    variant = factory.SelfAttribute("assignment.variant")
    metric = "engagement_rate"
    value = 0.042
    recorded_at = factory.LazyFunction(timezone.now)


class HypothesisFactory(DjangoModelFactory[Hypothesis]):
    class Meta:
        model = Hypothesis

    title = factory.Sequence(lambda n: f"Question openings {n}")
    subject = ABTest.Subject.POST
    dimension = Hypothesis.Dimension.TONE
    statement = "Opening with a question earns more engagement than a statement."
    variants = factory.LazyFunction(
        lambda: [
            {
                "key": "A",
                "name": "Statement",
                "payload": {"opening": "statement"},
                "weight": 1,
                "is_control": True,
            },
            {
                "key": "B",
                "name": "Question",
                "payload": {"opening": "question"},
                "weight": 1,
                "is_control": False,
            },
        ]
    )
    metric = "engagement_rate"
    position = factory.Sequence(lambda n: n)
