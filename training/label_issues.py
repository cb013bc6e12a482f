"""Which labels are probably wrong, and which images to label next.

Label issues follow confident learning (Northcutt et al., via the ``cleanlab`` package):
out-of-sample class probabilities come from K-fold cross-validation of a logistic-regression
head on the cached backbone embeddings; ``cleanlab.filter.find_label_issues`` flags the
images in the off-diagonal of the confident joint (per-class thresholds = mean
self-confidence; also any image the held-out head gives to another class with more than even
odds), and ``cleanlab.rank.get_label_quality_scores`` (self-confidence) ranks them. Like the
cascade, the model is judged on the grayscale view (all labelled images, classes = models)
and the SKU on the colour view (within each model, classes = its SKUs).

``python -m training issues`` ranks, prints and stores the result under
``<data>/curation/label_issues.json`` (the health report counts it); the Review page calls
:func:`rank_label_issues`. :func:`next_to_label` orders the unlabelled queue.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import select
from sqlalchemy.orm import Session

from db import Catalogue, ops
from db.duplicates import default_embedding_key, load_embeddings
from db.health import label_issues_path
from db.models import Image, Run, Sku, SneakerModel

DEFAULT_BACKBONE = "efficientnet_lite0"
N_FOLDS = 5
MAX_DIM = 128
"""Embeddings are reduced to this many principal components before the heads (speed)."""
STRATEGIES = ("uncertain", "diverse", "dup_group")

Progress = Callable[[str], None]


class MissingEmbeddings(LookupError):
    """The cached embeddings the ranking needs are not there."""


@dataclass(frozen=True)
class LabelIssue:
    image_id: int
    given_model: str
    given_sku: str | None
    suggested: str  # the model (level "model") or SKU (level "sku") the heads believe
    score: float  # how likely the label is wrong: 1 - cleanlab's label quality, 0..1
    level: str  # model | sku
    flagged: bool  # in the confident joint's off-diagonal (a suspected error)


@dataclass(frozen=True)
class _Labelled:
    image_id: int
    model: str
    sku: str | None


def _labelled(session: Session) -> list[_Labelled]:
    stmt = (
        select(Image.id, SneakerModel.name, Sku.style_code)
        .join(SneakerModel, SneakerModel.id == Image.model_id)
        .outerjoin(Sku, Sku.id == Image.sku_id)
        .where(Image.status == "labelled")
        .order_by(Image.id)
    )
    return [_Labelled(i, m, s) for i, m, s in session.execute(stmt)]


def _backbone_of_run(session: Session, run_id: int | None) -> str:
    if run_id is None:
        return DEFAULT_BACKBONE
    run = session.get(Run, run_id)
    params = run.params if run is not None and isinstance(run.params, dict) else {}
    return str(params.get("backbone") or DEFAULT_BACKBONE)


def _vectors(
    session: Session, backbone: str, view: str, ids: Sequence[int]
) -> tuple[str, dict[int, np.ndarray]]:
    key = default_embedding_key(session, backbone, view)
    if key is None:
        raise MissingEmbeddings(
            f"no cached {backbone} embeddings ({view} view) in the catalogue: run "
            "`python -m training fit` first (it computes and caches them)"
        )
    found, matrix = load_embeddings(session, key, view, ids)
    return key, {int(i): matrix[k] for k, i in enumerate(found)}


def out_of_sample_probs(
    x: np.ndarray, y: np.ndarray, n_folds: int = N_FOLDS, seed: int = 0
) -> np.ndarray:
    """Class probabilities of each row from a head that never saw it (K-fold)."""
    # The reduction is unsupervised (labels unseen), so fitting it once on all rows keeps
    # the predictions out-of-sample and saves a PCA per fold.
    dim = min(MAX_DIM, x.shape[1], x.shape[0])
    reduced = make_pipeline(StandardScaler(), PCA(n_components=dim, random_state=seed))
    z = StandardScaler().fit_transform(reduced.fit_transform(x))
    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # lbfgs may stop a little short of convergence; the probabilities are still useful
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        warnings.filterwarnings("ignore", message=".*max_iter was reached.*")
        return cross_val_predict(
            LogisticRegression(C=0.5, max_iter=200), z, y, cv=cv, method="predict_proba"
        )


def _judge(
    ids: Sequence[int],
    x: np.ndarray,
    names: Sequence[str],
    n_folds: int,
    seed: int,
) -> dict[int, tuple[float, bool, str]]:
    """image id -> (score, flagged, suggested) for one classification level.

    Classes with fewer than ``n_folds`` images cannot be cross-validated and are left out.
    """
    counts = Counter(names)
    keep = [k for k, n in enumerate(names) if counts[n] >= n_folds]
    classes = sorted({names[k] for k in keep})
    if len(classes) < 2:
        return {}
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[names[k]] for k in keep])
    probs = out_of_sample_probs(x[keep], y, n_folds, seed)
    best = probs.argmax(axis=1)
    # The confident joint's off-diagonal misses an error whose suggested class is so clean
    # that its threshold (mean self-confidence) sits above even a 0.95; an image that the
    # held-out head gives to another class with more than even odds is flagged as well.
    flagged = find_label_issues(y, probs, filter_by="confident_learning", n_jobs=1) | (
        (best != y) & (probs.max(axis=1) > 0.5)
    )
    quality = get_label_quality_scores(y, probs, method="self_confidence")
    return {
        int(ids[k]): (float(1.0 - quality[j]), bool(flagged[j]), classes[int(best[j])])
        for j, k in enumerate(keep)
    }


def _reading(source: Session | Catalogue) -> AbstractContextManager[Session]:
    return source.read() if isinstance(source, Catalogue) else nullcontext(source)


def rank_label_issues(
    source: Session | Catalogue,
    *,
    run_id: int | None = None,
    limit: int | None = None,
    only_flagged: bool = True,
    backbone: str | None = None,
    n_folds: int = N_FOLDS,
    seed: int = 0,
    progress: Progress | None = None,
) -> list[LabelIssue]:
    """Labelled images ranked by how likely their label is wrong (most likely first).

    One entry per image, from the level (model or SKU) that doubts it most. Raises
    :class:`MissingEmbeddings` when no embeddings of the backbone (default: the run's, else
    ``efficientnet_lite0``) are cached; images without one are left out.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    with _reading(source) as session:
        name = backbone or _backbone_of_run(session, run_id)
        rows = _labelled(session)
        ids = [r.image_id for r in rows]
        _, gray = _vectors(session, name, "gray", ids)
        _, colour = _vectors(session, name, "colour", ids)
    say = progress or (lambda _msg: None)
    by_id = {r.image_id: r for r in rows}
    verdicts: dict[int, tuple[float, bool, str, str]] = {}

    with_gray = [r for r in rows if r.image_id in gray]
    say(f"model level: {len(with_gray)} images, {len({r.model for r in with_gray})} models")
    if with_gray:
        x = np.stack([gray[r.image_id] for r in with_gray])
        for i, (score, flag, sug) in _judge(
            [r.image_id for r in with_gray], x, [r.model for r in with_gray], n_folds, seed
        ).items():
            verdicts[i] = (score, flag, sug, "model")

    per_model: dict[str, list[_Labelled]] = defaultdict(list)
    for r in rows:
        if r.sku is not None and r.image_id in colour:
            per_model[r.model].append(r)
    for k, (model, members) in enumerate(sorted(per_model.items())):
        say(f"SKU level {k + 1}/{len(per_model)}: {model}, {len(members)} images")
        x = np.stack([colour[r.image_id] for r in members])
        skus = [str(r.sku) for r in members]
        judged = _judge([r.image_id for r in members], x, skus, n_folds, seed)
        for i, (score, flag, sug) in judged.items():
            old = verdicts.get(i)
            if old is None or (flag, score) > (old[1], old[0]):
                verdicts[i] = (score, flag, sug, "sku")

    issues = [
        LabelIssue(i, by_id[i].model, by_id[i].sku, sug, round(score, 6), level, flag)
        for i, (score, flag, sug, level) in verdicts.items()
        if flag or not only_flagged
    ]
    issues.sort(key=lambda t: (not t.flagged, -t.score, t.image_id))
    return issues[:limit] if limit is not None else issues


def save_ranking(data_dir: Path, issues: Sequence[LabelIssue], meta: dict[str, Any]) -> Path:
    """Store a ranking as JSON under the data folder (written whole or not at all)."""
    path = label_issues_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "at": datetime.now().isoformat(timespec="seconds"),
        **meta,
        "issues": [asdict(i) for i in issues],
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- what to label next -------------------------------------------------------------------


def _unlabelled_ids(session: Session, user: str | None) -> list[int]:
    f = ops.QueueFilter(status="new", user=user)
    return [i.id for i in ops.queue(session, f, page_size=10**9, with_total=False).items]


def _active_run(session: Session) -> int | None:
    return session.scalar(select(Run.id).where(Run.active).order_by(Run.id.desc()).limit(1))


def k_center(candidates: np.ndarray, anchors: np.ndarray, n: int, seed: int = 0) -> list[int]:
    """Rows of ``candidates`` chosen greedily, each farthest from the anchors and the chosen."""
    if not len(candidates) or n <= 0:
        return []
    if len(anchors):
        d = np.full(len(candidates), np.inf)
        for start in range(0, len(anchors), 2048):
            block = anchors[start : start + 2048]
            dist = (candidates**2).sum(1)[:, None] - 2 * candidates @ block.T + (block**2).sum(1)
            d = np.minimum(d, dist.min(axis=1))
    else:
        d = np.full(len(candidates), np.inf)
        d[np.random.default_rng(seed).integers(len(candidates))] = np.finfo(float).max
    chosen: list[int] = []
    for _ in range(min(n, len(candidates))):
        k = int(np.argmax(d))
        chosen.append(k)
        d = np.minimum(d, ((candidates - candidates[k]) ** 2).sum(1))
        d[k] = -1.0
    return chosen


def next_to_label(
    session: Session,
    strategy: str,
    n: int,
    user: str | None = None,
    backbone: str = DEFAULT_BACKBONE,
) -> list[int]:
    """Ids of ``n`` unlabelled images to label next (others' claimed images left out).

    - ``uncertain``: smallest margin between the active run's top two suggestions first
      (images without a prediction follow, oldest first);
    - ``diverse``: farthest-point (k-center) on the colour embeddings: images unlike
      anything labelled or already picked (images without an embedding follow);
    - ``dup_group``: one image per near-duplicate group first (labelling it tells you the
      others), then the rest.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (use {', '.join(STRATEGIES)})")
    pool = _unlabelled_ids(session, user)
    if strategy == "uncertain":
        run_id = _active_run(session)
        first: list[int] = []
        if run_id is not None:
            f = ops.QueueFilter(status="new", run_id=run_id, order="uncertain", user=user)
            first = [i.id for i in ops.queue(session, f, page_size=n, with_total=False).items]
        seen = set(first)
        return (first + [i for i in pool if i not in seen])[:n]
    if strategy == "dup_group":
        groups = dict(
            session.execute(select(Image.id, Image.dup_group).where(Image.status == "new")).all()
        )
        heads: list[int] = []
        rest: list[int] = []
        seen_groups: set[int] = set()
        for i in pool:
            g = groups.get(i)
            if g is None or g not in seen_groups:
                heads.append(i)
                if g is not None:
                    seen_groups.add(g)
            else:
                rest.append(i)
        return (heads + rest)[:n]
    key = default_embedding_key(session, backbone, "colour")
    if key is None:
        return pool[:n]
    labelled = [r.image_id for r in _labelled(session)]
    cand_ids, cand = load_embeddings(session, key, "colour", pool)
    _, anchors = load_embeddings(session, key, "colour", labelled)
    picked = [int(cand_ids[k]) for k in k_center(cand, anchors, n)]
    seen = set(picked)
    return (picked + [i for i in pool if i not in seen])[:n]


# --- command line (python -m training issues) -----------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="data folder (default: $SKULAB_DATA or ./data)")
    parser.add_argument("--backbone", default=None, help=f"default {DEFAULT_BACKBONE}")
    parser.add_argument("--folds", type=int, default=N_FOLDS, help=f"default {N_FOLDS}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=50, help="issues to print (default 50)")
    parser.add_argument(
        "--all", action="store_true", help="rank every labelled image, not only flagged ones"
    )
    parser.add_argument("--json", action="store_true", help="print the ranking as JSON")


def main(args: argparse.Namespace) -> int:
    from db import open_catalogue

    cat = open_catalogue(getattr(args, "data", None))
    try:
        issues = rank_label_issues(
            cat,
            backbone=args.backbone,
            n_folds=args.folds,
            seed=args.seed,
            only_flagged=not args.all,
            progress=lambda msg: print(msg, file=sys.stderr),
        )
    except MissingEmbeddings as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    flagged = sum(i.flagged for i in issues)
    path = save_ranking(
        cat.data_dir,
        issues,
        {"backbone": args.backbone or DEFAULT_BACKBONE, "folds": args.folds, "ranked": flagged},
    )
    if args.json:
        print(json.dumps([asdict(i) for i in issues[: args.limit]], indent=1))
    else:
        for i in issues[: args.limit]:
            given = i.given_model + (f" / {i.given_sku}" if i.given_sku else "")
            mark = "!" if i.flagged else " "
            print(
                f"{mark} {i.image_id:>8}  score {i.score:.3f}  {i.level:<5}  "
                f"given {given}  ->  {i.suggested}"
            )
    print(f"{flagged} suspected label errors; ranking saved to {path}", file=sys.stderr)
    return 0
