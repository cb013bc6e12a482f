"""What the Splits page shows beside :mod:`db.splits`: table rows, totals, locked counts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import SPLITS, Image, Sku, SneakerModel
from db.splits import ClassBalance, Leak

COLUMNS = (*SPLITS, "none")
"""Split columns of the balance table ("none": labelled, no split yet)."""
CHART_CLASSES = 40
"""At most this many classes in the balance chart (the table lists them all)."""


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
    rows = list(rows)
    by_sku = any(row.kind == "sku" for row in rows)
    out: list[dict[str, object]] = []
    for row in rows:
        assigned = sum(row.counts[s] for s in SPLITS)
        model = models.get(row.name, "") if row.kind == "sku" else row.name
        # Among SKU classes, the images labelled with a model only are a class of their own.
        name = f"{row.name} (no SKU)" if by_sku and row.kind == "model" else row.name
        out.append(
            {
                "class": name,
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


def percent_problem(train: float, val: float, test: float) -> str | None:
    """Why three split percentages cannot be used as they are, or None when they add up."""
    values = (train, val, test)
    if any(v < 0 for v in values):
        return "Percentages cannot be negative."
    total = sum(values)
    if round(total, 6) != 100:
        return (
            f"Train, val and test add up to {total:g}%, not 100%: change one of them "
            "(nothing was assigned)."
        )
    if train <= 0:
        return "Give the train split a share: training needs it."
    return None


def chart_rows(
    records: Sequence[Mapping[str, object]],
    off: Iterable[str] = (),
    limit: int = CHART_CLASSES,
) -> list[Mapping[str, object]]:
    """The classes to chart when there are too many to read: those off the ratios first,
    then the smallest (where a missing image hurts most), in the table's order."""
    records = list(records)
    if len(records) <= limit:
        return records
    off_names = set(off)
    ranked = sorted(
        range(len(records)),
        key=lambda i: (str(records[i]["class"]) not in off_names, records[i]["total"], i),
    )
    keep = set(ranked[:limit])
    return [r for i, r in enumerate(records) if i in keep]
