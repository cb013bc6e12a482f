"""The API under 16 clients, one of them abusive: what the normal clients see.

    python bench/bench_api_abuse.py [--requests 400] [--backbone tiny]

Starts ``python -m inference serve`` (its default limits) on a cascade with seeded random
heads (as bench/bench_api.py does) and sends a 640x800 JPEG from normal clients:

1. baseline: 16 normal clients;
2. 15 normal clients and one that sends, one after another, the batch of the issue
   (sixteen 6200x6200 gray PNGs, ~760 KB, each under the per-image pixel limit) and the
   largest batch the limits let through (three of them, 115 megapixels).

Prints, per phase, the normal clients' p50/p95 latency and error rate, the abusive
client's answers by status, and the server's peak and final resident memory.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout first
from bench_api import Server, add_run, photo_jpeg

from db.catalogue import Catalogue


def gray_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (side, side), 200).save(out, "PNG")
    return out.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def phase(url: str, pid: int, normal: int, n: int, abusive: bool) -> dict:
    jpeg = photo_jpeg()
    tickets = itertools.count()
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    abuse: Counter[str] = Counter()
    lock = threading.Lock()
    done = threading.Event()
    peak = [rss_mb(pid)]
    big = gray_png(6200)
    issue_batch = [("files", (f"g{i}.png", big, "image/png")) for i in range(16)]
    largest_allowed = issue_batch[:3]

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            while next(tickets) < n:
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/predict", files={"file": ("shoe.jpg", jpeg, "image/jpeg")})
                    error = None if r.status_code == 200 else str(r.status_code)
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                with lock:
                    if error is None:
                        latencies.append((time.perf_counter() - t0) * 1000)
                    else:
                        errors[error] += 1

    def abuser() -> None:
        with httpx.Client(base_url=url, timeout=300) as c:
            for files in itertools.cycle([issue_batch, largest_allowed]):
                if done.is_set():
                    return
                label = "16x6200^2" if len(files) == 16 else "3x6200^2"
                try:
                    r = c.post("/v1/predict/batch", files=files)
                    abuse[f"{label} {r.status_code}"] += 1
                except httpx.HTTPError as exc:
                    abuse[f"{label} {type(exc).__name__}"] += 1

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.1)

    threads = [threading.Thread(target=client) for _ in range(normal)]
    extra = [threading.Thread(target=watch)] + (
        [threading.Thread(target=abuser)] if abusive else []
    )
    start = time.perf_counter()
    for t in threads + extra:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for t in extra:
        t.join()
    seconds = time.perf_counter() - start
    time.sleep(3.0)  # the abusive client's last request has ended: memory given back?
    q = np.percentile(np.asarray(latencies or [float("nan")]), [50, 95])
    return {
        "phase": f"{normal} normal" + (" + 1 abusive" if abusive else ""),
        "requests": n,
        "errors": sum(errors.values()),
        "error_rate": round(sum(errors.values()) / n, 4),
        "error_kinds": dict(errors),
        "p50_ms": round(float(q[0]), 1),
        "p95_ms": round(float(q[1]), 1),
        "seconds": round(seconds, 1),
        "abusive": dict(abuse),
        "server_peak_mb": round(peak[0]),
        "server_after_mb": round(rss_mb(pid)),
    }


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=400, help="normal requests per phase")
    p.add_argument("--backbone", default="tiny", help="the cascade's backbone (default: tiny)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-abuse-"))
    cat = Catalogue(tmp / "data")
    cat.migrate()
    run_id = add_run(cat, args.backbone)
    server = Server(tmp / "data", run_id, tmp / "serve.log")
    try:
        server.wait_ready()
        rows = [
            phase(server.url, server.proc.pid, 16, args.requests, abusive=False),
            phase(server.url, server.proc.pid, 15, args.requests, abusive=True),
        ]
    finally:
        server.stop()
        cat.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(json.dumps(rows, indent=1))
    for r in rows:
        print(
            f"| {stamp} | {args.backbone} | {r['phase']} | {r['requests']} | {r['p50_ms']} | "
            f"{r['p95_ms']} | {100 * r['error_rate']:.1f}% | {r['abusive'] or '-'} | "
            f"{r['server_peak_mb']} / {r['server_after_mb']} MB | load {os.getloadavg()[0]:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
