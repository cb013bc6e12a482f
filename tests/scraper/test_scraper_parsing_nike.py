"""Nike parsing on saved-page fixtures written to the shapes in SOURCES.md."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from scraper.parsing import PageResult, ParseError
from scraper.parsing.nike import (
    api_errors,
    api_url,
    extract_next_data,
    image_asset,
    large_image_url,
    parse_document,
    parse_launch_feed,
    parse_product_wall_api,
    style_code_of_url,
)
from tests.scraper.damage import damaged

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
    assert _reasons(result, dropped=True) == ["not_footwear", "thread_without_products"]


def test_product_page(render: Render) -> None:
    url = f"{TEST_BASE}/t/air-max-90/FQ8822-084"
    result = parse_document(render("nike_product.html", TEST_BASE), url, "nike", API)
    grey, kids = result.skus
    assert grey.style_code == "FQ8822-084"
    assert grey.weak_model == "Nike Air Max 90"
    assert grey.colourway == "Cool Grey/Anthracite/White"
    assert grey.page_url == url
    large = (
        f"{TEST_BASE}/a/images/t_PDP_1280_v1/f_auto,q_auto:eco/3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7"
    )
    assert grey.image_urls == (
        f"{TEST_BASE}/images/am90-grey-1.jpg",
        f"{TEST_BASE}/images/am90-grey-2.jpg",
        f"{large}/air-max-90-mens-shoes-6n3vKB.png",
    )
    assert (kids.style_code, kids.weak_model) == ("CD6864-020", "Nike Air Max 90")
    assert kids.colourway == "Black/White-Black"  # from pageProps.colorwayImages
    assert kids.page_url == f"{TEST_BASE}/t/air-max-90/CD6864-020"


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


# --- real-world shapes (trimmed from what saved pages and public scrapers show) ----------

NIKE = "https://www.nike.com"
CDN = "https://static.nike.com/a/images"
LARGE = f"{CDN}/t_PDP_1280_v1/f_auto,q_auto:eco"
FIXTURES = Path(__file__).parent / "fixtures"


def _real(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_real_listing_page_with_noise_nulls_and_other_product_types() -> None:
    url = f"{NIKE}/w/mens-shoes-nik1zy7ok"
    result = parse_document(_real("nike_listing_real.html"), url, "nike")
    skus = _by_code(result)
    assert list(skus) == ["DD1391-100", "DD1391-300", "DZ5485-612", "FD1437-612"]
    panda = skus["DD1391-100"]
    asset = "af53d53d-561f-450a-a483-70a7ceee380f/dunk-low-retro-mens-shoes-76KnBL.png"
    # square and portrait (with a background layer) crops of one asset: one picture, large
    assert panda.image_urls == (f"{LARGE}/{asset}",)  # type: ignore[attr-defined]
    assert panda.image_fallbacks == {  # type: ignore[attr-defined]
        f"{LARGE}/{asset}": f"{CDN}/c_limit,w_318,f_auto/t_product_v1/{asset}"
    }
    green = skus["DD1391-300"]
    assert green.image_urls == (  # type: ignore[attr-defined]
        f"{CDN}/t_default/8b2b9c6a-1f6f-4d3c-9a1e-6c2d8e7f1a2b/dunk-low-retro-mens-shoes-76KnBL.png",
    )  # an original (t_default) is kept as it is
    assert green.page_url.endswith("/DD1391-300?nikemt=true")  # type: ignore[attr-defined]
    chicago = skus["DZ5485-612"]
    assert chicago.colourway == "Varsity Red/Black/Sail/Muslin"  # displayColors as a list  # type: ignore[attr-defined]
    assert chicago.page_url == (  # type: ignore[attr-defined]
        f"{NIKE}/t/air-jordan-1-retro-high-og-mens-shoes-JHpxkn/DZ5485-612"
    )  # a relative pdpUrl string
    assert len(chicago.image_urls) == 2  # two assets: two pictures  # type: ignore[attr-defined]
    kids = skus["FD1437-612"]  # productCode null: the style code from its product page link
    assert kids.weak_model == chicago.weak_model == "Air Jordan 1 High"  # type: ignore[attr-defined]
    assert kids.product_key == "DZ5485"  # type: ignore[attr-defined]
    assert kids.image_fallbacks == {}  # already t_PDP_1280  # type: ignore[attr-defined]
    assert _reasons(result, dropped=True) == [
        "malformed_product",
        "no_style_code",
        "not_footwear",  # APPAREL
        "not_footwear",  # EQUIPMENT
    ]
    assert _reasons(result, dropped=False) == ["missing_colourway"]
    [next_url] = result.next_urls
    assert next_url.startswith("https://api.nike.com/discover/product_wall/v1/marketplace/US/")
    assert "anchor=24&count=24" in next_url


def _with_next_data(next_data: object) -> bytes:
    doc = json.dumps(next_data)
    return (
        f'<html><script id="__NEXT_DATA__" type="application/json">{doc}</script></html>'.encode()
    )


def _next_data(html: bytes) -> dict:
    return extract_next_data(html.decode(), "u")


def test_initial_state_serialised_as_a_json_string() -> None:
    doc = _next_data(_real("nike_listing_real.html"))
    doc["props"]["pageProps"]["initialState"] = json.dumps(
        doc["props"]["pageProps"]["initialState"]
    )
    result = parse_document(_with_next_data(doc), f"{NIKE}/w/x", "nike")
    assert [s.style_code for s in result.skus] == [
        "DD1391-100",
        "DD1391-300",
        "DZ5485-612",
        "FD1437-612",
    ]


def test_a_wall_that_moved_within_the_page_is_found() -> None:
    doc = _next_data(_real("nike_listing_real.html"))
    wall = doc["props"]["pageProps"].pop("initialState")["Wall"]
    doc["props"]["pageProps"]["wallData"] = {"data": wall}
    result = parse_document(_with_next_data(doc), f"{NIKE}/w/x", "nike")
    assert len(result.skus) == 4 and result.next_urls


def test_older_wall_with_colorways_and_style_codes_in_links() -> None:
    state = {
        "Wall": {
            "pageData": {"next": "/product_feed/rollup_threads/v2?anchor=24"},
            "products": [
                {
                    "title": "Nike Air Max 90",
                    "subtitle": "Men's Shoe",
                    "productType": "FOOTWEAR",
                    "cloudProductId": "b8d1",
                    "colorways": [
                        {
                            "colorDescription": "White/Particle Grey",
                            "images": {
                                "squarishURL": f"{CDN}/t_default/ndbgikrmsa0ejcdmkvpg/am90.jpg"
                            },
                            "pdpUrl": "{countryLang}/t/air-max-90-mens-shoe-6n8Tx2/CN8490-100",
                        },
                        {"colorDescription": "Black", "images": {}, "pdpUrl": "/t/x/CN8490-002"},
                        {"images": {"squarishURL": f"{CDN}/t_default/q/am90.jpg"}, "pdpUrl": ""},
                    ],
                },
                {"title": "Nike Club Tee", "productType": "APPAREL", "url": "/t/tee/AR4997-100"},
                "junk",
            ],
        }
    }
    html = f"<script>window.INITIAL_REDUX_STATE={json.dumps(state)};</script>".encode()
    result = parse_document(html, f"{NIKE}/w/mens-shoes", "nike")
    [sku] = result.skus
    assert (sku.style_code, sku.weak_model, sku.colourway) == (
        "CN8490-100",
        "Nike Air Max 90",
        "White/Particle Grey",
    )
    assert sku.page_url == f"{NIKE}/t/air-max-90-mens-shoe-6n8Tx2/CN8490-100"
    assert sku.image_urls == (f"{CDN}/t_default/ndbgikrmsa0ejcdmkvpg/am90.jpg",)
    assert _reasons(result, dropped=True) == [
        "malformed_product",
        "no_images",
        "no_style_code",
        "not_footwear",
    ]
    assert result.next_urls == ["https://api.nike.com/product_feed/rollup_threads/v2?anchor=24"]


def test_real_product_page_gives_every_colourway_and_age_group() -> None:
    url = f"{NIKE}/t/air-max-90-mens-shoes-6n3vKB/FQ8822-084?nikemt=true"
    result = parse_document(_real("nike_product_real.html"), url, "nike")
    skus = _by_code(result)
    assert list(skus) == ["FQ8822-084", "CN8490-100"]
    grey = skus["FQ8822-084"]
    assert grey.page_url == url  # type: ignore[attr-defined]
    assert grey.weak_model == "Nike Air Max 90"  # type: ignore[attr-defined]
    assert grey.extra["subtitle"] == "Men's Shoes"  # type: ignore[attr-defined]
    assets = [u.rsplit("/", 2)[-2] for u in grey.image_urls]  # type: ignore[attr-defined]
    # one picture per asset (square and portrait renditions of one asset are one), no video
    # poster, and the selected product's pictures from its group entry too
    assert assets == [
        "1d5a2f3c-7e8b-4c9d-a0e1-f2a3b4c5d6e7",
        "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7",
        "7b8c9d0e-1f2a-4b3c-9d4e-5f6a7b8c9d0e",
    ]
    assert grey.image_urls[1].startswith(LARGE)  # type: ignore[attr-defined]
    white = skus["CN8490-100"]  # pictures from pageProps.colorwayImages, by style code
    assert white.title == "Nike Air Max 90"  # type: ignore[attr-defined]
    assert white.page_url == f"{NIKE}/t/air-max-90-mens-shoes-6n3vKB/CN8490-100"  # type: ignore[attr-defined]
    assert white.colourway == "White/White/Wolf Grey"  # type: ignore[attr-defined]
    assert len(white.image_urls) == 1 and white.image_fallbacks  # type: ignore[attr-defined]
    assert _reasons(result, dropped=True) == ["no_images", "not_footwear"]  # kids, socks


def test_older_product_page_with_threads_products_in_a_redux_state() -> None:
    url = f"{NIKE}/t/react-escape-run-running-shoe-94nDwX/CV3817-003"
    result = parse_document(_real("nike_product_legacy.html"), url, "nike")
    skus = _by_code(result)
    assert list(skus) == ["CV3817-003", "CV3817-600"]
    black = skus["CV3817-003"]
    assert black.title == "Nike React Escape Run"  # type: ignore[attr-defined]
    assert black.extra["full_title"] == "Nike React Escape Run Women's Running Shoe"  # type: ignore[attr-defined]
    assert black.product_key == "12345678"  # type: ignore[attr-defined]
    assert black.image_urls == (  # type: ignore[attr-defined]
        f"{CDN}/t_default/zk3sqifhyfbfiovulwbn/react-escape-run-running-shoe-94nDwX.jpg",
        f"{LARGE}/r9wqxk2uxgqnoxgowvbd/react-escape-run-running-shoe-94nDwX.jpg",
    )
    pink = skus["CV3817-600"]
    assert pink.page_url == f"{NIKE}/t/react-escape-run-running-shoe-94nDwX/CV3817-600"  # type: ignore[attr-defined]


def test_real_launch_feed_skips_editorial_threads_and_recrops() -> None:
    url = "https://api.nike.com/product_feed/threads/v2?filter=marketplace(US)"
    result = parse_document(_real("nike_launch_feed_real.json"), url, "nike")
    [tiempo] = result.skus
    assert tiempo.style_code == "AA0612-706"
    assert tiempo.page_url == f"{NIKE}/launch/t/tiempo-legend-6-totti-gladiator"
    assert tiempo.colourway == "Metallic Gold/Team Crimson/Black"
    assert tiempo.extra["subtitle"] == "Firm-Ground Soccer Cleat"
    ids = [u.rsplit("/", 2)[-2] for u in tiempo.image_urls]
    # the main image, then one picture per asset of the gallery (t_prod_ss/ps/ls are crops
    # of one asset), without the video card's poster nor the cover card
    assert ids == [
        "DotCom",
        "cbztdyhlnfsocwcvii4d",
        "a6fucmc3powusybmypcj",
        "rcc2e1qrdzwz2acpziw9",
        "jorgvtxjdlgbjvttbjlv",
    ]
    assert _reasons(result, dropped=True) == [
        "no_images",  # the second product: no image of its own, the gallery is the first's
        "no_style_code",  # merchProduct null
        "thread_without_products",  # the editorial thread
    ]
    assert result.next_urls == [
        "https://api.nike.com/product_feed/threads/v2?anchor=50&count=50&filter=marketplace%28US%29"
        "&filter=language%28en%29&filter=channelId%28010794e5-35fe-4e32-aaff-cd2c74f15d9f%29"
    ]


def test_relative_product_links_of_api_answers_are_on_nike_com() -> None:
    doc = {
        "productGroupings": [
            {
                "products": [
                    {
                        "productCode": "HF0001-100",
                        "colorwayImages": {"squarishURL": f"{CDN}/t_default/{'a' * 20}/x.png"},
                        "pdpUrl": {"path": "/t/x/HF0001-100"},
                    }
                ]
            }
        ]
    }
    result = parse_product_wall_api(doc, f"{API}/discover/product_wall/v1/x", "nike", API)
    assert result.skus[0].page_url == f"{NIKE}/t/x/HF0001-100"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"{CDN}/c_limit,w_592,f_auto/t_product_v1/e6da41fa-1be4-4ce5-b89c-22be4f1f02d4/af1.png",
            f"{LARGE}/e6da41fa-1be4-4ce5-b89c-22be4f1f02d4/af1.png",
        ),
        (
            f"{CDN}/c_limit,w_400,f_auto/t_product_v1/u_126ab356-44d8-4a06-89b4-fcdcc8df0245,"
            "c_scale,fl_relative,w_1.0,h_1.0,fl_layer_apply/e6da41fa-1be4-4ce5-b89c-22be4f1f02d4/af1.png",
            f"{LARGE}/e6da41fa-1be4-4ce5-b89c-22be4f1f02d4/af1.png",
        ),
        (
            f"{CDN}/t_PDP_864_v1/f_auto,b_rgb:f5f5f5/r9wqxk2uxgqnoxgowvbd/x.jpg",
            f"{LARGE}/r9wqxk2uxgqnoxgowvbd/x.jpg",
        ),
        (
            f"{CDN}/c_limit,ar_4:5,q_100,w_320,f_auto/918f8b7b-b73c-4617-93ae-9b35b4e0bb77/image?bgc=f1f1f1",
            f"{LARGE}/918f8b7b-b73c-4617-93ae-9b35b4e0bb77/image?bgc=f1f1f1",
        ),
        # kept: originals, pictures large enough, other shapes and hosts
        (f"{CDN}/t_default/e6da41fa-1be4-4ce5-b89c-22be4f1f02d4/af1.png", None),
        (f"{CDN}/t_PDP_1728_v1/f_auto/e6da41fa-1be4-4ce5-b89c-22be4f1f02d4/af1.png", None),
        (f"{CDN}/w_1920,c_limit/jorgvtxjdlgbjvttbjlv/x.jpg", None),
        ("https://static.nike.com/images/w_960,c_limit/tcjk3q8of4pg1eqlkdyw/x.jpg", None),
        ("https://secure-images.nike.com/is/image/DotCom/AA0612_706", None),
        (f"{CDN}/c_limit,w_592/not-an-asset/x.png", None),
        ("http://127.0.0.1:8000/images/dunk.jpg", None),
    ],
)
def test_large_image_url(url: str, expected: str | None) -> None:
    assert large_image_url(url) == (expected or url)


def test_image_asset_is_shared_by_every_rendition_of_a_picture() -> None:
    renditions = [
        f"{CDN}/t_default/E6DA41FA-1be4-4ce5-b89c-22be4f1f02d4/af1.png",
        f"{LARGE}/e6da41fa-1be4-4ce5-b89c-22be4f1f02d4/other-name.png",
        "https://c.static-nike.com/a/images/w_318/e6da41fa-1be4-4ce5-b89c-22be4f1f02d4/af1.jpg",
    ]
    assert len({image_asset(u) for u in renditions}) == 1
    assert image_asset("http://127.0.0.1/images/a.jpg") == "http://127.0.0.1/images/a.jpg"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        (f"{NIKE}/t/air-max-90-mens-shoes-6n3vKB/CN8490-100?nikemt=true&cp=1", "CN8490-100"),
        (f"{NIKE}/t/air-max-90-mens-shoes-6n3vKB/cn8490-100/", "CN8490-100"),
        (f"{NIKE}/t/air-max-90-mens-shoes-6n3vKB", None),
        (None, None),
    ],
)
def test_style_code_of_url(url: str | None, code: str | None) -> None:
    assert style_code_of_url(url) == code


@pytest.mark.parametrize(
    "name",
    [
        "nike_listing_real.html",
        "nike_product_real.html",
        "nike_launch_feed_real.json",
        "nike_wall_page2.json",
        "nike_launch_feed.json",
    ],
)
def test_damaged_real_documents_never_crash(name: str) -> None:
    """Missing, null and mistyped fields anywhere: only a ParseError, or products kept and
    dropped with a reason."""
    raw = _real(name)
    doc = json.loads(raw) if name.endswith(".json") else _next_data(raw)
    rng = random.Random(name)
    for _ in range(150):
        broken = damaged(doc, rng, rate=rng.choice([0.05, 0.2, 0.5]))
        body = json.dumps(broken).encode() if name.endswith(".json") else _with_next_data(broken)
        try:
            result = parse_document(body, f"{NIKE}/t/x/FQ8822-084", "nike")
        except ParseError:
            continue
        for sku in result.skus:
            assert sku.style_code and sku.image_urls
            assert all(isinstance(u, str) and u.startswith("http") for u in sku.image_urls)


def test_a_product_page_with_recommendations_is_read_as_a_product_page() -> None:
    doc = _next_data(_real("nike_product_real.html"))
    listing = _next_data(_real("nike_listing_real.html"))
    doc["props"]["pageProps"]["recommendations"] = listing["props"]["pageProps"]["initialState"][
        "Wall"
    ]
    url = f"{NIKE}/t/air-max-90-mens-shoes-6n3vKB/FQ8822-084"
    result = parse_document(_with_next_data(doc), url, "nike")
    assert [s.style_code for s in result.skus] == ["FQ8822-084", "CN8490-100"]


def test_the_page_url_goes_to_the_colourway_the_page_is_about() -> None:
    # Threads.products in another order than the page's own style code
    raw = _real("nike_product_legacy.html").decode()
    url = f"{NIKE}/t/react-escape-run-running-shoe-94nDwX/CV3817-600"
    skus = _by_code(parse_document(raw.encode(), url, "nike"))
    assert skus["CV3817-600"].page_url == url  # type: ignore[attr-defined]
    assert skus["CV3817-003"].page_url == (  # its own pathName  # type: ignore[attr-defined]
        f"{NIKE}/t/react-escape-run-running-shoe-94nDwX/CV3817-003"
    )
