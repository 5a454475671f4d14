"""Normalisation: look-alike characters, name skeletons, links and their domains (IDNA/punycode)."""

from __future__ import annotations

import pytest

from apps.moderation.engine.text import (
    display_domain,
    domain_and_parents,
    find_links,
    fold,
    normalise_domain,
    skeleton,
    within_one_edit,
)


def test_fold_maps_cyrillic_greek_fullwidth_and_zero_width_to_latin() -> None:
    assert fold("S\u0435\u0435d phr\u0430s\u0435") == "seed phrase"  # Cyrillic ie and a
    assert fold("\u0440ump") == "pump"  # Cyrillic er reads as a Latin p
    assert fold("ＦＲＥＥ") == "free"  # full-width
    assert fold("\U0001d41c\U0001d428\U0001d422\U0001d427") == "coin"  # mathematical bold
    assert fold("wal\u200blet") == "wallet"
    assert fold("Ο\u03bfps") == "oops"  # Greek capital and small omicron
    assert fold("café") == "cafe"


@pytest.mark.parametrize(
    "shown",
    ["CoinLink", "coinlink", "C0INL1NK", "Co1nLink", "\u0421oinLink", "Coin_Link", "Coin.Link", "CoinLinк"],
)
def test_skeleton_makes_look_alike_names_equal(shown: str) -> None:
    assert skeleton(shown) == skeleton("CoinLink")


def test_skeleton_keeps_different_names_apart() -> None:
    assert skeleton("CoinBase") != skeleton("CoinLink")
    assert skeleton("rnetamask") == skeleton("metamask")  # "rn" reads as "m"


def test_within_one_edit() -> None:
    assert within_one_edit("coinlink", "coinlink")
    assert within_one_edit("coinlink", "coinllnk")
    assert within_one_edit("coinlink", "coinlinks")
    assert within_one_edit("coinlink", "colnlnk") is False
    assert within_one_edit("abc", "xyz") is False


def test_find_links_finds_urls_and_bare_domains_but_not_abbreviations() -> None:
    text = "see https://example.org/a?b=1, claim-eth.xyz/drop and t.me/group. e.g. v2.0 is out, ok."
    assert find_links(text) == ["https://example.org/a?b=1", "claim-eth.xyz/drop", "t.me/group"]
    assert find_links("no links here, i.e. none") == []
    assert find_links("(www.Example.com)") == ["www.Example.com"]


def test_normalise_domain_strips_scheme_www_port_and_case() -> None:
    assert normalise_domain("HTTPS://WWW.Example.COM:8443/path?q=1") == "example.com"
    assert normalise_domain("user:pw@login.example.com/x") == "login.example.com"
    assert normalise_domain("bit.ly/abc") == "bit.ly"
    assert normalise_domain("") == ""


def test_unicode_domains_become_punycode_and_back() -> None:
    # "metamask" with a Cyrillic a: IDNA turns it into its xn-- form, which is what gets compared and stored.
    spoof = "met\u0430mask.io"
    encoded = normalise_domain(f"https://{spoof}/claim")
    assert encoded.startswith("xn--")
    assert encoded.endswith(".io")
    assert normalise_domain(f"https://{encoded}/") == encoded
    assert display_domain(encoded) == spoof
    assert skeleton(display_domain(encoded).split(".")[0]) == skeleton("metamask")


def test_domain_and_parents_never_yields_the_bare_tld() -> None:
    assert domain_and_parents("a.b.example.com") == ["a.b.example.com", "b.example.com", "example.com"]
    assert domain_and_parents("example.com") == ["example.com"]
