"""The catalogue's health: what would make a model trained on it worse than it looks.

``health_report(session)`` (the app's Overview, ``python -m db health``) gathers: classes
with too few images in a split, leaks between splits, the near-duplicate rate, the
suspected label errors of the last ranking (``python -m training issues`` stores it under
``<data>/curation/label_issues.json``), and the junk rate of each source.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from db.models import SPLITS, Image, ImageSource
from db.splits import class_balance, find_leaks

DEFAULT_MIN_PER_SPLIT = {"train": 8, "val": 2, "test": 2}
LABEL_ISSUES_FILE = Path("curation") / "label_issues.json"
"""Where the last label-issue ranking is kept, relative to the data folder."""


def label_issues_path(data_dir: Path) -> Path:
    return Path(data_dir) / LABEL_ISSUES_FILE


def _data_dir_of(session: Session) -> Path | None:
    """The data folder of a SQLite catalogue (the database file lives in it)."""
    url = session.get_bind().url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).resolve().parent
    return None


def short_classes(
    session: Session, min_per_split: Mapping[str, int] = DEFAULT_MIN_PER_SPLIT
) -> list[dict[str, Any]]:
    """SKU classes (models for images without an SKU) with fewer images than wanted in a split."""
    out = []
    for row in class_balance(session, by="sku"):
        lacking = {s: min_per_split[s] - row.counts[s] for s in SPLITS if s in min_per_split}
        lacking = {s: n for s, n in lacking.items() if n > 0}
        if lacking:
            out.append({"kind": row.kind, "name": row.name, **row.counts, "lacking": lacking})
    return out


def duplicate_stats(session: Session) -> dict[str, Any]:
    """Near-duplicate groups written by ``python -m db duplicates --apply``."""
    live = Image.status != "rejected"
    images = session.scalar(select(func.count()).where(live)) or 0
    sizes = [
        n
        for (n,) in session.execute(
            select(func.count()).where(live, Image.dup_group.is_not(None)).group_by(Image.dup_group)
        )
    ]
    grouped = sum(n for n in sizes if n > 1)
    groups = sum(1 for n in sizes if n > 1)
    redundant = grouped - groups
    return {
        "images": images,
        "groups": groups,
        "images_in_groups": grouped,
        "redundant": redundant,
        "rate": round(redundant / images, 4) if images else 0.0,
    }


def junk_by_source(session: Session) -> list[dict[str, Any]]:
    """Rejected / all images per source kind and spider (an image counts once per source)."""
    per_image = (
        select(ImageSource.kind, ImageSource.spider, ImageSource.image_id, Image.status)
        .join(Image, Image.id == ImageSource.image_id)
        .distinct()
        .subquery()
    )
    stmt = (
        select(
            per_image.c.kind,
            per_image.c.spider,
            func.count(),
            func.sum(case((per_image.c.status == "rejected", 1), else_=0)),
        )
        .group_by(per_image.c.kind, per_image.c.spider)
        .order_by(per_image.c.kind, per_image.c.spider)
    )
    return [
        {
            "kind": kind,
            "spider": spider,
            "images": n,
            "rejected": int(rej or 0),
            "rate": round(int(rej or 0) / n, 4) if n else 0.0,
        }
        for kind, spider, n, rej in session.execute(stmt)
    ]


def stored_label_issues(data_dir: Path | None) -> dict[str, Any]:
    """Count and date of the last stored label-issue ranking, or a note saying why none."""
    if data_dir is None:
        return {"note": "data folder unknown: pass data_dir to see the last ranking"}
    path = label_issues_path(data_dir)
    if not path.exists():
        return {"note": "no ranking yet: run python -m training issues"}
    try:
        saved = json.loads(path.read_text())
        issues = saved["issues"]
        return {
            "count": sum(1 for i in issues if i.get("flagged", True)),
            "ranked": saved.get("ranked", len(issues)),
            "at": saved.get("at"),
            "path": str(path),
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {"note": f"{path}: unreadable ranking ({exc}); run python -m training issues"}


def health_report(
    session: Session,
    data_dir: str | Path | None = None,
    min_per_split: Mapping[str, int] = DEFAULT_MIN_PER_SPLIT,
) -> dict[str, Any]:
    """Everything the Overview shows about the catalogue's health, as plain data."""
    folder = Path(data_dir) if data_dir is not None else _data_dir_of(session)
    leaks = find_leaks(session)
    short = short_classes(session, min_per_split)
    return {
        "at": datetime.now().isoformat(timespec="seconds"),
        "min_per_split": dict(min_per_split),
        "short_classes": short,
        "leaks": [
            {
                "kind": leak.kind,
                "key": leak.key,
                "images": leak.images,
                "splits": {s: len(v) for s, v in leak.splits.items()},
            }
            for leak in leaks
        ],
        "duplicates": duplicate_stats(session),
        "label_issues": stored_label_issues(folder),
        "junk_by_source": junk_by_source(session),
    }


# --- command line -------------------------------------------------------------------------


def format_report(report: Mapping[str, Any]) -> str:
    lines = []
    short = report["short_classes"]
    wanted = ", ".join(f"{s} {n}" for s, n in report["min_per_split"].items())
    lines.append(f"classes with too few images per split (wanted: {wanted}): {len(short)}")
    for row in short[:30]:
        lacking = ", ".join(f"{s} needs {n} more" for s, n in row["lacking"].items())
        lines.append(
            f"  {row['name']}: train {row['train']}, val {row['val']}, test {row['test']}"
            f" ({lacking})"
        )
    if len(short) > 30:
        lines.append(f"  ... and {len(short) - 30} more")
    leaks = report["leaks"]
    lines.append(f"leaks between splits: {len(leaks)}")
    for leak in leaks[:10]:
        lines.append(f"  {leak['kind']} {leak['key']}: {leak['splits']}")
    d = report["duplicates"]
    lines.append(
        f"near-duplicates: {d['groups']} groups, {d['redundant']} redundant images "
        f"({100 * d['rate']:.1f}% of {d['images']})"
    )
    li = report["label_issues"]
    if "count" in li:
        lines.append(f"suspected label errors: {li['count']} (ranking of {li['at']})")
    else:
        lines.append(f"suspected label errors: {li['note']}")
    lines.append("junk rate by source:")
    for row in report["junk_by_source"]:
        lines.append(
            f"  {row['kind']}/{row['spider'] or '-'}: {row['rejected']} of {row['images']} "
            f"rejected ({100 * row['rate']:.1f}%)"
        )
    if "integrity" in report:
        i = report["integrity"]
        found = ", ".join(f"{k} {n}" for k, n in sorted(i["problems"].items()))
        lines.append(
            "integrity (python -m db check): "
            + ("rows, files, history and runs agree" if i["ok"] else f"problems: {found}")
        )
    return "\n".join(lines)


def cmd_health(cat: Any, args: argparse.Namespace) -> int:
    from db.check import check_catalogue

    with cat.read() as s:
        report = health_report(s, data_dir=cat.data_dir)
    integrity = check_catalogue(cat).to_dict()
    integrity.pop("details")
    report["integrity"] = integrity
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def add_cli(subparsers: Any) -> None:
    """``python -m db health``."""
    p = subparsers.add_parser(
        "health",
        help="short classes, split leaks, duplicate rate, suspected label errors, junk rates",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_health)
