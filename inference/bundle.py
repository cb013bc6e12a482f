"""The model bundle: a folder with safetensors weights and one JSON file describing them.

``bundle.json`` holds everything needed to rebuild the cascade (backbone, preprocessing,
class lists, temperatures, thresholds) and what it was made from (parameters, data
fingerprint, metrics). ``heads.safetensors`` holds the heads; ``backbone.safetensors``
is there only when the backbone was fine-tuned. Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from inference.cascade import Cascade, Familiarity, Head
from inference.localise import DetectorHead
from inference.preprocess import Preprocessing

FORMAT = "skulab-cascade"
VERSION = 3
READABLE = (1, 2, 3)
"""3: may hold the catalogue's sneaker detector (``detector.weight``, meta ``detector``), and
photos are then searched for sneakers before they are classified; 2: stage 1's open-set
similarity is a Mahalanobis familiarity; 1: the cosine to the nearest of its stored
prototypes (still read, and answered as it was fitted). Bundles without a detector
classify the whole picture, as they were fitted to."""
META_FILE = "bundle.json"
HEADS_FILE = "heads.safetensors"
BACKBONE_FILE = "backbone.safetensors"
_HEAD_TENSORS = ("weight", "bias", "center", "centroids")
_HEAD_SCALARS = ("temperature", "min_confidence")
_FAMILIARITY_TENSORS = ("means", "basis", "basis_weight")


class BundleError(ValueError):
    """A folder that is not a loadable bundle (the message names it and what is wrong)."""


@dataclass
class Bundle:
    """A cascade with its backbone, preprocessing and record."""

    backbone: str
    preprocessing: Preprocessing
    cascade: Cascade
    backbone_state: dict[str, torch.Tensor] | None = None
    detector: DetectorHead | None = None
    """The catalogue's sneaker detector (None: the whole picture is classified)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """params, fingerprint, metrics, run id, created_at: what the run recorded."""

    @property
    def embedding_key(self) -> str:
        """The ``embeddings.backbone`` key of this bundle's embeddings in the catalogue."""
        return str(
            self.meta.get("embedding_key") or embedding_key(self.backbone, self.preprocessing)
        )


def embedding_key(backbone: str, pre: Preprocessing, flipped: bool = False) -> str:
    """Cache key of a backbone + input size (+ trimming, + horizontal flip)."""
    key = f"{backbone}@{pre.image_size}"
    if not pre.trim:
        key += ":notrim"
    return key + (":hflip" if flipped else "")


def _head_meta(head: Head) -> dict[str, float | None]:
    meta: dict[str, float | None] = {k: float(getattr(head, k)) for k in _HEAD_SCALARS}
    meta["min_similarity"] = head.min_similarity
    if head.familiarity is not None:
        meta["familiarity_iso"] = head.familiarity.iso
    return meta


def save_bundle(bundle: Bundle, folder: Path) -> Path:
    """Write the bundle into ``folder`` (created); files appear whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    c = bundle.cascade
    tensors: dict[str, torch.Tensor] = {}
    stages: dict[str, Any] = {}
    for name, head in (("stage1", c.stage1), ("stage2", c.stage2)):
        if head is None:
            stages[name] = None
            continue
        for t in _HEAD_TENSORS:
            tensors[f"{name}.{t}"] = getattr(head, t).detach().float().contiguous()
        if head.prototypes is not None:
            tensors[f"{name}.prototypes"] = head.prototypes.detach().float().contiguous()
        if head.photo_center is not None:
            tensors[f"{name}.photo_center"] = head.photo_center.detach().float().contiguous()
        if head.familiarity is not None:
            for t in _FAMILIARITY_TENSORS:
                value = getattr(head.familiarity, t).detach().float().contiguous()
                tensors[f"{name}.familiarity.{t}"] = value
        stages[name] = _head_meta(head)
    if bundle.detector is not None:
        tensors["detector.weight"] = bundle.detector.weight.detach().float().contiguous()
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "backbone": bundle.backbone,
        "backbone_finetuned": bundle.backbone_state is not None,
        "preprocessing": bundle.preprocessing.to_dict(),
        "models": c.models,
        "skus": [
            {"style_code": s, "model": c.models[m]}
            for s, m in zip(c.skus, c.sku_model, strict=True)
        ],
        "unsure_below": c.unsure_below,
        "detector": None if bundle.detector is None else {"bias": bundle.detector.bias},
        **stages,
        **bundle.meta,
    }
    _atomic(folder / HEADS_FILE, lambda p: save_file(tensors, str(p)))
    if bundle.backbone_state is not None:
        state = {k: v.detach().contiguous() for k, v in bundle.backbone_state.items()}
        _atomic(folder / BACKBONE_FILE, lambda p: save_file(state, str(p)))
    _atomic(
        folder / META_FILE,
        lambda p: p.write_text(json.dumps(meta, indent=2, default=str)),
    )
    return folder


def _atomic(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _head(tensors: dict[str, torch.Tensor], name: str, meta: dict[str, Any]) -> Head:
    familiarity = None
    if "familiarity_iso" in meta:
        familiarity = Familiarity(
            **{t: tensors[f"{name}.familiarity.{t}"] for t in _FAMILIARITY_TENSORS},
            iso=float(meta["familiarity_iso"]),
        )
    threshold = meta.get("min_similarity")
    return Head(
        **{t: tensors[f"{name}.{t}"] for t in _HEAD_TENSORS},
        **{k: float(meta[k]) for k in _HEAD_SCALARS},
        min_similarity=None if threshold is None else float(threshold),
        familiarity=familiarity,
        prototypes=tensors.get(f"{name}.prototypes"),
        photo_center=tensors.get(f"{name}.photo_center"),
    )


def load_bundle(folder: str | os.PathLike[str]) -> Bundle:
    """Read a bundle folder written by :func:`save_bundle`."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise BundleError(f"{folder}: not a model bundle (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path}: unreadable JSON ({exc})") from None
    if meta.get("format") != FORMAT or meta.get("version") not in READABLE:
        raise BundleError(
            f"{meta_path}: format {meta.get('format')!r} v{meta.get('version')!r}, "
            f"expected {FORMAT!r} v{' or v'.join(map(str, READABLE))}"
        )
    try:
        tensors = load_file(str(folder / HEADS_FILE))
        models = list(meta["models"])
        index = {m: i for i, m in enumerate(models)}
        cascade = Cascade(
            models=models,
            skus=[s["style_code"] for s in meta["skus"]],
            sku_model=[index[s["model"]] for s in meta["skus"]],
            stage1=_head(tensors, "stage1", meta["stage1"]),
            stage2=None if meta.get("stage2") is None else _head(tensors, "stage2", meta["stage2"]),
            unsure_below=float(meta.get("unsure_below", 0.6)),
        )
        detector = None
        if meta.get("detector") is not None:
            detector = DetectorHead(
                weight=tensors["detector.weight"], bias=float(meta["detector"]["bias"])
            )
        backbone_state = None
        if meta.get("backbone_finetuned"):
            backbone_state = load_file(str(folder / BACKBONE_FILE))
    except (KeyError, OSError, ValueError, SafetensorError) as exc:
        raise BundleError(f"{folder}: incomplete or damaged bundle ({exc})") from None
    record = {
        k: v
        for k, v in meta.items()
        if k
        not in {
            "format",
            "version",
            "backbone",
            "backbone_finetuned",
            "preprocessing",
            "models",
            "skus",
            "unsure_below",
            "stage1",
            "stage2",
            "detector",
        }
    }
    return Bundle(
        backbone=meta["backbone"],
        preprocessing=Preprocessing.from_dict(meta["preprocessing"]),
        cascade=cascade,
        backbone_state=backbone_state,
        detector=detector,
        meta=record,
    )
