"""Downloader middlewares: a host allow-list, and no second download of a known image."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from sqlalchemy import select

from db import Catalogue
from db.models import ImageSource
from scraper.catalogue import crawl_catalogue
from scraper.outcomes import HostNotAllowed, KnownImage

logger = logging.getLogger(__name__)

IMAGE_META = "skulab_image"
"""Request.meta key marking the download of a picture (as opposed to a page)."""
FALLBACK_META = "skulab_fallback_url"
"""Request.meta key: the picture URL the page gave, when the request asks for a larger size."""


class AllowedHostsMiddleware:
    """Refuses requests to hosts outside ``SKULAB_ALLOWED_HOSTS`` (when the list is set).

    Runs before the robots.txt middleware, so robots.txt of other hosts is not fetched
    either. Tests set it to ``127.0.0.1``.
    """

    def __init__(self, hosts: list[str]):
        self.hosts = frozenset(h.strip().lower() for h in hosts if h.strip())

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> AllowedHostsMiddleware:
        return cls(crawler.settings.getlist("SKULAB_ALLOWED_HOSTS"))

    def process_request(self, request: Request) -> None:
        if not self.hosts:
            return
        host = (urlsplit(request.url).hostname or "").lower()
        if host not in self.hosts:
            raise HostNotAllowed(f"host {host!r} is not in SKULAB_ALLOWED_HOSTS: {request.url}")


class KnownImageMiddleware:
    """Skips the download of a picture whose URL the catalogue already has a source for
    (or, for a larger size made up from the page's URL, whose page URL it has).

    The URLs are read from the catalogue once, at the first picture request (one query,
    instead of one per picture in the reactor's thread); pictures ingested during this
    crawl are not asked for twice anyway (the spider remembers what it requested).
    """

    def __init__(self, crawler: Crawler):
        self.crawler = crawler
        self._known: frozenset[str] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> KnownImageMiddleware:
        return cls(crawler)

    @staticmethod
    def known_urls(catalogue: Catalogue) -> frozenset[str]:
        with catalogue.read() as session:
            urls = session.scalars(
                select(ImageSource.image_url).where(ImageSource.image_url.is_not(None)).distinct()
            )
            return frozenset(u for u in urls if u)

    def is_known(self, url: str) -> bool:
        if self._known is None:
            self._known = self.known_urls(crawl_catalogue(self.crawler.settings))
            logger.info("%d picture URLs already in the catalogue", len(self._known))
        return url in self._known

    def process_request(self, request: Request) -> None:
        if not request.meta.get(IMAGE_META):
            return
        fallback = request.meta.get(FALLBACK_META)
        known = self.is_known(request.url) or bool(fallback and self.is_known(fallback))
        if known:  # a larger size of a picture the catalogue has is not asked for either
            assert self.crawler.stats is not None
            self.crawler.stats.inc_value("skulab/images/known_url")
            raise KnownImage(f"already in the catalogue: {request.url}")
