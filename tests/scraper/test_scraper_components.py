"""The pipelines, middlewares and outcome helpers, each on its own (no crawl)."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image as PILImage
from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem, IgnoreRequest
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from scrapy.utils.test import get_crawler
from sqlalchemy import select

from db import Catalogue
from db.models import Image, ImageSource
from db.ops import Source, ingest_image
from scraper.items import ImageItem, SkuItem
from scraper.middlewares import (
    FALLBACK_META,
    IMAGE_META,
    AllowedHostsMiddleware,
    KnownImageMiddleware,
)
from scraper.outcomes import HostNotAllowed, KnownImage, crawl_summary, failure_reason
from scraper.pipelines import CatalogueIngestPipeline, SkuStatsPipeline, source_of
from tests.scraper.local_site import sneaker_picture


def _crawler(data: Path, **settings: object) -> Crawler:
    return get_crawler(settings_dict={"SKULAB_DATA": str(data), **settings})


def _sku(code: str | None = "DD1391-100", key: str | None = "DD1391") -> SkuItem:
    return SkuItem(
        spider="test",
        page_url="http://127.0.0.1/t/dunk/DD1391-100",
        style_code=code,
        title="Nike Dunk Low Retro",
        weak_model="Nike Dunk Low",
        colourway="White/Black",
        image_urls=("http://127.0.0.1/a.jpg",),
        product_key=key,
        brand="Nike",
    )


def _image(url: str, body: bytes) -> ImageItem:
    return ImageItem.of_sku(_sku(), url, body)


def test_sku_stats_counts_distinct_skus_and_products(tmp_path: Path) -> None:
    crawler = _crawler(tmp_path)
    pipeline = SkuStatsPipeline.from_crawler(crawler)
    for sku in [_sku(), _sku(), _sku("DD1391-300"), _sku(None, None), _sku("CW2288-111", "CW")]:
        assert pipeline.process_item(sku) is sku
    assert crawler.stats is not None
    assert crawler.stats.get_value("skulab/skus") == 4
    assert crawler.stats.get_value("skulab/products") == 3


def test_source_of_keeps_the_weak_label_and_cuts_long_fields() -> None:
    item = _image("http://127.0.0.1/a.jpg", b"")
    item.title = "x" * 400
    source = source_of(item)
    assert (source.kind, source.spider, source.weak_sku) == ("crawl", "test", "DD1391-100")
    assert source.weak_model == "Nike Dunk Low" and source.weak_colourway == "White/Black"
    assert source.weak_title == "x" * 300
    assert (
        source.extra is not None and source.extra["brand"] == "Nike" and "seen_at" in source.extra
    )


def _run_pipeline(
    data: Path, items: list[ImageItem], **settings: object
) -> tuple[list[object], Crawler]:
    crawler = _crawler(data, **settings)
    pipeline = CatalogueIngestPipeline.from_crawler(crawler)

    async def run() -> list[object]:
        pipeline.open_spider()
        try:
            return await asyncio.gather(
                *(pipeline.process_item(i) for i in items), return_exceptions=True
            )
        finally:
            pipeline.close_spider()

    return asyncio.run(run()), crawler


def test_ingest_pipeline_dedupes_by_content_and_counts(tmp_path: Path) -> None:
    jpeg = sneaker_picture("one", "jpg", (400, 300))
    png = sneaker_picture("two", "png", (300, 300))
    tiny = sneaker_picture("tiny", "jpg", (100, 80))
    items = [
        _image("http://127.0.0.1/a.jpg", jpeg),
        _image("http://127.0.0.1/a-copy.jpg", jpeg),  # same bytes, other URL: a new source
        _image("http://127.0.0.1/b.png", png),
        _image("http://127.0.0.1/tiny.jpg", tiny),
        _image("http://127.0.0.1/bad.jpg", b"<html>no picture</html>"),
    ]
    results, crawler = _run_pipeline(tmp_path, items)
    assert crawler.stats is not None
    stats = crawler.stats.get_stats()
    assert stats["skulab/images/new"] == 2
    assert stats["skulab/images/duplicate"] == 1
    assert stats["skulab/images/too_small"] == 1
    assert stats["skulab/failures/not_an_image"] == 1
    ok = [r for r in results if isinstance(r, ImageItem)]
    assert [r.body for r in ok] == [b"", b"", b""]  # no bytes in logs or feeds
    assert ok[0].sha256 == ok[1].sha256 and ok[0].created != ok[1].created
    assert isinstance(results[3], DropItem) and "100x80" in str(results[3])
    assert isinstance(results[4], DropItem) and "bad.jpg" in str(results[4])
    cat = Catalogue(tmp_path)
    with cat.read() as s:
        images = s.scalars(select(Image)).all()
        sources = s.scalars(select(ImageSource)).all()
    assert len(images) == 2 and {i.status for i in images} == {"new"}
    assert all(i.model_id is None and i.sku_id is None for i in images)
    assert sorted(src.image_url for src in sources) == [
        "http://127.0.0.1/a-copy.jpg",
        "http://127.0.0.1/a.jpg",
        "http://127.0.0.1/b.png",
    ]
    assert {src.weak_sku for src in sources} == {"DD1391-100"}


def test_ingest_pipeline_writes_in_batches_without_losing_any(tmp_path: Path) -> None:
    bodies = [sneaker_picture(f"batch-{i}", "jpg", (300, 300)) for i in range(12)]
    items = [_image(f"http://127.0.0.1/{i}.jpg", b) for i, b in enumerate(bodies)]
    items.append(_image("http://127.0.0.1/again.jpg", bodies[0]))
    results, crawler = _run_pipeline(tmp_path, items, SKULAB_INGEST_BATCH=4)
    assert all(isinstance(r, ImageItem) for r in results)
    assert crawler.stats is not None
    assert crawler.stats.get_value("skulab/images/new") == 12
    assert crawler.stats.get_value("skulab/images/duplicate") == 1
    with Catalogue(tmp_path).read() as s:
        assert len(s.scalars(select(ImageSource)).all()) == 13


def test_ingest_pipeline_flattens_transparency_with_the_catalogue_decoder(tmp_path: Path) -> None:
    rgba = PILImage.new("RGBA", (300, 300), (0, 0, 0, 0))
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    _run_pipeline(tmp_path, [_image("http://127.0.0.1/clear.png", out.getvalue())])
    cat = Catalogue(tmp_path)
    with cat.read() as s:
        image = s.scalars(select(Image)).one()
    assert cat.store.open(image).getpixel((10, 10)) == (255, 255, 255)


def test_known_image_middleware_skips_known_picture_urls_only(tmp_path: Path) -> None:
    cat = Catalogue(tmp_path)
    cat.migrate()
    known = "http://127.0.0.1/known.jpg"
    with cat.write() as s:
        ingest_image(
            s, cat.store, sneaker_picture("k", "jpg"), "k.jpg", Source("crawl", image_url=known)
        )
    crawler = _crawler(tmp_path)
    mw = KnownImageMiddleware.from_crawler(crawler)
    with pytest.raises(KnownImage):
        mw.process_request(Request(known, meta={IMAGE_META: True}))
    assert mw.process_request(Request("http://127.0.0.1/new.jpg", meta={IMAGE_META: True})) is None
    assert mw.process_request(Request(known)) is None  # a page at that URL is fetched
    # a larger size of a known picture: not fetched; of a new one: fetched
    large = Request(
        "http://127.0.0.1/large/known.jpg", meta={IMAGE_META: True, FALLBACK_META: known}
    )
    with pytest.raises(KnownImage):
        mw.process_request(large)
    other = {IMAGE_META: True, FALLBACK_META: "http://127.0.0.1/new.jpg"}
    assert mw.process_request(Request("http://127.0.0.1/large/new.jpg", meta=other)) is None
    assert crawler.stats is not None and crawler.stats.get_value("skulab/images/known_url") == 2


def test_allowed_hosts_middleware() -> None:
    mw = AllowedHostsMiddleware(["127.0.0.1"])
    assert mw.process_request(Request("http://127.0.0.1:8000/x")) is None
    with pytest.raises(HostNotAllowed, match=r"www\.nike\.com"):
        mw.process_request(Request("https://www.nike.com/robots.txt"))
    assert AllowedHostsMiddleware([]).process_request(Request("https://www.nike.com/")) is None


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (KnownImage("x"), None),
        (HostNotAllowed("x"), "host_not_allowed"),
        (HttpError(Response("http://x/", status=404), "no"), "http_404"),
        (IgnoreRequest("max redirections reached"), "redirect_loop"),
        (IgnoreRequest("Forbidden by robots.txt"), "robots_forbidden"),
        (IgnoreRequest("other"), "ignored"),
        (ValueError("x"), "value_error"),
    ],
)
def test_failure_reason(exc: BaseException, reason: str | None) -> None:
    assert failure_reason(exc) == reason


def test_crawl_summary_groups_failures() -> None:
    stats = {"skulab/skus": 3, "skulab/failures/http_404": 2, "skulab/failures/too_large": 1}
    summary = crawl_summary(stats)
    assert summary["skus"] == 3 and summary["images_new"] == 0
    assert summary["failures"] == {"http_404": 2, "too_large": 1}


def _png_header(width: int, height: int) -> bytes:
    """A PNG that announces ``width`` x ``height`` pixels and holds none: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_ingest_pipeline_names_why_the_decoder_refused_bytes(tmp_path: Path) -> None:
    jpeg = sneaker_picture("cut", "jpg", (400, 300))
    items = [
        _image("http://127.0.0.1/bomb.png", _png_header(30_000, 30_000)),
        _image("http://127.0.0.1/cut.jpg", jpeg[: len(jpeg) // 2]),
        _image("http://127.0.0.1/empty.jpg", b""),
        _image("http://127.0.0.1/page.jpg", b"<html>no picture</html>"),
    ]
    results, crawler = _run_pipeline(tmp_path, items)
    assert all(isinstance(r, DropItem) for r in results)
    assert crawler.stats is not None
    failures = {
        k.removeprefix("skulab/failures/"): v
        for k, v in crawler.stats.get_stats().items()
        if k.startswith("skulab/failures/")
    }
    assert failures == {
        "decompression_bomb": 1,
        "corrupt_image": 1,
        "empty_image": 1,
        "not_an_image": 1,
    }
    with Catalogue(tmp_path).read() as s:
        assert s.scalars(select(Image)).all() == []  # nothing half-written
