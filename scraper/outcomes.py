"""What happened to a request or an item, as short counter names, and the crawl summary."""

from __future__ import annotations

import re
from asyncio import CancelledError as AsyncioCancelledError
from collections.abc import Mapping
from typing import Any

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionRefusedError, DNSLookupError, TimeoutError

STATS_PREFIX = "skulab/"


class KnownImage(IgnoreRequest):
    """The image URL is already in the catalogue: not downloaded again (not a failure)."""


class HostNotAllowed(IgnoreRequest):
    """The request's host is not in ``SKULAB_ALLOWED_HOSTS``."""


def failure_reason(exc: BaseException) -> str | None:
    """The counter name of a failed request; ``None`` when it is no failure (known image)."""
    if isinstance(exc, KnownImage):
        return None
    if isinstance(exc, HostNotAllowed):
        return "host_not_allowed"
    if isinstance(exc, HttpError):
        return f"http_{exc.response.status}"
    if isinstance(exc, IgnoreRequest):
        message = str(exc).lower()
        if "redirect" in message:
            return "redirect_loop"
        if "robots.txt" in message:
            return "robots_forbidden"
        return "ignored"
    if isinstance(exc, DownloadCancelledError | CancelledError | AsyncioCancelledError):
        return "too_large"  # the only cancellation is DOWNLOAD_MAXSIZE's
    if isinstance(exc, DownloadTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, CannotResolveHostError | DNSLookupError):
        return "dns"
    if isinstance(exc, DownloadConnectionRefusedError | ConnectionRefusedError):
        return "connection_refused"
    if isinstance(exc, ResponseDataLossError):
        return "data_loss"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def _group(stats: Mapping[str, Any], prefix: str) -> dict[str, int]:
    full = STATS_PREFIX + prefix
    return {k[len(full) :]: int(v) for k, v in sorted(stats.items()) if k.startswith(full)}


def crawl_summary(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers that say what a crawl found, from the crawler's stats."""

    def count(key: str) -> int:
        return int(stats.get(STATS_PREFIX + key, 0))

    return {
        "products": count("products"),
        "skus": count("skus"),
        "images_new": count("images/new"),
        "images_duplicate": count("images/duplicate"),
        "images_seen_before": count("images/seen_before"),
        "images_known_url": count("images/known_url"),
        "images_too_small": count("images/too_small"),
        "images_fallback": count("images/fallback"),
        "failures": _group(stats, "failures/"),
        "products_dropped": _group(stats, "products_dropped/"),
        "fields_missing": _group(stats, "fields_missing/"),
    }


def format_summary(spider: str, reason: str, summary: Mapping[str, Any]) -> str:
    def pairs(d: Mapping[str, int]) -> str:
        return ", ".join(f"{k}={v}" for k, v in d.items()) or "none"

    images = (
        f"images: {summary['images_new']} new, {summary['images_duplicate']} duplicates "
        f"(same picture, new source), {summary['images_seen_before']} seen before, "
        f"{summary['images_known_url']} known URLs not downloaded, "
        f"{summary['images_too_small']} too small"
    )
    if summary.get("images_fallback"):
        images += f", {summary['images_fallback']} fetched at the page's size (no larger one)"
    return (
        f"{spider} finished ({reason}): {summary['products']} products, {summary['skus']} SKUs; "
        f"{images}; failures: {pairs(summary['failures'])}; "
        f"products dropped: {pairs(summary['products_dropped'])}; "
        f"fields missing: {pairs(summary['fields_missing'])}"
    )
