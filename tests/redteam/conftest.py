"""Fixtures of the red team (``target.py`` builds what it attacks).

Each suite runs against two configurations:

* ``defended`` — the grade policy as shipped (on SQLite and on PostgreSQL);
* ``weakened`` — L4 as it was before its revision (``target.weakened_l4_rule``), on SQLite only: the
  answers do not depend on the database, and this run only proves that the attack works and that
  the new defences are what stop it.

The daily cap on L4 queries is lifted in both: the suites measure the anonymisation itself within
their own query budgets (the cap is one more layer on top).

The target (the published population and the analyst's licence) is built once per database and
module, and every suite in either configuration attacks it with a fresh ``Analyst`` (no notes, no
queries counted), as ``bench/redteam_bench.py`` does: the suites only query it, and building it is
a whole publish and review. What differs between configurations is the L4 rule installed for the
test, which every query reads afresh; nothing the build leaves depends on it. A worker builds
it once per database for each unbroken run of this module's tests it is given (pytest ends
module fixtures when the next test is another module's).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from litestar import Litestar

from catalog import policy
from catalog.app import create_app
from catalog.settings import Settings
from tests.conftest import make_settings, truncate_all
from tests.redteam import target as redteam
from tests.redteam.analyst import Analyst
from tests.support import Actors, Catalogue, lifespan

HERE = Path(__file__).resolve().parent
WEAKENED_ON_SQLITE_ONLY = "the weakened configuration runs on SQLite only: answers do not depend on the database"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the weakened configuration on PostgreSQL by a mark, before any fixture is set up: a worker
    whose first red-team test is one of those would otherwise build a target only to skip it."""
    for item in items:
        params = getattr(item, "callspec", None) and item.callspec.params
        if params and params.get("configuration") == "weakened" and params.get("database") != "sqlite":
            if Path(str(item.path)).resolve().is_relative_to(HERE):
                item.add_marker(pytest.mark.skip(reason=WEAKENED_ON_SQLITE_ONLY))


DATABASES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=DATABASES, name="database")
def fx_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tests' ``database``, but one per module: a fresh migrated SQLite file, or the truncated
    PostgreSQL (no other module's test runs while this one's fixtures live)."""
    tmp = tmp_path_factory.mktemp("redteam-db")
    if request.param == "sqlite":
        path = tmp / "lode.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("pg_ready")
    asyncio.run(truncate_all(make_settings(tmp, url)))
    return url


@pytest.fixture(scope="module", name="settings")
def fx_settings(database: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("redteam"), database)


@pytest.fixture(scope="module", name="app")
def fx_app(settings: Settings) -> Litestar:
    return create_app(settings, run_worker=False)


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="client")
async def fx_client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=60) as client,
    ):
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module", name="licensed")
async def fx_licensed(client: httpx.AsyncClient, app: Litestar, settings: Settings) -> Analyst:
    """The population published at L4 and an analyst licensed to it (whose key the suites borrow)."""
    actors = Actors(client, app, settings)
    await actors.bootstrap()
    return await redteam.licensed_analyst(client, actors, Catalogue(client, actors))


@pytest.fixture(params=["defended", "weakened"], name="configuration")
def fx_configuration(request: pytest.FixtureRequest) -> Iterator[str]:
    l4 = policy.DEFAULT_RULES["L4"]
    redteam.install(redteam.weakened_l4_rule(l4) if request.param == "weakened" else l4)
    yield request.param
    policy.install(policy.DEFAULT_POLICY)


@pytest.fixture(name="target")
def fx_target(client: httpx.AsyncClient, licensed: Analyst, configuration: str) -> dict[str, Any]:
    analyst = Analyst(client, licensed.licence_id, licensed.headers)  # fresh notes, no queries counted
    return {"analyst": analyst, "people": redteam.people(), "configuration": configuration}
