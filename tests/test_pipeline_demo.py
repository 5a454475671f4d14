"""The content pipeline on the demo world, on the embedded default: ``manage.py run_pipeline --once`` runs the
nine agents of phases 1 and 2 to success, the operator finds what they made in the admin, and the live
dashboard group hears every run move.

The clock stands still at 09:00 UTC on the seed's anchor day (``tick=False``), so plans booked for "now" are
due when the publisher looks. The strategist books each platform's next free slot from now on; X's and
Discord's default slots include 09:00 but Telegram's (08, 12, 16, 20) do not, so the test adds 09:00 to
Telegram's slots in the strategist's AgentConfig: each platform then has a post due within the run.

Posts that show a chart (Telegram chart posts, Discord embeds) wait up to ``image_wait_minutes`` for it, and
the chart is drawn by image generation in phase 2, after publishing (phase 1) has run. So within the one
pipeline run X goes out and the chart posts get their charts; the publisher's next scheduled run five minutes
later (``run_pipeline --once --agents publishing``) sends them with their charts, as the embedded scheduler's
``*/5`` publishing would.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from io import StringIO
from typing import Any

import pytest
import time_machine
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.template.defaultfilters import truncatechars
from django.test import Client
from django.utils.html import escape
from pytest_django.fixtures import Settings as DjangoSettings

from apps.accounts.factories import UserFactory
from apps.agents import registry
from apps.agents.models import AgentConfig, AgentRun, AgentRunStatus, PipelineRun
from apps.content.limits import IMAGE_FORMATS
from apps.content.models import ContentDraft, ContentPlan, DraftStatus, PublishedContent
from apps.core.live import DASHBOARD_GROUP
from apps.dashboard.demo import seed_demo
from apps.integrations.models import OutboxMessage
from apps.market.models import Insight, MarketData

# The command commits its own transactions before the pipeline is sent, as in production.
pytestmark = pytest.mark.django_db(transaction=True)

ANCHOR = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
NOW = ANCHOR + dt.timedelta(hours=9)
PLATFORMS = {"x", "telegram", "discord"}
PHASE_1_AND_2 = (
    "market_scanner",
    "analysis",
    "content_strategist",
    "content_creation",
    "publishing",
    "image_generation",
    "engagement",
    "analytics",
    "content_repurposing",
)


@pytest.fixture
def embedded_default(settings: DjangoSettings) -> None:
    """The embedded default whatever a developer's .env says: offline twins, an in-memory channel layer
    (with room for every event of the run, and no expiry while the clock stands still)."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 3600},
        }
    }
    settings.X_BACKEND = settings.TELEGRAM_BACKEND = settings.DISCORD_BACKEND = "outbox"
    settings.EXCHANGE_BACKEND = "simulated"
    settings.NEWS_BACKEND = settings.SOCIAL_BACKEND = "files"
    settings.LLM_BACKEND = "templates"
    settings.CONTENT_AUTO_APPROVE_PLATFORMS = ["x", "telegram", "discord"]
    settings.CONTENT_QUIET_HOURS = "0-6"


def _drain(channel: str) -> list[dict[str, Any]]:
    layer = get_channel_layer()

    async def receive_all() -> list[dict[str, Any]]:
        messages = []
        while True:
            try:
                messages.append(await asyncio.wait_for(layer.receive(channel), timeout=0.2))
            except TimeoutError:
                return messages

    return async_to_sync(receive_all)()


def _run_pipeline(*args: str) -> str:
    out = StringIO()
    call_command("run_pipeline", "--once", *args, stdout=out)
    return out.getvalue()


def _admin_page(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return response.content.decode()


@pytest.mark.usefixtures("embedded_default")
def test_the_nine_agents_run_on_the_demo_world_and_the_admin_shows_their_work() -> None:
    assert set(PHASE_1_AND_2) <= set(registry.names())
    assert {registry.get(name).phase for name in PHASE_1_AND_2} == {1, 2}
    with time_machine.travel(NOW, tick=False) as traveller:
        seed_demo(anchor=ANCHOR)
        strategist = AgentConfig.objects.get(agent_name="content_strategist")
        strategist.parameters = {"slots": {"telegram": ["08:00", "09:00", "12:00", "16:00", "20:00"]}}
        strategist.save()
        candles_before = MarketData.objects.count()
        insights_before = set(Insight.objects.values_list("pk", flat=True))

        layer = get_channel_layer()
        receiver = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(DASHBOARD_GROUP, receiver)

        output = _run_pipeline("--agents", ",".join(PHASE_1_AND_2))

        pipeline = PipelineRun.objects.get()
        assert f"Pipeline run #{pipeline.pk} succeeded: 9 succeeded, 0 failed, 0 skipped" in output
        runs = {run.agent_name: run for run in AgentRun.objects.filter(pipeline_run=pipeline)}
        assert set(runs) == set(PHASE_1_AND_2)
        failed = {name: (run.status, run.summary, run.error) for name, run in runs.items()}
        assert all(run.status == AgentRunStatus.SUCCEEDED for run in runs.values()), failed

        # The dashboard group heard each agent queued, running and succeeded, in that order.
        events = _drain(receiver)
        for name in PHASE_1_AND_2:
            statuses = [
                m["payload"]["status"]
                for m in events
                if m["event"] == "agent_run" and m["payload"]["agent"] == name
            ]
            assert statuses == ["queued", "running", "succeeded"], name
        pipeline_statuses = [m["payload"]["status"] for m in events if m["event"] == "pipeline_run"]
        assert pipeline_statuses == ["queued", "running", "succeeded"]

        # What phase 1 made: fresh candles, new insights, plans due now on every platform, drafts of them.
        new_candles = MarketData.objects.filter(ts__gte=ANCHOR)
        assert new_candles.count() == MarketData.objects.count() - candles_before > 0
        new_insights = Insight.objects.exclude(pk__in=insights_before)
        assert new_insights.exists()
        plans = ContentPlan.objects.all()
        assert {p.platform for p in plans.filter(scheduled_for=NOW)} == PLATFORMS
        due = {d.platform: d for d in ContentDraft.objects.filter(plan__scheduled_for=NOW)}
        assert set(due) == PLATFORMS
        # X went out within the run; the chart posts waited for the charts phase 2 then drew.
        assert due["x"].status == DraftStatus.PUBLISHED
        for platform in ("telegram", "discord"):
            draft = due[platform]
            assert draft.format in IMAGE_FORMATS
            assert draft.status == DraftStatus.APPROVED
            assert draft.image is not None
            assert draft.image.file
        assert not ContentDraft.objects.filter(format__in=IMAGE_FORMATS, image__isnull=True).exists()
        assert runs["publishing"].counters["published.x"] == 1
        assert runs["publishing"].counters["waiting_for_chart"] == 2

        # Five minutes on, the publisher's next run sends the chart posts with their charts.
        traveller.shift(dt.timedelta(minutes=5))
        output = _run_pipeline("--agents", "publishing")
        assert "1 succeeded, 0 failed, 0 skipped" in output
        for draft in due.values():
            draft.refresh_from_db()
            assert draft.status == DraftStatus.PUBLISHED, (draft.platform, draft.last_error)
        posts = list(OutboxMessage.objects.filter(kind=OutboxMessage.Kind.POST).order_by("pk"))
        assert {(m.platform, m.has_image) for m in posts} == {
            ("x", False),
            ("telegram", True),
            ("discord", True),
        }
        published = PublishedContent.objects.filter(draft__in=due.values())
        assert {(p.platform, p.external_id) for p in published} == {
            (m.platform, m.external_id) for m in posts
        }
        later_events = _drain(receiver)
        assert [m["payload"]["status"] for m in later_events if m["event"] == "agent_run"] == [
            "queued",
            "running",
            "succeeded",
        ]

        # The operator sees all of it in the admin.
        client = Client()
        client.force_login(UserFactory.create(email="operator@example.com", staff=True))
        page = _admin_page(client, "/admin/market/marketdata/?ts__year=2026&ts__month=11&ts__day=2")
        for candle in new_candles:
            assert f"/admin/market/marketdata/{candle.pk}/change/" in page
        page = _admin_page(client, "/admin/market/insight/")
        for insight in new_insights:
            assert escape(insight.headline) in page
        page = _admin_page(client, "/admin/content/contentplan/?scheduled_for__year=2026")
        for plan in plans.filter(scheduled_for__date=NOW.date())[:100]:
            assert escape(str(plan)) in page
        page = _admin_page(client, "/admin/content/contentdraft/")
        for draft in ContentDraft.objects.all():
            assert escape(str(draft)) in page
        for platform in ("telegram", "discord"):
            page = _admin_page(client, f"/admin/content/contentdraft/{due[platform].pk}/change/")
            assert escape(str(due[platform].image)) in page
        page = _admin_page(client, "/admin/integrations/outboxmessage/")
        for message in posts:
            assert message.external_id in page
            assert escape(truncatechars(message.text, 80)) in page
        page = _admin_page(client, "/admin/agents/agentrun/")
        for run in AgentRun.objects.all():
            assert f"/admin/agents/agentrun/{run.pk}/change/" in page
            assert escape(truncatechars(run.summary, 80)) in page
        page = _admin_page(client, f"/admin/agents/pipelinerun/{pipeline.pk}/change/")
        assert "Succeeded" in page
