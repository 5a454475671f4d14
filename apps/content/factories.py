"""Factories shared by the tests and the demo seed."""

from __future__ import annotations

import datetime as dt

import factory
from django.utils import timezone
from django.utils.text import slugify
from factory.django import DjangoModelFactory

from apps.content.models import (
    ContentDraft,
    ContentFormat,
    ContentPlan,
    DraftStatus,
    ExclusiveContent,
    ExclusiveStatus,
    Media,
    PlanStatus,
    PublishedContent,
)
from apps.core.models import Platform
from apps.market.factories import InsightFactory


class ContentPlanFactory(DjangoModelFactory[ContentPlan]):
    class Meta:
        model = ContentPlan

    insight = factory.SubFactory(InsightFactory)
    platform = Platform.X
    format = ContentFormat.SINGLE_POST
    topic = factory.LazyAttribute(lambda o: o.insight.headline if o.insight else "Weekly market digest")
    scheduled_for = factory.LazyFunction(lambda: timezone.now() + dt.timedelta(hours=1))
    priority = 0.5
    weights = factory.LazyFunction(lambda: {"confidence": 1.0, "recency": 0.5})
    status = PlanStatus.PLANNED


class MediaFactory(DjangoModelFactory[Media]):
    class Meta:
        model = Media

    kind = Media.Kind.CHART
    file = factory.django.ImageField(width=1200, height=675, color="#0b1021", format="PNG")
    content_type = "image/png"
    width = 1200
    height = 675
    size_bytes = 2048
    alt_text = factory.Sequence(lambda n: f"Chart card {n}")


class ContentDraftFactory(DjangoModelFactory[ContentDraft]):
    class Meta:
        model = ContentDraft

    plan = factory.SubFactory(ContentPlanFactory)
    platform = factory.SelfAttribute("plan.platform")
    format = factory.SelfAttribute("plan.format")
    body = factory.Faker("sentence", nb_words=20)
    status = DraftStatus.PENDING_REVIEW


class PublishedContentFactory(DjangoModelFactory[PublishedContent]):
    class Meta:
        model = PublishedContent

    draft = None
    platform = Platform.X
    format = ContentFormat.SINGLE_POST
    external_id = factory.Sequence(lambda n: str(1_790_000_000_000_000_000 + n))
    url = factory.LazyAttribute(lambda o: f"https://x.com/coinlink/status/{o.external_id}")
    text = factory.Faker("sentence", nb_words=25)
    published_at = factory.LazyFunction(timezone.now)
    metrics = factory.LazyFunction(lambda: {"impressions": 1200, "likes": 48, "reposts": 9, "replies": 6})
    engagement_rate = 0.0525


class ExclusiveContentFactory(DjangoModelFactory[ExclusiveContent]):
    class Meta:
        model = ExclusiveContent

    title = factory.Faker("sentence", nb_words=6)
    slug = factory.LazyAttributeSequence(lambda o, n: f"{slugify(o.title)[:200]}-{n}")
    kind = ExclusiveContent.Kind.ANALYSIS
    summary = factory.Faker("sentence", nb_words=18)
    body = factory.Faker("text", max_nb_chars=1500)
    status = ExclusiveStatus.PUBLISHED
    published_at = factory.LazyFunction(timezone.now)
