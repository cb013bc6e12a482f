"""Item pipelines, one concern each: counting SKUs and products, ingesting pictures."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.statscollectors import StatsCollector
from sqlalchemy.exc import SQLAlchemyError

from db import Catalogue
from db.images import ImageError
from db.ops import (
    CatalogueError,
    IngestResult,
    PreparedImage,
    Source,
    ingest_prepared,
    prepare_image,
)
from scraper.catalogue import crawl_catalogue
from scraper.items import ImageItem, SkuItem

logger = logging.getLogger(__name__)

# Column widths of db.models.ImageSource: longer weak labels are cut, not refused.
_WIDTHS = {"weak_model": 200, "weak_sku": 100, "weak_colourway": 300, "weak_title": 300}


def _cut(value: str | None, field: str) -> str | None:
    return value[: _WIDTHS[field]] if value else None


def source_of(item: ImageItem) -> Source:
    """Where a crawled picture came from and what its page claims (the weak label)."""
    return Source(
        kind="crawl",
        spider=item.spider,
        image_url=item.image_url,
        page_url=item.page_url,
        weak_model=_cut(item.weak_model, "weak_model"),
        weak_sku=_cut(item.style_code, "weak_sku"),
        weak_colourway=_cut(item.colourway, "weak_colourway"),
        weak_title=_cut(item.title, "weak_title"),
        extra={**item.extra, "seen_at": item.seen_at.isoformat()},
    )


def image_failure_reason(error: ImageError) -> str:
    """The counter name of bytes that the catalogue's decoder refused (from its message)."""
    message = str(error).lower()
    for needle, reason in (
        ("decompression bomb", "decompression_bomb"),
        ("too large", "too_large"),
        ("truncated", "corrupt_image"),
        ("empty file", "empty_image"),
    ):
        if needle in message:
            return reason
    return "not_an_image"


def _stats(crawler: Crawler) -> StatsCollector:
    assert crawler.stats is not None
    return crawler.stats


class SkuStatsPipeline:
    """Counts distinct SKUs (style codes) and products (colourway groups) of a crawl."""

    def __init__(self, crawler: Crawler):
        self.stats = _stats(crawler)
        self.skus: set[str] = set()
        self.products: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> SkuStatsPipeline:
        return cls(crawler)

    def process_item(self, item: object) -> object:
        if isinstance(item, SkuItem):
            key = item.style_code or f"{item.page_url}#no-style-code"
            if key not in self.skus:
                self.skus.add(key)
                self.stats.inc_value("skulab/skus")
            product = item.product_key or key
            if product not in self.products:
                self.products.add(product)
                self.stats.inc_value("skulab/products")
        return item


Pending = tuple[PreparedImage, Source, "asyncio.Future[IngestResult]"]


class CatalogueIngestPipeline:
    """Decodes each downloaded picture with the catalogue's decoder and ingests it.

    Unlabelled (status 'new'): the page's claim goes into the source's weak label only.
    Decoding runs in worker threads. Catalogue writes run in one writer thread; the
    pictures that arrive while it is busy are written together in the next transaction
    (at most ``SKULAB_INGEST_BATCH``), which halves the cost of a write. If a batch fails,
    its pictures are written one by one, so one bad picture costs only its own row and
    nothing is half-written. Items are dropped, with a counted reason, when the bytes are
    no image, a corrupt one or a decompression bomb (:func:`image_failure_reason`), the
    picture is smaller than ``SKULAB_MIN_IMAGE_SIDE``, or the catalogue refuses it.
    """

    def __init__(self, crawler: Crawler):
        self.crawler = crawler
        self.stats = _stats(crawler)
        self.min_side = crawler.settings.getint("SKULAB_MIN_IMAGE_SIDE", 200)
        self.max_batch = max(1, crawler.settings.getint("SKULAB_INGEST_BATCH", 16))
        self._catalogue: Catalogue | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Pending] = []
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CatalogueIngestPipeline:
        return cls(crawler)

    def open_spider(self) -> None:
        self._catalogue = crawl_catalogue(self.crawler.settings)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skulab-ingest")

    def close_spider(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)

    def _fail(self, item: ImageItem, reason: str, message: str) -> DropItem:
        self.stats.inc_value(f"skulab/failures/{reason}")
        logger.warning("%s (page %s): %s", item.image_url, item.page_url, message)
        return DropItem(f"{reason}: {item.image_url}", log_level="DEBUG")  # logged just above

    # --- the writer thread ---

    def _write_one(self, prepared: PreparedImage, source: Source) -> IngestResult:
        assert self._catalogue is not None
        with self._catalogue.write() as session:
            return ingest_prepared(session, self._catalogue.store, prepared, source)

    def _write_batch(
        self, batch: list[tuple[PreparedImage, Source]]
    ) -> list[IngestResult | Exception]:
        assert self._catalogue is not None
        store = self._catalogue.store
        # The files are content-addressed and idempotent: writing them before the
        # transaction keeps the write lock short; a failed row leaves only a file.
        for prepared, _ in batch:
            store.put(prepared.data, prepared.sha256, prepared.ext)
            store.put_thumbnail_bytes(prepared.sha256, prepared.thumbnail)
        try:
            with self._catalogue.write() as session:
                return [ingest_prepared(session, store, p, s) for p, s in batch]
        except (CatalogueError, SQLAlchemyError, OSError):
            if len(batch) == 1:
                raise
        results: list[IngestResult | Exception] = []
        for prepared, source in batch:  # find the bad one; keep the others
            try:
                results.append(self._write_one(prepared, source))
            except (CatalogueError, SQLAlchemyError, OSError) as exc:
                results.append(exc)
        return results

    # --- the event loop ---

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = (
                    self._pending[: self.max_batch],
                    self._pending[self.max_batch :],
                )
                work = [(p, s) for p, s, _ in batch]
                try:
                    results = await loop.run_in_executor(self._writer, self._write_batch, work)
                except Exception as exc:  # handed to each waiting item
                    results = [exc] * len(batch)
                for (_, _, future), result in zip(batch, results, strict=True):
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = False

    async def _ingest(self, prepared: PreparedImage, source: Source) -> IngestResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestResult] = loop.create_future()
        self._pending.append((prepared, source, future))
        if not self._draining:
            self._draining = True
            self._drain_task = loop.create_task(self._drain())
        return await future

    async def process_item(self, item: object) -> object:
        if not isinstance(item, ImageItem):
            return item
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(None, prepare_image, item.body, item.image_url)
        except ImageError as exc:
            raise self._fail(item, image_failure_reason(exc), str(exc)) from None
        if min(prepared.width, prepared.height) < self.min_side:
            self.stats.inc_value("skulab/images/too_small")
            raise DropItem(
                f"too small: {item.image_url} is {prepared.width}x{prepared.height} px "
                f"(SKULAB_MIN_IMAGE_SIDE={self.min_side})",
                log_level="INFO",
            )
        try:
            result = await self._ingest(prepared, source_of(item))
        except (CatalogueError, SQLAlchemyError, OSError) as exc:
            raise self._fail(item, "catalogue_error", f"{type(exc).__name__}: {exc}") from None
        if result.created:
            self.stats.inc_value("skulab/images/new")
        elif result.source_added:
            self.stats.inc_value("skulab/images/duplicate")
        else:
            self.stats.inc_value("skulab/images/seen_before")
        return replace(item, body=b"", sha256=result.sha256, created=result.created)
