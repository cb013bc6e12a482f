"""Benchmark: single-image prediction latency and embedding throughput on this machine.

Latency is decode-to-answer (``Predictor.predict_bytes`` on demo JPEG/PNG/WebP bytes)
of the default cascade (EfficientNet-Lite0) beside a VGG16 cascade, measured in the same
run. VGG16's ImageNet weights cannot be downloaded here, so it runs with random
weights: the arithmetic, and so the speed, is the same. The heads are random too (a
100-model, 500-SKU cascade): they cost microseconds either way.

    python bench/bench_predict.py [--n 60] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date

import torch

from db.demo import generate
from db.images import decode_image
from inference.backbones import build_backbone, get_spec
from inference.bundle import Bundle
from inference.cascade import Cascade, Head
from inference.predictor import Predictor
from inference.preprocess import Preprocessing
from training.embeddings import compute_embeddings

MODELS, PER_MODEL = 100, 5


def random_cascade(dim: int) -> Cascade:
    g = torch.Generator().manual_seed(0)

    def head(n: int) -> Head:
        w = torch.randn(n, dim, generator=g)
        return Head(w, torch.zeros(n), torch.zeros(dim), w / w.norm(dim=1, keepdim=True))

    return Cascade(
        models=[f"model-{i}" for i in range(MODELS)],
        skus=[f"SKU{i:04d}" for i in range(MODELS * PER_MODEL)],
        sku_model=[i // PER_MODEL for i in range(MODELS * PER_MODEL)],
        stage1=head(MODELS),
        stage2=head(MODELS * PER_MODEL),
    )


def predictor(name: str) -> Predictor:
    spec = get_spec(name)
    pre = Preprocessing(spec.image_size, spec.mean, spec.std)
    pretrained = name == "efficientnet_lite0"
    state = None if pretrained else build_backbone(name, pretrained=False).state_dict()
    return Predictor(Bundle(name, pre, random_cascade(spec.dim), backbone_state=state))


def latency(p: Predictor, images: list[tuple[bytes, str]], n: int) -> tuple[float, float]:
    for data, name in images[:3]:
        p.predict_bytes(data, name)
    times = []
    for i in range(n):
        data, name = images[i % len(images)]
        t = time.perf_counter()
        p.predict_bytes(data, name)
        times.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles(times, n=20)
    return statistics.median(times), q[18]


def throughput(p: Predictor, images: list[tuple[bytes, str]], views: tuple) -> float:
    pics = [decode_image(d, n) for d, n in images]
    compute_embeddings(pics[:8], p.backbone, p.preprocessing, False, views)
    t = time.perf_counter()
    for start in range(0, len(pics), 8):
        compute_embeddings(pics[start : start + 8], p.backbone, p.preprocessing, False, views)
    return len(pics) / (time.perf_counter() - t)


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=60, help="timed predictions per backbone")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--skip-vgg", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = [(d.data, d.name) for d in generate(seed=1, per_colourway=1, size=320)][:24]
    today = date.today().isoformat()
    print("| date | machine | benchmark | value |")
    print("|---|---|---|---|")
    results = {}
    names = ["efficientnet_lite0"] + ([] if args.skip_vgg else ["vgg16"])
    for name in names:
        p = predictor(name)
        p50, p95 = latency(p, images, args.n)
        results[name] = p50
        note = " (random weights: same speed)" if name == "vgg16" else ""
        print(
            f"| {today} | {machine()} | predict 1 image, {name}{note}, decode to answer | p50 {p50:.1f} ms, p95 {p95:.1f} ms |"
        )
        if name == "efficientnet_lite0":
            for views in (("gray",), ("gray", "colour")):
                rate = throughput(p, images * 3, views)
                print(
                    f"| {today} | {machine()} | embed {name} @224, {'+'.join(views)} view(s), batches of 8 | {rate:.1f} images/s |"
                )
        del p
    if "vgg16" in results:
        ratio = results["vgg16"] / results["efficientnet_lite0"]
        print(
            f"| {today} | {machine()} | p50 speed-up of the default cascade over VGG16 | {ratio:.1f}x |"
        )


if __name__ == "__main__":
    main()
