"""Every membership state against every members' surface.

Each state is built the way the entitlement ledger holds it after billing has done its work (subscription rows
from the billing factories, entitlement rows written directly), so this test depends on no webhook code. Access
follows the ledger alone; every refusal asserts that nothing of the members' content was shown: no body text, no
file bytes, on any page, page number or search.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django.fixtures import Settings
from rest_framework.pagination import PageNumberPagination

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import EntitlementFactory, PlanFactory, SubscriptionFactory
from apps.billing.models import EntitlementSource, SubscriptionStatus
from apps.billing.selectors import member_access_state
from apps.content.factories import ExclusiveContentFactory, MediaFactory, PublishedContentFactory
from apps.content.models import ExclusiveContent, ExclusiveStatus, Media
from apps.portal import member_views

pytestmark = pytest.mark.django_db

PREMIUM = "portal.premium"


# --- the states, as the ledger holds them ----------------------------------------------------------------------


def _free(now: dt.datetime) -> User:
    return UserFactory.create()


def _trialing(now: dt.datetime) -> User:
    user = UserFactory.create()
    trial_end = now + dt.timedelta(days=6)
    subscription = SubscriptionFactory.create(
        user=user,
        status=SubscriptionStatus.TRIALING,
        current_period_start=now - dt.timedelta(days=1),
        current_period_end=trial_end,
        trial_end=trial_end,
    )
    EntitlementFactory.create(
        user=user,
        key=PREMIUM,
        source=EntitlementSource.TRIAL,
        subscription=subscription,
        starts_at=now - dt.timedelta(days=1),
        ends_at=trial_end,
    )
    return user


def _active(now: dt.datetime) -> User:
    user = UserFactory.create()
    subscription = SubscriptionFactory.create(
        user=user,
        status=SubscriptionStatus.ACTIVE,
        current_period_start=now - dt.timedelta(days=10),
        current_period_end=now + dt.timedelta(days=20),
    )
    EntitlementFactory.create(
        user=user,
        key=PREMIUM,
        source=EntitlementSource.SUBSCRIPTION,
        subscription=subscription,
        starts_at=now - dt.timedelta(days=10),
        ends_at=now + dt.timedelta(days=20),
    )
    return user


def _past_due(now: dt.datetime, *, days_overdue: int) -> User:
    """Payment failed ``days_overdue`` days ago on a plan with three days of grace: the period's entitlement
    ended when the payment failed, and a grace entitlement runs for the grace days."""
    user = UserFactory.create()
    past_due_since = now - dt.timedelta(days=days_overdue)
    subscription = SubscriptionFactory.create(
        user=user,
        plan=PlanFactory.create(grace_days=3),
        status=SubscriptionStatus.PAST_DUE,
        current_period_start=past_due_since - dt.timedelta(days=30),
        current_period_end=past_due_since,
        past_due_since=past_due_since,
    )
    EntitlementFactory.create(
        user=user,
        key=PREMIUM,
        source=EntitlementSource.SUBSCRIPTION,
        subscription=subscription,
        starts_at=past_due_since - dt.timedelta(days=30),
        ends_at=past_due_since,
    )
    EntitlementFactory.create(
        user=user,
        key=PREMIUM,
        source=EntitlementSource.GRACE,
        subscription=subscription,
        starts_at=past_due_since,
        ends_at=past_due_since + dt.timedelta(days=3),
    )
    return user


def _canceled(now: dt.datetime) -> User:
    user = UserFactory.create()
    ended = now - dt.timedelta(days=2)
    subscription = SubscriptionFactory.create(
        user=user,
        status=SubscriptionStatus.CANCELED,
        current_period_start=ended - dt.timedelta(days=30),
        current_period_end=ended,
        canceled_at=ended - dt.timedelta(days=10),
        ended_at=ended,
    )
    EntitlementFactory.create(
        user=user,
        key=PREMIUM,
        source=EntitlementSource.SUBSCRIPTION,
        subscription=subscription,
        starts_at=ended - dt.timedelta(days=30),
        ends_at=ended,
    )
    return user


@dataclass(frozen=True)
class State:
    name: str
    build: Callable[[dt.datetime], User] | None  # None: nobody is logged in
    entitled: bool


STATES = [
    State("anonymous", None, entitled=False),
    State("free", _free, entitled=False),
    State("trialing", _trialing, entitled=True),
    State("active", _active, entitled=True),
    State("past_due_grace", lambda now: _past_due(now, days_overdue=1), entitled=True),
    State("past_due_expired", lambda now: _past_due(now, days_overdue=5), entitled=False),
    State("canceled", _canceled, entitled=False),
]
ENTITLED = [state.name for state in STATES if state.entitled]


# --- what there is to see --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Library:
    newest: ExclusiveContent
    on_page_two: ExclusiveContent
    elite: ExclusiveContent
    draft: ExclusiveContent
    chart: Media
    standalone: Media

    @property
    def readable(self) -> list[ExclusiveContent]:
        return [self.newest, self.on_page_two]


def _body(tag: str) -> str:
    return f"Members-only reasoning {tag}: the basis trade unwinds first.\n\nThen the {tag} funding flips."


def _file_bytes(tag: str) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + f"members-only pixels {tag}".encode()


ALL_BODIES = [_body(tag) for tag in ("newest", "page-two", "elite", "draft")]
ALL_BYTES = [_file_bytes(tag) for tag in ("chart", "standalone")]


@pytest.fixture(autouse=True)
def _private_media_root(settings: Settings, tmp_path: Path) -> None:
    settings.PRIVATE_MEDIA_ROOT = tmp_path / "private-media"


@pytest.fixture
def library(monkeypatch: pytest.MonkeyPatch) -> Library:
    # Small pages, so that a second page exists in both the portal and the API.
    monkeypatch.setattr(member_views, "LIBRARY_PAGE_SIZE", 1)
    monkeypatch.setattr(PageNumberPagination, "page_size", 1)
    now = timezone.now()
    chart = MediaFactory.create(file=ContentFile(_file_bytes("chart"), name="chart.png"))
    standalone = MediaFactory.create(
        file=ContentFile(_file_bytes("standalone"), name="standalone.png"), is_exclusive=True
    )

    def piece(tag: str, **kwargs: object) -> ExclusiveContent:
        return ExclusiveContentFactory.create(
            title=f"Library piece {tag}", summary=f"Teaser of {tag}.", body=_body(tag), **kwargs
        )

    newest = piece("newest", slug="newest", published_at=now)
    newest.media.set([chart])
    on_page_two = piece("page-two", slug="page-two", published_at=now - dt.timedelta(days=1))
    elite = piece(
        "elite", slug="elite", required_entitlement="portal.elite", published_at=now - dt.timedelta(days=2)
    )
    draft = piece("draft", slug="draft", status=ExclusiveStatus.DRAFT, published_at=None)
    PublishedContentFactory.create(text="A public post about the basis trade.")
    return Library(newest, on_page_two, elite, draft, chart, standalone)


@pytest.fixture(params=STATES, ids=lambda state: state.name)
def state(request: pytest.FixtureRequest, client: Client) -> State:
    chosen: State = request.param
    user = chosen.build(timezone.now()) if chosen.build is not None else None
    if user is not None:
        client.force_login(user)
    # The state is what billing would call it, so the matrix tests the states it names.
    assert member_access_state(user=user) == chosen.name
    return chosen


def _shows_no_members_content(content: bytes, *, except_bodies: tuple[str, ...] = ()) -> None:
    text = content.decode(errors="replace")
    for body in ALL_BODIES:
        if body in except_bodies:
            continue
        for paragraph in body.split("\n\n"):
            assert paragraph not in text, f"leaked: {paragraph!r}"
    for data in ALL_BYTES:
        assert data not in content, "leaked file bytes"


def _paragraphs_html(body: str) -> str:
    return "\n\n".join(f"<p>{paragraph}</p>" for paragraph in body.split("\n\n"))


# --- the surfaces ----------------------------------------------------------------------------------------------


def test_library_list(client: Client, state: State, library: Library) -> None:
    first = client.get(reverse("portal:library"))
    second = client.get(reverse("portal:library"), {"page": 2})
    third = client.get(reverse("portal:library"), {"page": 3})

    for response in (first, second, third):
        assert response.status_code == 200
        # Titles and summaries are public; bodies are never in the list, not even for members.
        _shows_no_members_content(response.content)
    assert "Library piece newest" in first.content.decode()
    assert "Teaser of page-two." in second.content.decode()
    assert "Library piece elite" in third.content.decode()
    assert (
        "Library piece draft" not in first.content.decode() + second.content.decode() + third.content.decode()
    )
    newest_link = f'href="{reverse("portal:library_item", args=["newest"])}"'
    page_two_link = f'href="{reverse("portal:library_item", args=["page-two"])}"'
    assert (newest_link in first.content.decode()) is state.entitled
    assert (page_two_link in second.content.decode()) is state.entitled
    assert reverse("portal:library_item", args=["elite"]) not in third.content.decode()
    # The call to buy is for those who can't read the library (the nav links to the plans for everyone).
    assert ("See membership plans" in first.content.decode()) is not state.entitled


@pytest.mark.parametrize("query", ["basis trade", "funding flips", "unwinds", "Library piece", "Teaser"])
def test_library_search(client: Client, state: State, library: Library, query: str) -> None:
    response = client.get(reverse("portal:library"), {"q": query})

    assert response.status_code == 200
    _shows_no_members_content(response.content)
    found = [piece.slug for piece in response.context["page_obj"]]
    # Words that appear only in bodies find nothing, for anyone.
    assert found == ([] if query in {"basis trade", "funding flips", "unwinds"} else ["newest"])


@pytest.mark.parametrize("slug", ["newest", "page-two"])
def test_library_item(client: Client, state: State, library: Library, slug: str) -> None:
    piece = ExclusiveContent.objects.get(slug=slug)
    url = reverse("portal:library_item", args=[slug])

    response = client.get(url)

    if state.entitled:
        assert response.status_code == 200
        assert _paragraphs_html(piece.body) in response.content.decode()
        _shows_no_members_content(response.content, except_bodies=(piece.body,))
    elif state.name == "anonymous":
        assert response.status_code == 302
        assert response["Location"] == f"{reverse('account_login')}?next={url}"
        _shows_no_members_content(response.content)
    else:
        assert response.status_code == 403
        assert piece.title in response.content.decode()
        _shows_no_members_content(response.content)


@pytest.mark.parametrize(
    ("slug", "anonymous_status", "member_status"), [("elite", 302, 403), ("draft", 302, 404)]
)
def test_library_item_beyond_the_plan(
    client: Client, state: State, library: Library, slug: str, anonymous_status: int, member_status: int
) -> None:
    response = client.get(reverse("portal:library_item", args=[slug]))

    if state.name == "anonymous":
        assert response.status_code == anonymous_status
    elif slug == "draft" or state.entitled:
        assert response.status_code == member_status
    else:
        assert response.status_code == 403
    _shows_no_members_content(response.content)


@pytest.mark.parametrize("which", ["chart", "standalone"])
def test_member_media(client: Client, state: State, library: Library, which: str) -> None:
    media: Media = getattr(library, which)
    url = reverse("portal:member_media", args=[media.pk])

    response = client.get(url)

    if state.entitled:
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == _file_bytes(which)  # type: ignore[attr-defined]
        assert response["Cache-Control"] == "private, no-store"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Disposition"].startswith("inline; filename=")
    elif state.name == "anonymous":
        assert response.status_code == 302
        assert response["Location"] == f"{reverse('account_login')}?next={url}"
        _shows_no_members_content(response.content)
    else:
        assert response.status_code == 403
        _shows_no_members_content(response.content)


def test_api_list(client: Client, state: State, library: Library) -> None:
    first = client.get("/api/v1/exclusive/")
    second = client.get("/api/v1/exclusive/", {"page": 2})

    if state.entitled:
        assert first.status_code == 200
        assert [row["body"] for row in first.json()["results"]] == [library.newest.body]
        assert [row["body"] for row in second.json()["results"]] == [library.on_page_two.body]
        assert first.json()["count"] == 2  # neither the higher tier's piece nor the draft
        _shows_no_members_content(
            first.content + second.content, except_bodies=(library.newest.body, library.on_page_two.body)
        )
    else:
        for response in (first, second):
            assert response.status_code == 403
            assert response["Content-Type"] == "application/json"
            expected = "not_authenticated" if state.name == "anonymous" else "permission_denied"
            assert response.json()["error"]["code"] == expected
            assert set(response.json()) == {"error"}
            _shows_no_members_content(response.content)


@pytest.mark.parametrize("slug", ["newest", "page-two", "elite", "draft", "no-such-piece"])
def test_api_detail(client: Client, state: State, library: Library, slug: str) -> None:
    response = client.get(f"/api/v1/exclusive/{slug}/")

    readable = {piece.slug for piece in library.readable}
    if state.entitled and slug in readable:
        assert response.status_code == 200
        assert response.json()["body"] == ExclusiveContent.objects.get(slug=slug).body
        _shows_no_members_content(response.content, except_bodies=(response.json()["body"],))
        return
    if state.entitled:
        assert response.status_code == (403 if slug == "elite" else 404)
    else:
        assert response.status_code == 403
        assert set(response.json()) == {"error"}
    _shows_no_members_content(response.content)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api/v1/",
        "/api/v1/published-content/",
        "/api/v1/insights/",
        "/api/v1/me/",
        "/account/",
        "/account/links/",
    ],
)
def test_no_public_or_account_page_shows_members_content(
    client: Client, state: State, library: Library, path: str
) -> None:
    response = client.get(path)

    assert response.status_code in {200, 302, 403}
    _shows_no_members_content(response.content)


def test_files_have_no_public_address(state: State, library: Library, settings: Settings) -> None:
    for media in (library.chart, library.standalone):
        assert media.file.url == ""
        assert not Path(media.file.path).is_relative_to(Path(settings.MEDIA_ROOT))
