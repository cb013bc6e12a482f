"""The Label and Review pages' work without the UI: queues, pages of cards, and actions.

A page of the grid is loaded and claimed in one write transaction, so two labellers who
open a page at the same moment never get the same images (the second one's queue leaves
out what the first one just claimed). Every action returns an :class:`Action`, which is
what the Undo button undoes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from db import Catalogue, ops, taxonomy
from db.models import Image, ImageSource, LabelEvent, Prediction, Run, utcnow
from db.ops import STYLE_CODE, normalise_style_code
from labeller.grid import Card, Suggestion, weak_label

CLAIM_MINUTES = 15
QUEUE_KINDS = {
    "uncertain": "Most uncertain suggestion first",
    "suggested": "By suggested model / SKU",
    "weak": "By weak label",
    "duplicates": "Near-duplicate groups",
    "filter": "Filter",
}
STATUS_CHOICES = ("new", "labelled", "rejected", "any")
SPLIT_CHOICES = ("any", "train", "val", "test", "none")


@dataclass(frozen=True)
class QueueSpec:
    """Which images the grid shows: a queue kind and its narrowing choices."""

    kind: str = "uncertain"
    suggested_model: str | None = None
    suggested_sku: str | None = None
    weak_model: str | None = None
    weak_sku: str | None = None
    source_kind: str | None = None
    model: str | None = None
    sku: str | None = None
    status: str = "new"
    split: str = "any"

    def __post_init__(self) -> None:
        if self.kind not in QUEUE_KINDS:
            raise ValueError(f"unknown queue {self.kind!r} (use one of {', '.join(QUEUE_KINDS)})")
        if self.status not in STATUS_CHOICES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.split not in SPLIT_CHOICES:
            raise ValueError(f"unknown split {self.split!r}")


def queue_filter(spec: QueueSpec, run_id: int | None, user: str | None) -> ops.QueueFilter:
    """The :class:`db.ops.QueueFilter` of a queue choice, for the active run and a labeller."""
    f = ops.QueueFilter(status="new", run_id=run_id, user=user)
    if spec.kind == "uncertain":
        f.order = "uncertain" if run_id is not None else "id"
    elif spec.kind == "suggested":
        f.suggested_model = spec.suggested_model
        f.suggested_sku = spec.suggested_sku
        f.order = "confident"
    elif spec.kind == "weak":
        f.weak_model = spec.weak_model
        f.weak_sku = spec.weak_sku
    elif spec.kind == "duplicates":
        f.order = "dup_group"
    else:
        f.status = None if spec.status == "any" else spec.status
        f.source_kind = spec.source_kind
        f.model = spec.model
        f.sku = spec.sku
        f.split = None if spec.split == "any" else spec.split
    return f


# --- cards ---------------------------------------------------------------------------------


@dataclass
class GridPage:
    cards: list[Card]
    total: int | None
    page: int
    page_size: int
    run_id: int | None


def _suggestion(pred: Prediction | None) -> Suggestion | None:
    if pred is None:
        return None
    return Suggestion(pred.model_name, pred.model_conf, pred.sku, pred.sku_conf)


def _weak(sources: Iterable[ImageSource]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for src in sources:
        text = weak_label(src.weak_model, src.weak_sku)
        if text:
            seen.setdefault(text, None)
    return tuple(seen)


def make_card(image: Image, pred: Prediction | None) -> Card:
    return Card(
        image_id=image.id,
        sha256=image.sha256,
        path=image.path,
        status=image.status,
        model=image.model.name if image.model else None,
        sku=image.sku.style_code if image.sku else None,
        split=image.split,
        dup_group=image.dup_group,
        suggestion=_suggestion(pred),
        weak=_weak(image.sources),
    )


def _load_images(session: Session, ids: Sequence[int]) -> dict[int, Image]:
    if not ids:
        return {}
    stmt = (
        select(Image)
        .where(Image.id.in_(list(ids)))
        .options(
            selectinload(Image.model),
            selectinload(Image.sku),
            selectinload(Image.sources),
        )
    )
    return {i.id: i for i in session.scalars(stmt)}


def _predictions(session: Session, ids: Sequence[int], run_id: int | None) -> dict[int, Prediction]:
    if run_id is None or not ids:
        return {}
    stmt = select(Prediction).where(Prediction.run_id == run_id, Prediction.image_id.in_(ids))
    return {p.image_id: p for p in session.scalars(stmt)}


def cards_for(session: Session, ids: Sequence[int], run_id: int | None) -> list[Card]:
    """Cards of these images, in this order (ids that no longer exist are left out)."""
    images = _load_images(session, ids)
    preds = _predictions(session, list(images), run_id)
    return [make_card(images[i], preds.get(i)) for i in ids if i in images]


def load_page(
    cat: Catalogue,
    spec: QueueSpec,
    *,
    run_id: int | None,
    user: str,
    page: int = 0,
    page_size: int = 36,
) -> GridPage:
    """One page of a queue, claimed for ``user`` so that other labellers' pages leave it out."""
    if page < 0:
        raise ValueError(f"page must be 0 or more, got {page}")
    f = queue_filter(spec, run_id, user)
    with cat.write() as session:
        found = ops.queue(session, f, page=page, page_size=page_size)
        ids = [i.id for i in found.items]
        if f.status == "new" and ids:
            ops.claim(session, ids, user, minutes=CLAIM_MINUTES)
        cards = cards_for(session, ids, run_id)
    return GridPage(cards, found.total, page, page_size, run_id)


# --- what the pickers offer ----------------------------------------------------------------


@dataclass(frozen=True)
class SkuChoice:
    style_code: str
    model: str
    colourway: str | None
    images: int
    reference_image_id: int | None

    @property
    def text(self) -> str:
        colour = f" · {self.colourway}" if self.colourway else ""
        return f"{self.style_code}{colour} ({self.model}, {self.images})"


@dataclass
class LabelChoices:
    models: list[str]
    skus: list[SkuChoice]
    by_code: dict[str, SkuChoice] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_code = {s.style_code: s for s in self.skus}

    def skus_of(self, model: str | None) -> list[SkuChoice]:
        return [s for s in self.skus if model is None or s.model == model]


@dataclass(frozen=True)
class SkuPick:
    """What a text in the SKU picker means: an SKU of the catalogue, or a new one to create."""

    style_code: str
    new: bool


def resolve_sku(choices: LabelChoices, model: str | None, typed: str | None) -> SkuPick | None:
    """The SKU meant by what the SKU picker holds (a listed option or a typed text).

    The picker lets people type: pressing Enter after a search such as ``dd1391-10`` or a
    colourway must not create a junk SKU. So a text names, in this order: an SKU of the
    catalogue (the style code, any case); the one SKU of the chosen model whose code,
    colourway or title contains it; or a new SKU when it has the shape of a style code.
    Anything else raises :class:`db.ops.CatalogueError` saying what to do instead.
    """
    text = " ".join((typed or "").split())
    if not text:
        return None
    if text in choices.by_code:
        return SkuPick(text, new=False)
    wanted = text.casefold()
    for code in choices.by_code:
        if code.casefold() == wanted:
            return SkuPick(code, new=False)
    if STYLE_CODE.match(text):
        if not model:
            raise ops.CatalogueError(f"SKU {text.upper()} is new: choose its model first")
        return SkuPick(text.upper(), new=True)
    hits = [
        s
        for s in choices.skus_of(model)
        if wanted in s.style_code.casefold() or wanted in (s.colourway or "").casefold()
    ]
    if len(hits) == 1:
        return SkuPick(hits[0].style_code, new=False)
    where = f" of {model}" if model else ""
    if hits:
        shown = ", ".join(h.style_code for h in hits[:5]) + (" …" if len(hits) > 5 else "")
        raise ops.CatalogueError(
            f"“{text}” matches {len(hits)} SKUs{where} ({shown}): pick one from the list"
        )
    raise ops.CatalogueError(
        f"“{text}” is no SKU{where} and not a style code (AAAAAA-NNN); pick one from the "
        "list, or create an SKU with another kind of code on the Catalogue page"
    )


@dataclass(frozen=True)
class Picked:
    """What the label pickers hold, resolved: the label to give, or why there is none."""

    model: str | None
    sku: str | None
    new_sku: bool = False
    problem: str | None = None
    typed: str | None = None

    @property
    def ready(self) -> bool:
        """Whether 'Label selected' can label with it."""
        return self.problem is None and bool(self.model or self.sku)


def pick_label(choices: LabelChoices, model: str | None, typed: str | None) -> Picked:
    """The label that a model picker and an SKU picker stand for (see :func:`resolve_sku`).

    A known SKU brings its model when none is chosen; one of another model than the chosen
    one is a problem (an SKU belongs to exactly one model), said in words.
    """
    try:
        pick = resolve_sku(choices, model, typed)
    except ops.CatalogueError as exc:
        return Picked(model, None, problem=str(exc), typed=typed)
    if pick is None:
        return Picked(model, None, typed=typed)
    if pick.new:
        return Picked(model, pick.style_code, new_sku=True, typed=typed)
    owner = choices.by_code[pick.style_code].model
    if model and owner != model:
        return Picked(
            model,
            pick.style_code,
            problem=f"{pick.style_code} is an SKU of {owner}, not of {model}",
            typed=typed,
        )
    return Picked(owner, pick.style_code, typed=typed)


def prefill_from_weak(
    choices: LabelChoices, weak_model: str | None, weak_sku: str | None
) -> tuple[str | None, str | None]:
    """The picker values a weak label stands for, where the catalogue knows them.

    An SKU that the catalogue has comes with the model it belongs to there (the catalogue,
    not the page, says which model an SKU is of); otherwise a known weak model alone. What
    the catalogue lacks gives nothing: a picker never holds a name nobody confirmed.
    """
    sku = choices.by_code.get(normalise_style_code(weak_sku))
    if sku is not None:
        return sku.model, sku.style_code
    if weak_model and weak_model in choices.models:
        return weak_model, None
    return None, None


def label_choices(session: Session) -> LabelChoices:
    models = [m.name for m in taxonomy.model_rows(session)]
    skus = [
        SkuChoice(r.style_code, r.model, r.colourway, r.images, r.reference_image_id)
        for r in taxonomy.sku_rows(session)
    ]
    return LabelChoices(models, skus)


def active_run(session: Session) -> Run | None:
    return session.scalar(select(Run).where(Run.active).order_by(Run.id.desc()).limit(1))


_KEY_SEP = "\x1f"


def choice_key(model: str | None, sku: str | None) -> str:
    """A (model, SKU) pair as one stable string (for a picker's values)."""
    return f"{model or ''}{_KEY_SEP}{sku or ''}"


def split_choice_key(key: str | None) -> tuple[str | None, str | None]:
    if not key:
        return None, None
    model, _, sku = key.partition(_KEY_SEP)
    return model or None, sku or None


def choice_text(key: str) -> str:
    return weak_label(*split_choice_key(key)) or "–"


def suggested_choices(session: Session, run_id: int) -> list[tuple[str, str | None, int]]:
    """(suggested model, suggested SKU, unlabelled images) of a run, most images first."""
    stmt = (
        select(Prediction.model_name, Prediction.sku, func.count())
        .join(Image, Image.id == Prediction.image_id)
        .where(
            Prediction.run_id == run_id, Image.status == "new", Prediction.model_name.is_not(None)
        )
        .group_by(Prediction.model_name, Prediction.sku)
        .order_by(func.count().desc(), Prediction.model_name, Prediction.sku)
        .limit(500)
    )
    return [(m, s, n) for m, s, n in session.execute(stmt).all()]


def weak_choices(session: Session) -> list[tuple[str | None, str | None, int]]:
    """(weak model, weak SKU, unlabelled images) claimed by pages, most images first."""
    n = func.count(func.distinct(ImageSource.image_id))
    stmt = (
        select(ImageSource.weak_model, ImageSource.weak_sku, n)
        .join(Image, Image.id == ImageSource.image_id)
        .where(
            Image.status == "new",
            (ImageSource.weak_model.is_not(None)) | (ImageSource.weak_sku.is_not(None)),
        )
        .group_by(ImageSource.weak_model, ImageSource.weak_sku)
        .order_by(n.desc(), ImageSource.weak_model, ImageSource.weak_sku)
        .limit(500)
    )
    return [(m, s, c) for m, s, c in session.execute(stmt).all()]


def coverage(session: Session, run_id: int, status: str) -> tuple[int, int]:
    """(images of ``status`` with a prediction of ``run_id``, images of ``status``)."""
    of_status = Image.status == status
    total = session.scalar(select(func.count()).select_from(Image).where(of_status)) or 0
    covered = (
        session.scalar(
            select(func.count())
            .select_from(Prediction)
            .join(Image, Image.id == Prediction.image_id)
            .where(Prediction.run_id == run_id, of_status)
        )
        or 0
    )
    return int(covered), int(total)


def suggestion_coverage(session: Session, run_id: int) -> tuple[int, int]:
    """(unlabelled images with a suggestion of ``run_id``, unlabelled images)."""
    return coverage(session, run_id, "new")


def duplicate_summary(session: Session) -> tuple[int, int]:
    """(near-duplicate groups with an unlabelled image, unlabelled images in a group)."""
    grouped = (Image.status == "new", Image.dup_group.is_not(None))
    groups = session.scalar(select(func.count(func.distinct(Image.dup_group))).where(*grouped))
    images = session.scalar(select(func.count()).select_from(Image).where(*grouped))
    return int(groups or 0), int(images or 0)


def source_kinds(session: Session) -> list[str]:
    return list(session.scalars(select(ImageSource.kind).distinct().order_by(ImageSource.kind)))


# --- actions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Action:
    """What one button did: which images changed. Undo reverts exactly these."""

    kind: str
    image_ids: tuple[int, ...]
    message: str
    skipped: tuple[str, ...] = ()


def accept_suggestions(cat: Catalogue, cards: Sequence[Card], user: str) -> Action:
    """Label each card with its suggestion; one whose model or SKU is gone is skipped, said."""
    done: list[int] = []
    skipped: list[str] = []
    with cat.write() as session:
        for card in cards:
            s = card.suggestion
            if s is None or not s.usable:
                skipped.append(f"image {card.image_id}: no usable suggestion")
                continue
            try:
                with session.begin_nested():
                    ops.set_label(session, card.image_id, s.model, s.sku, user, how="suggestion")
            except ops.CatalogueError as exc:
                skipped.append(f"image {card.image_id}: {exc}")
                continue
            done.append(card.image_id)
    msg = f"Accepted {len(done)} suggestion{'s' if len(done) != 1 else ''}"
    if skipped:
        msg += f"; skipped {len(skipped)}"
    return Action("accept", tuple(done), msg, tuple(skipped))


def label_images(
    cat: Catalogue, image_ids: Sequence[int], model: str | None, sku: str | None, user: str
) -> Action:
    """Give the images one model and SKU (all or nothing)."""
    if not image_ids:
        raise ops.CatalogueError("select images to label first")
    with cat.write() as session:
        n = ops.bulk_label(session, image_ids, model, sku, user, how="bulk")
    what = " / ".join(p for p in (model, sku) if p)
    return Action("label", tuple(image_ids), f"Labelled {n} image{'s' if n != 1 else ''} {what}")


def reject_images(cat: Catalogue, image_ids: Sequence[int], user: str) -> Action:
    """Mark images as junk (they leave every queue and all training)."""
    if not image_ids:
        raise ops.CatalogueError("select images to reject first")
    with cat.write() as session:
        for image_id in image_ids:
            ops.reject(session, image_id, user)
    n = len(image_ids)
    return Action("reject", tuple(image_ids), f"Rejected {n} image{'s' if n != 1 else ''}")


def confirm_labels(cat: Catalogue, image_ids: Sequence[int], user: str) -> Action:
    """Record that a person checked these labels and keeps them (Review leaves them out)."""
    if not image_ids:
        raise ops.CatalogueError("select images to confirm first")
    now = utcnow()
    with cat.write() as session:
        images = _load_images(session, image_ids)
        for image_id in image_ids:
            image = images.get(image_id)
            if image is None:
                raise ops.CatalogueError(f"no image with id {image_id}")
            snap = ops.snapshot(image)
            session.add(
                LabelEvent(
                    image_id=image_id,
                    user=user,
                    action="confirm",
                    how="review",
                    before=snap,
                    after=snap,
                    at=now,
                )
            )
    n = len(image_ids)
    return Action("confirm", tuple(image_ids), f"Confirmed {n} label{'s' if n != 1 else ''}")


def undo_action(cat: Catalogue, action: Action, user: str) -> int:
    """Revert one action: the newest change of each of its images. Returns how many reverted."""
    reverted = 0
    with cat.write() as session:
        for image_id in action.image_ids:
            reverted += ops.undo(session, image_id, user) is not None
    return reverted


def undo_last(cat: Catalogue, user: str) -> int:
    """Without a remembered action (a new session): undo this user's newest change."""
    with cat.write() as session:
        event = ops.last_event_by(session, user)
        if event is None:
            return 0
        return int(ops.undo(session, event.image_id, user) is not None)


# --- one image in detail -------------------------------------------------------------------


@dataclass(frozen=True)
class ImageDetail:
    card: Card
    width: int
    height: int
    n_bytes: int
    sources: list[dict[str, Any]]
    history: list[dict[str, Any]]


def image_detail(session: Session, image_id: int, run_id: int | None) -> ImageDetail:
    cards = cards_for(session, [image_id], run_id)
    if not cards:
        raise ops.CatalogueError(f"no image with id {image_id}")
    image = session.get(Image, image_id)
    assert image is not None
    sources = [
        {
            "kind": s.kind,
            "spider": s.spider,
            "page": s.page_url,
            "image url": s.image_url,
            "file": s.file_path,
            "weak label": weak_label(s.weak_model, s.weak_sku),
            "title": s.weak_title,
            "seen": s.seen_at,
        }
        for s in image.sources
    ]
    events = session.scalars(
        select(LabelEvent).where(LabelEvent.image_id == image_id).order_by(LabelEvent.id.desc())
    )
    history = [
        {
            "when": e.at,
            "who": e.user,
            "action": e.action + (" (undone)" if e.undone else ""),
            "how": e.how,
            "before": weak_label(e.before.get("model"), e.before.get("sku")) or e.before["status"],
            "after": weak_label(e.after.get("model"), e.after.get("sku")) or e.after["status"],
        }
        for e in events
    ]
    return ImageDetail(cards[0], image.width, image.height, image.n_bytes, sources, history)
