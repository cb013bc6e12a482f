"""Shopify stores: ``/products.json?limit=250&page=N``, footwear only, style codes found
where stores really put them (tags, handle, description, image file names; never the
variant SKU, which stores fill with their own ids)."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import unquote, urlsplit

from scraper.items import SkuItem
from scraper.parsing import (
    PageResult,
    ParseError,
    Problem,
    absolute_url,
    as_list,
    get_path,
    load_json,
    text,
    unique,
)
from scraper.parsing.names import (
    find_labelled_style_codes,
    find_style_codes,
    normalise_style_code,
    weak_model_name,
)

PAGE_SIZE = 250

_FOOTWEAR = re.compile(
    r"\b(footwear|shoes?|sneakers?|trainers?|high[- ]tops?|low[- ]tops?)\b", re.I
)
_NOT_FOOTWEAR = re.compile(
    r"\b(socks?|apparel|accessor\w*|laces?|shoe[- ]?care|care|cleaners?|insoles?|bags?|hats?|"
    r"caps?|beanies?|t-?shirts?|shirts?|tees?|hoodies?|sweat\w*|crewnecks?|pullovers?|"
    r"jackets?|vests?|jerseys?|pants|jeans|shorts|skirts?|dresses?|leggings|slides?|sandals?|"
    r"slippers?|gift[- ]?cards?|keychains?|posters?|books?|shoe[- ]?trees?|shoe[- ]?horns?|"
    r"protectors?|sprays?|wipes?|brush(?:es)?|kits?|crates?|backpacks?|wallets?|belts?|"
    r"gloves?|sunglasses|watches|candles?|toys?|figures?|stickers?)\b",
    re.I,
)
_TAGS_SPLIT = re.compile(r"\s*,\s*")
_HTML_TAG = re.compile(r"<[^>]+>")


def store_base(store: str) -> str:
    """``https://host[:port]`` of a store given as a URL or a bare host name."""
    raw = store.strip()
    if "//" not in raw:
        raw = f"https://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not a store URL: {store!r} (expected e.g. https://kith.com)")
    return f"{parts.scheme}://{parts.netloc}"


def products_url(store: str, page: int) -> str:
    return f"{store_base(store)}/products.json?limit={PAGE_SIZE}&page={page}"


def tags_of(product: dict[str, Any]) -> list[str]:
    """Tags as a list, also from the comma-separated string of older stores."""
    raw = product.get("tags")
    if isinstance(raw, str):
        values: list[Any] = _TAGS_SPLIT.split(raw)
    else:
        values = as_list(raw)
    return [t for t in (text(v) for v in values) if t]


def _words(value: str) -> str:
    """Tag and type words as the patterns see them: "type_Sneakers" -> "type Sneakers"."""
    return value.replace("_", " ")


def is_footwear(product: dict[str, Any]) -> bool:
    """Footwear by product type; by tags where the type is empty or says neither
    ("Lifestyle", "Basketball"). Apparel, accessories, shoe care, slides: not footwear."""
    kind = _words(text(product.get("product_type")) or "")
    if _NOT_FOOTWEAR.search(kind):
        return False
    if _FOOTWEAR.search(kind):
        return True
    tags = _words(" | ".join(tags_of(product)))
    return bool(_FOOTWEAR.search(tags)) and not _NOT_FOOTWEAR.search(tags)


def _image_names(product: dict[str, Any]) -> list[str]:
    names = []
    for image in as_list(product.get("images")):
        src = text(get_path(image, "src"))
        if src:
            names.append(unquote(urlsplit(src).path.rsplit("/", 1)[-1]))
    return names


def style_code_of(product: dict[str, Any]) -> tuple[str | None, str | None]:
    """The style code of a product and the field it came from, or ``(None, None)``.

    Looked for in the tags, the handle, the description ("Style: ..."), the image file
    names and the title, in that order. ``variants[].sku`` is deliberately not used.
    """
    for tag in tags_of(product):
        code = normalise_style_code(tag) or next(iter(find_style_codes(tag)), None)
        if code:
            return code, "tags"
    codes = find_style_codes(text(product.get("handle")))
    if codes:
        return codes[0], "handle"
    body = _description(product)
    codes = find_labelled_style_codes(body) or find_style_codes(body)
    if codes:
        return codes[0], "body_html"
    for name in _image_names(product):
        codes = find_style_codes(name)
        if codes:
            return codes[0], "image_name"
    codes = find_style_codes(text(product.get("title")))
    if codes:
        return codes[0], "title"
    return None, None


_COLOUR_LABEL = re.compile(
    r"\b(?:colou?r(?:way)?|official\s+colou?rs?)\s*:\s*([^\n<|;]{3,80})", re.IGNORECASE
)
# Title suffixes that name who a shoe is for, not its colour: "- Mens", "(GS)".
_NOT_A_COLOUR = re.compile(
    r"^(?:m[ae]ns?'?s?|wom[ae]ns?'?s?|wmns|unisex|kids?'?s?|gs|ps|td|grade school|pre-?school|"
    r"toddlers?|infants?|big kids?'?s?|little kids?'?s?|youth)$",
    re.IGNORECASE,
)


def _description(product: dict[str, Any]) -> str:
    """``body_html`` as plain text (tags removed, entities decoded); empty when absent."""
    raw = product.get("body_html")
    return html.unescape(_HTML_TAG.sub("\n", raw)) if isinstance(raw, str) else ""


def colourway_of(product: dict[str, Any]) -> str | None:
    """The colour option's value, else a "Colour: ..." line of the description, else the
    colour the title carries ("(Black)", "- Black"; not "- Mens" or "(GS)")."""
    for option in as_list(product.get("options")):
        name = (text(get_path(option, "name")) or "").lower()
        values = as_list(get_path(option, "values"))
        if name in ("color", "colour", "colorway", "colourway") and values:
            return text(values[0])
    labelled = _COLOUR_LABEL.search(_description(product))
    if labelled and text(labelled.group(1)):
        return text(labelled.group(1))
    title = text(product.get("title")) or ""
    for pattern in (r"\(([^)]+)\)\s*$", r"\s[-–|]\s(.+)$"):
        match = re.search(pattern, title)
        value = text(match.group(1)) if match else None
        if value and not _NOT_A_COLOUR.match(value):
            return value
    return None


def parse_product(product: Any, store: str, spider: str) -> SkuItem | Problem:
    base = store_base(store)
    if not isinstance(product, dict):
        return Problem("malformed_product", f"{base}: product entry is not an object", True)
    handle = text(product.get("handle"))
    page_url = f"{base}/products/{handle}" if handle else f"{base}/products.json"
    if not is_footwear(product):
        return Problem(
            "not_footwear", f"{page_url}: product_type {product.get('product_type')!r}", True
        )
    images = unique(
        absolute_url(get_path(image, "src"), base) for image in as_list(product.get("images"))
    )
    if not images:
        return Problem("no_images", f"{page_url}: footwear without images", True)
    code, where = style_code_of(product)
    title = text(product.get("title"))
    brand = text(product.get("vendor"))
    return SkuItem(
        spider=spider,
        page_url=page_url,
        style_code=code,
        title=title,
        weak_model=weak_model_name(title, brand),
        colourway=colourway_of(product),
        image_urls=images,
        product_key=f"{base}#{product.get('id', handle)}",
        brand=brand,
        extra={k: v for k, v in {"store": base, "style_code_from": where}.items() if v},
    )


def parse_products_page(body: bytes | str, url: str, store: str, spider: str) -> PageResult:
    """One page of ``/products.json``; ``next_urls`` holds the next page unless this one is empty."""
    doc = load_json(body, url)
    products = get_path(doc, "products")
    if not isinstance(products, list):
        raise ParseError("unexpected_shape", f"{url}: no products list")
    result = PageResult()
    for product in products:
        parsed = parse_product(product, store, spider)
        if isinstance(parsed, Problem):
            result.problems.append(parsed)
            continue
        result.skus.append(parsed)
        for name, value in (
            ("style_code", parsed.style_code),
            ("title", parsed.title),
            ("colourway", parsed.colourway),
        ):
            if value is None:
                result.problems.append(
                    Problem(f"missing_{name}", f"{parsed.page_url}: no {name} found", False)
                )
    if products:
        result.next_urls.append(products_url(store, current_page(url) + 1))
    return result


def current_page(url: str) -> int:
    match = re.search(r"[?&]page=(\d+)", url)
    return int(match.group(1)) if match else 1
