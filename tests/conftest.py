"""Test fixtures: real databases (SQLite always, PostgreSQL when LODE_TEST_PG_URL is set).

Each database-facing test runs once per database through the ``database`` fixture's params. The
schema is migrated once per session (a template file copied per test on SQLite; tables truncated
between tests on PostgreSQL). Under ``CI=true`` a missing or unreachable PostgreSQL fails the run.

With pytest-xdist (``python3 dev.py test`` runs one worker per core) each worker gets a database
of its own beside LODE_TEST_PG_URL's, ``<name>_<worker>``, created afresh and dropped at the end.

With LODE_TEST_S3 set (CI sets it) each worker starts one moto S3 server on 127.0.0.1
(``tests/moto_server.py``), and the delivery and catalogue tests (tests/delivery, tests/products)
keep their release files in a fresh bucket on it when they run on PostgreSQL — the production pair
— while on SQLite they keep them in the local folder, so both stores run the same tests without a
run of their own. Under ``CI=true`` LODE_TEST_S3 must be set, and a moto server that does not start
fails the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar
from sqlalchemy import text

from catalog import db
from catalog.app import create_app
from catalog.settings import Settings, load_settings
from tests.support import Actors, Catalogue, lifespan

PG_URL = os.environ.get("LODE_TEST_PG_URL", "").strip()
S3_ON = os.environ.get("LODE_TEST_S3", "").strip().lower() not in ("", "0", "false", "no")
S3_SUITES = ("delivery", "products")  # tests/<these>/ run on a bucket when on PostgreSQL
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TESTS = Path(__file__).resolve().parent
PEPPER = "test-pepper-" + "x" * 40
NOISE_SECRET = "test-noise-secret-" + "n" * 40


def pytest_configure(config: pytest.Config) -> None:
    if IN_CI and not PG_URL:
        raise pytest.UsageError("CI=true but LODE_TEST_PG_URL is not set: the PostgreSQL tests must run in CI.")
    if IN_CI and not S3_ON:
        raise pytest.UsageError("CI=true but LODE_TEST_S3 is not set: the object storage tests must run in CI.")


def make_settings(tmp: Path, database_url: str, **env: str) -> Settings:
    environ = {
        "LODE_ENV": "test",
        "LODE_DATA_DIR": str(tmp / "data"),
        "LODE_DATABASE_URL": database_url,
        "LODE_KEY_PEPPER": PEPPER,
        "LODE_NOISE_SECRET": NOISE_SECRET,  # fixed, so anonymised answers are the same on every run
        "LODE_LOG_LEVEL": "WARNING",
        **env,
    }
    return load_settings(environ)


def migrate(settings: Settings) -> None:
    from alembic import command

    from catalog.migrations import alembic_config

    command.upgrade(alembic_config(settings), "head")


@pytest.fixture(scope="session", name="sqlite_template")
def fx_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("template")
    path = tmp / "template.db"
    migrate(make_settings(tmp, f"sqlite+aiosqlite:///{path}"))
    return path


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _worker_database(name: str, *, create: bool) -> None:
    """Drop (and with ``create``, create afresh) this worker's own database beside PG_URL's."""
    conn = await asyncpg.connect(_plain(PG_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session", name="pg_ready")
def fx_pg_ready(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not PG_URL:
        pytest.skip("PostgreSQL tests need LODE_TEST_PG_URL (they always run in CI)")
    tmp = tmp_path_factory.mktemp("pg")
    url, own = PG_URL, ""
    if WORKER:
        base, _, name = PG_URL.rpartition("/")
        name, _, query = name.partition("?")
        own = f"{name}_{WORKER}"
        url = f"{base}/{own}" + (f"?{query}" if query else "")
    settings = make_settings(tmp, url)

    async def reset_schema() -> None:
        engine = db.create_engine(settings)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        finally:
            await engine.dispose()

    try:
        if own:
            asyncio.run(_worker_database(own, create=True))
        asyncio.run(reset_schema())
    except Exception as exc:
        message = f"PostgreSQL at LODE_TEST_PG_URL is unreachable: {exc}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    migrate(settings)
    yield settings.database_url
    if own:
        asyncio.run(_worker_database(own, create=False))


async def truncate_all(settings: Settings) -> None:
    from catalog.db import Base
    from catalog.migrations import load_all_models

    load_all_models()
    engine = db.create_engine(settings)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            await conn.execute(text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64})
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], name="database")
def fx_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL for this test: a fresh migrated SQLite file, or the truncated PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "lode.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("pg_ready")
    asyncio.run(truncate_all(make_settings(tmp_path, url)))
    return url


@pytest.fixture(scope="session", name="moto")
def fx_moto() -> Iterator[Any]:
    """This worker's moto S3 server, with test credentials in the environment for botocore's chain."""
    if not S3_ON:
        pytest.skip("S3 tests need LODE_TEST_S3=1 (they always run in CI)")
    from tests.moto_server import CREDENTIALS, MotoServer

    try:
        server = MotoServer.start()
    except Exception as exc:
        message = f"LODE_TEST_S3 is set but moto's S3 server would not start: {exc}"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        yield server
    server.stop()


@pytest.fixture(name="bucket")
def fx_bucket(moto: Any) -> Iterator[str]:
    """A fresh bucket on the moto server, forgotten (with everything in it) after the test."""
    yield moto.bucket()
    moto.reset()


def on_s3(request: pytest.FixtureRequest, database: str) -> bool:
    """Whether this test keeps its release files in a bucket (see the module's docstring)."""
    if not (S3_ON and database.startswith("postgresql")):
        return False
    path = Path(str(request.node.path)).resolve()
    return path.is_relative_to(TESTS) and path.relative_to(TESTS).parts[0] in S3_SUITES


@pytest.fixture(name="settings")
def fx_settings(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    if on_s3(request, database):
        from tests.moto_server import store_env

        return make_settings(
            tmp_path, database, **store_env(request.getfixturevalue("moto"), request.getfixturevalue("bucket"))
        )
    return make_settings(tmp_path, database)


@pytest.fixture(name="app")
def fx_app(settings: Settings) -> Litestar:
    return create_app(settings, run_worker=False)


@pytest.fixture(name="client")
async def fx_client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client driving the app in the test's own event loop (PostgreSQL pools are per loop)."""
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=60) as client,
    ):
        yield client


@pytest.fixture(name="actors")
async def fx_actors(client: httpx.AsyncClient, app: Litestar, settings: Settings) -> Actors:
    actors = Actors(client, app, settings)
    await actors.bootstrap()
    return actors


@pytest.fixture(name="sessions")
def fx_sessions(app: Litestar) -> Iterator[Any]:
    yield app.state.sessions


@pytest.fixture(name="catalogue")
def fx_catalogue(client: httpx.AsyncClient, actors: Actors) -> Catalogue:
    return Catalogue(client, actors)
