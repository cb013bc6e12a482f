"""Evaluating a cascade: per stage accuracy, F1, per-class figures, confusion, calibration.

Works on the answers of :func:`inference.cascade.decide`, the same code that serves
predictions, so what is measured is what is served.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from inference.cascade import Cascade, CascadePrediction, decide
from training.calibration import coverage_curve, ece

DENSE_CONFUSION_MAX = 60
"""Up to this many classes the confusion matrix is stored dense and drawn."""


def _clean(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def stage_metrics(
    truths: Sequence[str],
    top3: Sequence[Sequence[str]],
    confidences: Sequence[float],
    accepted: Sequence[bool],
    classes: Sequence[str],
) -> dict[str, Any]:
    """Metrics of one stage on examples whose true class the stage knows."""
    n = len(truths)
    if n == 0:
        return {"n": 0, "note": "no examples of known classes: not measured"}
    preds = [t[0] if t else "" for t in top3]
    correct = torch.tensor([p == t for p, t in zip(preds, truths, strict=True)])
    conf = torch.tensor(list(confidences), dtype=torch.float32)
    acc_mask = torch.tensor(list(accepted))
    labels = sorted(set(truths) | (set(preds) - {""}))
    prec, rec, f1s, support = precision_recall_fscore_support(
        truths, preds, labels=labels, zero_division=0
    )
    kept = int(acc_mask.sum())
    cm = confusion_matrix(truths, preds, labels=labels)
    out: dict[str, Any] = {
        "n": n,
        "top1": float(correct.float().mean()),
        "top3": sum(t in tt for t, tt in zip(truths, top3, strict=True)) / n,
        "macro_f1": float(
            f1_score(truths, preds, labels=sorted(set(truths)), average="macro", zero_division=0)
        ),
        "ece": ece(conf, correct),
        "coverage": kept / n,
        "accuracy_at_threshold": _clean(float(correct[acc_mask].float().mean())) if kept else None,
        "coverage_curve": coverage_curve(conf, correct),
        "per_class": {
            c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(labels, prec, rec, f1s, support, strict=True)
        },
        "n_classes_in_model": len(classes),
    }
    if len(labels) <= DENSE_CONFUSION_MAX:
        out["confusion"] = {"labels": labels, "matrix": cm.tolist()}
    else:
        out["confusion"] = {
            "labels": labels,
            "pairs": [
                [labels[i], labels[j], int(cm[i, j])] for i, j in zip(*cm.nonzero(), strict=True)
            ],
        }
    return out


def evaluate_answers(
    cascade: Cascade,
    answers: Sequence[CascadePrediction],
    models: Sequence[str],
    skus: Sequence[str | None],
) -> dict[str, Any]:
    """Both stages' metrics; how often a model unknown to the cascade came back unknown
    (``open_set``); and for photos of known models in SKUs it was not trained on, how often
    the model was right and the SKU came back unknown (``new_colourways``)."""
    known_models = set(cascade.models)
    known_skus = set(cascade.skus)
    rows1 = [i for i, m in enumerate(models) if m in known_models]
    novel = [i for i, m in enumerate(models) if m not in known_models]
    stage1 = stage_metrics(
        [models[i] for i in rows1],
        [[n for n, _ in answers[i].model_top3] for i in rows1],
        [answers[i].model_confidence for i in rows1],
        [not answers[i].model_unknown for i in rows1],
        cascade.models,
    )
    rows2 = [i for i, s in enumerate(skus) if s and s in known_skus]
    stage2 = stage_metrics(
        [skus[i] or "" for i in rows2],
        [[n for n, _ in answers[i].sku_top3] for i in rows2],
        [answers[i].sku_confidence for i in rows2],
        [not answers[i].sku_unknown for i in rows2],
        cascade.skus,
    )
    out: dict[str, Any] = {"n": len(models), "stage1": stage1, "stage2": stage2}
    new_colourways = [
        i for i in rows1 if skus[i] and skus[i] not in known_skus and cascade.stage2 is not None
    ]
    if new_colourways:  # a known model in a colourway stage 2 never saw: its SKU is unknown
        out["new_colourways"] = {
            "n": len(new_colourways),
            "model_top1": sum(answers[i].model == models[i] for i in new_colourways)
            / len(new_colourways),
            "sku_answered_unknown": sum(answers[i].sku_unknown for i in new_colourways)
            / len(new_colourways),
        }
    if novel:
        out["open_set"] = {
            "n_unknown_models": len(novel),
            "answered_unknown": sum(answers[i].model_unknown for i in novel) / len(novel),
        }
    return out


def evaluate_embeddings(
    cascade: Cascade,
    gray: torch.Tensor,
    colour: torch.Tensor,
    models: Sequence[str],
    skus: Sequence[str | None],
) -> dict[str, Any]:
    if len(models) == 0:
        return {"n": 0, "note": "no examples in this split: not measured"}
    with torch.inference_mode():
        answers = decide(cascade, gray, colour)
    return evaluate_answers(cascade, answers, models, skus)


def draw_confusion(metrics: dict[str, Any], title: str, path: Path) -> Path | None:
    """A PNG of a dense confusion matrix (matplotlib, Agg); None when there is none."""
    conf = metrics.get("confusion") or {}
    if "matrix" not in conf:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, matrix = conf["labels"], conf["matrix"]
    size = max(4.0, 0.35 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path


def write_pictures(metrics: dict[str, Any], folder: Path) -> list[str]:
    """Confusion matrices of every split and stage into ``folder``; returns the file names."""
    names = []
    for split in ("val", "test"):
        for stage in ("stage1", "stage2"):
            m = (metrics.get(split) or {}).get(stage)
            if not m:
                continue
            name = f"confusion_{split}_{stage}.png"
            if draw_confusion(m, f"{split} {stage}", folder / name):
                names.append(name)
    return names
