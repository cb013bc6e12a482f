"""What the Splits page shows beside :mod:`db.splits`: table rows, totals, locked counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import SPLITS, Image, Sku, SneakerModel
from db.splits import ClassBalance, Leak

COLUMNS = (*SPLITS, "none")
"""Split columns of the balance table ("none": labelled, no split yet)."""


def sku_models(session: Session) -> dict[str, str]:
    """Style code -> model name, to show which model an SKU class belongs to."""
    return dict(
        session.execute(
            select(Sku.style_code, SneakerModel.name).join(
                SneakerModel, SneakerModel.id == Sku.model_id
            )
        ).all()
    )


def balance_records(
    rows: Iterable[ClassBalance], models: Mapping[str, str]
) -> list[dict[str, object]]:
    """Table rows: class, its model, images per split, total, and the train share."""
    out: list[dict[str, object]] = []
    for row in rows:
        assigned = sum(row.counts[s] for s in SPLITS)
        model = models.get(row.name, "") if row.kind == "sku" else row.name
        out.append(
            {
                "class": row.name,
                "model": model,
                **{s: row.counts.get(s, 0) for s in COLUMNS},
                "total": row.total,
                "train %": round(100 * row.counts["train"] / assigned) if assigned else None,
            }
        )
    return out


def totals(rows: Iterable[ClassBalance]) -> dict[str, int]:
    out = dict.fromkeys(COLUMNS, 0)
    for row in rows:
        for key in COLUMNS:
            out[key] += row.counts.get(key, 0)
    return out


def leak_records(leaks: Sequence[Leak]) -> list[dict[str, object]]:
    """One row per leak: what ties the images together and where they sit."""
    return [
        {
            "kind": "near-duplicates" if leak.kind == "dup_group" else "product page",
            "group": leak.key,
            "images": leak.images,
            **{s: ", ".join(map(str, leak.splits.get(s, [])[:12])) for s in SPLITS},
        }
        for leak in leaks
    ]


def locked_counts(session: Session) -> dict[str, int]:
    """How many images of each split are locked."""
    found = dict(
        session.execute(
            select(Image.split, func.count())
            .where(Image.split_locked, Image.split.is_not(None))
            .group_by(Image.split)
        ).all()
    )
    return {s: int(found.get(s, 0)) for s in SPLITS}
