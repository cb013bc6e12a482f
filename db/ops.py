"""Operations on the catalogue. Each takes a session; the caller owns the transaction.

Write operations are meant to run inside ``with cat.write() as session:`` so that they
take SQLite's write lock up front, and so that a failure rolls everything back.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, event, exists, func, select
from sqlalchemy.orm import Session

from db.images import (
    EXTENSIONS,
    ImageStore,
    decode_image,
    image_format,
    make_thumbnail,
    mirror_phash,
    phash,
    sha256_hex,
)
from db.models import (
    SPLITS,
    Image,
    ImageSource,
    LabelClaim,
    LabelEvent,
    Prediction,
    Sku,
    SneakerModel,
    utcnow,
)

STYLE_CODE = re.compile(r"^[A-Z0-9]{6}-[0-9]{3}$", re.IGNORECASE)
"""A Nike style code (DD1391-100): stored in upper case, however it is typed."""


class CatalogueError(ValueError):
    """A request the catalogue refuses (unknown SKU, conflicting label, ...), said plainly."""


# --- bringing images in -------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where an image was seen, and what that place claims it shows (the weak label)."""

    kind: str  # crawl | import | upload | demo
    spider: str | None = None
    image_url: str | None = None
    page_url: str | None = None
    file_path: str | None = None
    weak_model: str | None = None
    weak_sku: str | None = None
    weak_colourway: str | None = None
    weak_title: str | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class PreparedImage:
    """An image decoded and hashed, ready to be stored (all the CPU work of an ingest)."""

    data: bytes
    name: str
    sha256: str
    ext: str
    width: int
    height: int
    phash: str
    phash_mirror: str
    thumbnail: bytes


@dataclass(frozen=True)
class IngestResult:
    image_id: int
    sha256: str
    created: bool
    source_added: bool
    labelled: bool = False
    """the image got its label from this ingest"""


def fit_text(value: str | None, column: Any) -> str | None:
    """Free text (a weak label, a page title) cut to the length of its column.

    SQLite stores any length, PostgreSQL refuses a longer value and with it the whole
    write: a page with a 400-character title must not fail a crawl on one database only.
    """
    if value is None:
        return None
    length = getattr(column.type, "length", None)
    if length is None or len(value) <= length:
        return value
    return value[: length - 1] + "…"


def _fit_source(source: Source) -> dict[str, Any]:
    c = ImageSource.__table__.c
    return {
        "spider": fit_text(source.spider, c.spider),
        "weak_model": fit_text(source.weak_model, c.weak_model),
        "weak_sku": fit_text(source.weak_sku, c.weak_sku),
        "weak_colourway": fit_text(source.weak_colourway, c.weak_colourway),
        "weak_title": fit_text(source.weak_title, c.weak_title),
    }


def prepare_image(data: bytes, name: str) -> PreparedImage:
    """Decode and hash an image; raises :class:`db.images.ImageError` for a bad file."""
    img = decode_image(data, name)
    return PreparedImage(
        data=data,
        name=name,
        sha256=sha256_hex(data),
        ext=EXTENSIONS.get(image_format(data), "jpg"),
        width=img.width,
        height=img.height,
        phash=phash(img),
        phash_mirror=mirror_phash(img),
        thumbnail=make_thumbnail(img),
    )


def _find_source(session: Session, image_id: int, source: Source) -> ImageSource | None:
    return session.scalar(
        select(ImageSource).where(
            ImageSource.image_id == image_id,
            ImageSource.kind == source.kind,
            _eq(ImageSource.image_url, source.image_url),
            _eq(ImageSource.page_url, source.page_url),
            _eq(ImageSource.file_path, source.file_path),
        )
    )


def _eq(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def ingest_prepared(
    session: Session,
    store: ImageStore,
    prepared: PreparedImage,
    source: Source,
    *,
    model: str | None = None,
    sku: str | None = None,
    split: str | None = None,
    user: str = "import",
    how: str = "import",
) -> IngestResult:
    """Add an image (or a new source of a known one) to the catalogue.

    The same bytes are one image however often they arrive; each new place they were seen
    at becomes a source. ``model``/``sku`` label the image (creating the model and SKU if
    needed) unless it already carries another label, which is an error. ``split`` is set
    only where the image has none yet.
    """
    if split is not None and split not in SPLITS:
        raise CatalogueError(f"{prepared.name}: unknown split {split!r} (use train, val or test)")
    image = session.scalar(select(Image).where(Image.sha256 == prepared.sha256))
    if image is not None and (model or sku) and image.status == "labelled":
        have_model = image.model.name if image.model else None
        have_sku = image.sku.style_code if image.sku else None
        if (model and clean_name(model, "model") != have_model) or (
            sku and clean_name(sku, "SKU") != have_sku
        ):
            raise CatalogueError(
                f"{prepared.name}: the same image (id {image.id}) is already labelled "
                f"{have_model} / {have_sku or '-'}; this one says {model} / {sku or '-'}"
            )
    # the files are written last, once the rows are in: a refused label leaves no file behind
    rel = store.relpath(prepared.sha256, prepared.ext)
    created = image is None
    if image is None:
        image = Image(
            sha256=prepared.sha256,
            path=rel,
            ext=prepared.ext,
            width=prepared.width,
            height=prepared.height,
            n_bytes=len(prepared.data),
            phash=prepared.phash,
            phash_mirror=prepared.phash_mirror,
            status="new",
        )
        session.add(image)
        session.flush()
    source_added = False
    if _find_source(session, image.id, source) is None:
        session.add(
            ImageSource(
                image_id=image.id,
                kind=source.kind,
                image_url=source.image_url,
                page_url=source.page_url,
                file_path=source.file_path,
                extra=source.extra,
                **_fit_source(source),
            )
        )
        source_added = True
    labelled = False
    if (model or sku) and image.status != "labelled":
        if model:
            get_or_create_model(session, model)
        if sku:
            get_or_create_sku(session, sku, model or "", title=source.weak_title)
        set_label(session, image.id, model, sku, user=user, how=how)
        labelled = True
    if split is not None and image.split is None:
        set_split(session, [image.id], split, user=user, how=how)
    session.flush()
    _put_files(session, store, prepared)
    return IngestResult(image.id, image.sha256, created, source_added, labelled)


NEW_FILES = "skulab_new_files"
"""``session.info`` key: image files this transaction wrote, removed again if it rolls back
(:meth:`db.catalogue.Catalogue.write`), so that no file outlives its rows."""


def _put_files(session: Session, store: ImageStore, prepared: PreparedImage) -> None:
    """Write the image file and thumbnail, after the rows (inside the transaction, so that
    a committed row always has its file); a file this transaction creates is noted in
    ``session.info`` to be removed on rollback."""
    rel = store.relpath(prepared.sha256, prepared.ext)
    new = not store.exists(rel)
    try:
        store.put(prepared.data, prepared.sha256, prepared.ext)
        store.put_thumbnail_bytes(prepared.sha256, prepared.thumbnail)
    except BaseException:
        if new:
            store.discard(prepared.sha256, prepared.ext)
        raise
    if new:
        session.info.setdefault(NEW_FILES, []).append((prepared.sha256, prepared.ext))


def discard_new_files(session: Session, store: ImageStore) -> None:
    """Remove the image files this session's transaction wrote (call before rolling back)."""
    for sha, ext in session.info.pop(NEW_FILES, []):
        store.discard(sha, ext)


def ingest_image(
    session: Session,
    store: ImageStore,
    data: bytes,
    name: str,
    source: Source,
    **label: Any,
) -> IngestResult:
    """:func:`prepare_image` then :func:`ingest_prepared` (prefer the two steps for bulk work)."""
    return ingest_prepared(session, store, prepare_image(data, name), source, **label)


# --- models and SKUs ----------------------------------------------------------------------


def normalise_style_code(text: str | None) -> str:
    """Spaces tidied; a style code (``dd1391-100``) in Nike's upper case, anything else as
    typed: dd1391-100 is DD1391-100 wherever it is typed."""
    cleaned = " ".join((text or "").split())
    return cleaned.upper() if STYLE_CODE.match(cleaned) else cleaned


def clean_name(name: str | None, what: str) -> str:
    """A model or SKU name with its white space tidied; empty or too long is an error."""
    cleaned = normalise_style_code(name) if what == "SKU" else " ".join((name or "").split())
    if not cleaned:
        raise CatalogueError(f"empty {what} name")
    column = Sku.__table__.c.style_code if what == "SKU" else SneakerModel.__table__.c.name
    if len(cleaned) > column.type.length:
        raise CatalogueError(
            f"{what} name too long ({len(cleaned)} characters, at most {column.type.length}): "
            f"{cleaned[:60]}…"
        )
    return cleaned


FORBIDDEN_IN_NAMES = re.compile(r"[/\\:\x00-\x1f\x7f]")
"""Characters a new model or SKU name may not hold: path separators (``/``, ``\\``, ``:``)
and control characters (NUL, new lines, tabs), which no folder of an export can carry."""


def new_name(name: str | None, what: str) -> str:
    """:func:`clean_name` for a model or SKU being created or renamed: a name with a path
    character or a control character, or that is ``.`` or ``..``, is refused, so that
    every name is also a folder name (export, then import, gives back the same names)."""
    if name is not None and FORBIDDEN_IN_NAMES.search(name):
        bad = sorted({repr(c)[1:-1] for c in FORBIDDEN_IN_NAMES.findall(name)})
        raise CatalogueError(
            f"{what} name {name!r} holds {', '.join(bad)}: names may not hold /, \\, : or "
            "control characters (they are folder names in an export)"
        )
    cleaned = clean_name(name, what)
    if cleaned.strip(".") == "":
        raise CatalogueError(f"{what} name {cleaned!r} is not a name (only dots)")
    return cleaned


def find_model(session: Session, name: str) -> SneakerModel | None:
    return session.scalar(
        select(SneakerModel).where(SneakerModel.name == clean_name(name, "model"))
    )


def find_sku(session: Session, style_code: str) -> Sku | None:
    return session.scalar(select(Sku).where(Sku.style_code == clean_name(style_code, "SKU")))


def get_or_create_model(session: Session, name: str) -> SneakerModel:
    name = clean_name(name, "model")
    found = find_model(session, name)
    if found is None:
        found = SneakerModel(name=new_name(name, "model"))
        session.add(found)
        session.flush()
    return found


def get_or_create_sku(
    session: Session,
    style_code: str,
    model_name: str,
    colourway: str | None = None,
    title: str | None = None,
) -> Sku:
    """The SKU of that style code, created under ``model_name`` if new.

    An existing SKU under another model is an error: an SKU belongs to exactly one model.
    """
    code = clean_name(style_code, "SKU")
    found = find_sku(session, code)
    if found is not None:
        wanted = clean_name(model_name, "model") if model_name else None
        if wanted and found.model.name != wanted:
            raise CatalogueError(f"SKU {code} belongs to {found.model.name}, not to {wanted}")
        if colourway and not found.colourway:
            found.colourway = fit_text(colourway, Sku.__table__.c.colourway)
        return found
    model = get_or_create_model(session, model_name)
    found = Sku(
        style_code=new_name(code, "SKU"),
        model_id=model.id,
        colourway=fit_text(colourway, Sku.__table__.c.colourway),
        title=fit_text(title, Sku.__table__.c.title),
    )
    session.add(found)
    session.flush()
    return found


# --- labels -------------------------------------------------------------------------------


def snapshot(image: Image) -> dict[str, Any]:
    """An image's label, status and split, as recorded before/after in every LabelEvent
    (with who labelled it and when, so that an undo gives those back too)."""
    return {
        "status": image.status,
        "model_id": image.model_id,
        "model": image.model.name if image.model else None,
        "sku_id": image.sku_id,
        "sku": image.sku.style_code if image.sku else None,
        "split": image.split,
        "split_locked": image.split_locked,
        "labelled_by": image.labelled_by,
        "labelled_at": image.labelled_at.isoformat() if image.labelled_at else None,
    }


def _get_image(session: Session, image_id: int) -> Image:
    image = session.get(Image, image_id)
    if image is None:
        raise CatalogueError(f"no image with id {image_id}")
    return image


# --- actions: what one undo step takes back ---------------------------------------------

ACTION_KEY = "skulab_action_id"
"""``session.info`` key of the action that the session's label events belong to."""


def begin_action(session: Session) -> str:
    """Start a new action: the label events recorded from now on in this session belong to
    it, and :func:`undo_action` takes them back together (one button press, one step).

    Without a call, every write session is one action of its own."""
    action_id = uuid.uuid4().hex
    session.info[ACTION_KEY] = action_id
    return action_id


def current_action(session: Session) -> str:
    """The session's action (started on first use)."""
    return session.info.get(ACTION_KEY) or begin_action(session)


@event.listens_for(Session, "before_flush")
def _stamp_action(session: Session, _context: Any, _instances: Any) -> None:
    """Every new label event, whoever writes it (ops, taxonomy, the app), gets the action id."""
    for obj in session.new:
        if isinstance(obj, LabelEvent) and obj.action_id is None:
            obj.action_id = current_action(session)


def _record(
    session: Session,
    image: Image,
    before: dict[str, Any],
    user: str,
    action: str,
    how: str,
    *,
    force: bool = False,
    undo_of: str | None = None,
) -> bool:
    """Record a change of ``image`` (since ``before``); nothing when nothing changed,
    unless ``force``. Returns whether an event was recorded."""
    session.flush()
    session.refresh(image, ["model", "sku"])
    after = snapshot(image)
    if after == before and not force:
        return False
    session.add(
        LabelEvent(
            image_id=image.id,
            user=user,
            action=action,
            how=how,
            before=before,
            after=after,
            at=utcnow(),
            action_id=current_action(session),
            undo_of=undo_of,
        )
    )
    return True


def resolve_label(
    session: Session, model: str | None, sku: str | None
) -> tuple[SneakerModel | None, Sku | None]:
    """The model and SKU rows that a label names; an unknown or mismatched one is an error."""
    sku_row = None
    model_row = None
    if sku:
        sku_row = find_sku(session, sku)
        if sku_row is None:
            raise CatalogueError(f"unknown SKU {sku}: create it in the catalogue first")
    if model:
        model_row = find_model(session, model)
        if model_row is None:
            raise CatalogueError(f"unknown model {model}: create it in the catalogue first")
    if sku_row is not None:
        if model_row is not None and sku_row.model_id != model_row.id:
            raise CatalogueError(
                f"SKU {sku_row.style_code} belongs to {sku_row.model.name}, not to {model_row.name}"
            )
        model_row = sku_row.model
    if model_row is None:
        raise CatalogueError("a label needs a model or an SKU")
    return model_row, sku_row


def set_label(
    session: Session,
    image_id: int,
    model: str | None,
    sku: str | None,
    user: str,
    how: str = "manual",
) -> Image:
    """Label an image with a model and optionally an SKU (which must belong to that model).

    Giving an image the label it already has changes nothing and records nothing (not even
    who labelled it): see :func:`label`."""
    image = _get_image(session, image_id)
    label(session, image, model, sku, user, how)
    return image


def label(
    session: Session,
    image: Image | int,
    model: str | None,
    sku: str | None,
    user: str,
    how: str = "manual",
) -> bool:
    """:func:`set_label`, returning whether the label changed (and an event was recorded)."""
    if isinstance(image, int):
        image = _get_image(session, image)
    model_row, sku_row = resolve_label(session, model, sku)
    model_id = model_row.id if model_row else None
    sku_id = sku_row.id if sku_row else None
    if image.status == "labelled" and image.model_id == model_id and image.sku_id == sku_id:
        return False
    before = snapshot(image)
    image.model_id = model_id
    image.sku_id = sku_id
    image.status = "labelled"
    image.labelled_by = user
    image.labelled_at = utcnow()
    return _record(session, image, before, user, "label", how)


def bulk_label(
    session: Session,
    image_ids: Iterable[int],
    model: str | None,
    sku: str | None,
    user: str,
    how: str = "bulk",
) -> int:
    """Label many images at once; all or nothing. Returns how many changed (an image that
    already has this label is left alone)."""
    resolve_label(session, model, sku)
    count = 0
    for image_id in image_ids:
        count += label(session, image_id, model, sku, user, how)
    return count


def clear_label(session: Session, image_id: int, user: str, how: str = "manual") -> Image:
    image = _get_image(session, image_id)
    before = snapshot(image)
    image.model_id = None
    image.sku_id = None
    image.status = "new"
    _record(session, image, before, user, "clear", how)
    return image


def reject(session: Session, image_id: int, user: str, how: str = "manual") -> Image:
    """Mark an image as junk: it leaves every queue and all training."""
    image = _get_image(session, image_id)
    before = snapshot(image)
    image.model_id = None
    image.sku_id = None
    image.status = "rejected"
    _record(session, image, before, user, "reject", how)
    return image


def unreject(session: Session, image_id: int, user: str, how: str = "manual") -> Image:
    image = _get_image(session, image_id)
    if image.status != "rejected":
        return image
    before = snapshot(image)
    image.status = "new"
    _record(session, image, before, user, "unreject", how)
    return image


def set_split(
    session: Session,
    image_ids: Iterable[int],
    split: str | None,
    user: str,
    *,
    lock: bool | None = None,
    how: str = "manual",
) -> int:
    """Put images into a split; images whose split is locked keep theirs. Returns how many moved."""
    if split is not None and split not in SPLITS:
        raise CatalogueError(f"unknown split {split!r} (use train, val or test)")
    moved = 0
    for image_id in image_ids:
        image = _get_image(session, image_id)
        if image.split_locked and image.split != split:
            continue
        before = snapshot(image)
        image.split = split
        if lock is not None:
            image.split_locked = lock and split is not None
        _record(session, image, before, user, "split", how)
        moved += before != snapshot(image)
    return moved


LABEL_FIELDS = ("status", "model_id", "sku_id")
SPLIT_FIELDS = ("split", "split_locked")


def _changed_fields(ev: LabelEvent) -> list[str]:
    return [
        k
        for k in (*LABEL_FIELDS, *SPLIT_FIELDS)
        if k in ev.before and ev.before.get(k) != ev.after.get(k)
    ]


def _revert(session: Session, ev: LabelEvent, user: str) -> Image:
    """Take back one change: only the fields it changed, and only where the image still
    holds what the change left (a later change by anyone is never overwritten). A locked
    split is not moved unless this change is what locked it. Raises CatalogueError with
    the reason where the change cannot be taken back; nothing is written then."""
    image = _get_image(session, ev.image_id)
    fields = _changed_fields(ev)
    if image.split_locked and "split" in fields and "split_locked" not in fields:
        raise CatalogueError(f"image {image.id}: its {image.split} split is locked")
    now = snapshot(image)
    since = [k.removesuffix("_id") for k in fields if now[k] != ev.after.get(k)]
    if since:
        raise CatalogueError(
            f"image {image.id} was changed since ({', '.join(since)}): left as it is"
        )
    target = ev.before
    for key, ref in (("model_id", SneakerModel), ("sku_id", Sku)):
        if key in fields and target[key] is not None and session.get(ref, target[key]) is None:
            raise CatalogueError(
                f"cannot undo change {ev.id} of image {image.id}: its "
                f"{key.removesuffix('_id')} {target[key.removesuffix('_id')]} no longer exists"
            )
    for key in fields:
        setattr(image, key, target[key])
    if any(k in fields for k in LABEL_FIELDS):
        if "labelled_by" in target:
            image.labelled_by = target["labelled_by"]
            at = target.get("labelled_at")
            image.labelled_at = datetime.fromisoformat(at) if at else None
        elif target["status"] != "labelled":
            image.labelled_by = None
            image.labelled_at = None
    ev.undone = True
    _record(session, image, now, user, "undo", "undo", force=True, undo_of=ev.action_id)
    return image


def undo(session: Session, image_id: int, user: str) -> LabelEvent | None:
    """Undo the newest change to an image that is not undone yet; returns that event.

    Only what that change did is taken back (see :func:`undo_action` for a whole action)."""
    ev = session.scalar(
        select(LabelEvent)
        .where(
            LabelEvent.image_id == image_id,
            ~LabelEvent.undone,
            LabelEvent.action != "undo",
        )
        .order_by(LabelEvent.id.desc())
        .limit(1)
    )
    if ev is None:
        return None
    begin_action(session)
    _revert(session, ev, user)
    return ev


@dataclass
class UndoResult:
    """What :func:`undo_action` did: the images it gave back their state, and why it left
    others as they are."""

    action_id: str | None
    undo_id: str | None = None
    reverted: list[int] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    summary: str = ""

    @property
    def n(self) -> int:
        return len(self.reverted)


def undo_action(session: Session, action_id: str, user: str) -> UndoResult:
    """Take back every change of one action, and nothing else: not an older change, not a
    later one (an image changed since is left as it is, said in ``kept``), not a locked
    split. The undo is an action of its own in the history (``undo`` events, ``undo_of``
    naming the action), and the action's events are marked undone."""
    events = list(
        session.scalars(
            select(LabelEvent)
            .where(
                LabelEvent.action_id == action_id,
                ~LabelEvent.undone,
                LabelEvent.action != "undo",
            )
            .order_by(LabelEvent.id.desc())
        )
    )
    result = UndoResult(action_id, summary=describe(events))
    if not events:
        return result
    result.undo_id = begin_action(session)
    seen: set[int] = set()
    for ev in events:
        try:
            with session.begin_nested():
                _revert(session, ev, user)
        except CatalogueError as exc:
            result.kept.append(str(exc))
            continue
        if ev.image_id not in seen:
            seen.add(ev.image_id)
            result.reverted.append(ev.image_id)
    return result


_DONE = {
    ("label", "suggestion"): ("accepted", "suggestion"),
    ("confirm", None): ("confirmed", "label"),
    ("reject", None): ("rejected", "image"),
    ("unreject", None): ("put back", "image"),
    ("clear", None): ("cleared", "label"),
    ("label", None): ("labelled", "image"),
    ("split", None): ("moved", "image"),
}


def describe(events: Sequence[LabelEvent]) -> str:
    """An action in words, from its events: 'accepted 60 suggestions', 'rejected 3 images'."""
    if not events:
        return "nothing"
    first = events[0]
    n = len({e.image_id for e in events})
    verb, noun = _DONE.get((first.action, first.how)) or _DONE.get(
        (first.action, None), (first.action, "image")
    )
    text = f"{verb} {n} {noun}{'s' if n != 1 else ''}"
    if first.action == "split":
        text += f" to {first.after.get('split') or 'no split'}"
    elif first.action == "label" and first.how != "suggestion":
        label = " / ".join(p for p in (first.after.get("model"), first.after.get("sku")) if p)
        text += f" {label}" if label else ""
    return text


def last_action_by(session: Session, user: str) -> tuple[str, str] | None:
    """The newest action of a user that is not undone: (action id, what it did in words)."""
    ev = last_event_by(session, user)
    if ev is None or ev.action_id is None:
        return None
    events = list(
        session.scalars(
            select(LabelEvent).where(
                LabelEvent.action_id == ev.action_id,
                ~LabelEvent.undone,
                LabelEvent.action != "undo",
            )
        )
    )
    return ev.action_id, describe(events)


def last_event_by(session: Session, user: str) -> LabelEvent | None:
    """The newest change a user made that is not undone (for an app-wide Undo button)."""
    return session.scalar(
        select(LabelEvent)
        .where(LabelEvent.user == user, ~LabelEvent.undone, LabelEvent.action != "undo")
        .order_by(LabelEvent.id.desc())
        .limit(1)
    )


# --- queues -------------------------------------------------------------------------------


@dataclass
class QueueFilter:
    """What a labelling queue shows. Every field narrows it; ``None`` means any."""

    status: str | None = "new"
    model: str | None = None
    sku: str | None = None
    split: str | None = None  # train | val | test | "none" (unassigned)
    source_kind: str | None = None
    spider: str | None = None
    weak_model: str | None = None
    weak_sku: str | None = None
    dup_group: int | None = None
    suggested_model: str | None = None
    suggested_sku: str | None = None
    suggested_unknown: bool | None = None
    """True: only images whose suggestion is 'unknown model' (likely junk); False: only those
    with a suggested model, then the images without a suggestion yet."""
    sku_missing: bool = False  # a model label and no SKU
    run_id: int | None = None  # predictions of this run (suggestions)
    order: str = "id"  # id | newest | uncertain | confident | dup_group | model
    user: str | None = None  # leave out images that other labellers hold
    image_ids: Sequence[int] | None = None


@dataclass
class Page:
    items: list[Image]
    total: int | None
    page: int
    page_size: int
    predictions: dict[int, Prediction] = field(default_factory=dict)


def _queue_statement(f: QueueFilter, unsuggested: bool = False) -> Any:
    """The queue's images in its order; ``unsuggested``: those of a margin order that have no
    suggestion of the run (see :func:`_page_of`)."""
    stmt = select(Image)
    conds: list[Any] = []
    if f.status:
        conds.append(Image.status == f.status)
    if f.model:
        conds.append(
            Image.model_id
            == select(SneakerModel.id).where(SneakerModel.name == f.model).scalar_subquery()
        )
    if f.sku:
        conds.append(
            Image.sku_id == select(Sku.id).where(Sku.style_code == f.sku).scalar_subquery()
        )
    if f.split == "none":
        conds.append(Image.split.is_(None))
    elif f.split:
        conds.append(Image.split == f.split)
    if f.dup_group is not None:
        conds.append(Image.dup_group == f.dup_group)
    if f.sku_missing:
        conds.extend((Image.model_id.is_not(None), Image.sku_id.is_(None)))
    if f.image_ids is not None:
        conds.append(Image.id.in_(list(f.image_ids)))
    src_conds = []
    if f.source_kind:
        src_conds.append(ImageSource.kind == f.source_kind)
    if f.spider:
        src_conds.append(ImageSource.spider == f.spider)
    if f.weak_model:
        src_conds.append(ImageSource.weak_model == f.weak_model)
    if f.weak_sku:
        src_conds.append(ImageSource.weak_sku == f.weak_sku)
    if src_conds:
        conds.append(exists().where(ImageSource.image_id == Image.id, *src_conds))
    if f.user:
        conds.append(
            ~exists().where(
                LabelClaim.image_id == Image.id,
                LabelClaim.user != f.user,
                LabelClaim.expires_at > utcnow(),
            )
        )
    by_margin = f.run_id is not None and f.order in ("uncertain", "confident")
    narrowed = f.suggested_model or f.suggested_sku or f.suggested_unknown is not None
    if f.run_id is not None and (narrowed or by_margin):
        on = and_(Prediction.image_id == Image.id, Prediction.run_id == f.run_id)
        if unsuggested:
            conds.append(~exists().where(on))
        else:
            stmt = stmt.join(Prediction, on)
            if f.suggested_model:
                conds.append(Prediction.model_name == f.suggested_model)
            if f.suggested_sku:
                conds.append(Prediction.sku == f.suggested_sku)
            if f.suggested_unknown is True:
                conds.append(Prediction.model_name.is_(None))
            elif f.suggested_unknown is False:
                conds.append(Prediction.model_name.is_not(None))
    stmt = stmt.where(*conds)
    if by_margin and not unsuggested:
        margin = Prediction.margin.asc() if f.order == "uncertain" else Prediction.margin.desc()
        stmt = stmt.order_by(margin, Image.id)
    elif f.order == "newest":
        stmt = stmt.order_by(Image.id.desc())
    elif f.order == "dup_group":
        stmt = stmt.order_by(Image.dup_group.is_(None), Image.dup_group, Image.id)
    elif f.order == "model":
        stmt = stmt.order_by(Image.model_id, Image.id)
    else:
        stmt = stmt.order_by(Image.id)
    return stmt


def _by_margin(f: QueueFilter) -> bool:
    """An order by suggestion margin, which images without a suggestion follow."""
    return (
        f.run_id is not None
        and f.order in ("uncertain", "confident")
        and not (f.suggested_model or f.suggested_sku or f.suggested_unknown)
    )


def _page_of(session: Session, f: QueueFilter, offset: int, limit: int) -> list[Image]:
    """``limit`` images of the queue from ``offset`` on.

    Ordered by margin, the queue is the images with a suggestion of the run (read along the
    ``(run_id, margin)`` index, however large the catalogue), then those without one (come
    in since the last refresh), oldest first: two reads, not one sort of every image.
    """
    stmt = _queue_statement(f)
    items = list(session.scalars(stmt.offset(offset).limit(limit)))
    if len(items) == limit or not _by_margin(f):
        return items
    if items or offset == 0:
        ranked = offset + len(items)
    else:  # past the suggested images: how many there are
        ranked = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rest = _queue_statement(f, unsuggested=True)
    return items + list(
        session.scalars(rest.offset(max(0, offset - ranked)).limit(limit - len(items)))
    )


def queue(
    session: Session,
    f: QueueFilter | None = None,
    page: int = 0,
    page_size: int = 48,
    *,
    with_total: bool = True,
) -> Page:
    """One page of a labelling queue, with the suggestions of ``f.run_id`` for its images."""
    f = f or QueueFilter()
    items = _page_of(session, f, page * page_size, page_size)
    total = None
    if with_total:
        parts = [_queue_statement(f)]
        if _by_margin(f):  # every image, suggested or not
            parts.append(_queue_statement(f, unsuggested=True))
        total = sum(
            session.scalar(select(func.count()).select_from(p.order_by(None).subquery())) or 0
            for p in parts
        )
    preds: dict[int, Prediction] = {}
    if f.run_id is not None and items:
        preds = {
            p.image_id: p
            for p in session.scalars(
                select(Prediction).where(
                    Prediction.run_id == f.run_id,
                    Prediction.image_id.in_([i.id for i in items]),
                )
            )
        }
    return Page(items, total, page, page_size, preds)


def claim(session: Session, image_ids: Iterable[int], user: str, minutes: float = 10) -> None:
    """Hold images for one labeller so that queues of others leave them out for a while."""
    expires = utcnow() + timedelta(minutes=minutes)
    now = utcnow()
    ids = list(image_ids)
    for image_id in ids:
        row = session.get(LabelClaim, image_id)
        if row is None:
            session.add(LabelClaim(image_id=image_id, user=user, expires_at=expires))
        elif row.user == user or row.expires_at <= now:
            row.user = user
            row.expires_at = expires
    session.flush()


def release_claims(session: Session, user: str) -> None:
    for row in session.scalars(select(LabelClaim).where(LabelClaim.user == user)):
        session.delete(row)


# --- counts -------------------------------------------------------------------------------


def stats(session: Session) -> dict[str, Any]:
    """Images by status, by model, by SKU and by split; labelled images only for the last three."""
    by_status = dict(
        session.execute(select(Image.status, func.count()).group_by(Image.status)).all()
    )
    labelled = Image.status == "labelled"
    by_model = dict(
        session.execute(
            select(SneakerModel.name, func.count(Image.id))
            .join(Image, Image.model_id == SneakerModel.id)
            .where(labelled)
            .group_by(SneakerModel.name)
            .order_by(SneakerModel.name)
        ).all()
    )
    by_sku = [
        {"model": m, "sku": s, "colourway": c, "images": n}
        for m, s, c, n in session.execute(
            select(SneakerModel.name, Sku.style_code, Sku.colourway, func.count(Image.id))
            .join(Sku, Sku.model_id == SneakerModel.id)
            .join(Image, Image.sku_id == Sku.id)
            .where(labelled)
            .group_by(SneakerModel.name, Sku.style_code, Sku.colourway)
            .order_by(SneakerModel.name, Sku.style_code)
        ).all()
    ]
    per_split: dict[str | None, int] = {
        split: n
        for split, n in session.execute(
            select(Image.split, func.count()).where(labelled).group_by(Image.split)
        )
    }
    by_split = {(k or "unassigned"): per_split[k] for k in (*SPLITS, None) if per_split.get(k)}
    with_sku = session.scalar(
        select(func.count()).select_from(Image).where(labelled, Image.sku_id.is_not(None))
    )
    return {
        "images": sum(by_status.values()),
        "by_status": {s: by_status.get(s, 0) for s in ("new", "labelled", "rejected")},
        "labelled_with_sku": int(with_sku or 0),
        "models": session.scalar(select(func.count()).select_from(SneakerModel)),
        "skus": session.scalar(select(func.count()).select_from(Sku)),
        "by_model": by_model,
        "by_sku": by_sku,
        "by_split": by_split,
        "sources": session.scalar(select(func.count()).select_from(ImageSource)),
    }
