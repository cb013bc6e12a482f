"""Whole crawls: ``scrapy crawl nike`` and ``scrapy crawl shopify`` as subprocesses from the
repository root, against a local sneaker site on 127.0.0.1, into a temporary catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db import Catalogue
from db.models import Image, ImageSource, Sku, SneakerModel
from tests.scraper.conftest import (
    LARGE_SIDE,
    LISTED_SIDE,
    CrawlRun,
    nike_start_urls,
    run_crawl,
)
from tests.scraper.local_site import LocalSite

pytestmark = pytest.mark.slow

NIKE_NEW_PICTURES = 17  # distinct pictures behind the Nike fixtures' image URLs


def _stat(run: CrawlRun, key: str) -> int:
    match = re.search(rf"'skulab/{re.escape(key)}': (\d+)", run.log)
    return int(match.group(1)) if match else 0


def _sources_by_url(cat: Catalogue, base: str) -> dict[str, ImageSource]:
    with cat.read() as s:
        rows = s.scalars(select(ImageSource)).all()
    return {r.image_url.removeprefix(base): r for r in rows if r.image_url}


@pytest.fixture(scope="module")
def crawled(
    sneaker_site: LocalSite, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, CrawlRun, CrawlRun]:
    """One catalogue filled by a Nike crawl, then a Shopify crawl of the same site."""
    data = tmp_path_factory.mktemp("crawl-data")
    nike = run_crawl(
        "nike", data, sneaker_site, "-a", f"start_urls={nike_start_urls(sneaker_site)}"
    )
    assert nike.returncode == 0, nike.log[-3000:]
    shopify = run_crawl("shopify", data, sneaker_site, "-a", f"stores={sneaker_site.base}")
    assert shopify.returncode == 0, shopify.log[-3000:]
    return data, nike, shopify


def test_nike_crawl_counts_what_it_found(crawled: tuple[Path, CrawlRun, CrawlRun]) -> None:
    _, nike, _ = crawled
    assert _stat(nike, "skus") == 12
    assert _stat(nike, "products") == 11
    assert _stat(nike, "images/new") == NIKE_NEW_PICTURES
    assert _stat(nike, "images/duplicate") == 1  # dunk-panda-copy.jpg: same bytes, other URL
    assert _stat(nike, "images/too_small") == 1
    failures = {
        "not_an_image": 1,
        "too_large": 1,
        "robots_forbidden": 1,
        "redirect_loop": 1,
        "http_404": 2,  # a missing picture, a missing page
        "http_500": 1,
        "no_embedded_json": 1,
        "api_error": 1,
    }
    for reason, count in failures.items():
        assert _stat(nike, f"failures/{reason}") == count, reason
    assert "host_not_allowed" not in nike.log
    assert _stat(nike, "images/fallback") == 1  # a picture without a large rendition
    assert _stat(nike, "products_dropped/thread_without_products") == 1
    summary = next(line for line in nike.log.splitlines() if "nike finished (finished)" in line)
    assert "11 products, 12 SKUs; images: 17 new, 1 duplicates" in summary
    assert "1 fetched at the page's size" in summary
    assert "redirect_loop=1" in summary and "api_error=1" in summary
    # each failure is logged with its URL
    assert re.search(r"redirect_loop: http://127\.0\.0\.1:\d+/images/redirect-loop\.jpg ", nike.log)
    assert re.search(
        r"api_error: http://127\.0\.0\.1:\d+/discover/product_wall/v1/no-header", nike.log
    )
    assert re.search(
        r"WARNING: http://127\.0\.0\.1:\d+/images/broken\.jpg .*not an image", nike.log
    )


def test_nike_weak_labels_and_sources(
    crawled: tuple[Path, CrawlRun, CrawlRun], sneaker_site: LocalSite
) -> None:
    data, _, _ = crawled
    cat = Catalogue(data)
    sources = _sources_by_url(cat, sneaker_site.base)
    panda = sources["/images/dunk-panda-sq.jpg"]
    assert panda.kind == "crawl" and panda.spider == "nike"
    assert (panda.weak_model, panda.weak_sku, panda.weak_title) == (
        "Nike Dunk Low",
        "DD1391-100",
        "Nike Dunk Low Retro",
    )
    assert panda.weak_colourway == "White/Black/White"
    assert panda.page_url == f"{sneaker_site.base}/t/dunk-low-retro-mens-shoes-76KnBL/DD1391-100"
    assert panda.seen_at is not None
    gallery = sources["/images/aj3-mocha-gallery-2.png"]  # nested carousel node of the feed
    assert (gallery.weak_model, gallery.weak_sku) == ("Air Jordan 3", "CT8532-102")
    assert sources["/images/aj1-chicago-sq.jpg"].weak_sku == "DZ5485-612"  # API page 2
    assert sources["/images/am90-grey-2.jpg"].weak_model == "Nike Air Max 90"  # product page
    for skipped in ("tiny.png", "broken.jpg", "huge.png", "missing.jpg", "redirect-loop.jpg"):
        assert f"/images/{skipped}" not in sources
    assert "/private/hq1234-pt.jpg" not in sources


def test_nike_pictures_come_at_product_page_size(
    crawled: tuple[Path, CrawlRun, CrawlRun], sneaker_site: LocalSite
) -> None:
    """Listing-size CDN URLs are fetched at 1280 px, one per asset (square and portrait
    crops of one picture are one download); without a large rendition, at the listed size."""
    cat = Catalogue(crawled[0])
    cdn = {
        url: src
        for url, src in _sources_by_url(cat, sneaker_site.base).items()
        if "/a/images/" in url
    }
    large = "/a/images/t_PDP_1280_v1/f_auto,q_auto:eco/3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7/"
    listed = "/a/images/c_limit,w_592,f_auto/t_product_v1/0d1c2b3a-4f5e-4d6c-8b7a-9f8e7d6c5b4a/"
    assert sorted(cdn) == [
        listed + "air-max-90-big-kids-shoes.png",
        large + "air-max-90-mens-shoes-6n3vKB.png",
    ]
    with cat.read() as s:
        widths = {url: s.get(Image, src.image_id).width for url, src in cdn.items()}  # type: ignore[union-attr]
    assert widths == {
        listed + "air-max-90-big-kids-shoes.png": LISTED_SIDE,
        large + "air-max-90-mens-shoes-6n3vKB.png": LARGE_SIDE,
    }
    kids = cdn[listed + "air-max-90-big-kids-shoes.png"]
    assert (kids.weak_sku, kids.weak_model, kids.weak_colourway) == (
        "CD6864-020",
        "Nike Air Max 90",
        "Black/White-Black",
    )
    requested = sneaker_site.paths("/a/images/")
    assert not any("w_400" in p for p in requested)  # the portrait crop of the same asset
    assert "/images/am90-video-poster.jpg" not in sneaker_site.paths("/images/")


def test_weak_labels_are_not_labels(crawled: tuple[Path, CrawlRun, CrawlRun]) -> None:
    cat = Catalogue(crawled[0])
    with cat.read() as s:
        statuses = set(s.scalars(select(Image.status)).all())
        labelled = s.scalar(
            select(func.count()).select_from(Image).where(Image.sku_id.is_not(None))
        )
        assert s.scalar(select(func.count()).select_from(Sku)) == 0
        assert s.scalar(select(func.count()).select_from(SneakerModel)) == 0
    assert statuses == {"new"} and labelled == 0


def test_transparent_png_and_webp_are_stored(
    crawled: tuple[Path, CrawlRun, CrawlRun], sneaker_site: LocalSite
) -> None:
    cat = Catalogue(crawled[0])
    sources = _sources_by_url(cat, sneaker_site.base)
    with cat.read() as s:
        png = s.get(Image, sources["/images/dunk-green-sq.png"].image_id)
        webp = s.get(Image, sources["/images/dunk-panda-pt.webp"].image_id)
    assert png is not None and webp is not None
    assert (png.ext, webp.ext) == ("png", "webp")
    flattened = cat.store.open(png)
    assert flattened.mode == "RGB" and flattened.getpixel((0, 0)) == (255, 255, 255)
    assert cat.store.path(png).is_file() and cat.store.thumbnail_path(png.sha256).is_file()


def test_shopify_crawl_keeps_footwear_with_its_style_codes(
    crawled: tuple[Path, CrawlRun, CrawlRun], sneaker_site: LocalSite
) -> None:
    data, _, shopify = crawled
    assert _stat(shopify, "skus") == 8
    assert _stat(shopify, "images/new") == 6
    assert _stat(shopify, "images/duplicate") == 3
    assert _stat(shopify, "products_dropped/not_footwear") == 2
    assert _stat(shopify, "failures/redirect_loop") == 1
    seen = set(sneaker_site.paths("/cdn/shop/files/"))
    assert "/cdn/shop/files/hoodie.jpg" not in seen and "/cdn/shop/files/socks.jpg" not in seen
    sources = _sources_by_url(Catalogue(data), sneaker_site.base)
    codes = {
        url.rsplit("/", 1)[-1].split("?")[0]: src.weak_sku
        for url, src in sources.items()
        if src.spider == "shopify"
    }
    assert codes == {
        "af1-black-1.jpg": "FQ8822-084",
        "am90-grey-1-copy.jpg": "FQ8822-084",
        "AURORA_850000-116_PHSRH000-2000.png": "850000-116",
        "blazer-1.webp": "DV0833-101",
        "DD1391-100_panda.jpg": "DD1391-100",
        "tn-1.jpg": "HF1234-001",
        "FB9660-002.jpg": "FB9660-002",
        "nb-990v6.jpg": None,
        "aj3-mocha-copy.jpg": "CT8532-102",
    }
    af1 = next(s for u, s in sources.items() if "af1-black-1" in u)
    assert af1.weak_model == "Nike Air Force 1" and af1.weak_colourway == "Black"
    assert af1.page_url == f"{sneaker_site.base}/products/air-force-1-07-premium-black"


def test_same_picture_from_two_sites_is_one_image_with_several_sources(
    crawled: tuple[Path, CrawlRun, CrawlRun], sneaker_site: LocalSite
) -> None:
    cat = Catalogue(crawled[0])
    sources = _sources_by_url(cat, sneaker_site.base)
    panda = sources["/images/dunk-panda-sq.jpg"].image_id
    assert sources["/images/dunk-panda-copy.jpg"].image_id == panda
    assert sources["/cdn/shop/files/DD1391-100_panda.jpg?v=2"].image_id == panda
    with cat.read() as s:
        image = s.get(Image, panda)
        assert image is not None
        assert sorted(src.spider or "" for src in image.sources) == ["nike", "nike", "shopify"]
        total = s.scalar(select(func.count()).select_from(Image))
    assert total == NIKE_NEW_PICTURES + 6


def test_a_second_crawl_does_not_download_known_pictures(
    crawled: tuple[Path, CrawlRun, CrawlRun], sneaker_site: LocalSite
) -> None:
    data = crawled[0]
    before = len(sneaker_site.seen)
    again = run_crawl(
        "nike", data, sneaker_site, "-a", f"start_urls={nike_start_urls(sneaker_site)}"
    )
    assert again.returncode == 0, again.log[-3000:]
    assert _stat(again, "images/new") == 0
    # every picture of the first crawl; the one kept at its listed size is not asked for at
    # the large size again either
    assert _stat(again, "images/known_url") == 18
    assert _stat(again, "images/fallback") == 0
    fetched = {s.path for s in sneaker_site.seen[before:]}
    assert "/images/dunk-panda-sq.jpg" not in fetched and "/images/am90-grey-1.jpg" not in fetched
    assert "/w/mens-shoes-nik1zy7ok" in fetched  # pages are read again


def test_a_stopped_crawl_resumes_from_its_jobdir(sneaker_site: LocalSite, tmp_path: Path) -> None:
    data, jobdir = tmp_path / "data", tmp_path / "job"
    start = f"start_urls={sneaker_site.base}/w/mens-shoes-nik1zy7ok"
    resumable = ("-a", start, "-s", f"JOBDIR={jobdir}", "-s", "CONCURRENT_REQUESTS=1")
    first = run_crawl("nike", data, sneaker_site, *resumable, "-s", "CLOSESPIDER_ITEMCOUNT=6")
    assert first.returncode == 0, first.log[-3000:]
    assert "nike finished (closespider_itemcount)" in first.log
    first_new = _stat(first, "images/new")
    second = run_crawl("nike", data, sneaker_site, *resumable)
    assert second.returncode == 0, second.log[-3000:]
    assert "Resuming crawl" in second.log
    assert "nike finished (finished)" in second.log
    with Catalogue(data).read() as s:
        total = s.scalar(select(func.count()).select_from(Image))
    # the listing and the two product-wall pages behind it show 7 distinct pictures
    assert 0 < first_new < 7
    assert total == 7
