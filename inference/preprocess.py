"""The one preprocessing of skulab, shared by training and prediction.

Bytes are decoded by :func:`db.images.decode_image` (RGB, EXIF orientation applied,
transparency flattened onto white). A picture is then trimmed to the sneaker (the
near-white margin around it is cut, so scale does not depend on how the shot was framed),
padded to a square with white, resized, turned into the grayscale view (replicated to 3
channels: shape only) or kept in colour, and normalised with the mean/std the
backbone's weights were trained with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageChops

from db.images import decode_image

View = Literal["gray", "colour"]
VIEWS: tuple[View, ...] = ("gray", "colour")
WHITE = (255, 255, 255)
TRIM_TOLERANCE = 16
"""A pixel whose channels all lie within this of white counts as background."""
TRIM_MARGIN = 0.04
"""Margin kept around the trimmed sneaker, as a fraction of its longer side."""


@dataclass(frozen=True)
class Preprocessing:
    """Everything that turns a picture into a backbone input; saved in each bundle."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    trim: bool = True
    tta_flip: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            image_size=int(data["image_size"]),
            mean=tuple(data["mean"]),  # type: ignore[arg-type]
            std=tuple(data["std"]),  # type: ignore[arg-type]
            trim=bool(data.get("trim", True)),
            tta_flip=bool(data.get("tta_flip", False)),
        )


def decode(data: bytes, name: str) -> Image.Image:
    """Decode image bytes the way every part of skulab does (raises db.images.ImageError)."""
    return decode_image(data, name)


def trim_white(img: Image.Image, tolerance: int = TRIM_TOLERANCE) -> Image.Image:
    """Cut the near-white margin around the object, keeping a small white border."""
    diff = ImageChops.difference(img, Image.new("RGB", img.size, WHITE)).convert("L")
    box = diff.point(lambda v: 255 if v > tolerance else 0).getbbox()
    if box is None:
        return img
    left, top, right, bottom = box
    pad = round(max(right - left, bottom - top) * TRIM_MARGIN)
    box = (
        max(left - pad, 0),
        max(top - pad, 0),
        min(right + pad, img.width),
        min(bottom + pad, img.height),
    )
    return img.crop(box) if box != (0, 0, img.width, img.height) else img


def pad_square(img: Image.Image) -> Image.Image:
    """Centre the picture on a white square of its longer side."""
    side = max(img.size)
    if img.width == img.height:
        return img
    canvas = Image.new("RGB", (side, side), WHITE)
    canvas.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return canvas


def square_picture(img: Image.Image, cfg: Preprocessing) -> Image.Image:
    """RGB picture -> trimmed, white-padded square of ``cfg.image_size`` pixels."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    factor = max(img.size) // (4 * cfg.image_size)
    if factor >= 2:  # huge picture: a fast box reduction first, then the real resize
        img = img.reduce(factor)
    if cfg.trim:
        img = trim_white(img)
    return pad_square(img).resize(
        (cfg.image_size, cfg.image_size), Image.Resampling.BICUBIC, reducing_gap=3.0
    )


def view_array(square: Image.Image, view: View) -> np.ndarray:
    """uint8 HxWx3 array of one view: colour as is, gray replicated to 3 channels."""
    if view == "colour":
        return np.asarray(square, dtype=np.uint8)
    if view == "gray":
        gray = np.asarray(square.convert("L"), dtype=np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    raise ValueError(f"unknown view {view!r} (gray or colour)")


def normalise(arrays: list[np.ndarray], cfg: Preprocessing) -> torch.Tensor:
    """uint8 HxWx3 arrays -> float tensor N x 3 x H x W, normalised."""
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    return batch.sub_(mean).div_(std).contiguous()


def preprocess(
    images: list[Image.Image], cfg: Preprocessing, views: tuple[View, ...] = VIEWS
) -> dict[View, torch.Tensor]:
    """The backbone inputs of a batch of pictures, per view (N x 3 x S x S each)."""
    squares = [square_picture(img, cfg) for img in images]
    return {v: normalise([view_array(sq, v) for sq in squares], cfg) for v in views}
