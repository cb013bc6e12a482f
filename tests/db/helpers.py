"""Small image factories for the catalogue tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def picture(seed: int, size: tuple[int, int] = (240, 160), fmt: str = "JPEG") -> bytes:
    """A distinct, photo-like picture per seed (smooth colour blobs, not flat colour)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (6, 9, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()
