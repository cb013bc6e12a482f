"""Nearest labelled catalogue images to a query embedding (cosine similarity).

The catalogue caches one embedding per image, backbone and view (``Embedding`` rows,
float32 little-endian). The Predict page embeds an upload with the active run's backbone
and looks up the closest labelled images, so a user sees *why* the model answered as it did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Embedding, Image, Sku, SneakerModel


@dataclass(frozen=True)
class EmbeddingIndex:
    """Unit-length embeddings of labelled images, one row per image."""

    image_ids: np.ndarray  # int64, shape (n,)
    matrix: np.ndarray  # float32, shape (n, dim), rows L2-normalised
    backbone: str
    view: str

    def __len__(self) -> int:
        return int(self.image_ids.shape[0])


@dataclass(frozen=True)
class Neighbour:
    image_id: int
    similarity: float
    sha256: str
    path: str
    model: str | None
    sku: str | None


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def index_version(session: Session, backbone: str, view: str) -> tuple[int, int]:
    """(count, newest id) of the embeddings of labelled images: a cheap cache key."""
    row = session.execute(
        select(func.count(Embedding.id), func.coalesce(func.max(Embedding.id), 0))
        .join(Image, Image.id == Embedding.image_id)
        .where(Embedding.backbone == backbone, Embedding.view == view, Image.status == "labelled")
    ).one()
    return int(row[0]), int(row[1])


def load_index(session: Session, backbone: str, view: str) -> EmbeddingIndex:
    """All cached embeddings of labelled images for one backbone and view."""
    rows = session.execute(
        select(Embedding.image_id, Embedding.dim, Embedding.vector)
        .join(Image, Image.id == Embedding.image_id)
        .where(Embedding.backbone == backbone, Embedding.view == view, Image.status == "labelled")
        .order_by(Embedding.image_id)
    ).all()
    if not rows:
        return EmbeddingIndex(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), backbone, view)
    dims = {dim for _, dim, _ in rows}
    if len(dims) != 1:
        raise ValueError(f"embeddings of {backbone}/{view} have mixed sizes {sorted(dims)}")
    dim = dims.pop()
    matrix = np.stack([np.frombuffer(vec, dtype="<f4", count=dim) for _, _, vec in rows])
    ids = np.asarray([image_id for image_id, _, _ in rows], dtype=np.int64)
    return EmbeddingIndex(ids, _normalise(matrix), backbone, view)


def nearest(index: EmbeddingIndex, query: np.ndarray, k: int = 8) -> list[tuple[int, float]]:
    """The ``k`` most similar images of the index to ``query``: ``[(image_id, cosine)]``."""
    if len(index) == 0 or k <= 0:
        return []
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if q.shape[0] != index.matrix.shape[1]:
        raise ValueError(
            f"query embedding has {q.shape[0]} values; {index.backbone}/{index.view} "
            f"embeddings have {index.matrix.shape[1]}"
        )
    scores = index.matrix @ _normalise(q)
    k = min(k, scores.shape[0])
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(int(index.image_ids[i]), float(scores[i])) for i in top]


def describe(session: Session, hits: list[tuple[int, float]]) -> list[Neighbour]:
    """The images behind nearest-neighbour hits, with their labels, in the same order."""
    if not hits:
        return []
    rows = {
        image_id: (sha, path, model, sku)
        for image_id, sha, path, model, sku in session.execute(
            select(Image.id, Image.sha256, Image.path, SneakerModel.name, Sku.style_code)
            .outerjoin(SneakerModel, SneakerModel.id == Image.model_id)
            .outerjoin(Sku, Sku.id == Image.sku_id)
            .where(Image.id.in_([i for i, _ in hits]))
        ).all()
    }
    return [Neighbour(i, score, *rows[i]) for i, score in hits if i in rows]
