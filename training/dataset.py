"""The labelled examples a run trains on, and their fingerprint."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select

from db import Catalogue
from db.models import Image, Sku, SneakerModel

SPLIT_OF_UNSPLIT = "train"
"""Labelled images without a split train (a freshly imported catalogue has no splits)."""


@dataclass(frozen=True)
class Example:
    """One labelled image: its model, its SKU if known, and its split."""

    image_id: int
    sha256: str
    model: str
    sku: str | None
    split: str


def labelled_examples(cat: Catalogue) -> list[Example]:
    """Every labelled image with a model (rejected and unlabelled ones are left out)."""
    stmt = (
        select(Image.id, Image.sha256, SneakerModel.name, Sku.style_code, Image.split)
        .join(SneakerModel, Image.model_id == SneakerModel.id)
        .outerjoin(Sku, Image.sku_id == Sku.id)
        .where(Image.status == "labelled")
        .order_by(Image.id)
    )
    with cat.read() as s:
        rows = s.execute(stmt).all()
    return [
        Example(i, sha, model, sku, split or SPLIT_OF_UNSPLIT) for i, sha, model, sku, split in rows
    ]


def image_ids(cat: Catalogue, *statuses: str) -> list[int]:
    """Ids of the images of these statuses ("new", "labelled", "rejected"), oldest first."""
    with cat.read() as s:
        return list(
            s.scalars(select(Image.id).where(Image.status.in_(statuses)).order_by(Image.id))
        )


def fingerprint(examples: list[Example]) -> str:
    """SHA-256 over which images, with which labels and splits, a run used."""
    h = hashlib.sha256()
    for e in sorted(examples, key=lambda e: e.sha256):
        h.update(f"{e.sha256}\t{e.model}\t{e.sku or ''}\t{e.split}\n".encode())
    return h.hexdigest()


def split_counts(examples: list[Example]) -> dict[str, dict[str, int]]:
    """Images per split, and how many of them carry an SKU label."""
    images = Counter(e.split for e in examples)
    with_sku = Counter(e.split for e in examples if e.sku)
    return {
        split: {"images": images.get(split, 0), "with_sku": with_sku.get(split, 0)}
        for split in ("train", "val", "test")
    }
