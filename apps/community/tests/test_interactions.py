"""Recording inbound messages: one row per platform message however often it is read, one person per identity
(created on first sight, shared by linked accounts), bots left out, and a constant number of queries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.accounts.factories import UserFactory
from apps.community.factories import CommunityUserFactory, PlatformIdentityFactory
from apps.community.models import CommunityUser, InteractionKind, PlatformIdentity, UserInteraction
from apps.community.services import interactions as service
from apps.community.services.interactions import (
    community_user_for_identity,
    interaction_reply_claim,
    interaction_reply_record,
    interaction_reply_release,
    interactions_ingest,
    is_question,
)
from apps.community.services.linking import LinkOutcome, platform_identity_link
from apps.content.factories import PublishedContentFactory
from apps.integrations.sentiment import score_text
from apps.integrations.types import InboundEvent

pytestmark = pytest.mark.django_db

T0 = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture(autouse=True)
def clock() -> Iterator[Any]:
    with time_machine.travel(T0 + dt.timedelta(hours=2), tick=False) as traveller:
        yield traveller


def _event(external_id: str, author_id: str = "111", *, platform: str = "x", **fields: Any) -> InboundEvent:
    defaults: dict[str, Any] = {
        "kind": "reply",
        "occurred_at": T0,
        "text": "Nice call",
        "author_username": f"user{author_id}",
        "author_display_name": f"User {author_id}",
    }
    return InboundEvent(
        platform=platform, external_id=external_id, author_id=author_id, **{**defaults, **fields}
    )


# --- questions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What timeframe is this on?", True),
        ("Is there a beginner guide somewhere? I want to learn this properly.", True),
        ("how do I join the members group", True),
        ("@coinlink is this on the daily", True),
        ("@coinlink @maya what's the stop here", True),
        ("Does anyone trade SOL here", True),
        ("Great breakdown as always 🙏", False),
        ("Been stacking BTC all month, this tracks.", False),
        ("Read this https://example.com/post?id=5 later", False),
        ("Island hopping", False),  # "is" only as a whole word
        ("", False),
    ],
)
def test_is_question(text: str, expected: bool) -> None:
    assert is_question(text) is expected


# --- ingestion ------------------------------------------------------------------------------------------------


def test_events_become_interactions_of_people_created_once() -> None:
    post = PublishedContentFactory.create(platform="x", external_id="9001")
    thread = PublishedContentFactory.create(
        platform="x", external_id="9100", part_ids=["9100", "9101", "9102"], published_at=T0 - MINUTE
    )
    events = [
        _event("1", "111", text="What timeframe is this on?", in_reply_to="9001", occurred_at=T0),
        _event(
            "2",
            "111",
            text="Thanks, this helped me a lot today.",
            in_reply_to="9102",
            occurred_at=T0 + MINUTE,
        ),
        _event("3", "222", kind="mention", text="@coinlink BTC looking strong", occurred_at=T0 + 2 * MINUTE),
        _event("4", "333", kind="dm", text="Do you have a paid group?", occurred_at=T0 + 3 * MINUTE),
        _event("3", "222", kind="mention", text="@coinlink BTC looking strong", occurred_at=T0 + 2 * MINUTE),
    ]

    result = interactions_ingest(events=events)

    assert (result.events, result.interactions_new, result.users_new, result.questions_new) == (5, 4, 3, 2)
    assert [i.external_id for i in result.interactions] == ["1", "2", "3", "4"]
    rows = {i.external_id: i for i in UserInteraction.objects.select_related("identity", "community_user")}
    assert rows["1"].content == post
    assert rows["2"].content == thread  # a reply to the thread's last part
    assert rows["3"].content is None
    assert rows["4"].kind == InteractionKind.DIRECT_MESSAGE
    assert [rows[k].is_question for k in "1234"] == [True, False, False, True]
    assert [rows[k].sentiment for k in "1234"] == [score_text(e.text) for e in events[:4]]
    assert rows["1"].community_user == rows["2"].community_user != rows["3"].community_user
    maya = rows["1"].identity
    assert maya is not None
    assert (maya.platform, maya.external_id, maya.username, maya.display_name) == (
        "x",
        "111",
        "user111",
        "User 111",
    )
    person = rows["1"].community_user
    assert (person.display_name, person.first_seen_at, person.last_seen_at) == ("User 111", T0, T0 + MINUTE)
    assert CommunityUser.objects.count() == PlatformIdentity.objects.count() == 3

    again = interactions_ingest(events=events)

    assert (again.events, again.interactions_new, again.users_new, again.questions_new) == (5, 0, 0, 0)
    assert again.interactions == ()
    assert UserInteraction.objects.count() == 4
    assert CommunityUser.objects.count() == 3


def test_a_known_person_is_seen_again_and_renamed() -> None:
    identity = PlatformIdentityFactory.create(
        platform="telegram",
        external_id="555",
        username="old_name",
        community_user__first_seen_at=T0 - dt.timedelta(days=3),
        community_user__last_seen_at=T0 - dt.timedelta(days=3),
    )

    result = interactions_ingest(
        events=[
            _event(
                "-100:1",
                "555",
                platform="telegram",
                kind="comment",
                author_username="new_name",
                occurred_at=T0,
            ),
            _event(
                "-100:2",
                "555",
                platform="telegram",
                kind="comment",
                author_username="",
                occurred_at=T0 - MINUTE,
            ),
        ]
    )

    assert (result.interactions_new, result.users_new) == (2, 0)
    identity.refresh_from_db()
    assert identity.username == "new_name"
    assert identity.community_user.last_seen_at == T0
    assert identity.community_user.first_seen_at == T0 - dt.timedelta(days=3)
    assert set(UserInteraction.objects.values_list("community_user_id", flat=True)) == {
        identity.community_user_id
    }


def test_bots_are_not_people() -> None:
    flagged = PlatformIdentityFactory.create(platform="discord", external_id="42", is_bot=True)

    result = interactions_ingest(
        events=[
            _event("m1", "41", platform="discord", is_bot=True, text="Beep"),
            _event("m2", "42", platform="discord", text="Automated digest"),
            _event("m3", "43", platform="discord", text="What's the target?"),
            _event("", "44", platform="discord", text="no id, cannot be recorded once"),
        ]
    )

    assert (result.interactions_new, result.users_new, result.bots_ignored) == (1, 1, 2)
    assert list(UserInteraction.objects.values_list("external_id", flat=True)) == ["m3"]
    assert not PlatformIdentity.objects.filter(external_id="41").exists()
    assert not flagged.interactions.exists()


def test_linked_accounts_are_one_person_across_platforms() -> None:
    member = UserFactory.create()
    assert platform_identity_link(user=member, platform="x", external_id="398410401202448804").linked
    assert platform_identity_link(user=member, platform="telegram", external_id="6903706669").linked
    person = CommunityUser.objects.get(portal_user=member)

    interactions_ingest(events=[_event("x-1", "398410401202448804", text="What timeframe?")])
    interactions_ingest(
        events=[_event("-100:5", "6903706669", platform="telegram", kind="comment", text="Is this the 4h?")]
    )

    assert CommunityUser.objects.count() == 1
    assert set(UserInteraction.objects.values_list("platform", "community_user_id")) == {
        ("x", person.pk),
        ("telegram", person.pk),
    }


def test_a_record_made_on_first_sight_folds_into_the_member_who_links_it_later() -> None:
    interactions_ingest(events=[_event("-100:1", "777", platform="telegram", kind="comment", occurred_at=T0)])
    stranger = CommunityUser.objects.get()
    member = UserFactory.create()
    platform_identity_link(user=member, platform="x", external_id="888")

    linked = platform_identity_link(user=member, platform="telegram", external_id="777")
    interactions_ingest(
        events=[_event("-100:2", "777", platform="telegram", kind="comment", occurred_at=T0 + MINUTE)]
    )

    assert (linked.outcome, linked.merged_community_user_id) == (LinkOutcome.MERGED, stranger.pk)
    person = CommunityUser.objects.get()
    assert person.portal_user == member
    assert list(UserInteraction.objects.values_list("community_user_id", flat=True)) == [person.pk, person.pk]
    # Last seen never moves back: the member's record was made when they linked, after both messages.
    assert person.last_seen_at == T0 + dt.timedelta(hours=2)


def test_community_user_for_identity() -> None:
    first = community_user_for_identity(
        platform="discord", external_id="900", username="ines.d", display_name="Ines"
    )
    again = community_user_for_identity(platform="discord", external_id="900")
    linked = PlatformIdentityFactory.create(platform="x", external_id="901")

    assert first is not None
    assert first == again
    assert (first.display_name, first.identities.get().username) == ("Ines", "ines.d")
    assert community_user_for_identity(platform="x", external_id="901") == linked.community_user
    assert community_user_for_identity(platform="discord", external_id="902", is_bot=True) is None
    assert CommunityUser.objects.count() == 2
    with pytest.raises(ValueError, match="unknown platform"):
        community_user_for_identity(platform="myspace", external_id="1")


def test_an_identity_created_meanwhile_by_another_writer_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The identity appears between our read and our insert (the bot process met the person first): the
    record made here for them is dropped and their interaction joins the other writer's record."""
    other = PlatformIdentityFactory.create(platform="x", external_id="123")
    original = service._identities_get
    reads: list[int] = []

    def stale_first_read(keys: Any) -> Any:
        reads.append(1)
        return {} if len(reads) == 1 else original(keys)

    monkeypatch.setattr(service, "_identities_get", stale_first_read)

    result = interactions_ingest(events=[_event("t1", "123")])

    assert (result.interactions_new, result.users_new) == (1, 0)
    assert CommunityUser.objects.get() == other.community_user
    assert UserInteraction.objects.get().community_user == other.community_user


def test_ingestion_takes_a_constant_number_of_queries() -> None:
    CommunityUserFactory.create()

    def ingest(prefix: str, count: int) -> int:
        events = [
            _event(f"{prefix}{n}", f"{prefix}-author-{n % 7}", text="What now?", occurred_at=T0 + n * MINUTE)
            for n in range(count)
        ]
        with CaptureQueriesContext(connection) as queries:
            result = interactions_ingest(events=events)
        assert result.interactions_new == count
        return len(queries)

    assert ingest("a", 3) == ingest("b", 60)


# --- answers ----------------------------------------------------------------------------------------------------


def test_a_message_is_claimed_for_an_answer_once() -> None:
    (interaction,) = interactions_ingest(events=[_event("q1", text="What now?")]).interactions
    claimed_at = T0 + dt.timedelta(hours=2)

    assert interaction_reply_claim(interaction_id=interaction.pk, at=claimed_at)
    assert not interaction_reply_claim(interaction_id=interaction.pk, at=claimed_at)
    assert not interaction_reply_release(interaction_id=interaction.pk, claimed_at=claimed_at - MINUTE)
    assert interaction_reply_release(interaction_id=interaction.pk, claimed_at=claimed_at)
    assert interaction_reply_claim(interaction_id=interaction.pk, at=claimed_at)
    interaction_reply_record(interaction_id=interaction.pk, response_external_id="r1")
    # Once the answer went out, the claim is never given back.
    assert not interaction_reply_release(interaction_id=interaction.pk, claimed_at=claimed_at)

    interaction.refresh_from_db()
    assert (interaction.responded_at, interaction.response_external_id) == (claimed_at, "r1")
