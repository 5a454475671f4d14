from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db.models import Count, F

from apps.billing.models import Entitlement, Subscription
from apps.community.models import CommunityUser, PlatformIdentity, UserInteraction
from apps.content.models import ExclusiveContent, PublishedContent
from apps.dashboard.demo import COMMUNITY_SIZE, HISTORY_DAYS, WATCHLIST, seed_demo
from apps.experiments.models import ABTest
from apps.market.models import Insight, MarketData

ANCHOR = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def _table_counts() -> dict[str, int]:
    return {
        model._meta.db_table: model._default_manager.count()
        for model in apps.get_models()
        if model._meta.app_label not in {"sessions", "admin", "contenttypes", "auth"}
    }


@pytest.mark.django_db
def test_seed_builds_a_realistic_world() -> None:
    report = seed_demo(anchor=ANCHOR)

    assert CommunityUser.objects.count() == COMMUNITY_SIZE
    per_platform = dict(PlatformIdentity.objects.values_list("platform").annotate(n=Count("id")))
    assert set(per_platform) == {"x", "telegram", "discord"}
    assert all(n >= 30 for n in per_platform.values())
    assert UserInteraction.objects.count() > 1000
    # Interactions belong to the same person as their identity.
    assert not UserInteraction.objects.exclude(community_user=F("identity__community_user")).exists()
    assert MarketData.objects.count() == len(WATCHLIST) * HISTORY_DAYS * 24
    assert not MarketData.objects.filter(ts__gte=ANCHOR).exists()
    assert Insight.objects.count() == len(WATCHLIST)
    assert PublishedContent.objects.count() == 3 * len(WATCHLIST)
    assert ExclusiveContent.objects.filter(status="published").count() == 3
    assert ABTest.objects.get().variants.count() == 2
    assert set(Subscription.objects.values_list("status", flat=True)) >= {
        "active",
        "trialing",
        "past_due",
        "canceled",
    }
    assert Entitlement.objects.filter(subscription__status="canceled").count() == 0
    assert report.total == sum(_table_counts().get(t, 0) for t in report.created)


@pytest.mark.django_db
def test_insight_numbers_come_from_the_candles() -> None:
    seed_demo(anchor=ANCHOR)
    for insight in Insight.objects.all():
        closes = list(
            MarketData.objects.filter(symbol=insight.symbol)
            .order_by("-ts")
            .values_list("close", flat=True)[:25]
        )
        assert insight.evidence["close"] == round(closes[0], 6)
        assert insight.evidence["change_24h_pct"] == round((closes[0] / closes[24] - 1) * 100, 2)
        assert 0 <= insight.confidence <= 1


@pytest.mark.django_db
def test_second_run_changes_nothing() -> None:
    seed_demo(anchor=ANCHOR)
    counts = _table_counts()
    snapshot = list(
        UserInteraction.objects.order_by("id").values_list("id", "occurred_at", "community_user_id")
    )
    last_seen = list(CommunityUser.objects.order_by("id").values_list("id", "last_seen_at", "portal_user_id"))

    report = seed_demo(anchor=ANCHOR)

    assert report.total == 0
    assert _table_counts() == counts
    assert (
        list(UserInteraction.objects.order_by("id").values_list("id", "occurred_at", "community_user_id"))
        == snapshot
    )
    assert (
        list(CommunityUser.objects.order_by("id").values_list("id", "last_seen_at", "portal_user_id"))
        == last_seen
    )


@pytest.mark.django_db
def test_command_reports_and_refuses_production(settings: object) -> None:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "Demo world seeded" in out.getvalue()
    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert "nothing to do" in out.getvalue()

    settings.PRODUCTION = True  # type: ignore[attr-defined]
    with pytest.raises(CommandError, match="production"):
        call_command("seed_demo")
