"""``python -m inference``: predict files and folders, or serve the HTTP API."""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from db.images import IMAGE_SUFFIXES, ImageError

if TYPE_CHECKING:
    from inference.cascade import CascadePrediction
    from inference.predictor import Sneaker

PREDICT_CHUNK = 16
CSV_COLUMNS = (
    "path",
    "sneaker",
    "model",
    "model_confidence",
    "sku",
    "sku_confidence",
    "box",
)
"""One row per sneaker found (``sneaker`` 1, 2, ...; 0 with empty answers: none found);
``box`` is ``x0 y0 x1 y1`` in the photo's pixels."""


def iter_files(paths: Sequence[str]) -> Iterator[Path]:
    """The files named, and the image files under the folders named (sorted)."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            yield from sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            yield p


def _predict_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m inference predict", description="predict sneaker model and SKU"
    )
    p.add_argument("paths", nargs="+", help="image files or folders")
    p.add_argument("--run", type=int, help="use this run's model (default: the active one)")
    p.add_argument("--bundle", help="use the model bundle in this folder")
    p.add_argument("--data", help="data folder (default: $SKULAB_DATA or ./data)")
    p.add_argument("--csv", help="write path, model, model_confidence, sku, sku_confidence here")
    return p


def _load(args: argparse.Namespace):
    from inference.predictor import Predictor, run_bundle_dir

    if args.bundle:
        return Predictor.load(args.bundle)
    from db import open_catalogue

    cat = open_catalogue(args.data)
    if args.run is not None:
        return Predictor.load(run_bundle_dir(cat, args.run), run_id=args.run)
    return Predictor.from_active(cat)


def predict_main(argv: Sequence[str]) -> int:
    args = _predict_parser().parse_args(argv)
    try:
        predictor = _load(args)
    except (LookupError, ValueError, OSError) as exc:
        print(f"cannot load a model: {exc}", file=sys.stderr)
        return 2
    rows: list[dict[str, object]] = []
    failed = 0
    files = list(iter_files(args.paths))
    for start in range(0, len(files), PREDICT_CHUNK):
        chunk = files[start : start + PREDICT_CHUNK]
        items: list[tuple[bytes, str]] = []
        readable = []
        for f in chunk:
            try:
                items.append((f.read_bytes(), str(f)))
            except OSError as exc:
                failed += 1
                print(f"{f}: error: cannot read it ({exc.strerror or exc})", file=sys.stderr)
                continue
            readable.append(f)
        for f, answer in zip(readable, predictor.predict_many(items), strict=True):
            if isinstance(answer, ImageError):
                failed += 1
                print(f"{f}: error: {answer}", file=sys.stderr)
                continue
            if not answer.sneaker_found:
                rows.append({"path": str(f), "sneaker": 0, "model": "", "sku": ""})
                print(f"{f}\tno sneaker found")
                continue
            several = len(answer.sneakers) > 1
            for n, sneaker in enumerate(answer.sneakers, start=1):
                rows.append(_csv_row(f, n, sneaker))
                where = (
                    "" if sneaker.region.whole else "\tat " + ",".join(map(str, sneaker.region.box))
                )
                name = f"{f}#{n}" if several else str(f)
                print(f"{name}\t{_answer_text(sneaker.prediction)}{where}")
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    if not files:
        print("no image files found", file=sys.stderr)
        return 2
    return 1 if failed else 0


def _answer_text(p: CascadePrediction) -> str:
    """``model (0.97)\tSKU (0.91)``; the best guess in brackets where the answer is unknown."""

    def one(name: str | None, confidence: float, top3: list[tuple[str, float]]) -> str:
        if name is not None:
            return f"{name} ({confidence:.2f})"
        if top3:
            return f"unknown (best guess {top3[0][0]} {top3[0][1]:.2f})"
        return "unknown"

    model = one(p.model, p.model_confidence, p.model_top3)
    if not p.sku_top3 and p.sku is None and not p.model_unknown:
        return f"{model}\t-"  # a stage-1-only cascade: no SKU was labelled
    return f"{model}\t{one(p.sku, p.sku_confidence, p.sku_top3 if p.model else [])}"


def _csv_row(path: Path, n: int, sneaker: Sneaker) -> dict[str, object]:
    p = sneaker.prediction
    return {
        "path": str(path),
        "sneaker": n,
        "model": p.model or "",
        "model_confidence": f"{p.model_confidence:.4f}",
        "sku": p.sku or "",
        "sku_confidence": f"{p.sku_confidence:.4f}",
        "box": " ".join(map(str, sneaker.region.box)),
    }


def serve_main(argv: Sequence[str]) -> int:
    try:
        from inference import api
    except ModuleNotFoundError as exc:
        if exc.name != "inference.api":
            raise
        print("python -m inference serve: inference/api.py is not installed", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m inference serve", description=api.__doc__)
    api.add_arguments(parser)
    return int(api.main(parser.parse_args(argv)) or 0)


USAGE = """usage: python -m inference {predict,serve} ...

  predict [--run RUN] [--csv OUT] PATH...   predict image files and folders
  serve [--host 127.0.0.1] [--port 8000] [--run RUN]   the HTTP API
"""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "predict":
        return predict_main(rest)
    if command == "serve":
        return serve_main(rest)
    print(f"unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2
