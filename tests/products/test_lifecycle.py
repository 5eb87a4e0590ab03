"""Products: creation rules, visibility, and the curated lifecycle."""

from __future__ import annotations

import pytest

from tests.support import Actors, Catalogue, expect, problem, product_body

pytestmark = pytest.mark.asyncio


@pytest.fixture(name="owner")
async def fx_owner(actors: Actors):
    return await actors.org("provider")


class TestCreate:
    async def test_a_publisher_creates_a_draft_owned_by_its_org(self, client, owner, actors) -> None:
        publisher = await actors.member(owner.org_id, ["publisher"])
        product = expect(await client.post("/v1/products", json=product_body(), headers=publisher.headers), 201)
        assert product["status"] == "draft" and product["owner_org_id"] == owner.org_id
        assert product["slug"] == "2-type-2-diabetes-ehr-cohort"
        assert [s["share"] for s in product["sources"]] == [0.7, 0.3]
        assert product["dictionary"][0]["person_key"] == "person_id"

    @pytest.mark.parametrize(
        "overrides",
        [{"identified": True}, {"core_data": True}, {"legal_basis": None}],
    )
    async def test_what_may_not_circulate_is_refused(self, client, owner, overrides) -> None:
        err = problem(
            await client.post("/v1/products", json=product_body(**overrides), headers=owner.headers),
            422,
            "not_circulable",
        )
        assert err["reasons"]

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            ({"sources": [{"institution": "A", "share": 0.5}, {"institution": "B", "share": 0.4}]}, "sources"),
            ({"grade": "L6"}, "grade"),
            ({"data_types": ["x-ray"]}, "data_types.0"),
            ({"therapeutic_areas": ["diabetes"]}, "therapeutic_areas.0"),
            ({"jurisdiction": "ZZ"}, "jurisdiction"),
            ({"spatial_coverage": ["QQ-1"]}, "spatial_coverage.0"),
            ({"temporal_coverage": {"start": "2025-01-01", "end": "2018-01-01"}}, "temporal_coverage.start"),
            ({"quality": {"completeness": 1.5}}, "quality.completeness"),
            ({"title": ""}, "title"),
            ({"identified": "no"}, "identified"),
            (
                {
                    "dictionary": [
                        {
                            "table": "t",
                            "person_key": "pid",
                            "max_rows_per_person": 1,
                            "fields": [{"name": "x", "type": "string"}],
                        }
                    ]
                },
                "dictionary.0.person_key",
            ),
            (
                {
                    "dictionary": [
                        {
                            "table": "t",
                            "person_key": "x",
                            "max_rows_per_person": 1,
                            "fields": [{"name": "x", "type": "string", "min": 1}],
                        }
                    ]
                },
                "dictionary.0.fields.0.min",
            ),
            ({"unknown": 1}, "unknown"),
        ],
    )
    async def test_invalid_fields_are_named(self, client, owner, overrides, field) -> None:
        err = problem(
            await client.post("/v1/products", json=product_body(**overrides), headers=owner.headers),
            400,
            "validation_error",
        )
        assert field in [e["field"] for e in err["errors"]], err

    async def test_a_source_org_must_be_a_provider(self, client, owner, actors) -> None:
        consumer = await actors.org("consumer")
        body = product_body(sources=[{"institution": "X", "org_id": consumer.org_id, "share": 1}])
        err = problem(await client.post("/v1/products", json=body, headers=owner.headers), 400, "validation_error")
        assert err["errors"][0]["field"] == "sources.0.org_id"

    async def test_only_provider_publishers_create(self, client, actors) -> None:
        consumer = await actors.org("consumer")
        problem(await client.post("/v1/products", json=product_body(), headers=consumer.headers), 403, "forbidden")
        provider = await actors.org("provider")
        reviewer = await actors.member(provider.org_id, ["reviewer"])
        problem(await client.post("/v1/products", json=product_body(), headers=reviewer.headers), 403, "forbidden")


class TestVisibility:
    async def test_drafts_are_invisible_to_others(self, client, owner, actors, catalogue: Catalogue) -> None:
        draft = await catalogue.draft(owner)
        other = await actors.org("provider")
        problem(await client.get(f"/v1/products/{draft['id']}"), 404, "not_found")
        problem(await client.get(f"/v1/products/{draft['id']}", headers=other.headers), 404, "not_found")
        expect(await client.get(f"/v1/products/{draft['slug']}", headers=owner.headers), 200)
        expect(await client.get(f"/v1/products/{draft['id']}", headers=actors.operator.headers), 200)
        assert expect(await client.get("/v1/products"), 200)["items"] == []
        mine = expect(await client.get("/v1/products?status=draft", headers=owner.headers), 200)
        assert [p["id"] for p in mine["items"]] == [draft["id"]]
        theirs = expect(await client.get("/v1/products?status=draft", headers=other.headers), 200)
        assert theirs["items"] == []
        problem(await client.get("/v1/products?status=draft"), 403, "forbidden")

    async def test_a_listed_product_is_public_with_terms_plans_and_releases(self, client, owner, catalogue) -> None:
        listed = await catalogue.listed(owner)
        public = expect(await client.get(f"/v1/products/{listed['id']}"), 200)
        assert public["status"] == "listed"
        assert public["terms"]["terms_sha256"] == listed["offer"]["terms"]["terms_sha256"]
        assert {p["kind"] for p in public["plans"]} == {"free", "one_time"}
        assert public["pricing"] == ["free", "one_time"]
        assert [p["id"] for p in expect(await client.get("/v1/products"), 200)["items"]] == [listed["id"]]


class TestNames:
    async def test_owner_and_provider_facets_carry_organisation_names(self, client, owner, actors, catalogue) -> None:
        partner = await actors.org("provider", name="Zhongshan Hospital")
        sources = [
            {"institution": "Ruijin Hospital", "system": "HIS", "share": 0.7},
            {"institution": "Zhongshan Hospital", "org_id": partner.org_id, "share": 0.3},
        ]
        listed = await catalogue.listed(owner, sources=sources)
        me = expect(await client.get("/v1/me", headers=owner.headers), 200)["organisation"]
        expected_owner = {"id": owner.org_id, "name": me["name"], "slug": me["slug"]}
        read = expect(await client.get(f"/v1/products/{listed['id']}"), 200)
        assert read["owner_org"] == expected_owner
        page = expect(await client.get("/v1/products"), 200)
        assert [item["owner_org"] for item in page["items"]] == [expected_owner]
        assert page["facets"]["provider"] == {owner.org_id: 1, partner.org_id: 1}
        assert page["provider_names"] == {owner.org_id: me["name"], partner.org_id: "Zhongshan Hospital"}
        narrowed = expect(await client.get("/v1/products", params={"q": "diabetes", "grade": "L3"}), 200)
        assert narrowed["provider_names"] == page["provider_names"]  # the ranked path names them too


class TestLifecycle:
    async def test_submit_needs_terms_plan_and_revenue_share(self, client, owner, catalogue) -> None:
        draft = await catalogue.draft(owner)
        err = problem(
            await client.post(f"/v1/products/{draft['id']}/submit", headers=owner.headers), 409, "incomplete_product"
        )
        assert err["missing"] == ["terms", "an active plan", "a revenue-share rule"]

    async def test_a_provider_cannot_list_its_own_product(self, client, owner, catalogue) -> None:
        draft = await catalogue.draft(owner)
        await catalogue.offer(owner, draft["id"])
        expect(await client.post(f"/v1/products/{draft['id']}/submit", headers=owner.headers), 200)
        problem(
            await client.post(f"/v1/products/{draft['id']}/review", json={"decision": "list"}, headers=owner.headers),
            403,
            "forbidden",
        )

    async def test_the_curator_returns_with_a_comment_then_lists(self, client, owner, catalogue, actors) -> None:
        draft = await catalogue.draft(owner)
        await catalogue.offer(owner, draft["id"])
        expect(await client.post(f"/v1/products/{draft['id']}/submit", headers=owner.headers), 200)
        curator = await catalogue.curator()
        problem(
            await client.post(
                f"/v1/products/{draft['id']}/review", json={"decision": "return"}, headers=curator.headers
            ),
            400,
            "validation_error",
        )
        returned = expect(
            await client.post(
                f"/v1/products/{draft['id']}/review",
                json={"decision": "return", "comment": "Add quality metrics"},
                headers=curator.headers,
            ),
            200,
        )
        assert returned["status"] == "draft" and returned["review_comment"] == "Add quality metrics"
        expect(await client.post(f"/v1/products/{draft['id']}/submit", headers=owner.headers), 200)
        listed = expect(
            await client.post(f"/v1/products/{draft['id']}/review", json={"decision": "list"}, headers=curator.headers),
            200,
        )
        assert listed["status"] == "listed" and listed["listed_at"]
        actions = [
            e["action"]
            for e in expect(
                await client.get(f"/v1/audit?subject_id={draft['id']}&limit=50", headers=owner.headers), 200
            )["items"]
        ]
        assert [a for a in actions if a.startswith("product.")] == [
            "product.listed",
            "product.submitted",
            "product.returned",
            "product.submitted",
            "product.created",
        ]

    @pytest.mark.parametrize("grade", ["L4", "L5"])
    async def test_listing_l4_and_l5_needs_the_security_role(self, client, owner, catalogue, actors, grade) -> None:
        draft = await catalogue.draft(owner, grade=grade)
        await catalogue.offer(owner, draft["id"])
        expect(await client.post(f"/v1/products/{draft['id']}/submit", headers=owner.headers), 200)
        plain_curator = await actors.member(actors.operator.org_id, ["curator"])
        err = problem(
            await client.post(
                f"/v1/products/{draft['id']}/review", json={"decision": "list"}, headers=plain_curator.headers
            ),
            403,
            "listing_role_required",
        )
        assert err["roles"] == ["curator", "security"]
        security_only = await actors.member(actors.operator.org_id, ["security"])
        problem(
            await client.post(
                f"/v1/products/{draft['id']}/review", json={"decision": "list"}, headers=security_only.headers
            ),
            403,
            "forbidden",
        )
        both = await catalogue.curator()
        expect(
            await client.post(f"/v1/products/{draft['id']}/review", json={"decision": "list"}, headers=both.headers),
            200,
        )

    async def test_illegal_transitions_are_409(self, client, owner, catalogue) -> None:
        curator = await catalogue.curator()
        draft = await catalogue.draft(owner)
        problem(
            await client.post(f"/v1/products/{draft['id']}/review", json={"decision": "list"}, headers=curator.headers),
            409,
            "invalid_transition",
        )
        problem(
            await client.post(f"/v1/products/{draft['id']}/reinstate", json={"reason": "x"}, headers=curator.headers),
            409,
            "invalid_transition",
        )
        listed = await catalogue.listed(owner)
        problem(
            await client.post(f"/v1/products/{listed['id']}/submit", headers=owner.headers), 409, "invalid_transition"
        )
        expect(
            await client.post(
                f"/v1/products/{listed['id']}/retire", json={"reason": "superseded"}, headers=owner.headers
            ),
            200,
        )
        problem(
            await client.post(f"/v1/products/{listed['id']}/suspend", json={"reason": "x"}, headers=curator.headers),
            409,
            "invalid_transition",
        )

    async def test_only_the_operator_lifts_its_suspension(self, client, owner, catalogue) -> None:
        listed = await catalogue.listed(owner)
        curator = await catalogue.curator()
        suspended = expect(
            await client.post(
                f"/v1/products/{listed['id']}/suspend", json={"reason": "complaint"}, headers=curator.headers
            ),
            200,
        )
        assert suspended["suspended_by"] == "operator"
        problem(await client.get(f"/v1/products/{listed['id']}"), 404, "not_found")  # no longer public
        problem(
            await client.post(
                f"/v1/products/{listed['id']}/reinstate", json={"reason": "fixed"}, headers=owner.headers
            ),
            403,
            "operator_suspension",
        )
        expect(
            await client.post(
                f"/v1/products/{listed['id']}/reinstate", json={"reason": "resolved"}, headers=curator.headers
            ),
            200,
        )
        own = expect(
            await client.post(
                f"/v1/products/{listed['id']}/suspend", json={"reason": "maintenance"}, headers=owner.headers
            ),
            200,
        )
        assert own["suspended_by"] == "provider"
        expect(
            await client.post(f"/v1/products/{listed['id']}/reinstate", json={"reason": "done"}, headers=owner.headers),
            200,
        )

    async def test_regrade_only_tightens(self, client, owner, catalogue) -> None:
        listed = await catalogue.listed(owner, grade="L2")
        curator = await catalogue.curator()
        problem(
            await client.post(
                f"/v1/products/{listed['id']}/regrade", json={"grade": "L1", "reason": "x"}, headers=curator.headers
            ),
            422,
            "regrade_not_stricter",
        )
        problem(
            await client.post(
                f"/v1/products/{listed['id']}/regrade", json={"grade": "L4", "reason": "x"}, headers=owner.headers
            ),
            403,
            "forbidden",
        )
        regraded = expect(
            await client.post(
                f"/v1/products/{listed['id']}/regrade",
                json={"grade": "L4", "reason": "rare disease cohort"},
                headers=curator.headers,
            ),
            200,
        )
        assert regraded["grade"] == "L4"

    async def test_a_listed_product_takes_only_descriptive_edits_which_are_audited(
        self, client, owner, catalogue
    ) -> None:
        listed = await catalogue.listed(owner)
        err = problem(
            await client.patch(f"/v1/products/{listed['id']}", json={"grade": "L1"}, headers=owner.headers),
            409,
            "not_editable",
        )
        assert err["fields"] == ["grade"]
        problem(
            await client.patch(f"/v1/products/{listed['id']}", json={"jurisdiction": "US"}, headers=owner.headers),
            409,
            "not_editable",
        )
        edited = expect(
            await client.patch(
                f"/v1/products/{listed['id']}", json={"summary": "Now with 2025 data."}, headers=owner.headers
            ),
            200,
        )
        assert edited["summary"] == "Now with 2025 data."
        events = expect(
            await client.get(f"/v1/audit?subject_id={listed['id']}&action=product.updated", headers=owner.headers), 200
        )["items"]
        assert events[0]["data"] == {"fields": ["summary"], "status": "listed"}

    async def test_another_org_cannot_edit(self, client, owner, catalogue, actors) -> None:
        listed = await catalogue.listed(owner)
        other = await actors.org("provider")
        problem(
            await client.patch(f"/v1/products/{listed['id']}", json={"summary": "x"}, headers=other.headers),
            403,
            "forbidden",
        )
