"""What one image card of the labelling grid says, and how cards are laid out (no Streamlit)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

PAGE_SIZES = (24, 36, 48, 60)
DEFAULT_PAGE_SIZE = 36
COLUMNS = 6


@dataclass(frozen=True)
class Suggestion:
    """The active run's prediction for an image."""

    model: str | None
    model_conf: float | None
    sku: str | None
    sku_conf: float | None
    model_guess: str | None = None
    """Where the model is unknown: the best guess, whose confidence ``model_conf`` is."""
    sku_guess: str | None = None
    """Where the SKU is unknown: the best guess, whose confidence ``sku_conf`` is."""
    for_sku: bool = False
    """A guess at the SKU of an image labelled with its model only: accepting it gives the
    image this SKU (the Model labelled, SKU missing queue)."""

    @property
    def usable(self) -> bool:
        """Whether accepting it would label anything (the model was not 'unknown')."""
        return bool(self.model)

    @property
    def gives_sku(self) -> bool:
        return bool(self.sku)


@dataclass(frozen=True)
class Card:
    """One image as the grid shows it. ``sha256`` and ``path`` let the store find its files."""

    image_id: int
    sha256: str
    path: str
    status: str
    model: str | None
    sku: str | None
    split: str | None
    dup_group: int | None
    suggestion: Suggestion | None
    weak: tuple[str, ...]
    note: str | None = None
    """Why the card is shown, where a list says (e.g. a label-issue ranking's doubt)."""

    @property
    def label_text(self) -> str:
        return label_text(self.model, self.sku, self.status)

    @property
    def suggestion_text(self) -> str:
        return suggestion_text(self.suggestion)


def percent(conf: float | None) -> str:
    return "" if conf is None else f"{round(100 * conf):d}%"


def label_text(model: str | None, sku: str | None, status: str) -> str:
    """'Nike Dunk Low / DD1391-100', 'rejected', or 'unlabelled'."""
    if status == "rejected":
        return "rejected"
    if not model:
        return "unlabelled"
    return f"{model} / {sku}" if sku else model


def _guess(name: str | None, conf: float | None) -> str:
    return f" (best guess {name} {percent(conf)})".replace(" )", ")") if name else ""


def suggestion_text(s: Suggestion | None) -> str:
    """'Nike Dunk Low 92% · DD1391-100 81%'. An 'unknown' carries no confidence of its own:
    the best guess is named beside it with its confidence, as the API answers
    ('unknown model (best guess Nike Dunk Low 31%)', 'Nike Dunk Low 92% · SKU unknown (best
    guess DD1391-100 40%)')."""
    if s is None:
        return "no suggestion"
    if s.for_sku:
        return f"SKU {s.sku} {percent(s.sku_conf)}".rstrip() + " (best guess)"
    if not s.model:
        return "unknown model" + _guess(s.model_guess, s.model_conf)
    text = f"{s.model} {percent(s.model_conf)}".strip()
    if s.sku:
        text += f" · {s.sku} {percent(s.sku_conf)}".rstrip()
    else:
        text += " · SKU unknown" + _guess(s.sku_guess, s.sku_conf)
    return text


def weak_text(weak: Sequence[str], limit: int = 2) -> str:
    """The weak labels an image's pages claim, a few shown, the rest counted."""
    if not weak:
        return "no weak label"
    shown = ", ".join(weak[:limit])
    return shown if len(weak) <= limit else f"{shown} (+{len(weak) - limit})"


def weak_label(model: str | None, sku: str | None) -> str | None:
    parts = [p for p in (model, sku) if p]
    return " / ".join(parts) if parts else None


def rows(items: Sequence[T], columns: int = COLUMNS) -> list[Sequence[T]]:
    """Items cut into rows of ``columns`` (the last row may be shorter)."""
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    return [items[i : i + columns] for i in range(0, len(items), columns)]


def page_count(total: int | None, page_size: int) -> int | None:
    if total is None:
        return None
    return max(1, -(-total // page_size))


def page_caption(total: int | None, page: int, page_size: int, shown: int) -> str:
    """'Images 37–72 of 1,204 · page 2 of 34'."""
    if shown == 0:
        return "No images in this queue." if page == 0 else "No images on this page."
    first = page * page_size + 1
    last = first + shown - 1
    if total is None:
        return f"Images {first:,}–{last:,} · page {page + 1}"
    return f"Images {first:,}–{last:,} of {total:,} · page {page + 1} of {page_count(total, page_size)}"


def ticked(keys: Iterable[tuple[int, bool]]) -> list[int]:
    """The image ids whose box is ticked, in grid order."""
    return [image_id for image_id, on in keys if on]


def acceptable(cards: Sequence[Card], ticked_ids: Iterable[int]) -> list[Card]:
    """The ticked cards whose suggestion can be accepted."""
    wanted = set(ticked_ids)
    return [c for c in cards if c.image_id in wanted and c.suggestion and c.suggestion.usable]
