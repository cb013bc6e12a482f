"""Label-issue ranking over a large labelled catalogue, and its precision and recall.

    python bench/bench_label_issues.py [--n 50000] [--dim 1280]

N labelled images (20 models x 10 SKUs) with gaussian-cluster embeddings in both views
(dim 1280, like efficientnet_lite0) stored in the catalogue, 2% of them with a planted
wrong label (half a wrong model, half a wrong SKU of the right model). Times
``rank_label_issues`` end to end (reading the embeddings included) and prints markdown rows.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from db import Catalogue, ops
from db.models import Embedding, Image
from tests.curation.helpers import EMBEDDING_KEY, precision_recall
from training.label_issues import rank_label_issues


def build(
    cat: Catalogue, n: int, dim: int, models: int = 20, skus: int = 10, seed: int = 0
) -> set[int]:
    rng = np.random.default_rng(seed)
    model_c = rng.normal(0, 1, (models, dim)).astype(np.float32)
    sku_c = rng.normal(0, 1, (models, skus, dim)).astype(np.float32)
    truth = rng.integers(0, models * skus, n)
    wrong = set(rng.choice(n, size=n // 50, replace=False).tolist())
    with cat.write() as s:
        sku_ids = {}
        model_ids = {}
        for m in range(models):
            for k in range(skus):
                row = ops.get_or_create_sku(s, f"S{m:02d}-{k:03d}", f"Model {m:02d}")
                sku_ids[m, k] = row.id
                model_ids[m] = row.model_id
    wrong_ids: set[int] = set()
    for start in range(0, n, 5000):
        images, embeddings = [], []
        for i in range(start, min(n, start + 5000)):
            m, k = divmod(int(truth[i]), skus)
            gm, gk = m, k
            if i in wrong:
                if i % 2:
                    gm = (m + 1) % models
                else:
                    gk = (k + 1) % skus
                wrong_ids.add(i + 1)
            images.append(
                {"id": i + 1, "sha256": f"{i:064x}", "path": "x", "ext": "jpg", "width": 1,
                 "height": 1, "n_bytes": 1, "phash": f"{i:016x}", "status": "labelled",
                 "model_id": model_ids[gm], "sku_id": sku_ids[gm, gk], "split_locked": False}
            )  # fmt: skip
            gray = model_c[m] + rng.normal(0, 0.8, dim).astype(np.float32)
            colour = sku_c[m, k] + rng.normal(0, 0.8, dim).astype(np.float32)
            for view, vec in (("gray", gray), ("colour", colour)):
                embeddings.append(
                    {"image_id": i + 1, "backbone": EMBEDDING_KEY, "view": view, "dim": dim,
                     "vector": vec.astype("<f4").tobytes()}
                )  # fmt: skip
        with cat.write() as s:
            s.execute(insert(Image), images)
            s.execute(insert(Embedding), embeddings)
    return wrong_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=1280)
    args = parser.parse_args()
    machine = f"{platform.machine()} {os.cpu_count()} cores"
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalogue(Path(tmp) / "data")
        cat.migrate()
        t0 = time.perf_counter()
        wrong = build(cat, args.n, args.dim)
        print(f"built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        t0 = time.perf_counter()
        issues = rank_label_issues(cat, progress=lambda msg: print(msg, file=sys.stderr))
        took = time.perf_counter() - t0
        flagged = [i.image_id for i in issues if i.flagged]
        p, r = precision_recall(flagged, wrong)
        top = {i.image_id for i in issues[: len(wrong)]}
        cat.dispose()
    print("| date | machine | benchmark | result |")
    print("|---|---|---|---|")
    print(
        f"| {date.today().isoformat()} | {machine} | label-issue ranking, {args.n:,} labelled "
        f"images, dim {args.dim}, 5-fold, {len(wrong)} planted errors | {took:.1f} s; flagged "
        f"{len(flagged)}: precision {p:.3f}, recall {r:.3f}; planted in the top "
        f"{len(wrong)}: {len(top & wrong) / len(wrong):.3f} |"
    )


if __name__ == "__main__":
    main()
