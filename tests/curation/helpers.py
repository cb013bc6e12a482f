"""Catalogues with planted problems for the curation tests (and the benches)."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFilter, ImageOps
from sqlalchemy.orm import Session

from db import Catalogue, ops
from db.images import ImageStore
from db.models import Embedding, Image, ImageSource

EMBEDDING_KEY = "efficientnet_lite0@224"


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> PILImage.Image:
    """A photo-like picture: smooth colour field, a few shapes, sensor-like noise, a blur."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.normal(size=(6, 8, 3))
    base = (base - base.min()) / np.ptp(base) * 255
    img = PILImage.fromarray(base.astype(np.uint8)).resize(size, PILImage.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        box = [x0, y0, x0 + int(rng.integers(20, 140)), y0 + int(rng.integers(20, 120))]
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    arr = np.asarray(img, dtype=np.float64) + rng.normal(0, 6, (h, w, 3))
    out = PILImage.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(1))


def encode(img: PILImage.Image, fmt: str = "JPEG", quality: int = 92) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, quality=quality)
    return out.getvalue()


def crop(img: PILImage.Image, share: float) -> PILImage.Image:
    w, h = img.size
    dx, dy = int(w * share), int(h * share)
    return img.crop((dx, dy, w - dx, h - dy))


def watermark(img: PILImage.Image) -> PILImage.Image:
    img = img.copy()
    draw = ImageDraw.Draw(img, "RGBA")
    w, h = img.size
    draw.rectangle([w * 0.62, h * 0.88, w * 0.97, h * 0.96], fill=(255, 255, 255, 150))
    draw.text((w * 0.64, h * 0.89), "shop.example", fill=(0, 0, 0, 255))
    return img


COPIES: dict[str, Callable[[PILImage.Image], bytes]] = {
    "resized": lambda img: encode(img.resize((img.width // 2, img.height // 2))),
    "recompressed": lambda img: encode(img, quality=25),
    "cropped": lambda img: encode(crop(img, 0.03), quality=80),
    "watermarked": lambda img: encode(watermark(img), fmt="PNG"),
    "flipped": lambda img: encode(ImageOps.mirror(img), quality=85),
}


def ingest(session: Session, store: ImageStore, data: bytes, name: str) -> int:
    source = ops.Source(kind="import", file_path=name)
    return ops.ingest_image(session, store, data, name, source).image_id


def plant_duplicates(cat: Catalogue, n_originals: int, seed: int = 100) -> dict[int, list[int]]:
    """Ingest originals and one copy of each kind per original: original id -> copy ids."""
    planted: dict[int, list[int]] = {}
    with cat.write() as s:
        for k in range(n_originals):
            img = photo(seed + k)
            original = ingest(s, cat.store, encode(img), f"orig{k}.jpg")
            planted[original] = [
                ingest(s, cat.store, make(img), f"orig{k}-{kind}") for kind, make in COPIES.items()
            ]
    return planted


def add_image(
    session: Session,
    n: int,
    model: str | None = None,
    sku: str | None = None,
    status: str | None = None,
    page_url: str | None = None,
    dup_group: int | None = None,
    split: str | None = None,
    spider: str | None = None,
    kind: str = "import",
) -> int:
    """An image row without a file (for split and ranking logic, which never reads pixels)."""
    model_row = ops.get_or_create_model(session, model) if model else None
    sku_row = ops.get_or_create_sku(session, sku, model or "") if sku else None
    row = Image(
        sha256=f"{n:064x}",
        path=f"images/none/{n}.jpg",
        ext="jpg",
        width=10,
        height=10,
        n_bytes=1,
        phash=f"{n:016x}",
        status=status or ("labelled" if model_row else "new"),
        model_id=model_row.id if model_row else None,
        sku_id=sku_row.id if sku_row else None,
        split=split,
        dup_group=dup_group,
    )
    session.add(row)
    session.flush()
    session.add(
        ImageSource(
            image_id=row.id, kind=kind, spider=spider, page_url=page_url, file_path=f"{n}.jpg"
        )
    )
    return row.id


def add_embedding(session: Session, image_id: int, view: str, vector: np.ndarray) -> None:
    vec = np.asarray(vector, dtype="<f4")
    session.add(
        Embedding(
            image_id=image_id,
            backbone=EMBEDDING_KEY,
            view=view,
            dim=int(vec.shape[0]),
            vector=vec.tobytes(),
        )
    )


def planted_label_catalogue(
    session: Session,
    models: int = 4,
    skus_per_model: int = 3,
    per_sku: int = 25,
    wrong_models: int = 4,
    wrong_skus: int = 4,
    dim: int = 32,
    seed: int = 0,
) -> tuple[set[int], list[int]]:
    """Labelled images with gaussian-cluster embeddings and planted wrong labels.

    The gray view clusters by model and the colour view by SKU, as a real backbone would.
    Returns (ids with a wrong label, all ids).
    """
    rng = np.random.default_rng(seed)
    model_centre = rng.normal(0, 4, (models, dim))
    sku_centre = rng.normal(0, 4, (models, skus_per_model, dim))
    truth: list[tuple[int, int]] = [
        (m, k) for m in range(models) for k in range(skus_per_model) for _ in range(per_sku)
    ]
    order = rng.permutation(len(truth))
    wrong_model = set(order[:wrong_models].tolist())
    wrong_sku = set(order[wrong_models : wrong_models + wrong_skus].tolist())
    wrong_ids: set[int] = set()
    ids: list[int] = []
    for n, (m, k) in enumerate(truth):
        given_m, given_k = m, k
        if n in wrong_model:
            given_m, given_k = (m + 1) % models, k
        elif n in wrong_sku:
            given_k = (k + 1) % skus_per_model
        image_id = add_image(
            session, 10_000 + n, model=f"Model {given_m}", sku=f"M{given_m}-{given_k:03d}"
        )
        add_embedding(session, image_id, "gray", model_centre[m] + rng.normal(0, 1, dim))
        add_embedding(session, image_id, "colour", sku_centre[m, k] + rng.normal(0, 1, dim))
        ids.append(image_id)
        if n in wrong_model or n in wrong_sku:
            wrong_ids.add(image_id)
    return wrong_ids, ids


def precision_recall(found: Sequence[int] | set[int], truth: set[int]) -> tuple[float, float]:
    found = set(found)
    hit = len(found & truth)
    return (hit / len(found) if found else 1.0, hit / len(truth) if truth else 1.0)
