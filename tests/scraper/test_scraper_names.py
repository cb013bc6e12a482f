"""Style codes and weak model names from free text."""

from __future__ import annotations

import pytest

from scraper.parsing.names import (
    find_labelled_style_codes,
    find_style_codes,
    normalise_style_code,
    weak_model_name,
)


@pytest.mark.parametrize(
    ("title", "brand", "expected"),
    [
        ("Nike Dunk Low Retro", "Nike", "Nike Dunk Low"),
        ("Air Force 1 '07 Premium", "Nike", "Nike Air Force 1"),
        ("Air Force 1 '07 Premium (Black)", "NIKE", "Nike Air Force 1"),
        ("Nike Air Force 1 Low Retro", "Nike", "Nike Air Force 1"),
        ("Air Force 1 Low ’07 LV8", "Nike", "Nike Air Force 1"),
        ("Air Jordan 1 Retro High OG", "Jordan", "Air Jordan 1 High"),
        ("Air Jordan 1 Retro High OG", "Nike", "Air Jordan 1 High"),
        ("Jordan 4 Retro 'Bred'", "Jordan", "Air Jordan 4"),
        ("Women's Air Jordan 1 Low SE", "Nike", "Air Jordan 1 Low"),
        ("Big Kids' Air Jordan 3 Retro (GS)", None, "Air Jordan 3"),
        ("NIKE AIR MAX 90 - WHITE/BLACK", None, "Nike Air Max 90"),
        ("Nike Air Max 90 Men's Shoes", None, "Nike Air Max 90"),
        ("Nike Blazer Mid '77 Vintage", "Nike", "Nike Blazer Mid"),
        ("W Nike Dunk Low Next Nature", "Nike", "Nike Dunk Low"),
        ("Nike SB Dunk Low Pro 'Chicago'", "Nike", "Nike SB Dunk Low Pro"),
        ('Nike Air Max 1 \'86 OG "Big Bubble"', "Nike", "Nike Air Max 1"),
        ("Nike Dunk Low DD1391-100", "Nike", "Nike Dunk Low"),
        ("Nike Moon Shoe OG", "Nike", "Nike Moon Shoe"),
        ("Air Trainer 1", "Nike", "Nike Air Trainer 1"),
        ("NIKE SB DUNK LOW PRO", None, "Nike SB Dunk Low Pro"),
        ("990v6 Made in USA", "New Balance", "New Balance 990v6 Made in USA"),
        ("Gel-Kayano 14", "ASICS", "Asics Gel-Kayano 14"),
        ("Jordan Spizike Low", "Jordan", "Jordan Spizike Low"),
        # real titles of Nike's pages and sneaker stores
        ("Nike Air Jordan 1 Retro High OG", "Nike", "Air Jordan 1 High"),
        ("Jordan Air Jordan 1 Mid", "Jordan", "Air Jordan 1 Mid"),  # vendor put in front
        ('Jordan 1 Retro High OG "Chicago Lost & Found" - Mens', "Jordan", "Air Jordan 1 High"),
        ("Nike x Travis Scott Air Jordan 1 Low OG", "Nike", "Air Jordan 1 Low"),
        ("Off-White x Nike Dunk Low", "Nike", "Nike Dunk Low"),
        ("Nike Air Force 1 Low '07 White/White", "Nike", "Nike Air Force 1"),
        ("Nike Dunk Low Retro Sail/Dark Mocha/Black", "Nike", "Nike Dunk Low"),
        ("Nike Air Max 1/97", "Nike", "Nike Air Max 1/97"),  # digits around the slash: a model
        ("Nike Dunk Low Baby/Toddler Shoes", "Nike", "Nike Dunk Low"),
        ("Nike Dunk Low Older Kids' Shoes", "Nike", "Nike Dunk Low"),
        ("Jordan 4 Retro Little Kids' Shoes", "Nike", "Air Jordan 4"),
        ("Air Jordan 1 Low Infant", "Jordan", "Air Jordan 1 Low"),
        ("Nike Air Max 90 GORE-TEX", "Nike", "Nike Air Max 90"),
        ("Wmns Nike Dunk Low", "NIKE", "Nike Dunk Low"),
        ("Nike Women's Dunk Low", "Nike", "Nike Dunk Low"),
        ("Air Jordan 1 High OG WMNS", "Jordan", "Air Jordan 1 High"),
        ("Nike Dunk Low Retro Men's Shoes", "Nike", "Nike Dunk Low"),
        ("Nike Air Force 1 Mid '07", "Nike", "Nike Air Force 1 Mid"),
        ("Air Jordan 11 Retro Low", "Nike", "Air Jordan 11 Low"),
        ("Jordan Retro 4", "Jordan", "Air Jordan 4"),
    ],
)
def test_weak_model_name_drops_marketing_words(
    title: str, brand: str | None, expected: str
) -> None:
    assert weak_model_name(title, brand) == expected


def test_colourways_of_one_line_share_a_model() -> None:
    titles = ["Nike Dunk Low Retro", "Nike Dunk Low Retro SE", "Nike Dunk Low Retro Premium"]
    assert {weak_model_name(t, "Nike") for t in titles} == {"Nike Dunk Low"}


@pytest.mark.parametrize(
    "titles",
    [
        # Nike's wall, a store (vendor "Jordan"), the launch feed, a kids' listing
        ["Air Jordan 1 Retro High OG", "Nike Air Jordan 1 Retro High OG", "Jordan 1 Retro High OG"],
        ["Air Force 1 '07", "Nike Air Force 1 '07", "Nike Air Force 1 '07 LV8", "AF1 '07 Premium"],
        ["Jordan 4 Retro", "Air Jordan 4 Retro", "Air Jordan 4 Retro (GS)", "Jordan Retro 4"],
        ["Nike Air Max 90", "Air Max 90", "Nike Air Max 90 SE", "NIKE AIR MAX 90"],
    ],
)
def test_one_model_whatever_site_and_age_group(titles: list[str]) -> None:
    assert len({weak_model_name(t, "Nike") for t in titles}) == 1


@pytest.mark.parametrize("title", [None, "", "   ", "Retro OG", "(Black)", 42])
def test_weak_model_name_of_nothing_is_none(title: object) -> None:
    assert weak_model_name(title, "Nike") is None  # type: ignore[arg-type]


def test_find_style_codes_in_free_text() -> None:
    text = "jb850000-116 AURORA_850000-116_PHSRH.png FQ8822-084.jpg dd1391-100 retro1-100 12-345"
    assert find_style_codes(text) == ["850000-116", "FQ8822-084", "DD1391-100"]


def test_find_style_codes_ignores_longer_numbers() -> None:
    assert find_style_codes("DD1391-1000 and 194956623081") == []


def test_labelled_style_codes_accept_a_space_for_the_dash() -> None:
    body = "<li>Style: DV0833 101</li><li>SKU# FQ8822-084</li><li>Colour: White</li>"
    assert find_labelled_style_codes(body) == ["DV0833-101", "FQ8822-084"]
    assert find_labelled_style_codes("Style: White/Black") == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("DD1391-100", "DD1391-100"),
        (" dd1391-300 ", "DD1391-300"),
        ("DD1391 100", "DD1391-100"),
        ("DD1391_100", "DD1391-100"),
        ("jb850000-116", "850000-116"),
        ("DD1391-100 DD1391-101", None),
        ("White/Black", None),
        ("", None),
        (None, None),
        (1391100, None),
    ],
)
def test_normalise_style_code(raw: object, expected: str | None) -> None:
    assert normalise_style_code(raw) == expected
