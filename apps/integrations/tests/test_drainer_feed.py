"""The drainer-domain feed: the real HTTP client against a fake on loopback, and the file twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from apps.core.resilience import PermanentError, RetryPolicy, TransientError
from apps.integrations.drainer_feed import (
    FeedEntry,
    FileDrainerFeed,
    HttpDrainerFeed,
    get_drainer_feed,
    parse_feed,
    seed_feed,
)

NO_RETRY = RetryPolicy(max_attempts=1)


def test_parse_text_json_list_and_metamask_config() -> None:
    assert parse_feed("# c\nbad.xyz  # why\n\nhttps://x.io/p\n", source="t") == [
        FeedEntry("bad.xyz", "why"),
        FeedEntry("https://x.io/p", ""),
    ]
    assert parse_feed('["a.com", "", 3, "b.com"]', source="t") == [FeedEntry("a.com"), FeedEntry("b.com")]
    assert parse_feed('{"fuzzylist": ["x"], "blacklist": ["c.com"]}', source="t") == [FeedEntry("c.com")]
    with pytest.raises(PermanentError, match="no list"):
        parse_feed('{"whitelist": ["ok.com"]}', source="t")
    with pytest.raises(PermanentError, match="not valid JSON"):
        parse_feed("[broken", source="t")


@pytest.mark.django_db
def test_http_feed_with_the_real_client(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/list.txt").respond_with_data("drain.xyz\nclaim-now.site # airdrop\n")
    entries = HttpDrainerFeed(httpserver.url_for("/list.txt"), policy=NO_RETRY).fetch()
    assert entries == [FeedEntry("drain.xyz"), FeedEntry("claim-now.site", "airdrop")]
    [request] = [req for req, _ in httpserver.log]
    assert "CoinLink" in request.headers.get("User-Agent", "")


@pytest.mark.django_db
def test_http_feed_errors_are_classified(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/down").respond_with_data("", status=503)
    httpserver.expect_request("/missing").respond_with_data("", status=404)
    with pytest.raises(TransientError):
        HttpDrainerFeed(httpserver.url_for("/down"), policy=NO_RETRY).fetch()
    with pytest.raises(PermanentError):
        HttpDrainerFeed(httpserver.url_for("/missing"), policy=NO_RETRY).fetch()


def test_file_twin_and_the_choice_by_settings(tmp_path: Path, settings: Any) -> None:
    path = tmp_path / "feed.txt"
    path.write_text("one.xyz\n")
    assert FileDrainerFeed(path).fetch() == [FeedEntry("one.xyz")]
    with pytest.raises(PermanentError):
        FileDrainerFeed(tmp_path / "nope.txt").fetch()
    settings.MODERATION_DRAINER_FEED = "https://feeds.example/list.txt"
    assert isinstance(get_drainer_feed(), HttpDrainerFeed)
    settings.MODERATION_DRAINER_FEED = str(path)
    assert get_drainer_feed().fetch() == [FeedEntry("one.xyz")]
    settings.MODERATION_DRAINER_FEED = ""
    assert get_drainer_feed().source == seed_feed().source


def test_the_project_seed_list_parses() -> None:
    entries = seed_feed().fetch()
    assert len(entries) >= 20
    assert all("." in entry.domain and " " not in entry.domain for entry in entries)
