"""``python -m db check [--repair]``: does the catalogue agree with itself and its files?

- rows and files: every image row has its file, of its size; every file under
  ``images/`` and ``thumbs/`` belongs to a row (a process killed between writing a file
  and committing its row leaves one behind, as does a half-written ``.tmp-`` file);
- label history and labels: an image's newest label event ends where the image is now,
  and a labelled image has a model;
- runs and bundles: a succeeded run has its bundle, at most one run is active, no run
  says "running" without a process (:mod:`db.runs`), and every folder under ``runs/``
  belongs to a run that has or is making a bundle.

``--repair`` does what is safe: removes orphan files and thumbnails, marks runs without a
process failed, removes folders of runs that do not exist and the bundle files of failed
runs (logs stay). A missing image file or a history that disagrees with its label is only
reported: no command can know the right answer. Exit status 1 while a problem remains.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from db.catalogue import Catalogue
from db.models import Image, LabelEvent, Run
from db.runs import KEEP, clear_bundle, reap_stale_runs, stale_runs

ORPHAN_AGE_S = 600.0
"""Files younger than this are left alone on a database that other writers may be using
while the check runs (PostgreSQL): they may belong to a transaction not yet committed.
On SQLite the check holds the write lock instead, so no such transaction exists."""
SHOW = 20


@dataclass
class Problem:
    kind: str
    what: str
    repairable: bool
    repaired: bool = False


@dataclass
class CheckReport:
    images: int = 0
    files: int = 0
    runs: int = 0
    problems: list[Problem] = field(default_factory=list)

    def add(self, kind: str, what: str, repairable: bool) -> Problem:
        problem = Problem(kind, what, repairable)
        self.problems.append(problem)
        return problem

    @property
    def remaining(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.remaining:
            out[p.kind] = out.get(p.kind, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "files": self.files,
            "runs": self.runs,
            "ok": not self.remaining,
            "problems": self.counts(),
            "repaired": sum(p.repaired for p in self.problems),
            "details": [asdict(p) for p in self.problems],
        }

    def summary(self) -> str:
        lines = [
            f"checked {self.images} images, {self.files} files, {self.runs} runs: "
            + (
                "everything agrees"
                if not self.remaining
                else f"{len(self.remaining)} problems "
                f"({', '.join(f'{k} {n}' for k, n in sorted(self.counts().items()))})"
            )
        ]
        repaired = [p for p in self.problems if p.repaired]
        if repaired:
            lines.append(f"repaired {len(repaired)}:")
            lines.extend(f"  {p.kind}: {p.what}" for p in repaired[:SHOW])
            if len(repaired) > SHOW:
                lines.append(f"  ... and {len(repaired) - SHOW} more")
        for p in self.remaining[:SHOW]:
            hint = " (python -m db check --repair fixes it)" if p.repairable else ""
            lines.append(f"  {p.kind}: {p.what}{hint}")
        if len(self.remaining) > SHOW:
            lines.append(f"  ... and {len(self.remaining) - SHOW} more")
        return "\n".join(lines)


def _files(folder: Path) -> Iterator[Path]:
    if not folder.is_dir():
        return
    for root, _dirs, files in os.walk(folder):
        for name in files:
            yield Path(root) / name


def _old_enough(path: Path, grace_s: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime >= grace_s
    except FileNotFoundError:
        return False


def _check_files(cat: Catalogue, report: CheckReport, repair: bool, grace_s: float) -> None:
    with cat.read() as s:
        rows = {
            sha: (path, n)
            for sha, path, n in s.execute(select(Image.sha256, Image.path, Image.n_bytes))
        }
    report.images = len(rows)
    known = {path for path, _n in rows.values()}
    for sha, (rel, n_bytes) in sorted(rows.items()):
        path = cat.data_dir / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            report.add("missing file", f"image {sha[:12]}: {rel} is missing", False)
            continue
        if n_bytes and size != n_bytes:
            report.add(
                "damaged file", f"image {sha[:12]}: {rel} has {size} bytes, not {n_bytes}", False
            )
    for path in _files(cat.store.images):
        report.files += 1
        rel = path.relative_to(cat.data_dir).as_posix()
        if rel in known or not _old_enough(path, grace_s):
            continue
        kind = "half-written file" if path.name.startswith(".tmp-") else "orphan file"
        problem = report.add(kind, f"{rel} belongs to no image", True)
        if repair:
            path.unlink(missing_ok=True)
            problem.repaired = True
    for path in _files(cat.store.thumbs):
        sha = path.stem
        if sha in rows or not _old_enough(path, grace_s):
            continue
        rel = path.relative_to(cat.data_dir).as_posix()
        problem = report.add("orphan thumbnail", f"{rel} belongs to no image", True)
        if repair:
            path.unlink(missing_ok=True)
            problem.repaired = True


def _check_history(cat: Catalogue, report: CheckReport) -> None:
    with cat.read() as s:
        newest = (
            select(LabelEvent.image_id, func.max(LabelEvent.id).label("last"))
            .group_by(LabelEvent.image_id)
            .subquery()
        )
        rows = s.execute(
            select(Image.id, Image.status, Image.model_id, Image.sku_id, LabelEvent.after)
            .join(newest, newest.c.image_id == Image.id)
            .join(LabelEvent, LabelEvent.id == newest.c.last)
        ).all()
        unlabelled = s.scalars(
            select(Image.id).where(Image.status == "labelled", Image.model_id.is_(None))
        ).all()
    for image_id, status, model_id, sku_id, after in rows:
        after = after or {}
        now = {"status": status, "model_id": model_id, "sku_id": sku_id}
        then = {k: after.get(k) for k in now}
        if then != now:
            report.add(
                "history disagrees",
                f"image {image_id} is {now} but its newest label event says {then}",
                False,
            )
    for image_id in unlabelled:
        report.add("label without model", f"image {image_id} is labelled but has no model", False)


def _check_runs(cat: Catalogue, report: CheckReport, repair: bool) -> None:
    with cat.read() as s:
        runs = {r.id: r for r in s.scalars(select(Run))}
    report.runs = len(runs)
    active = [r.id for r in runs.values() if r.active]
    if len(active) > 1:
        report.add("several active runs", f"runs {active} are all active", False)
    for run in runs.values():
        if run.status == "succeeded" and run.bundle_path:
            bundle = cat.data_dir / run.bundle_path
            if not (bundle / "bundle.json").is_file():
                report.add(
                    "missing bundle",
                    f"run {run.id} succeeded but its bundle {run.bundle_path} is missing",
                    False,
                )
    stale = {r.id for r in stale_runs(cat)}
    for run_id in sorted(stale):
        report.add(
            "stale run",
            f"run {run_id} says {runs[run_id].status} but no process is executing it",
            True,
        )
    if repair and stale:
        reaped = set(reap_stale_runs(cat))
        for p in report.problems:
            if p.kind == "stale run" and int(p.what.split()[1]) in reaped:
                p.repaired = True
    runs_dir = cat.data_dir / "runs"
    if not runs_dir.is_dir():
        return
    for folder in sorted(runs_dir.iterdir()):
        if not folder.is_dir():
            continue
        run = runs.get(int(folder.name)) if folder.name.isdigit() else None
        if run is None:
            problem = report.add("orphan run folder", f"runs/{folder.name} belongs to no run", True)
            if repair:
                shutil.rmtree(folder, ignore_errors=True)
                problem.repaired = True
            continue
        if run.status == "failed" and run.id not in stale:
            extra = [p.name for p in folder.iterdir() if p.name not in KEEP]
            if extra:
                problem = report.add(
                    "orphan bundle",
                    f"runs/{folder.name}: run {run.id} failed but left {', '.join(sorted(extra)[:5])}",
                    True,
                )
                if repair:
                    clear_bundle(folder)
                    problem.repaired = True


def check_catalogue(cat: Catalogue, repair: bool = False) -> CheckReport:
    """Check (and with ``repair`` fix what is safe to fix); see the module docstring."""
    report = CheckReport()
    sqlite = cat.engine.dialect.name == "sqlite"
    if sqlite:
        # the write lock: no writer is between writing a file and committing its row
        with cat.write() as s:
            s.execute(text("SELECT 1"))
            _check_files(cat, report, repair, grace_s=0.0)
    else:
        _check_files(cat, report, repair, grace_s=ORPHAN_AGE_S)
    _check_history(cat, report)
    _check_runs(cat, report, repair)
    return report


def cmd_check(cat: Catalogue, args: argparse.Namespace) -> int:
    report = check_catalogue(cat, repair=args.repair)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 1 if report.remaining else 0


def add_cli(subparsers: Any) -> None:
    """``python -m db check``."""
    p = subparsers.add_parser(
        "check",
        help="integrity: image rows and files, label history and labels, runs and bundles",
    )
    p.add_argument("--repair", action="store_true", help="fix what is safe to fix")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_check)
