"""The catalogue a crawl writes into: ``$SKULAB_DATA`` (or ``-s SKULAB_DATA=...``)."""

from __future__ import annotations

from scrapy.settings import BaseSettings

from db import Catalogue, open_catalogue


def crawl_catalogue(settings: BaseSettings) -> Catalogue:
    """The catalogue of this process (opened and migrated once, shared by the components)."""
    return open_catalogue(settings.get("SKULAB_DATA") or None)
