"""What the Review page lists: labels that the model or the pages' weak labels contradict.

An image a reviewer confirmed (a ``confirm`` label event newer than its last change)
leaves these lists until its label changes again.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from db.health import label_issues_path
from db.models import Image, ImageSource, LabelEvent, Prediction, Sku, SneakerModel
from labeller.grid import Card, Suggestion
from labeller.labelling import coverage

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


def prediction_coverage(session: Session, run_id: int) -> tuple[int, int]:
    """(labelled images with a prediction of ``run_id``, labelled images).

    A labelled image has one when it was labelled after its suggestion was made, or when
    the suggestions were refreshed for labelled images too (``suggest --labelled``, the
    app's refresh).
    """
    return coverage(session, run_id, "labelled")


@dataclass(frozen=True)
class RankedIssue:
    """One image of the label-issue ranking: what the ranker believes instead, how sure."""

    image_id: int
    suggestion: Suggestion | None
    note: str


def ranked_issue(item: Any) -> RankedIssue:
    """A :class:`RankedIssue` from what a ranker returns: an id, a dict or an object.

    ``training.label_issues.LabelIssue`` carries ``level`` (model | sku), ``suggested`` (the
    model or SKU the cross-validated heads believe), ``given_model`` and ``score`` (how
    likely the label is wrong); its suggestion becomes the card's tick box.
    """
    if isinstance(item, int):
        return RankedIssue(item, None, "flagged by the label-issue ranking")
    get = item.get if isinstance(item, dict) else lambda k, d=None: getattr(item, k, d)
    image_id = get("image_id")
    if image_id is None:
        raise TypeError(f"rank_label_issues returned an item without an image id: {item!r}")
    level, suggested, score = get("level"), get("suggested"), get("score")
    suggestion = None
    if suggested and level == "model":
        suggestion = Suggestion(str(suggested), None, None, None)
    elif suggested and level == "sku" and get("given_model"):
        suggestion = Suggestion(str(get("given_model")), None, str(suggested), None)
    doubt = f" (doubt {100 * float(score):.0f}%)" if isinstance(score, int | float) else ""
    what = f"likely {suggested}" if suggested else "label doubted"
    return RankedIssue(int(image_id), suggestion, f":material/troubleshoot: {what}{doubt}")


def with_issues(cards: list[Card], issues: dict[int, RankedIssue]) -> list[Card]:
    """Cards showing the ranker's belief and doubt instead of the active run's suggestion."""
    out = []
    for card in cards:
        issue = issues.get(card.image_id)
        if issue is not None:
            card = replace(card, suggestion=issue.suggestion or card.suggestion, note=issue.note)
        out.append(card)
    return out


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


@dataclass(frozen=True)
class SavedRanking:
    """The last label-issue ranking that ``python -m training issues`` stored."""

    at: str | None
    issues: list[RankedIssue]
    problem: str | None = None


def saved_ranking(data_dir: Path) -> SavedRanking | None:
    """The stored ranking (flagged images, most doubted first); None when there is none.

    An unreadable file is a ranking with a ``problem`` (said on the page), not an error.
    """
    path = label_issues_path(data_dir)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return SavedRanking(None, [], f"{path} cannot be read ({exc}): rank again")
    try:
        items = [i for i in raw["issues"] if i.get("flagged", True)]
        return SavedRanking(raw.get("at"), [ranked_issue(i) for i in items])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        return SavedRanking(raw.get("at"), [], f"{path} is not a ranking ({exc}): rank again")
