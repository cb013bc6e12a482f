"""The one predictor of skulab: load a bundle once, predict images or bytes.

Thread-safe: the backbone and heads are only read (eval mode, ``torch.inference_mode``),
and every call keeps its state in local variables, so an HTTP service may call one
predictor from many threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import nn

from db.images import ImageError
from inference.backbones import build_backbone
from inference.bundle import Bundle, load_bundle
from inference.cascade import CascadePrediction, decide
from inference.localise import Localiser, Region, crop_region, plain_background
from inference.preprocess import VIEWS, View, decode, preprocess

if TYPE_CHECKING:
    from db import Catalogue

BATCH_SIZE = 8
"""Pictures per backbone forward pass (larger batches are slower per image on a CPU)."""


@dataclass
class Sneaker:
    """One sneaker found in a photo: where it is, and the cascade's answer for that region."""

    region: Region
    prediction: CascadePrediction

    def to_dict(self) -> dict[str, Any]:
        return {**self.region.to_dict(), **self.prediction.to_dict()}


NO_SNEAKER = CascadePrediction(
    model=None,
    model_confidence=0.0,
    sku=None,
    sku_confidence=0.0,
    model_top3=[],
    sku_top3=[],
    model_unknown=True,
    sku_unknown=True,
)


@dataclass
class PhotoAnswer:
    """The answer for one photo: every sneaker found in it, the main one first.

    Reading a field of :class:`inference.cascade.CascadePrediction` (``model``, ``sku``,
    ``model_confidence``, ...) on it reads the main sneaker's; a photo with no sneaker
    answers as unknown there, with :attr:`sneaker_found` False.
    """

    sneakers: list[Sneaker]
    size: tuple[int, int]
    localised: bool
    """False where the bundle has no detector and the whole picture was classified."""

    @property
    def sneaker_found(self) -> bool:
        return bool(self.sneakers)

    @property
    def main(self) -> CascadePrediction:
        return self.sneakers[0].prediction if self.sneakers else NO_SNEAKER

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("sneakers", "size", "localised"):
            raise AttributeError(name)
        return getattr(self.main, name)

    def to_dict(self) -> dict[str, Any]:
        """Today's fields for the main sneaker, plus every sneaker with its box."""
        return {
            **self.main.to_dict(),
            "sneaker_found": self.sneaker_found,
            "box": list(self.sneakers[0].region.box) if self.sneakers else None,
            "sneakers": [s.to_dict() for s in self.sneakers],
            "image_size": list(self.size),
        }


class NoActiveModel(LookupError):
    """The catalogue has no active run to predict with."""


def active_bundle_dir(cat: Catalogue) -> tuple[int, Path]:
    """The active run's id and bundle folder."""
    from sqlalchemy import select

    from db.models import Run

    with cat.read() as s:
        run = s.scalars(select(Run).where(Run.active.is_(True)).order_by(Run.id.desc())).first()
        if run is None or not run.bundle_path:
            raise NoActiveModel(
                f"{cat.data_dir}: no active model; train one with "
                "`python -m training fit --promote`"
            )
        return run.id, cat.data_dir / run.bundle_path


def run_bundle_dir(cat: Catalogue, run_id: int) -> Path:
    """The bundle folder of run ``run_id`` (which must have succeeded)."""
    from db.models import Run

    with cat.read() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise LookupError(f"no run {run_id} in {cat.data_dir}")
        if run.status != "succeeded" or not run.bundle_path:
            raise LookupError(f"run {run_id} has no model bundle (status {run.status})")
        return cat.data_dir / run.bundle_path


class Predictor:
    """A loaded cascade: ``predict_images``, ``predict_bytes``, ``embed``."""

    def __init__(self, bundle: Bundle, run_id: int | None = None):
        self.bundle = bundle
        self.run_id = run_id
        self.cascade = bundle.cascade
        self.preprocessing = bundle.preprocessing
        self.backbone = load_backbone(bundle)
        self.localiser = Localiser(bundle.detector) if bundle.detector is not None else None

    @classmethod
    def load(cls, bundle_dir: str | os.PathLike[str], run_id: int | None = None) -> Predictor:
        return cls(load_bundle(bundle_dir), run_id=run_id)

    @classmethod
    def from_active(cls, cat: Catalogue) -> Predictor:
        run_id, folder = active_bundle_dir(cat)
        return cls.load(folder, run_id=run_id)

    @property
    def embedding_key(self) -> str:
        """Key of these embeddings in the catalogue's ``embeddings`` table."""
        return self.bundle.embedding_key

    @torch.inference_mode()
    def embed(
        self, images: Sequence[Image.Image], views: tuple[View, ...] = VIEWS
    ) -> dict[View, torch.Tensor]:
        """Raw backbone embeddings (N x dim per view); flip-averaged if the bundle says so."""
        out: dict[View, list[torch.Tensor]] = {v: [] for v in views}
        for start in range(0, len(images), BATCH_SIZE):
            chunk = list(images[start : start + BATCH_SIZE])
            inputs = preprocess(chunk, self.preprocessing, views)
            batch = torch.cat([inputs[v] for v in views])
            feats = self.backbone(batch)
            if self.preprocessing.tta_flip:
                feats = (feats + self.backbone(torch.flip(batch, dims=[3]))) / 2
            for v, part in zip(views, feats.split(len(chunk)), strict=True):
                out[v].append(part.float())
        dim = self.cascade.stage1.center.shape[0]
        return {v: torch.cat(parts) if parts else torch.empty(0, dim) for v, parts in out.items()}

    def classify(
        self, pictures: Sequence[Image.Image], photo: Sequence[bool] | None = None
    ) -> list[CascadePrediction]:
        """The cascade's answer for each picture as a whole (no search for sneakers).

        ``photo`` says which pictures are (regions of) photos rather than product shots;
        by default a picture whose border is not one plain colour is a photo.
        """
        if not pictures:
            return []
        if photo is None:
            photo = [not plain_background(p) for p in pictures]
        views: tuple[View, ...] = ("gray", "colour") if self.cascade.stage2 else ("gray",)
        emb = self.embed(pictures, views)
        with torch.inference_mode():
            return decide(self.cascade, emb["gray"], emb.get("colour"), torch.tensor(list(photo)))

    def predict_images(self, images: Sequence[Image.Image]) -> list[PhotoAnswer]:
        """Answers for decoded RGB photos (see :func:`inference.preprocess.decode`): the
        sneakers are found first and each one's region is classified; a bundle without a
        detector classifies the whole picture."""
        if not images:
            return []
        if self.localiser is None:
            whole = self.classify(images)
            return [
                PhotoAnswer([Sneaker(Region((0, 0, *im.size), 1.0, whole=True), p)], im.size, False)
                for im, p in zip(images, whole, strict=True)
            ]
        found = self.localiser.find(list(images))
        crops, photo = [], []
        for im, regions in zip(images, found, strict=True):
            is_photo = not plain_background(im)  # a crop of a photo is still a photo
            for r in regions:
                crops.append(crop_region(im, r.box))
                photo.append(is_photo)
        answers = iter(self.classify(crops, photo))
        return [
            PhotoAnswer([Sneaker(r, next(answers)) for r in regions], im.size, True)
            for im, regions in zip(images, found, strict=True)
        ]

    def predict_bytes(self, data: bytes, name: str = "<upload>") -> PhotoAnswer:
        """Decode (the one decoder) and predict; raises db.images.ImageError for bad bytes."""
        return self.predict_images([decode(data, name)])[0]

    def predict_many(self, items: Sequence[tuple[bytes, str]]) -> list[PhotoAnswer | ImageError]:
        """Predict many files at once; a file that cannot be decoded gets its error instead."""
        decoded: list[Image.Image | ImageError] = []
        for data, name in items:
            try:
                decoded.append(decode(data, name))
            except ImageError as exc:
                decoded.append(exc)
        good = [d for d in decoded if isinstance(d, Image.Image)]
        answers = iter(self.predict_images(good))
        return [next(answers) if isinstance(d, Image.Image) else d for d in decoded]


def load_backbone(bundle: Bundle) -> nn.Module:
    """The bundle's backbone, with its fine-tuned weights if it has them, frozen."""
    model = build_backbone(bundle.backbone, pretrained=bundle.backbone_state is None)
    if bundle.backbone_state is not None:
        model.load_state_dict(bundle.backbone_state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
