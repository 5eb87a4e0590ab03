"""Operations routes: readiness names the component that fails, the database or the object store."""

from __future__ import annotations

import shutil

import httpx
from litestar import Litestar

from catalog.app import create_app
from tests.conftest import make_settings
from tests.support import expect, lifespan, problem

# Where nothing answers: a folder that does not exist for SQLite, a closed port for PostgreSQL.
UNREACHABLE = {
    "sqlite": "sqlite+aiosqlite:///{tmp}/missing/folder/lode.db",
    "postgresql": "postgresql+asyncpg://lode@127.0.0.1:1/lode",
}


async def ready(app: Litestar) -> httpx.Response:
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
    ):
        return await client.get("/ready")


class TestReady:
    async def test_ready_when_the_database_and_the_store_answer(self, client) -> None:
        assert expect(await client.get("/ready"), 200) == {"status": "ready"}

    async def test_a_database_that_does_not_answer_is_named(self, settings, tmp_path) -> None:
        dialect = "sqlite" if settings.is_sqlite else "postgresql"
        broken = make_settings(tmp_path, UNREACHABLE[dialect].format(tmp=tmp_path))
        body = problem(await ready(create_app(broken, run_worker=False)), 503, "not_ready")
        assert body["failed"] == ["database"] and body["detail"] == "Not ready: the database did not answer."

    async def test_a_store_that_cannot_be_written_is_named(self, app, client, settings) -> None:
        objects = settings.data_dir / "objects"
        shutil.rmtree(objects)
        objects.write_text("a file where the store's folder was")  # as a lost mount leaves it: unwritable
        body = problem(await client.get("/ready"), 503, "not_ready")
        assert body["failed"] == ["object_store"] and body["detail"] == "Not ready: the object store did not answer."

    async def test_a_bucket_that_is_not_there_is_named(self, moto, database, tmp_path) -> None:
        from tests.moto_server import store_env

        good = make_settings(tmp_path / "good", database, **store_env(moto, moto.bucket()))
        assert expect(await ready(create_app(good, run_worker=False)), 200) == {"status": "ready"}
        gone = make_settings(tmp_path / "gone", database, **store_env(moto, "lode-test-never-made"))
        body = problem(await ready(create_app(gone, run_worker=False)), 503, "not_ready")
        assert body["failed"] == ["object_store"]


class TestDatabaseOutage:
    async def test_an_unreachable_database_is_503_with_retry_after(self, settings, tmp_path) -> None:
        dialect = "sqlite" if settings.is_sqlite else "postgresql"
        app = create_app(make_settings(tmp_path, UNREACHABLE[dialect].format(tmp=tmp_path)), run_worker=False)
        async with (
            lifespan(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
        ):
            for path in ("/v1/products", "/v1/me"):
                response = await client.get(path, headers={"Authorization": "Bearer lode_sk_unknown"})
                body = problem(response, 503, "database_unavailable")
                assert response.headers["retry-after"] == "5" and "nothing was changed" in body["detail"]
