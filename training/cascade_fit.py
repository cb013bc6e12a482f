"""Fitting both stages of the cascade on embeddings: heads, C, temperature, thresholds.

Pure functions on tensors (no catalogue): :func:`fit_cascade` takes the embeddings of the
train examples (and of the val examples, if any) and returns a ready
:class:`inference.cascade.Cascade` with a report of what it chose and why.

Stage 1 takes ``C``, its temperature and its "unknown" thresholds from cross-validation on
train whose folds never split a colourway: what stage 1 meets in use is colourways it has
never seen, and val holds other photos of the colourways in train, on which every answer
looks more familiar than a new colourway will. Calibrated on val, stage 1 turned 29% of
the photos of new colourways of known models into "unknown"; calibrated on colourway
folds, it gets the model of 97.7% of them right (demo data, 7 photos per colourway in
train, each colourway held out in turn: BENCHMARKS.md, open set).
Its open-set similarity is a Mahalanobis familiarity (:class:`inference.cascade.Familiarity`),
whose threshold comes from more, finer folds than the heads' (:func:`_familiarity_held_out`).
Stage 2 recognises the SKUs it was trained on, so val is the right place to tune it, where
val has enough examples; otherwise it too cross-validates (folds never split an image).
Val falls back in for stage 1 where train has too few colourways to fold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from inference.cascade import UNSURE_BELOW, Cascade, Head, normalise
from training.calibration import (
    KEEP_CONFIDENT,
    KEEP_SIMILAR,
    MIN_CALIBRATION,
    fit_temperature,
    keep_threshold,
)
from training.heads import (
    C_GRID,
    DEFAULT_C,
    LinearFit,
    centroids,
    fit_familiarity,
    fit_grouped,
    fit_linear,
    group_folds,
    torch_threads,
)

CV_FOLDS = 3
FAMILIARITY_FOLDS = 10
CV_MAX_SAMPLES = 20_000
"""Cross-validation runs on at most this many training rows (a seeded sample above it)."""
SIBLING_QUANTILE = 0.5
"""Where stage 2 has no held-out photo of an SKU it knows (one photo per colourway), its
similarity threshold is this quantile of how close photos of sibling colourways come
(:func:`_sibling_threshold`). Demo sneakers, one train photo per colourway, one colourway
per model left out in turn, other photos of the known colourways as probes; new
colourways' SKU unknown / known SKU right, at 224 px (bench data) and at 96 px (the tests'):
no threshold: 6% / 80% (96 px); 0.5: 31% / 93.3% and 48% / 75%; 0.75: 48% / 90% and
73% / 61%. The median gives up little on known SKUs where the pictures are good and keeps
a fair share of new colourways from getting a wrong SKU."""
MIN_PHOTO_CENTER = 20
"""Field copies needed before a stage centres photos on their mean rather than ``center``."""
MIN_VAL = 10
"""Val needs this many examples of known classes to choose C and calibrate on."""
MAX_MIN_CONFIDENCE = 0.9
"""The confidence threshold never exceeds this: where val is all right the calibrated
confidences crowd near 1 and a quantile of them would turn good answers into unknowns."""
STAGE1_MAX_MIN_CONFIDENCE = 0.5
"""Stage 1 says "unknown" for low confidence only below even odds: its open-set answer is
the familiarity, which separates never-seen models better (BENCHMARKS.md, open set), and
a confidence bar set on a few held-out colourways turned good answers into unknowns.
Demo sneakers, one photo per colourway, one colourway per model left out in turn: new
colourways' model right / never-seen model unknown, with the bar as cross-validation set
it (0.43 to 0.78): 90.3% / 44%; capped at 0.5: 93.7% / 26%; no bar: 95.0% / 23%. With 7
photos per colourway: 97.0% / 62%, 97.7% / 56%, 98.0% / 55%. Recognising new colourways
is what stage 1 is for, and near-twin silhouettes (Jordan 1 High and Mid) make confident
answers rarer on real catalogues, so the bar stops at even odds."""


@dataclass
class Embedded:
    """Examples with their labels and embeddings (raw backbone vectors)."""

    image_ids: list[int]
    models: list[str]
    skus: list[str | None]
    gray: torch.Tensor
    colour: torch.Tensor
    gray_flip: torch.Tensor | None = None
    colour_flip: torch.Tensor | None = None
    field_rows: list[int] = field(default_factory=list)
    """Field copies (product shots made into photos, :mod:`training.field`): the row of the
    example each one was made from, and their embeddings in ``field_gray``/``field_colour``."""
    field_gray: torch.Tensor | None = None
    field_colour: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, keep: Sequence[int]) -> Embedded:
        idx = torch.tensor(list(keep), dtype=torch.long)

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx]

        new_row = {old: new for new, old in enumerate(keep)}
        copies = [j for j, r in enumerate(self.field_rows) if r in new_row]
        cidx = torch.tensor(copies, dtype=torch.long)
        return Embedded(
            [self.image_ids[i] for i in keep],
            [self.models[i] for i in keep],
            [self.skus[i] for i in keep],
            self.gray[idx],
            self.colour[idx],
            pick(self.gray_flip),
            pick(self.colour_flip),
            [new_row[self.field_rows[j]] for j in copies],
            None if self.field_gray is None or not copies else self.field_gray[cidx],
            None if self.field_colour is None or not copies else self.field_colour[cidx],
        )

    def training_rows(self) -> list[int]:
        """The example behind each row of :meth:`stacked`: plain, flipped, field copies."""
        n = len(self)
        rows = list(range(n)) * (1 if self.gray_flip is None else 2)
        return rows + (self.field_rows if self.field_gray is not None else [])

    def stacked(self, view: str) -> torch.Tensor:
        """Every training row of one view: the pictures, their mirror images, field copies."""
        parts = [getattr(self, view)]
        if getattr(self, f"{view}_flip") is not None:
            parts.append(getattr(self, f"{view}_flip"))
        if self.field_gray is not None and self.field_rows:
            parts.append(getattr(self, f"field_{view}"))
        return torch.cat(parts) if len(parts) > 1 else parts[0]


@dataclass
class StageReport:
    n_classes: int
    n_train: int
    C: float
    chosen_on: str  # val | cv | fixed | default
    temperature: float
    calibrated_on: str | None
    min_confidence: float
    min_similarity: float | None
    scores: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class StageProblem:
    """One stage as a classification problem: normalised features and labels."""

    x: torch.Tensor
    y: torch.Tensor
    cv_groups: list[int]
    n_classes: int
    class_groups: list[list[int]] | None  # stage 2: SKUs per model; None for stage 1
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None
    use_familiarity: bool = False
    """Stage 1: open-set similarity by Mahalanobis familiarity, not centroid cosine."""
    photos: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None
    """Field copies (features centred on the photo centre, labels, fold groups): they join
    the familiarity, so that a photo of a known model is as familiar as its product shots
    are, but not the head."""

    def familiar_rows(
        self, x: torch.Tensor, y: torch.Tensor, groups: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Rows the familiarity is fitted on: ``x`` and the photos."""
        if self.photos is None:
            return x, y, groups
        px, py, pg = self.photos
        return torch.cat([x, px]), torch.cat([y, py]), groups + pg

    def fit(
        self, x: torch.Tensor, y: torch.Tensor, C: float, init: LinearFit | None = None
    ) -> LinearFit:
        if self.class_groups is None:
            return fit_linear(x, y, self.n_classes, C=C, init=init)
        return fit_grouped(x, y, self.class_groups, self.n_classes, C=C, init=init)

    def same_group(self) -> torch.Tensor | None:
        if self.class_groups is None:
            return None
        m = torch.zeros(self.n_classes, self.n_classes, dtype=torch.bool)
        for g in self.class_groups:
            idx = torch.tensor(g)
            m[idx.unsqueeze(1), idx.unsqueeze(0)] = True
        return m

    def informative(self, y: torch.Tensor) -> torch.Tensor:
        """Rows whose true class competes with others (stage 2: models with 2+ SKUs)."""
        if self.class_groups is None:
            return torch.ones(len(y), dtype=torch.bool)
        size = torch.zeros(self.n_classes, dtype=torch.long)
        for g in self.class_groups:
            size[torch.tensor(g)] = len(g)
        return size[y] >= 2


def masked_logits(
    logits: torch.Tensor, y: torch.Tensor, same_group: torch.Tensor | None
) -> torch.Tensor:
    """Stage 2 competes only among the true model's SKUs: other logits become -inf."""
    if same_group is None:
        return logits
    return logits.masked_fill(~same_group[y], float("-inf"))


def _score(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    acc = float((logits.argmax(1) == y).float().mean())
    nll = float(F.cross_entropy(logits, y))
    return acc, -nll


def _cv_sample(p: StageProblem, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(features, labels, fold groups) of the rows cross-validation runs on: all of train,
    or a seeded sample of ``CV_MAX_SAMPLES`` rows above that."""
    rows = torch.arange(len(p.y))
    if len(rows) > CV_MAX_SAMPLES:
        generator = torch.Generator().manual_seed(seed)
        rows = torch.randperm(len(rows), generator=generator)[:CV_MAX_SAMPLES].sort().values
    return p.x[rows], p.y[rows], [p.cv_groups[i] for i in rows.tolist()]


def _held_out(
    p: StageProblem,
    C_values: Sequence[float],
    seed: int,
    on_val: bool,
    photo_scores: dict[float, tuple[float, float]] | None = None,
) -> dict[float, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per C: (logits, labels, similarity to the prediction) on val or cross-validated train
    (in cross-validation, no similarity for a familiarity: see :func:`_familiarity_held_out`).

    In cross-validation, held-out rows whose class has no example left in the fold's train
    part (a model whose only colourway is held out) are dropped: no C or temperature can
    answer them, and they would only push the calibration towards doubting everything.
    """
    same = p.same_group()
    out = {}
    if on_val:
        assert p.x_val is not None and p.y_val is not None
        fit = None
        sim = None
        for C in sorted(C_values):  # warm start: each C from the last, weaker-penalty one
            fit = p.fit(p.x, p.y, C, init=fit)
            logits = masked_logits(p.x_val @ fit.weight.T + fit.bias, p.y_val, same)
            if sim is None or not p.use_familiarity:
                sim = _similarity(p, p.x, p.y, p.x_val, logits.argmax(1))
            out[C] = (logits, p.y_val, sim)
        return out
    x, y, groups = _cv_sample(p, seed)
    folds = group_folds(groups, min(CV_FOLDS, len(set(groups))), seed)
    fits: list[LinearFit | None] = [None] * len(folds)
    photo_folds = []
    if p.photos is not None and photo_scores is not None:
        px, py, pg = p.photos
        for test_idx in folds:  # a colourway's photos are held out with its product shots
            held = {groups[i] for i in test_idx.tolist()}
            photo_folds.append(torch.tensor([g in held for g in pg], dtype=torch.bool))
    for C in sorted(C_values):
        parts = []
        photo_parts = []
        for f, test_idx in enumerate(folds):
            train_mask = torch.ones(len(y), dtype=torch.bool)
            train_mask[test_idx] = False
            xt, yt = x[train_mask], y[train_mask]
            known = torch.zeros(p.n_classes, dtype=torch.bool)
            known[yt] = True
            test_idx = test_idx[known[y[test_idx]]]
            fit = fits[f] = p.fit(xt, yt, C, init=fits[f])
            logits = masked_logits(x[test_idx] @ fit.weight.T + fit.bias, y[test_idx], same)
            # a familiarity's threshold comes from its own, finer folds (_familiarity_held_out)
            sim = (
                torch.empty(0)
                if p.use_familiarity
                else _similarity(p, xt, yt, x[test_idx], logits.argmax(1))
            )
            parts.append((logits, y[test_idx], sim))
            if photo_folds:
                rows = photo_folds[f] & known[py]
                photo_parts.append((px[rows] @ fit.weight.T + fit.bias, py[rows]))
        if photo_parts and photo_scores is not None:
            photo_logits = torch.cat([a for a, _ in photo_parts])
            if len(photo_logits):
                photo_scores[C] = _score(photo_logits, torch.cat([b for _, b in photo_parts]))
        out[C] = tuple(torch.cat([part[i] for part in parts]) for i in range(3))  # type: ignore[assignment]
    return out


def _familiarity_held_out(p: StageProblem, seed: int) -> torch.Tensor:
    """Familiarity of cross-validated train rows to the rest, with up to ``FAMILIARITY_FOLDS``.

    More folds than the heads' cross-validation: the distance to the nearest model grows as
    a fold's train part loses colourways, and its threshold should be set on train parts
    nearly as rich as the whole of train. Rows of classes absent from a fold's train part
    are left out, as in :func:`_held_out`. Fitting a familiarity is a mean and an
    eigendecomposition, so the extra folds cost little.
    """
    x, y, groups = p.familiar_rows(*_cv_sample(p, seed))
    parts = []
    for test_idx in group_folds(groups, min(FAMILIARITY_FOLDS, len(set(groups))), seed):
        train_mask = torch.ones(len(y), dtype=torch.bool)
        train_mask[test_idx] = False
        known = torch.zeros(p.n_classes, dtype=torch.bool)
        known[y[train_mask]] = True
        test_idx = test_idx[known[y[test_idx]]]
        fam = fit_familiarity(x[train_mask], y[train_mask], p.n_classes)
        parts.append(fam.scores(x[test_idx]))
    return torch.cat(parts) if parts else torch.empty(0)


def _similarity(
    p: StageProblem,
    x_ref: torch.Tensor,
    y_ref: torch.Tensor,
    x: torch.Tensor,
    pred: torch.Tensor,
) -> torch.Tensor:
    """Held-out similarity as the head will measure it (familiarity, else centroid cosine)."""
    if p.use_familiarity:
        return fit_familiarity(x_ref, y_ref, p.n_classes).scores(x)
    return (x * centroids(x_ref, y_ref, p.n_classes)[pred]).sum(1)


def fit_stage(
    p: StageProblem,
    C: float | None,
    keep_confident: float,
    keep_similar: float,
    seed: int = 0,
    cv_grid: Sequence[float] = C_GRID,
    prefer_cv: bool = False,
) -> tuple[Head, StageReport]:
    """Choose C, fit the head on all of train, calibrate, set the thresholds.

    On val (C from ``C_GRID``) where val is big enough, unless ``prefer_cv`` asks for
    cross-validation on train (C from ``cv_grid``) and train has the groups to fold.
    """
    notes: list[str] = []
    has_val = p.y_val is not None and len(p.y_val) >= MIN_VAL
    can_cv = len(set(p.cv_groups)) >= 2
    source = "cv" if can_cv and (prefer_cv or not has_val) else "val" if has_val else None
    held: dict[float, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    photo_scores: dict[float, tuple[float, float]] = {}
    grid = [C] if C is not None else list(C_GRID if source == "val" else cv_grid)
    if p.n_classes >= 2 and source is not None:
        held = _held_out(p, grid, seed, on_val=source == "val", photo_scores=photo_scores)
        if not len(held[grid[0]][1]):
            held = {}
            notes.append("no held-out example of a class that train also has: defaults used")
    elif p.n_classes >= 2:
        notes.append("too little data to choose C or calibrate: defaults used")
    scores = {c: _score(*held[c][:2]) for c in held}
    product_scores = dict(scores)
    if photo_scores and set(photo_scores) == set(scores):
        # C is chosen for product shots and photos alike: the best C on product shots alone
        # is the weakest penalty, which generalises worst to photos (BENCHMARKS.md)
        scores = {
            c: tuple((a + b) / 2 for a, b in zip(scores[c], photo_scores[c], strict=True))
            for c in scores
        }
    if C is not None:
        chosen, chosen_on = C, "fixed"
    elif len(grid) == 1:
        chosen, chosen_on = grid[0], "stage 1"
    elif scores:
        chosen, chosen_on = max(scores, key=lambda c: scores[c]), source or "default"
    else:
        chosen, chosen_on = DEFAULT_C, "default"
    fit = p.fit(p.x, p.y, chosen)
    head = Head(
        weight=fit.weight,
        bias=fit.bias,
        center=torch.zeros(p.x.shape[1]),  # set by the caller
        centroids=centroids(p.x, p.y, p.n_classes),
        familiarity=(
            fit_familiarity(*p.familiar_rows(p.x, p.y, [])[:2], p.n_classes)
            if p.use_familiarity
            else None
        ),
    )
    calibrated_on = None
    if chosen in held:
        logits, y, sim = held[chosen]
        rows = p.informative(y)
        if int(rows.sum()) >= MIN_CALIBRATION:
            head.temperature = fit_temperature(logits[rows], y[rows])
            calibrated_on = source
        probs = torch.softmax(logits / head.temperature, 1)
        conf, pred = probs.max(1)
        correct = pred == y
        t_conf = keep_threshold(conf[rows], correct[rows], keep_confident)
        if p.use_familiarity and source == "cv":
            familiar = _familiarity_held_out(p, seed)
            t_sim = keep_threshold(familiar, torch.ones(len(familiar)), keep_similar)
        else:
            t_sim = keep_threshold(sim, correct, keep_similar)
        cap = STAGE1_MAX_MIN_CONFIDENCE if p.use_familiarity else MAX_MIN_CONFIDENCE
        head.min_confidence = min(t_conf, cap) if t_conf is not None else 0.0
        head.min_similarity = t_sim
        if t_conf is None:
            notes.append("too few correct held-out answers for a confidence threshold")
    else:
        notes.append("not calibrated (no val and no cross-validation possible)")
        t_sib = _sibling_threshold(p, head) if p.class_groups is not None else None
        if t_sib is not None:
            head.min_similarity = t_sib
            calibrated_on = "siblings"
            notes.append(
                "SKU threshold from sibling colourways instead (no held-out photo of an SKU "
                f"in train): a photo must look more like its SKU than {SIBLING_QUANTILE:.0%} of "
                "the train photos of its model's other colourways do"
            )
    report = StageReport(
        n_classes=p.n_classes,
        n_train=len(p.y),
        C=chosen,
        chosen_on=chosen_on,
        temperature=head.temperature,
        calibrated_on=calibrated_on,
        min_confidence=head.min_confidence,
        min_similarity=head.min_similarity,
        scores={
            str(c): {"accuracy": a, "nll": -n}
            | (
                {"photo_accuracy": photo_scores[c][0], "photo_nll": -photo_scores[c][1]}
                if c in photo_scores
                else {}
            )
            for c, (a, n) in sorted(product_scores.items())
        },
        notes=notes,
    )
    return head, report


def _sibling_threshold(p: StageProblem, head: Head) -> float | None:
    """Stage 2's similarity threshold where nothing is held out (one photo per colourway).

    Leave one SKU out: each train photo's similarity to the nearest centroid among its
    model's other SKUs is what a new colourway of that model looks like to stage 2. The
    threshold is the ``SIBLING_QUANTILE`` of those; photos of an SKU it knows, which it
    cannot measure here, lie mostly above it (demo data: see ``SIBLING_QUANTILE``).
    None where no model has two SKUs.
    """
    assert p.class_groups is not None
    model_of = torch.full((p.n_classes,), -1, dtype=torch.long)
    for g, group in enumerate(p.class_groups):
        model_of[group] = g
    sims = p.x @ head.centroids.T  # rows x SKUs
    same_model = model_of[None, :] == model_of[p.y][:, None]
    same_model[torch.arange(len(p.y)), p.y] = False  # leave the photo's own SKU out
    best = sims.masked_fill(~same_model, float("-inf")).max(1).values
    best = best[same_model.any(1)]
    if len(best) < MIN_CALIBRATION:
        return None
    return float(torch.quantile(best, SIBLING_QUANTILE))


def fit_cascade(
    train: Embedded,
    val: Embedded | None = None,
    C: float | None = None,
    keep_confident: float = KEEP_CONFIDENT,
    keep_similar: float = KEEP_SIMILAR,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    field_in_heads: bool = False,
) -> tuple[Cascade, dict[str, Any]]:
    """Fit stage 1 on every train example and stage 2 on those with an SKU label.

    ``train``'s field copies give each stage its ``photo_center`` (the mean of the
    generated photos); they join the heads' training rows only with ``field_in_heads``
    (on the real development set that made field photos worse: BENCHMARKS.md).
    """
    if len(train) == 0:
        raise ValueError("no labelled training images: label some and put them in train")
    small = len(train) * train.gray.shape[1] < 5_000_000
    with torch_threads(1 if small else torch.get_num_threads()):
        return _fit_cascade(
            train, val, C, keep_confident, keep_similar, seed, progress, field_in_heads
        )


def _photo_center(field_view: torch.Tensor | None, rows: list[int]) -> torch.Tensor | None:
    """Mean of the field copies' embeddings (None without enough of them)."""
    if field_view is None or len(rows) < MIN_PHOTO_CENTER:
        return None
    return field_view.float().mean(0)


def _fit_cascade(
    train: Embedded,
    val: Embedded | None,
    C: float | None,
    keep_confident: float,
    keep_similar: float,
    seed: int,
    progress: Callable[[str], None] | None,
    field_in_heads: bool = False,
) -> tuple[Cascade, dict[str, Any]]:
    full = train
    if not field_in_heads:
        train = replace(train, field_rows=[], field_gray=None, field_colour=None)
    models = sorted(set(train.models))
    model_index = {m: i for i, m in enumerate(models)}
    copies = 1 if train.gray_flip is None else 2
    say = progress or (lambda _msg: None)

    say(f"stage 1: {len(models)} models, {len(train)} images")
    rows1 = train.training_rows()
    gray_all = train.stacked("gray")
    center1 = gray_all.mean(0)
    y1 = torch.tensor([model_index[train.models[r]] for r in rows1])
    colourway = {s: i for i, s in enumerate(sorted({s or "" for s in train.skus}))}
    group_of = [colourway[s] if s else len(colourway) + i for i, s in enumerate(train.skus)]
    groups1 = [group_of[r] for r in rows1]  # a colourway's copies stay in its fold
    val1 = _val_rows(val, lambda e_model, _sku: model_index.get(e_model))
    photo_center1 = _photo_center(full.field_gray, full.field_rows)
    photos1 = None
    if photo_center1 is not None and not field_in_heads:
        assert full.field_gray is not None
        photos1 = (
            normalise(full.field_gray, photo_center1),
            torch.tensor([model_index[full.models[r]] for r in full.field_rows]),
            [group_of[r] for r in full.field_rows],
        )
    p1 = StageProblem(
        x=normalise(gray_all, center1),
        y=y1,
        cv_groups=groups1,
        n_classes=len(models),
        class_groups=None,
        x_val=None if val1 is None else normalise(val1[0].gray, center1),
        y_val=None if val1 is None else val1[1],
        use_familiarity=True,
        photos=photos1,
    )
    stage1, report1 = fit_stage(p1, C, keep_confident, keep_similar, seed, prefer_cv=True)
    stage1.center = center1
    stage1.photo_center = photo_center1
    if len(models) == 1:
        report1.notes.append("one model only: stage 1 always answers it")

    with_sku = [i for i, s in enumerate(train.skus) if s]
    skus: list[str] = sorted({s for s in train.skus if s})
    sku_model_name: dict[str, str] = {}
    for i in with_sku:
        sku_model_name[train.skus[i]] = train.models[i]  # type: ignore[index]
    sku_model = [model_index[sku_model_name[s]] for s in skus]
    stage2 = None
    report2: StageReport | None = None
    if skus:
        say(f"stage 2: {len(skus)} SKUs, {len(with_sku)} images")
        sub = train.subset(with_sku)
        sku_index = {s: i for i, s in enumerate(skus)}
        rows2 = sub.training_rows()
        colour_all = sub.stacked("colour")
        center2 = colour_all.mean(0)
        groups = [[] for _ in models]  # type: list[list[int]]
        for s, m in enumerate(sku_model):
            groups[m].append(s)
        val2 = _val_rows(
            val,
            lambda e_model, e_sku: (
                sku_index.get(e_sku) if e_sku and sku_model_name.get(e_sku) == e_model else None
            ),
        )
        p2 = StageProblem(
            x=normalise(colour_all, center2),
            y=torch.tensor([sku_index[sub.skus[r]] for r in rows2]),  # type: ignore[index]
            cv_groups=rows2,
            n_classes=len(skus),
            class_groups=[g for g in groups if g],
            x_val=None if val2 is None else normalise(val2[0].colour, center2),
            y_val=None if val2 is None else val2[1],
        )
        # Without val, stage 2 reuses stage 1's C: cross-validating C per SKU group costs
        # many fits and, with a photo or two per colourway, measures little.
        stage2, report2 = fit_stage(p2, C, keep_confident, keep_similar, seed, cv_grid=[report1.C])
        stage2.center = center2
        sub_full = full.subset(with_sku)
        stage2.photo_center = _photo_center(sub_full.field_colour, sub_full.field_rows)
    cascade = Cascade(
        models=models,
        skus=skus,
        sku_model=sku_model,
        stage1=stage1,
        stage2=stage2,
        unsure_below=UNSURE_BELOW,
    )
    report = {
        "stage1": report1.__dict__,
        "stage2": None if report2 is None else report2.__dict__,
        "flip_augmented": copies == 2,
        "field_copies": len(full.field_rows) if full.field_gray is not None else 0,
        "field_in_heads": field_in_heads,
        "photo_center": stage1.photo_center is not None,
    }
    return cascade, report


def _val_rows(
    val: Embedded | None, label: Callable[[str, str | None], int | None]
) -> tuple[Embedded, torch.Tensor] | None:
    """Val examples whose class the stage knows, with their class index."""
    if val is None or len(val) == 0:
        return None
    keep, ys = [], []
    for i, (m, s) in enumerate(zip(val.models, val.skus, strict=True)):
        c = label(m, s)
        if c is not None:
            keep.append(i)
            ys.append(c)
    if not keep:
        return None
    return val.subset(keep), torch.tensor(ys)
