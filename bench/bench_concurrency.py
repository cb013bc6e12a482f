"""Everyone at once on one SQLite catalogue: 8 labellers, 3 imports and a crawl for a minute.

    python bench/bench_concurrency.py [--seconds 60] [--labellers 8] [--imports 3]

A demo catalogue is made in a temporary folder. Then, as separate processes, for
``--seconds``: labellers that each take a page of the "new" queue with claims (as the Label
page does), label every image of it one write at a time, and when the queue is dry relabel
their own images; imports that each import fresh folders of 40 generated pictures, one
after another; and ``scrapy crawl shopify`` of a local paged store on 127.0.0.1.

At the end every write a process saw committed is looked up: a label that is not the last
one its labeller wrote, or an import or crawl picture without its row, is a lost write. Also
counted: errors by kind ("database is locked" among them), images that two labellers both
labelled from a page of the queue they had claimed (a page left half-done at the end goes
back to the queue, so holding one after another is allowed; labelling both is not), and
`python -m db check`'s verdict. Prints a Markdown row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select  # noqa: E402

from db import Catalogue, ops  # noqa: E402
from db.models import Image, ImageSource, Sku  # noqa: E402


def labeller(data: str, name: str, until: float, out: str) -> None:
    cat = Catalogue(data)
    with cat.read() as s:
        skus = [(sku.model.name, sku.style_code) for sku in s.scalars(select(Sku))]
    rng = random.Random(name)
    last: dict[int, str] = {}
    held: set[int] = set()
    errors: Counter[str] = Counter()
    ops_done = 0
    while time.time() < until:
        try:
            with cat.write() as s:
                page = ops.queue(s, ops.QueueFilter(status="new", user=name), page_size=8)
                ids = [i.id for i in page.items]
                ops.claim(s, ids, name)
            ops_done += 1
            claimed = set(ids)
            if not ids:  # the queue is dry: relabel own images
                ids = rng.sample(sorted(last), min(8, len(last))) if last else []
            for image_id in ids:
                if time.time() >= until:
                    break
                model, sku = rng.choice(skus)
                try:
                    with cat.write() as s:
                        ops.set_label(s, image_id, model, sku, user=name)
                    last[image_id] = sku
                    if image_id in claimed:
                        held.add(image_id)
                except Exception as exc:  # counted by kind, the loop goes on
                    errors[_kind(exc)] += 1
                ops_done += 1
            with cat.write() as s:
                ops.release_claims(s, name)
            ops_done += 1
        except Exception as exc:
            errors[_kind(exc)] += 1
    Path(out).write_text(
        json.dumps({"ops": ops_done, "errors": errors, "last": last, "held": sorted(held)})
    )


def importer(data: str, name: str, until: float, out: str, work: str) -> None:
    sys.path.insert(0, str(REPO / "tests" / "db"))
    from helpers import picture  # the catalogue tests' picture factory

    from db.importer import import_tree

    cat = Catalogue(data)
    created, runs, errors = 0, 0, Counter()
    shas: list[str] = []
    n = 0
    seed = int(name[-1]) * 1_000_000
    while time.time() < until:
        folder = Path(work) / f"{name}-{n}" / "Nike Cortez"
        folder.mkdir(parents=True)
        for i in range(40):
            data_bytes = picture(seed + n * 100 + i, size=(200, 160))
            (folder / f"{i}.jpg").write_bytes(data_bytes)
            shas.append(ops.sha256_hex(data_bytes))
        try:
            report = import_tree(cat, folder.parent, split=None, user=name)
            created += report.created
            runs += 1
            errors.update(_kind(ValueError(e)) for _f, e in report.errors)
        except Exception as exc:
            errors[_kind(exc)] += 1
        n += 1
    Path(out).write_text(
        json.dumps({"ops": created, "imports": runs, "errors": errors, "shas": shas})
    )


def _kind(exc: BaseException) -> str:
    text = str(exc)
    if "database is locked" in text:
        return "database is locked"
    return f"{type(exc).__name__}: {text[:80]}"


def crawl(data: Path, until: float, log: Path) -> tuple[int, str]:
    sys.path.insert(0, str(REPO / "tests" / "scraper"))
    sys.path.insert(0, str(REPO))
    from local_site import LocalSite, serve

    from tests.scraper.conftest import local_settings
    from tests.scraper.test_crawl_resume import paged_store

    site = LocalSite()
    with serve(site):
        paged_store(site)
        env = {**os.environ, "SKULAB_DATA": str(data)}
        env.pop("DATABASE_URL", None)
        cmd = [sys.executable, "-m", "scrapy", "crawl", "shopify", *local_settings(site)]
        cmd += ["-a", f"stores={site.base}", "-s", "SHOPIFY_MAX_PAGES=1000"]
        with log.open("wb") as fh:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
            while proc.poll() is None and time.time() < until:
                time.sleep(0.2)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # stop as a user does
            proc.wait(120)
        pictures = len(site.paths("/cdn/"))
    return pictures, f"exit {proc.returncode}"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--labellers", type=int, default=8)
    p.add_argument("--imports", type=int, default=3)
    p.add_argument("--per-colourway", type=int, default=30)
    p.add_argument("--keep", action="store_true", help="keep the data folder (printed)")
    args = p.parse_args()

    import tests.scraper.test_crawl_resume as paged

    paged.PAGES, paged.PER_PAGE = 60, 20  # a store big enough to crawl for the whole minute

    tmp = Path(tempfile.mkdtemp(prefix="bench-concurrency-"))
    data = tmp / "data"
    cat = Catalogue(data)
    cat.migrate()
    from db.demo import load_demo

    load_demo(cat, per_colourway=args.per_colourway)
    with cat.read() as s:
        start_images = s.scalar(select(func.count()).select_from(Image))
    ctx = mp.get_context("spawn")
    until = time.time() + 5 + args.seconds  # the processes start in the first seconds
    procs = []
    outs: dict[str, Path] = {}
    for i in range(args.labellers):
        name = f"labeller{i}"
        outs[name] = tmp / f"{name}.json"
        procs.append(ctx.Process(target=labeller, args=(str(data), name, until, str(outs[name]))))
    for i in range(args.imports):
        name = f"import{i}"
        outs[name] = tmp / f"{name}.json"
        procs.append(
            ctx.Process(target=importer, args=(str(data), name, until, str(outs[name]), str(tmp)))
        )
    for proc in procs:
        proc.start()
    pictures, crawl_exit = crawl(data, until, tmp / "crawl.log")
    for proc in procs:
        proc.join(300)

    results = {k: json.loads(v.read_text()) for k, v in outs.items()}
    errors: Counter[str] = Counter()
    lost = 0
    held: Counter[int] = Counter()
    label_ops = import_ops = 0
    with cat.read() as s:
        current = dict(
            s.execute(select(Image.id, Sku.style_code).join(Sku, Sku.id == Image.sku_id)).all()
        )
        known = set(s.scalars(select(Image.sha256)))
        crawled = s.scalar(
            select(func.count(func.distinct(ImageSource.image_id))).where(
                ImageSource.kind == "crawl"
            )
        )
    for name, r in results.items():
        errors.update(r["errors"])
        if name.startswith("labeller"):
            label_ops += r["ops"]
            held.update(r["held"])
            lost += sum(1 for i, sku in r["last"].items() if current.get(int(i)) != sku)
        else:
            import_ops += r["ops"]
            lost += sum(1 for sha in r["shas"] if sha not in known)
    twice = sum(1 for n in held.values() if n > 1)
    check = subprocess.run(
        [sys.executable, "-m", "db", "check"],
        cwd=REPO,
        env={**os.environ, "SKULAB_DATA": str(data)},
        capture_output=True,
        text=True,
    )
    total_ops = label_ops + import_ops + crawled
    row = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}",
        "load_1min_at_end": round(os.getloadavg()[0], 1),
        "seconds": args.seconds,
        "start_images": start_images,
        "labeller_ops": label_ops,
        "imported_images": import_ops,
        "crawled_images": crawled,
        "pictures_fetched": pictures,
        "crawl": crawl_exit,
        "operations": total_ops,
        "errors": dict(errors),
        "database_is_locked": errors.get("database is locked", 0),
        "lost_writes": lost,
        "images_labelled_by_two_from_their_queue": twice,
        "db_check": check.stdout.strip().splitlines()[0] if check.stdout else check.stderr[-300:],
        "data": str(tmp) if args.keep else "(removed)",
    }
    print(json.dumps(row, indent=1))
    print(
        f"| {row['date']} | {args.labellers} labellers + {args.imports} imports + crawl, "
        f"{args.seconds:g} s | {total_ops:,} ({label_ops:,} label, {import_ops:,} imported, "
        f"{crawled:,} crawled) | {sum(errors.values())} ({row['database_is_locked']} locked) | "
        f"{lost} | {twice} | {row['db_check']} | load {row['load_1min_at_end']} |"
    )
    if not args.keep:
        cat.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if lost == 0 and not twice else 1


if __name__ == "__main__":
    raise SystemExit(main())
