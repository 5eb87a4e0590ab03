"""A fresh Lode database for a benchmark: SQLite in a temporary directory, or a scratch PostgreSQL
database (its public schema dropped and migrated afresh — hence the "bench" in its name)."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
from pathlib import Path

from alembic import command
from sqlalchemy import text

from catalog import db
from catalog.migrations import alembic_config
from catalog.settings import Settings, load_settings


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


def command_line(script: str) -> str:
    """The command that reproduces a benchmark's run, to print above its figures."""
    env = os.environ.get("LODE_BENCH_PG_URL", "").strip()
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    words = [python, os.path.relpath(script), *sys.argv[1:]]
    return ("$ " + (f"LODE_BENCH_PG_URL={env} " if env else "")) + " ".join(shlex.quote(w) for w in words)
