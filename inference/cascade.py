"""The cascade's heads and the decision from embeddings to an answer.

Stage 1 is a linear softmax head over sneaker models on the grayscale embedding; stage 2
a linear head over SKUs on the colour embedding whose softmax runs within one model's
SKUs. Embeddings are centred on the training mean and L2-normalised before the heads; a
region of a photo (not a product shot on a plain background) is centred on the mean of the
photos the run generated from its product shots instead (``photo_center``): what makes a
photo a photo (background, light, camera) moves every embedding the same way, and the
photo mean takes that shift out before the heads see it.
Confidences are temperature-scaled; an answer is "unknown" (``None``) when its
stage's own confidence (stage 2: P(SKU | model)) is below the stage's threshold, or when the
embedding lies far from what the stage was trained on: stage 1 measures that as the
Mahalanobis distance to the nearest model (class means, one shared, shrunk within-class
covariance: :class:`Familiarity`), stage 2 as the cosine to the predicted SKU's centroid.
Both catch sneakers that the catalogue does not have better than a softmax alone.

:func:`decide` is used by prediction, evaluation and suggestions alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

UNSURE_BELOW = 0.6
"""Stage 1 is "unsure" below this confidence: stage 2 then also looks at its runner-up."""


@dataclass
class CascadePrediction:
    """The answer for one image. ``model``/``sku`` are ``None`` when unknown."""

    model: str | None
    model_confidence: float
    sku: str | None
    sku_confidence: float
    model_top3: list[tuple[str, float]]
    sku_top3: list[tuple[str, float]]
    model_unknown: bool
    sku_unknown: bool
    margin: float = 0.0
    """Stage 1's top-1 minus top-2 confidence (small: worth a human look)."""
    sku_model: str | None = None
    """The model the SKU belongs to (stage 1's runner-up when stage 1 was unsure).

    ``sku_confidence`` is P(model) x P(SKU | model): the chance that both are right.
    """

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_confidence": round(self.model_confidence, 6),
            "sku": self.sku,
            "sku_confidence": round(self.sku_confidence, 6),
            "model_top3": [{"name": n, "confidence": round(c, 6)} for n, c in self.model_top3],
            "sku_top3": [{"name": n, "confidence": round(c, 6)} for n, c in self.sku_top3],
            "model_unknown": self.model_unknown,
            "sku_unknown": self.sku_unknown,
            "margin": round(self.margin, 6),
            "sku_model": self.sku_model,
        }


@dataclass
class Familiarity:
    """How near an embedding lies to the training data of its nearest class.

    The squared Mahalanobis distance to each class mean under one within-class covariance,
    shrunk towards a multiple of the identity, ``S = cov + a I``, which keeps it defined on a
    few dozen images of 1,280 dimensions. ``S``'s inverse is stored in low rank:
    ``iso * I + basis.T @ diag(basis_weight) @ basis`` (the top eigenvectors of ``cov``).
    The score is minus the distance per dimension: higher is more familiar.
    """

    means: torch.Tensor  # classes x dim
    basis: torch.Tensor  # rank x dim, orthonormal rows
    basis_weight: torch.Tensor  # rank, 1/(eigenvalue + a) - 1/a (<= 0)
    iso: float  # 1/a

    def scores(self, feats: torch.Tensor) -> torch.Tensor:
        """Familiarity of each row of ``feats`` (N x dim) to its nearest class: N."""
        dim = feats.shape[1]
        d2 = self.iso * torch.cdist(feats.float(), self.means).square()  # N x classes
        pf = feats.float() @ self.basis.T  # N x rank
        pm = self.means @ self.basis.T  # classes x rank
        w = self.basis_weight
        # sum_k w_k (pf_k - pm_k)^2, expanded so that no N x classes x rank tensor is built
        d2 = d2 + (pf.square() @ w)[:, None] - 2 * (pf * w) @ pm.T + (pm.square() @ w)[None, :]
        return -d2.clamp_min(0).min(1).values / dim


@dataclass
class Head:
    """A linear head on centred, L2-normalised embeddings, with its calibration."""

    weight: torch.Tensor  # classes x dim
    bias: torch.Tensor  # classes
    center: torch.Tensor  # dim
    centroids: torch.Tensor  # classes x dim, unit length (0 rows for classes without data)
    temperature: float = 1.0
    min_confidence: float = 0.0
    min_similarity: float | None = None
    """Below this similarity the answer is unknown (None: no such threshold)."""
    familiarity: Familiarity | None = None
    """When present (stage 1), the similarity is :meth:`Familiarity.scores`; otherwise the
    cosine to the predicted class's centroid."""
    prototypes: torch.Tensor | None = None
    """Stage 1 of a version-1 bundle: unit-length training features, whose nearest cosine
    was its similarity and what its ``min_similarity`` was set on (read, never fitted)."""
    photo_center: torch.Tensor | None = None
    """Mean embedding of the run's generated photos (field copies): the centre for regions
    of photos. None (older bundles, runs without field copies): ``center`` for all."""

    def similarities(self, feats: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """Similarity of each row of ``feats`` to what the head was trained on: N."""
        if self.familiarity is not None:
            return self.familiarity.scores(feats)
        if self.prototypes is not None and len(self.prototypes):
            return (feats @ self.prototypes.T).max(1).values
        return (feats * self.centroids[predicted]).sum(1)

    def features(self, emb: torch.Tensor, photo: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised features; rows where ``photo`` (N bools) is true use ``photo_center``."""
        if photo is None or self.photo_center is None or not bool(photo.any()):
            return normalise(emb, self.center)
        centers = torch.where(photo[:, None], self.photo_center[None], self.center[None])
        return normalise(emb, centers)

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        return feats @ self.weight.T + self.bias


def normalise(emb: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Centre on the training mean, then scale to unit length."""
    x = emb.float() - center
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)


@dataclass
class Cascade:
    """Both stages with their class lists. ``stage2`` is None when no SKU is labelled."""

    models: list[str]
    skus: list[str]
    sku_model: list[int]  # index into models, per SKU
    stage1: Head
    stage2: Head | None
    unsure_below: float = UNSURE_BELOW
    _groups: list[list[int]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._groups = [[] for _ in self.models]
        for s, m in enumerate(self.sku_model):
            self._groups[m].append(s)

    def skus_of(self, model_index: int) -> list[int]:
        return self._groups[model_index]

    def model_probs(
        self, gray: torch.Tensor, photo: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated stage-1 probabilities and the normalised features."""
        feats = self.stage1.features(gray, photo)
        probs = torch.softmax(self.stage1.logits(feats) / self.stage1.temperature, 1)
        return probs, feats

    def sku_logits(
        self, colour: torch.Tensor, photo: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stage2 is None:
            raise ValueError("this cascade has no SKU stage (no SKU was labelled)")
        feats = self.stage2.features(colour, photo)
        return self.stage2.logits(feats) / self.stage2.temperature, feats

    def sku_given_model(self, logits_row: torch.Tensor, model_index: int) -> torch.Tensor:
        """P(SKU | model) over the model's SKUs (in :meth:`skus_of` order)."""
        group = self._groups[model_index]
        if len(group) == 1:
            return torch.ones(1)
        return torch.softmax(logits_row[group], 0)


def _too_far(similarity: float, threshold: float | None) -> bool:
    return threshold is not None and similarity < threshold


def _top(names: list[str], scores: list[float], k: int = 3) -> list[tuple[str, float]]:
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
    return [(names[i], float(scores[i])) for i in order]


def decide(
    cascade: Cascade,
    gray: torch.Tensor,
    colour: torch.Tensor | None,
    photo: torch.Tensor | None = None,
) -> list[CascadePrediction]:
    """Raw backbone embeddings of a batch (gray view, colour view) -> one answer each.

    ``photo`` (N bools) marks the pictures that are photos rather than product shots
    (:func:`inference.localise.plain_background` says which); None: all product shots.
    """
    probs1, feats1 = cascade.model_probs(gray, photo)
    similarity1 = cascade.stage1.similarities(feats1, probs1.argmax(1))
    sku_logits = sku_feats = None
    if cascade.stage2 is not None and colour is not None:
        sku_logits, sku_feats = cascade.sku_logits(colour, photo)
    out = []
    for i in range(probs1.shape[0]):
        out.append(
            _decide_one(
                cascade,
                probs1[i],
                float(similarity1[i]),
                None if sku_logits is None else sku_logits[i],
                None if sku_feats is None else sku_feats[i],
            )
        )
    return out


def _decide_one(
    cascade: Cascade,
    probs1: torch.Tensor,
    similarity1: float,
    sku_logits: torch.Tensor | None,
    sku_feats: torch.Tensor | None,
) -> CascadePrediction:
    p1 = probs1.tolist()
    order = sorted(range(len(p1)), key=lambda i: -p1[i])
    best = order[0]
    margin = p1[best] - (p1[order[1]] if len(order) > 1 else 0.0)
    model_unknown = p1[best] < cascade.stage1.min_confidence or _too_far(
        similarity1, cascade.stage1.min_similarity
    )
    model_top3 = _top(cascade.models, p1)
    candidates = [best]
    if p1[best] < cascade.unsure_below and len(order) > 1:
        candidates.append(order[1])
    sku_index: list[int] = []
    joint: list[float] = []
    conditional: list[float] = []
    if sku_logits is not None:
        for m in candidates:
            group = cascade.skus_of(m)
            if not group:
                continue
            cond = cascade.sku_given_model(sku_logits, m).tolist()
            sku_index += group
            joint += [p1[m] * c for c in cond]
            conditional += cond
    sku = sku_model = None
    sku_conf = 0.0
    sku_top3 = _top([cascade.skus[s] for s in sku_index], joint)
    if joint and not model_unknown:
        k = max(range(len(joint)), key=lambda j: joint[j])
        sku_conf = joint[k]
        s = sku_index[k]
        assert cascade.stage2 is not None and sku_feats is not None
        similarity2 = float(cascade.stage2.similarities(sku_feats[None], torch.tensor([s]))[0])
        if conditional[k] >= cascade.stage2.min_confidence and not _too_far(
            similarity2, cascade.stage2.min_similarity
        ):
            sku, sku_model = cascade.skus[s], cascade.models[cascade.sku_model[s]]
    return CascadePrediction(
        model=None if model_unknown else cascade.models[best],
        model_confidence=p1[best],
        sku=sku,
        sku_confidence=sku_conf,
        model_top3=model_top3,
        sku_top3=sku_top3,
        model_unknown=model_unknown,
        sku_unknown=sku is None,
        margin=margin,
        sku_model=sku_model,
    )
