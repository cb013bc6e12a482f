"""Generated photos for the localisation tests: demo sneakers in busy scenes, at known places."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from db.demo import DemoModel, demo_catalogue_spec, render_sneaker
from training.augment import background

Box = tuple[int, int, int, int]


@dataclass
class Scene:
    image: Image.Image
    truth: list[tuple[str, Box]]
    """(model name, box) of each sneaker placed in the scene."""

    def jpeg(self) -> bytes:
        buf = io.BytesIO()
        self.image.save(buf, "JPEG", quality=90)
        return buf.getvalue()


def model_named(name: str) -> DemoModel:
    return next(m for m in demo_catalogue_spec() if m.name == name)


def scene(models: list[str], seed: int, size: tuple[int, int] = (480, 320)) -> Scene:
    """A cluttered scene with one sneaker of each of ``models``, side by side."""
    rng = np.random.default_rng(seed)
    img = background(size, rng)
    truth = []
    slot = size[0] // max(len(models), 1)
    for k, name in enumerate(models):
        model = model_named(name)
        colourway = model.colourways[int(rng.integers(len(model.colourways)))]
        fill = (0.8, 0.95) if len(models) == 1 else (0.65, 0.75)  # a gap between two
        side = int(min(slot, size[1]) * rng.uniform(*fill))
        sneaker = render_sneaker(model, colourway, rng, side)
        x = k * slot + (slot - side) // 2
        y = int(rng.integers(0, size[1] - side + 1))
        img.paste(sneaker, (x, y), sneaker)
        bx0, by0, bx1, by1 = sneaker.getbbox()
        truth.append((name, (x + bx0, y + by0, x + bx1, y + by1)))
    return Scene(img, truth)


def iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0
