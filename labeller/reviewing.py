"""What the Review page lists: labels that the model or the pages' weak labels contradict.

An image a reviewer confirmed (a ``confirm`` label event newer than its last change)
leaves these lists until its label changes again.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from db import Catalogue
from db.models import Image, ImageSource, LabelEvent, Prediction, Sku, SneakerModel

REVIEW_KINDS = {
    "disagree": "Model disagrees with the label",
    "weak": "Weak label contradicts the label",
    "issues": "Ranked label issues",
}


def _not_confirmed() -> Any:
    """Images without a confirmation newer than their last change."""
    later = aliased(LabelEvent)
    last_change = (
        select(func.coalesce(func.max(later.id), 0))
        .where(later.image_id == Image.id, later.action != "confirm")
        .scalar_subquery()
    )
    return ~exists().where(
        LabelEvent.image_id == Image.id,
        LabelEvent.action == "confirm",
        ~LabelEvent.undone,
        LabelEvent.id > last_change,
    )


def disagreements(session: Session, run_id: int, limit: int = 200) -> list[int]:
    """Labelled images whose prediction (of ``run_id``) names another model or SKU.

    The most confident contradictions first: those are the likeliest label mistakes.
    """
    pred_model = Prediction.model_name
    differs = or_(
        and_(pred_model.is_not(None), pred_model != SneakerModel.name),
        and_(
            Prediction.sku.is_not(None),
            Image.sku_id.is_not(None),
            Prediction.sku != func.coalesce(Sku.style_code, ""),
        ),
    )
    stmt = (
        select(Image.id)
        .join(Prediction, and_(Prediction.image_id == Image.id, Prediction.run_id == run_id))
        .join(SneakerModel, SneakerModel.id == Image.model_id)
        .outerjoin(Sku, Sku.id == Image.sku_id)
        .where(Image.status == "labelled", differs, _not_confirmed())
        .order_by(
            func.coalesce(Prediction.sku_conf, Prediction.model_conf, 0).desc(),
            Image.id,
        )
        .limit(limit)
    )
    return list(session.scalars(stmt))


def weak_conflicts(session: Session, limit: int = 200) -> list[int]:
    """Labelled images that a page claims to be another SKU (weak SKU ≠ the label's SKU)."""
    stmt = (
        select(Image.id)
        .join(Sku, Sku.id == Image.sku_id)
        .where(
            Image.status == "labelled",
            exists().where(
                ImageSource.image_id == Image.id,
                ImageSource.weak_sku.is_not(None),
                ImageSource.weak_sku != Sku.style_code,
            ),
            _not_confirmed(),
        )
        .order_by(Image.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def label_issue_ranker() -> Callable[..., Any] | None:
    """``training.label_issues.rank_label_issues`` where that module is installed."""
    try:
        module = importlib.import_module("training.label_issues")
    except ImportError:
        return None
    return getattr(module, "rank_label_issues", None)


def issue_ids(result: Any) -> list[int]:
    """Image ids from what a ranker returns: ids, or objects/dicts with an ``image_id``."""
    ids: list[int] = []
    for item in result or []:
        if isinstance(item, int):
            ids.append(item)
        elif isinstance(item, dict) and "image_id" in item:
            ids.append(int(item["image_id"]))
        elif hasattr(item, "image_id"):
            ids.append(int(item.image_id))
        else:
            raise TypeError(f"rank_label_issues returned an item without an image id: {item!r}")
    return ids


def still_to_review(session: Session, ids: list[int]) -> list[int]:
    """Of ``ids`` (in order), the images still labelled and not confirmed since."""
    if not ids:
        return []
    keep = set(
        session.scalars(
            select(Image.id).where(Image.id.in_(ids), Image.status == "labelled", _not_confirmed())
        )
    )
    return [i for i in ids if i in keep]


def ranked_issues(cat: Catalogue, run_id: int | None, limit: int = 200) -> list[int] | None:
    """Image ids the label-issue ranker flags, or None when that ranker is not installed.

    The ranker's own errors (no cached embeddings yet: a ``LookupError``) propagate.
    """
    rank = label_issue_ranker()
    if rank is None:
        return None
    with cat.read() as session:
        return issue_ids(rank(session, run_id=run_id, limit=limit))[:limit]
