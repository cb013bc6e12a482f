"""Nike: listing pages, the product-wall API, the launch feed and product pages.

Shapes as described in ``SOURCES.md``. Every function takes the raw document and the URL
it came from and returns a :class:`~scraper.parsing.PageResult`; a document that cannot be
read raises :class:`~scraper.parsing.ParseError`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
from scraper.parsing.names import normalise_style_code, weak_model_name

BRAND = "Nike"
API_BASE = "https://api.nike.com"
API_HOSTS = frozenset({"api.nike.com"})
CALLER_ID_HEADER = "nike-api-caller-id"
CALLER_ID = "nike:dotcom:browse:wall.client:2.0"
FOOTWEAR = "FOOTWEAR"

_NEXT_DATA = re.compile(
    r"<script[^>]*\bid=[\"']__NEXT_DATA__[\"'][^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE
)


def extract_next_data(html: str, url: str) -> dict[str, Any]:
    """The JSON document a Next.js page embeds in ``<script id="__NEXT_DATA__">``."""
    match = _NEXT_DATA.search(html)
    if match is None:
        raise ParseError("no_embedded_json", f"{url}: no __NEXT_DATA__ script in the page")
    doc = load_json(match.group(1), url)
    if not isinstance(doc, dict):
        raise ParseError("no_embedded_json", f"{url}: __NEXT_DATA__ is not a JSON object")
    return doc


def api_url(ref: Any, api_base: str = API_BASE) -> str | None:
    """Where a "next page" reference of the API points, on ``api_base``.

    References are paths on api.nike.com ("/discover/product_wall/v1/...") or absolute
    URLs on it; both are moved onto ``api_base`` (a test server, a proxy). Other absolute
    URLs are kept as they are.
    """
    raw = text(ref)
    if raw is None:
        return None
    base = urlsplit(api_base.rstrip("/"))
    parts = urlsplit(raw)
    if parts.scheme and parts.netloc and parts.netloc not in API_HOSTS:
        return raw if parts.scheme in ("http", "https") else None
    if not parts.path.startswith("/"):
        return None
    path = base.path.rstrip("/") + parts.path
    return urlunsplit((base.scheme, base.netloc, path, parts.query, ""))


def _is_footwear(product_type: Any) -> bool:
    kind = text(product_type)
    return kind is None or kind.upper() == FOOTWEAR


def wall_product(product: Any, page_url: str, spider: str) -> SkuItem | Problem:
    """One entry of ``productGroupings[].products[]``: a colourway."""
    if not isinstance(product, dict):
        return Problem("malformed_product", f"{page_url}: product entry is not an object", True)
    raw_code = product.get("productCode")
    code = normalise_style_code(raw_code)
    if code is None:
        return Problem(
            "no_style_code", f"{page_url}: product without a style code ({raw_code!r})", True
        )
    if not _is_footwear(product.get("productType")):
        return Problem("not_footwear", f"{page_url}: {code} is {product.get('productType')}", True)
    images = unique(
        absolute_url(get_path(product, "colorwayImages", key), page_url)
        for key in ("squarishURL", "portraitURL")
    )
    if not images:
        return Problem("no_images", f"{page_url}: {code} has no colorwayImages", True)
    title = text(get_path(product, "copy", "title"))
    return SkuItem(
        spider=spider,
        page_url=absolute_url(get_path(product, "pdpUrl", "url"), page_url) or page_url,
        style_code=code,
        title=title,
        weak_model=weak_model_name(title, BRAND),
        colourway=text(get_path(product, "displayColors", "colorDescription")),
        image_urls=images,
        product_key=text(product.get("groupKey")) or code.split("-")[0],
        brand=BRAND,
        extra={
            k: v
            for k, v in {
                "subtitle": text(get_path(product, "copy", "subTitle")),
                "global_product_id": text(product.get("globalProductId")),
            }.items()
            if v
        },
    )


def _missing_field_problems(item: SkuItem, url: str) -> list[Problem]:
    missing = [("title", item.title), ("colourway", item.colourway)]
    return [
        Problem(f"missing_{name}", f"{url}: {item.style_code} has no {name}", False)
        for name, value in missing
        if value is None
    ]


def _collect(result: PageResult, parsed: SkuItem | Problem, url: str) -> None:
    if isinstance(parsed, Problem):
        result.problems.append(parsed)
    else:
        result.skus.append(parsed)
        result.problems.extend(_missing_field_problems(parsed, url))


def parse_wall(wall: Any, url: str, spider: str, api_base: str = API_BASE) -> PageResult:
    """A product wall: the ``Wall`` of a listing page or a product-wall API answer."""
    if not isinstance(wall, dict) or not isinstance(wall.get("productGroupings"), list):
        raise ParseError("unexpected_shape", f"{url}: no productGroupings list in the wall")
    result = PageResult()
    for grouping in wall["productGroupings"]:
        products = get_path(grouping, "products")
        if not isinstance(products, list):
            result.problems.append(
                Problem("malformed_product", f"{url}: a grouping without products", True)
            )
            continue
        for product in products:
            _collect(result, wall_product(product, url, spider), url)
    next_ref = get_path(wall, "pageData", "next") or get_path(wall, "pages", "next")
    next_url = api_url(next_ref, api_base)
    if next_url:
        result.next_urls.append(next_url)
    return result


def api_errors(doc: Any) -> list[str]:
    """The error codes of an API answer ("errors" in a HTTP 200)."""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    if not errors:
        return []
    codes = [text(get_path(e, "code")) or text(get_path(e, "message")) for e in as_list(errors)]
    return [c for c in codes if c] or ["unknown error"]


def _check_api_errors(doc: Any, url: str) -> None:
    errors = api_errors(doc)
    if errors:
        raise ParseError("api_error", f"{url}: API answered with errors: {', '.join(errors)}")


def parse_product_wall_api(doc: Any, url: str, spider: str, api_base: str = API_BASE) -> PageResult:
    _check_api_errors(doc, url)
    return parse_wall(doc, url, spider, api_base)


def _gallery_urls(node: Any, base: str) -> list[str | None]:
    """Image URLs of published-content nodes, including carousel cards nested in nodes."""
    found: list[str | None] = []
    for child in as_list(get_path(node, "nodes")):
        props = get_path(child, "properties")
        for key in ("squarishURL", "portraitURL", "landscapeURL"):
            found.append(absolute_url(get_path(props, key), base))
        found.extend(_gallery_urls(child, base))
    return found


def feed_product(
    info: Any, page_url: str, spider: str, gallery: tuple[str, ...]
) -> SkuItem | Problem:
    """One ``productInfo`` entry of a launch thread."""
    if not isinstance(info, dict):
        return Problem("malformed_product", f"{page_url}: productInfo entry is not an object", True)
    merch = get_path(info, "merchProduct")
    raw_code = get_path(merch, "styleColor")
    code = normalise_style_code(raw_code)
    if code is None:
        style, colour = text(get_path(merch, "styleCode")), text(get_path(merch, "colorCode"))
        code = normalise_style_code(f"{style}-{colour}") if style and colour else None
    if code is None:
        return Problem(
            "no_style_code", f"{page_url}: launch product without a style code ({raw_code!r})", True
        )
    if not _is_footwear(get_path(merch, "productType")):
        return Problem(
            "not_footwear", f"{page_url}: {code} is {get_path(merch, 'productType')}", True
        )
    images = unique([absolute_url(get_path(info, "imageUrls", "productImageUrl"), page_url)])
    images = unique([*images, *gallery])
    if not images:
        return Problem("no_images", f"{page_url}: {code} has no image", True)
    content = get_path(info, "productContent")
    title = text(get_path(content, "title")) or text(get_path(content, "fullTitle"))
    brand = text(get_path(merch, "brand")) or BRAND
    return SkuItem(
        spider=spider,
        page_url=page_url,
        style_code=code,
        title=title,
        weak_model=weak_model_name(title, brand),
        colourway=text(get_path(content, "colorDescription")),
        image_urls=images,
        product_key=text(get_path(merch, "styleCode")) or code.split("-")[0],
        brand=brand,
        extra={k: v for k, v in {"full_title": text(get_path(content, "fullTitle"))}.items() if v},
    )


def parse_launch_feed(doc: Any, url: str, spider: str, api_base: str = API_BASE) -> PageResult:
    """``product_feed/threads/v2``: threads, each with one or more products.

    The thread's gallery images go to its first product (the headline one); every product
    keeps its own main image. Editorial titles are ignored: they are release names.
    """
    _check_api_errors(doc, url)
    objects = get_path(doc, "objects")
    if not isinstance(objects, list):
        raise ParseError("unexpected_shape", f"{url}: no objects list in the launch feed")
    result = PageResult()
    for thread in objects:
        infos = get_path(thread, "productInfo")
        if not isinstance(infos, list) or not infos:
            result.problems.append(
                Problem("malformed_product", f"{url}: a launch thread without productInfo", True)
            )
            continue
        slug = text(get_path(thread, "publishedContent", "properties", "seo", "slug"))
        page_url = f"https://www.nike.com/launch/t/{slug}" if slug else url
        gallery = unique(_gallery_urls(get_path(thread, "publishedContent"), url))
        for position, info in enumerate(infos):
            parsed = feed_product(info, page_url, spider, gallery if position == 0 else ())
            _collect(result, parsed, url)
    next_url = api_url(get_path(doc, "pages", "next"), api_base)
    if next_url:
        result.next_urls.append(next_url)
    return result


def _nested_image_urls(doc: Any, base: str) -> list[str | None]:
    """Image URLs anywhere under a product of a product page (its shape is unverified)."""
    found: list[str | None] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("squarishURL", "portraitURL", "productImageUrl") or (
                key == "url" and isinstance(value, str) and "/images/" in value
            ):
                found.append(absolute_url(value, base))
            else:
                found.extend(_nested_image_urls(value, base))
    elif isinstance(doc, list):
        for value in doc:
            found.extend(_nested_image_urls(value, base))
    return found


def parse_product_page(next_data: dict[str, Any], url: str, spider: str) -> PageResult:
    """A product page (``/t/<slug>/<style code>``): ``props.pageProps.selectedProduct``."""
    product = get_path(next_data, "props", "pageProps", "selectedProduct")
    if not isinstance(product, dict):
        raise ParseError("unexpected_shape", f"{url}: no selectedProduct in the product page")
    result = PageResult()
    raw_code = product.get("styleColor") or product.get("productCode")
    code = normalise_style_code(raw_code) or normalise_style_code(url.rstrip("/").split("/")[-1])
    if code is None:
        result.problems.append(
            Problem("no_style_code", f"{url}: product page without a style code", True)
        )
        return result
    if not _is_footwear(product.get("productType")):
        result.problems.append(
            Problem("not_footwear", f"{url}: {code} is {product.get('productType')}", True)
        )
        return result
    images = unique(_nested_image_urls(product, url))
    if not images:
        result.problems.append(Problem("no_images", f"{url}: {code} has no image", True))
        return result
    title = (
        text(get_path(product, "productInfo", "title"))
        or text(get_path(product, "productInfo", "productName"))
        or text(product.get("title"))
    )
    item = SkuItem(
        spider=spider,
        page_url=url,
        style_code=code,
        title=title,
        weak_model=weak_model_name(title, BRAND),
        colourway=text(product.get("colorDescription")),
        image_urls=images,
        product_key=text(product.get("groupKey")) or code.split("-")[0],
        brand=BRAND,
    )
    _collect(result, item, url)
    return result


def parse_document(
    body: bytes, url: str, spider: str, api_base: str = API_BASE, *, is_json: bool | None = None
) -> PageResult:
    """Any Nike document: tells a listing, a product page, a wall answer and a feed apart."""
    if is_json is None:
        is_json = body.lstrip()[:1] in (b"{", b"[")
    if is_json:
        doc = load_json(body, url)
        if isinstance(doc, dict) and "objects" in doc:
            return parse_launch_feed(doc, url, spider, api_base)
        return parse_product_wall_api(doc, url, spider, api_base)
    html = body.decode("utf-8", errors="replace")
    next_data = extract_next_data(html, url)
    wall = get_path(next_data, "props", "pageProps", "initialState", "Wall")
    if wall is not None:
        return parse_wall(wall, url, spider, api_base)
    if get_path(next_data, "props", "pageProps", "selectedProduct") is not None:
        return parse_product_page(next_data, url, spider)
    raise ParseError("unexpected_shape", f"{url}: __NEXT_DATA__ has neither a Wall nor a product")
