"""Nike: listing pages, the product-wall API behind them, the launch feed, product pages.

``scrapy crawl nike [-a start_urls=URL[,URL...]] [-s NIKE_API_BASE=...]``
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import scrapy
from scrapy.http import Response

from scraper.parsing import ParseError
from scraper.parsing.nike import API_BASE, CALLER_ID, CALLER_ID_HEADER, api_url, parse_document
from scraper.spiders.base import CatalogueSpider, split_arg

LAUNCH_FEED_PATH = (
    "/product_feed/threads/v2?filter=marketplace(US)&filter=language(en)"
    "&filter=channelId(010794e5-35fe-4e32-aaff-cd2c74f15d9f)&filter=exclusiveAccess(true,false)"
    "&count=50"
)


class NikeBaseSpider(CatalogueSpider):
    """Reads any Nike document; subclasses only choose where to start.

    Requests to the API (``NIKE_API_BASE``, default https://api.nike.com) carry the
    ``nike-api-caller-id`` header that the product wall wants.
    """

    default_start_urls: tuple[str, ...] = ()

    def __init__(self, *args: Any, start_urls: str | list[str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.start_urls = split_arg(start_urls)

    @property
    def api_base(self) -> str:
        return str(self.settings.get("NIKE_API_BASE") or API_BASE).rstrip("/")

    def resolve(self, url: str) -> str:
        """A start URL, with api.nike.com paths moved onto ``NIKE_API_BASE``."""
        return api_url(url, self.api_base) or url

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for url in self.start_urls or self.default_start_urls:
            yield self.page_request(self.resolve(url), dont_filter=True)

    def page_request(self, url: str, dont_filter: bool = False) -> scrapy.Request:
        headers = {CALLER_ID_HEADER: CALLER_ID} if url.startswith(self.api_base) else {}
        return scrapy.Request(
            url,
            callback=self.parse,
            errback=self.request_failed,
            headers=headers,
            dont_filter=dont_filter,
        )

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        content_type = response.headers.get(b"Content-Type", b"").decode("latin-1").lower()
        is_json = True if "json" in content_type else None
        try:
            result = parse_document(
                response.body, response.url, self.name, self.api_base, is_json=is_json
            )
        except ParseError as error:
            self.page_failed(response.url, error)
            return
        yield from self.follow_result(result, self.page_request)


class NikeSpider(NikeBaseSpider):
    """Nike's sneaker listing pages (and the product-wall pages they lead to)."""

    name = "nike"
    default_start_urls = (
        "https://www.nike.com/w/mens-shoes-nik1zy7ok",
        "https://www.nike.com/w/womens-shoes-5e1x6zy7ok",
        "https://www.nike.com/w/jordan-shoes-37eefzy7ok",
    )


class NikeLaunchSpider(NikeBaseSpider):
    """The SNKRS launch feed: release threads, several products each."""

    name = "nike_launch"
    default_start_urls = (LAUNCH_FEED_PATH,)
