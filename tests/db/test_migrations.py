"""The schema migrates itself on start: matches the models, keeps data, and survives a crowd."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from db import Catalogue, open_catalogue, ops
from db.models import Base, Image
from tests.db.helpers import picture


def _heads(cat: Catalogue) -> set[str]:
    return set(ScriptDirectory.from_config(cat._alembic_config()).get_heads())


def test_migrated_schema_matches_the_models(catalogue: Catalogue) -> None:
    assert catalogue.schema_revision() == _heads(catalogue)
    with catalogue.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


def test_an_old_catalogue_is_upgraded_with_its_data(tmp_path: Path) -> None:
    cat = Catalogue(tmp_path)
    cfg = cat._alembic_config()
    cfg.attributes["engine"] = cat._writer_engine
    command.upgrade(cfg, "0001")  # the first schema, before phash_mirror
    with cat.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO images (sha256, path, ext, width, height, n_bytes, phash, status, "
                "split_locked, created_at, updated_at) VALUES ('ab', 'images/ab/ab.jpg', 'jpg', "
                "1, 1, 1, '0', 'new', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    cat.dispose()
    again = Catalogue(tmp_path)
    again.migrate()
    assert again.schema_revision() == _heads(again)
    with again.read() as s:
        assert s.scalars(select(Image.sha256)).all() == ["ab"]
    with again.write() as s:
        ops.ingest_image(s, again.store, picture(1), "new.jpg", ops.Source(kind="import"))
    with again.read() as s:
        assert s.scalar(select(func.count()).where(Image.phash_mirror.is_not(None))) == 1


def _open_at_once(folder: str, barrier: object, n: int) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    cat = open_catalogue(folder)
    with cat.write() as s:
        ops.ingest_image(s, cat.store, picture(n), f"{n}.jpg", ops.Source(kind="import"))


def test_processes_starting_on_a_new_catalogue_at_once(tmp_path: Path) -> None:
    """The app, a crawl and a training job started together on a fresh data folder:
    one migrates, the others wait for it and find the schema up to date."""
    ctx = mp.get_context("spawn")
    for trial in range(2):
        folder = tmp_path / f"d{trial}"
        barrier = ctx.Barrier(4)
        procs = [
            ctx.Process(target=_open_at_once, args=(str(folder), barrier, n)) for n in range(4)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        cat = Catalogue(folder)
        with cat.read() as s:
            assert s.scalar(select(func.count()).select_from(Image)) == 4
        assert cat.schema_revision() == _heads(cat)
        cat.dispose()
