"""Eligibility: every blocker code, through GET …/eligibility and through submit (422 ineligible)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from catalog import policy
from tests.support import expect, problem

pytestmark = pytest.mark.asyncio

GRU = {"use_conditions": ["GRU"]}
PUBLIC_INTEREST = {"name": "Public interest", "kind": "public_interest", "currency": "CNY"}

# code → how to provoke it alone: product grade/terms/plans, consumer org, application changes
CASES: dict[str, dict[str, Any]] = {
    "org_not_verified": {"grade": "L2", "terms": GRU, "consumer": {"verified": False}},
    "org_blocked": {"grade": "L2", "terms": GRU, "block": True},
    "ncu_commercial_use": {"grade": "L2", "terms": {"use_conditions": ["GRU", "NCU"]}},
    "npu_for_profit_org": {"grade": "L2", "terms": {"use_conditions": ["GRU", "NPU"]}, "app": {"commercial": False}},
    "category_not_permitted": {
        "grade": "L2",
        "terms": {"use_conditions": [{"code": "DS", "params": {"diseases": ["E11"]}}]},
        "app": {"category": "POA"},
    },
    "ds_disease_mismatch": {
        "grade": "L2",
        "terms": {"use_conditions": ["HMB", {"code": "DS", "params": {"diseases": ["E11"]}}]},
        "app": {"disease_codes": ["C22"]},
    },
    "nmds_methods_use": {"grade": "L2", "terms": {"use_conditions": ["GRU", "NMDS"]}, "app": {"category": "MDS"}},
    "gs_territory": {
        "grade": "L1",
        "terms": {"use_conditions": ["GRU", {"code": "GS", "params": {"regions": ["CN"]}}]},
        "app": {"territory": "US"},
    },
    "cross_border": {"grade": "L3", "terms": GRU, "consumer": {"jurisdiction": "DE"}},
    "restricted_to_named_parties": {
        "grade": "L2",
        "terms": {"use_conditions": ["GRU", {"code": "IS", "params": {"ids": ["org_01M8KA6FHNZP644F7TPRPS09WM"]}}]},
    },
    "ethics_approval_missing": {"grade": "L3", "terms": GRU, "app": {"ethics_approval": None}},
    "ethics_approval_expired": {
        "grade": "L3",
        "terms": GRU,
        "app": {
            "ethics_approval": {
                "committee": "IRB",
                "reference": "1",
                "approved_on": "2018-01-01",
                "expires_on": "2020-01-01",
            }
        },
    },
    "plan_not_available": {"grade": "L2", "terms": GRU, "plan_inactive": True},
    "public_interest_commercial": {
        "grade": "L2",
        "terms": GRU,
        "plans": [PUBLIC_INTEREST],
        "consumer": {"for_profit": False},
    },
    "public_interest_for_profit_org": {
        "grade": "L2",
        "terms": GRU,
        "plans": [PUBLIC_INTEREST],
        "app": {"commercial": False},
    },
    "term_too_long": {"grade": "L2", "terms": {"use_conditions": ["GRU"], "max_term_months": 6}},
    "genetic_resources_foreign_org": {
        "grade": "L1",
        "terms": {"use_conditions": ["GRU"], "local_conditions": ["genetic_resources"]},
        "consumer": {"jurisdiction": "DE"},
    },
}


async def scenario(client, actors, circulation, case: dict[str, Any]):
    owner = await circulation.provider()
    product = await circulation.product(owner, case["grade"], terms=case["terms"], plans=case.get("plans"))
    consumer = await circulation.consumer(**case.get("consumer", {}))
    if case.get("block"):
        expect(
            await client.post(
                f"/v1/orgs/{owner.org_id}/blocklist",
                json={"org_id": consumer["admin"].org_id, "reason": "data misuse"},
                headers=owner.headers,
            ),
            201,
        )
    app = circulation.application_body(product, consumer)
    purpose = dict(app["purpose"])
    for key in ("category", "commercial", "disease_codes", "territory"):
        if key in case.get("app", {}):
            purpose[key] = case["app"][key]
    app["purpose"] = purpose
    if "ethics_approval" in case.get("app", {}):
        app["ethics_approval"] = case["app"]["ethics_approval"]
    return owner, product, consumer, app


@pytest.mark.parametrize("code", sorted(CASES))
async def test_each_blocker_through_the_endpoint_and_through_submit(client, actors, circulation, code) -> None:
    owner, product, consumer, app = await scenario(client, actors, circulation, CASES[code])
    application = expect(await client.post("/v1/applications", json=app, headers=consumer["buyer"].headers), 201)
    if CASES[code].get("plan_inactive"):
        expect(await client.patch(f"/v1/plans/{app['plan_id']}", json={"active": False}, headers=owner.headers), 200)
    purpose = app["purpose"]
    params = {
        "category": purpose["category"],
        "commercial": str(purpose["commercial"]).lower(),
        "disease_codes": ",".join(purpose["disease_codes"]),
        "territory": purpose["territory"],
        "plan_id": app["plan_id"],
        "months": app["requested_months"],
    }
    if app.get("ethics_approval"):
        params["ethics_expires_on"] = app["ethics_approval"]["expires_on"]
    answer = expect(
        await client.get(f"/v1/products/{product['id']}/eligibility", params=params, headers=consumer["buyer"].headers),
        200,
    )
    assert answer["eligible"] is False
    assert code in [b["code"] for b in answer["blockers"]], answer
    refused = problem(
        await client.post(f"/v1/applications/{application['id']}/submit", headers=consumer["buyer"].headers),
        422,
        "ineligible",
    )
    assert code in [b["code"] for b in refused["blockers"]], refused
    assert (
        expect(await client.get(f"/v1/applications/{application['id']}", headers=consumer["buyer"].headers), 200)[
            "status"
        ]
        == "draft"
    )


async def test_an_eligible_request_has_no_blockers(client, circulation) -> None:
    owner = await circulation.provider()
    product = await circulation.product(owner, "L3")
    consumer = await circulation.consumer()
    answer = expect(
        await client.get(
            f"/v1/products/{product['id']}/eligibility?category=HMB&disease_codes=E11.9&ethics_expires_on=2099-01-01"
            f"&months=12&plan_id={product['plans'][0]['id']}",
            headers=consumer["buyer"].headers,
        ),
        200,
    )
    assert answer == {"eligible": True, "blockers": []}


async def test_omitted_parameters_default_to_the_organisation(client, circulation) -> None:
    owner = await circulation.provider()
    product = await circulation.product(owner, "L3", terms={"use_conditions": ["GRU", "NCU"]})
    consumer = await circulation.consumer()  # for-profit: commercial defaults to true
    answer = expect(
        await client.get(
            f"/v1/products/{product['id']}/eligibility?ethics_expires_on=2099-01-01", headers=consumer["buyer"].headers
        ),
        200,
    )
    assert [b["code"] for b in answer["blockers"]] == ["ncu_commercial_use"]


async def test_bad_eligibility_parameters_are_400(client, circulation) -> None:
    owner = await circulation.provider()
    product = await circulation.product(owner, "L1")
    consumer = await circulation.consumer()
    for query, field in (
        ("category=XYZ", "category"),
        ("disease_codes=diabetes", "disease_codes"),
        ("months=0", "months"),
        ("ethics_expires_on=soon", "ethics_expires_on"),
    ):
        err = problem(
            await client.get(f"/v1/products/{product['id']}/eligibility?{query}", headers=consumer["buyer"].headers),
            400,
            "validation_error",
        )
        assert err["errors"][0]["field"] == field


async def test_a_policy_that_licenses_a_grade_only_in_the_jurisdiction_is_enforced(client, circulation) -> None:
    """L2 tightened to ``verified_in_jurisdiction`` (L2 itself allows cross-border use)."""
    strict = msgspec.structs.replace(policy.rule("L2"), licensable_by="verified_in_jurisdiction")
    policy.install(policy.Policy(rules={**policy.DEFAULT_POLICY.rules, "L2": strict}))
    try:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L2", terms=GRU)
        for jurisdiction, expected in (("DE", ["cross_border"]), ("CN", [])):
            consumer = await circulation.consumer(jurisdiction=jurisdiction)
            answer = expect(
                await client.get(
                    f"/v1/products/{product['id']}/eligibility?territory=CN", headers=consumer["buyer"].headers
                ),
                200,
            )
            assert [b["code"] for b in answer["blockers"]] == expected, jurisdiction
    finally:
        policy.install(policy.DEFAULT_POLICY)
