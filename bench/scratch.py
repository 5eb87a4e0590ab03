"""A fresh Lode database for a benchmark: SQLite in a temporary directory, or a scratch PostgreSQL
database (its public schema dropped and migrated afresh — hence the "bench" in its name)."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from alembic import command
from sqlalchemy import text

from catalog import db
from catalog.migrations import alembic_config
from catalog.settings import Settings, load_settings
from tests.support import Actors, lifespan


async def prepare(url: str, tmp: Path) -> Settings:
    environ = {"LODE_ENV": "test", "LODE_DATA_DIR": str(tmp / "data"), "LODE_DATABASE_URL": url,
               "LODE_KEY_PEPPER": "bench-pepper-" + "x" * 40, "LODE_LOG_LEVEL": "WARNING"}  # fmt: skip
    settings = load_settings(environ)
    if not settings.is_sqlite:
        if "bench" not in url.rsplit("/", 1)[-1]:
            raise SystemExit(f"refusing to drop the schema of {url}: its database name must contain 'bench'")
        engine = db.create_engine(settings)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()
    await asyncio.to_thread(command.upgrade, alembic_config(settings), "head")
    return settings


def databases(tmp: Path, *, skip_sqlite: bool = False) -> list[tuple[str, Path]]:
    """(database URL, a directory of its own) for each database to measure: SQLite in ``tmp``
    unless skipped, and PostgreSQL when LODE_BENCH_PG_URL names a scratch database."""
    pg_url = os.environ.get("LODE_BENCH_PG_URL", "").strip()
    if pg_url and "bench" not in (urlparse(pg_url).path or ""):
        raise SystemExit("LODE_BENCH_PG_URL must name a scratch database with 'bench' in its name: it is reset.")
    found = [] if skip_sqlite else [(f"sqlite+aiosqlite:///{tmp}/bench.db", tmp / "sqlite")]
    return found + ([(pg_url, tmp / "pg")] if pg_url else [])


def command_line(script: str) -> str:
    """The command that reproduces this run, to print above its figures."""
    env = os.environ.get("LODE_BENCH_PG_URL", "").strip()
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    words = [python, os.path.relpath(script), *sys.argv[1:]]
    return ("$ " + (f"LODE_BENCH_PG_URL={env} " if env else "")) + " ".join(shlex.quote(w) for w in words)


@asynccontextmanager
async def served(url: str, tmp: Path) -> AsyncIterator[tuple[Settings, Any, httpx.AsyncClient, Actors]]:
    """A fresh database (``prepare``) and the app on it, driven in-process with its lifespan run:
    (settings, app, client, actors with the operator bootstrapped). Announces the database."""
    from catalog.app import create_app

    settings = await prepare(url, tmp)
    print(f"\n== {'SQLite' if settings.is_sqlite else 'PostgreSQL'}")
    app = create_app(settings, run_worker=False)
    transport = httpx.ASGITransport(app=app)
    async with lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client:
        actors = Actors(client, app, settings)
        await actors.bootstrap()
        yield settings, app, client, actors
