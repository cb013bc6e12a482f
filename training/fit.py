"""One training of the cascade on the catalogue: examples -> embeddings -> heads -> bundle.

:func:`train` does the work and reports progress through a callback; recording it as a
run (the ``runs`` row) is :mod:`training.jobs`' part.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import select

from db import Catalogue
from db.images import ImageError
from db.models import Image
from inference.backbones import DEFAULT_BACKBONE, build_backbone, get_spec
from inference.bundle import Bundle, embedding_key, save_bundle
from inference.cascade import Cascade
from inference.localise import DetectorHead, plain_background
from inference.preprocess import Preprocessing
from training.calibration import KEEP_CONFIDENT, KEEP_SIMILAR
from training.cascade_fit import Embedded, fit_cascade
from training.dataset import Example, fingerprint, labelled_examples, split_counts
from training.embeddings import BATCH_SIZE, compute_embeddings, ensure_cached, load_cached
from training.evaluate import evaluate_answers, evaluate_embeddings, write_pictures
from training.field import ensure_field_cached, fit_detector, load_field

Progress = Callable[[float, str], None]
"""progress(fraction done 0..1, message)"""


@dataclass
class FitParams:
    """Everything a run can be asked to do differently; recorded with the run."""

    backbone: str = DEFAULT_BACKBONE
    finetune: bool = False
    image_size: int | None = None  # None: the backbone's own
    flip_augment: bool = True  # train on left-right flipped copies too
    tta_flip: bool = False  # average the embeddings of a picture and its mirror image
    trim: bool = True  # cut the white margin around the sneaker
    field_copies: int = 2  # product shots made into photos per train image (0: none)
    localise: bool = True  # fit the catalogue's sneaker detector; find sneakers in photos
    field_in_heads: bool = False  # field copies train the heads too (not only photo_center)
    C: float | None = None  # None: chosen on val or by cross-validation
    keep_confident: float = KEEP_CONFIDENT
    keep_similar: float = KEEP_SIMILAR
    epochs: int = 10  # fine-tuning only
    lr: float | None = None  # fine-tuning only; None: by backbone
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitParams:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known - {"promote", "name"}
        if unknown:
            raise ValueError(f"unknown training parameters: {', '.join(sorted(unknown))}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def preprocessing(self) -> Preprocessing:
        spec = get_spec(self.backbone)
        return Preprocessing(
            image_size=self.image_size or spec.image_size,
            mean=spec.mean,
            std=spec.std,
            trim=self.trim,
            tta_flip=self.tta_flip,
        )


@dataclass
class TrainResult:
    bundle: Bundle
    metrics: dict[str, Any]
    fingerprint: str


def _scaled(progress: Progress, lo: float, hi: float) -> Progress:
    return lambda f, msg: progress(lo + (hi - lo) * min(max(f, 0.0), 1.0), msg)


def _open_pictures(cat: Catalogue, ids: Sequence[int]) -> dict[int, Any]:
    out: dict[int, Any] = {}
    with cat.read() as s:
        rows = list(s.scalars(select(Image).where(Image.id.in_(list(ids)))))
    for row in rows:
        try:
            out[row.id] = cat.store.open(row)
        except (OSError, ImageError):
            continue
    return out


def _embed_in_memory(
    cat: Catalogue,
    examples: list[Example],
    backbone: torch.nn.Module,
    pre: Preprocessing,
    flipped: bool,
    progress: Progress,
) -> tuple[list[Example], dict[tuple[str, bool], torch.Tensor]]:
    parts: dict[tuple[str, bool], list[torch.Tensor]] = {}
    kept: list[Example] = []
    for start in range(0, len(examples), BATCH_SIZE):
        chunk = examples[start : start + BATCH_SIZE]
        pics = _open_pictures(cat, [e.image_id for e in chunk])
        ok = [e for e in chunk if e.image_id in pics]
        if ok:
            emb = compute_embeddings([pics[e.image_id] for e in ok], backbone, pre, flipped)
            for k, v in emb.items():
                parts.setdefault(k, []).append(v)
            kept += ok
        progress((start + len(chunk)) / len(examples), "embedding with the fine-tuned backbone")
    return kept, {k: torch.cat(v) for k, v in parts.items()}


def embed_examples(
    cat: Catalogue,
    examples: list[Example],
    params: FitParams,
    pre: Preprocessing,
    progress: Progress,
    backbone: torch.nn.Module | None = None,
) -> tuple[Embedded, list[str]]:
    """Embeddings of the examples: from the cache, or with a fine-tuned ``backbone``."""
    notes: list[str] = []
    if backbone is not None:
        kept, emb = _embed_in_memory(cat, examples, backbone, pre, params.flip_augment, progress)
        get = emb.get
    else:
        report = ensure_cached(
            cat,
            [e.image_id for e in examples],
            params.backbone,
            pre,
            flipped=params.flip_augment,
            progress=lambda done, total: progress(
                done / max(total, 1), f"embedding images: {done}/{total}"
            ),
        )
        for image_id, why in list(report.failed.items())[:20]:
            notes.append(f"image {image_id} left out: {why}")
        kept = [e for e in examples if e.image_id not in report.failed]
        ids = [e.image_id for e in kept]

        def get(key: tuple[str, bool]) -> torch.Tensor | None:
            view, flipped = key
            if flipped and not params.flip_augment:
                return None
            return load_cached(cat, ids, embedding_key(params.backbone, pre, flipped), view)

    dim = get_spec(params.backbone).dim
    empty = torch.empty(0, dim)

    def tensor(key: tuple[str, bool]) -> torch.Tensor | None:
        t = get(key) if kept else empty
        return t if t is None or len(t) else empty

    data = Embedded(
        image_ids=[e.image_id for e in kept],
        models=[e.model for e in kept],
        skus=[e.sku for e in kept],
        gray=tensor(("gray", False)),  # type: ignore[arg-type]
        colour=tensor(("colour", False)),  # type: ignore[arg-type]
        gray_flip=tensor(("gray", True)) if params.flip_augment else None,
        colour_flip=tensor(("colour", True)) if params.flip_augment else None,
    )
    return data, notes


def served_embeddings(data: Embedded, pre: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    """The embeddings the predictor would compute (flip-averaged where the bundle says so)."""
    if pre.tta_flip and data.gray_flip is not None and data.colour_flip is not None:
        return (data.gray + data.gray_flip) / 2, (data.colour + data.colour_flip) / 2
    return data.gray, data.colour


def split_data(data: Embedded, examples: dict[int, Example], split: str) -> Embedded:
    return data.subset([i for i, img in enumerate(data.image_ids) if examples[img].split == split])


def evaluate_splits(
    cascade: Cascade, data: Embedded, examples: dict[int, Example], pre: Preprocessing
) -> dict[str, Any]:
    out = {}
    for split in ("val", "test"):
        part = split_data(data, examples, split)
        gray, colour = served_embeddings(part, pre)
        out[split] = evaluate_embeddings(cascade, gray, colour, part.models, part.skus)
    return out


def train(
    cat: Catalogue,
    params: FitParams,
    out_dir: Path,
    progress: Progress | None = None,
    run_id: int | None = None,
) -> TrainResult:
    """Train, calibrate, evaluate; write the bundle into ``out_dir``."""
    say = progress or (lambda _f, _m: None)
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    pre = params.preprocessing()
    examples = labelled_examples(cat)
    train_examples = [e for e in examples if e.split == "train"]
    if not train_examples:
        raise ValueError(
            f"{cat.data_dir}: no labelled images in the train split "
            f"({len(examples)} labelled in all); label some first"
        )
    say(0.01, f"{len(examples)} labelled images ({len(train_examples)} train)")
    backbone_state = None
    backbone = None
    if params.finetune:
        backbone_state, backbone = _finetune(
            cat, train_examples, params, pre, _scaled(say, 0.02, 0.5)
        )
        timing["finetune_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    data, notes = embed_examples(
        cat, examples, params, pre, _scaled(say, 0.5 if params.finetune else 0.02, 0.7), backbone
    )
    timing["embed_s"] = time.perf_counter() - t1
    by_id = {e.image_id: e for e in examples}
    train_data = split_data(data, by_id, "train")
    detector = None
    if (params.field_copies or params.localise) and backbone is None and len(train_data):
        t_field = time.perf_counter()
        train_data, detector = add_field_copies(
            cat, train_data, params, pre, _scaled(say, 0.7, 0.75)
        )
        timing["field_s"] = time.perf_counter() - t_field
    val_data = split_data(data, by_id, "val")
    if len(train_data) == 0:
        raise ValueError("none of the train images could be read from the image store")
    t2 = time.perf_counter()
    cascade, report = fit_cascade(
        train_data,
        val_data if len(val_data) else None,
        C=params.C,
        keep_confident=params.keep_confident,
        keep_similar=params.keep_similar,
        seed=params.seed,
        progress=lambda msg: say(0.75, msg),
        field_in_heads=params.field_in_heads,
    )
    timing["heads_s"] = time.perf_counter() - t2
    say(0.85, "evaluating on val and test")
    metrics: dict[str, Any] = {
        **evaluate_splits(cascade, data, by_id, pre),
        "fit": report,
        "data": split_counts(examples),
        "notes": notes + _unmeasured(examples),
    }
    metrics["notes"] += _unmeasured_stage2(metrics)
    timing["total_s"] = time.perf_counter() - t0
    metrics["timing"] = timing
    fp = fingerprint(examples)
    bundle = Bundle(
        backbone=params.backbone,
        preprocessing=pre,
        cascade=cascade,
        backbone_state=backbone_state,
        detector=detector,
        meta={
            "run_id": run_id,
            "params": params.to_dict(),
            "fingerprint": fp,
            "metrics": metrics,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "embedding_key": embedding_key(params.backbone, pre)
            if backbone_state is None
            else f"run-{run_id}",
        },
    )
    by_kind = evaluate_by_kind(cat, bundle, [e for e in examples if e.split == "test"])
    if by_kind:
        metrics["test_by_kind"] = by_kind  # before the bundle is written: it is written once
    save_bundle(bundle, out_dir)
    metrics["pictures"] = write_pictures(metrics, out_dir)
    say(1.0, "done")
    return TrainResult(bundle, metrics, fp)


def add_field_copies(
    cat: Catalogue, train_data: Embedded, params: FitParams, pre: Preprocessing, progress: Progress
) -> tuple[Embedded, DetectorHead | None]:
    """Train with field copies of its product shots; fit the sneaker detector on them."""
    copies = max(params.field_copies, 1 if params.localise else 0)
    key = embedding_key(params.backbone, pre)
    ensure_field_cached(
        cat,
        train_data.image_ids,
        key,
        params.backbone,
        pre,
        copies,
        seed=params.seed,
        progress=lambda done, total: progress(
            done / max(total, 1), f"field copies of product shots: {done}/{total}"
        ),
    )
    detector = fit_detector(cat, train_data.image_ids, copies) if params.localise else None
    if params.field_copies:
        found = load_field(cat, train_data.image_ids, key, params.field_copies)
        row_of = {image_id: i for i, image_id in enumerate(train_data.image_ids)}
        train_data.field_rows = [row_of[i] for i in found.image_ids]
        train_data.field_gray, train_data.field_colour = found.gray, found.colour
    return train_data, detector


def evaluate_by_kind(
    cat: Catalogue, bundle: Bundle, examples: list[Example]
) -> dict[str, Any] | None:
    """Test metrics apart for product shots (plain background) and for other photos, each
    answered as in use (the photo searched for sneakers, the main one classified); None
    where the test split holds only one kind (the split's metrics already say it all)."""
    pics = _open_pictures(cat, [e.image_id for e in examples])
    kept = [e for e in examples if e.image_id in pics]
    kinds = {
        e.image_id: "product_shots" if plain_background(pics[e.image_id]) else "photos"
        for e in kept
    }
    if len(set(kinds.values())) < 2:
        return None
    from inference.predictor import Predictor

    predictor = Predictor(bundle)
    out: dict[str, Any] = {}
    for kind in ("product_shots", "photos"):
        part = [e for e in kept if kinds[e.image_id] == kind]
        answers = predictor.predict_images([pics[e.image_id] for e in part])
        metrics = evaluate_answers(
            bundle.cascade,
            [a.main for a in answers],
            [e.model for e in part],
            [e.sku for e in part],
        )
        metrics["no_sneaker_found"] = sum(not a.sneaker_found for a in answers)
        out[kind] = metrics
    return out


def _unmeasured(examples: list[Example]) -> list[str]:
    counts = split_counts(examples)
    notes = []
    for split in ("val", "test"):
        if counts[split]["images"] == 0:
            notes.append(f"no {split} images: {split} metrics not measured")
    if not any(e.sku for e in examples):
        notes.append("no SKU labels: stage-1-only cascade (SKU answers are empty)")
    return notes


def _unmeasured_stage2(metrics: dict[str, Any]) -> list[str]:
    """Say where stage 2 could not be measured because no SKU there is one it learned."""
    notes = []
    for split in ("val", "test"):
        m = metrics.get(split) or {}
        novel = m.get("new_colourways")
        if novel and not (m.get("stage2") or {}).get("n"):
            notes.append(
                f"stage 2 not measured on {split}: none of its {novel['n']} images is of an SKU "
                f"in train (with one photo per colourway each colourway lies in one split); "
                f"there stage 1 got the model of {novel['model_top1']:.0%} of these new "
                f"colourways and their SKU came back unknown for "
                f"{novel['sku_answered_unknown']:.0%}"
            )
    return notes


def _finetune(
    cat: Catalogue,
    train_examples: list[Example],
    params: FitParams,
    pre: Preprocessing,
    progress: Progress,
) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    from training.finetune import finetune

    pics = _open_pictures(cat, [e.image_id for e in train_examples])
    usable = [e for e in train_examples if e.image_id in pics]
    models = sorted({e.model for e in usable})
    skus = sorted({e.sku for e in usable if e.sku})
    mi = {m: i for i, m in enumerate(models)}
    si = {s: i for i, s in enumerate(skus)}
    state = finetune(
        [pics[e.image_id] for e in usable],
        [mi[e.model] for e in usable],
        [si[e.sku] if e.sku else None for e in usable],
        len(models),
        len(skus),
        params.backbone,
        pre,
        epochs=params.epochs,
        lr=params.lr,
        seed=params.seed,
        progress=progress,
    )
    backbone = build_backbone(params.backbone, pretrained=False)
    backbone.load_state_dict(state)
    backbone.eval()
    return state, backbone
