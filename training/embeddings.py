"""Backbone embeddings of catalogue images, cached in the ``embeddings`` table.

One row per image, backbone key and view (gray / colour). The key names the backbone,
the input size and whether the picture was flipped left-right
(:func:`inference.bundle.embedding_key`), so a flipped copy, used to augment training,
is cached like any other. Only missing rows are computed, in batches, with progress.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
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
from inference.bundle import embedding_key
from inference.preprocess import VIEWS, Preprocessing, View, preprocess

log = logging.getLogger(__name__)

BATCH_SIZE = 8
IN_CHUNK = 500
Progress = Callable[[int, int], None]
"""progress(done, total)"""


@dataclass
class CacheReport:
    computed: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    """image id -> why its stored file could not be read"""


def _chunks(seq: Sequence[int], n: int) -> Iterator[Sequence[int]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


@torch.inference_mode()
def compute_embeddings(
    images: Sequence[PILImage.Image],
    backbone: nn.Module,
    pre: Preprocessing,
    flipped: bool,
    views: tuple[View, ...] = VIEWS,
) -> dict[tuple[View, bool], torch.Tensor]:
    """Embeddings of decoded pictures per (view, flipped): N x dim float32 each."""
    inputs = preprocess(list(images), pre, views)
    batch = torch.cat([inputs[v] for v in views])
    n = len(images)
    out: dict[tuple[View, bool], torch.Tensor] = {}
    for v, part in zip(views, backbone(batch).float().split(n), strict=True):
        out[(v, False)] = part
    if flipped:
        feats = backbone(torch.flip(batch, dims=[3])).float().split(n)
        for v, part in zip(views, feats, strict=True):
            out[(v, True)] = part
    return out


def cached_ids(cat: Catalogue, image_ids: Sequence[int], key: str, view: str) -> set[int]:
    have: set[int] = set()
    with cat.read() as s:
        for chunk in _chunks(image_ids, IN_CHUNK):
            have.update(
                s.scalars(
                    select(Embedding.image_id).where(
                        Embedding.backbone == key,
                        Embedding.view == view,
                        Embedding.image_id.in_(chunk),
                    )
                )
            )
    return have


def ensure_cached(
    cat: Catalogue,
    image_ids: Sequence[int],
    backbone_name: str,
    pre: Preprocessing,
    flipped: bool = True,
    progress: Progress | None = None,
    backbone: nn.Module | None = None,
) -> CacheReport:
    """Compute and store the embeddings that the cache lacks for these images."""
    keys = [(embedding_key(backbone_name, pre), False)]
    if flipped:
        keys.append((embedding_key(backbone_name, pre, flipped=True), True))
    complete = set(image_ids)
    for key, _ in keys:
        for view in VIEWS:
            complete &= cached_ids(cat, image_ids, key, view)
    missing = [i for i in image_ids if i not in complete]
    report = CacheReport()
    if progress:
        progress(0, len(missing))
    if not missing:
        return report
    model = backbone if backbone is not None else build_backbone(backbone_name)
    for done, chunk in enumerate(_chunks(missing, BATCH_SIZE)):
        pictures, ok = _open_images(cat, chunk, report)
        if ok:
            emb = compute_embeddings(pictures, model, pre, flipped)
            _store(cat, ok, emb, keys)
            report.computed += len(ok)
        if progress:
            progress(min((done + 1) * BATCH_SIZE, len(missing)), len(missing))
    return report


def _open_images(
    cat: Catalogue, ids: Sequence[int], report: CacheReport
) -> tuple[list[PILImage.Image], list[int]]:
    with cat.read() as s:
        rows = {r.id: r for r in s.scalars(select(Image).where(Image.id.in_(ids)))}
    pictures, ok = [], []
    for image_id in ids:
        row = rows.get(image_id)
        if row is None:
            report.failed[image_id] = "image row is gone"
            continue
        try:
            pictures.append(cat.store.open(row))
            ok.append(image_id)
        except (OSError, ImageError) as exc:
            report.failed[image_id] = str(exc)
            log.warning("image %s: cannot embed: %s", image_id, exc)
    return pictures, ok


def _store(
    cat: Catalogue,
    ids: list[int],
    emb: dict[tuple[View, bool], torch.Tensor],
    keys: list[tuple[str, bool]],
) -> None:
    with cat.write() as s:
        for key, flipped in keys:
            for view in VIEWS:
                vectors = emb[(view, flipped)].numpy().astype("<f4")
                have = set(
                    s.scalars(
                        select(Embedding.image_id).where(
                            Embedding.backbone == key,
                            Embedding.view == view,
                            Embedding.image_id.in_(ids),
                        )
                    )
                )
                s.add_all(
                    Embedding(
                        image_id=i,
                        backbone=key,
                        view=view,
                        dim=int(vec.shape[0]),
                        vector=vec.tobytes(),
                    )
                    for i, vec in zip(ids, vectors, strict=True)
                    if i not in have
                )


def load_cached(cat: Catalogue, image_ids: Sequence[int], key: str, view: str) -> torch.Tensor:
    """Cached vectors in the order of ``image_ids`` (all must be cached)."""
    found: dict[int, np.ndarray] = {}
    with cat.read() as s:
        for chunk in _chunks(image_ids, IN_CHUNK):
            for image_id, blob in s.execute(
                select(Embedding.image_id, Embedding.vector).where(
                    Embedding.backbone == key,
                    Embedding.view == view,
                    Embedding.image_id.in_(chunk),
                )
            ):
                found[image_id] = np.frombuffer(blob, dtype="<f4")
    lacking = [i for i in image_ids if i not in found]
    if lacking:
        raise LookupError(
            f"{len(lacking)} images have no cached {key}/{view} embedding (first: {lacking[:5]})"
        )
    if not image_ids:
        return torch.empty(0, 0)
    return torch.from_numpy(np.stack([found[i] for i in image_ids]).astype(np.float32))
