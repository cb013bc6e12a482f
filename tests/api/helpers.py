"""Helpers for the API tests: runs with real bundles, a live server, test images."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import uvicorn
from PIL import Image, ImageDraw
from sqlalchemy import update

from db.catalogue import Catalogue
from db.models import Run, utcnow
from inference.api import ApiSettings
from inference.backbones import get_spec
from inference.bundle import Bundle, save_bundle
from inference.cascade import Cascade, Head
from inference.preprocess import Preprocessing

MODELS = ["Nike Dunk Low", "Nike Air Force 1 Low", "Nike Air Max 90"]
SKUS = [
    ("DD1391-100", 0),
    ("DD1391-001", 0),
    ("CW2288-111", 1),
    ("CT2302-002", 2),
    ("CT2302-100", 2),
]


def settings(**kw: object) -> ApiSettings:
    """Service settings for tests: torch's thread count is left alone (it is process-wide)."""
    return ApiSettings(**{"torch_threads": None, **kw})  # type: ignore[arg-type]


def _head(n_classes: int, dim: int, gen: torch.Generator) -> Head:
    weight = torch.randn(n_classes, dim, generator=gen)
    centroids = torch.randn(n_classes, dim, generator=gen)
    return Head(
        weight=weight * 3,
        bias=torch.zeros(n_classes),
        center=torch.zeros(dim),
        centroids=centroids / centroids.norm(dim=1, keepdim=True),
        temperature=1.0,
        min_confidence=0.0,
        min_similarity=-1.0,
    )


def add_bundle_run(
    cat: Catalogue,
    name: str,
    *,
    backbone: str = "tiny",
    pretrained: bool = False,
    seed: int = 0,
    active: bool = False,
) -> int:
    """A succeeded run whose bundle holds heads with seeded random weights on ``backbone``.

    The predictor, the bundle format and the cascade's decision are the real ones; only
    the weights are not trained (that is training's business, not the API's). With
    ``backbone="vgg16"`` the VGG16 backbone is built with random weights too when
    ``pretrained`` is False (``backbone_state`` holds them), which predicts at the same
    speed as the ImageNet weights that cannot be downloaded here.
    """
    spec = get_spec(backbone)
    gen = torch.Generator().manual_seed(seed)
    cascade = Cascade(
        models=list(MODELS),
        skus=[s for s, _ in SKUS],
        sku_model=[m for _, m in SKUS],
        stage1=_head(len(MODELS), spec.dim, gen),
        stage2=_head(len(SKUS), spec.dim, gen),
    )
    state = None
    if backbone != "tiny" and not pretrained:
        from inference.backbones import build_backbone

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            state = build_backbone(backbone, pretrained=False).state_dict()
    with cat.write() as s:
        run = Run(
            name=name,
            status="succeeded",
            params={"backbone": backbone, "seed": seed},
            metrics={"model_top1": 0.5, "sku_top1": 0.25},
            fingerprint=f"{seed:064x}",
            started_at=utcnow(),
            finished_at=utcnow(),
        )
        s.add(run)
        s.flush()
        run_id = run.id
        run.bundle_path = f"runs/{run_id}/bundle"
    bundle = Bundle(
        backbone=backbone,
        preprocessing=Preprocessing(spec.image_size, spec.mean, spec.std),
        cascade=cascade,
        backbone_state=state,
        meta={"run_id": run_id},
    )
    save_bundle(bundle, cat.data_dir / "runs" / str(run_id) / "bundle")
    if active:
        promote(cat, run_id)
    return run_id


def promote(cat: Catalogue, run_id: int) -> None:
    """Make ``run_id`` the one active run, as the app's promote button does."""
    with cat.write() as s:
        s.execute(update(Run).where(Run.id != run_id, Run.active).values(active=False))
        s.execute(update(Run).where(Run.id == run_id).values(active=True))


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 and a free port, in a background thread."""

    def __init__(self, app: object):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self, timeout_s: float = 60.0) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the API server did not start (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError("the API server did not start in time")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@contextmanager
def live_server(app: object) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sneaker_jpeg(width: int = 640, height: int = 800, seed: int = 0, quality: int = 90) -> bytes:
    """A photo-sized JPEG: a coloured shoe-like shape on white, with some noise."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in rng.integers(0, 255, 3))
    w, h = width, height
    draw.polygon(
        [
            (0.1 * w, 0.7 * h),
            (0.2 * w, 0.4 * h),
            (0.5 * w, 0.45 * h),
            (0.9 * w, 0.65 * h),
            (0.9 * w, 0.75 * h),
            (0.1 * w, 0.75 * h),
        ],
        fill=colour,
    )
    draw.rectangle((0.1 * w, 0.75 * h, 0.9 * w, 0.8 * h), fill=(240, 240, 235))
    arr = np.asarray(img).astype(np.int16) + rng.integers(-6, 7, (height, width, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=quality)
    return out.getvalue()


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 200, 30, 128)).save(out, "PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def write_keys(path: Path, keys: list[str]) -> Path:
    path.write_text("# API keys for the test\n" + "\n".join(keys) + "\n")
    return path
