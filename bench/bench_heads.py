"""Benchmark: fitting the cascade's heads on 50,000 cached embeddings over 500 SKUs.

Synthetic embeddings (1280-d, like EfficientNet-Lite0's): 100 models x 5 SKUs, each SKU
a Gaussian cluster around its model's centre. Prints markdown rows for BENCHMARKS.md.

    python bench/bench_heads.py [--n 50000] [--models 100] [--skus-per-model 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date

import torch

from training.cascade_fit import Embedded, fit_cascade


def synthetic(n: int, models: int, per_model: int, dim: int, seed: int) -> Embedded:
    g = torch.Generator().manual_seed(seed)
    model_centres = torch.randn(models, dim, generator=g)
    sku_centres = model_centres.repeat_interleave(per_model, 0) + 0.5 * torch.randn(
        models * per_model, dim, generator=g
    )
    sku = torch.randint(0, models * per_model, (n,), generator=g)
    gray = model_centres[sku // per_model] + 1.5 * torch.randn(n, dim, generator=g)
    colour = sku_centres[sku] + 1.0 * torch.randn(n, dim, generator=g)
    return Embedded(
        image_ids=list(range(n)),
        models=[f"model-{int(s) // per_model:03d}" for s in sku],
        skus=[f"SKU{int(s):04d}-{int(s) % per_model:03d}" for s in sku],
        gray=gray.relu(),
        colour=colour.relu(),
    )


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--models", type=int, default=100)
    p.add_argument("--skus-per-model", type=int, default=5)
    p.add_argument("--dim", type=int, default=1280)
    p.add_argument("--val", type=float, default=0.1, help="share held out as val (C chosen on it)")
    args = p.parse_args()
    data = synthetic(args.n, args.models, args.skus_per_model, args.dim, 0)
    n_val = int(args.n * args.val)
    train = data.subset(range(n_val, args.n))
    val = data.subset(range(n_val))
    today = date.today().isoformat()
    print("| date | machine | benchmark | value |")
    print("|---|---|---|---|")
    for label, v, C in (
        ("fixed C", None, 30.0),
        ("C chosen among 3 values (stage 1 by colourway CV, stage 2 on val)", val, None),
    ):
        t = time.perf_counter()
        cascade, report = fit_cascade(train, v, C=C)
        dt = time.perf_counter() - t
        acc = ""
        if v is not None:
            acc = f", held-out stage-1 accuracy at chosen C {report['stage1']['scores'][str(report['stage1']['C'])]['accuracy']:.3f}"
        print(
            f"| {today} | {machine()} | fit heads, {len(train):,} embeddings x {args.dim}, "
            f"{len(cascade.models)} models / {len(cascade.skus)} SKUs, {label} "
            f"| {dt:.1f} s{acc} |"
        )


if __name__ == "__main__":
    main()
