"""What the spiders produce: one SKU per colourway, and one downloaded image per picture."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class SkuItem:
    """One colourway as a product page describes it: its weak label and its pictures.

    ``style_code`` may be ``None`` (a Shopify product of a brand without Nike-style codes);
    ``product_key`` is shared by the colourways of one product (Nike's ``groupKey``, a
    Shopify product id), to count products. ``image_fallbacks`` maps an image URL that the
    parser made up (a larger size of the page's picture) to the URL the page gave, which
    is fetched instead if the made-up one fails.
    """

    spider: str
    page_url: str
    style_code: str | None
    title: str | None
    weak_model: str | None
    colourway: str | None
    image_urls: tuple[str, ...]
    product_key: str | None = None
    brand: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    image_fallbacks: dict[str, str] = field(default_factory=dict)


@dataclass
class ImageItem:
    """The bytes of one picture of an SKU, with where they came from.

    The ingest pipeline fills ``sha256``/``created`` and drops ``body`` once the image is
    in the catalogue, so that logs and feeds never carry image bytes.
    """

    spider: str
    image_url: str
    page_url: str
    body: bytes = field(repr=False)
    style_code: str | None = None
    weak_model: str | None = None
    colourway: str | None = None
    title: str | None = None
    seen_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    extra: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    created: bool | None = None

    @classmethod
    def of_sku(cls, sku: SkuItem, image_url: str, body: bytes) -> ImageItem:
        return cls(
            spider=sku.spider,
            image_url=image_url,
            page_url=sku.page_url,
            body=body,
            style_code=sku.style_code,
            weak_model=sku.weak_model,
            colourway=sku.colourway,
            title=sku.title,
            extra={k: v for k, v in {"brand": sku.brand, **sku.extra}.items() if v is not None},
        )
