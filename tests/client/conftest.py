"""The client against a live Lode: `lode serve` on the seeded demo, on SQLite and on PostgreSQL.

One server per database for the whole session (per xdist worker): seeding the demo is the slow
part. Tests use different demo organisations and products, so they do not depend on each other.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, PG_URL, WORKER, _worker_database
from tests.web.conftest import DemoServer, demo_server


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], name="live")
def fx_live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    data = tmp_path_factory.mktemp(f"client-{request.param}")
    if request.param == "sqlite":
        with demo_server(data) as server:
            yield server
        return
    if not PG_URL:
        pytest.skip("PostgreSQL tests need LODE_TEST_PG_URL (they always run in CI)")
    base, _, name = PG_URL.rpartition("/")
    name = f"{name.partition('?')[0]}_client{('_' + WORKER) if WORKER else ''}"
    try:
        asyncio.run(_worker_database(name, create=True))
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL at LODE_TEST_PG_URL is unreachable: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL at LODE_TEST_PG_URL is unreachable: {exc}")
    url = f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    try:
        with demo_server(data, url) as server:
            yield server
    finally:
        asyncio.run(_worker_database(name, create=False))


@pytest.fixture(name="client_home")
def fx_client_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of the test's own: no profile or LODE_* variable of the machine leaks in."""
    for name in list(os.environ):
        if name.startswith("LODE_") and name not in ("LODE_TEST_PG_URL",):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LODE_CONFIG", str(tmp_path / "config.toml"))
    return tmp_path
