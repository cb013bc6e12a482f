"""Opening the catalogue: the engine, its SQLite settings, sessions and migrations."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from db import config
from db.images import ImageStore
from db.ops import NEW_FILES, discard_new_files

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_S = 30.0


def _use_wal(cur: Any) -> None:
    """Switch the database to WAL (once per database; later connections find it so).

    The switch needs a lock that SQLite does not always wait for through the busy handler
    (several processes opening one new database at once get "database is locked" at once),
    so it is retried here for as long as the busy timeout allows.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.01
    while True:
        try:
            mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            transient = "locked" in str(exc) or "busy" in str(exc)
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


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
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        _use_wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
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
    def display_url(self) -> str:
        """The database URL as it may be shown or logged (password hidden)."""
        return self.engine.url.render_as_string(hide_password=True)

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
        # Image files written in the transaction (db.ops.ingest_prepared) are removed again
        # when it rolls back, before the rollback, while this writer still holds the lock.
        with self._write() as session:
            session.info[NEW_FILES] = []
            try:
                with session.begin():
                    try:
                        yield session
                    except BaseException:
                        discard_new_files(session, self.store)
                        raise
            except BaseException:
                discard_new_files(session, self.store)  # the commit itself failed
                raise
            finally:
                session.info.pop(NEW_FILES, None)

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return cfg

    def schema_revision(self) -> set[str]:
        """The Alembic revisions the database is at (empty for a new database)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic ``upgrade head``).

        Several processes may start on one new database at once (the app, a crawl, a
        training job): the upgrade runs in one write transaction (SQLite: ``BEGIN
        IMMEDIATE``, PostgreSQL: an advisory lock taken in ``env.py``), so the others wait
        for it and then find the schema up to date. A database already at the newest
        revision is only read.
        """
        from alembic import command
        from alembic.script import ScriptDirectory

        cfg = self._alembic_config()
        heads = set(ScriptDirectory.from_config(cfg).get_heads())
        with _MIGRATE_LOCK:
            if self.schema_revision() == heads:
                return
            cfg.attributes["engine"] = self._writer_engine
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
