"""A publish overtaken by a later one — it ran past STALE_PUBLISH, so a retry took the release over
— neither freezes the release nor puts it back to draft: the later publish's tables stand, told once.

The overtaken publish is held at the seam between writing its tables and freezing the release
(``Storage.publish`` wrapped on the app's real storage), and ``STALE_PUBLISH`` is set to zero so
the retry may take over at once while the first keeps the start it claimed with — as a publish that
really ran for 16 minutes would.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from catalog.notifications.models import Notice
from catalog.objectstore import StoreUnavailable
from catalog.products import releases
from catalog.storage import PublishedTable, Storage, TableSpec
from catalog.worker import Worker
from tests.products.test_releases import new_release, visits_csv
from tests.support import Actors, expect, problem

pytestmark = pytest.mark.asyncio


class Stop:
    def __init__(self) -> None:
        self.reached, self.go = asyncio.Event(), asyncio.Event()


class Gate:
    """The storage's real publish, with each call in turn run as planned: ``"hold"`` writes the
    tables then waits before returning (before the freeze), ``"fail"`` waits then fails as an
    unreachable bucket does, ``None`` runs straight through."""

    def __init__(self, storage: Storage, plan: list[str | None]) -> None:
        self.real, self.plan = storage.publish, plan
        self.stops = [Stop() for _ in plan]
        self.written: list[dict[str, PublishedTable]] = []

    async def publish(
        self, release_id: str, tables: dict[str, TableSpec], profiler: Any = None
    ) -> tuple[dict[str, PublishedTable], dict[str, list[dict[str, Any]]]]:
        turn = len(self.written)
        mode, stop = self.plan[turn], self.stops[turn]
        self.written.append({})
        if mode == "fail":
            stop.reached.set()
            await stop.go.wait()
            raise StoreUnavailable("The object store could not be reached.")
        published, across = await self.real(release_id, tables, profiler)
        self.written[turn] = published
        if mode == "hold":
            stop.reached.set()
            await stop.go.wait()
        return published, across


@pytest.fixture(name="owner")
async def fx_owner(actors: Actors):
    return await actors.org("provider")


@pytest.fixture(name="base")
async def fx_base(client, owner, catalogue) -> str:
    product = await catalogue.draft(owner)
    await new_release(client, owner, product)
    base = f"/v1/products/{product['id']}/releases/2025.1"
    expect(await client.put(f"{base}/files/visits.csv", content=visits_csv(), headers=owner.headers), 201)
    return base


def gate(app, monkeypatch, plan: list[str | None]) -> Gate:
    monkeypatch.setattr(releases, "STALE_PUBLISH", timedelta(0))
    held = Gate(app.state.storage, plan)
    monkeypatch.setattr(app.state.storage, "publish", held.publish)
    return held


async def told(app, release_id: str) -> int:
    async with app.state.sessions() as session:
        stmt = select(func.count()).where(Notice.type == "release.published", Notice.subject_id == release_id)
        return (await session.execute(stmt)).scalar_one()


class TestOvertakenPublish:
    async def test_the_later_publish_keeps_the_release_and_the_first_is_refused_and_cleared(
        self, client, owner, base, app, monkeypatch
    ) -> None:
        held = gate(app, monkeypatch, ["hold", None])
        first = asyncio.create_task(client.post(f"{base}/publish", headers=owner.headers))
        await asyncio.wait_for(held.stops[0].reached.wait(), 60)
        later = expect(await client.post(f"{base}/publish", headers=owner.headers), 200)
        held.stops[0].go.set()
        problem(await first, 409, "invalid_transition")

        release = expect(await client.get(base, headers=owner.headers), 200)
        assert release["status"] == "published" and release["published_at"] == later["published_at"]
        assert release["tables"] == later["tables"]
        # Each publish draws its own record keys, so the two wrote different bytes.
        overtaken = held.written[0]["visits"]
        assert overtaken.sha256 != release["tables"]["visits"]["sha256"]
        assert await told(app, release["id"]) == 1

        store, tables = app.state.storage.store, f"releases/{release['id']}/tables/"
        assert overtaken.key in await store.keys(tables)  # the outbox removes it once committed
        await Worker(app.state.sessions, app.state.registry, app.state.services).run_once(jobs=False)
        assert await store.keys(tables) == [f"{tables}visits-{release['tables']['visits']['sha256']}.parquet"]

    async def test_an_overtaken_publish_that_fails_leaves_the_later_one_publishing(
        self, client, owner, base, app, monkeypatch
    ) -> None:
        held = gate(app, monkeypatch, ["fail", "hold"])
        first = asyncio.create_task(client.post(f"{base}/publish", headers=owner.headers))
        await asyncio.wait_for(held.stops[0].reached.wait(), 60)
        later = asyncio.create_task(client.post(f"{base}/publish", headers=owner.headers))
        await asyncio.wait_for(held.stops[1].reached.wait(), 60)
        held.stops[0].go.set()
        problem(await first, 503, "storage_unavailable")
        assert expect(await client.get(base, headers=owner.headers), 200)["status"] == "publishing"

        held.stops[1].go.set()
        published = expect(await later, 200)
        assert published["status"] == "published"
        assert published["tables"]["visits"]["sha256"] == held.written[1]["visits"].sha256
        assert await told(app, published["id"]) == 1
        await Worker(app.state.sessions, app.state.registry, app.state.services).run_once(jobs=False)
        tables = await app.state.storage.store.keys(f"releases/{published['id']}/tables/")
        assert tables == [held.written[1]["visits"].key]
