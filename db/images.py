"""The one image decoder of skulab, and the content-addressed image store.

Every path that brings an image in (import, crawl, upload in the app, the HTTP API,
training) decodes it with :func:`decode_image`, so they all see the same pixels.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Protocol

import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_FILE_BYTES = 40 * 1024 * 1024
"""Files larger than this are refused before they are parsed."""

ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "AVIF")
"""Pillow format names we decode (MPO: multi-picture JPEGs from phones)."""

EXTENSIONS = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "AVIF": "avif",
}
MIN_SIDE = 16
"""Pictures smaller than this many pixels a side are not taken into the catalogue (icons,
tracking pixels); the crawl has its own, larger bar (``SKULAB_MIN_IMAGE_SIDE``)."""

SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
)
"""File starts that say which format a file means to be, for the message of a damaged one."""

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".avif"})
THUMB_SIZE = 256
WHITE = (255, 255, 255)


class ImageError(ValueError):
    """An image that skulab will not take, with a message naming the file and the reason."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _available_formats() -> list[str]:
    Image.init()
    return [f for f in ACCEPTED_FORMATS if f in Image.OPEN]


def accepted_text() -> str:
    """The formats this Pillow decodes, for messages: 'JPEG, PNG, WebP, GIF, AVIF'."""
    names = {"WEBP": "WebP"}
    return ", ".join(names.get(f, f) for f in _available_formats() if f != "MPO")


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and float grayscale ('I;16', 'I', 'F') to 8-bit 'L', keeping the full range."""
    arr = np.asarray(img).astype(np.float64)
    top = 65535.0 if img.mode.startswith("I") and arr.max(initial=0) > 255 else 255.0
    if img.mode == "F":
        top = max(float(arr.max(initial=1.0)), 1.0)
    return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), mode="L")


def flatten(img: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Any Pillow mode to RGB, with transparency (alpha or palette) composited onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _to_8bit(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_image(data: bytes, name: str = "<upload>") -> Image.Image:
    """Decode image bytes into an RGB picture the way every part of skulab sees it.

    JPEG, PNG, WebP, AVIF where Pillow has it, and the first frame of a GIF. EXIF
    orientation is applied and transparency flattened onto white. Raises
    :class:`ImageError` naming ``name`` for an empty, oversized, truncated or unknown file
    and for a decompression bomb (Pillow's pixel limit is kept).
    """
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(
            f"{name}: file too large ({len(data) / 2**20:.1f} MiB; the limit is "
            f"{MAX_FILE_BYTES / 2**20:.0f} MiB)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=_available_formats())
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            return flatten(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        meant = _meant_format(data)
        if meant:
            raise ImageError(
                f"{name}: damaged {meant} (it starts like one, but Pillow cannot read it: "
                "a bad checksum or a broken header)"
            ) from None
        raise ImageError(
            f"{name}: not an image skulab reads (accepted: {accepted_text()})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: truncated or corrupt image ({exc})") from None


def _meant_format(data: bytes) -> str | None:
    if data[:12].startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    return next((fmt for sig, fmt in SIGNATURES if data.startswith(sig)), None)


def image_format(data: bytes) -> str:
    """The Pillow format name of image bytes (call after :func:`decode_image` succeeded)."""
    with Image.open(io.BytesIO(data)) as img:
        return img.format or "JPEG"


def phash(img: Image.Image) -> str:
    """Perceptual hash (DCT, 64 bits) as 16 hex digits, for near-duplicate search."""
    return str(imagehash.phash(img))


def mirror_phash(img: Image.Image) -> str:
    """Perceptual hash of the left-right mirrored picture, to find flipped copies."""
    return phash(ImageOps.mirror(img))


def make_thumbnail(img: Image.Image, size: int = THUMB_SIZE) -> bytes:
    thumb = img.copy()
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write a file so that readers see either nothing or all of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _HasSha(Protocol):
    sha256: str
    path: str


class ImageStore:
    """Image files by content hash under ``<data>/images``, thumbnails under ``<data>/thumbs``."""

    def __init__(self, data_dir: Path):
        self.root = data_dir
        self.images = data_dir / "images"
        self.thumbs = data_dir / "thumbs"

    def relpath(self, sha: str, ext: str) -> str:
        return f"images/{sha[:2]}/{sha}.{ext}"

    def put(self, data: bytes, sha: str, ext: str) -> str:
        """Store the original bytes (idempotent); returns the path relative to the data folder."""
        rel = self.relpath(sha, ext)
        path = self.root / rel
        if not path.exists():
            _atomic_write(path, data)
        return rel

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def discard(self, sha: str, ext: str) -> None:
        """Remove an image file and its thumbnails (after its rows were rolled back)."""
        (self.root / self.relpath(sha, ext)).unlink(missing_ok=True)
        if self.thumbs.is_dir():
            for size in self.thumbs.iterdir():
                (size / sha[:2] / f"{sha}.jpg").unlink(missing_ok=True)

    def path(self, image: _HasSha) -> Path:
        return self.root / image.path

    def read_bytes(self, image: _HasSha) -> bytes:
        return self.path(image).read_bytes()

    def open(self, image: _HasSha) -> Image.Image:
        """The stored image, decoded by :func:`decode_image` (RGB, flattened)."""
        return decode_image(self.read_bytes(image), name=image.path)

    def thumbnail_path(self, sha: str, size: int = THUMB_SIZE) -> Path:
        return self.thumbs / str(size) / sha[:2] / f"{sha}.jpg"

    def put_thumbnail(self, sha: str, img: Image.Image, size: int = THUMB_SIZE) -> Path:
        path = self.thumbnail_path(sha, size)
        if not path.exists():
            _atomic_write(path, make_thumbnail(img, size))
        return path

    def put_thumbnail_bytes(self, sha: str, jpeg: bytes, size: int = THUMB_SIZE) -> Path:
        path = self.thumbnail_path(sha, size)
        if not path.exists():
            _atomic_write(path, jpeg)
        return path

    def thumbnail(self, image: _HasSha, size: int = THUMB_SIZE) -> Path:
        """The JPEG thumbnail of a stored image, made on first use."""
        path = self.thumbnail_path(image.sha256, size)
        if not path.exists():
            self.put_thumbnail(image.sha256, self.open(image), size)
        return path
