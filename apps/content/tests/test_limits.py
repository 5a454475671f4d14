"""Every platform's limits, exactly at the edge: X's weighted count, thread parts, Telegram's text and caption,
Discord's content and embed limits; and our own caps and quiet hours."""

from __future__ import annotations

import pytest
from pytest_django.fixtures import Settings

from apps.content import limits
from apps.content.limits import fits, parse_quiet_hours, problems, text_budget
from apps.integrations.llm import THREAD_SEPARATOR


def test_x_counts_280_weighted_characters() -> None:
    assert fits("x", "single_post", "a" * 280)
    assert problems("x", "single_post", "a" * 281) == ["the post is 281 weighted characters; X allows 280"]


def test_x_counts_a_url_as_23_and_most_emoji_as_2() -> None:
    url = "https://example.com/" + "very-long-path/" * 20
    assert fits("x", "single_post", "a" * (280 - 24) + " " + url)
    assert not fits("x", "single_post", "a" * (280 - 23) + " " + url)
    assert fits("x", "single_post", "📈" * 140)
    assert not fits("x", "single_post", "📈" * 140 + "a")


def test_every_part_of_a_thread_is_a_post_of_its_own() -> None:
    parts = ["a" * 280, "b" * 280, "c" * 10]
    assert fits("x", "x_thread", THREAD_SEPARATOR.join(parts))
    assert problems("x", "x_thread", THREAD_SEPARATOR.join([*parts, "d" * 281])) == [
        "post 4 of the thread is 281 weighted characters; X allows 280"
    ]
    # A single post is not split: the same text is far too long for one post.
    assert not fits("x", "single_post", THREAD_SEPARATOR.join(parts))
    assert problems("x", "x_thread", THREAD_SEPARATOR.join(["a"] * 26)) == [
        "26 posts in the thread; at most 25"
    ]


def test_telegram_text_and_caption() -> None:
    assert fits("telegram", "single_post", "a" * 4096)
    assert problems("telegram", "single_post", "a" * 4097) == [
        "the message is 4097 characters; Telegram allows 4096"
    ]
    assert fits("telegram", "telegram_chart_post", "a" * 1024, has_image=True)
    assert problems("telegram", "telegram_chart_post", "a" * 1025, has_image=True) == [
        "the caption is 1025 characters; Telegram allows 1024"
    ]
    # The publisher captions the photo with the first paragraph only.
    assert problems("telegram", "telegram_chart_post", "one\n\ntwo", has_image=True) == [
        "a caption must be one paragraph"
    ]
    assert fits("telegram", "telegram_chart_post", "one\ntwo", has_image=True)


def _embed(title: int = 10, description: int = 10, footer: int = 0) -> dict[str, object]:
    embed: dict[str, object] = {"title": "t" * title, "description": "d" * description}
    if footer:
        embed["footer"] = {"text": "f" * footer}
    return embed


def test_discord_content_and_embed_limits() -> None:
    assert fits("discord", "single_post", "a" * 2000)
    assert problems("discord", "single_post", "a" * 2001) == [
        "the content is 2001 characters; Discord allows 2000"
    ]
    assert fits("discord", "discord_embed", "", _embed(title=256, description=4096))
    assert problems("discord", "discord_embed", "", embed=_embed(title=257)) == [
        "the embed title is over Discord's 256 characters"
    ]
    assert problems("discord", "discord_embed", "", embed=_embed(description=4097)) == [
        "the embed description is over Discord's 4096 characters"
    ]
    assert problems(
        "discord", "discord_embed", "", embed=_embed(title=256, description=4096, footer=1700)
    ) == ["the embeds hold 6052 characters; Discord allows 6000"]
    assert problems("discord", "discord_embed", "") == [
        "the post is empty",
        "a Discord embed post needs its embed",
    ]


def test_the_budget_a_writer_gets() -> None:
    assert text_budget("x", "x_thread") == 280
    assert text_budget("telegram", "telegram_chart_post", has_image=True) == 1024
    assert text_budget("telegram", "long_post") == 4096
    assert text_budget("discord", "discord_embed") == 4096
    assert text_budget("discord", "digest") == 2000
    with pytest.raises(ValueError, match="unknown platform"):
        text_budget("myspace", "single_post")


@pytest.mark.parametrize(
    ("spec", "hours"),
    [
        ("0-6", {0, 1, 2, 3, 4, 5}),
        ("22-6", {22, 23, 0, 1, 2, 3, 4, 5}),
        ("0-6,13-14", {0, 1, 2, 3, 4, 5, 13}),
        ("0-24", set(range(24))),
        ("5-5", set()),
        ("", set()),
        ("none", set()),
    ],
)
def test_quiet_hours(spec: str, hours: set[int]) -> None:
    assert parse_quiet_hours(spec) == hours


@pytest.mark.parametrize("spec", ["late", "6", "0-25", "24-3", "a-b"])
def test_malformed_quiet_hours_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="quiet hours"):
        parse_quiet_hours(spec)


def test_caps_and_quiet_hours_come_from_the_settings_unless_overridden(settings: Settings) -> None:
    settings.CONTENT_DAILY_CAPS = {"x": 8, "telegram": 4}
    settings.CONTENT_QUIET_HOURS = "1-2"

    assert limits.daily_caps() == {"x": 8, "telegram": 4}
    assert limits.daily_caps({"telegram": 1, "discord": 2}) == {"x": 8, "telegram": 1, "discord": 2}
    assert limits.quiet_hours() == {1}
    assert limits.quiet_hours("3-4") == {3}
    assert limits.quiet_hours("none") == set()
