"""Data folders for the Splits/Train/Predict tests: a labelled demo catalogue, and one trained.

Both are built once per test session (module-level cache, shared by the AppTest and the
browser tests) and copied for each test, so no test sees another's changes.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select, text

from db import Catalogue
from db.models import Image, ImageSource, Run
from db.ops import set_label
from db.splits import assign_splits

PER_COLOURWAY = 4
"""Demo images per SKU: 30 SKUs of 6 models, about 130 images in all."""
TRAIN_PARAMS = {"backbone": "tiny", "flip_augment": False}
"""The smallest cascade that is still a real one (random-init 64 px CNN, no flipped copies)."""

_BUILT: dict[str, Path] = {}


def _close(cat: Catalogue) -> None:
    with cat.engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    cat.dispose()


def label_by_weak_labels(cat: Catalogue, user: str = "tests") -> int:
    """Label every unlabelled sneaker image with what its page claims (a few claims are wrong)."""
    with cat.write() as s:
        rows = s.execute(
            select(Image.id, ImageSource.weak_model, ImageSource.weak_sku)
            .join(ImageSource, ImageSource.image_id == Image.id)
            .where(Image.status == "new", ImageSource.weak_sku.is_not(None))
            .order_by(Image.id)
        ).all()
        done: set[int] = set()
        for image_id, model, sku in rows:
            if image_id not in done:
                set_label(s, image_id, model, sku, user, how="bulk")
                done.add(image_id)
    return len(done)


def labelled_folder(
    demo_template: Callable[[int, int], Path], factory: pytest.TempPathFactory
) -> Path:
    """The demo catalogue with every sneaker labelled by its weak label; no splits yet."""
    if "labelled" not in _BUILT:
        folder = factory.mktemp("part2-labelled") / "data"
        shutil.copytree(demo_template(PER_COLOURWAY, 0), folder)
        cat = Catalogue(folder)
        cat.migrate()
        label_by_weak_labels(cat)
        _close(cat)
        _BUILT["labelled"] = folder
    return _BUILT["labelled"]


def trained_folder(
    demo_template: Callable[[int, int], Path], factory: pytest.TempPathFactory
) -> Path:
    """The labelled catalogue with splits and one succeeded, active run (trained in-process)."""
    if "trained" not in _BUILT:
        from training.jobs import run_fit

        folder = factory.mktemp("part2-trained") / "data"
        shutil.copytree(labelled_folder(demo_template, factory), folder)
        cat = Catalogue(folder)
        cat.migrate()
        with cat.write() as s:
            assign_splits(s, reset=True, user="tests")
        run_id = run_fit(cat, dict(TRAIN_PARAMS), promote=True, name="fixture")
        with cat.read() as s:
            run = s.get(Run, run_id)
            assert run is not None
            assert run.status == "succeeded", run.error
            assert run.active
        _close(cat)
        _BUILT["trained"] = folder
    return _BUILT["trained"]


def private_copy(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Catalogue:
    """A copy of a built folder for one test, with ``SKULAB_DATA`` pointing at it."""
    folder = tmp_path / "data"
    shutil.copytree(source, folder)
    monkeypatch.setenv("SKULAB_DATA", str(folder))
    cat = Catalogue(folder)
    cat.migrate()
    return cat
