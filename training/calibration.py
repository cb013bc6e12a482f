"""Calibration: temperature scaling, expected calibration error, "unknown" thresholds."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

ECE_BINS = 15
KEEP_CONFIDENT = 0.98
"""The confidence threshold keeps this share of the correct answers on the calibration set."""
KEEP_SIMILAR = 0.95
"""The similarity threshold keeps this share of the held-out answers of known classes: the
usual operating point of open-set detection. In an earlier experiment on the demo catalogue
(6 models, 5 colourways, each model held out in turn; before the stage-1 confidence cap of
training.cascade_fit) 0.95 turned 27-43% of a never-seen model's pictures into "unknown"
and 0.5-2.5% of new colourways of known models; 0.97 turned 22-34% and 0.3-2%; 0.9 turned
41-60% and 1.3-4%. Today's numbers: BENCHMARKS.md, open set."""
MIN_CALIBRATION = 5
MIN_TEMPERATURE = 0.3
"""Where held-out answers are all right the likelihood keeps improving as the temperature
falls: this floor stops it before every confidence becomes 1.0."""
"""Fewer calibration examples than this: temperature 1 and no confidence threshold."""


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The temperature (MIN_TEMPERATURE to 20) that minimises the negative log-likelihood on held-out data.

    A 1-D search on a log grid: robust where the held-out answers are all right (the
    likelihood then keeps improving as the temperature falls; the grid's end stops it).
    1.0 with too few samples.
    """
    if len(y) < MIN_CALIBRATION or logits.shape[1] < 2:
        return 1.0
    grid = torch.logspace(math.log10(MIN_TEMPERATURE), math.log10(20.0), 101)
    with torch.no_grad():
        nll = torch.stack([F.cross_entropy(logits / t, y) for t in grid])
    return float(grid[int(torch.nan_to_num(nll, nan=float("inf")).argmin())])


def ece(confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error: mean |accuracy - confidence| over equal-width bins."""
    if len(confidence) == 0:
        return float("nan")
    edges = torch.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi)
        if mask.any():
            gap = correct[mask].float().mean() - confidence[mask].mean()
            total += float(mask.float().mean() * gap.abs())
    return total


def keep_threshold(scores: torch.Tensor, correct: torch.Tensor, keep: float) -> float | None:
    """The highest threshold that keeps ``keep`` of the correct answers' scores (None: no data)."""
    good = scores[correct.bool()]
    if len(good) < MIN_CALIBRATION:
        return None
    return float(torch.quantile(good.float(), 1.0 - keep))


def coverage_curve(
    confidence: torch.Tensor, correct: torch.Tensor, points: int = 21
) -> list[dict[str, float]]:
    """Accuracy of the answers kept against the share kept, over confidence thresholds."""
    out = []
    for t in torch.linspace(0, 1, points).tolist():
        kept = confidence >= t
        n = int(kept.sum())
        out.append(
            {
                "threshold": round(t, 3),
                "coverage": n / max(len(confidence), 1),
                "accuracy": float(correct[kept].float().mean()) if n else float("nan"),
            }
        )
    return out
