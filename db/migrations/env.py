"""Alembic environment: runs on the engine the catalogue hands over (batch mode for SQLite)."""

from alembic import context
from sqlalchemy import text

from db.models import Base

PG_MIGRATION_LOCK = 0x736B756C6162  # "skulab": one upgrade at a time on PostgreSQL

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` run by hand with an ini file
    from db import Catalogue

    engine = Catalogue()._writer_engine

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
        # One transaction for the whole upgrade, SQLite included (its DDL is
        # transactional): a second process waits for it instead of racing it.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK}
            )
        context.run_migrations()
    connection.commit()
