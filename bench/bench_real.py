"""Benchmark: recognition on real photos (the development set of ../shared/realdata/).

Reads the set that ``../shared/realdata/extract.sh`` builds (``product/<model>/<style code>/``
product shots, ``wild/<model>/`` photos as people take them) from ``--realdata`` or
``$SKULAB_REALDATA``, and skips with a message when it is absent. The photos are never
copied anywhere but a temporary catalogue.

1. **New colourways of known models, product shots**: the product shots are imported as
   ``python -m db import`` does (model and SKU folders), then in each of ``--folds`` folds
   (stratified by model, one photo per colourway, so a fold's colourways are new) the rest
   is train and the run is fitted as ``python -m training fit`` does, with the defaults.
   Each held-out picture is predicted from its file as ``python -m inference predict`` does.
2. **Photos as people take them**, trained on every product shot: the share whose model is
   named right; then with that model's product shots left out of training: the share that
   comes back "unknown" (or "no sneaker found"), and how many wrong answers are confident
   (>= 90%).
3. **The trade-off** between the two as stage 1's familiarity bar moves (the default is
   the offset 0), the confusion between the Jordan 1 High, Mid and Low, time to fit and
   latency per photo.

    python bench/bench_real.py [--realdata DIR] [--folds 5] [--json out.json] [--backbone NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import torch

from db import Catalogue, ops
from db.images import decode_image
from db.importer import import_tree
from db.models import Image, Sku
from inference.localise import crop_region, plain_background
from inference.predictor import Predictor, run_bundle_dir
from training.fit import FitParams
from training.jobs import run_fit

J1 = ("j1_high", "j1_mid", "j1_low")
CONFIDENT = 0.9


def _labelled(cat: Catalogue) -> list[tuple[int, str, str]]:
    """(image id, model, style code) of every labelled image."""
    from sqlalchemy import select

    from db.models import SneakerModel

    with cat.read() as s:
        rows = s.execute(
            select(Image.id, SneakerModel.name, Sku.style_code)
            .join(SneakerModel, Image.model_id == SneakerModel.id)
            .join(Sku, Image.sku_id == Sku.id, isouter=True)
            .where(Image.status == "labelled")
        ).all()
    return [(i, m, s) for i, m, s in rows]


def _folds(items: list[tuple[int, str, str]], k: int, seed: int = 0) -> dict[int, int]:
    """Image id -> fold, stratified by model."""
    rng = np.random.default_rng(seed)
    by_model: dict[str, list[int]] = defaultdict(list)
    for image_id, model, _ in items:
        by_model[model].append(image_id)
    fold = {}
    for model in sorted(by_model):
        ids = sorted(by_model[model])
        rng.shuffle(ids)
        for j, image_id in enumerate(ids):
            fold[image_id] = j % k
    return fold


def _fit(cat: Catalogue, train: list[int], rest: list[int], params: FitParams) -> tuple[int, float]:
    with cat.write() as s:
        ops.set_split(s, train, "train", "bench", how="bench")
        ops.set_split(s, rest, "test", "bench", how="bench")
    t0 = time.perf_counter()
    run_id = run_fit(cat, params, promote=True)
    return run_id, time.perf_counter() - t0


def _files(cat: Catalogue, ids: list[int]) -> dict[int, Path]:
    from sqlalchemy import select

    with cat.read() as s:
        rows = list(s.scalars(select(Image).where(Image.id.in_(ids))))
    return {r.id: cat.store.path(r) for r in rows}


def _decode(path: Path) -> object:
    return decode_image(path.read_bytes(), path.name)


def product_folds(cat: Catalogue, k: int, params: FitParams) -> dict:
    items = _labelled(cat)
    fold = _folds(items, k)
    truth = {i: (m, s) for i, m, s in items}
    files = _files(cat, [i for i, _, _ in items])
    per_model: dict[str, Counter] = defaultdict(Counter)
    confusion: Counter = Counter()
    fit_s = []
    for f in range(k):
        test = [i for i in truth if fold[i] == f]
        train = [i for i in truth if fold[i] != f]
        run_id, seconds = _fit(cat, train, test, params)
        fit_s.append(seconds)
        predictor = Predictor.load(run_bundle_dir(cat, run_id), run_id=run_id)
        pictures = [_decode(files[i]) for i in test]
        answers = predictor.predict_images(pictures)
        for image_id, answer in zip(test, answers, strict=True):
            model = truth[image_id][0]
            got = answer.model
            outcome = "right" if got == model else "unknown" if got is None else "wrong"
            per_model[model][outcome] += 1
            confusion[(model, got or "unknown")] += 1
        print(f"  fold {f + 1}/{k}: fit {seconds:.0f} s", file=sys.stderr, flush=True)
    total = Counter()
    for c in per_model.values():
        total.update(c)
    n = sum(total.values())
    return {
        "n": n,
        "right": total["right"] / n,
        "unknown": total["unknown"] / n,
        "wrong": total["wrong"] / n,
        "per_model": {m: dict(c) for m, c in sorted(per_model.items())},
        "j1_confusion": {
            f"{a}->{b}": c for (a, b), c in sorted(confusion.items()) if a in J1 and a != b
        },
        "fit_s": fit_s,
    }


def _stage1_scores(predictor: Predictor, pictures: list) -> list[dict]:
    """Per photo, for its main sneaker: the model, confidence, familiarity (None: no sneaker)."""
    out: list[dict] = []
    answers = predictor.predict_images(pictures)
    for picture, answer in zip(pictures, answers, strict=True):
        if not answer.sneaker_found:
            out.append({"found": False})
            continue
        crop = crop_region(picture, answer.sneakers[0].region.box)
        emb = predictor.embed([crop], ("gray",))["gray"]
        with torch.inference_mode():
            photo = torch.tensor([not plain_background(picture)])
            probs, feats = predictor.cascade.model_probs(emb, photo)
            sim = float(predictor.cascade.stage1.similarities(feats, probs.argmax(1))[0])
        p = probs[0]
        best = int(p.argmax())
        out.append(
            {
                "found": True,
                "top": predictor.cascade.models[best],
                "confidence": float(p[best]),
                "similarity": sim,
                "answer": answer.model,
                "n_sneakers": len(answer.sneakers),
            }
        )
    return out


def wild(cat: Catalogue, root: Path, params: FitParams) -> dict:
    items = _labelled(cat)
    results: dict = {}
    for model_dir in sorted((root / "wild").iterdir()):
        model = model_dir.name
        paths = sorted(p for p in model_dir.iterdir() if p.is_file())
        pictures = [_decode(p) for p in paths]
        # known: every product shot in train
        run_known, fit_known = _fit(cat, [i for i, _, _ in items], [], params)
        known = Predictor.load(run_bundle_dir(cat, run_known), run_id=run_known)
        t0 = time.perf_counter()
        s_known = _stage1_scores(known, pictures)
        latency = (time.perf_counter() - t0) / len(pictures)
        # never seen: the model's product shots out of train
        out = [i for i, m, _ in items if m == model]
        run_unseen, _ = _fit(cat, [i for i, m, _ in items if m != model], out, params)
        unseen = Predictor.load(run_bundle_dir(cat, run_unseen), run_id=run_unseen)
        s_unseen = _stage1_scores(unseen, pictures)
        results[model] = {
            "n": len(pictures),
            "known": _known_summary(s_known, model, known),
            "unseen": _unseen_summary(s_unseen),
            "curve": _curve(s_known, s_unseen, model, known, unseen),
            "fit_s": fit_known,
            "latency_s": latency,
        }
    return results


def _known_summary(scores: list[dict], model: str, predictor: Predictor) -> dict:
    n = len(scores)
    tops = Counter(s.get("top", "no sneaker") if s["found"] else "no sneaker" for s in scores)
    return {
        "named_right": sum(s["found"] and s["answer"] == model for s in scores) / n,
        "unknown": sum(s["found"] and s["answer"] is None for s in scores) / n,
        "no_sneaker": sum(not s["found"] for s in scores) / n,
        "wrong": sum(s["found"] and s["answer"] not in (None, model) for s in scores) / n,
        "top1_right": sum(s["found"] and s["top"] == model for s in scores) / n,
        "top1": dict(tops.most_common()),
    }


def _unseen_summary(scores: list[dict]) -> dict:
    n = len(scores)
    named = [s for s in scores if s["found"] and s["answer"] is not None]
    return {
        "unknown_or_none": 1 - len(named) / n,
        "no_sneaker": sum(not s["found"] for s in scores) / n,
        "confident_wrong": sum(s["confidence"] >= CONFIDENT for s in named),
        "answered_as": dict(Counter(s["answer"] for s in named).most_common()),
    }


def _curve(known: list[dict], unseen: list[dict], model: str, pk: Predictor, pu: Predictor) -> list:
    """Known-model photos named right vs never-seen-model photos unknown, as stage 1's
    familiarity bar moves by an offset (in units of its own value; 0 is the default)."""
    rows = []
    for offset in (-1.0, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5):

        def named(s: dict, p: Predictor, offset: float = offset) -> bool:
            st = p.cascade.stage1
            bar = None if st.min_similarity is None else st.min_similarity * (1 - offset)
            return (
                s["found"]
                and s["confidence"] >= st.min_confidence
                and (bar is None or s["similarity"] >= bar)
            )

        rows.append(
            {
                "offset": offset,
                "known_right": sum(named(s, pk) and s["top"] == model for s in known) / len(known),
                "unseen_unknown": 1 - sum(named(s, pu) for s in unseen) / len(unseen),
            }
        )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--realdata", default=os.environ.get("SKULAB_REALDATA"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--field-copies", type=int, default=None)
    ap.add_argument("--no-localise", action="store_true")
    ap.add_argument("--field-in-heads", action="store_true")
    ap.add_argument(
        "--keep-similar", type=float, help="FitParams.keep_similar (the familiarity bar)"
    )
    ap.add_argument("--skip-product", action="store_true")
    ap.add_argument("--skip-wild", action="store_true")
    ap.add_argument("--data", help="keep the catalogue here (reused: embeddings stay cached)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    root = Path(args.realdata).expanduser() if args.realdata else None
    if root is None or not (root / "product").is_dir():
        print(
            "bench_real: skipped: no development set (give --realdata DIR or $SKULAB_REALDATA; "
            "build it with ../shared/realdata/extract.sh)"
        )
        return 0
    params = FitParams()
    if args.backbone:
        params.backbone = args.backbone
    if args.field_copies is not None:
        params.field_copies = args.field_copies
    if args.no_localise:
        params.localise = False
    if args.field_in_heads:
        params.field_in_heads = True
    if args.keep_similar is not None:
        params.keep_similar = args.keep_similar
    torch.manual_seed(0)
    folder = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="skulab-real-"))
    cat = Catalogue(folder)
    cat.migrate()
    t0 = time.perf_counter()
    report = import_tree(cat, root / "product", split=None)
    print(
        f"imported {report.created} new product shots ({time.perf_counter() - t0:.0f} s)",
        file=sys.stderr,
    )
    results: dict = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "params": params.to_dict(),
    }
    if not args.skip_product:
        results["product"] = product_folds(cat, args.folds, params)
        p = results["product"]
        print(
            f"product shots, new colourways ({args.folds}-fold, n={p['n']}): right {p['right']:.1%}, "
            f"unknown {p['unknown']:.1%}, wrong {p['wrong']:.1%}; fit {np.mean(p['fit_s']):.0f} s"
        )
        for m, c in p["per_model"].items():
            print(f"  {m}: {c}")
        print(f"  Jordan 1 confusion: {p['j1_confusion']}")
    if not args.skip_wild and (root / "wild").is_dir():
        results["wild"] = wild(cat, root, params)
        for model, w in results["wild"].items():
            k, u = w["known"], w["unseen"]
            print(
                f"photos as people take them, {model} (n={w['n']}): known model named "
                f"{k['named_right']:.1%} (unknown {k['unknown']:.1%}, no sneaker "
                f"{k['no_sneaker']:.1%}, wrong {k['wrong']:.1%}; top-1 right {k['top1_right']:.1%}); "
                f"left out of training: unknown {u['unknown_or_none']:.1%}, confident wrong "
                f"{u['confident_wrong']}, answered as {u['answered_as']}; "
                f"latency {w['latency_s'] * 1000:.0f} ms/photo"
            )
            for row in w["curve"]:
                print(
                    f"  familiarity offset {row['offset']:+.2f}: known right {row['known_right']:.1%}, "
                    f"never-seen unknown {row['unseen_unknown']:.1%}"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
