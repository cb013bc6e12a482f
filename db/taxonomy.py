"""Editing the taxonomy: create, rename and merge sneaker models and SKUs, move an SKU.

Each function takes a session (the caller owns the transaction, ideally ``cat.write()``)
and the user who asks. Every change is recorded as a :class:`db.models.CatalogueEvent`;
every image whose label a change touches (a merge, a move) also gets a
:class:`db.models.LabelEvent` (``how="catalogue"``), so the label history of an image
stays complete. A request that cannot be done raises :class:`db.ops.CatalogueError`
before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from db.models import CatalogueEvent, Image, LabelEvent, Sku, SneakerModel, utcnow
from db.ops import CatalogueError, clean_name, find_model, find_sku, new_name

HOW = "catalogue"


@dataclass(frozen=True)
class TaxonomyChange:
    """What one edit did: the event it recorded and how many images changed label."""

    event_id: int
    action: str
    images_relabelled: int
    detail: dict[str, Any]


def _model(session: Session, name: str) -> SneakerModel:
    row = find_model(session, name)
    if row is None:
        raise CatalogueError(f"no sneaker model named {clean_name(name, 'model')!r}")
    return row


def _sku(session: Session, code: str) -> Sku:
    row = find_sku(session, code)
    if row is None:
        raise CatalogueError(f"no SKU with style code {clean_name(code, 'SKU')!r}")
    return row


def _event(
    session: Session, user: str, action: str, detail: dict[str, Any], relabelled: int = 0
) -> TaxonomyChange:
    user = clean_name(user, "user")
    detail = {**detail, "images_relabelled": relabelled}
    event = CatalogueEvent(user=user, action=action, detail=detail, at=utcnow())
    session.add(event)
    session.flush()
    return TaxonomyChange(event.id, action, relabelled, detail)


def _label_snapshot(
    image: Image, model: SneakerModel | None, sku: Sku | None, status: str | None = None
) -> dict[str, Any]:
    """The same snapshot :mod:`db.ops` records, so that ``ops.undo`` can restore it."""
    return {
        "status": status or image.status,
        "model_id": model.id if model else None,
        "model": model.name if model else None,
        "sku_id": sku.id if sku else None,
        "sku": sku.style_code if sku else None,
        "split": image.split,
        "split_locked": image.split_locked,
    }


def _relabel(
    session: Session,
    images: Sequence[Image],
    model: SneakerModel,
    sku_for: dict[int | None, Sku | None],
    user: str,
    action: str,
) -> int:
    """Point ``images`` at ``model`` (and their SKU at ``sku_for[old sku id]``), with history."""
    now = utcnow()
    for image in images:
        before = _label_snapshot(image, image.model, image.sku)
        new_sku = sku_for.get(image.sku_id, image.sku)
        image.model_id = model.id
        image.sku_id = new_sku.id if new_sku else None
        after = _label_snapshot(image, model, new_sku)
        session.add(
            LabelEvent(
                image_id=image.id,
                user=user,
                action=action,
                how=HOW,
                before=before,
                after=after,
                at=now,
            )
        )
    session.flush()
    return len(images)


def _images_where(session: Session, *conds: Any) -> list[Image]:
    return list(
        session.scalars(
            select(Image)
            .where(*conds)
            .options(selectinload(Image.model), selectinload(Image.sku))
            .order_by(Image.id)
        )
    )


# --- create --------------------------------------------------------------------------------


def create_model(session: Session, name: str, user: str) -> SneakerModel:
    """A new sneaker model; an existing name is an error."""
    name = new_name(name, "model")
    if find_model(session, name) is not None:
        raise CatalogueError(f"a sneaker model named {name!r} already exists")
    row = SneakerModel(name=name)
    session.add(row)
    session.flush()
    _event(session, user, "create_model", {"model_id": row.id, "name": name})
    return row


def create_sku(
    session: Session,
    style_code: str,
    model: str,
    user: str,
    colourway: str | None = None,
    title: str | None = None,
) -> Sku:
    """A new SKU under an existing model; an existing style code is an error."""
    code = new_name(style_code, "SKU")
    if find_sku(session, code) is not None:
        raise CatalogueError(f"an SKU with style code {code!r} already exists")
    parent = _model(session, model)
    colourway = " ".join(colourway.split()) if colourway else None
    row = Sku(style_code=code, model_id=parent.id, colourway=colourway or None, title=title)
    session.add(row)
    session.flush()
    _event(
        session,
        user,
        "create_sku",
        {"sku_id": row.id, "style_code": code, "model": parent.name, "colourway": colourway},
    )
    return row


# --- rename --------------------------------------------------------------------------------


def rename_model(session: Session, old: str, new: str, user: str) -> TaxonomyChange:
    """Rename a model; its SKUs and images follow (they point at it by id)."""
    row = _model(session, old)
    new = new_name(new, "model")
    if new == row.name:
        raise CatalogueError(f"model {row.name!r} already has that name")
    if find_model(session, new) is not None:
        raise CatalogueError(
            f"cannot rename {row.name!r} to {new!r}: that model exists; merge them instead"
        )
    before = row.name
    row.name = new
    session.flush()
    return _event(session, user, "rename_model", {"model_id": row.id, "from": before, "to": new})


def rename_sku(
    session: Session,
    old: str,
    new: str,
    user: str,
    colourway: str | None = None,
) -> TaxonomyChange:
    """Change an SKU's style code (and optionally its colourway name)."""
    row = _sku(session, old)
    new = new_name(new, "SKU")
    if new != row.style_code and find_sku(session, new) is not None:
        raise CatalogueError(
            f"cannot rename SKU {row.style_code!r} to {new!r}: that SKU exists; merge them instead"
        )
    colourway = " ".join(colourway.split()) if colourway else None
    if new == row.style_code and (colourway is None or colourway == row.colourway):
        raise CatalogueError(f"SKU {row.style_code!r}: nothing to change")
    detail: dict[str, Any] = {"sku_id": row.id, "from": row.style_code, "to": new}
    if colourway is not None and colourway != row.colourway:
        detail["colourway_from"] = row.colourway
        detail["colourway_to"] = colourway
        row.colourway = colourway
    row.style_code = new
    session.flush()
    return _event(session, user, "rename_sku", detail)


# --- merge and move ------------------------------------------------------------------------


def merge_models(session: Session, source: str, target: str, user: str) -> TaxonomyChange:
    """Fold model ``source`` into ``target``: its SKUs and images move over, then it goes."""
    src = _model(session, source)
    dst = _model(session, target)
    if src.id == dst.id:
        raise CatalogueError(f"cannot merge model {src.name!r} into itself")
    images = _images_where(session, Image.model_id == src.id)
    sku_codes = sorted(s.style_code for s in src.skus)
    for sku in list(src.skus):
        sku.model_id = dst.id
    session.flush()
    session.expire(src, ["skus"])
    moved = _relabel(session, images, dst, {}, user, "merge")
    detail = {
        "from": src.name,
        "from_id": src.id,
        "into": dst.name,
        "into_id": dst.id,
        "skus_moved": sku_codes,
        "image_ids": [i.id for i in images],
    }
    session.delete(src)
    session.flush()
    return _event(session, user, "merge_models", detail, moved)


def merge_skus(session: Session, source: str, target: str, user: str) -> TaxonomyChange:
    """Fold SKU ``source`` into ``target``: its images take the target's SKU and model."""
    src = _sku(session, source)
    dst = _sku(session, target)
    if src.id == dst.id:
        raise CatalogueError(f"cannot merge SKU {src.style_code!r} into itself")
    images = _images_where(session, Image.sku_id == src.id)
    moved = _relabel(session, images, dst.model, {src.id: dst}, user, "merge")
    detail = {
        "from": src.style_code,
        "from_id": src.id,
        "from_model": src.model.name,
        "into": dst.style_code,
        "into_id": dst.id,
        "into_model": dst.model.name,
        "image_ids": [i.id for i in images],
    }
    session.delete(src)
    session.flush()
    return _event(session, user, "merge_skus", detail, moved)


def move_sku(session: Session, style_code: str, model: str, user: str) -> TaxonomyChange:
    """Put an SKU under another model; the images labelled with it follow."""
    sku = _sku(session, style_code)
    dst = _model(session, model)
    if sku.model_id == dst.id:
        raise CatalogueError(f"SKU {sku.style_code!r} already belongs to {dst.name!r}")
    before = sku.model.name
    images = _images_where(session, Image.sku_id == sku.id)
    sku.model_id = dst.id
    session.flush()
    session.refresh(sku, ["model"])
    moved = _relabel(session, images, dst, {}, user, "move")
    detail = {
        "sku_id": sku.id,
        "style_code": sku.style_code,
        "from": before,
        "to": dst.name,
        "image_ids": [i.id for i in images],
    }
    return _event(session, user, "move_sku", detail, moved)


# --- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRow:
    id: int
    name: str
    skus: int
    images: int


@dataclass(frozen=True)
class SkuRow:
    id: int
    style_code: str
    model: str
    colourway: str | None
    title: str | None
    images: int
    reference_image_id: int | None


def _labelled_per(column: Any) -> Any:
    """Labelled images grouped by ``column``: (key, n, first image id), one scan of images."""
    return (
        select(
            column.label("key"),
            func.count(Image.id).label("n"),
            func.min(Image.id).label("first"),
        )
        .where(Image.status == "labelled", column.is_not(None))
        .group_by(column)
        .subquery()
    )


def model_rows(session: Session, search: str = "") -> list[ModelRow]:
    """Models (name contains ``search``, any case) with their SKU and labelled-image counts."""
    images = _labelled_per(Image.model_id)
    skus = (
        select(Sku.model_id.label("key"), func.count(Sku.id).label("n"))
        .group_by(Sku.model_id)
        .subquery()
    )
    stmt = (
        select(
            SneakerModel.id,
            SneakerModel.name,
            func.coalesce(skus.c.n, 0),
            func.coalesce(images.c.n, 0),
        )
        .outerjoin(skus, skus.c.key == SneakerModel.id)
        .outerjoin(images, images.c.key == SneakerModel.id)
        .order_by(SneakerModel.name)
    )
    if search.strip():
        stmt = stmt.where(func.lower(SneakerModel.name).contains(search.strip().lower()))
    return [ModelRow(*row) for row in session.execute(stmt).all()]


def sku_rows(
    session: Session, model: str | None = None, search: str = "", limit: int | None = None
) -> list[SkuRow]:
    """SKUs (of ``model`` if given; style code, colourway or title containing ``search``).

    Each comes with its labelled-image count and a reference image: the oldest image
    labelled with it (for a thumbnail).
    """
    images = _labelled_per(Image.sku_id)
    stmt = (
        select(
            Sku.id,
            Sku.style_code,
            SneakerModel.name,
            Sku.colourway,
            Sku.title,
            func.coalesce(images.c.n, 0),
            images.c.first,
        )
        .join(SneakerModel, Sku.model_id == SneakerModel.id)
        .outerjoin(images, images.c.key == Sku.id)
        .order_by(SneakerModel.name, Sku.style_code)
    )
    if model:
        stmt = stmt.where(SneakerModel.name == clean_name(model, "model"))
    text = search.strip().lower()
    if text:
        stmt = stmt.where(
            func.lower(Sku.style_code).contains(text)
            | func.lower(func.coalesce(Sku.colourway, "")).contains(text)
            | func.lower(func.coalesce(Sku.title, "")).contains(text)
            | func.lower(SneakerModel.name).contains(text)
        )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [SkuRow(*row) for row in session.execute(stmt).all()]


def recent_events(session: Session, limit: int = 50) -> list[CatalogueEvent]:
    """The newest catalogue changes first."""
    return list(
        session.scalars(select(CatalogueEvent).order_by(CatalogueEvent.id.desc()).limit(limit))
    )
