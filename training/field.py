"""Field copies: each product shot in train made into photos, embedded like any other picture.

For every train image that is a product shot (:func:`training.augment.cutout` finds its
sneaker), ``copies`` photos are generated (:func:`training.augment.field_photo`), cropped
around the sneaker the way the localiser crops a photo in use (with the box's error of a
real localisation), and embedded in both views. Their embeddings are cached in the
catalogue under the key ``<embedding key>:field<k>``, so a retrain after a labelling
session computes only the new images' copies.

The same photos train the catalogue's sneaker detector (:class:`inference.localise.DetectorHead`):
a few cells inside the sneaker and a few outside it, from the localiser's feature map, are
cached under ``localiser@<side>:field<k>`` (views ``cell+`` and ``cell-``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image as PILImage
from sqlalchemy import select
from torch import nn

from db import Catalogue
from db.images import ImageError
from db.models import Embedding, Image
from inference.backbones import build_backbone
from inference.localise import (
    SIDE,
    DetectorHead,
    cell_features,
    crop_region,
    footwear_model,
    normalised_cells,
)
from inference.preprocess import VIEWS, Preprocessing
from training.augment import cutout, field_photo, seed_for
from training.embeddings import compute_embeddings
from training.heads import fit_linear

log = logging.getLogger(__name__)

BATCH = 8
CELLS_PER_PHOTO = 6
"""Cells of each kind (inside the sneaker, outside it) kept per generated photo."""
POSITIVE_COVER = 0.5
NEGATIVE_COVER = 0.02
"""A cell is a sneaker cell when the sneaker covers this share of it, background below the other."""
DETECTOR_C = 10.0
Progress = Callable[[int, int], None]


def field_key(embedding_key: str, copy: int) -> str:
    return f"{embedding_key}:field{copy}"


def cells_key(copy: int) -> str:
    return f"localiser@{SIDE}:field{copy}"


@dataclass
class FieldCopies:
    """Embeddings of the generated photos of some images (rows follow ``image_ids``)."""

    image_ids: list[int] = field(default_factory=list)
    gray: torch.Tensor | None = None
    colour: torch.Tensor | None = None


def jittered_box(
    box: tuple[int, int, int, int], size: tuple[int, int], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """The sneaker's true box as a localiser would find it: each side off by -5% to +20%."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    grow = rng.uniform(-0.05, 0.2, 4)
    return (
        max(0, int(x0 - grow[0] * w)),
        max(0, int(y0 - grow[1] * h)),
        min(size[0], int(x1 + grow[2] * w)),
        min(size[1], int(y1 + grow[3] * h)),
    )


def _cells(
    model: nn.Module, photos: list[PILImage.Image], masks: list[PILImage.Image]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per photo: sneaker cells and background cells (rows of L2-normalised features)."""
    out = []
    for (fmap, _sx, _sy), mask in zip(cell_features(model, photos), masks, strict=True):
        h, w = fmap.shape[1], fmap.shape[2]
        cover = np.asarray(mask.resize((w, h), PILImage.Resampling.BOX), np.float32) / 255.0
        cells = normalised_cells(fmap).numpy()
        flat = cover.reshape(-1)
        pos = np.flatnonzero(flat >= POSITIVE_COVER)
        neg = np.flatnonzero(flat <= NEGATIVE_COVER)
        rng = np.random.default_rng(len(out))
        pos = rng.permutation(pos)[:CELLS_PER_PHOTO]
        neg = rng.permutation(neg)[:CELLS_PER_PHOTO]
        out.append((cells[pos], cells[neg]))
    return out


def _has(cat: Catalogue, ids: Sequence[int], key: str, view: str) -> set[int]:
    with cat.read() as s:
        return set(
            s.scalars(
                select(Embedding.image_id).where(
                    Embedding.backbone == key, Embedding.view == view, Embedding.image_id.in_(ids)
                )
            )
        )


def _stored_ids(cat: Catalogue, ids: Sequence[int], key: str) -> set[int]:
    """Images that were tried for this key: embedded, or marked as no product shot."""
    done = set()
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        done |= _has(cat, chunk, key, "gray") | _has(cat, chunk, key, "none")
    return done


def ensure_field_cached(
    cat: Catalogue,
    image_ids: Sequence[int],
    embedding_key: str,
    backbone_name: str,
    pre: Preprocessing,
    copies: int,
    seed: int = 0,
    progress: Progress | None = None,
) -> int:
    """Generate, embed and cache the field copies that the cache lacks; returns how many."""
    if copies <= 0:
        return 0
    missing = sorted(
        set(image_ids)
        - set.intersection(
            *[_stored_ids(cat, image_ids, field_key(embedding_key, k)) for k in range(copies)]
        )
    )
    if progress:
        progress(0, len(missing))
    if not missing:
        return 0
    localiser = footwear_model()
    backbone = build_backbone(backbone_name)
    made = 0
    for start in range(0, len(missing), BATCH):
        chunk = missing[start : start + BATCH]
        with cat.read() as s:
            rows = {r.id: r for r in s.scalars(select(Image).where(Image.id.in_(chunk)))}
        for k in range(copies):
            key = field_key(embedding_key, k)
            crops, photos, masks, ok, none = [], [], [], [], []
            for image_id in chunk:
                row = rows.get(image_id)
                if row is None:
                    continue
                try:
                    cut = cutout(cat.store.read_bytes(row))
                except (OSError, ImageError, ValueError) as exc:
                    log.warning("image %s: no field copy: %s", image_id, exc)
                    cut = None
                if cut is None:
                    none.append(image_id)
                    continue
                rng = seed_for(row.sha256, k, seed)
                photo, box, mask = field_photo(cut, rng, with_mask=True)
                crops.append(crop_region(photo, jittered_box(box, photo.size, rng)))
                photos.append(photo)
                masks.append(mask)
                ok.append(image_id)
            emb = compute_embeddings(crops, backbone, pre, flipped=False) if ok else {}
            # the detector learns from the first copy's photos: enough cells, half the cost
            cells = _cells(localiser, photos, masks) if ok and k == 0 else []
            _store(cat, key, cells_key(k), ok, none, emb, cells)
            made += len(ok)
        if progress:
            progress(min(start + BATCH, len(missing)), len(missing))
    return made


def _store(
    cat: Catalogue,
    key: str,
    cell_key: str,
    ok: list[int],
    none: list[int],
    emb: dict,
    cells: list[tuple[np.ndarray, np.ndarray]],
) -> None:
    rows: list[Embedding] = []
    for view in VIEWS:
        if not ok:
            break
        vectors = emb[(view, False)].numpy().astype("<f4")
        rows += [
            Embedding(image_id=i, backbone=key, view=view, dim=int(v.shape[0]), vector=v.tobytes())
            for i, v in zip(ok, vectors, strict=True)
        ]
    for image_id, (pos, neg) in zip(ok if cells else [], cells, strict=True):
        for view, arr in (("cell+", pos), ("cell-", neg)):
            rows.append(
                Embedding(
                    image_id=image_id,
                    backbone=cell_key,
                    view=view,
                    dim=int(arr.shape[1]) if arr.size else 0,
                    vector=np.ascontiguousarray(arr, dtype="<f4").tobytes(),
                )
            )
    # an image that is no product shot is marked, so that it is not tried again
    rows += [Embedding(image_id=i, backbone=key, view="none", dim=0, vector=b"") for i in none]
    with cat.write() as s:
        have = {
            (e.image_id, e.backbone, e.view)
            for e in s.scalars(
                select(Embedding).where(
                    Embedding.backbone.in_([key, cell_key]),
                    Embedding.image_id.in_(ok + none),
                )
            )
        }
        s.add_all(r for r in rows if (r.image_id, r.backbone, r.view) not in have)


def load_field(
    cat: Catalogue, image_ids: Sequence[int], embedding_key: str, copies: int
) -> FieldCopies:
    """The cached field copies of these images (those that have them), all copies stacked."""
    ids: list[int] = []
    parts: dict[str, list[np.ndarray]] = {v: [] for v in VIEWS}
    wanted = set(image_ids)
    for k in range(copies):
        key = field_key(embedding_key, k)
        found: dict[str, dict[int, np.ndarray]] = {v: {} for v in VIEWS}
        with cat.read() as s:
            for start in range(0, len(image_ids), 500):
                chunk = list(image_ids[start : start + 500])
                for image_id, view, blob in s.execute(
                    select(Embedding.image_id, Embedding.view, Embedding.vector).where(
                        Embedding.backbone == key,
                        Embedding.view.in_(VIEWS),
                        Embedding.image_id.in_(chunk),
                    )
                ):
                    found[view][image_id] = np.frombuffer(blob, dtype="<f4")
        both = [i for i in image_ids if i in wanted and i in found["gray"] and i in found["colour"]]
        ids += both
        for v in VIEWS:
            parts[v] += [found[v][i] for i in both]
    if not ids:
        return FieldCopies()
    return FieldCopies(
        image_ids=ids,
        gray=torch.from_numpy(np.stack(parts["gray"]).astype(np.float32)),
        colour=torch.from_numpy(np.stack(parts["colour"]).astype(np.float32)),
    )


def fit_detector(cat: Catalogue, image_ids: Sequence[int], copies: int) -> DetectorHead | None:
    """The catalogue's sneaker detector from the cached cells of these images' field copies."""
    pos: list[np.ndarray] = []
    neg: list[np.ndarray] = []
    for k in range(min(copies, 1)):
        with cat.read() as s:
            for start in range(0, len(image_ids), 500):
                chunk = list(image_ids[start : start + 500])
                for view, dim, blob in s.execute(
                    select(Embedding.view, Embedding.dim, Embedding.vector).where(
                        Embedding.backbone == cells_key(k),
                        Embedding.image_id.in_(chunk),
                    )
                ):
                    if not dim or not blob:
                        continue
                    arr = np.frombuffer(blob, dtype="<f4").reshape(-1, dim)
                    (pos if view == "cell+" else neg).append(arr)
    if not pos or not neg:
        return None
    xp, xn = np.concatenate(pos), np.concatenate(neg)
    x = torch.from_numpy(np.concatenate([xp, xn]).astype(np.float32))
    y = torch.cat([torch.ones(len(xp), dtype=torch.long), torch.zeros(len(xn), dtype=torch.long)])
    fit = fit_linear(x, y, 2, C=DETECTOR_C)
    # two-class softmax = sigmoid of the logit difference
    return DetectorHead(
        weight=(fit.weight[1] - fit.weight[0]).detach().clone(),
        bias=float(fit.bias[1] - fit.bias[0]),
    )
