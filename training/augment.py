"""Product shots made to look like photos, so that heads trained on a shop's studio pictures
hold on the photos that customers take.

A product shot is a sneaker on a plain (often transparent) background. :func:`cutout` takes
the sneaker out of it: exactly from the alpha channel of a transparent PNG, or from the
near-white background otherwise. :func:`field_photo` then puts it in a scene: a generated
background (floors, walls, clutter, gradients, noise), a random scale and position (partly
out of the frame at times), a rotation and a perspective tilt, an occluding shape, and
changes of light, colour cast, blur, noise and JPEG compression. It returns the photo and
the box where the sneaker is, so that training crops it the way :mod:`inference.localise`
crops a photo in use.

Every function takes a :class:`numpy.random.Generator`: the same seed gives the same photo,
so an augmented copy can be cached like any other embedding.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from scipy import ndimage

from db.images import flatten

WHITE_TOLERANCE = 18
"""A pixel whose channels all lie within this of white counts as background (no alpha)."""
MIN_OBJECT_SHARE = 0.02
MAX_OBJECT_SHARE = 0.92
"""A cut-out covering less or more of the picture than this is no plain-background shot."""
OUT_SIDE = 320
"""Longer side of a generated photo (field photos arrive at 200-1000 px; the crop that the
backbone sees is resized to its input size anyway)."""


@dataclass(frozen=True)
class Cutout:
    """A sneaker taken out of its product shot: RGB pixels and a mask (L, 255 = sneaker)."""

    rgb: Image.Image
    mask: Image.Image


def cutout(data: bytes) -> Cutout | None:
    """The sneaker of a product shot, or None where the background is not plain.

    ``data`` are the stored bytes of the image (the alpha channel is lost once decoded by
    :func:`db.images.decode_image`, which flattens transparency onto white).
    """
    with Image.open(io.BytesIO(data)) as raw:
        raw.seek(0)
        img = ImageOps.exif_transpose(raw)
        alpha = None
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            alpha = img.convert("RGBA").getchannel("A")
        rgb = flatten(img)
    if alpha is not None and alpha.getextrema()[0] < 128:
        mask = alpha.point(lambda v: 255 if v >= 128 else 0)
    else:
        mask = _white_background_mask(rgb)
        if mask is None:
            return None
    share = np.asarray(mask, dtype=bool).mean()
    if not MIN_OBJECT_SHARE <= share <= MAX_OBJECT_SHARE:
        return None
    box = mask.getbbox()
    if box is None:
        return None
    return Cutout(rgb.crop(box), mask.crop(box))


def _white_background_mask(rgb: Image.Image) -> Image.Image | None:
    """The object on a near-white background (holes filled), or None if the border is not white."""
    arr = np.asarray(rgb, dtype=np.int16)
    fg = (255 - arr).max(axis=2) > WHITE_TOLERANCE
    border = np.concatenate([fg[0], fg[-1], fg[:, 0], fg[:, -1]])
    if border.mean() > 0.1:
        return None  # a photo, not a product shot on white
    fg = ndimage.binary_closing(fg, iterations=2)
    fg = ndimage.binary_fill_holes(fg)
    return Image.fromarray((fg * 255).astype(np.uint8), mode="L")


def background(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A generated scene behind the sneaker: a floor and a wall, texture, clutter."""
    w, h = size
    base = _muted(rng)
    second = np.clip(base + rng.integers(-70, 70, 3), 0, 255)
    # low-frequency texture: random noise blown up (carpet, wood, concrete, fabric)
    cells = int(rng.integers(2, 24))
    shape = (cells, max(2, cells * w // h))
    noise = rng.normal(0, 1, (*shape, 1)) + rng.normal(0, 0.25, (*shape, 3))  # mostly light
    noise_img = Image.fromarray(
        np.clip(128 + noise * 40, 0, 255).astype(np.uint8), mode="RGB"
    ).resize((w, h), Image.Resampling.BICUBIC)
    yy = np.linspace(0, 1, h)[:, None, None]
    horizon = rng.uniform(0.2, 0.8)
    split = 1 / (1 + np.exp(-(yy - horizon) * rng.uniform(10, 80)))  # wall above, floor below
    arr = base * (1 - split) + second * split
    arr = arr + (np.asarray(noise_img, dtype=np.float64) - 128) * rng.uniform(0.2, 1.2)
    fine = rng.normal(0, rng.uniform(0, 18), (h, w, 1))
    img = Image.fromarray(np.clip(arr + fine, 0, 255).astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 7))):  # clutter: boxes, paper, other things
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.05, 0.6) * w, y0 + rng.uniform(0.05, 0.6) * h
        colour = tuple(int(c) for c in _muted(rng))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
    if rng.random() < 0.4:  # stripes: tiles, boards, a box's print
        step = int(rng.integers(6, 40))
        colour = tuple(int(c) for c in _muted(rng))
        for x in range(0, w + h, step * 2):
            draw.line((x, 0, x - h, h), fill=colour, width=max(1, step // 3))
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 2.5)))


def _muted(rng: np.random.Generator) -> np.ndarray:
    """A colour of the kind rooms are made of: mostly greys, browns and washed-out tints."""
    colour = rng.integers(0, 256, 3).astype(np.float64)
    grey = rng.uniform(30, 235)
    return np.clip(grey + (colour - colour.mean()) * rng.uniform(0.1, 0.7), 0, 255)


def _perspective(img: Image.Image, mask: Image.Image, rng: np.random.Generator, amount: float):
    w, h = img.size
    d = amount * min(w, h)
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    dst = [(x + rng.uniform(-d, d), y + rng.uniform(-d, d)) for x, y in src]
    coeffs = _perspective_coeffs(dst, src)
    size = (w, h)
    return (
        img.transform(size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC),
        mask.transform(size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR),
    )


def _perspective_coeffs(dst: list[tuple[float, float]], src: list[tuple[float, float]]):
    """The 8 coefficients that map output points ``dst`` to input points ``src``."""
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.asarray(rows, dtype=np.float64)
    b = np.asarray([c for p in src for c in p], dtype=np.float64)
    return np.linalg.solve(a, b).tolist()


def field_photo(
    cut: Cutout, rng: np.random.Generator, side: int = OUT_SIDE, with_mask: bool = False
) -> tuple:
    """A photo of the cut-out sneaker in a generated scene, and the sneaker's box in it
    (and, ``with_mask``, where in the photo the sneaker is: L, 255 = sneaker)."""
    aspect = float(rng.choice([0.75, 1.0, 1.333, 1.5]))
    w, h = (side, round(side / aspect)) if aspect >= 1 else (round(side * aspect), side)
    scene = background((w, h), rng)
    obj, mask = cut.rgb, cut.mask
    if rng.random() < 0.6:
        obj, mask = _perspective(obj, mask, rng, rng.uniform(0.02, 0.12))
    angle = rng.uniform(-20, 20)
    obj = obj.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    mask = mask.rotate(angle, Image.Resampling.BILINEAR, expand=True, fillcolor=0)
    scale = (
        rng.uniform(0.45, 0.95)
        * min(w / obj.width, h / obj.height)
        * (
            1.25 if rng.random() < 0.2 else 1.0  # close-up: part of the sneaker out of frame
        )
    )
    size = (max(8, round(obj.width * scale)), max(8, round(obj.height * scale)))
    obj = obj.resize(size, Image.Resampling.BICUBIC)
    mask = mask.resize(size, Image.Resampling.BILINEAR)
    # the light on the sneaker is not the studio's
    obj = _light(obj, rng)
    slack_x, slack_y = w - size[0], h - size[1]
    x = int(rng.uniform(min(0, slack_x) - 0.1 * size[0], max(0, slack_x) + 0.1 * size[0]))
    y = int(rng.uniform(min(0, slack_y) - 0.05 * size[1], max(0, slack_y) + 0.05 * size[1]))
    shadow = mask.filter(ImageFilter.GaussianBlur(max(2, size[1] // 12)))
    dark = Image.new("RGB", scene.size, (0, 0, 0))
    shadow_layer = Image.new("L", scene.size, 0)
    shadow_layer.paste(
        shadow.point(lambda v: int(v * 0.45)), (x + size[0] // 30, y + size[1] // 15)
    )
    scene = Image.composite(dark, scene, shadow_layer)
    scene.paste(obj, (x, y), mask.filter(ImageFilter.GaussianBlur(0.6)))
    placed = Image.new("L", (w, h), 0)
    placed.paste(mask, (x, y))
    placed = placed.point(lambda v: 255 if v >= 128 else 0)
    box = placed.getbbox() or (0, 0, w, h)
    if rng.random() < 0.3:
        _occlude(scene, box, rng)
    photo = _camera(scene, rng)
    return (photo, box, placed) if with_mask else (photo, box)


def _light(obj: Image.Image, rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(obj, dtype=np.float64)
    gain = rng.uniform(0.65, 1.2) * rng.uniform(0.88, 1.12, 3)  # brightness and colour cast
    contrast = rng.uniform(0.75, 1.15)
    mean = arr.mean()
    arr = (arr - mean) * contrast + mean
    # a light gradient across the sneaker (light from one side)
    ramp = np.linspace(1 - rng.uniform(0, 0.3), 1, arr.shape[1])[None, :, None]
    if rng.random() < 0.5:
        ramp = ramp[:, ::-1]
    return Image.fromarray(np.clip(arr * gain * ramp, 0, 255).astype(np.uint8), mode="RGB")


def _occlude(scene: Image.Image, box: tuple[int, int, int, int], rng: np.random.Generator) -> None:
    """Something in front of part of the sneaker: a hand, a box's lid, another object."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    ow, oh = bw * rng.uniform(0.15, 0.4), bh * rng.uniform(0.15, 0.5)
    ox = x0 + rng.uniform(-0.1, 1.0) * bw - ow / 2
    oy = y0 + rng.uniform(-0.1, 1.0) * bh - oh / 2
    colour = tuple(int(c) for c in _muted(rng))
    draw = ImageDraw.Draw(scene)
    if rng.random() < 0.5:
        draw.rectangle((ox, oy, ox + ow, oy + oh), fill=colour)
    else:
        draw.ellipse((ox, oy, ox + ow, oy + oh), fill=colour)


def _camera(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """What a phone does to a picture: blur, noise, compression."""
    if rng.random() < 0.35:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.6)))
    if rng.random() < 0.4:
        arr = np.asarray(img, dtype=np.float64)
        arr = arr + rng.normal(0, rng.uniform(2, 10), arr.shape)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(35, 92)))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def seed_for(image_sha: str, copy: int, seed: int = 0) -> np.random.Generator:
    """The generator of augmented copy ``copy`` of an image (stable across runs)."""
    return np.random.default_rng([int(image_sha[:12], 16), copy, seed])
