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
from db.models import Image, ImageSource, LabelEvent, Prediction, Run, Sku, SneakerModel, utcnow
from db.ops import STYLE_CODE, normalise_style_code
from labeller.grid import Card, Suggestion, weak_label

CLAIM_MINUTES = 15
QUEUE_KINDS = {
    "uncertain": "Sneakers, least sure first",
    "junk": "Likely junk (reject in bulk)",
    "missing_sku": "Model labelled, SKU missing",
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
        if run_id is not None:
            f.suggested_unknown = False  # what the model calls 'unknown model' is in "junk"
    elif spec.kind == "junk":
        f.order = "uncertain"
        f.suggested_unknown = True
        if run_id is None:
            f.image_ids = ()  # no model, no idea what is junk
    elif spec.kind == "missing_sku":
        f.status = "labelled"
        f.sku_missing = True
        f.model = spec.model
        f.order = "model"
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


def _top_name(pred: Prediction, key: str) -> str | None:
    top = (pred.top or {}).get(key) or []
    return top[0].get("name") if top and isinstance(top[0], dict) else None


def _suggestion(pred: Prediction | None) -> Suggestion | None:
    if pred is None:
        return None
    return Suggestion(
        pred.model_name,
        pred.model_conf,
        pred.sku,
        pred.sku_conf,
        model_guess=None if pred.model_name else _top_name(pred, "model_top3"),
        sku_guess=None if pred.sku else _top_name(pred, "sku_top3"),
    )


def sku_guess(pred: Prediction | None, model: str, sku_models: dict[str, str]) -> Suggestion | None:
    """For an image labelled ``model`` without an SKU: the prediction's likeliest SKU of that
    model (even one below the bar, named a guess), to accept in one click."""
    if pred is None:
        return None
    for entry in (pred.top or {}).get("sku_top3") or []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if name and sku_models.get(name) == model:
            return Suggestion(model, None, name, entry.get("confidence"), for_sku=True)
    return None


def _weak(sources: Iterable[ImageSource]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for src in sources:
        text = weak_label(src.weak_model, src.weak_sku)
        if text:
            seen.setdefault(text, None)
    return tuple(seen)


def make_card(
    image: Image, pred: Prediction | None, sku_models: dict[str, str] | None = None
) -> Card:
    """The card of an image; with ``sku_models`` (style code: model), an image labelled with a
    model and no SKU gets the guess at its SKU as its suggestion (:func:`sku_guess`)."""
    suggestion = _suggestion(pred)
    if sku_models is not None and image.model is not None and image.sku_id is None:
        suggestion = sku_guess(pred, image.model.name, sku_models)
    return Card(
        image_id=image.id,
        sha256=image.sha256,
        path=image.path,
        status=image.status,
        model=image.model.name if image.model else None,
        sku=image.sku.style_code if image.sku else None,
        split=image.split,
        dup_group=image.dup_group,
        suggestion=suggestion,
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


def _predictions(
    session: Session, ids: Sequence[int], run_id: int | None, any_run: bool = False
) -> dict[int, Prediction]:
    """The predictions of ``run_id`` for these images; with ``any_run``, an image without one
    gets its newest prediction of another run (labelled images are not predicted again)."""
    if run_id is None or not ids:
        return {}
    stmt = select(Prediction).where(Prediction.run_id == run_id, Prediction.image_id.in_(ids))
    found = {p.image_id: p for p in session.scalars(stmt)}
    missing = [i for i in ids if i not in found]
    if any_run and missing:
        older = select(Prediction).where(Prediction.image_id.in_(missing)).order_by(Prediction.id)
        for p in session.scalars(older):
            found[p.image_id] = p
    return found


def cards_for(
    session: Session, ids: Sequence[int], run_id: int | None, *, sku_guesses: bool = False
) -> list[Card]:
    """Cards of these images, in this order (ids that no longer exist are left out).

    ``sku_guesses``: images labelled with a model only get their SKU guess as suggestion."""
    images = _load_images(session, ids)
    preds = _predictions(session, list(images), run_id, any_run=sku_guesses)
    sku_models = None
    if sku_guesses:
        pairs = select(Sku.style_code, SneakerModel.name).join(
            SneakerModel, Sku.model_id == SneakerModel.id
        )
        sku_models = dict(session.execute(pairs).tuples().all())
    return [make_card(images[i], preds.get(i), sku_models) for i in ids if i in images]


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
        if (f.status == "new" or f.sku_missing) and ids:
            ops.claim(session, ids, user, minutes=CLAIM_MINUTES)
        cards = cards_for(session, ids, run_id, sku_guesses=spec.kind == "missing_sku")
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


def missing_sku_counts(session: Session) -> dict[str, int]:
    """Images labelled with a model and no SKU, per model (most first)."""
    n = func.count(Image.id)
    stmt = (
        select(SneakerModel.name, n)
        .join(Image, Image.model_id == SneakerModel.id)
        .where(Image.status == "labelled", Image.sku_id.is_(None))
        .group_by(SneakerModel.name)
        .order_by(n.desc(), SneakerModel.name)
    )
    return {m: int(c) for m, c in session.execute(stmt).all()}


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
    """What one button did. ``action_id`` names its changes in the history (one undo step);
    ``None`` when it changed nothing (then nothing was recorded and there is nothing to undo).
    """

    kind: str
    image_ids: tuple[int, ...]
    message: str
    skipped: tuple[str, ...] = ()
    action_id: str | None = None
    summary: str = ""
    """What it did in a few words, for the Undo button: 'accepted 60 suggestions'."""
    no_sku: tuple[int, ...] = ()
    """Images it gave a model but no SKU."""


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' if n != 1 else ''}"


def accept_suggestions(cat: Catalogue, cards: Sequence[Card], user: str) -> Action:
    """Label each card with its suggestion, as one action; one whose model or SKU is gone is
    skipped, said. An image that already has its suggestion as label is left alone and
    counted, so that accepting a page of verified labels records nothing and says so."""
    done: list[int] = []
    same: list[int] = []
    no_sku: list[int] = []
    skipped: list[str] = []
    with cat.write() as session:
        action_id = ops.begin_action(session)
        for card in cards:
            s = card.suggestion
            if s is None or not s.usable:
                skipped.append(f"image {card.image_id}: no usable suggestion")
                continue
            try:
                with session.begin_nested():
                    changed = ops.label(session, card.image_id, s.model, s.sku, user, "suggestion")
            except ops.CatalogueError as exc:
                skipped.append(f"image {card.image_id}: {exc}")
                continue
            if not changed:
                same.append(card.image_id)
                continue
            done.append(card.image_id)
            if not s.sku:
                no_sku.append(card.image_id)
    if not done:
        msg = "Nothing changed"
        if same:
            msg += f": {_plural(len(same), 'ticked image')} already had that label"
        msg += " (nothing recorded, nothing to undo)"
    else:
        msg = f"Accepted {_plural(len(done), 'suggestion')}"
        if no_sku:
            msg += (
                f"; {_plural(len(no_sku), 'image')} got a model but no SKU (the SKU was unknown):"
                f" find them in the queue “{QUEUE_KINDS['missing_sku']}”"
            )
        if same:
            msg += f"; {len(same):,} already had that label"
    if skipped:
        msg += f"; skipped {len(skipped):,}"
    summary = f"accepted {_plural(len(done), 'suggestion')}"
    return Action(
        "accept",
        tuple(done),
        msg,
        tuple(skipped),
        action_id if done else None,
        summary,
        tuple(no_sku),
    )


def label_images(
    cat: Catalogue, image_ids: Sequence[int], model: str | None, sku: str | None, user: str
) -> Action:
    """Give the images one model and SKU (all or nothing), as one action."""
    if not image_ids:
        raise ops.CatalogueError("select images to label first")
    with cat.write() as session:
        action_id = ops.begin_action(session)
        n = ops.bulk_label(session, image_ids, model, sku, user, how="bulk")
    what = " / ".join(p for p in (model, sku) if p)
    if n == 0:
        msg = f"Nothing changed: the selected images are already labelled {what}"
        return Action("label", (), msg + " (nothing recorded)")
    msg = f"Labelled {_plural(n, 'image')} {what}"
    if len(image_ids) > n:
        msg += f" ({len(image_ids) - n:,} already were)"
    if not sku:
        msg += " (model only, no SKU)"
    return Action(
        "label",
        tuple(image_ids),
        msg,
        action_id=action_id,
        summary=f"labelled {_plural(n, 'image')} {what}",
        no_sku=tuple(image_ids) if not sku else (),
    )


def reject_images(cat: Catalogue, image_ids: Sequence[int], user: str) -> Action:
    """Mark images as junk (they leave every queue and all training), as one action."""
    if not image_ids:
        raise ops.CatalogueError("select images to reject first")
    with cat.write() as session:
        action_id = ops.begin_action(session)
        n = 0
        for image_id in image_ids:
            image = session.get(Image, image_id)
            if image is None:
                raise ops.CatalogueError(f"no image with id {image_id}")
            if image.status != "rejected":
                ops.reject(session, image_id, user)
                n += 1
    if n == 0:
        return Action("reject", (), "Nothing changed: already rejected (nothing recorded)")
    msg = f"Rejected {_plural(n, 'image')}"
    return Action(
        "reject", tuple(image_ids), msg, action_id=action_id, summary=msg[0].lower() + msg[1:]
    )


def confirm_labels(cat: Catalogue, image_ids: Sequence[int], user: str) -> Action:
    """Record that a person checked these labels and keeps them (Review leaves them out)."""
    if not image_ids:
        raise ops.CatalogueError("select images to confirm first")
    now = utcnow()
    with cat.write() as session:
        action_id = ops.begin_action(session)
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
                    action_id=action_id,
                )
            )
    msg = f"Confirmed {_plural(len(image_ids), 'label')}"
    return Action(
        "confirm", tuple(image_ids), msg, action_id=action_id, summary=msg[0].lower() + msg[1:]
    )


@dataclass(frozen=True)
class Undone:
    """What an undo did, in words for the labeller."""

    message: str
    reverted: tuple[int, ...] = ()
    kept: tuple[str, ...] = ()


def _undone_message(summary: str, result: ops.UndoResult) -> str:
    msg = f"Undid: {summary} ({_plural(result.n, 'image')} back as before)"
    if result.kept:
        msg += f"; {_plural(len(result.kept), 'image')} left as they are (changed since)"
    return msg


def undo_action(cat: Catalogue, action: Action, user: str) -> Undone:
    """Take back one action: every change it recorded, and nothing else."""
    if action.action_id is None:
        return Undone(f"Nothing to undo: the last action changed nothing ({action.message})")
    with cat.write() as session:
        result = ops.undo_action(session, action.action_id, user)
    if not result.n and not result.kept:
        return Undone(f"Nothing to undo: “{action.summary}” was undone already")
    summary = action.summary or result.summary
    return Undone(_undone_message(summary, result), tuple(result.reverted), tuple(result.kept))


def last_action(cat: Catalogue, user: str) -> tuple[str, str] | None:
    """(action id, what it did) of this user's newest action not undone, from the history."""
    with cat.read() as session:
        return ops.last_action_by(session, user)


def undo_last(cat: Catalogue, user: str) -> Undone:
    """Without a remembered action (a new session): undo this user's newest action."""
    with cat.write() as session:
        found = ops.last_action_by(session, user)
        if found is None:
            return Undone("Nothing to undo")
        result = ops.undo_action(session, found[0], user)
    return Undone(_undone_message(found[1], result), tuple(result.reverted), tuple(result.kept))


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
