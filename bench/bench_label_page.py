"""How fast the Label page is on a big catalogue: its grid, and applying a label.

    python bench/bench_label_page.py [--images 100000] [--repeat 5]

Builds a throw-away catalogue of synthetic rows (inserted with executemany): 20 models,
500 SKUs, ``--images`` images (70% unlabelled, 25% labelled, 5% rejected) with one source
each, and an active run with a prediction for every unlabelled image. Only the images of the
first grid page get real files (their thumbnails are made on the first render). Then times:

- ``load_page``: the queue (most uncertain first), the claim and the cards of one page;
- ``render``: a whole AppTest run of the Label page (queue, thumbnails, widgets), warm;
- ``label 1`` / ``label page``: labelling one image, and a page of them at once;
- ``accept page``: accepting a page of suggestions; ``undo page``: undoing that.

Targets: page ≤ 1.5 s, a label ≤ 300 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from PIL import Image as PILImage
from sqlalchemy import insert, select

from db import Catalogue
from db.models import Image, ImageSource, Prediction, Run, Sku, SneakerModel, utcnow

PAGE = 36
TARGET_PAGE_S = 1.5
TARGET_LABEL_S = 0.3


def build(cat: Catalogue, n_images: int, seed: int = 0) -> int:
    """Fill ``cat`` with synthetic rows; returns the active run's id."""
    rng = random.Random(seed)
    now = utcnow()
    with cat.write() as s:
        s.execute(
            insert(SneakerModel), [{"name": f"Model {m:02d}", "created_at": now} for m in range(20)]
        )
        model_ids = list(s.scalars(select(SneakerModel.id).order_by(SneakerModel.id)))
        s.execute(
            insert(Sku),
            [
                {
                    "style_code": f"BM{m:04d}-{k:03d}",
                    "model_id": model_ids[m],
                    "colourway": f"C{k}",
                    "title": None,
                    "created_at": now,
                }
                for m in range(20)
                for k in range(25)
            ],
        )
        skus = s.execute(select(Sku.id, Sku.model_id, Sku.style_code)).all()
        rows, sources = [], []
        for i in range(n_images):
            sha = hashlib.sha256(f"img{i}".encode()).hexdigest()
            r = rng.random()
            status = "new" if r < 0.70 else "labelled" if r < 0.95 else "rejected"
            sku = skus[rng.randrange(len(skus))]
            rows.append(
                {
                    "sha256": sha,
                    "path": f"images/{sha[:2]}/{sha}.png",
                    "ext": "png",
                    "width": 64,
                    "height": 48,
                    "n_bytes": 1000,
                    "phash": f"{i:016x}",
                    "status": status,
                    "model_id": sku.model_id if status == "labelled" else None,
                    "sku_id": sku.id if status == "labelled" else None,
                    "split": rng.choice(("train", "val", "test")) if status == "labelled" else None,
                    "split_locked": False,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        s.execute(insert(Image), rows)
        ids = s.execute(select(Image.id, Image.status)).all()
        for image_id, _status in ids:
            sku = skus[rng.randrange(len(skus))]
            sources.append(
                {
                    "image_id": image_id,
                    "kind": "crawl",
                    "spider": "bench",
                    "image_url": f"https://example.test/{image_id}.png",
                    "weak_model": f"Model {sku.model_id:02d}",
                    "weak_sku": sku.style_code,
                    "seen_at": now,
                }
            )
        s.execute(insert(ImageSource), sources)
        run = Run(name="bench run", status="succeeded", progress=1.0, active=True, params={})
        s.add(run)
        s.flush()
        names = dict(s.execute(select(SneakerModel.id, SneakerModel.name)).all())
        preds = []
        for image_id, status in ids:
            if status != "new":
                continue
            sku = skus[rng.randrange(len(skus))]
            conf = rng.random()
            preds.append(
                {
                    "image_id": image_id,
                    "run_id": run.id,
                    "model_name": names[sku.model_id],
                    "model_conf": conf,
                    "sku": sku.style_code,
                    "sku_conf": conf * 0.9,
                    "margin": conf * 0.5,
                    "top": {},
                    "created_at": now,
                }
            )
        s.execute(insert(Prediction), preds)
        return run.id


def write_page_files(cat: Catalogue, run_id: int, n: int) -> None:
    """Real image files for the first ``n`` images of the most-uncertain queue."""
    with cat.read() as s:
        first = s.execute(
            select(Image.id, Image.sha256, Image.path)
            .join(Prediction, Prediction.image_id == Image.id)
            .where(Prediction.run_id == run_id, Image.status == "new")
            .order_by(Prediction.margin, Image.id)
            .limit(n)
        ).all()
    for image_id, _sha, rel in first:
        img = PILImage.new("RGB", (320, 240), (image_id % 255, 120, 200))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        path = cat.data_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _label_page_script() -> None:
    from labeller.app import frame, page_function

    frame()
    page_function("label")()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    from labeller import labelling
    from labeller.labelling import QueueSpec

    with tempfile.TemporaryDirectory(prefix="skulab-bench-") as tmp:
        os.environ["SKULAB_DATA"] = tmp
        cat = Catalogue(tmp)
        cat.migrate()
        t = time.perf_counter()
        run_id = build(cat, args.images)
        write_page_files(cat, run_id, PAGE * 4)
        print(f"built {args.images:,} images in {time.perf_counter() - t:.1f} s ({tmp})")

        results: dict[str, list[float]] = {}
        spec = QueueSpec("uncertain")
        results["load_page (queue+claim+cards)"] = timed(
            lambda: labelling.load_page(cat, spec, run_id=run_id, user="bench", page_size=PAGE),
            args.repeat,
        )

        from streamlit.testing.v1 import AppTest

        at = AppTest.from_function(_label_page_script, default_timeout=120)
        at.session_state["user"] = "bench"
        t = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t
        assert not at.exception, [e.value for e in at.exception]
        shown = [c for c in at.checkbox if c.key.startswith("lab_sel_")]
        assert len(shown) == PAGE, f"the Label page showed {len(shown)} images, not {PAGE}"

        def rerender() -> None:
            at.session_state["label_grid"] = None  # force the queue query, as a new page does
            at.run()

        results["render Label page (AppTest, warm)"] = timed(rerender, args.repeat)

        page = labelling.load_page(cat, spec, run_id=run_id, user="bench", page_size=PAGE * 3)
        cards = page.cards
        with cat.read() as s:
            code, model = s.execute(
                select(Sku.style_code, SneakerModel.name).join(SneakerModel).limit(1)
            ).one()
        singles = iter(cards[: args.repeat])
        results["label 1 image"] = timed(
            lambda: labelling.label_images(cat, [next(singles).image_id], model, code, "bench"),
            args.repeat,
        )
        batch = [c.image_id for c in cards[args.repeat : args.repeat + PAGE]]
        results[f"label {len(batch)} images"] = timed(
            lambda: labelling.label_images(cat, batch, model, code, "bench"), 1
        )
        rest = cards[args.repeat + PAGE : args.repeat + 2 * PAGE]
        accepted: list[labelling.Action] = []
        results[f"accept {len(rest)} suggestions"] = timed(
            lambda: accepted.append(labelling.accept_suggestions(cat, rest, "bench")), 1
        )
        results[f"undo accept of {len(rest)}"] = timed(
            lambda: labelling.undo_action(cat, accepted[0], "bench"), 1
        )
        cat.dispose()

    print(
        f"\nLabel page at {args.images:,} images ({PAGE} per page); "
        f"first AppTest render (cold, makes {PAGE} thumbnails): {cold:.2f} s"
    )
    print(f"{'measure':42s} {'median':>9s} {'max':>9s}")
    for name, values in results.items():
        print(f"{name:42s} {statistics.median(values) * 1000:7.0f}ms {max(values) * 1000:7.0f}ms")
    page_s = statistics.median(results["render Label page (AppTest, warm)"])
    label_s = statistics.median(results["label 1 image"])
    print(
        f"\npage {page_s:.2f} s (target ≤ {TARGET_PAGE_S} s): "
        f"{'OK' if page_s <= TARGET_PAGE_S else 'OVER'}; "
        f"a label {label_s * 1000:.0f} ms (target ≤ {TARGET_LABEL_S * 1000:.0f} ms): "
        f"{'OK' if label_s <= TARGET_LABEL_S else 'OVER'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
