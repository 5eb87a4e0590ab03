"""Terms, plans and revenue shares: versioned, validated field by field, frozen where a licence relies on them."""

from __future__ import annotations

import pytest

from catalog import db
from catalog.products import repository
from tests.support import TERMS, Actors, expect, problem

pytestmark = pytest.mark.asyncio


@pytest.fixture(name="owner")
async def fx_owner(actors: Actors):
    return await actors.org("provider")


@pytest.fixture(name="product")
async def fx_product(catalogue, owner):
    return await catalogue.draft(owner)


class TestTerms:
    async def test_terms_are_versioned_with_a_stable_hash(self, client, owner, product) -> None:
        url = f"/v1/products/{product['id']}/terms"
        first = expect(await client.put(url, json=TERMS, headers=owner.headers), 201)
        assert first["version"] == 1 and len(first["terms_sha256"]) == 64
        assert first["use_conditions"] == [
            {"code": "DS", "params": {"diseases": ["E11"]}},
            {"code": "HMB", "params": None},
            {"code": "IRB", "params": None},
        ]
        reordered = {**TERMS, "use_conditions": [{"code": "DS", "params": {"diseases": ["E11"]}}, "IRB", "HMB"]}
        same = await client.put(url, json=reordered, headers=owner.headers)
        assert same.status_code == 200 and same.json()["terms_sha256"] == first["terms_sha256"]
        second = expect(await client.put(url, json={**TERMS, "max_term_months": 12}, headers=owner.headers), 201)
        assert second["version"] == 2 and second["terms_sha256"] != first["terms_sha256"]
        assert expect(await client.get(f"{url}?version=1", headers=owner.headers), 200)["version"] == 1
        assert expect(await client.get(url, headers=owner.headers), 200)["version"] == 2

    @pytest.mark.parametrize(
        ("terms", "field"),
        [
            ({"use_conditions": ["HMB", "XYZ"]}, "use_conditions.1.code"),
            ({"use_conditions": [{"code": "DS"}]}, "use_conditions.0.params"),
            ({"use_conditions": [{"code": "DS", "params": {"months": 3}}]}, "use_conditions.0.params"),
            ({"use_conditions": ["GRU", {"code": "NCU", "params": {"ids": ["x"]}}]}, "use_conditions.1.params"),
            ({"use_conditions": ["GRU", {"code": "TS"}]}, "use_conditions.1.params"),
            ({"use_conditions": ["GRU", "GRU"]}, "use_conditions.1.code"),
            ({"use_conditions": ["IRB", "NCU"]}, "use_conditions"),
            ({"use_conditions": ["GRU"], "local_conditions": ["no_export"]}, "local_conditions.0"),
            ({"use_conditions": []}, "use_conditions"),
            (
                {"use_conditions": [{"code": "DS", "params": {"diseases": ["diabetes"]}}]},
                "use_conditions.0.params.diseases.0",
            ),
            ({"use_conditions": ["GRU"], "max_term_months": 0}, "max_term_months"),
        ],
    )
    async def test_invalid_terms_name_the_field(self, client, owner, product, terms, field) -> None:
        err = problem(
            await client.put(f"/v1/products/{product['id']}/terms", json=terms, headers=owner.headers),
            400,
            "validation_error",
        )
        assert field in [e["field"] for e in err["errors"]], err

    async def test_parameterised_codes(self, client, owner, product) -> None:
        terms = {
            "use_conditions": [
                "GRU",
                {"code": "GS", "params": {"regions": ["CN", "CN-SH"]}},
                {"code": "TS", "params": {"months": 24}},
                {"code": "MOR", "params": {"date": "2027-01-01"}},
                {"code": "IS", "params": {"ids": ["org_x"]}},
            ],
            "local_conditions": ["enclave_only", "genetic_resources"],
        }
        made = expect(await client.put(f"/v1/products/{product['id']}/terms", json=terms, headers=owner.headers), 201)
        assert {c["code"]: c["params"] for c in made["use_conditions"]}["MOR"] == {"date": "2027-01-01"}


# API.md's metered example, as written: no interval.
METERED_PLAN = {
    "name": "Pay per use",
    "kind": "metered",
    "currency": "CNY",
    "unit_prices": {"rows_returned": 20},
    "units": {"rows_returned": 1000},
    "included": {"rows_returned": 100000},
    "caps": {"rows_returned": 5000000},
    "cap_period": "billing_period",
}


class TestPlans:
    @pytest.mark.parametrize(
        ("plan", "field"),
        [
            ({"name": "x", "kind": "free", "currency": "CNY", "amount": 10}, "amount"),
            ({"name": "x", "kind": "one_time", "currency": "CNY"}, "amount"),
            ({"name": "x", "kind": "subscription", "currency": "CNY", "amount": 100}, "interval"),
            ({"name": "x", "kind": "metered", "currency": "CNY", "interval": "month"}, "unit_prices"),
            ({"name": "x", "kind": "one_time", "currency": "XXQ", "amount": 1}, "currency"),
            ({"name": "x", "kind": "one_time", "currency": "cny", "amount": 1}, "currency"),
            ({"name": "x", "kind": "one_time", "currency": "CNY", "amount": -1}, "amount"),
            ({"name": "x", "kind": "one_time", "currency": "CNY", "amount": 1.5}, "amount"),
            ({"name": "x", "kind": "one_time", "currency": "CNY", "amount": 1, "tax_bps": 20000}, "tax_bps"),
            ({"name": "x", "kind": "free", "currency": "CNY", "caps": {"rows": 1}}, "caps"),
            ({"name": "x", "kind": "free", "currency": "CNY", "modes": ["stream"]}, "modes.0"),
            ({"name": "x", "kind": "free", "currency": "CNY", "cap_period": "billing_period"}, "cap_period"),
            (
                {
                    "name": "x",
                    "kind": "metered",
                    "currency": "CNY",
                    "interval": "month",
                    "unit_prices": {"rows_returned": 20},
                    "included": {"queries": 5},
                },
                "included",
            ),
            ({"name": "x", "kind": "barter", "currency": "CNY"}, "kind"),
        ],
    )
    async def test_invalid_plans_name_the_field(self, client, owner, product, plan, field) -> None:
        err = problem(
            await client.post(f"/v1/products/{product['id']}/plans", json=plan, headers=owner.headers),
            400,
            "validation_error",
        )
        assert field in [e["field"] for e in err["errors"]], err

    async def test_every_plan_kind(self, client, owner, product, actors) -> None:
        consumer = await actors.org("consumer")
        plans = [
            {"name": "Trial", "kind": "free", "currency": "CNY", "caps": {"rows_returned": 10000}},
            {
                "name": "Annual",
                "kind": "one_time",
                "currency": "CNY",
                "amount": 5000000,
                "term_months": 12,
                "tax_bps": 600,
            },
            {"name": "Monthly", "kind": "subscription", "currency": "CNY", "amount": 80000, "interval": "month"},
            {**METERED_PLAN, "interval": "month"},
            {"name": "Public interest", "kind": "public_interest", "currency": "CNY", "private_to": [consumer.org_id]},
        ]
        for plan in plans:
            made = expect(
                await client.post(f"/v1/products/{product['id']}/plans", json=plan, headers=owner.headers), 201
            )
            assert made["kind"] == plan["kind"] and made["locked"] is False
        listed = expect(await client.get(f"/v1/products/{product['id']}/plans", headers=owner.headers), 200)
        assert len(listed["items"]) == 5

    async def test_a_metered_plan_without_an_interval_bills_monthly(self, client, owner, product) -> None:
        plan = METERED_PLAN
        made = expect(await client.post(f"/v1/products/{product['id']}/plans", json=plan, headers=owner.headers), 201)
        assert made["interval"] == "month"
        yearly = expect(
            await client.post(
                f"/v1/products/{product['id']}/plans", json={**plan, "interval": "year"}, headers=owner.headers
            ),
            201,
        )
        assert yearly["interval"] == "year"
        cleared = expect(
            await client.patch(f"/v1/plans/{yearly['id']}", json={"interval": None}, headers=owner.headers), 200
        )
        assert cleared["interval"] == "month"
        stored = expect(await client.get(f"/v1/products/{product['id']}/plans", headers=owner.headers), 200)
        assert {p["id"]: p["interval"] for p in stored["items"]} == {made["id"]: "month", yearly["id"]: "month"}

    async def test_private_to_must_name_consumers(self, client, owner, product) -> None:
        plan = {"name": "x", "kind": "free", "currency": "CNY", "private_to": [owner.org_id]}
        err = problem(
            await client.post(f"/v1/products/{product['id']}/plans", json=plan, headers=owner.headers),
            400,
            "validation_error",
        )
        assert err["errors"][0]["field"] == "private_to.0"

    async def test_a_plan_a_licence_refers_to_keeps_its_price(self, client, owner, product, app) -> None:
        plan = expect(
            await client.post(
                f"/v1/products/{product['id']}/plans",
                json={"name": "Annual", "kind": "one_time", "currency": "CNY", "amount": 5000000, "term_months": 12},
                headers=owner.headers,
            ),
            201,
        )
        expect(await client.patch(f"/v1/plans/{plan['id']}", json={"amount": 4000000}, headers=owner.headers), 200)
        async with db.write_transaction(app.state.sessions) as session:  # what issuing a licence does
            await repository.lock_plan(session, plan["id"], db.utcnow())
        err = problem(
            await client.patch(f"/v1/plans/{plan['id']}", json={"amount": 1}, headers=owner.headers), 409, "plan_locked"
        )
        assert err["fields"] == ["amount"]
        problem(
            await client.patch(f"/v1/plans/{plan['id']}", json={"currency": "USD"}, headers=owner.headers),
            409,
            "plan_locked",
        )
        renamed = expect(
            await client.patch(
                f"/v1/plans/{plan['id']}", json={"name": "Annual (2025)", "active": False}, headers=owner.headers
            ),
            200,
        )
        assert renamed["amount"] == 4000000 and renamed["locked"] and not renamed["active"]


class TestRevenueShare:
    async def test_rules_are_versioned_and_visible_to_the_parties(self, client, owner, product, actors) -> None:
        partner = await actors.org("provider")
        stranger = await actors.org("consumer")
        url = f"/v1/products/{product['id']}/revenue-share"
        body = {
            "operator_bps": 1500,
            "fund_bps": 500,
            "providers": [{"org_id": owner.org_id, "weight": 70}, {"org_id": partner.org_id, "weight": 30}],
        }
        first = expect(await client.put(url, json=body, headers=owner.headers), 201)
        second = expect(
            await client.put(url, json={**body, "operator_bps": 1000}, headers=actors.operator.headers), 201
        )
        assert (first["version"], second["version"]) == (1, 2)
        expect(await client.get(url, headers=owner.headers), 200)
        problem(await client.get(url, headers=stranger.headers), 404, "not_found")  # a draft: not even visible

    async def test_once_listed_only_the_parties_read_the_rule(self, client, owner, actors, catalogue) -> None:
        listed = await catalogue.listed(owner)
        partner = await actors.org("provider")
        stranger = await actors.org("consumer")
        url = f"/v1/products/{listed['id']}/revenue-share"
        body = {
            "operator_bps": 1500,
            "fund_bps": 500,
            "providers": [{"org_id": owner.org_id, "weight": 70}, {"org_id": partner.org_id, "weight": 30}],
        }
        expect(await client.put(url, json=body, headers=owner.headers), 201)
        seen = expect(await client.get(url, headers=partner.headers), 200)
        assert {p["org_id"] for p in seen["providers"]} == {owner.org_id, partner.org_id}
        problem(await client.get(url, headers=stranger.headers), 403, "forbidden")  # listed, but not a party

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"operator_bps": 10001}, "operator_bps"),
            ({"operator_bps": 9000, "fund_bps": 2000}, "fund_bps"),
            ({"providers": []}, "providers"),
            ({"providers": [{"org_id": "org_01M8KA6FHNZP644F7TPRPS09WM", "weight": 1}]}, "providers.0.org_id"),
            ("zero-weight", "providers.0.weight"),
            ("consumer", "providers.0.org_id"),
            ("twice", "providers.1.org_id"),
        ],
    )
    async def test_invalid_rules_name_the_field(self, client, owner, product, actors, change, field) -> None:
        body = {"operator_bps": 1500, "fund_bps": 500, "providers": [{"org_id": owner.org_id, "weight": 1}]}
        if change == "zero-weight":
            body["providers"][0]["weight"] = 0
        elif change == "consumer":
            body["providers"][0]["org_id"] = (await actors.org("consumer")).org_id
        elif change == "twice":
            body["providers"].append({"org_id": owner.org_id, "weight": 2})
        else:
            body.update(change)
        err = problem(
            await client.put(f"/v1/products/{product['id']}/revenue-share", json=body, headers=owner.headers),
            400,
            "validation_error",
        )
        assert field in [e["field"] for e in err["errors"]], err

    async def test_only_the_owner_admin_or_operator_admin_sets_it(self, client, owner, product, actors) -> None:
        publisher = await actors.member(owner.org_id, ["publisher"])
        body = {"operator_bps": 1500, "providers": [{"org_id": owner.org_id, "weight": 1}]}
        problem(
            await client.put(f"/v1/products/{product['id']}/revenue-share", json=body, headers=publisher.headers),
            403,
            "forbidden",
        )
