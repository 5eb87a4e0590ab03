"""Public catalogue reads kept per process (products/views.py): ETags and 304s, every change that
alters a public view reaching a second node on the same database, and no view served to a caller it
was not built for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import text

from catalog import db
from catalog.app import create_app
from catalog.products import views
from catalog.products.catalogue_version import VersionReader
from catalog.settings import Settings
from tests.access.conftest import Circulation
from tests.products.test_releases import new_release, visits_csv
from tests.support import Actors, Catalogue, Party, expect, lifespan, problem

pytestmark = pytest.mark.asyncio

SEARCH = "/v1/products?q=diabetes&limit=20"
BROWSE = "/v1/products?limit=50"


@pytest.fixture(name="node2")
async def fx_node2(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A second API node: its own app, process state and pool, on the same database."""
    app = create_app(settings, run_worker=False)
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node2", timeout=60) as client,
    ):
        yield client


@pytest.fixture(name="owner")
async def fx_owner(actors: Actors) -> Party:
    return await actors.org("provider")


def etag(response: httpx.Response) -> str:
    return response.headers["etag"]


class TestETag:
    async def test_a_product_page_has_a_stable_etag_and_revalidating_cache_headers(
        self, client, owner, catalogue
    ) -> None:
        product = await catalogue.listed(owner)
        first = await client.get(f"/v1/products/{product['id']}")
        again = await client.get(f"/v1/products/{product['id']}")
        assert first.status_code == again.status_code == 200
        assert etag(first) == etag(again) and etag(first).startswith('"') and etag(first).endswith('"')
        assert first.content == again.content
        assert first.headers["cache-control"] == "public, no-cache"
        assert first.headers["vary"] == "Authorization"
        keyed = await client.get(f"/v1/products/{product['id']}", headers=(await catalogue.curator()).headers)
        assert keyed.headers["cache-control"] == "private, no-cache"

    async def test_if_none_match_answers_304_without_a_body(self, client, owner, catalogue) -> None:
        product = await catalogue.listed(owner)
        path = f"/v1/products/{product['slug']}"
        tag = etag(await client.get(path))
        for header in (tag, f"W/{tag}", f'"other", {tag}', "*"):
            answer = await client.get(path, headers={"If-None-Match": header})
            assert answer.status_code == 304, header
            assert answer.content == b""
            assert etag(answer) == tag and answer.headers["cache-control"] == "public, no-cache"
        assert (await client.get(path, headers={"If-None-Match": '"other"'})).status_code == 200

    async def test_a_search_page_has_an_etag_and_answers_304(self, client, owner, catalogue) -> None:
        await catalogue.listed(owner)
        first = expect(await client.get(SEARCH), 200)
        answer = await client.get(SEARCH)
        assert [p["title"] for p in first["items"]] == [p["title"] for p in answer.json()["items"]]
        assert answer.headers["cache-control"] == "public, no-cache"
        not_modified = await client.get(SEARCH, headers={"If-None-Match": etag(answer)})
        assert not_modified.status_code == 304 and not_modified.content == b""
        other = await client.get("/v1/products?q=nothing-matches-this&limit=20")
        assert etag(other) != etag(answer)

    async def test_the_same_view_has_the_same_etag_on_every_node(self, client, node2, owner, catalogue) -> None:
        product = await catalogue.listed(owner)
        one, two = await client.get(f"/v1/products/{product['id']}"), await node2.get(f"/v1/products/{product['id']}")
        assert one.content == two.content and etag(one) == etag(two)
        assert etag(await client.get(SEARCH)) == etag(await node2.get(SEARCH))

    async def test_errors_stay_problems(self, client) -> None:
        problem(await client.get("/v1/products/no-such-product"), 404, "not_found")
        problem(await client.get("/v1/products?limit=0"), 400, "validation_error")
        problem(await client.get("/v1/products?grade=L9"), 400, "validation_error")


# --- every change a public view shows, made on one node and seen on the other ----------------------


class World(NamedTuple):
    client: httpx.AsyncClient
    app: Litestar
    owner: Party
    curator: Party
    catalogue: Catalogue
    product: dict[str, Any]


Check = Callable[[httpx.Response, dict[str, Any]], None]


def _titles(page: dict[str, Any]) -> list[str]:
    return [p["title"] for p in page["items"]]


async def _publish(w: World, version: str = "2025.1") -> str:
    await new_release(w.client, w.owner, w.product, version)
    base = f"/v1/products/{w.product['id']}/releases/{version}"
    expect(await w.client.put(f"{base}/files/visits.csv", content=visits_csv(), headers=w.owner.headers), 201)
    expect(await w.client.post(f"{base}/publish", headers=w.owner.headers), 200)
    return base


async def edit(w: World) -> Check:
    expect(
        await w.client.patch(f"/v1/products/{w.product['id']}", json={"title": "Renamed"}, headers=w.owner.headers), 200
    )

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        assert detail.json()["title"] == "Renamed" and "Renamed" in _titles(page)

    return check


async def suspend(w: World) -> Check:
    body = {"reason": "consent withdrawn"}
    expect(await w.client.post(f"/v1/products/{w.product['id']}/suspend", json=body, headers=w.curator.headers), 200)

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        problem(detail, 404, "not_found")
        assert w.product["title"] not in _titles(page)

    return check


async def retire(w: World) -> Check:
    body = {"reason": "superseded"}
    expect(await w.client.post(f"/v1/products/{w.product['id']}/retire", json=body, headers=w.owner.headers), 200)

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        problem(detail, 404, "not_found")
        assert w.product["title"] not in _titles(page)

    return check


async def regrade(w: World) -> Check:
    body = {"grade": "L4", "reason": "rare disease"}
    expect(await w.client.post(f"/v1/products/{w.product['id']}/regrade", json=body, headers=w.curator.headers), 200)

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        assert detail.json()["grade"] == "L4"
        assert [p["grade"] for p in page["items"] if p["id"] == w.product["id"]] == ["L4"]

    return check


async def new_terms(w: World) -> Check:
    terms = {"use_conditions": ["HMB"], "local_conditions": [], "clauses": "New clauses."}
    expect(await w.client.put(f"/v1/products/{w.product['id']}/terms", json=terms, headers=w.owner.headers), 201)

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        assert detail.json()["terms"]["version"] == 2 and detail.json()["terms"]["clauses"] == "New clauses."

    return check


async def new_plan(w: World) -> Check:
    plan = {"name": "Monthly", "kind": "subscription", "currency": "CNY", "amount": 1000, "interval": "month"}
    expect(await w.client.post(f"/v1/products/{w.product['id']}/plans", json=plan, headers=w.owner.headers), 201)

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        assert "Monthly" in [p["name"] for p in detail.json()["plans"]]
        assert "subscription" in next(p for p in page["items"] if p["id"] == w.product["id"])["pricing"]

    return check


async def plan_withdrawn(w: World) -> Check:
    plan = w.product["offer"]["plans"][0]
    expect(await w.client.patch(f"/v1/plans/{plan['id']}", json={"active": False}, headers=w.owner.headers), 200)

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        assert plan["id"] not in [p["id"] for p in detail.json()["plans"]]

    return check


async def release_published(w: World) -> Check:
    await _publish(w)

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        read = detail.json()
        assert [r["version"] for r in read["releases"]] == ["2025.1"]
        assert read["measured_quality"]["version"] == "2025.1"

    return check


async def release_withdrawn(w: World) -> Check:
    base = f"/v1/products/{w.product['id']}/releases/2025.1"
    expect(await w.client.post(f"{base}/withdraw", json={"reason": "consent revoked"}, headers=w.owner.headers), 200)

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        assert detail.json()["releases"] == []

    return check


async def reinstate(w: World) -> Check:
    body = {"reason": "consent confirmed"}
    expect(await w.client.post(f"/v1/products/{w.product['id']}/reinstate", json=body, headers=w.curator.headers), 200)

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        assert detail.json()["status"] == "listed" and w.product["title"] in _titles(page)

    return check


async def another_listed(w: World) -> Check:
    other = await w.catalogue.listed(w.owner, title="Diabetes registry, newly listed")

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        assert other["title"] in _titles(page)

    return check


async def owner_renamed(w: World) -> Check:
    """No route renames an organisation today; the trigger still covers one made in the database."""
    async with db.write_transaction(w.app.state.sessions) as session:
        await session.execute(
            text("UPDATE organisations SET name = 'Renamed Hospital' WHERE id = :id"), {"id": w.owner.org_id}
        )

    def check(detail: httpx.Response, page: dict[str, Any]) -> None:
        assert detail.json()["owner_org"]["name"] == "Renamed Hospital"
        assert {p["owner_org"]["name"] for p in page["items"]} == {"Renamed Hospital"}

    return check


async def _suspended(w: World) -> None:
    await suspend(w)


async def _published(w: World) -> None:
    await _publish(w)


Change = Callable[[World], Awaitable[Check]]
CHANGES: dict[str, tuple[Callable[[World], Awaitable[None]] | None, Change]] = {
    "descriptive edit": (None, edit),
    "suspension": (None, suspend),
    "reinstatement": (_suspended, reinstate),
    "retirement": (None, retire),
    "regrade": (None, regrade),
    "new terms": (None, new_terms),
    "new plan": (None, new_plan),
    "plan made inactive": (None, plan_withdrawn),
    "release published (and quality measured)": (None, release_published),
    "release withdrawn": (_published, release_withdrawn),
    "another product listed": (None, another_listed),
    "owner renamed": (None, owner_renamed),
}


class TestEveryChangeReachesEveryNode:
    @pytest.mark.parametrize("kind", list(CHANGES))
    async def test_a_change_on_one_node_is_served_by_the_other(
        self, kind, client, node2, app, owner, catalogue
    ) -> None:
        before, change = CHANGES[kind]
        world = World(client, app, owner, await catalogue.curator(), catalogue, await catalogue.listed(owner))
        if before is not None:
            await before(world)
        path = f"/v1/products/{world.product['id']}"
        # node 2 builds and keeps both views (the second read is served from what it kept)
        await node2.get(path), await node2.get(BROWSE)
        old_detail, old_page = await node2.get(path), await node2.get(BROWSE)

        check = await change(world)

        detail, page = await node2.get(path), await node2.get(BROWSE)
        check(detail, page.json())
        assert page.status_code == 200
        assert (etag(page) == etag(old_page)) == (page.content == old_page.content)
        if old_detail.status_code == 200 and detail.status_code == 200:
            assert (etag(detail) == etag(old_detail)) == (detail.content == old_detail.content)
            revalidated = await node2.get(path, headers={"If-None-Match": etag(old_detail)})
            assert revalidated.status_code == (304 if detail.content == old_detail.content else 200)

    async def test_a_plan_locked_by_a_licence_shows_locked_on_the_other_node(
        self, client, node2, actors, catalogue
    ) -> None:
        circulation = Circulation(client, actors, catalogue)
        owner, consumer = await circulation.provider(), await circulation.consumer()
        product = await circulation.product(owner)
        path = f"/v1/products/{product['id']}"
        before = await node2.get(path)
        assert not any(p["locked"] for p in before.json()["plans"])
        made = await circulation.apply(product, consumer)
        submitted = expect(
            await client.post(f"/v1/applications/{made['id']}/submit", headers=consumer["buyer"].headers), 200
        )
        assert (await circulation.approve_all(submitted, await circulation.reviewers(owner)))["licence_id"]
        after = await node2.get(path)
        plan = product["plans"][0]["id"]
        assert [p["locked"] for p in after.json()["plans"] if p["id"] == plan] == [True]
        assert etag(after) != etag(before)


# --- no view reaches a caller it was not built for ------------------------------------------------


class TestViewers:
    async def test_a_suspended_product_is_not_served_from_what_was_kept(self, client, owner, catalogue) -> None:
        product = await catalogue.listed(owner)
        path = f"/v1/products/{product['id']}"
        kept = await client.get(path)
        assert kept.status_code == 200
        tag = etag(kept)
        curator = await catalogue.curator()
        expect(await client.post(f"{path}/suspend", json={"reason": "audit"}, headers=curator.headers), 200)
        problem(await client.get(path), 404, "not_found")
        problem(await client.get(path, headers={"If-None-Match": tag}), 404, "not_found")
        mine = expect(await client.get(path, headers=owner.headers), 200)
        assert mine["status"] == "suspended"
        assert product["title"] not in _titles(expect(await client.get(SEARCH), 200))

    async def test_a_draft_is_seen_by_its_owner_and_the_operator_only(self, client, owner, catalogue, actors) -> None:
        draft = await catalogue.draft(owner)
        path = f"/v1/products/{draft['id']}"
        assert expect(await client.get(path, headers=owner.headers), 200)["status"] == "draft"
        assert expect(await client.get(path, headers=actors.operator.headers), 200)["status"] == "draft"
        problem(await client.get(path), 404, "not_found")
        stranger = await actors.org("consumer")
        problem(await client.get(path, headers=stranger.headers), 404, "not_found")

    async def test_a_private_plan_is_seen_by_its_organisation_alone(self, client, owner, catalogue, actors) -> None:
        product = await catalogue.listed(owner)
        chosen, other = await actors.org("consumer"), await actors.org("consumer")
        private = {"name": "Negotiated", "kind": "one_time", "currency": "CNY", "amount": 10, "term_months": 12}
        made = expect(
            await client.post(
                f"/v1/products/{product['id']}/plans",
                json={**private, "private_to": [chosen.org_id]},
                headers=owner.headers,
            ),
            201,
        )
        path = f"/v1/products/{product['id']}"
        public = await client.get(path)  # kept first, so the next callers are served against it
        assert made["id"] not in [p["id"] for p in public.json()["plans"]]
        theirs = await client.get(path, headers=chosen.headers)
        assert made["id"] in [p["id"] for p in theirs.json()["plans"]]
        assert etag(theirs) != etag(public) and theirs.headers["cache-control"] == "private, no-cache"
        assert (await client.get(path, headers={**chosen.headers, "If-None-Match": etag(public)})).status_code == 200
        others = await client.get(path, headers=other.headers)
        assert others.content == public.content and etag(others) == etag(public)
        again = await client.get(path)
        assert again.content == public.content

    async def test_the_owner_sees_inactive_plans_the_public_does_not(self, client, owner, catalogue) -> None:
        product = await catalogue.listed(owner)
        plan = product["offer"]["plans"][0]["id"]
        expect(await client.patch(f"/v1/plans/{plan}", json={"active": False}, headers=owner.headers), 200)
        path = f"/v1/products/{product['id']}"
        public = await client.get(path)
        mine = await client.get(path, headers=owner.headers)
        assert plan not in [p["id"] for p in public.json()["plans"]]
        assert plan in [p["id"] for p in mine.json()["plans"]]
        assert etag(mine) != etag(public)

    async def test_owners_lists_of_drafts_are_their_own(self, client, catalogue, actors) -> None:
        first, second = await actors.org("provider"), await actors.org("provider")
        mine = await catalogue.draft(first, title="First's draft")
        theirs = await catalogue.draft(second, title="Second's draft")
        query = "/v1/products?status=draft"
        assert [p["id"] for p in expect(await client.get(query, headers=first.headers), 200)["items"]] == [mine["id"]]
        assert [p["id"] for p in expect(await client.get(query, headers=second.headers), 200)["items"]] == [
            theirs["id"]
        ]
        problem(await client.get(query), 403, "forbidden")


# --- the store of views ---------------------------------------------------------------------------


class TestViews:
    async def test_a_view_built_at_an_older_version_is_not_kept(self, app) -> None:
        kept = views.Views(app.state.engine)
        version = await kept.version()
        assert kept.get(("k",), version) is None
        kept.put(("k",), views.built(version - 1, {"a": 1}))
        assert kept.get(("k",), version) is None and kept.get(("k",), version - 1) is None
        view = kept.put(("k",), views.built(version, {"a": 1}))
        assert kept.get(("k",), version) is view

    async def test_the_least_recently_used_views_go_past_the_byte_bound(self, app) -> None:
        kept = views.Views(app.state.engine, max_bytes=250)
        version = await kept.version()
        for name in ("a", "b", "c"):
            kept.put((name,), views.built(version, "x" * 100))
        assert kept.get(("a",), version) is None  # 3 × 102 bytes > 250: the oldest went
        assert kept.get(("b",), version) is not None and kept.get(("c",), version) is not None

    async def test_the_version_is_read_through_the_pool_when_its_own_connection_fails(
        self, app, tmp_path, owner, catalogue
    ) -> None:
        reader = VersionReader(app.state.engine)
        before = await reader.read()
        postgres = app.state.engine.dialect.name == "postgresql"
        if not postgres:
            reader._sqlite_path = str(tmp_path)  # a folder: its own connection cannot open it
        else:
            async with db.single_read(app.state.engine) as conn:
                await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": reader._pg.get_server_pid()})
        await catalogue.draft(owner)
        assert await reader.read() > before  # answered through the pool
        if postgres:
            await catalogue.draft(owner)
            assert await reader.read() > before + 1 and not reader._pg.is_closed()  # and a new connection

    async def test_a_read_sees_every_change_committed_before_it_began(self, app, owner, catalogue) -> None:
        reader = VersionReader(app.state.engine)
        first = await reader.read()
        racing = [asyncio.create_task(reader.read()) for _ in range(20)]
        await asyncio.sleep(0)  # their read is under way
        await catalogue.draft(owner)
        after = await reader.read()
        assert after > first
        assert all(first <= v <= after for v in await asyncio.gather(*racing))
        reader.close()
