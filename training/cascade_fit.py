"""Fitting both stages of the cascade on embeddings: heads, C, temperature, thresholds.

Pure functions on tensors (no catalogue): :func:`fit_cascade` takes the embeddings of the
train examples (and of the val examples, if any) and returns a ready
:class:`inference.cascade.Cascade` with a report of what it chose and why.

Where val has enough examples, ``C``, the temperature and the "unknown" thresholds are
chosen on val. Otherwise they come from cross-validation on train whose folds never
split a colourway (stage 1) or an image (stage 2), so that stage 1 is tuned to
recognise colourways it has not seen, which is what it meets in use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    fit_grouped,
    fit_linear,
    group_folds,
    torch_threads,
)

CV_FOLDS = 3
CV_MAX_SAMPLES = 20_000
"""Above this many training rows, no cross-validation: C is the default or chosen on val."""
MIN_VAL = 10
MAX_MIN_CONFIDENCE = 0.9
"""The confidence threshold never exceeds this: where val is all right the calibrated
confidences crowd near 1 and a quantile of them would turn good answers into unknowns."""
PROTOTYPES_PER_CLASS = 32
"""Stage 1 keeps this many training features per model for its open-set similarity."""
"""Val needs this many examples of known classes to choose C and calibrate on."""


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

    def __len__(self) -> int:
        return len(self.image_ids)

    def subset(self, keep: Sequence[int]) -> Embedded:
        idx = torch.tensor(list(keep), dtype=torch.long)

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx]

        return Embedded(
            [self.image_ids[i] for i in keep],
            [self.models[i] for i in keep],
            [self.skus[i] for i in keep],
            self.gray[idx],
            self.colour[idx],
            pick(self.gray_flip),
            pick(self.colour_flip),
        )


@dataclass
class StageReport:
    n_classes: int
    n_train: int
    C: float
    chosen_on: str  # val | cv | fixed | default
    temperature: float
    calibrated_on: str | None
    min_confidence: float
    min_similarity: float
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
    use_prototypes: bool = False

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


def _held_out(
    p: StageProblem, C_values: Sequence[float], seed: int
) -> tuple[dict[float, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], str]:
    """Per C: (logits, labels, similarity to the predicted class centroid) on held-out data."""
    same = p.same_group()
    out = {}
    if p.x_val is not None and p.y_val is not None:
        fit = None
        for C in sorted(C_values):  # warm start: each C from the last, weaker-penalty one
            fit = p.fit(p.x, p.y, C, init=fit)
            logits = masked_logits(p.x_val @ fit.weight.T + fit.bias, p.y_val, same)
            sim = _similarity(p, p.x, p.y, p.x_val, logits.argmax(1))
            out[C] = (logits, p.y_val, sim)
        return out, "val"
    k = min(CV_FOLDS, len(set(p.cv_groups)))
    folds = group_folds(p.cv_groups, k, seed)
    fits: list[LinearFit | None] = [None] * len(folds)
    for C in sorted(C_values):
        parts = []
        for f, test_idx in enumerate(folds):
            train_mask = torch.ones(len(p.y), dtype=torch.bool)
            train_mask[test_idx] = False
            xt, yt = p.x[train_mask], p.y[train_mask]
            fit = fits[f] = p.fit(xt, yt, C, init=fits[f])
            logits = masked_logits(p.x[test_idx] @ fit.weight.T + fit.bias, p.y[test_idx], same)
            sim = _similarity(p, xt, yt, p.x[test_idx], logits.argmax(1))
            parts.append((logits, p.y[test_idx], sim))
        out[C] = tuple(torch.cat([part[i] for part in parts]) for i in range(3))  # type: ignore[assignment]
    return out, "cv"


def _similarity(
    p: StageProblem,
    x_ref: torch.Tensor,
    y_ref: torch.Tensor,
    x: torch.Tensor,
    pred: torch.Tensor,
) -> torch.Tensor:
    """Held-out similarity as the head will measure it (nearest prototype, else centroid)."""
    if p.use_prototypes:
        protos = prototypes(x_ref, y_ref, p.n_classes)
        return (x @ protos.T).max(1).values
    return (x * centroids(x_ref, y_ref, p.n_classes)[pred]).sum(1)


def prototypes(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, per_class: int = PROTOTYPES_PER_CLASS
) -> torch.Tensor:
    """Up to ``per_class`` training features of each class (a fixed, spread-out sample)."""
    keep = []
    for c in range(n_classes):
        idx = (y == c).nonzero().flatten()
        if len(idx) > per_class:
            idx = idx[torch.linspace(0, len(idx) - 1, per_class).long()]
        keep.append(idx)
    return x[torch.cat(keep)] if keep else x[:0]


def fit_stage(
    p: StageProblem,
    C: float | None,
    keep_confident: float,
    keep_similar: float,
    seed: int = 0,
    cv_grid: Sequence[float] = C_GRID,
) -> tuple[Head, StageReport]:
    """Choose C, fit the head on all of train, calibrate, set the thresholds.

    With val, C comes from ``C_GRID``; without, from ``cv_grid`` by cross-validation.
    """
    notes: list[str] = []
    has_val = p.y_val is not None and len(p.y_val) >= MIN_VAL
    can_cv = len(set(p.cv_groups)) >= 2 and len(p.y) <= CV_MAX_SAMPLES
    if not has_val:
        p.x_val = p.y_val = None
    held: dict[float, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    source: str | None = None
    grid = [C] if C is not None else list(C_GRID if has_val else cv_grid)
    if p.n_classes >= 2 and (has_val or can_cv):
        held, source = _held_out(p, grid, seed)
    elif p.n_classes >= 2:
        notes.append("too little data to choose C or calibrate: defaults used")
    scores = {c: _score(*held[c][:2]) for c in held}
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
        prototypes=prototypes(p.x, p.y, p.n_classes) if p.use_prototypes else None,
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
        t_sim = keep_threshold(sim, correct, keep_similar)
        head.min_confidence = min(t_conf, MAX_MIN_CONFIDENCE) if t_conf is not None else 0.0
        head.min_similarity = t_sim if t_sim is not None else -1.0
        if t_conf is None:
            notes.append("too few correct held-out answers for a confidence threshold")
    else:
        notes.append("not calibrated (no val and no cross-validation possible)")
    report = StageReport(
        n_classes=p.n_classes,
        n_train=len(p.y),
        C=chosen,
        chosen_on=chosen_on,
        temperature=head.temperature,
        calibrated_on=calibrated_on,
        min_confidence=head.min_confidence,
        min_similarity=head.min_similarity,
        scores={str(c): {"accuracy": a, "nll": -n} for c, (a, n) in sorted(scores.items())},
        notes=notes,
    )
    return head, report


def _stack(plain: torch.Tensor, flipped: torch.Tensor | None) -> torch.Tensor:
    return plain if flipped is None else torch.cat([plain, flipped])


def fit_cascade(
    train: Embedded,
    val: Embedded | None = None,
    C: float | None = None,
    keep_confident: float = KEEP_CONFIDENT,
    keep_similar: float = KEEP_SIMILAR,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[Cascade, dict[str, Any]]:
    """Fit stage 1 on every train example and stage 2 on those with an SKU label."""
    if len(train) == 0:
        raise ValueError("no labelled training images: label some and put them in train")
    small = len(train) * train.gray.shape[1] < 5_000_000
    with torch_threads(1 if small else torch.get_num_threads()):
        return _fit_cascade(train, val, C, keep_confident, keep_similar, seed, progress)


def _fit_cascade(
    train: Embedded,
    val: Embedded | None,
    C: float | None,
    keep_confident: float,
    keep_similar: float,
    seed: int,
    progress: Callable[[str], None] | None,
) -> tuple[Cascade, dict[str, Any]]:
    models = sorted(set(train.models))
    model_index = {m: i for i, m in enumerate(models)}
    copies = 1 if train.gray_flip is None else 2
    say = progress or (lambda _msg: None)

    say(f"stage 1: {len(models)} models, {len(train)} images")
    gray_all = _stack(train.gray, train.gray_flip)
    center1 = gray_all.mean(0)
    y1 = torch.tensor([model_index[m] for m in train.models] * copies)
    colourway = {s: i for i, s in enumerate(sorted({s or "" for s in train.skus}))}
    groups1 = [colourway[s] if s else len(colourway) + i for i, s in enumerate(train.skus)] * copies
    val1 = _val_rows(val, lambda e_model, _sku: model_index.get(e_model))
    p1 = StageProblem(
        x=normalise(gray_all, center1),
        y=y1,
        cv_groups=groups1,
        n_classes=len(models),
        class_groups=None,
        x_val=None if val1 is None else normalise(val1[0].gray, center1),
        y_val=None if val1 is None else val1[1],
        use_prototypes=True,
    )
    stage1, report1 = fit_stage(p1, C, keep_confident, keep_similar, seed)
    stage1.center = center1
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
        colour_all = _stack(sub.colour, sub.colour_flip)
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
            y=torch.tensor([sku_index[s] for s in sub.skus] * copies),  # type: ignore[index]
            cv_groups=list(range(len(sub))) * copies,
            n_classes=len(skus),
            class_groups=[g for g in groups if g],
            x_val=None if val2 is None else normalise(val2[0].colour, center2),
            y_val=None if val2 is None else val2[1],
        )
        # Without val, stage 2 reuses stage 1's C: cross-validating C per SKU group costs
        # many fits and, with a photo or two per colourway, measures little.
        stage2, report2 = fit_stage(p2, C, keep_confident, keep_similar, seed, cv_grid=[report1.C])
        stage2.center = center2
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
