"""Importing labelled folder trees into the catalogue, and exporting labelled images.

Layouts read by :func:`import_tree` (file names are free; image types jpg, jpeg, png, webp, gif)::

    DIR/<model>/<SKU>/*.jpg           model and SKU labels
    DIR/<model>/*.jpg                 model label only
    DIR/*.jpg                         no label (imported for labelling)
    DIR/train|val|test/<same as above>  the folder also sets the split
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from db import ops
from db.catalogue import Catalogue
from db.images import IMAGE_SUFFIXES, ImageError
from db.models import SPLITS, Image

Progress = Callable[[int, int], None]
BATCH = 100
SHOW_IGNORED = 5


@dataclass
class ImportItem:
    path: Path
    rel: str
    model: str | None
    sku: str | None
    split: str | None


@dataclass
class ImportReport:
    """What an import did; ``errors`` holds (file, reason) for every file it skipped."""

    files: int = 0
    created: int = 0
    already_known: int = 0
    labelled: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [
            f"{_n(self.files, 'image file')}: {self.created} new images, "
            f"{self.already_known} already in the catalogue, {self.labelled} labelled now, "
            f"{len(self.errors)} skipped"
        ]
        if any(self.splits.values()):
            lines.append(
                "splits assigned: " + ", ".join(f"{k} {v}" for k, v in self.splits.items())
            )
        if self.ignored:
            shown = ", ".join(self.ignored[:SHOW_IGNORED])
            more = (
                f" and {len(self.ignored) - SHOW_IGNORED} more"
                if len(self.ignored) > SHOW_IGNORED
                else ""
            )
            lines.append(
                f"{_n(len(self.ignored), 'file')} ignored (not jpg, jpeg, png, webp, gif or avif): "
                f"{shown}{more}"
            )
        lines.extend(f"  skipped {name}: {why}" for name, why in self.errors)
        return "\n".join(lines)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def scan_tree(root: Path) -> tuple[list[ImportItem], list[str], bool]:
    """The image files below ``root`` with the labels their folders give.

    Returns the items, the ignored non-image files, and whether split folders were found.
    """
    if not root.is_dir():
        raise ops.CatalogueError(f"{root}: not a folder")
    top = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    split_dirs = [p for p in top if p.name.lower() in SPLITS]
    if split_dirs and len(split_dirs) != len(top):
        others = sorted(p.name for p in top if p not in split_dirs)
        raise ops.CatalogueError(
            f"{root}: mixes split folders ({', '.join(sorted(p.name for p in split_dirs))}) "
            f"with other folders ({', '.join(others)}); put every model folder below "
            "train/, val/ or test/, or use no split folders at all"
        )
    bases = [(p, p.name.lower()) for p in split_dirs] if split_dirs else [(root, None)]
    items: list[ImportItem] = []
    ignored: list[str] = []
    for base, split in bases:
        for path in sorted(base.rglob("*")):
            if not path.is_file() or _is_hidden(path, root):
                continue
            rel = str(path.relative_to(root))
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                ignored.append(rel)
                continue
            parts = path.relative_to(base).parts[:-1]
            # names as written; db.ops.clean_name tidies them (a style code in upper case)
            model = " ".join(parts[0].split()) if parts else None
            sku = " ".join(parts[1].split()) if len(parts) > 1 else None
            items.append(ImportItem(path, rel, model, sku, split))
    return items, ignored, bool(split_dirs)


def _prepare(item: ImportItem) -> ops.PreparedImage | str:
    try:
        return ops.prepare_image(item.path.read_bytes(), item.rel)
    except ImageError as exc:
        return str(exc)
    except OSError as exc:
        return f"{item.rel}: cannot read ({exc.strerror or exc})"


def _chunks(items: list[ImportItem], n: int) -> Iterator[list[ImportItem]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def import_tree(
    cat: Catalogue,
    root: str | Path,
    split: str | None = "auto",
    source: str | None = None,
    progress: Progress | None = None,
    user: str = "import",
) -> ImportReport:
    """Import a labelled folder tree (see the module docstring).

    ``split``: ``train``/``val``/``test`` puts every imported image there; ``auto`` (used
    where the tree has no split folders) assigns labelled images 70/15/15, stratified and
    deterministic; ``None`` leaves splits alone. A file that cannot be read or decoded, or
    whose label conflicts with the catalogue, is reported and skipped; the rest is kept.
    """
    root = Path(root).expanduser()
    if split not in (None, "auto", *SPLITS):
        raise ops.CatalogueError(f"unknown split {split!r} (use train, val, test or auto)")
    items, ignored, has_split_dirs = scan_tree(root)
    report = ImportReport(files=len(items), ignored=ignored)
    done = 0
    if progress:
        progress(0, len(items))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for chunk in _chunks(items, BATCH):
            prepared = list(pool.map(_prepare, chunk))
            with cat.write() as session:
                for item, prep in zip(chunk, prepared, strict=True):
                    if isinstance(prep, str):
                        report.errors.append((item.rel, prep.removeprefix(f"{item.rel}: ")))
                        continue
                    fixed_split = item.split or (split if split in SPLITS else None)
                    try:
                        with session.begin_nested():
                            result = ops.ingest_prepared(
                                session,
                                cat.store,
                                prep,
                                ops.Source(kind="import", spider=source, file_path=str(item.path)),
                                model=item.model,
                                sku=item.sku,
                                split=fixed_split,
                                user=user,
                                how="import",
                            )
                    except ops.CatalogueError as exc:
                        report.errors.append((item.rel, str(exc).removeprefix(f"{item.rel}: ")))
                        continue
                    report.created += result.created
                    report.already_known += not result.created
                    report.labelled += result.labelled
                    report.image_ids.append(result.image_id)
            done += len(chunk)
            if progress:
                progress(done, len(items))
    if split == "auto" and not has_split_dirs and report.image_ids:
        report.splits = _auto_splits(cat, user)
    return report


def _auto_splits(cat: Catalogue, user: str) -> dict[str, int]:
    from db.splits import assign_splits

    with cat.write() as session:
        result = assign_splits(session, user=user)
    return dict(getattr(result, "assigned", {}) or {})


def _safe(name: str) -> str:
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]', "-", name).strip(" .")
    return cleaned or "_"


def export_labelled(cat: Catalogue, out: str | Path, progress: Progress | None = None) -> int:
    """Copy the labelled images to ``out/<split>/<model>/<SKU>/`` with a ``manifest.csv``.

    Images without a split go under ``unassigned/``; images without an SKU sit directly
    in their model's folder, so the export imports back as it was. Returns the count.
    """
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    with cat.read() as session:
        images = list(
            session.scalars(
                select(Image)
                .where(Image.status == "labelled")
                .options(
                    selectinload(Image.sources), selectinload(Image.model), selectinload(Image.sku)
                )
                .order_by(Image.id)
            )
        )
        if progress:
            progress(0, len(images))
        for n, image in enumerate(images, 1):
            folder = (
                out
                / (image.split or "unassigned")
                / _safe(image.model.name if image.model else "_")
            )
            if image.sku is not None:
                folder = folder / _safe(image.sku.style_code)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{image.sha256[:16]}.{image.ext}"
            if not target.exists():
                target.write_bytes(cat.store.read_bytes(image))
            sources = []
            for src in image.sources:
                sources.extend(s for s in (src.image_url, src.page_url, src.file_path) if s)
            rows.append(
                [
                    str(target.relative_to(out)),
                    image.sha256,
                    image.model.name if image.model else "",
                    image.sku.style_code if image.sku else "",
                    image.split or "",
                    " | ".join(dict.fromkeys(sources)),
                ]
            )
            if progress and (n % 50 == 0 or n == len(images)):
                progress(n, len(images))
    with (out / "manifest.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "sha256", "model", "sku", "split", "sources"])
        writer.writerows(rows)
    return len(rows)
