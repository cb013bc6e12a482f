"""Crawl throughput: pictures per second from a local Shopify-like store into a catalogue.

    python bench/bench_crawl.py [--images 1000] [--concurrency 32] [--profile]

Serves generated 400-800 px pictures (JPEG, some PNG and WebP) from 127.0.0.1, runs
``scrapy crawl shopify`` from the repository root with politeness relaxed (AutoThrottle
off, no delay, high concurrency) into a temporary data folder, and prints a markdown row
for BENCHMARKS.md. ``--profile`` also times the ingest steps alone (decode + hash +
thumbnail, then the catalogue write) on the same pictures, one thread, with cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "scraper"))  # the local test site

from local_site import LocalSite, Seen, content, serve, sneaker_picture  # noqa: E402

PER_PRODUCT = 4


def make_pictures(n: int, seed: int = 0) -> dict[str, bytes]:
    rng = random.Random(seed)
    pictures = {}
    for i in range(n):
        ext = "png" if i % 10 == 0 else "webp" if i % 10 == 1 else "jpg"
        size = (rng.randint(400, 800), rng.randint(400, 800))
        pictures[f"bench-{i:05d}.{ext}"] = sneaker_picture(f"bench-{i}", ext, size)
    return pictures


def products_page(base: str, names: list[str]) -> bytes:
    products = []
    for p in range(0, len(names), PER_PRODUCT):
        code = f"BM{p // PER_PRODUCT:04d}-{p % 1000:03d}"
        products.append(
            {
                "id": p,
                "title": f"Nike Air Max {p // PER_PRODUCT} Premium",
                "handle": f"air-max-{p}",
                "vendor": "Nike",
                "product_type": "Footwear",
                "tags": [code],
                "images": [{"src": f"{base}/cdn/{n}"} for n in names[p : p + PER_PRODUCT]],
            }
        )
    return json.dumps({"products": products}).encode()


def build_site(pictures: dict[str, bytes]) -> LocalSite:
    site = LocalSite()
    types = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}

    def picture(request: Seen) -> tuple[int, dict[str, str], bytes]:
        name = request.path.rsplit("/", 1)[-1]
        body = pictures.get(name)
        if body is None:
            return 404, {}, b""
        return 200, {"Content-Type": types[name.rsplit(".", 1)[-1]]}, body

    site.prefixes["/cdn/"] = picture
    site.routes["/robots.txt"] = content(b"User-agent: *\nAllow: /\n", "text/plain")
    return site


def crawl(site: LocalSite, data: Path, concurrency: int) -> tuple[float, float, str]:
    settings = {
        "AUTOTHROTTLE_ENABLED": "False",
        "DOWNLOAD_DELAY": "0",
        "CONCURRENT_REQUESTS": str(concurrency),
        "CONCURRENT_REQUESTS_PER_DOMAIN": str(concurrency),
        "SKULAB_ALLOWED_HOSTS": "127.0.0.1",
        "TELNETCONSOLE_ENABLED": "False",
    }
    args = [a for k, v in settings.items() for a in ("-s", f"{k}={v}")]
    env = {**os.environ, "SKULAB_DATA": str(data)}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", "shopify", "-a", f"stores={site.base}", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if proc.returncode != 0:
        sys.exit(f"crawl failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, cpu, proc.stderr


def stat(log: str, key: str) -> float:
    match = re.search(rf"'{re.escape(key)}': ([0-9.]+)", log)
    return float(match.group(1)) if match else 0.0


def profile_ingest(pictures: dict[str, bytes], data: Path) -> None:
    """The ingest steps alone, serially, for the share of each in the time per picture."""
    from db import open_catalogue
    from db.ops import Source, ingest_prepared, prepare_image

    cat = open_catalogue(data)
    items = list(pictures.items())[:200]
    t0 = time.perf_counter()
    prepared = [prepare_image(body, name) for name, body in items]
    t_prepare = time.perf_counter() - t0
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    for p in prepared:
        cat.store.put(p.data, p.sha256, p.ext)
        cat.store.put_thumbnail_bytes(p.sha256, p.thumbnail)
        with cat.write() as session:
            ingest_prepared(session, cat.store, p, Source(kind="crawl", image_url=p.name))
    profiler.disable()
    t_write = time.perf_counter() - t0
    n = len(prepared)
    print(f"\ningest alone, {n} pictures, one thread:")
    print(f"  prepare_image (decode, sha256, phash, thumbnail): {1000 * t_prepare / n:.1f} ms each")
    print(f"  files + catalogue write:                           {1000 * t_write / n:.1f} ms each")
    print(f"  ceiling on this machine: {n / (t_prepare + t_write):.0f} pictures/s per core\n")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(12)
    print(out.getvalue())
    t0 = time.perf_counter()
    profiler = cProfile.Profile()
    profiler.enable()
    for name, body in items[:50]:
        prepare_image(body, name)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
    print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.images % PER_PRODUCT:
        parser.error(f"--images must be a multiple of {PER_PRODUCT}")

    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    pictures = make_pictures(args.images)
    mib = sum(map(len, pictures.values())) / 2**20
    print(f"generated {len(pictures)} pictures ({mib:.0f} MiB) in {time.perf_counter() - t0:.1f} s")
    site = build_site(pictures)
    with serve(site), tempfile.TemporaryDirectory() as tmp:
        page = products_page(site.base, sorted(pictures))
        empty = json.dumps({"products": []}).encode()
        site.routes["/products.json"] = lambda r: (
            200,
            {"Content-Type": "application/json"},
            page if r.query.get("page", ["1"])[0] == "1" else empty,
        )
        wall, cpu, log = crawl(site, Path(tmp) / "data", args.concurrency)
        new = stat(log, "skulab/images/new")
        elapsed = stat(log, "elapsed_time_seconds")
        if new != args.images:
            sys.exit(
                f"expected {args.images} new pictures, the crawl ingested {new:.0f}:\n{log[-3000:]}"
            )
        rate = new / elapsed
        machine = f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs"
        load = max(load, os.getloadavg()[0])
        print("| date | benchmark | machine | pictures | crawl s | pictures/s |")
        print("|---|---|---|---|---|---|")
        print(
            f"| {date.today()} | bench_crawl (shopify, local, concurrency {args.concurrency}) "
            f"| {machine} | {new:.0f} | {elapsed:.1f} | {rate:.0f} |"
        )
        print(
            f"(crawl process: {wall:.1f} s wall incl. start-up, {cpu:.1f} s CPU = "
            f"{1000 * cpu / new:.1f} ms CPU per picture; load average during: {load:.1f})"
        )
        if args.profile:
            profile_ingest(pictures, Path(tmp) / "profile")


if __name__ == "__main__":
    main()
