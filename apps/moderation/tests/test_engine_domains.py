"""``blocked_domains_refresh``: the configured feed and the seed list into ``moderation_blocked_domains``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from apps.core.resilience import PermanentError
from apps.moderation.engine.types import Verdict
from apps.moderation.models import BlockedDomain
from apps.moderation.services.domains import blocked_domains_refresh
from apps.moderation.services.judging import moderation_judge
from apps.moderation.tests.engine_support import fresh_engine, message

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_engine")]
__all__ = ["fresh_engine"]


def active(source: str | None = None) -> set[str]:
    rows = BlockedDomain.objects.filter(is_active=True)
    return set((rows.filter(source=source) if source else rows).values_list("domain", flat=True))


def test_refresh_from_a_feed_file_keeps_operators_rows_and_deactivates_delisted(
    tmp_path: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_text(
        "# phishing\nhttps://Evil-Claim.xyz/airdrop  # fake airdrop\nxn--metamsk-4ye.io\n\nold.example\n"
    )
    settings.MODERATION_DRAINER_FEED = str(feed)
    BlockedDomain.objects.create(domain="mine.example", source=BlockedDomain.Source.OPERATOR)
    with django_capture_on_commit_callbacks(execute=True):
        first = blocked_domains_refresh()
    assert active("feed") == {"evil-claim.xyz", "xn--metamsk-4ye.io", "old.example"}
    assert "walletsync-node.xyz" in active("seed")
    assert first["added"] == first["listed"]
    assert BlockedDomain.objects.get(domain="evil-claim.xyz").reason == "fake airdrop"
    # The engine sees the new list at once.
    judged = moderation_judge(message=message("airdrop at http://www.evil-claim.xyz"), record=False)
    assert judged.verdict == Verdict.REMOVE

    feed.write_text("evil-claim.xyz\n")
    second = blocked_domains_refresh()
    assert second["added"] == 0
    assert second["deactivated"] == 2
    assert active("feed") == {"evil-claim.xyz"}
    assert active("operator") == {"mine.example"}
    assert set(BlockedDomain.objects.filter(is_active=False).values_list("domain", flat=True)) == {
        "xn--metamsk-4ye.io",
        "old.example",
    }
    feed.write_text("evil-claim.xyz\nold.example\n")
    assert blocked_domains_refresh()["reactivated"] == 1


def test_refresh_from_a_url_through_the_real_client(httpserver: HTTPServer, settings: Any) -> None:
    httpserver.expect_request("/config.json").respond_with_json(
        {"version": 2, "blacklist": ["drain.example"]}
    )
    settings.MODERATION_DRAINER_FEED = httpserver.url_for("/config.json")
    result = blocked_domains_refresh()
    assert result["source"] == settings.MODERATION_DRAINER_FEED
    assert "drain.example" in active("feed")


def test_a_failing_feed_changes_nothing(httpserver: HTTPServer, settings: Any) -> None:
    blocked_domains_refresh()
    before = active()
    httpserver.expect_request("/feed").respond_with_data("gone", status=404)
    settings.MODERATION_DRAINER_FEED = httpserver.url_for("/feed")
    with pytest.raises(PermanentError):
        blocked_domains_refresh()
    assert active() == before
