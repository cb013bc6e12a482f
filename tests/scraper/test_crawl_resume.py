"""A crawl killed with -9 and run again with the same JOBDIR sees every page.

A paged Shopify store on 127.0.0.1; ``scrapy crawl shopify -s JOBDIR=...`` is killed while
page 1's pictures download, then started again. Without the JOBDIR guard the resumed crawl
read a broken queue, never asked for the pages queued before the kill (2 and 3 of 3), and
ended with exit status 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db import Catalogue
from db.models import ImageSource
from tests.scraper.conftest import REPO, local_settings, run_crawl
from tests.scraper.local_site import LocalSite, Seen, picture_route, serve

pytestmark = pytest.mark.slow

PAGES = 3
PER_PAGE = 40


def _page(base: str, page: int) -> bytes:
    if page > PAGES:
        return b'{"products": []}'
    products = []
    for i in range(PER_PAGE):
        n = page * 100 + i
        products.append(
            {
                "id": n,
                "title": f"Nike Dunk Low Retro {n}",
                "handle": f"dunk-{n}",
                "vendor": "Nike",
                "product_type": "Sneakers",
                "tags": [f"DD{n:04d}-100"],
                "variants": [{"id": n, "title": "9", "sku": f"X{n}"}],
                "images": [{"id": n, "src": f"{base}/cdn/shop/files/p{n}.jpg", "position": 1}],
            }
        )
    return json.dumps({"products": products}).encode()


def paged_store(site: LocalSite) -> None:
    def pages(request: Seen) -> tuple[int, dict[str, str], bytes]:
        page = int(request.query.get("page", ["1"])[0])
        return 200, {"Content-Type": "application/json"}, _page(site.base, page)

    def pictures(request: Seen) -> tuple[int, dict[str, str], bytes]:
        return picture_route(request.path.rsplit("/", 1)[-1], "jpg")(request)

    site.routes.update(
        {
            "/robots.txt": lambda _r: (200, {"Content-Type": "text/plain"}, b"User-agent: *\n"),
            "/products.json": pages,
        }
    )
    site.prefixes["/cdn/shop/files/"] = pictures


def _pages_seen(site: LocalSite) -> set[int]:
    return {int(s.query.get("page", ["1"])[0]) for s in site.seen if s.path == "/products.json"}


def test_a_crawl_killed_with_sigkill_resumes_without_losing_pages(tmp_path: Path) -> None:
    site = LocalSite(delay_s=0.05)
    with serve(site):
        paged_store(site)
        data, jobdir = tmp_path / "data", tmp_path / "job"
        args = ["-a", f"stores={site.base}", "-s", f"JOBDIR={jobdir}"]
        env = {**os.environ, "SKULAB_DATA": str(data)}
        env.pop("DATABASE_URL", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "scrapy", "crawl", "shopify", *local_settings(site), *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 120
            # killed while page 1's pictures download and page 2 waits in the queue
            while len(site.paths("/cdn/")) < 10:
                assert proc.poll() is None, "the crawl ended before it could be killed"
                assert time.monotonic() < deadline, "the crawl never got to its pictures"
                time.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        first = _pages_seen(site)
        assert max(first) < PAGES + 1, "killed too late to test anything"

        again = run_crawl("shopify", data, site, *args)

        assert again.returncode == 0, again.log[-3000:]
        missing = set(range(1, PAGES + 2)) - _pages_seen(site)  # every page, then the empty one
    with Catalogue(data).read() as s:
        pictures = s.scalar(select(func.count(func.distinct(ImageSource.image_url))))
    assert not missing and pictures == PAGES * PER_PAGE, (missing, pictures)
    assert "struct.error" not in again.log
    assert "did not stop cleanly" in again.log
