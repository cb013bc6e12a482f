"""Nike: listing pages, the product-wall API, the launch feed and product pages.

Shapes as described in ``SOURCES.md``, and those that saved pages and public scrapers show
besides: ``initialState`` serialised as a string, the older wall (``products[].colorways[]``)
and ``window.INITIAL_REDUX_STATE``, product pages with ``productGroups`` and
``Threads.products`` keyed by style code. Every function takes the raw document and the URL
it came from and returns a :class:`~scraper.parsing.PageResult`; a document that cannot be
read raises :class:`~scraper.parsing.ParseError`.

Pictures on Nike's CDN are asked for at product-page size (1280 px) and one per asset;
``SkuItem.image_fallbacks`` keeps the page's own URL for when the larger one is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
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
)
from scraper.parsing.names import normalise_style_code, weak_model_name

BRAND = "Nike"
SITE_BASE = "https://www.nike.com"
API_BASE = "https://api.nike.com"
API_HOSTS = frozenset({"api.nike.com"})
CALLER_ID_HEADER = "nike-api-caller-id"
CALLER_ID = "nike:dotcom:browse:wall.client:2.0"
FOOTWEAR = "FOOTWEAR"

_NEXT_DATA = re.compile(
    r"<script[^>]*\bid=[\"']__NEXT_DATA__[\"'][^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE
)
# Nike's pages before Next.js (and some still): the same state in a script variable.
_REDUX_STATE = re.compile(
    r"window\.INITIAL_REDUX_STATE\s*=\s*(\{.*?\})\s*;?\s*</script>", re.DOTALL | re.IGNORECASE
)


def extract_next_data(html: str, url: str) -> dict[str, Any]:
    """The JSON document a Next.js page embeds in ``<script id="__NEXT_DATA__">``.

    Older pages carry the same state in ``window.INITIAL_REDUX_STATE = {...}``; it is
    returned in the Next.js shape, under ``props.pageProps.initialState``.
    """
    match = _NEXT_DATA.search(html)
    if match is None:
        redux = _REDUX_STATE.search(html)
        if redux is None:
            raise ParseError("no_embedded_json", f"{url}: no __NEXT_DATA__ script in the page")
        state = load_json(redux.group(1), url)
        if not isinstance(state, dict):
            raise ParseError("no_embedded_json", f"{url}: INITIAL_REDUX_STATE is not an object")
        return {"props": {"pageProps": {"initialState": state}}}
    doc = load_json(match.group(1), url)
    if not isinstance(doc, dict):
        raise ParseError("no_embedded_json", f"{url}: __NEXT_DATA__ is not a JSON object")
    return doc


def initial_state(next_data: Any) -> dict[str, Any] | None:
    """``props.pageProps.initialState``, which some pages serialise as a JSON string."""
    state = get_path(next_data, "props", "pageProps", "initialState")
    if isinstance(state, str):
        try:
            state = json.loads(state)
        except ValueError:
            return None
    return state if isinstance(state, dict) else None


# --- pictures ---------------------------------------------------------------------------

# Nike's image CDN: /a/images/<transforms...>/<asset>/<seo name>. The asset is a UUID (or a
# 20-character id on older pictures); the transforms choose crop, size and format.
_ASSET_ID = re.compile(
    r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[a-z0-9]{20})$",
    re.IGNORECASE,
)
LARGE_TRANSFORM = "t_PDP_1280_v1/f_auto,q_auto:eco"
"""The product-page transform: 1280 px, where listings ask for 318 to 592 px."""
_LARGE_ENOUGH = re.compile(
    r"^t_default$|^t_PDP_(?:1[2-9]\d\d|[2-9]\d{3})|(?:^|,)w_(?:1[2-9]\d\d|[2-9]\d{3}|\d{5,})(?:,|$)",
    re.IGNORECASE,
)
_CARD_KEYS = ("squarishURL", "portraitURL", "landscapeURL")
_CARD_OBJECTS = ("squarish", "portrait", "landscape")


def image_asset(url: str) -> str:
    """What identifies the picture behind ``url``: its asset on Nike's CDN (the same photo
    in any crop, size or format), else the URL itself."""
    segments = urlsplit(url).path.split("/")
    if len(segments) >= 4 and "images" in segments[:-2] and _ASSET_ID.match(segments[-2]):
        return f"nike-asset:{segments[-2].lower()}"
    return url


def large_image_url(url: str) -> str:
    """The same picture at product-page size: a listing's ``c_limit,w_592,f_auto/t_product_v1``
    becomes ``t_PDP_1280_v1/f_auto,q_auto:eco``. Originals (``t_default``) and pictures already
    1280 px or wider, and URLs of other shapes, are kept as they are."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    if len(segments) < 5 or segments[1:3] != ["a", "images"] or not segments[-1]:
        return url
    transforms, asset = segments[3:-2], segments[-2]
    if not _ASSET_ID.match(asset) or any(_LARGE_ENOUGH.search(t) for t in transforms):
        return url
    path = "/".join(["", "a", "images", LARGE_TRANSFORM, asset, segments[-1]])
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class Pictures:
    """The pictures of one colourway, in page order, one per CDN asset, at a large size;
    remembers the URL the page gave for each (to fall back on when the large one fails)."""

    def __init__(self, base: str):
        self.base = base
        self._urls: dict[str, str] = {}  # download URL -> URL on the page
        self._assets: set[str] = set()

    def add(self, raw: Any) -> None:
        url = absolute_url(raw, self.base)
        if url is None:
            return
        asset = image_asset(url)
        if asset in self._assets:
            return
        self._assets.add(asset)
        self._urls.setdefault(large_image_url(url), url)

    def add_card(self, props: Any) -> None:
        """The pictures of a content card: its square, portrait and landscape renditions
        (``squarishURL`` or ``squarish.url``), which are one picture when they crop the same
        asset."""
        if not isinstance(props, dict):
            return
        for key, obj in zip(_CARD_KEYS, _CARD_OBJECTS, strict=True):
            self.add(props.get(key))
            self.add(get_path(props, obj, "url"))

    def merge(self, other: Pictures) -> None:
        for url, original in other._urls.items():
            asset = image_asset(original)
            if asset not in self._assets:
                self._assets.add(asset)
                self._urls.setdefault(url, original)

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(self._urls)

    @property
    def fallbacks(self) -> dict[str, str]:
        return {url: original for url, original in self._urls.items() if url != original}


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


def _site_base(page_url: str, api_base: str) -> str:
    """What relative product-page links are relative to: nike.com for API answers."""
    host = urlsplit(page_url).hostname or ""
    if host in API_HOSTS or page_url.startswith(api_base.rstrip("/") + "/"):
        return SITE_BASE
    return page_url


def _product_page_url(value: Any, base: str) -> str | None:
    """A product page link: ``{"url": ...}``, ``{"path": ...}`` or a plain string; Nike's
    ``{countryLang}`` placeholder is dropped."""
    if isinstance(value, dict):
        value = text(value.get("url")) or text(value.get("path"))
    raw = text(value)
    if raw is None:
        return None
    return absolute_url(raw.replace("{countryLang}", ""), base)


def style_code_of_url(url: str | None) -> str | None:
    """The style code a Nike product page URL ends with (``/t/<slug>/DD1391-100?x=y``)."""
    if not url:
        return None
    return normalise_style_code(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def _colour_description(product: dict[str, Any]) -> str | None:
    colours = product.get("displayColors")
    if isinstance(colours, list):  # seen as a list of one on some pages
        colours = next((c for c in colours if isinstance(c, dict)), None)
    return text(get_path(colours, "colorDescription")) or text(product.get("colorDescription"))


def _extra(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def wall_product(
    product: Any, page_url: str, spider: str, api_base: str = API_BASE
) -> SkuItem | Problem:
    """One entry of ``productGroupings[].products[]``: a colourway."""
    if not isinstance(product, dict):
        return Problem("malformed_product", f"{page_url}: product entry is not an object", True)
    site = _site_base(page_url, api_base)
    product_page = _product_page_url(product.get("pdpUrl"), site)
    raw_code = product.get("productCode")
    code = normalise_style_code(raw_code) or style_code_of_url(product_page)
    if code is None:
        return Problem(
            "no_style_code", f"{page_url}: product without a style code ({raw_code!r})", True
        )
    if not _is_footwear(product.get("productType")):
        return Problem("not_footwear", f"{page_url}: {code} is {product.get('productType')}", True)
    pictures = Pictures(page_url)
    for key in ("squarishURL", "portraitURL"):
        pictures.add(get_path(product, "colorwayImages", key))
    if not pictures.urls:
        return Problem("no_images", f"{page_url}: {code} has no colorwayImages", True)
    title = text(get_path(product, "copy", "title"))
    return SkuItem(
        spider=spider,
        page_url=product_page or page_url,
        style_code=code,
        title=title,
        weak_model=weak_model_name(title, BRAND),
        colourway=_colour_description(product),
        image_urls=pictures.urls,
        product_key=text(product.get("groupKey")) or code.split("-")[0],
        brand=BRAND,
        extra=_extra(
            subtitle=text(get_path(product, "copy", "subTitle")),
            global_product_id=text(product.get("globalProductId")),
            product_type=text(product.get("productType")),
        ),
        image_fallbacks=pictures.fallbacks,
    )


def legacy_wall_products(
    product: Any, page_url: str, spider: str, api_base: str = API_BASE
) -> list[SkuItem | Problem]:
    """An entry of an older wall's ``products[]``: one product with its ``colorways[]``,
    whose style codes are only in their product page links."""
    if not isinstance(product, dict):
        return [Problem("malformed_product", f"{page_url}: product entry is not an object", True)]
    site = _site_base(page_url, api_base)
    title = text(product.get("title"))
    kind = product.get("productType")
    colourways = [c for c in as_list(product.get("colorways")) if isinstance(c, dict)]
    found: list[SkuItem | Problem] = []
    for colourway in colourways or [product]:
        product_page = _product_page_url(
            colourway.get("pdpUrl") or colourway.get("url"), site
        ) or _product_page_url(product.get("pdpUrl") or product.get("url"), site)
        code = style_code_of_url(product_page)
        if code is None:
            found.append(Problem("no_style_code", f"{page_url}: {title!r} has no style code", True))
            continue
        if not _is_footwear(kind):
            found.append(Problem("not_footwear", f"{page_url}: {code} is {kind}", True))
            continue
        pictures = Pictures(page_url)
        for key in ("squarishURL", "portraitURL"):
            pictures.add(get_path(colourway, "images", key))
        if not pictures.urls:
            found.append(Problem("no_images", f"{page_url}: {code} has no images", True))
            continue
        found.append(
            SkuItem(
                spider=spider,
                page_url=product_page or page_url,
                style_code=code,
                title=title,
                weak_model=weak_model_name(title, BRAND),
                colourway=text(colourway.get("colorDescription")),
                image_urls=pictures.urls,
                product_key=text(product.get("cloudProductId")) or code.split("-")[0],
                brand=BRAND,
                extra=_extra(subtitle=text(product.get("subtitle"))),
                image_fallbacks=pictures.fallbacks,
            )
        )
    return found


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
    """A product wall: the ``Wall`` of a listing page or a product-wall API answer.

    Also reads the older wall (``products[]`` with ``colorways[]``).
    """
    if not isinstance(wall, dict):
        raise ParseError("unexpected_shape", f"{url}: the wall is not an object")
    result = PageResult()
    if isinstance(wall.get("productGroupings"), list):
        for grouping in wall["productGroupings"]:
            products = get_path(grouping, "products")
            if not isinstance(products, list):
                result.problems.append(
                    Problem("malformed_product", f"{url}: a grouping without products", True)
                )
                continue
            for product in products:
                _collect(result, wall_product(product, url, spider, api_base), url)
    elif isinstance(wall.get("products"), list):
        for product in wall["products"]:
            for parsed in legacy_wall_products(product, url, spider, api_base):
                _collect(result, parsed, url)
    else:
        raise ParseError("unexpected_shape", f"{url}: no productGroupings list in the wall")
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


def _add_gallery(pictures: Pictures, node: Any) -> None:
    """The pictures of every published-content card, with carousel cards nested in nodes."""
    for child in as_list(get_path(node, "nodes")):
        if text(get_path(child, "subType")) != "video":
            pictures.add_card(get_path(child, "properties"))
        _add_gallery(pictures, child)


def feed_product(
    info: Any, page_url: str, spider: str, gallery: Pictures | None
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
    pictures = Pictures(page_url)
    pictures.add(get_path(info, "imageUrls", "productImageUrl"))
    if gallery is not None:
        pictures.merge(gallery)
    if not pictures.urls:
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
        image_urls=pictures.urls,
        product_key=text(get_path(merch, "styleCode")) or code.split("-")[0],
        brand=brand,
        extra=_extra(
            full_title=text(get_path(content, "fullTitle")),
            subtitle=text(get_path(content, "subtitle")),
        ),
        image_fallbacks=pictures.fallbacks,
    )


def parse_launch_feed(doc: Any, url: str, spider: str, api_base: str = API_BASE) -> PageResult:
    """``product_feed/threads/v2``: threads, each with one or more products.

    The thread's gallery images go to its first product (the headline one); every product
    keeps its own main image. Editorial titles are ignored: they are release names. A
    thread without products (an editorial story) is counted and skipped.
    """
    _check_api_errors(doc, url)
    objects = get_path(doc, "objects")
    if not isinstance(objects, list):
        raise ParseError("unexpected_shape", f"{url}: no objects list in the launch feed")
    result = PageResult()
    for thread in objects:
        infos = get_path(thread, "productInfo")
        if infos is None or infos == []:
            thread_id = text(get_path(thread, "id"))
            result.problems.append(
                Problem("thread_without_products", f"{url}: thread {thread_id} has none", True)
            )
            continue
        if not isinstance(infos, list):
            result.problems.append(
                Problem(
                    "malformed_product", f"{url}: a launch thread's productInfo is no list", True
                )
            )
            continue
        slug = text(get_path(thread, "publishedContent", "properties", "seo", "slug"))
        page_url = f"{SITE_BASE}/launch/t/{slug}" if slug else url
        gallery = Pictures(url)
        _add_gallery(gallery, get_path(thread, "publishedContent"))
        for position, info in enumerate(infos):
            parsed = feed_product(info, page_url, spider, gallery if position == 0 else None)
            _collect(result, parsed, url)
    next_url = api_url(get_path(doc, "pages", "next"), api_base)
    if next_url:
        result.next_urls.append(next_url)
    return result


# --- product pages ------------------------------------------------------------------------

# Keys under a product that hold other products (siblings, recommendations): not walked.
_OTHER_PRODUCTS = frozenset(
    {"colorways", "colorwayImages", "productGroups", "relatedProducts", "recommendations"}
)
_IMAGE_URL_KEYS = frozenset({"firstImageUrl", "productImageUrl", "imageUrl", "portraitImageUrl"})


def _add_product_pictures(pictures: Pictures, doc: Any, depth: int = 0) -> None:
    """The pictures of a product of a product page, whatever its (unverified) shape: content
    cards (``contentImages[].properties.squarish.url``), thread cards
    (``nodes[].nodes[].properties.squarishURL``), ``firstImageUrl`` and the like."""
    if depth > 8:
        return
    if isinstance(doc, list):
        for value in doc:
            _add_product_pictures(pictures, value, depth + 1)
        return
    if not isinstance(doc, dict):
        return
    kind = text(doc.get("cardType")) or text(doc.get("subType")) or ""
    if kind.lower() == "video":
        return
    props = doc.get("properties")
    if isinstance(props, dict):
        pictures.add_card(props)
    pictures.add_card(doc)  # squarishURL/portraitURL right on the object
    for key, value in doc.items():
        if key in _OTHER_PRODUCTS:
            continue
        if key in _IMAGE_URL_KEYS:
            pictures.add(value)
        elif isinstance(value, dict | list) and key != "properties":
            _add_product_pictures(pictures, value, depth + 1)


def _products_in(value: Any) -> list[dict[str, Any]]:
    """Products listed as an object keyed by style code, or as a list."""
    if isinstance(value, dict):
        value = list(value.values())
    return [p for p in as_list(value) if isinstance(p, dict)]


def product_page_products(next_data: Any) -> list[dict[str, Any]]:
    """Every product that a product page describes, the selected one first.

    ``props.pageProps.selectedProduct`` (also under ``initialState``), the colourways and age
    groups in ``props.pageProps.productGroups[].products`` (keyed by style code), and older
    pages' ``initialState.Threads.products`` (keyed by style code).
    """
    props = get_path(next_data, "props", "pageProps")
    state = initial_state(next_data)
    found: list[dict[str, Any]] = []
    for selected in (get_path(props, "selectedProduct"), get_path(state, "selectedProduct")):
        if isinstance(selected, dict):
            found.append(selected)
    for group in as_list(get_path(props, "productGroups")):
        found += _products_in(get_path(group, "products"))
    found += _products_in(get_path(state, "Threads", "products"))
    return found


def _first_text(doc: Any, *paths: tuple[str, ...]) -> str | None:
    for path in paths:
        value = text(get_path(doc, *path))
        if value:
            return value
    return None


def _product_title(product: dict[str, Any]) -> str | None:
    return _first_text(
        product,
        ("productInfo", "title"),
        ("productInfo", "productName"),
        ("title",),
        ("productInfo", "fullTitle"),
        ("fullTitle",),
        ("copy", "title"),
    )


def _page_product_code(product: dict[str, Any]) -> str | None:
    code = normalise_style_code(product.get("styleColor")) or normalise_style_code(
        product.get("productCode")
    )
    if code is None:
        style = text(product.get("styleCode"))
        colour = text(product.get("colorCode"))
        code = normalise_style_code(f"{style}-{colour}") if style and colour else None
    return code


def _url_for_code(url: str, code: str) -> str:
    """The product page of another colourway: the page URL with its style code replaced."""
    parts = urlsplit(url)
    head, _, last = parts.path.rstrip("/").rpartition("/")
    if normalise_style_code(last) is None or normalise_style_code(last) == code:
        return url
    return urlunsplit((parts.scheme, parts.netloc, f"{head}/{code}", "", ""))


def parse_product_page(
    next_data: dict[str, Any], url: str, spider: str, api_base: str = API_BASE
) -> PageResult:
    """A product page (``/t/<slug>/<style code>``): every colourway it describes.

    Its shape is unverified (SOURCES.md); read where parsers in the wild read it (see
    :func:`product_page_products`), with pictures from the product itself and from
    ``props.pageProps.colorwayImages[]`` (per style code).
    """
    products = product_page_products(next_data)
    if not products:
        raise ParseError("unexpected_shape", f"{url}: no product in the product page")
    colourway_images: dict[str, list[Any]] = {}
    for entry in as_list(get_path(next_data, "props", "pageProps", "colorwayImages")):
        code = normalise_style_code(get_path(entry, "styleColor"))
        if code:
            colourway_images.setdefault(code, []).append(entry)
    page_code = style_code_of_url(url)
    result = PageResult()
    seen: dict[str, int] = {}
    page_title = next((t for t in map(_product_title, products) if t), None)
    for position, product in enumerate(products):
        code = _page_product_code(product) or (page_code if position == 0 else None)
        if code is None:
            result.problems.append(
                Problem("no_style_code", f"{url}: product page without a style code", True)
            )
            continue
        kind = product.get("productType") or get_path(product, "productInfo", "productType")
        if not _is_footwear(kind):
            result.problems.append(Problem("not_footwear", f"{url}: {code} is {kind}", True))
            continue
        pictures = Pictures(url)
        _add_product_pictures(pictures, product)
        for entry in colourway_images.get(code, []):
            _add_product_pictures(pictures, entry)
        if code in seen:  # the selected product again, in its group: add its pictures
            previous = result.skus[seen[code]]
            both = Pictures(url)
            for image in previous.image_urls:
                both.add(previous.image_fallbacks.get(image, image))
            both.merge(pictures)
            result.skus[seen[code]] = replace(
                previous, image_urls=both.urls, image_fallbacks=both.fallbacks
            )
            continue
        if not pictures.urls:
            result.problems.append(Problem("no_images", f"{url}: {code} has no image", True))
            continue
        # the other colourways and age groups of a page are the same shoe: without a title
        # of their own, they take the page's
        title = _product_title(product) or page_title
        colourway = _colour_description(product) or _first_text(
            product, ("productInfo", "colorDescription")
        )
        if colourway is None:
            colourway = next(
                (text(get_path(e, "colorDescription")) for e in colourway_images.get(code, [])),
                None,
            )
        brand = text(product.get("brand")) or BRAND
        on_this_page = code == page_code if page_code else position == 0
        own_page = _product_page_url(
            product.get("pdpUrl") or product.get("url") or product.get("pathName"),
            _site_base(url, api_base),
        )
        item = SkuItem(
            spider=spider,
            page_url=url if on_this_page else own_page or _url_for_code(url, code),
            style_code=code,
            title=title,
            weak_model=weak_model_name(title, brand),
            colourway=colourway,
            image_urls=pictures.urls,
            product_key=_first_text(product, ("groupKey",), ("productGroupId",))
            or code.split("-")[0],
            brand=brand,
            extra=_extra(
                subtitle=_first_text(
                    product, ("productInfo", "subtitle"), ("subTitle",), ("subtitle",)
                ),
                full_title=_first_text(product, ("productInfo", "fullTitle"), ("fullTitle",)),
            ),
            image_fallbacks=pictures.fallbacks,
        )
        seen[code] = len(result.skus)
        _collect(result, item, url)
    return result


def _find_wall(doc: Any, depth: int = 0) -> dict[str, Any] | None:
    """The first object with a ``productGroupings`` list, anywhere in a page's JSON."""
    if depth > 6:
        return None
    if isinstance(doc, dict):
        if isinstance(doc.get("productGroupings"), list):
            return doc
        values: list[Any] = list(doc.values())
    elif isinstance(doc, list):
        values = doc
    else:
        return None
    for value in values:
        if isinstance(value, dict | list):
            found = _find_wall(value, depth + 1)
            if found is not None:
                return found
    return None


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
    state = initial_state(next_data)
    wall = get_path(state, "Wall")
    if isinstance(wall, dict) and any(
        isinstance(wall.get(key), list) for key in ("productGroupings", "products")
    ):
        return parse_wall(wall, url, spider, api_base)
    if product_page_products(next_data):  # before looking for a wall: recommendations
        return parse_product_page(next_data, url, spider, api_base)
    wall = _find_wall(next_data)  # the wall moved within the page
    if wall is not None:
        return parse_wall(wall, url, spider, api_base)
    raise ParseError("unexpected_shape", f"{url}: __NEXT_DATA__ has neither a Wall nor a product")
