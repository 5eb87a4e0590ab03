"""A product's slug is accepted wherever a product id is taken: paths, the application body, filters.

One resolver (products.repository: id or slug) serves every route; answers always carry the id.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.support import TERMS, expect, problem

pytestmark = pytest.mark.asyncio
_n = itertools.count(1)

# (case, method, path under /v1/products/{slug}, body, who, status) on a listed product.
ROUTES: list[tuple[str, str, str, dict[str, Any] | None, str, int]] = [
    ("get", "GET", "", None, "anyone", 200),
    ("terms", "GET", "/terms", None, "anyone", 200),
    ("plans", "GET", "/plans", None, "anyone", 200),
    ("releases", "GET", "/releases", None, "anyone", 200),
    ("revenue_share", "GET", "/revenue-share", None, "owner", 200),
    ("eligibility", "GET", "/eligibility?category=HMB", None, "buyer", 200),
    ("edit", "PATCH", "", {"summary": "A new summary."}, "owner", 200),
    ("put_terms", "PUT", "/terms", {**TERMS, "clauses": "New clauses."}, "owner", 201),
    ("add_plan", "POST", "/plans", {"name": "Trial", "kind": "free", "currency": "CNY"}, "owner", 201),
    (
        "put_revenue_share",
        "PUT",
        "/revenue-share",
        {"operator_bps": 1000, "fund_bps": 0, "providers": [{"org_id": "{owner}", "weight": 1}]},
        "owner",
        201,
    ),
    ("add_release", "POST", "/releases", {"version": "2.0"}, "owner", 201),
    ("suspend", "POST", "/suspend", {"reason": "audit"}, "owner", 200),
    ("retire", "POST", "/retire", {"reason": "superseded"}, "owner", 200),
    ("regrade", "POST", "/regrade", {"grade": "L4", "reason": "rare disease"}, "curator", 200),
]


def _fill(body: Any, owner_org: str) -> Any:
    if isinstance(body, dict):
        return {k: _fill(v, owner_org) for k, v in body.items()}
    if isinstance(body, list):
        return [_fill(v, owner_org) for v in body]
    return owner_org if body == "{owner}" else body


@pytest.fixture(name="setting")
async def fx_setting(circulation) -> dict[str, Any]:
    owner = await circulation.provider()
    slug = f"slug-sweep-{next(_n)}"
    product = await circulation.product(owner, slug=slug)
    assert product["slug"] == slug
    return {"owner": owner, "product": product, "slug": slug, "consumer": await circulation.consumer()}


@pytest.mark.parametrize(
    ("method", "path", "body", "who", "status"),
    [pytest.param(*case[1:], id=case[0]) for case in ROUTES],
)
async def test_every_product_route_takes_the_slug(client, circulation, setting, method, path, body, who, status):
    headers = {
        "anyone": {},
        "owner": setting["owner"].headers,
        "buyer": setting["consumer"]["buyer"].headers,
        "curator": (await circulation.catalogue.curator()).headers,
    }[who]
    response = await client.request(
        method,
        f"/v1/products/{setting['slug']}{path}",
        json=_fill(body, setting["owner"].org_id) if body is not None else None,
        headers=headers,
    )
    answer = expect(response, status)
    product_id = setting["product"]["id"]
    assert _named_products(answer) <= {product_id}, answer
    assert product_id in response.headers.get("location", product_id) or "/v1/plans/" in response.headers["location"]


def _named_products(answer: dict[str, Any]) -> set[str]:
    """The product ids an answer names (an eligibility answer names none: it is compared by id below)."""
    if "items" in answer:
        return {item["product_id"] for item in answer["items"]}
    if "eligible" in answer:
        return set()
    return {answer.get("product_id", answer["id"])}


async def test_a_draft_is_submitted_and_reviewed_by_its_slug(client, catalogue, actors) -> None:
    owner = await actors.org("provider")
    draft = await catalogue.draft(owner, slug="draft-by-slug")
    await catalogue.offer(owner, draft["id"])
    submitted = expect(await client.post("/v1/products/draft-by-slug/submit", headers=owner.headers), 200)
    assert submitted["id"] == draft["id"] and submitted["status"] == "in_review"
    curator = await catalogue.curator()
    listed = expect(
        await client.post("/v1/products/draft-by-slug/review", json={"decision": "list"}, headers=curator.headers),
        200,
    )
    assert listed["status"] == "listed"


class TestCirculation:
    async def test_eligibility_by_slug_matches_eligibility_by_id(self, client, setting) -> None:
        buyer = setting["consumer"]["buyer"]
        query = "?category=DS&disease_codes=E11&ethics_expires_on=2099-01-01"
        by_slug = expect(
            await client.get(f"/v1/products/{setting['slug']}/eligibility{query}", headers=buyer.headers), 200
        )
        by_id = expect(
            await client.get(f"/v1/products/{setting['product']['id']}/eligibility{query}", headers=buyer.headers), 200
        )
        assert by_slug == by_id

    async def test_an_application_names_its_product_by_slug(self, client, circulation, setting) -> None:
        consumer = setting["consumer"]
        body = circulation.application_body(setting["product"], consumer, product_id=setting["slug"])
        app = expect(await client.post("/v1/applications", json=body, headers=consumer["buyer"].headers), 201)
        assert app["product_id"] == setting["product"]["id"]
        listed = expect(
            await client.get(f"/v1/applications?product_id={setting['slug']}", headers=consumer["buyer"].headers), 200
        )
        assert [a["id"] for a in listed["items"]] == [app["id"]]

    async def test_licences_are_filtered_by_slug(self, client, circulation) -> None:
        consumer = await circulation.consumer()
        made = await circulation.licensed(await circulation.provider(), consumer, slug="licensed-by-slug")
        other = await circulation.licensed(await circulation.provider(), consumer)
        buyer = consumer["buyer"].headers
        by_slug = expect(await client.get("/v1/licences?product_id=licensed-by-slug", headers=buyer), 200)
        assert [lic["id"] for lic in by_slug["items"]] == [made["licence"]["id"]]
        everything = expect(await client.get("/v1/licences", headers=buyer), 200)
        assert {lic["id"] for lic in everything["items"]} == {made["licence"]["id"], other["licence"]["id"]}

    async def test_a_key_that_names_no_product(self, client, setting) -> None:
        buyer = setting["consumer"]["buyer"].headers
        problem(await client.get("/v1/products/no-such-product/eligibility", headers=buyer), 404, "not_found")
        assert (
            expect(await client.get("/v1/applications?product_id=no-such-product", headers=buyer), 200)["items"] == []
        )
        err = problem(
            await client.post("/v1/applications", json={"product_id": "Not A Slug!"}, headers=buyer),
            400,
            "validation_error",
        )
        assert "product_id" in [e["field"] for e in err["errors"]]
