"""Fixtures of the scraper tests: saved-page fixtures, a local sneaker site, crawl runs."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from tests.scraper.local_site import LocalSite, Reply, Seen, content, picture_route, redirect, serve

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]
MAX_DOWNLOAD = 1_000_000  # DOWNLOAD_MAXSIZE of the test crawls; huge.png is larger


def render_fixture(name: str, base: str) -> bytes:
    """A fixture file with ``{{BASE}}`` (scheme, host, port) and ``{{HOST}}`` filled in."""
    raw = (FIXTURES / name).read_text(encoding="utf-8")
    host = base.split("//", 1)[1]
    return raw.replace("{{BASE}}", base).replace("{{HOST}}", host).encode("utf-8")


@pytest.fixture
def render() -> Callable[[str, str], bytes]:
    """``render(name, base)``: a fixture file as served by a site at ``base``."""
    return render_fixture


# --- the local sneaker site ---------------------------------------------------------------

# Different URLs, same bytes: the catalogue must keep one image with several sources.
SAME_PICTURE = {
    "dunk-panda-copy.jpg": "dunk-panda-sq.jpg",
    "DD1391-100_panda.jpg": "dunk-panda-sq.jpg",
    "am90-grey-1-copy.jpg": "am90-grey-1.jpg",
    "aj3-mocha-copy.jpg": "aj3-mocha-men.jpg",
}


def _huge_png() -> bytes:
    noise = Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3))
    out = io.BytesIO()
    noise.save(out, format="PNG", compress_level=1)
    assert len(out.getvalue()) > MAX_DOWNLOAD
    return out.getvalue()


def _pictures() -> Callable[[Seen], Reply]:
    cache: dict[str, Reply] = {}
    special: dict[str, Callable[[Seen], Reply]] = {
        "tiny.png": picture_route("tiny", "png", (64, 64)),
        "broken.jpg": content(b"<html>this is not a picture</html>", "image/jpeg"),
        "huge.png": content(_huge_png(), "image/png"),
        "missing.jpg": content(b"gone", "text/plain", status=404),
    }

    def route(request: Seen) -> Reply:
        name = request.path.rsplit("/", 1)[-1]
        if name == "redirect-loop.jpg":  # endless redirects, each to a new URL
            hop = int(request.query.get("hop", ["0"])[0]) + 1
            return redirect(f"{request.path}?hop={hop}")(request)
        if name in special:
            return special[name](request)
        seed = SAME_PICTURE.get(name, name)
        if seed not in cache:
            cache[seed] = picture_route(seed, seed.rsplit(".", 1)[-1])(request)
        return cache[seed]

    return route


# Nike's image CDN (/a/images/<transforms>/<asset>/<name>): any transform of an asset gives
# its picture at that size; the product-page size (t_PDP_1280_v1) exists for every asset
# but this one, as when Nike has no large rendition of a picture.
NO_LARGE_ASSET = "0d1c2b3a-4f5e-4d6c-8b7a-9f8e7d6c5b4a"
LARGE_SIDE, LISTED_SIDE = 1280, 592


def _nike_cdn() -> Callable[[Seen], Reply]:
    cache: dict[tuple[str, bool], Reply] = {}

    def route(request: Seen) -> Reply:
        segments = request.path.split("/")
        asset, large = segments[-2], "t_PDP_1280_v1" in segments
        if large and asset == NO_LARGE_ASSET:
            return 404, {"Content-Type": "text/plain"}, b"no such rendition"
        if (asset, large) not in cache:
            side = LARGE_SIDE if large else LISTED_SIDE
            cache[asset, large] = picture_route(asset, "png", (side, side))(request)
        return cache[asset, large]

    return route


def _product_wall(base: str) -> Callable[[Seen], Reply]:
    def route(request: Seen) -> Reply:
        if request.headers.get("nike-api-caller-id") != "nike:dotcom:browse:wall.client:2.0":
            name = "nike_wall_error.json"  # as Nike does: an error in a HTTP 200
        else:
            name = {"24": "nike_wall_page2.json", "48": "nike_wall_page3.json"}.get(
                request.query.get("anchor", [""])[0], "nike_wall_error.json"
            )
        return 200, {"Content-Type": "application/json"}, render_fixture(name, base)

    return route


def _shopify_pages(base: str) -> Callable[[Seen], Reply]:
    pages = {"1": "shopify_products_page1.json", "2": "shopify_products_page2.json"}

    def route(request: Seen) -> Reply:
        name = pages.get(request.query.get("page", ["1"])[0], "shopify_products_empty.json")
        return 200, {"Content-Type": "application/json"}, render_fixture(name, base)

    return route


def sneaker_site_routes(site: LocalSite) -> None:
    base = site.base
    html, js = "text/html; charset=utf-8", "application/json"
    site.routes.update(
        {
            "/robots.txt": content(b"User-agent: *\nDisallow: /private/\n", "text/plain"),
            "/w/mens-shoes-nik1zy7ok": content(render_fixture("nike_listing.html", base), html),
            "/api/product_feed/threads/v2": content(
                render_fixture("nike_launch_feed.json", base), js
            ),
            "/t/air-max-90/FQ8822-084": content(render_fixture("nike_product.html", base), html),
            "/w/denied": content(render_fixture("nike_no_json.html", base), html),
            "/w/server-error": content(b"oops", "text/plain", status=500),
            "/products.json": _shopify_pages(base),
        }
    )
    pictures = _pictures()
    site.prefixes.update(
        {
            "/images/": pictures,
            "/a/images/": _nike_cdn(),
            "/cdn/shop/files/": pictures,
            "/private/": pictures,
            "/api/discover/product_wall/": _product_wall(base),
            "/discover/product_wall/": _product_wall(base),
        }
    )


@pytest.fixture(scope="module")
def sneaker_site() -> Iterator[LocalSite]:
    site = LocalSite()
    with serve(site):
        sneaker_site_routes(site)
        yield site


# --- crawls -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrawlRun:
    returncode: int
    log: str


def local_settings(site: LocalSite) -> list[str]:
    """Settings that keep a crawl on the local site, fast and deterministic."""
    settings = {
        "NIKE_API_BASE": f"{site.base}/api",
        "SKULAB_ALLOWED_HOSTS": "127.0.0.1",
        "AUTOTHROTTLE_ENABLED": "False",
        "DOWNLOAD_DELAY": "0",
        "RETRY_TIMES": "1",
        "DOWNLOAD_MAXSIZE": str(MAX_DOWNLOAD),
        "TELNETCONSOLE_ENABLED": "False",
    }
    return [arg for key, value in settings.items() for arg in ("-s", f"{key}={value}")]


def run_crawl(spider: str, data: Path, site: LocalSite, *args: str, timeout: int = 120) -> CrawlRun:
    """``scrapy crawl <spider>`` from the repository root, as a user runs it."""
    env = {**os.environ, "SKULAB_DATA": str(data)}
    env.pop("DATABASE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", spider, *local_settings(site), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CrawlRun(proc.returncode, proc.stdout + proc.stderr)


def nike_start_urls(site: LocalSite) -> str:
    paths = [
        "/w/mens-shoes-nik1zy7ok",
        "/api/product_feed/threads/v2?filter=marketplace(US)",
        "/t/air-max-90/FQ8822-084",
        "/w/denied",
        "/w/server-error",
        "/w/gone",
        "/discover/product_wall/v1/no-header",  # not under NIKE_API_BASE: no header, error in 200
    ]
    return ",".join(site.base + p for p in paths)
