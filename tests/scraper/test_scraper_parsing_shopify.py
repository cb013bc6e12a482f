"""Shopify parsing on products.json fixtures written to the shapes in SOURCES.md."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from scraper.parsing import ParseError
from scraper.parsing.shopify import (
    is_footwear,
    parse_products_page,
    products_url,
    store_base,
    style_code_of,
    tags_of,
)
from tests.scraper.damage import damaged

Render = Callable[[str, str], bytes]
STORE = "http://127.0.0.1:8999"


def _page1(render: Render):
    url = products_url(STORE, 1)
    return parse_products_page(render("shopify_products_page1.json", STORE), url, STORE, "shopify")


def test_keeps_footwear_and_finds_style_codes_where_stores_put_them(render: Render) -> None:
    result = _page1(render)
    found = {s.title: (s.style_code, s.extra.get("style_code_from")) for s in result.skus}
    assert found == {
        "Air Force 1 '07 Premium (Black)": ("FQ8822-084", "tags"),
        "Air Jordan 850000 Retro 'University Blue'": ("850000-116", "handle"),
        "Nike Blazer Mid '77 Vintage - White/Black": ("DV0833-101", "body_html"),
        "Nike Dunk Low Retro": ("DD1391-100", "image_name"),
        "Nike Air Max Plus": ("HF1234-001", "tags"),
        None: ("FB9660-002", "image_name"),
        "990v6 Made in USA": (None, None),
    }


def test_weak_labels_and_images(render: Render) -> None:
    skus = {s.style_code: s for s in _page1(render).skus}
    af1 = skus["FQ8822-084"]
    assert af1.weak_model == "Nike Air Force 1"
    assert af1.colourway == "Black"
    assert af1.brand == "NIKE"
    assert af1.page_url == f"{STORE}/products/air-force-1-07-premium-black"
    assert af1.image_urls == (
        f"{STORE}/cdn/shop/files/af1-black-1.jpg?v=1700000000",
        f"{STORE}/cdn/shop/files/am90-grey-1-copy.jpg?v=1700000000",
    )
    assert af1.product_key == f"{STORE}#7001"
    assert skus["DD1391-100"].colourway == "White/Black"  # from the Color option
    assert skus["DV0833-101"].colourway == "White/Black"  # from the title suffix
    assert skus["DV0833-101"].weak_model == "Nike Blazer Mid"
    assert skus["850000-116"].weak_model == "Air Jordan 850000"
    nb = skus[None]
    assert nb.weak_model == "New Balance 990v6 Made in USA"
    # a protocol-relative image URL takes the store's scheme
    assert nb.image_urls == (f"{STORE}/cdn/shop/files/nb-990v6.jpg",)


def test_variant_sku_is_never_the_style_code(render: Render) -> None:
    skus = _page1(render).skus
    assert all(s.style_code is None or not s.style_code.startswith("194956") for s in skus)
    product = {
        "handle": "plain",
        "variants": [{"sku": "DD1391-100"}],
        "images": [{"src": "https://cdn.example/a.jpg"}],
    }
    assert style_code_of(product) == (None, None)


def test_drops_apparel_socks_and_imageless_products_and_counts_missing_fields(
    render: Render,
) -> None:
    result = _page1(render)
    dropped = sorted(p.reason for p in result.problems if p.dropped)
    assert dropped == ["malformed_product", "no_images", "not_footwear", "not_footwear"]
    kept = sorted(p.reason for p in result.problems if not p.dropped)
    assert kept == [
        "missing_colourway",  # Jordan 850000: no colour anywhere
        "missing_colourway",  # Air Max Plus
        "missing_colourway",  # the untitled one
        "missing_colourway",  # New Balance
        "missing_style_code",  # New Balance
        "missing_title",
    ]
    assert not any("hoodie" in (s.title or "").lower() for s in result.skus)


def test_paging(render: Render) -> None:
    result = _page1(render)
    assert result.next_urls == [f"{STORE}/products.json?limit=250&page=2"]
    page2 = parse_products_page(
        render("shopify_products_page2.json", STORE), products_url(STORE, 2), STORE, "shopify"
    )
    assert [s.style_code for s in page2.skus] == ["CT8532-102"]
    assert page2.skus[0].weak_model == "Air Jordan 3"
    assert page2.next_urls == [f"{STORE}/products.json?limit=250&page=3"]
    last = parse_products_page(
        render("shopify_products_empty.json", STORE), products_url(STORE, 3), STORE, "shopify"
    )
    assert last.skus == [] and last.next_urls == []


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["A", " B ", ""], ["A", "B"]),
        ("Nike, Sneakers,HF1234-001 , Men", ["Nike", "Sneakers", "HF1234-001", "Men"]),
        ("", []),
        (None, []),
        ([1, "x"], ["x"]),
    ],
)
def test_tags_old_and_new_style(tags: object, expected: list[str]) -> None:
    assert tags_of({"tags": tags}) == expected


@pytest.mark.parametrize(
    ("product", "expected"),
    [
        ({"product_type": "Footwear"}, True),
        ({"product_type": "Men's Shoes"}, True),
        ({"product_type": "High Top Sneakers"}, True),
        ({"product_type": "Shoe Care"}, False),
        ({"product_type": "Socks"}, False),
        ({"product_type": "T-Shirts"}, False),
        ({"product_type": "Slides"}, False),
        ({"product_type": "", "tags": "Nike, Sneakers"}, True),
        ({"product_type": "", "tags": ["Sneakers", "Accessories"]}, False),
        ({"tags": []}, False),
        ({"product_type": "Gift Card"}, False),
    ],
)
def test_is_footwear(product: dict[str, object], expected: bool) -> None:
    assert is_footwear(product) is expected


def test_store_base() -> None:
    assert store_base("kith.com") == "https://kith.com"
    assert store_base("http://127.0.0.1:8000/collections/x") == "http://127.0.0.1:8000"
    with pytest.raises(ValueError, match="ftp://x"):
        store_base("ftp://x")


@pytest.mark.parametrize("body", [b"nope", b'{"products": {}}', b"[]"])
def test_broken_pages_raise(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_products_page(body, products_url(STORE, 1), STORE, "shopify")


# --- real-world shapes --------------------------------------------------------------------

REAL_STORE = "https://shop.example"


def _real_page():
    body = (Path(__file__).parent / "fixtures" / "shopify_products_real.json").read_bytes()
    return parse_products_page(body, products_url(REAL_STORE, 1), REAL_STORE, "shopify")


def test_real_store_page() -> None:
    result = _real_page()
    skus = {s.style_code: s for s in result.skus}
    assert {code: s.extra["style_code_from"] for code, s in skus.items()} == {
        "FV5029-006": "handle",  # "jordan-fv5029-006-...": a brand prefix before the code
        "DD1391-100": "body_html",  # "SKU: DD1391-100", while variants[].sku is a store id
        "FD5810-001": "handle",  # "nkfd5810-001": prefix glued to the code
        "FQ9112-800": "body_html",  # "<b>Style #</b> FQ9112 800"
    }
    bred = skus["FV5029-006"]
    assert bred.weak_model == "Air Jordan 4"  # 'Jordan 4 Retro "Bred Reimagined" - Mens'
    assert bred.colourway == "Black/Fire Red/Cement Grey/Summit White"  # not "Mens"
    assert bred.image_urls == (  # protocol-relative sources, on https like the store
        "https://cdn.shopify.com/s/files/1/0238/5795/products/FV5029-006_1.jpg?v=1707589355",
        "https://cdn.shopify.com/s/files/1/0238/5795/products/FV5029-006_2.jpg?v=1707589355",
    )
    assert skus["DD1391-100"].colourway == "White/Black"
    gtx = skus["FD5810-001"]
    assert gtx.weak_model == "Nike Air Max 90"
    assert gtx.colourway == "Black/Anthracite"
    assert len(gtx.image_urls) == 1  # images without a src are skipped
    gs = skus["FQ9112-800"]
    assert gs.weak_model == "Air Jordan 1 Low"
    assert gs.colourway is None
    assert sorted(p.reason for p in result.problems) == [
        "missing_colourway",
        "not_footwear",  # a hoodie typed "Lifestyle", tagged Apparel
        "not_footwear",  # "Sneaker Care"
    ]


@pytest.mark.parametrize(
    ("product", "expected"),
    [
        ({"product_type": "", "tags": ["category_Footwear", "type_Sneakers"]}, True),
        ({"product_type": "Lifestyle", "tags": "Dunk, Footwear, Mens"}, True),
        ({"product_type": "Basketball", "tags": ["Shoes"]}, True),
        ({"product_type": "Lifestyle", "tags": ["Apparel", "Hoodies"]}, False),
        ({"product_type": "Lifestyle", "tags": []}, False),
        ({"product_type": "Grade School Footwear"}, True),
        ({"product_type": "Sneaker Care", "tags": ["Footwear"]}, False),
        ({"product_type": "Shoe Trees"}, False),
        ({"product_type": "Footwear Accessories"}, False),
        ({"product_type": "Crewnecks", "tags": ["sneakers"]}, False),
    ],
)
def test_is_footwear_on_real_types_and_tags(product: dict[str, object], expected: bool) -> None:
    assert is_footwear(product) is expected


@pytest.mark.parametrize("name", ["shopify_products_real.json", "shopify_products_page1.json"])
def test_damaged_store_pages_never_crash(name: str) -> None:
    raw = (Path(__file__).parent / "fixtures" / name).read_text().replace("{{BASE}}", REAL_STORE)
    doc = json.loads(raw)
    rng = random.Random(name)
    for _ in range(150):
        body = json.dumps(damaged(doc, rng, rng.choice([0.05, 0.2, 0.5]))).encode()
        try:
            result = parse_products_page(body, products_url(REAL_STORE, 1), REAL_STORE, "shopify")
        except ParseError:
            continue
        for sku in result.skus:
            assert sku.image_urls and all(u.startswith("https://") for u in sku.image_urls)
