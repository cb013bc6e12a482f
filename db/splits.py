"""Train / val / test splits: stratified by class, leak-free, stable.

The rule, used by ``python -m db splits assign``, by imports with ``--split auto`` and by the
app:

- Labelled images get a split; an unlabelled image has no class to stratify by and gets one
  on the first call after it is labelled.
- Classes are SKUs (the model where an image has no SKU); each class is spread over the
  splits at the target ratios (within one image when nothing ties images together).
- Where a class is too small to say (one photo per colourway, as in a folder of product
  shots), its model decides: the model's colourways are spread at the ratios, the first
  ones to train, so a model with one or two colourways keeps them in train and stage 1
  always sees every model; the catalogue as a whole breaks the remaining ties, so that
  val and test both get their share. With 6 models of 3 to 8 single-photo colourways
  that is 23 / 5 / 5 of 33 (a model of 3: 2 / 0 / 1 or 2 / 1 / 0; of 8: 6 / 1 / 1).
  A colourway held out this way is one stage 2 never learns: val and test then measure
  stage 1 on colourways it has not seen, which is what it meets in use.
- Related images stay together: every near-duplicate group (``Image.dup_group``) and every
  product page (``ImageSource.page_url``) lands in one split (connected components over
  those links). A page that holds more than half of some class's labelled images is the
  exception: keeping it whole would put the class in one split only, so its images are
  spread like unrelated ones (reported as ``pages_spread``; not a leak).
- Assigned splits stay put: new images are placed to bring each class back to the ratios.
  ``reset`` reassigns everything that is not locked. Locked images never move, and a split
  whose images are all locked (``python -m db splits lock test``) takes no new images
  except near-duplicates or page mates of its own images.
- A component found spread over several splits (a new duplicate link between old images) is
  a leak; its unlocked images move to the split that holds most of it.

Every move is a ``LabelEvent`` (action "split", how "auto"), written in bulk.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from db import ops
from db.models import SPLITS, Image, ImageSource, LabelEvent, Sku, SneakerModel, utcnow

DEFAULT_RATIOS = (0.7, 0.15, 0.15)
MAX_PAGE_SHARE = 0.5
"""A page holding more than this share of a class's labelled images is not kept whole."""

ClassKey = tuple[str, int]  # ("sku", sku id) or ("model", model id)


# --- inputs -------------------------------------------------------------------------------


def parse_ratios(ratios: Sequence[float] | Mapping[str, float] | str) -> dict[str, float]:
    """Ratios as {"train", "val", "test"} summing to 1, from "70,15,15", a triple or a mapping."""
    if isinstance(ratios, str):
        try:
            values = [float(x) for x in ratios.split(",")]
        except ValueError:
            raise ops.CatalogueError(
                f"ratios {ratios!r}: use three numbers like 70,15,15"
            ) from None
    elif isinstance(ratios, Mapping):
        unknown = set(ratios) - set(SPLITS)
        if unknown:
            raise ops.CatalogueError(f"ratios: unknown split(s) {sorted(unknown)}")
        values = [float(ratios.get(s, 0.0)) for s in SPLITS]
    else:
        values = [float(x) for x in ratios]
    if len(values) != 3 or any(v < 0 or not np.isfinite(v) for v in values) or sum(values) <= 0:
        raise ops.CatalogueError(
            f"ratios {ratios!r}: need three non-negative numbers (train, val, test) with a "
            "positive sum"
        )
    total = sum(values)
    return {s: v / total for s, v in zip(SPLITS, values, strict=True)}


@dataclass
class _Row:
    id: int
    status: str
    cls: ClassKey | None
    split: str | None
    locked: bool
    dup_group: int | None
    model: int | None = None  # the model of a labelled image (its SKU's parent)


def _load_rows(session: Session) -> dict[int, _Row]:
    rows = session.execute(
        select(
            Image.id,
            Image.status,
            Image.model_id,
            Image.sku_id,
            Image.split,
            Image.split_locked,
            Image.dup_group,
        )
        .where(Image.status != "rejected")
        .order_by(Image.id)
    ).all()
    out = {}
    for image_id, status, model_id, sku_id, split, locked, group in rows:
        cls: ClassKey | None = None
        if status == "labelled":
            cls = ("sku", sku_id) if sku_id is not None else ("model", model_id)
        model = model_id if status == "labelled" else None
        out[image_id] = _Row(image_id, status, cls, split, bool(locked), group, model)
    return out


def _load_pages(session: Session) -> dict[str, list[int]]:
    pages: dict[str, set[int]] = defaultdict(set)
    stmt = (
        select(ImageSource.page_url, ImageSource.image_id)
        .join(Image, Image.id == ImageSource.image_id)
        .where(ImageSource.page_url.is_not(None), Image.status != "rejected")
    )
    for url, image_id in session.execute(stmt):
        pages[url].add(image_id)
    return {url: sorted(ids) for url, ids in pages.items() if len(ids) > 1}


def _spread_pages(
    rows: Mapping[int, _Row], pages: Mapping[str, list[int]], max_share: float
) -> set[str]:
    """Pages too large to keep whole: more than ``max_share`` of some class's labelled images,
    and at least two of them (a class's one labelled image lies in one split however its
    page is placed: there is nothing to spread, and nothing to report)."""
    class_total = Counter(r.cls for r in rows.values() if r.cls is not None)
    spread = set()
    for url, ids in pages.items():
        per_class = Counter(rows[i].cls for i in ids if i in rows and rows[i].cls is not None)
        if any(n >= 2 and n > max_share * class_total[c] for c, n in per_class.items()):
            spread.add(url)
    return spread


def _components(ids: Sequence[int], links: Iterable[Sequence[int]]) -> tuple[int, np.ndarray]:
    """Connected components of images where each link (a list of ids) ties its members."""
    pos = {i: k for k, i in enumerate(ids)}
    src: list[int] = []
    dst: list[int] = []
    for members in links:
        ks = [pos[i] for i in members if i in pos]
        src += ks[:-1]
        dst += ks[1:]
    n = len(ids)
    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    return int(count), labels


def _links(
    rows: Mapping[int, _Row], pages: Mapping[str, list[int]], spread: set[str]
) -> list[list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for r in rows.values():
        if r.dup_group is not None:
            groups[r.dup_group].append(r.id)
    return [m for m in groups.values() if len(m) > 1] + [
        ids for url, ids in pages.items() if url not in spread
    ]


# --- assigning ----------------------------------------------------------------------------


@dataclass
class SplitReport:
    assigned: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    """images that had no split and got one, per split"""
    moved: int = 0
    """images moved from one split to another (reset, or a leak fixed)"""
    leaks_fixed: int = 0
    """components that were spread over several splits and were brought into one"""
    waiting_unlabelled: int = 0
    """unlabelled images left without a split until they are labelled"""
    locked_kept: int = 0
    pages_spread: int = 0
    components: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    """labelled images per split afterwards"""

    def summary(self) -> str:
        got = ", ".join(f"{s} {n}" for s, n in self.assigned.items())
        now = ", ".join(f"{s} {n}" for s, n in self.counts.items())
        text = f"assigned {got}; moved {self.moved}; labelled images now: {now}"
        if self.leaks_fixed:
            text += f"; {self.leaks_fixed} leaking groups brought into one split"
        if self.waiting_unlabelled:
            text += f"; {self.waiting_unlabelled} unlabelled images wait for a label"
        if self.pages_spread:
            text += f"; {self.pages_spread} pages too large to keep whole"
        return text


def _locked_splits(rows: Iterable[_Row]) -> set[str]:
    """Splits that have images and all of them are locked."""
    have: Counter[str] = Counter()
    unlocked: Counter[str] = Counter()
    for r in rows:
        if r.split is not None:
            have[r.split] += 1
            unlocked[r.split] += not r.locked
    return {s for s in have if unlocked[s] == 0}


def _home(members: Sequence[_Row]) -> str | None:
    """The split a component already belongs to: its locked split, else its majority split."""
    locked = Counter(r.split for r in members if r.locked and r.split)
    if locked:
        return min(locked, key=lambda s: (-locked[s], -SPLITS.index(s)))
    have = Counter(r.split for r in members if r.split)
    if not have:
        return None
    return min(have, key=lambda s: (-have[s], -SPLITS.index(s)))


class _Balance:
    """Target and placed images per key and split, at one level (SKU, model or catalogue)."""

    def __init__(self, totals: Mapping[Any, int], ratios: Mapping[str, float]):
        self.target = {k: {s: ratios[s] * n for s in SPLITS} for k, n in totals.items()}
        self.count: dict[Any, Counter[str]] = defaultdict(Counter)

    def need(self, key: Any, split: str) -> float:
        """How many images of ``key`` ``split`` still lacks (negative: it has too many)."""
        return self.target[key][split] - self.count[key][split]

    def add(self, key: Any, split: str) -> None:
        self.count[key][split] += 1


def _choose(
    group: Sequence[_Row],
    candidates: Sequence[str],
    levels: tuple[_Balance, _Balance, _Balance],
    ratios: Mapping[str, float],
) -> str:
    """The split for a component of labelled images, deciding level by level.

    1. Whole images its classes lack there (``floor`` of the need): a class is never put
       where it already has its share while another split is a whole image short, which
       keeps every class within one image of its ratios. A class too small to spread (one
       photo per colourway) lacks no whole image anywhere after its first, and
    2. its model decides: the split that lacks most of the model's images, so that a
       model's colourways spread over the splits (the first ones to train; a model with one
       or two single-photo colourways keeps them in train);
    3. then the catalogue as a whole (val and test both get their share), the larger ratio,
       and the split order.
    """
    by_class, by_model, overall = levels
    classes = Counter(r.cls for r in group if r.cls is not None)
    models = Counter(r.model for r in group if r.cls is not None and r.model is not None)
    n = sum(classes.values())

    def score(s: str) -> tuple[float, float, float, float, int]:
        whole = sum(k * math.floor(by_class.need(c, s) + 1e-9) for c, k in classes.items())
        model = sum(k * by_model.need(m, s) for m, k in models.items())
        return (
            whole,
            round(model, 9),
            round(n * overall.need(None, s), 9),
            ratios[s],
            -SPLITS.index(s),
        )

    return max(candidates, key=score)


def plan_splits(
    rows: Mapping[int, _Row],
    pages: Mapping[str, list[int]],
    ratios: Mapping[str, float],
    seed: int,
    reset: bool,
    max_page_share: float = MAX_PAGE_SHARE,
) -> tuple[dict[int, str], SplitReport]:
    """The new split of every image that changes (pure: no database), and the report."""
    report = SplitReport()
    rows = {i: _Row(**vars(r)) for i, r in rows.items()}  # work on copies
    before = {i: r.split for i, r in rows.items()}
    if reset:
        for r in rows.values():
            if not r.locked:
                r.split = None
    spread = _spread_pages(rows, pages, max_page_share)
    report.pages_spread = len(spread)
    ids = list(rows)
    n_comp, labels = _components(ids, _links(rows, pages, spread))
    report.components = n_comp
    members: dict[int, list[_Row]] = defaultdict(list)
    for k, label in enumerate(labels):
        members[int(label)].append(rows[ids[k]])

    closed = _locked_splits(rows.values())
    candidates = [s for s in SPLITS if ratios[s] > 0 and s not in closed] or [
        s for s in SPLITS if ratios[s] > 0
    ]
    labelled = [r for r in rows.values() if r.cls is not None]
    levels = (
        _Balance(Counter(r.cls for r in labelled), ratios),
        _Balance(Counter(r.model for r in labelled), ratios),
        _Balance({None: len(labelled)}, ratios),
    )

    pending: list[list[_Row]] = []
    for group in members.values():
        home = _home(group)
        if home is None:
            if any(r.cls is not None for r in group):
                pending.append(group)
            continue
        if len({r.split for r in group if r.split}) > 1:
            report.leaks_fixed += 1
        for r in group:
            if r.locked:
                continue
            if r.split is not None or r.cls is not None:
                r.split = home

    def place(r: _Row, split: str) -> None:
        levels[0].add(r.cls, split)
        levels[1].add(r.model, split)
        levels[2].add(None, split)

    for r in labelled:
        if r.split is not None:
            place(r, r.split)

    rng = np.random.default_rng(seed)
    keys = rng.random(len(pending))
    order = sorted(
        range(len(pending)),
        key=lambda k: (-sum(r.cls is not None for r in pending[k]), keys[k]),
    )
    for k in order:
        group = pending[k]
        split = _choose(group, candidates, levels, ratios)
        for r in group:
            if r.cls is not None:
                r.split = split
                place(r, split)

    changes: dict[int, str] = {}
    for i, r in rows.items():
        if r.split != before[i] and r.split is not None:
            changes[i] = r.split
            if before[i] is None:
                report.assigned[r.split] += 1
            else:
                report.moved += 1
        if r.split is None and r.cls is None:
            report.waiting_unlabelled += 1
        report.locked_kept += r.locked
    report.counts = {
        s: sum(1 for r in rows.values() if r.cls is not None and r.split == s) for s in SPLITS
    }
    return changes, report


def _snapshots(session: Session, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """:func:`db.ops.snapshot` of many images at once (the LabelEvent before/after format)."""
    models = dict(session.execute(select(SneakerModel.id, SneakerModel.name)).all())
    skus = dict(session.execute(select(Sku.id, Sku.style_code)).all())
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for image_id, status, model_id, sku_id, split, locked in session.execute(
            select(
                Image.id,
                Image.status,
                Image.model_id,
                Image.sku_id,
                Image.split,
                Image.split_locked,
            ).where(Image.id.in_(chunk))
        ):
            out[image_id] = {
                "status": status,
                "model_id": model_id,
                "model": models.get(model_id),
                "sku_id": sku_id,
                "sku": skus.get(sku_id),
                "split": split,
                "split_locked": bool(locked),
            }
    return out


def write_splits(session: Session, changes: Mapping[int, str], user: str, how: str = "auto") -> int:
    """Move images to splits in bulk, one LabelEvent each; locked images are left alone."""
    ids = sorted(changes)
    snaps = _snapshots(session, ids)
    rows = [
        {"id": i, "split": changes[i]}
        for i in ids
        if i in snaps and not snaps[i]["split_locked"] and snaps[i]["split"] != changes[i]
    ]
    if not rows:
        return 0
    now = utcnow()
    session.execute(update(Image), [{**r, "updated_at": now} for r in rows])
    session.execute(
        insert(LabelEvent),
        [
            {
                "image_id": r["id"],
                "at": now,
                "user": user,
                "action": "split",
                "how": how,
                "before": snaps[r["id"]],
                "after": {**snaps[r["id"]], "split": r["split"]},
                "undone": False,
            }
            for r in rows
        ],
    )
    session.expire_all()
    return len(rows)


def assign_splits(
    session: Session,
    ratios: Sequence[float] | Mapping[str, float] | str = DEFAULT_RATIOS,
    seed: int = 0,
    reset: bool = False,
    user: str = "splits",
    max_page_share: float = MAX_PAGE_SHARE,
) -> SplitReport:
    """Give labelled images a split by the rule of this module; deterministic for a seed."""
    shares = parse_ratios(ratios)
    rows = _load_rows(session)
    changes, report = plan_splits(rows, _load_pages(session), shares, seed, reset, max_page_share)
    write_splits(session, changes, user)
    return report


def lock_split(session: Session, split: str, user: str, lock: bool = True) -> int:
    """Lock (or unlock) every image of one split; returns how many changed."""
    if split not in SPLITS:
        raise ops.CatalogueError(f"unknown split {split!r} (use train, val or test)")
    ids = list(
        session.scalars(
            select(Image.id).where(Image.split == split, Image.split_locked.is_not(lock))
        )
    )
    ops.set_split(session, ids, split, user, lock=lock, how="lock" if lock else "unlock")
    return len(ids)


# --- checking -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    """Related images in more than one split."""

    kind: str  # dup_group | page
    key: str  # the group id or the page URL
    splits: dict[str, list[int]]  # split -> image ids

    @property
    def images(self) -> int:
        return sum(len(v) for v in self.splits.values())

    def describe(self) -> str:
        parts = "; ".join(f"{s}: {', '.join(map(str, ids[:8]))}" for s, ids in self.splits.items())
        return f"{self.kind} {self.key} spans {len(self.splits)} splits ({parts})"


def find_leaks(session: Session, max_page_share: float = MAX_PAGE_SHARE) -> list[Leak]:
    """Near-duplicate groups and product pages whose images sit in more than one split."""
    rows = _load_rows(session)
    pages = _load_pages(session)
    spread = _spread_pages(rows, pages, max_page_share)
    groups: dict[int, list[int]] = defaultdict(list)
    for r in rows.values():
        if r.dup_group is not None:
            groups[r.dup_group].append(r.id)
    found = [("dup_group", str(g), ids) for g, ids in sorted(groups.items())] + [
        ("page", url, ids) for url, ids in sorted(pages.items()) if url not in spread
    ]
    leaks = []
    for kind, key, ids in found:
        by_split: dict[str, list[int]] = defaultdict(list)
        for i in ids:
            if rows[i].split is not None:
                by_split[rows[i].split].append(i)
        if len(by_split) > 1:
            leaks.append(Leak(kind, key, {s: by_split[s] for s in SPLITS if s in by_split}))
    return leaks


@dataclass(frozen=True)
class ClassBalance:
    kind: str  # sku | model
    name: str
    counts: dict[str, int]  # train / val / test / none

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def class_balance(session: Session, by: str = "sku") -> list[ClassBalance]:
    """Labelled images per class and split (SKU classes; model for images without an SKU)."""
    if by not in ("sku", "model"):
        raise ops.CatalogueError(f"class_balance by {by!r}: use sku or model")
    models = dict(session.execute(select(SneakerModel.id, SneakerModel.name)).all())
    skus = dict(session.execute(select(Sku.id, Sku.style_code)).all())
    table: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    stmt = select(Image.model_id, Image.sku_id, Image.split).where(Image.status == "labelled")
    for model_id, sku_id, split in session.execute(stmt):
        if by == "sku" and sku_id is not None:
            key = ("sku", skus[sku_id])
        else:
            key = ("model", models[model_id])
        table[key][split or "none"] += 1
    return [
        ClassBalance(kind, name, {s: c[s] for s in (*SPLITS, "none")})
        for (kind, name), c in sorted(table.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]


def off_ratio(
    balance: Iterable[ClassBalance], ratios: Mapping[str, float], tolerance: float = 1.0
) -> list[tuple[ClassBalance, dict[str, float]]]:
    """Classes whose assigned images miss a ratio by more than ``tolerance`` images."""
    out = []
    for row in balance:
        assigned = sum(row.counts[s] for s in SPLITS)
        gaps = {s: row.counts[s] - ratios[s] * assigned for s in SPLITS}
        if any(abs(g) > tolerance for g in gaps.values()):
            out.append((row, gaps))
    return out


# --- command line -------------------------------------------------------------------------


def _print_balance(rows: Sequence[ClassBalance]) -> None:
    if not rows:
        print("no labelled images")
        return
    width = max(len(r.name) for r in rows)
    print(f"{'class'.ljust(width)}  {'train':>6} {'val':>6} {'test':>6} {'none':>6}")
    for r in rows:
        c = r.counts
        print(f"{r.name.ljust(width)}  {c['train']:>6} {c['val']:>6} {c['test']:>6} {c['none']:>6}")


def cmd_assign(cat: Any, args: argparse.Namespace) -> int:
    with cat.write() as s:
        report = assign_splits(s, ratios=args.ratios, seed=args.seed, reset=args.reset)
    print(report.summary())
    return 0


def cmd_check(cat: Any, args: argparse.Namespace) -> int:
    with cat.read() as s:
        leaks = find_leaks(s)
        balance = class_balance(s, by=args.by)
    _print_balance(balance)
    if not leaks:
        print("\nno leaks: every near-duplicate group and product page sits in one split")
        return 0
    print(f"\n{len(leaks)} leaks:", file=sys.stderr)
    for leak in leaks[: args.limit]:
        print("  " + leak.describe(), file=sys.stderr)
    print("fix: python -m db splits assign (moves unlocked images to one split)", file=sys.stderr)
    return 1


def cmd_lock(cat: Any, args: argparse.Namespace) -> int:
    with cat.write() as s:
        n = lock_split(s, args.split, user="splits", lock=args.splits_command == "lock")
    print(f"{args.splits_command}ed {n} {args.split} images")
    return 0


def add_cli(subparsers: Any) -> None:
    """``python -m db splits assign|check|lock|unlock``."""
    p = subparsers.add_parser("splits", help="assign, check and lock train/val/test splits")
    sub = p.add_subparsers(dest="splits_command", required=True, metavar="ACTION")
    a = sub.add_parser(
        "assign",
        help="give labelled images a split (stratified by SKU; duplicates and pages kept whole)",
    )
    a.add_argument(
        "--ratios", default="70,15,15", help="train,val,test proportions (default 70,15,15)"
    )
    a.add_argument("--seed", type=int, default=0, help="seed of the assignment (default 0)")
    a.add_argument("--reset", action="store_true", help="reassign every image that is not locked")
    a.set_defaults(func=cmd_assign)
    c = sub.add_parser("check", help="class balance per split; exits 1 if related images leak")
    c.add_argument("--by", choices=["sku", "model"], default="sku")
    c.add_argument("--limit", type=int, default=30, help="leaks to print (default 30)")
    c.set_defaults(func=cmd_check)
    for action, text in (("lock", "lock"), ("unlock", "unlock")):
        lk = sub.add_parser(action, help=f"{text} every image of a split")
        lk.add_argument("split", choices=SPLITS)
        lk.set_defaults(func=cmd_lock)
