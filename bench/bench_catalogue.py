"""Catalogue benchmarks: import speed, and queue-page time on large catalogues.

    python bench/bench_catalogue.py [--images 1000] [--rows 100000 1000000]

Import: 1,000 demo images written as a labelled folder tree, then `import_tree` (the code
behind `python -m db import`), timed end to end. Queue: synthetic image rows inserted with
executemany (with sources and a run's predictions), then the 48-image pages the Label page
asks for, timed as the median of 20 repeats after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from sqlalchemy import text

from db import Catalogue, ops
from db.importer import import_tree


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def bench_import(n_images: int) -> float:
    from db.demo import generate

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        per = max(1, n_images // 24 + 1)
        written = 0
        for img in generate(seed=1, per_colourway=per):
            if written >= n_images:
                break
            if img.junk or not img.model:
                continue
            folder = src / img.model / (img.style_code or "")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / img.name).write_bytes(img.data)
            written += 1
        cat = Catalogue(Path(tmp) / "data")
        cat.migrate()
        start = time.perf_counter()
        report = import_tree(cat, src, split="auto")
        elapsed = time.perf_counter() - start
        assert report.created == written, report.summary()
        cat.dispose()
        return written / elapsed


def fill_rows(cat: Catalogue, rows: int) -> int:
    """Synthetic rows: 80% new, 15% labelled, 5% rejected; a source and a prediction each."""
    rnd = random.Random(0)
    with cat.write() as s:
        model = ops.get_or_create_model(s, "Nike Dunk Low")
        sku = ops.get_or_create_sku(s, "DD1391-100", "Nike Dunk Low")
        run_id = s.execute(
            text(
                "INSERT INTO runs (status, progress, params, active, created_at) "
                "VALUES ('succeeded', 1, '{}', 1, CURRENT_TIMESTAMP) RETURNING id"
            )
        ).scalar_one()
        model_id, sku_id = model.id, sku.id
    batch = 50_000
    with cat.engine.begin() as conn:
        for start in range(0, rows, batch):
            img_rows, src_rows, pred_rows = [], [], []
            for i in range(start + 1, min(rows, start + batch) + 1):
                r = rnd.random()
                status = "new" if r < 0.8 else ("labelled" if r < 0.95 else "rejected")
                sha = f"{i:064x}"
                img_rows.append(
                    {
                        "id": i,
                        "sha256": sha,
                        "path": f"images/{sha[:2]}/{sha}.jpg",
                        "ext": "jpg",
                        "width": 640,
                        "height": 480,
                        "n_bytes": 50_000,
                        "phash": f"{rnd.getrandbits(64):016x}",
                        "status": status,
                        "model_id": model_id if status == "labelled" else None,
                        "sku_id": sku_id if status == "labelled" else None,
                        "split": rnd.choice(["train", "val", "test"])
                        if status == "labelled"
                        else None,
                    }
                )
                src_rows.append(
                    {
                        "image_id": i,
                        "spider": rnd.choice(["nike", "shopify"]),
                        "url": f"https://example.invalid/{i}.jpg",
                    }
                )
                pred_rows.append({"image_id": i, "run_id": run_id, "margin": rnd.random()})
            conn.execute(
                text(
                    "INSERT INTO images (id, sha256, path, ext, width, height, n_bytes, phash, status, "
                    "model_id, sku_id, split, split_locked, created_at, updated_at) VALUES (:id, :sha256, "
                    ":path, :ext, :width, :height, :n_bytes, :phash, :status, :model_id, :sku_id, :split, 0, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                img_rows,
            )
            conn.execute(
                text(
                    "INSERT INTO image_sources (image_id, kind, spider, image_url, seen_at) VALUES "
                    "(:image_id, 'crawl', :spider, :url, CURRENT_TIMESTAMP)"
                ),
                src_rows,
            )
            conn.execute(
                text(
                    "INSERT INTO predictions (image_id, run_id, model_name, model_conf, sku, sku_conf, "
                    "margin, created_at) VALUES (:image_id, :run_id, 'Nike Dunk Low', 0.9, 'DD1391-100', "
                    "0.8, :margin, CURRENT_TIMESTAMP)"
                ),
                pred_rows,
            )
    with cat.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
    return run_id


def time_ms(fn, repeats: int = 20) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def bench_queue(rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalogue(Path(tmp))
        cat.migrate()
        t = time.perf_counter()
        run_id = fill_rows(cat, rows)
        print(f"  filled {rows:,} rows in {time.perf_counter() - t:.0f} s")
        with cat.write() as s:
            ops.claim(s, range(1, 200), user="ann")
        cases = {
            "unlabelled, first page": ops.QueueFilter(),
            "unlabelled, page 100": ops.QueueFilter(),
            "most uncertain suggestion first": ops.QueueFilter(run_id=run_id, order="uncertain"),
            "spider filter + other labeller's claims": ops.QueueFilter(spider="nike", user="bob"),
        }
        out = {}
        for name, flt in cases.items():
            page = 100 if "page 100" in name else 0

            def go(flt=flt, page=page) -> None:
                with cat.read() as s:
                    items = ops.queue(s, flt, page=page, page_size=48, with_total=False).items
                    assert len(items) == 48

            out[name] = time_ms(go)

        def with_total() -> None:
            with cat.read() as s:
                ops.queue(s, ops.QueueFilter(), page_size=48, with_total=True)

        out["unlabelled, first page + total count"] = time_ms(with_total, repeats=5)
        cat.dispose()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000])
    args = parser.parse_args()
    today, where = date.today().isoformat(), machine()
    rate = bench_import(args.images)
    print(
        f"| {today} | {where} | import {args.images} demo images | {rate:.0f} images/s | ≥ 50 images/s |"
    )
    for rows in args.rows:
        for name, ms in bench_queue(rows).items():
            print(
                f"| {today} | {where} | queue page (48), {rows:,} rows: {name} | {ms:.1f} ms | ≤ 100 ms |"
            )


if __name__ == "__main__":
    main()
