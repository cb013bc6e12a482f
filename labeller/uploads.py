"""Images that people upload in the app: checks, decoding, and adding them to the catalogue.

An upload is decoded with the one decoder (:func:`db.images.decode_image`) before anything
is stored; a bad file raises :class:`db.images.ImageError` with a message naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from PIL import Image

from db import Catalogue
from db.images import ImageError, decode_image, sha256_hex
from db.ops import IngestResult, Source, ingest_prepared, prepare_image

UPLOAD_TYPES = ("jpg", "jpeg", "png", "webp", "gif")
"""File types the Predict page accepts."""
TYPES_TEXT = "JPEG, PNG, WebP or GIF (" + ", ".join(f".{t}" for t in UPLOAD_TYPES) + ")"
"""The accepted types in words: the upload hint and the refusal say the same."""

MAX_UPLOAD_MB = 10
"""Per-file upload limit of the Predict page (Streamlit refuses bigger files in the browser)."""
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
CAMERA_NAME = "camera.jpg"


@dataclass(frozen=True)
class Upload:
    """An uploaded file that decoded: its name, its original bytes, and the RGB picture."""

    name: str
    data: bytes
    image: Image.Image


def safe_name(name: str) -> str:
    """The file name without any folder part a browser may send ('' becomes 'upload')."""
    base = PurePath(name.replace("\\", "/")).name.strip()
    return base or "upload"


def check_upload(name: str, data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> Upload:
    """Decode an uploaded file; raises :class:`ImageError` naming it when it is not usable."""
    name = safe_name(name)
    suffix = PurePath(name).suffix.lower().lstrip(".")
    if suffix and suffix not in UPLOAD_TYPES:
        raise ImageError(f"{name}: .{suffix} files are not accepted: use {TYPES_TEXT}")
    if len(data) > max_bytes:
        raise ImageError(
            f"{name}: file too large ({len(data) / 2**20:.1f} MiB; the limit is "
            f"{max_bytes / 2**20:.0f} MiB)"
        )
    return Upload(name, data, decode_image(data, name))


def distinct(items: list[Upload]) -> tuple[list[Upload], list[tuple[str, str]]]:
    """The uploads with different bytes, in order, and ``(name, same as name)`` for repeats.

    The same photo chosen twice (or under two names) is one picture: one answer, one add.
    """
    seen: dict[str, str] = {}
    kept: list[Upload] = []
    repeats: list[tuple[str, str]] = []
    for item in items:
        sha = sha256_hex(item.data)
        if sha in seen:
            repeats.append((item.name, seen[sha]))
            continue
        seen[sha] = item.name
        kept.append(item)
    return kept, repeats


def add_to_catalogue(cat: Catalogue, upload: Upload, user: str) -> IngestResult:
    """Store an upload as a new (unlabelled) image with an ``upload`` source naming the file.

    The CPU work (decoding, hashing, thumbnail) happens before the write transaction.
    """
    prepared = prepare_image(upload.data, upload.name)
    source = Source(kind="upload", file_path=upload.name, extra={"uploaded_by": user})
    with cat.write() as s:
        return ingest_prepared(s, cat.store, prepared, source, user=user, how="upload")
