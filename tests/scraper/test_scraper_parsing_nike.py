"""Nike parsing on saved-page fixtures written to the shapes in SOURCES.md."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from scraper.parsing import PageResult, ParseError
from scraper.parsing.nike import (
    api_errors,
    api_url,
    extract_next_data,
    parse_document,
    parse_launch_feed,
    parse_product_wall_api,
)

Render = Callable[[str, str], bytes]
TEST_BASE = "http://127.0.0.1:8999"
API = "http://127.0.0.1:9001"


def _by_code(result: PageResult) -> dict[str | None, object]:
    return {sku.style_code: sku for sku in result.skus}


def _reasons(result: PageResult, dropped: bool) -> list[str]:
    return sorted(p.reason for p in result.problems if p.dropped is dropped)


def test_listing_page_gives_one_sku_per_colourway(render: Render) -> None:
    url = f"{TEST_BASE}/w/mens-shoes-nik1zy7ok"
    result = parse_document(render("nike_listing.html", TEST_BASE), url, "nike", API)
    skus = _by_code(result)
    assert sorted(c for c in skus if c) == ["CW2288-111", "DD1391-100", "DD1391-300", "HQ1234-001"]
    panda = result.skus[0]
    assert panda.style_code == "DD1391-100"
    assert panda.title == "Nike Dunk Low Retro"
    assert panda.weak_model == "Nike Dunk Low"
    assert panda.colourway == "White/Black/White"
    assert panda.product_key == "DD1391"
    assert panda.page_url == f"{TEST_BASE}/t/dunk-low-retro-mens-shoes-76KnBL/DD1391-100"
    assert panda.image_urls == (
        f"{TEST_BASE}/images/dunk-panda-sq.jpg",
        f"{TEST_BASE}/images/dunk-panda-pt.webp",
    )
    assert panda.extra["subtitle"] == "Men's Shoes"
    green = skus["DD1391-300"]
    assert green.page_url == f"{TEST_BASE}/t/dunk-low-retro-mens-shoes-76KnBL/DD1391-300"  # type: ignore[attr-defined]
    af1 = skus["CW2288-111"]
    assert af1.weak_model == "Nike Air Force 1"  # type: ignore[attr-defined]


def test_listing_page_reports_what_it_dropped_and_what_is_missing(render: Render) -> None:
    url = f"{TEST_BASE}/w/mens-shoes-nik1zy7ok"
    result = parse_document(render("nike_listing.html", TEST_BASE), url, "nike", API)
    assert _reasons(result, dropped=True) == [
        "malformed_product",  # a grouping without products
        "malformed_product",  # a string where a product should be
        "no_images",
        "no_style_code",
        "not_footwear",
    ]
    assert _reasons(result, dropped=False) == [
        "missing_colourway",  # CW2288-111 has no displayColors
        "missing_title",  # HQ1234-001 has no copy
    ]
    untitled = _by_code(result)["HQ1234-001"]
    assert untitled.title is None and untitled.weak_model is None  # type: ignore[attr-defined]
    assert all(url in p.detail for p in result.problems if p.reason != "malformed_product")


def test_listing_next_page_is_moved_onto_the_api_base(render: Render) -> None:
    result = parse_document(render("nike_listing.html", TEST_BASE), f"{TEST_BASE}/w/x", "nike", API)
    [next_url] = result.next_urls
    assert next_url.startswith(f"{API}/discover/product_wall/v1/marketplace/US/")
    assert next_url.endswith("&anchor=24&count=24")


def test_product_wall_api_pages(render: Render) -> None:
    page2 = parse_document(
        render("nike_wall_page2.json", TEST_BASE), f"{API}/discover/2", "nike", API
    )
    assert [s.style_code for s in page2.skus] == ["DZ5485-612", "IX3952-600"]
    assert [s.weak_model for s in page2.skus] == ["Air Jordan 1 High", "Nike Moon Shoe"]
    # an absolute api.nike.com link is moved onto the configured base too
    assert page2.next_urls == [
        f"{API}/discover/product_wall/v1/marketplace/US/language/en/consumerChannelId/"
        "d9a5bc42-4b9c-4976-858a-f159cf99c647?path=/w/mens-shoes-nik1zy7ok&queryType=PRODUCTS"
        "&anchor=48&count=24"
    ]
    moon = page2.skus[1]
    assert moon.image_urls == (f"{TEST_BASE}/images/moon-shoe-sq.jpg",)  # repeats removed
    page3 = parse_document(
        render("nike_wall_page3.json", TEST_BASE), f"{API}/discover/3", "nike", API
    )
    assert page3.next_urls == []
    assert len(page3.skus) == 2


def test_api_error_in_a_200_is_a_parse_error(render: Render) -> None:
    body = render("nike_wall_error.json", TEST_BASE)
    assert api_errors(json.loads(body)) == ["NIKE_API_CALLER_ID_HEADER_NOT_PRESENT"]
    with pytest.raises(ParseError, match="NIKE_API_CALLER_ID_HEADER_NOT_PRESENT") as err:
        parse_document(body, f"{API}/discover/x", "nike", API)
    assert err.value.reason == "api_error"
    assert f"{API}/discover/x" in str(err.value)


def test_launch_feed_iterates_every_product_of_every_thread(render: Render) -> None:
    url = f"{API}/product_feed/threads/v2?filter=marketplace(US)"
    result = parse_document(render("nike_launch_feed.json", TEST_BASE), url, "nike", API)
    skus = _by_code(result)
    assert list(skus) == ["CT8532-102", "DM0967-102", "DQ3989-100"]
    men, kids = result.skus[0], result.skus[1]
    assert men.weak_model == kids.weak_model == "Air Jordan 3"
    assert men.colourway == "Sail/Dark Mocha/Black/Hyper Royal"
    assert men.brand == "Jordan"
    assert men.page_url == "https://www.nike.com/launch/t/air-jordan-3-mocha"
    # the gallery (with the carousel's nested nodes) goes to the thread's first product
    assert men.image_urls == (
        f"{TEST_BASE}/images/aj3-mocha-men.jpg",
        f"{TEST_BASE}/images/aj3-mocha-gallery-1.jpg",
        f"{TEST_BASE}/images/aj3-mocha-gallery-2.png",
        f"{TEST_BASE}/images/aj3-mocha-gallery-3.webp",
    )
    assert kids.image_urls == (f"{TEST_BASE}/images/aj3-mocha-gs.jpg",)
    # styleCode + colorCode when styleColor is missing; the title from fullTitle, not "MOCHA"
    bubble = skus["DQ3989-100"]
    assert bubble.title == "Nike Air Max 1 '86 OG 'Big Bubble'"  # type: ignore[attr-defined]
    assert bubble.weak_model == "Nike Air Max 1"  # type: ignore[attr-defined]
    assert _reasons(result, dropped=True) == ["malformed_product", "not_footwear"]


def test_product_page(render: Render) -> None:
    url = f"{TEST_BASE}/t/air-max-90/FQ8822-084"
    result = parse_document(render("nike_product.html", TEST_BASE), url, "nike", API)
    [sku] = result.skus
    assert sku.style_code == "FQ8822-084"
    assert sku.weak_model == "Nike Air Max 90"
    assert sku.colourway == "Cool Grey/Anthracite/White"
    assert sku.page_url == url
    assert sku.image_urls == (
        f"{TEST_BASE}/images/am90-grey-1.jpg",
        f"{TEST_BASE}/images/am90-grey-2.jpg",
    )


def test_page_without_embedded_json(render: Render) -> None:
    with pytest.raises(ParseError) as err:
        parse_document(render("nike_no_json.html", TEST_BASE), f"{TEST_BASE}/w/denied", "nike", API)
    assert err.value.reason == "no_embedded_json"
    assert "/w/denied" in str(err.value)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "bad_json"),
        (b"[1, 2]", "unexpected_shape"),
        (b'{"productGroupings": "none"}', "unexpected_shape"),
        (b'{"objects": null}', "unexpected_shape"),
        (b'<script id="__NEXT_DATA__" type="application/json">{"props": </script>', "bad_json"),
        (
            b'<script id="__NEXT_DATA__" type="application/json">{"props": {}}</script>',
            "unexpected_shape",
        ),
    ],
)
def test_broken_documents_raise_a_named_parse_error(body: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as err:
        parse_document(body, "http://127.0.0.1/doc", "nike", API)
    assert err.value.reason == reason


def test_missing_fields_never_crash() -> None:
    doc = {"productGroupings": [{"products": [{}, None, {"productCode": "DD1391-100"}]}]}
    result = parse_product_wall_api(doc, "http://x/wall", "nike", API)
    assert result.skus == []
    assert _reasons(result, dropped=True) == ["malformed_product", "no_images", "no_style_code"]
    feed = parse_launch_feed({"objects": [{"productInfo": [None, {}]}]}, "http://x/f", "nike", API)
    assert feed.skus == []


def test_extract_next_data_reads_the_script() -> None:
    html = '<html><script type="application/json" id="__NEXT_DATA__">{"a": 1}</script></html>'
    assert extract_next_data(html, "u") == {"a": 1}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("/product_feed/threads/v2?anchor=50", f"{API}/product_feed/threads/v2?anchor=50"),
        ("https://api.nike.com/discover/x?a=1", f"{API}/discover/x?a=1"),
        ("https://elsewhere.example/x", "https://elsewhere.example/x"),
        ("", None),
        (None, None),
        ("relative/path", None),
        ("javascript:alert(1)", None),
    ],
)
def test_api_url(ref: object, expected: str | None) -> None:
    assert api_url(ref, API) == expected
