"""Near-duplicate search: the whole catalogue and one new image, plus precision and recall.

    python bench/bench_duplicates.py [--n 100000]

Speed: N catalogue rows with random 64-bit pHashes (and mirror hashes), of which 1% have a
planted near-copy 0-8 bits away and 0.5% a flipped copy (the copy's pHash near the
original's mirror hash). Quality: real pictures with planted copies (resized, recompressed,
cropped 3%, watermarked, flipped) through the full path (ingest, mirror hashes, pixel check),
and the demo catalogue, which holds no true duplicates, for the false groups.
Prints markdown rows for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from db import Catalogue
from db.duplicates import (
    HashIndex,
    _images,
    backfill_mirror_hashes,
    find_duplicates,
)
from db.models import Image
from tests.curation.helpers import COPIES, plant_duplicates


def _flip_bits(code: int, k: int, rng: np.random.Generator) -> int:
    for b in rng.choice(64, size=k, replace=False):
        code ^= 1 << int(b)
    return code


def synthetic_rows(n: int, seed: int = 0) -> tuple[list[dict[str, object]], set[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    codes = [int(x) for x in rng.integers(0, 2**63, size=n, dtype=np.int64)]
    mirrors = [int(x) for x in rng.integers(0, 2**63, size=n, dtype=np.int64)]
    truth: set[tuple[int, int]] = set()
    n_copy, n_flip = n // 100, n // 200
    for k in range(n_copy):  # copy k+n_copy of original k
        codes[n_copy + k] = _flip_bits(codes[k], int(rng.integers(0, 9)), rng)
        truth.add((k + 1, n_copy + k + 1))
    base = 2 * n_copy
    for k in range(n_flip):  # flipped copy of original base+k
        codes[base + n_flip + k] = _flip_bits(mirrors[base + k], int(rng.integers(0, 9)), rng)
        truth.add((base + k + 1, base + n_flip + k + 1))
    rows = [
        {
            "id": i + 1,
            "sha256": f"{i:064x}",
            "path": f"images/x/{i}.jpg",
            "ext": "jpg",
            "width": 1,
            "height": 1,
            "n_bytes": 1,
            "phash": f"{codes[i]:016x}",
            "status": "new",
            "split_locked": False,
        }
        for i in range(n)
    ]
    for i, m in enumerate(mirrors):
        rows[i]["phash_mirror"] = f"{m:016x}"
    return rows, truth


def bench_speed(n: int, folder: Path) -> dict[str, float]:
    rows, truth = synthetic_rows(n)
    cat = Catalogue(folder / "speed")
    cat.migrate()
    with cat.write() as s:
        mirrors = [{"i": r["id"], "m": r.pop("phash_mirror")} for r in rows]
        for start in range(0, n, 20_000):
            s.execute(insert(Image), rows[start : start + 20_000])
        from sqlalchemy import bindparam

        s.execute(
            _images.update()
            .where(_images.c.id == bindparam("i"))
            .values(phash_mirror=bindparam("m")),
            mirrors,
        )
    t0 = time.perf_counter()
    with cat.read() as s:
        report = find_duplicates(s, min_cosine=None)
    whole = time.perf_counter() - t0
    found = {(p.a, p.b) for g in report.groups for p in g.pairs}
    recall = len(found & truth) / len(truth)
    t0 = time.perf_counter()
    with cat.read() as s:
        index = HashIndex.from_session(s)
    build = time.perf_counter() - t0
    probe = rows[5]["phash"]
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        index.query(str(probe), mirrors[5]["m"])  # type: ignore[arg-type]
        times.append(time.perf_counter() - t0)
    cat.dispose()
    return {
        "whole_s": whole,
        "build_s": build,
        "query_ms": 1000 * float(np.median(times)),
        "recall": recall,
        "extra_pairs": len(found - truth),
    }


def bench_quality(folder: Path, originals: int = 40) -> dict[str, float]:
    cat = Catalogue(folder / "quality")
    cat.migrate()
    planted = plant_duplicates(cat, originals, seed=1000)
    backfill_mirror_hashes(cat)
    with cat.read() as s:
        report = find_duplicates(s, store=cat.store)
    group_of = {i: g.group_id for g in report.groups for i in g.image_ids}
    truth_pairs = {(o, c) for o, cs in planted.items() for c in cs}
    found_pairs = {
        (a, b) for a in group_of for b in group_of if a < b and group_of[a] == group_of[b]
    }
    all_truth = {
        (min(a, b), max(a, b))
        for o, cs in planted.items()
        for a in [o, *cs]
        for b in [o, *cs]
        if a < b
    }
    tp = len(found_pairs & all_truth)
    per_kind = {
        kind: sum(group_of.get(cs[k]) == group_of.get(o) is not None for o, cs in planted.items())
        / len(planted)
        for k, kind in enumerate(COPIES)
    }
    cat.dispose()
    return {
        "precision": tp / len(found_pairs) if found_pairs else 1.0,
        "recall": tp / len(all_truth),
        "copies_recall": len(
            {c for o, c in truth_pairs if group_of.get(c) == group_of.get(o) is not None}
        )
        / len(truth_pairs),
        **{f"recall_{k}": v for k, v in per_kind.items()},
    }


def bench_demo(folder: Path, per_colourway: int = 6) -> dict[str, float]:
    from db.demo import load_demo

    cat = Catalogue(folder / "demo")
    cat.migrate()
    load_demo(cat, seed=0, per_colourway=per_colourway)
    backfill_mirror_hashes(cat)
    with cat.read() as s:
        checked = find_duplicates(s, store=cat.store)
        raw = find_duplicates(s)
    cat.dispose()
    return {
        "images": checked.images,
        "grouped_checked": checked.grouped_images,
        "grouped_raw": raw.grouped_images,
        "largest_raw": max((len(g.image_ids) for g in raw.groups), default=0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    machine = f"{platform.machine()} {platform.processor() or ''} {__import__('os').cpu_count()} cores".strip()
    today = date.today().isoformat()
    with tempfile.TemporaryDirectory() as tmp:
        speed = bench_speed(args.n, Path(tmp))
        print("| date | machine | benchmark | result |")
        print("|---|---|---|---|")
        print(
            f"| {today} | {machine} | near-duplicates, whole catalogue of {args.n:,} (pHash + "
            f"mirror, faiss IndexBinaryFlat) | {speed['whole_s']:.1f} s, planted-pair recall "
            f"{speed['recall']:.3f}, {speed['extra_pairs']} other pairs |"
        )
        print(
            f"| {today} | {machine} | near-duplicates of one new image among {args.n:,} | "
            f"{speed['query_ms']:.2f} ms per query (index built from the database once: "
            f"{speed['build_s']:.2f} s) |"
        )
        if not args.skip_quality:
            q = bench_quality(Path(tmp))
            kinds = ", ".join(f"{k[7:]} {v:.2f}" for k, v in q.items() if k.startswith("recall_"))
            print(
                f"| {today} | {machine} | duplicate finder on 40 photo-like pictures x 5 planted "
                f"copies | pair precision {q['precision']:.3f}, recall {q['recall']:.3f} "
                f"(per copy kind: {kinds}) |"
            )
            d = bench_demo(Path(tmp))
            print(
                f"| {today} | {machine} | false groups on the demo catalogue ({d['images']} "
                f"images, no true duplicates) | {d['grouped_checked']} images grouped with the "
                f"pixel check, {d['grouped_raw']} without (largest group {d['largest_raw']}) |"
            )


if __name__ == "__main__":
    main()
