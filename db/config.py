"""Where skulab keeps its data: one folder, and the database URL inside it."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "SKULAB_DATA"
DATABASE_ENV = "DATABASE_URL"
DB_FILE = "skulab.db"


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``explicit``, else ``$SKULAB_DATA``, else ``./data``; created if missing."""
    raw = explicit if explicit is not None else os.environ.get(DATA_ENV) or "data"
    path = Path(raw).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url(data: Path) -> str:
    """``$DATABASE_URL`` when set, else the SQLite file inside the data folder."""
    return os.environ.get(DATABASE_ENV) or f"sqlite:///{data / DB_FILE}"
