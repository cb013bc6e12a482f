"""Importing labelled folder trees into the catalogue, and exporting labelled images.

Layouts read by :func:`import_tree` (file names are free; image types jpg, jpeg, png, webp, gif)::

    DIR/<model>/<SKU>/*.jpg           model and SKU labels
    DIR/<model>/*.jpg                 model label only
    DIR/*.jpg                         no label (imported for labelling)
    DIR/train|val|test/<same as above>  the folder also sets the split
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from db import ops
from db.catalogue import Catalogue
from db.images import IMAGE_SUFFIXES, MIN_SIDE, ImageError
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
    hidden: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
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
        if self.hidden:
            lines.append(
                f"{_n(len(self.hidden), 'hidden file')} skipped (names starting with a dot): "
                + _some(self.hidden)
            )
        if self.links:
            lines.append(
                f"{_n(len(self.links), 'symbolic link')} skipped (--follow-links imports what "
                "they point to): " + _some(self.links)
            )
        lines.extend(f"  skipped {name}: {why}" for name, why in self.errors)
        return "\n".join(lines)


def _some(names: list[str]) -> str:
    more = f" and {len(names) - SHOW_IGNORED} more" if len(names) > SHOW_IGNORED else ""
    return ", ".join(names[:SHOW_IGNORED]) + more


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def shown(text: str) -> str:
    """A file or folder name as it can be printed and stored: bytes that are not UTF-8
    (which Python keeps as lone surrogates) written as ``\\xff``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass
class Scan:
    """What :func:`scan_tree` found below a folder."""

    items: list[ImportItem]
    ignored: list[str]
    has_split_dirs: bool
    hidden: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    bad_names: list[tuple[str, str]] = field(default_factory=list)
    """(file, reason) for files whose folder names cannot be labels"""


def _walk(base: Path, follow_links: bool) -> Iterator[tuple[Path, str]]:
    """(path, kind) below ``base`` in name order; kind is ``file``, ``link`` (a symbolic
    link, to a file or a folder, not followed) or ``hidden`` (a name starting with a dot:
    a hidden folder is named once and not entered).

    With ``follow_links`` links are followed, each real folder once, so a loop ends.
    """
    seen: set[str] = set()
    for folder, dirs, files in os.walk(base, followlinks=follow_links):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        here = Path(folder)
        keep = []
        for d in sorted(dirs):
            if d.startswith("."):
                yield here / d, "hidden"
            elif not follow_links and (here / d).is_symlink():
                yield here / d, "link"
            else:
                keep.append(d)
        dirs[:] = keep
        for name in sorted(files):
            path = here / name
            if name.startswith("."):
                yield path, "hidden"
            elif not follow_links and path.is_symlink():
                yield path, "link"
            else:
                yield path, "file"


MANIFEST = "manifest.csv"
UNASSIGNED = "unassigned"
"""The export's folder for labelled images without a split (read back as no split)."""


def read_manifest(root: Path) -> dict[str, tuple[str | None, str | None]]:
    """``path -> (model, SKU)`` from an export's ``manifest.csv`` ({} where there is none or
    it is not one), so that names no folder can carry come back as they were."""
    try:
        with (root / MANIFEST).open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    if not rows or not {"path", "model", "sku"} <= set(rows[0]):
        return {}
    return {r["path"]: (r["model"] or None, r["sku"] or None) for r in rows if r.get("path")}


def scan_tree(root: Path, follow_links: bool = False) -> Scan:
    """The image files below ``root`` with the labels their folders give.

    Hidden files and folders (a name starting with a dot) and symbolic links are listed
    and left out; ``follow_links`` imports what links point to.
    """
    if not root.is_dir():
        raise ops.CatalogueError(f"{shown(str(root))}: not a folder")
    manifest = read_manifest(root)
    split_names = (*SPLITS, UNASSIGNED) if manifest else SPLITS
    top = [
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (follow_links or not p.is_symlink())
    ]
    split_dirs = [p for p in top if p.name.lower() in split_names]
    if split_dirs and len(split_dirs) != len(top):
        others = sorted(shown(p.name) for p in top if p not in split_dirs)
        raise ops.CatalogueError(
            f"{shown(str(root))}: mixes split folders "
            f"({', '.join(sorted(p.name for p in split_dirs))}) "
            f"with other folders ({', '.join(others)}); put every model folder below "
            "train/, val/ or test/, or use no split folders at all"
        )
    bases = [(p, p.name.lower()) for p in split_dirs] if split_dirs else [(root, None)]
    bases = [(p, None if split == UNASSIGNED else split) for p, split in bases]
    scan = Scan([], [], bool(split_dirs))
    for base, split in bases:
        for path, kind in _walk(base, follow_links):
            rel = shown(str(path.relative_to(root)))
            if kind == "hidden":
                scan.hidden.append(rel + ("/" if path.is_dir() else ""))
                continue
            if kind == "link":
                scan.links.append(rel)
                continue
            if not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                if not (manifest and path == root / MANIFEST):
                    scan.ignored.append(rel)
                continue
            if rel in manifest:  # an export: the manifest has the true names
                model, sku = manifest[rel]
                scan.items.append(ImportItem(path, rel, model, sku, split))
                continue
            parts = path.relative_to(base).parts[:-1]
            bad = next((shown(part) for part in parts[:2] if shown(part) != part), None)
            if bad is not None:
                scan.bad_names.append(
                    (rel, f"the folder name {bad} is not valid UTF-8, so it cannot be a label")
                )
                continue
            # names as written; db.ops.clean_name tidies them (a style code in upper case)
            model = " ".join(parts[0].split()) if parts else None
            sku = " ".join(parts[1].split()) if len(parts) > 1 else None
            scan.items.append(ImportItem(path, rel, model, sku, split))
    return scan


def _prepare(item: ImportItem, min_side: int = MIN_SIDE) -> ops.PreparedImage | str:
    try:
        prepared = ops.prepare_image(item.path.read_bytes(), item.rel)
    except ImageError as exc:
        return str(exc)
    except OSError as exc:
        return f"{item.rel}: cannot read ({exc.strerror or exc})"
    except Exception as exc:  # one file never sinks a batch: say what it was and go on
        return f"{item.rel}: cannot be read as an image ({type(exc).__name__}: {exc})"
    if min(prepared.width, prepared.height) < min_side:
        return (
            f"{item.rel}: too small ({prepared.width}x{prepared.height} px; "
            f"at least {min_side} px a side)"
        )
    return prepared


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
    follow_links: bool = False,
    min_side: int = MIN_SIDE,
) -> ImportReport:
    """Import a labelled folder tree (see the module docstring).

    ``split``: ``train``/``val``/``test`` puts every imported image there; ``auto`` (used
    where the tree has no split folders) assigns labelled images 70/15/15, stratified and
    deterministic; ``None`` leaves splits alone. A file that cannot be read or decoded, is
    smaller than ``min_side`` pixels a side, or whose label conflicts with the catalogue,
    is reported and skipped; the rest is kept. Hidden files and symbolic links are listed
    and skipped (``follow_links`` imports what links point to). Image files are written
    before their rows are committed and removed again when the rows are rolled back.
    """
    root = Path(root).expanduser()
    if split not in (None, "auto", *SPLITS):
        raise ops.CatalogueError(f"unknown split {split!r} (use train, val, test or auto)")
    scan = scan_tree(root, follow_links=follow_links)
    items, has_split_dirs = scan.items, scan.has_split_dirs
    report = ImportReport(
        files=len(items) + len(scan.bad_names),
        ignored=scan.ignored,
        hidden=scan.hidden,
        links=scan.links,
        errors=list(scan.bad_names),
    )
    done = 0
    if progress:
        progress(0, len(items))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for chunk in _chunks(items, BATCH):
            prepared = list(pool.map(lambda item: _prepare(item, min_side), chunk))
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
                                ops.Source(
                                    kind="import", spider=source, file_path=shown(str(item.path))
                                ),
                                model=item.model,
                                sku=item.sku,
                                split=fixed_split,
                                user=user,
                                how="import",
                            )
                    except ops.CatalogueError as exc:
                        report.errors.append((item.rel, str(exc).removeprefix(f"{item.rel}: ")))
                        continue
                    except Exception as exc:  # one bad file never sinks the batch
                        report.errors.append(
                            (item.rel, f"could not be stored ({type(exc).__name__}: {exc})")
                        )
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


FOLDER_BYTES = 120
"""Export folder names are at most this many bytes (UTF-8), far below a file system's 255."""
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')
_TAGGED = re.compile(r"~[0-9a-f]{8}$")


def folder_name(name: str) -> str:
    """The export folder of a model or SKU name: the name itself where it can be one;
    otherwise (path or control characters, dots at an end, too long, or a name that looks
    like such a folder) the name made safe and cut short, followed by ``~`` and 8 hex
    digits of its SHA-256, so that two names never share a folder. ``manifest.csv`` keeps
    the true names, and :func:`import_tree` reads them from it."""
    safe = _UNSAFE.sub("-", name).strip(" .")
    if safe == name and safe and len(name.encode()) <= FOLDER_BYTES and not _TAGGED.search(name):
        return name
    tag = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    cut = safe.encode()[: FOLDER_BYTES - 9].decode("utf-8", "ignore").rstrip(" .")
    return f"{cut or '_'}~{tag}"


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
                / (image.split or UNASSIGNED)
                / folder_name(image.model.name if image.model else "_")
            )
            if image.sku is not None:
                folder = folder / folder_name(image.sku.style_code)
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
