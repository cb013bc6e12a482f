"""Shopify stores' public ``/products.json``, footwear only.

``scrapy crawl shopify [-a stores=https://a-store.example,http://127.0.0.1:8000]``
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

import scrapy
from scrapy.http import Response

from scraper.parsing import ParseError
from scraper.parsing.shopify import current_page, parse_products_page, products_url, store_base
from scraper.spiders.base import CatalogueSpider, split_arg


class ShopifyStoreSpider(CatalogueSpider):
    """Pages through each store's products until an empty page (or ``SHOPIFY_MAX_PAGES``)."""

    default_stores: tuple[str, ...] = ()

    def __init__(self, *args: Any, stores: str | list[str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.stores = [store_base(s) for s in split_arg(stores) or self.default_stores]

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for store in self.stores:
            yield self.page_request(store, products_url(store, 1))

    def page_request(self, store: str, url: str) -> scrapy.Request:
        return scrapy.Request(
            url,
            callback=self.parse_products,
            errback=self.request_failed,
            cb_kwargs={"store": store},
        )

    def parse_products(self, response: Response, store: str) -> Iterator[Any]:
        try:
            result = parse_products_page(response.body, response.url, store, self.name)
        except ParseError as error:
            self.page_failed(response.url, error)
            return
        if current_page(response.url) >= self.settings.getint("SHOPIFY_MAX_PAGES", 100):
            if result.next_urls:
                self.logger.info("%s: stopping at SHOPIFY_MAX_PAGES", response.url)
            result.next_urls.clear()
        yield from self.follow_result(result, partial(self.page_request, store))


class ShopifySpider(ShopifyStoreSpider):
    """Well-known sneaker stores on Shopify, or the ones given with ``-a stores=``."""

    name = "shopify"
    default_stores = (
        "https://kith.com",
        "https://bdgastore.com",
        "https://undefeated.com",
        "https://www.socialstatuspgh.com",
        "https://www.a-ma-maniere.com",
        "https://concepts.com",
    )
