"""The members' library, a piece's page and members' files, rendered through the real URLs and templates.

Who may read what comes from entitlement rows alone; ``tests/test_access_matrix.py`` walks every membership
state across every surface, this file covers each view's own behaviour.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import time_machine
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries
from pytest_django.fixtures import Settings as SettingsWrapper

from apps.accounts.factories import UserFactory
from apps.accounts.models import User
from apps.billing.factories import EntitlementFactory
from apps.content.factories import ExclusiveContentFactory, MediaFactory
from apps.content.models import ExclusiveContent, ExclusiveStatus, Media
from apps.portal import member_views

pytestmark = pytest.mark.django_db

BODY = "The funding-rate divergence on SOL perpetuals is the tell.\n\nSecond paragraph: <b>size</b> & risk."
CHART_BYTES = b"\x89PNG\r\n\x1a\n" + b"members-only chart pixels"


@pytest.fixture(autouse=True)
def private_media_root(settings: SettingsWrapper, tmp_path: Path) -> Path:
    root: Path = tmp_path / "private-media"
    settings.PRIVATE_MEDIA_ROOT = root
    return root


def _member(*keys: str) -> User:
    user = UserFactory.create()
    for key in keys:
        EntitlementFactory.create(user=user, key=key)
    return user


def _chart(**kwargs: object) -> Media:
    return MediaFactory.create(file=ContentFile(CHART_BYTES, name="sol-funding.png"), **kwargs)


def _piece(*, media: list[Media] | None = None, **kwargs: object) -> ExclusiveContent:
    kwargs.setdefault("body", BODY)
    piece = ExclusiveContentFactory.create(**kwargs)
    piece.media.set(media or [])
    return piece


# --- the list ---------------------------------------------------------------------------------------------------


def test_visitors_see_titles_and_summaries_and_the_way_to_the_plans(client: Client) -> None:
    piece = _piece(title="SOL funding flips", summary="Why the perp premium matters this week.")

    response = client.get(reverse("portal:library"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "SOL funding flips" in html
    assert "Why the perp premium matters this week." in html
    assert f'href="{reverse("portal:plans")}"' in html
    assert reverse("portal:library_item", args=[piece.slug]) not in html
    assert "funding-rate divergence" not in html
    assert "Members only" in html
    assert f'href="{reverse("account_login")}?next=/library/"' in html


def test_a_free_account_sees_the_same_teaser(client: Client) -> None:
    piece = _piece()
    client.force_login(UserFactory.create())

    html = client.get(reverse("portal:library")).content.decode()

    assert piece.title in html
    assert reverse("portal:library_item", args=[piece.slug]) not in html
    assert "funding-rate divergence" not in html
    assert f'href="{reverse("portal:plans")}"' in html


def test_members_get_links_but_still_no_bodies_in_the_list(client: Client) -> None:
    piece = _piece(title="Weekly report")
    client.force_login(_member("portal.premium"))

    html = client.get(reverse("portal:library")).content.decode()

    assert f'href="{reverse("portal:library_item", args=[piece.slug])}"' in html
    assert "Weekly report" in html
    assert "funding-rate divergence" not in html
    assert "Members only" not in html
    assert "See membership plans" not in html


def test_a_higher_tier_piece_is_a_teaser_for_a_premium_member(client: Client) -> None:
    elite = _piece(title="Elite desk notes", required_entitlement="portal.elite")
    client.force_login(_member("portal.premium"))

    html = client.get(reverse("portal:library")).content.decode()

    assert "Elite desk notes" in html
    assert reverse("portal:library_item", args=[elite.slug]) not in html
    assert "Upgrade your plan" in html


def test_only_published_pieces_are_listed_newest_first(client: Client) -> None:
    now = timezone.now()
    _piece(title="Older report", published_at=now - dt.timedelta(days=7))
    _piece(title="Newer report", published_at=now)
    _piece(title="Unfinished draft", status=ExclusiveStatus.DRAFT, published_at=None)
    _piece(title="Withdrawn piece", status=ExclusiveStatus.ARCHIVED)

    response = client.get(reverse("portal:library"))

    assert [p.title for p in response.context["page_obj"]] == ["Newer report", "Older report"]
    html = response.content.decode()
    assert "Unfinished draft" not in html
    assert "Withdrawn piece" not in html


def test_the_list_pages_through_the_library(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(member_views, "LIBRARY_PAGE_SIZE", 2)
    now = timezone.now()
    for n in range(5):
        _piece(title=f"Report {n}", published_at=now - dt.timedelta(days=n))

    second = client.get(reverse("portal:library"), {"page": 2})
    past_the_end = client.get(reverse("portal:library"), {"page": 99})
    nonsense = client.get(reverse("portal:library"), {"page": "x"})

    assert [p.title for p in second.context["page_obj"]] == ["Report 2", "Report 3"]
    assert "Page 2 of 3" in second.content.decode()
    assert 'href="?page=1"' in second.content.decode()
    assert 'href="?page=3"' in second.content.decode()
    assert [p.title for p in past_the_end.context["page_obj"]] == ["Report 4"]
    assert [p.title for p in nonsense.context["page_obj"]] == ["Report 0", "Report 1"]


def test_search_matches_titles_and_summaries_never_bodies(client: Client) -> None:
    _piece(
        title="Bitcoin halving playbook", summary="Cycle timing.", body="The secret ingredient is patience."
    )
    _piece(title="Altcoin rotation", summary="Where money goes after bitcoin runs.", body="Nothing here.")
    client.force_login(_member("portal.premium"))

    by_title = client.get(reverse("portal:library"), {"q": "halving"})
    by_summary = client.get(reverse("portal:library"), {"q": "BITCOIN"})
    by_body = client.get(reverse("portal:library"), {"q": "secret ingredient"})

    assert [p.title for p in by_title.context["page_obj"]] == ["Bitcoin halving playbook"]
    assert {p.title for p in by_summary.context["page_obj"]} == {
        "Bitcoin halving playbook",
        "Altcoin rotation",
    }
    assert list(by_body.context["page_obj"]) == []
    assert "Nothing matches “secret ingredient”." in by_body.content.decode()


def test_search_keeps_its_query_across_pages(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(member_views, "LIBRARY_PAGE_SIZE", 1)
    _piece(title="ETH one")
    _piece(title="ETH two")

    html = client.get(reverse("portal:library"), {"q": "eth & co"}).content.decode()

    assert "Nothing matches" in html
    html = client.get(reverse("portal:library"), {"q": "ETH"}).content.decode()
    assert 'href="?q=ETH&amp;page=2"' in html


def test_the_list_escapes_what_it_shows(client: Client) -> None:
    _piece(title="<script>alert('t')</script>", summary="<img src=x onerror=alert(1)>")

    html = client.get(reverse("portal:library")).content.decode()

    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;t&#x27;)&lt;/script&gt;" in html
    assert "<img src=x" not in html


@pytest.mark.parametrize("rows", [3, 20])
def test_list_query_count_does_not_grow_with_rows(
    client: Client, django_assert_max_num_queries: DjangoAssertNumQueries, rows: int
) -> None:
    for _ in range(rows):
        _piece(media=[_chart()])
    client.force_login(_member("portal.premium"))

    # Session, user, entitlements, count, rows.
    with django_assert_max_num_queries(5):
        response = client.get(reverse("portal:library"))

    assert len(response.context["page_obj"].object_list) == min(rows, member_views.LIBRARY_PAGE_SIZE)


def test_the_list_is_not_stored_in_shared_caches(client: Client) -> None:
    response = client.get(reverse("portal:library"))

    assert "no-store" in response["Cache-Control"]
    assert "private" in response["Cache-Control"]


# --- a piece ----------------------------------------------------------------------------------------------------


def test_a_member_reads_the_whole_piece_as_escaped_paragraphs(client: Client) -> None:
    chart = _chart(alt_text="SOL funding rate, 30 days", width=1200, height=675)
    document = MediaFactory.create(
        kind=Media.Kind.DOCUMENT,
        file=ContentFile(b"%PDF-1.7 report", name="report.pdf"),
        content_type="application/pdf",
        alt_text="The full report (PDF)",
    )
    piece = _piece(title="SOL funding flips", media=[chart, document])
    client.force_login(_member("portal.premium"))

    response = client.get(reverse("portal:library_item", args=[piece.slug]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<p>The funding-rate divergence on SOL perpetuals is the tell.</p>" in html
    assert "<p>Second paragraph: &lt;b&gt;size&lt;/b&gt; &amp; risk.</p>" in html
    assert "<b>size</b>" not in html
    assert f'src="{reverse("portal:member_media", args=[chart.pk])}"' in html
    assert 'alt="SOL funding rate, 30 days"' in html
    assert f'href="{reverse("portal:member_media", args=[document.pk])}"' in html
    assert "no-store" in response["Cache-Control"]


def test_a_visitor_is_sent_to_log_in_and_sees_nothing(client: Client) -> None:
    piece = _piece()
    url = reverse("portal:library_item", args=[piece.slug])

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next={url}"
    assert b"funding-rate divergence" not in response.content


def test_a_free_account_is_refused_with_the_teaser_only(client: Client) -> None:
    chart = _chart()
    piece = _piece(title="SOL funding flips", summary="The teaser.", media=[chart])
    client.force_login(UserFactory.create())

    response = client.get(reverse("portal:library_item", args=[piece.slug]))

    assert response.status_code == 403
    html = response.content.decode()
    assert "SOL funding flips" in html
    assert "The teaser." in html
    assert "funding-rate divergence" not in html
    assert "Second paragraph" not in html
    assert reverse("portal:member_media", args=[chart.pk]) not in html
    assert f'href="{reverse("portal:plans")}"' in html
    assert "on a higher plan" not in html


def test_a_premium_member_is_refused_a_higher_tier_piece(client: Client) -> None:
    piece = _piece(required_entitlement="portal.elite")
    client.force_login(_member("portal.premium"))

    response = client.get(reverse("portal:library_item", args=[piece.slug]))

    assert response.status_code == 403
    assert "funding-rate divergence" not in response.content.decode()
    assert "on a higher plan" in response.content.decode()


def test_the_higher_tier_opens_its_piece(client: Client) -> None:
    piece = _piece(required_entitlement="portal.elite")
    client.force_login(_member("portal.premium", "portal.elite"))

    response = client.get(reverse("portal:library_item", args=[piece.slug]))

    assert response.status_code == 200
    assert "funding-rate divergence" in response.content.decode()


@pytest.mark.parametrize("status", [ExclusiveStatus.DRAFT, ExclusiveStatus.ARCHIVED])
def test_unpublished_pieces_do_not_exist_even_for_members(client: Client, status: str) -> None:
    piece = _piece(status=status)
    client.force_login(_member("portal.premium"))

    response = client.get(reverse("portal:library_item", args=[piece.slug]))

    assert response.status_code == 404
    assert b"funding-rate divergence" not in response.content


def test_an_expired_entitlement_no_longer_opens_a_piece(client: Client) -> None:
    user = UserFactory.create()
    ends = timezone.now() + dt.timedelta(minutes=5)
    EntitlementFactory.create(user=user, starts_at=ends - dt.timedelta(days=30), ends_at=ends)
    piece = _piece()
    client.force_login(user)
    url = reverse("portal:library_item", args=[piece.slug])

    before = client.get(url)
    with time_machine.travel(ends, tick=False):
        after = client.get(url)

    assert before.status_code == 200
    assert after.status_code == 403
    assert b"funding-rate divergence" not in after.content


def test_a_revoked_entitlement_opens_nothing(client: Client) -> None:
    user = UserFactory.create()
    EntitlementFactory.create(user=user, revoked_at=timezone.now())
    piece = _piece()
    client.force_login(user)

    response = client.get(reverse("portal:library_item", args=[piece.slug]))

    assert response.status_code == 403


# --- members' files ---------------------------------------------------------------------------------------------


def test_a_member_gets_the_file_with_private_headers(client: Client) -> None:
    chart = _chart()
    _piece(media=[chart])
    client.force_login(_member("portal.premium"))

    response = client.get(reverse("portal:member_media", args=[chart.pk]))

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == CHART_BYTES  # type: ignore[attr-defined]
    assert response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"] == f'inline; filename="{Path(str(chart.file.name)).name}"'


def test_files_are_stored_outside_the_public_media_root(
    settings: SettingsWrapper, private_media_root: Path
) -> None:
    chart = _chart()

    stored = Path(chart.file.path)
    assert stored.is_relative_to(private_media_root)
    assert not stored.is_relative_to(Path(settings.MEDIA_ROOT))
    assert stored.read_bytes() == CHART_BYTES
    assert chart.file.url == ""  # no public address to leak


def test_a_visitor_is_sent_to_log_in_for_a_file(client: Client) -> None:
    chart = _chart(is_exclusive=True)
    url = reverse("portal:member_media", args=[chart.pk])

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('account_login')}?next={url}"
    assert CHART_BYTES not in response.content


def test_a_visitor_cannot_tell_members_files_from_other_ids(client: Client) -> None:
    chart = _chart(is_exclusive=True)
    public = _chart(is_exclusive=False)
    draft_chart = _chart(is_exclusive=True)
    _piece(status=ExclusiveStatus.DRAFT, media=[draft_chart])
    answers = {}

    for pk in (chart.pk, public.pk, draft_chart.pk, chart.pk + 1000):
        url = reverse("portal:member_media", args=[pk])
        response = client.get(url)
        answers[pk] = (response.status_code, response["Location"].replace(str(pk), "<id>"))

    assert set(answers.values()) == {(302, f"{reverse('account_login')}?next=/library/media/<id>/")}


def test_a_free_account_is_refused_a_file(client: Client) -> None:
    chart = _chart(is_exclusive=True)
    client.force_login(UserFactory.create())

    response = client.get(reverse("portal:member_media", args=[chart.pk]))

    assert response.status_code == 403
    assert CHART_BYTES not in response.content


def test_a_file_follows_the_tier_of_the_pieces_it_illustrates(client: Client) -> None:
    elite_chart = _chart()
    _piece(required_entitlement="portal.elite", media=[elite_chart])
    shared_chart = _chart()
    _piece(required_entitlement="portal.elite", media=[shared_chart])
    _piece(required_entitlement="portal.premium", media=[shared_chart])
    client.force_login(_member("portal.premium"))

    elite = client.get(reverse("portal:member_media", args=[elite_chart.pk]))
    shared = client.get(reverse("portal:member_media", args=[shared_chart.pk]))

    assert elite.status_code == 403
    assert CHART_BYTES not in elite.content
    assert shared.status_code == 200


@pytest.mark.parametrize("status", [ExclusiveStatus.DRAFT, ExclusiveStatus.ARCHIVED])
def test_files_of_unpublished_pieces_are_nobodys(client: Client, status: str) -> None:
    chart = _chart(is_exclusive=True)
    _piece(status=status, media=[chart])
    client.force_login(_member("portal.premium"))

    response = client.get(reverse("portal:member_media", args=[chart.pk]))

    assert response.status_code == 404


def test_public_files_and_unknown_ids_are_not_served_here(client: Client) -> None:
    public = _chart(is_exclusive=False)
    client.force_login(_member("portal.premium"))

    assert client.get(reverse("portal:member_media", args=[public.pk])).status_code == 404
    assert client.get(reverse("portal:member_media", args=[public.pk + 1000])).status_code == 404


def test_a_file_that_could_run_in_the_browser_is_downloaded_instead(client: Client) -> None:
    page = MediaFactory.create(
        file=ContentFile(b"<script>alert(1)</script>", name="notes.html"),
        content_type="text/html",
        is_exclusive=True,
    )
    client.force_login(_member("portal.premium"))

    response = client.get(reverse("portal:member_media", args=[page.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["Cache-Control"] == "private, no-store"


def test_a_missing_file_is_a_404(client: Client) -> None:
    chart = _chart(is_exclusive=True)
    chart.file.delete(save=False)
    Media.objects.filter(pk=chart.pk).update(file="media/2025/01/gone.png")
    client.force_login(_member("portal.premium"))

    response = client.get(reverse("portal:member_media", args=[chart.pk]))

    assert response.status_code == 404


def test_files_are_only_read(client: Client) -> None:
    chart = _chart(is_exclusive=True)
    client.force_login(_member("portal.premium"))

    response = client.post(reverse("portal:member_media", args=[chart.pk]))

    assert response.status_code == 405
