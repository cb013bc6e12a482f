"""What every skulab spider does with a parsed page: count, log, request the pictures."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import scrapy
from scrapy.http import Response
from twisted.python.failure import Failure

from scraper.items import ImageItem, SkuItem
from scraper.middlewares import FALLBACK_META, IMAGE_META
from scraper.outcomes import crawl_summary, failure_reason, format_summary
from scraper.parsing import PageResult, ParseError

IMAGE_PRIORITY = 10
"""Pictures before further pages: the queue stays short and a stopped crawl loses little."""


def split_arg(value: str | list[str] | None) -> list[str]:
    """A ``-a name=a,b`` spider argument as a list."""
    if value is None:
        return []
    items = value if isinstance(value, list) else value.split(",")
    return [v.strip() for v in items if v.strip()]


class CatalogueSpider(scrapy.Spider):
    """Base of skulab's spiders: turns a :class:`PageResult` into items and requests.

    Subclasses parse their platform's documents with the pure functions of
    :mod:`scraper.parsing` and hand the result to :meth:`follow_result`.
    """

    def stat(self, key: str, count: int = 1) -> None:
        assert self.crawler.stats is not None
        self.crawler.stats.inc_value(f"skulab/{key}", count)

    def page_failed(self, url: str, error: ParseError) -> None:
        self.stat(f"failures/{error.reason}")
        self.logger.warning("%s: %s", error.reason, error)

    def follow_result(
        self, result: PageResult, page_request: Any
    ) -> Iterator[SkuItem | scrapy.Request]:
        """Items and picture requests of a parsed page, then its next pages."""
        for problem in result.problems:
            if problem.dropped:
                self.stat(f"products_dropped/{problem.reason}")
                self.logger.info("product dropped (%s): %s", problem.reason, problem.detail)
            else:
                self.stat(f"fields_missing/{problem.reason.removeprefix('missing_')}")
                self.logger.debug("kept without a field (%s): %s", problem.reason, problem.detail)
        for sku in result.skus:
            yield sku
            for url in sku.image_urls:
                if url not in self.requested_images:
                    self.requested_images.add(url)
                    yield self.image_request(sku, url, sku.image_fallbacks.get(url))
        for url in result.next_urls:
            yield page_request(url)

    @property
    def requested_images(self) -> set[str]:
        """Picture URLs asked for in this run (the catalogue remembers them across runs)."""
        if not hasattr(self, "_requested_images"):
            self._requested_images: set[str] = set()
        return self._requested_images

    def image_request(self, sku: SkuItem, url: str, fallback: str | None = None) -> scrapy.Request:
        """The download of one picture. Not subject to Scrapy's duplicate filter: the
        catalogue knows which pictures it has (``KnownImageMiddleware``), so a resumed
        crawl (JOBDIR) fetches again the pictures whose download was cut off by the stop,
        which the duplicate filter would otherwise count as done.

        ``fallback``: the URL the page gave, fetched instead if ``url`` (a larger size that
        the parser made up) is refused with a 4xx."""
        meta: dict[str, Any] = {IMAGE_META: True}
        if fallback and fallback != url:
            meta[FALLBACK_META] = fallback
        return scrapy.Request(
            url,
            callback=self.parse_image,
            errback=self.request_failed,
            cb_kwargs={"sku": sku},
            meta=meta,
            priority=IMAGE_PRIORITY,
            dont_filter=True,
        )

    def parse_image(self, response: Response, sku: SkuItem) -> Iterator[ImageItem]:
        original_url = (response.meta.get("redirect_urls") or [response.request.url])[0]
        yield ImageItem.of_sku(sku, original_url, response.body)

    def request_failed(self, failure: Failure) -> Iterator[scrapy.Request]:
        reason = failure_reason(failure.value)
        if reason is None:
            return
        request = getattr(failure, "request", None)
        # the URL the spider asked for, not the last hop of a redirect chain
        url = (request.meta.get("redirect_urls") or [request.url])[0] if request else "?"
        fallback = request.meta.get(FALLBACK_META) if request else None
        if request is not None and fallback and reason.startswith("http_4"):
            if fallback not in self.requested_images:  # else it is on its way already
                self.requested_images.add(fallback)
                self.stat("images/fallback")
                self.logger.info("%s: %s; fetching the page's own %s", reason, url, fallback)
                yield self.image_request(request.cb_kwargs["sku"], fallback)
            return
        self.stat(f"failures/{reason}")
        level = logging.INFO if reason == "robots_forbidden" else logging.WARNING
        self.logger.log(level, "%s: %s (%s)", reason, url, failure.getErrorMessage())

    def closed(self, reason: str) -> None:
        assert self.crawler.stats is not None
        summary = crawl_summary(self.crawler.stats.get_stats())
        self.logger.info(format_summary(self.name, reason, summary))
