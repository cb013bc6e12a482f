"""Fixtures shared by every test: a fresh catalogue per test, demo catalogues from a cached template."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from db import Catalogue


@pytest.fixture(autouse=True)
def _isolated_data(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test ever touches ./data: the default data folder points into a temporary folder."""
    monkeypatch.setenv("SKULAB_DATA", str(tmp_path_factory.mktemp("default-data")))
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _close(cat: Catalogue) -> None:
    """Checkpoint the WAL into the database file and close, so the folder can be copied."""
    with cat.engine.connect() as conn:
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    cat.dispose()


@pytest.fixture
def catalogue(tmp_path: Path) -> Iterator[Catalogue]:
    """An empty, migrated catalogue in a temporary data folder."""
    cat = Catalogue(tmp_path / "data")
    cat.migrate()
    yield cat
    cat.dispose()


_TEMPLATES: dict[tuple[int, int], Path] = {}


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], Path]:
    """A data folder with the demo data loaded (and splits assigned), built once per session."""

    def build(per_colourway: int = 6, seed: int = 0) -> Path:
        key = (per_colourway, seed)
        if key not in _TEMPLATES:
            from db.demo import load_demo

            folder = tmp_path_factory.mktemp(f"demo-{per_colourway}-{seed}")
            cat = Catalogue(folder)
            cat.migrate()
            load_demo(cat, seed=seed, per_colourway=per_colourway)
            _assign_splits(cat)
            _close(cat)
            _TEMPLATES[key] = folder
        return _TEMPLATES[key]

    return build


def _assign_splits(cat: Catalogue) -> None:
    try:
        from db.splits import assign_splits
    except ModuleNotFoundError:
        return
    with cat.write() as session:
        assign_splits(session)


@pytest.fixture
def demo_catalogue(
    demo_template: Callable[[int, int], Path], tmp_path: Path
) -> Iterator[Catalogue]:
    """A private copy of the small demo catalogue (6 images per colourway), for one test."""
    folder = tmp_path / "demo"
    shutil.copytree(demo_template(6, 0), folder)
    cat = Catalogue(folder)
    cat.migrate()
    yield cat
    cat.dispose()
