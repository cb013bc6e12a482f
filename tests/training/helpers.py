"""A labelled demo catalogue for the cascade's tests, built from ``db.demo.generate``.

Every sneaker is labelled with its true model and SKU (the demo's own loader labels only
a fifth), split by its position within its colourway, so the tests see a few images per
class in train and a couple in val and test. Junk images stay unlabelled.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

from sqlalchemy import text

from db import Catalogue, ops
from db.demo import generate

PER_COLOURWAY = 6
SIZE = 96
SPLIT_BY_POSITION = ("train", "train", "train", "val", "test", "test")
_TEMPLATES: dict[tuple[int, int, str | None, bool], Path] = {}


def build_demo(
    folder: Path,
    per_colourway: int = PER_COLOURWAY,
    seed: int = 0,
    hold_out: str | None = None,
    with_skus: bool = True,
) -> Catalogue:
    """A catalogue in ``folder`` with the demo sneakers labelled (``hold_out``'s left unlabelled)."""
    cat = Catalogue(folder)
    cat.migrate()
    position: dict[str, int] = defaultdict(int)
    with cat.write() as s:
        for item in generate(seed=seed, per_colourway=per_colourway, size=SIZE):
            source = ops.Source(kind="demo", image_url=item.image_url, page_url=item.page_url)
            if item.junk or item.model == hold_out:
                ops.ingest_image(s, cat.store, item.data, item.name, source)
                continue
            assert item.style_code is not None and item.model is not None
            i = position[item.style_code]
            position[item.style_code] += 1
            split = SPLIT_BY_POSITION[i % len(SPLIT_BY_POSITION)]
            if with_skus:
                ops.get_or_create_sku(s, item.style_code, item.model)
            ops.ingest_image(
                s,
                cat.store,
                item.data,
                item.name,
                source,
                model=item.model,
                sku=item.style_code if with_skus else None,
                split=split,
            )
    return cat


def demo_copy(
    tmp: Path,
    cache: Path,
    per_colourway: int = PER_COLOURWAY,
    hold_out: str | None = None,
    with_skus: bool = True,
) -> Catalogue:
    """A private copy of a demo catalogue built once per session under ``cache``."""
    key = (per_colourway, 0, hold_out, with_skus)
    if key not in _TEMPLATES:
        folder = cache / f"demo-{per_colourway}-{hold_out or 'all'}-{int(with_skus)}"
        cat = build_demo(folder, per_colourway, hold_out=hold_out, with_skus=with_skus)
        with cat.engine.connect() as conn:
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        cat.dispose()
        _TEMPLATES[key] = folder
    target = tmp / "data"
    shutil.copytree(_TEMPLATES[key], target)
    cat = Catalogue(target)
    cat.migrate()
    return cat
