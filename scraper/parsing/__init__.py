"""Pure parsing: a raw page or JSON document in, SKU items and follow-up links out.

Nothing here does I/O or logging; what went wrong comes back as data (:class:`Problem`)
or as a :class:`ParseError` for a document that cannot be read at all, and the spider
logs and counts it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from scraper.items import SkuItem


class ParseError(ValueError):
    """A document that yields nothing: ``reason`` is a short counter name."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Problem:
    """Something wrong with one product. ``dropped``: the product was left out because of it
    (no style code, no image, not footwear); otherwise it was kept without that field."""

    reason: str
    detail: str
    dropped: bool


@dataclass
class PageResult:
    skus: list[SkuItem] = field(default_factory=list)
    next_urls: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def load_json(body: bytes | str, url: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError("bad_json", f"{url}: not valid JSON ({exc})") from None


def get_path(doc: Any, *keys: str | int) -> Any:
    """``doc[k1][k2]...``, or ``None`` as soon as a step is missing or of the wrong type."""
    for key in keys:
        if isinstance(key, int):
            if not isinstance(doc, list) or not -len(doc) <= key < len(doc):
                return None
        elif not isinstance(doc, dict):
            return None
        doc = doc[key] if isinstance(key, int) else doc.get(key)
        if doc is None:
            return None
    return doc


def text(value: Any) -> str | None:
    """A non-empty string with collapsed whitespace, else ``None``."""
    if not isinstance(value, str):
        return None
    cleaned = " ".join(value.split())
    return cleaned or None


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def absolute_url(value: Any, base: str) -> str | None:
    """An http(s) URL, resolved against ``base``; ``None`` for anything else."""
    raw = text(value)
    if raw is None:
        return None
    url = urljoin(base, raw)
    return url if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc else None


def unique(values: Iterator[str | None] | list[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))
