"""Alembic environment: runs migrations on Lode's own engine (with its SQLite pragmas)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from catalog.db import Base, create_engine
from catalog.migrations import load_all_models
from catalog.settings import Settings

load_all_models()
target_metadata = Base.metadata
config = context.config


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # The FTS5 virtual table and its shadow tables are made by hand in 0003; autogenerate must not
    # mistake them for strays.
    return not (type_ == "table" and name is not None and name.startswith("search_fts"))


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async() -> None:
    settings: Settings = config.attributes["settings"]
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Offline (SQL script) migrations are not supported; run `lode db upgrade`.")
connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    asyncio.run(run_async())
