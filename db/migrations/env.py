"""Alembic environment: runs on the engine the catalogue hands over (batch mode for SQLite)."""

from alembic import context

from db.models import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:  # `alembic` run by hand with an ini file
    from db import Catalogue

    engine = Catalogue().engine

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
