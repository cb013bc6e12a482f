"""Benchmark: what the cascade answers for sneakers it was not trained on (the open set).

On the demo sneakers (6 models, 3 to 8 colourways each), embedded once with the default
backbone at its default input size, with the default fit (stage 1 calibrated by
colourway-grouped cross-validation, Mahalanobis familiarity for its "unknown"):

- **new colourways of known models**: one colourway of every model is left out of the fit
  in turn; its photos should get their model (stage 1 sees shape) and an unknown SKU;
- **never-seen models**: each model is left out in turn; its photos should come back
  "unknown", while the test photos of the other models should not;
- both with every train photo of a colourway, and with one photo per colourway (a folder
  of product shots).

It also reports how well two scores separate never-seen models from known ones (AUROC):
stage 1's familiarity and its calibrated confidence. Prints markdown rows for BENCHMARKS.md.

    python bench/bench_open_set.py [--per-colourway 10] [--image-size 224]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import torch

from db import Catalogue, ops
from db.demo import generate
from inference.cascade import Cascade, decide
from training.cascade_fit import Embedded, fit_cascade
from training.dataset import labelled_examples
from training.fit import FitParams, embed_examples


def demo_catalogue(folder: Path, per_colourway: int, size: int) -> Catalogue:
    """Every demo sneaker labelled; in each colourway 70% of photos to train, the rest val/test."""
    cat = Catalogue(folder)
    cat.migrate()
    position: dict[str, int] = defaultdict(int)
    n_train = max(1, round(0.7 * per_colourway))
    with cat.write() as s:
        for item in generate(seed=0, per_colourway=per_colourway, size=size):
            if item.junk or item.style_code is None or item.model is None:
                continue
            i = position[item.style_code]
            position[item.style_code] += 1
            split = "train" if i < n_train else ("val" if (i - n_train) % 2 == 0 else "test")
            ops.get_or_create_sku(s, item.style_code, item.model)
            source = ops.Source(kind="demo", image_url=item.image_url, page_url=item.page_url)
            ops.ingest_image(
                s, cat.store, item.data, item.name, source,
                model=item.model, sku=item.style_code, split=split,
            )  # fmt: skip
    return cat


def auroc(positive: list[float], negative: list[float]) -> float:
    """P(a positive scores above a negative), ties counted half (Mann-Whitney)."""
    pos, neg = np.asarray(positive), np.asarray(negative)
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


class Bench:
    def __init__(self, data: Embedded, splits: list[str], one_photo: bool):
        self.data = data
        self.splits = splits
        self.one_photo = one_photo

    def fit_without(self, left_out: set[int]) -> Cascade:
        first: set[str] = set()
        train, val = [], []
        for i, split in enumerate(self.splits):
            if i in left_out:
                continue
            sku = self.data.skus[i] or ""
            if split == "train":
                if self.one_photo and sku in first:
                    continue
                first.add(sku)
                train.append(i)
            elif split == "val":
                val.append(i)
        cascade, _ = fit_cascade(self.data.subset(train), self.data.subset(val))
        return cascade

    def answer(self, cascade: Cascade, rows: list[int]) -> tuple[list, list[float]]:
        probe = self.data.subset(rows)
        answers = decide(cascade, probe.gray, probe.colour)
        probs, feats = cascade.model_probs(probe.gray)
        familiarity = cascade.stage1.similarities(feats, probs.argmax(1)).tolist()
        return answers, familiarity


def run(data: Embedded, splits: list[str], one_photo: bool) -> dict[str, float]:
    b = Bench(data, splits, one_photo)
    colourways: dict[str, list[str]] = defaultdict(list)
    for m, s in zip(data.models, data.skus, strict=True):
        if s not in colourways[m]:
            colourways[m].append(s)
    n = right = sku_unknown = 0
    for k in range(min(len(v) for v in colourways.values())):
        held = {v[k] for v in colourways.values()}
        rows = [i for i, s in enumerate(data.skus) if s in held]
        answers, _ = b.answer(b.fit_without(set(rows)), rows)
        n += len(answers)
        right += sum(a.model == data.models[i] for a, i in zip(answers, rows, strict=True))
        sku_unknown += sum(a.sku is None for a in answers)
    unseen_unknown = unseen_n = known_unknown = known_right = known_n = 0
    fam_unseen: list[float] = []
    fam_known: list[float] = []
    conf_unseen: list[float] = []
    conf_known: list[float] = []
    for model in colourways:
        rows = [i for i, m in enumerate(data.models) if m == model]
        cascade = b.fit_without(set(rows))
        answers, fam = b.answer(cascade, rows)
        unseen_n += len(answers)
        unseen_unknown += sum(a.model is None for a in answers)
        fam_unseen += fam
        conf_unseen += [a.model_confidence for a in answers]
        test = [i for i, m in enumerate(data.models) if m != model and splits[i] == "test"]
        answers, fam = b.answer(cascade, test)
        known_n += len(answers)
        known_unknown += sum(a.model is None for a in answers)
        known_right += sum(a.model == data.models[i] for a, i in zip(answers, test, strict=True))
        fam_known += fam
        conf_known += [a.model_confidence for a in answers]
    return {
        "new colourways: model right": right / n,
        "new colourways: SKU unknown": sku_unknown / n,
        "never-seen model: unknown": unseen_unknown / unseen_n,
        "known models (test): right": known_right / known_n,
        "known models (test): unknown": known_unknown / known_n,
        "AUROC familiarity": auroc(fam_known, fam_unseen),
        "AUROC confidence": auroc(conf_known, conf_unseen),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--per-colourway", type=int, default=10)
    p.add_argument("--picture-size", type=int, default=224, help="demo picture side, px")
    p.add_argument("--image-size", type=int, help="backbone input (default: the backbone's)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cat = demo_catalogue(Path(tmp), args.per_colourway, args.picture_size)
        params = FitParams(image_size=args.image_size)
        examples = labelled_examples(cat)
        t = time.perf_counter()
        data, _ = embed_examples(cat, examples, params, params.preprocessing(), lambda f, m: None)
        embed_s = time.perf_counter() - t
        cat.dispose()
    split_of = {e.image_id: e.split for e in examples}
    splits = [split_of[i] for i in data.image_ids]
    today = date.today().isoformat()
    where = f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}"
    print(
        f"{len(data)} labelled demo photos, {len(set(data.models))} models, "
        f"{len(set(data.skus))} colourways, embedded in {embed_s:.0f} s ({where}, {today})"
    )
    results = {}
    for label, one in ((f"{round(0.7 * args.per_colourway)}", False), ("1", True)):
        t = time.perf_counter()
        results[label] = run(data, splits, one)
        results[label]["time, s"] = time.perf_counter() - t
    keys = list(next(iter(results.values())))
    print("| photos per colourway in train | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for label, r in results.items():
        cells = [f"{v:.1%}" if ":" in k else f"{v:.2f}" for k, v in r.items()]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
