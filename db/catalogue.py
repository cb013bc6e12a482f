"""Opening the catalogue: the engine, its SQLite settings, sessions and migrations."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from db import config
from db.images import ImageStore

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_S = 30.0


def _sqlite_listeners(engine: Engine) -> None:
    """Per-connection pragmas, and BEGIN IMMEDIATE for transactions that write.

    pysqlite's own transaction handling is switched off (isolation_level None) so that
    SQLAlchemy's ``begin`` event decides how a transaction starts: writers take the write
    lock up front and wait for it (busy timeout) instead of failing half-way with
    "database is locked".
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("skulab_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        _sqlite_listeners(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


class Catalogue:
    """The catalogue in one data folder: database, image store, sessions.

    ``read()`` gives a session for queries; ``write()`` a session whose transaction takes
    the write lock first and is committed at the end of the block (rolled back on error).
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, url: str | None = None):
        self.data_dir = config.data_dir(data_dir)
        self.url = url or config.database_url(self.data_dir)
        self.engine = make_engine(self.url)
        self._writer_engine = self.engine.execution_options(skulab_write=True)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self._writer_engine, expire_on_commit=False)
        self.store = ImageStore(self.data_dir)

    def __repr__(self) -> str:
        return f"Catalogue({str(self.data_dir)!r})"

    @property
    def runs_dir(self) -> Path:
        path = self.data_dir / "runs"
        path.mkdir(exist_ok=True)
        return path

    @contextmanager
    def read(self) -> Iterator[Session]:
        # closing (not rolling back) leaves the loaded objects usable after the block
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self._write() as session, session.begin():
            yield session

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic ``upgrade head``)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = self.engine
        with _MIGRATE_LOCK:
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()


_MIGRATE_LOCK = threading.Lock()
_OPEN: dict[tuple[str, str], Catalogue] = {}


def open_catalogue(data_dir: str | os.PathLike[str] | None = None) -> Catalogue:
    """The catalogue of ``data_dir`` (default: the data folder), migrated; one per process."""
    folder = config.data_dir(data_dir)
    key = (str(folder), config.database_url(folder))
    with _MIGRATE_LOCK:
        cat = _OPEN.get(key)
    if cat is None:
        cat = Catalogue(folder)
        cat.migrate()
        with _MIGRATE_LOCK:
            cat = _OPEN.setdefault(key, cat)
    return cat
