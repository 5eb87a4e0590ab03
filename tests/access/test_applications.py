"""Applications: validation, lifecycle per grade with the tracks policy.py names, and who may decide."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from catalog import policy
from catalog.access.models import Licence
from tests.support import expect, problem

pytestmark = pytest.mark.asyncio


class TestCreate:
    async def test_named_analysts_must_be_analysts_of_the_applicant(self, client, actors, circulation) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L3")
        consumer = await circulation.consumer()
        other = await circulation.consumer()
        body = circulation.application_body(
            product, consumer, analysts=[consumer["buyer"].user_id, other["analyst"].user_id]
        )
        err = problem(
            await client.post("/v1/applications", json=body, headers=consumer["buyer"].headers), 400, "validation_error"
        )
        assert [e["field"] for e in err["errors"]] == ["analysts.0", "analysts.1"]

    async def test_a_retried_draft_with_its_idempotency_key_makes_one_application(self, client, circulation) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L3")
        consumer = await circulation.consumer()
        body = circulation.application_body(product, consumer)
        headers = {**consumer["buyer"].headers, "Idempotency-Key": "draft-1"}
        first = expect(await client.post("/v1/applications", json=body, headers=headers), 201)
        again = expect(await client.post("/v1/applications", json=body, headers=headers), 201)
        assert again["id"] == first["id"]
        listed = expect(await client.get("/v1/applications", headers=consumer["buyer"].headers), 200)
        assert [a["id"] for a in listed["items"]] == [first["id"]]
        changed = {**body, "requested_months": 6}
        problem(await client.post("/v1/applications", json=changed, headers=headers), 422, "idempotency_key_reused")

    async def test_l3_needs_analysts_and_a_public_summary(self, client, circulation) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L3")
        consumer = await circulation.consumer()
        body = circulation.application_body(product, consumer, analysts=[], project={"title": "Secret", "summary": "x"})
        err = problem(
            await client.post("/v1/applications", json=body, headers=consumer["buyer"].headers), 400, "validation_error"
        )
        assert {e["field"] for e in err["errors"]} == {"analysts", "project.public_summary"}

    async def test_only_consumer_buyers_apply(self, client, circulation) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L1")
        consumer = await circulation.consumer()
        body = circulation.application_body(product, consumer)
        problem(await client.post("/v1/applications", json=body, headers=consumer["analyst"].headers), 403, "forbidden")
        problem(await client.post("/v1/applications", json=body, headers=owner.headers), 403, "forbidden")


class TestLifecycle:
    @pytest.mark.parametrize("grade", ["L1", "L2", "L3", "L4", "L5"])
    async def test_each_grade_opens_exactly_the_policy_tracks(self, client, circulation, grade) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, grade)
        consumer = await circulation.consumer()
        app = await circulation.apply(product, consumer)
        submitted = expect(
            await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200
        )
        expected = list(policy.rule(grade).tracks)
        assert [t["track"] for t in submitted["tracks"]] == expected
        if not expected:
            assert submitted["status"] == "approved" and submitted["licence_id"]
            return
        assert submitted["status"] == "under_review" and submitted["licence_id"] is None
        decided = await circulation.approve_all(submitted, await circulation.reviewers(owner))
        assert decided["status"] == "approved" and decided["licence_id"]
        licence = expect(await client.get(f"/v1/licences/{decided['licence_id']}", headers=owner.headers), 200)
        assert licence["status"] == "pending_acceptance"
        assert licence["modes"] == [m for m in policy.MODES if m in policy.rule(grade).modes]

    async def test_a_return_cancels_pending_tracks_and_resubmit_reopens_only_unapproved(
        self, client, circulation
    ) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L4")
        consumer = await circulation.consumer()
        reviewers = await circulation.reviewers(owner)
        app = await circulation.apply(product, consumer)
        app = expect(await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200)
        url = f"/v1/applications/{app['id']}/tracks"
        expect(
            await client.post(
                f"{url}/provider/decision", json={"decision": "approve"}, headers=reviewers["provider"].headers
            ),
            200,
        )
        expect(
            await client.post(
                f"{url}/ethics/decision",
                json={"decision": "approve_with_conditions", "conditions": "annual report"},
                headers=reviewers["ethics"].headers,
            ),
            200,
        )
        returned = expect(
            await client.post(
                f"{url}/security/decision",
                json={"decision": "return", "comment": "explain storage"},
                headers=reviewers["security"].headers,
            ),
            200,
        )
        assert returned["status"] == "returned"
        assert {t["track"]: t["status"] for t in returned["tracks"]} == {
            "provider": "approved",
            "ethics": "approved_with_conditions",
            "security": "returned",
            "compliance": "cancelled",
        }
        problem(
            await client.post(
                f"{url}/compliance/decision", json={"decision": "approve"}, headers=reviewers["compliance"].headers
            ),
            409,
            "invalid_transition",
        )
        expect(
            await client.patch(
                f"/v1/applications/{app['id']}", json={"requested_months": 6}, headers=consumer["buyer"].headers
            ),
            200,
        )
        again = expect(
            await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200
        )
        assert {t["track"]: t["status"] for t in again["tracks"]} == {
            "provider": "approved",
            "ethics": "approved_with_conditions",
            "security": "pending",
            "compliance": "pending",
        }
        assert again["round"] == 2
        done = await circulation.approve_all(again, reviewers)
        assert done["status"] == "approved"

    async def test_a_reject_ends_the_application(self, client, circulation) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L3")
        consumer = await circulation.consumer()
        reviewers = await circulation.reviewers(owner)
        app = await circulation.apply(product, consumer)
        expect(await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200)
        problem(
            await client.post(
                f"/v1/applications/{app['id']}/tracks/ethics/decision",
                json={"decision": "reject"},
                headers=reviewers["ethics"].headers,
            ),
            400,
            "validation_error",
        )
        rejected = expect(
            await client.post(
                f"/v1/applications/{app['id']}/tracks/ethics/decision",
                json={"decision": "reject", "comment": "no consent basis"},
                headers=reviewers["ethics"].headers,
            ),
            200,
        )
        assert rejected["status"] == "rejected"
        assert {t["track"]: t["status"] for t in rejected["tracks"]}["provider"] == "cancelled"
        problem(
            await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers),
            409,
            "invalid_transition",
        )

    async def test_withdraw_and_deciding_twice(self, client, circulation) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L3")
        consumer = await circulation.consumer()
        reviewers = await circulation.reviewers(owner)
        app = await circulation.apply(product, consumer)
        expect(await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200)
        url = f"/v1/applications/{app['id']}/tracks/provider/decision"
        expect(await client.post(url, json={"decision": "approve"}, headers=reviewers["provider"].headers), 200)
        problem(
            await client.post(url, json={"decision": "approve"}, headers=reviewers["provider"].headers),
            409,
            "track_decided",
        )
        withdrawn = expect(
            await client.post(f"/v1/applications/{app['id']}/withdraw", headers=consumer["buyer"].headers), 200
        )
        assert withdrawn["status"] == "withdrawn"
        problem(
            await client.post(
                f"/v1/applications/{app['id']}/tracks/ethics/decision",
                json={"decision": "approve"},
                headers=reviewers["ethics"].headers,
            ),
            409,
            "invalid_transition",
        )


class TestPermissions:
    async def test_nobody_else_decides_or_reads(self, client, circulation, actors) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L5")
        consumer = await circulation.consumer()
        other_consumer = await circulation.consumer()
        other_provider = await circulation.provider()
        reviewers = await circulation.reviewers(owner)
        app = await circulation.apply(product, consumer)
        expect(await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200)
        url = f"/v1/applications/{app['id']}/tracks"
        wrong = [
            ("provider", consumer["buyer"], 403),  # the applicant
            ("provider", other_provider, 404),  # another provider: not even told the application exists
            ("provider", reviewers["ethics"], 403),  # an operator role that is not the provider
            ("ethics", reviewers["security"], 403),  # the wrong operator role
            ("security", reviewers["compliance"], 403),
            ("compliance", reviewers["ethics"], 403),
            ("operator", reviewers["compliance"], 403),  # the operator track needs the operator admin
            ("ethics", other_consumer["admin"], 404),  # another consumer
        ]
        for track, party, status in wrong:
            response = await client.post(f"{url}/{track}/decision", json={"decision": "approve"}, headers=party.headers)
            problem(response, status, "forbidden" if status == 403 else "not_found")
        for party in (other_consumer["buyer"], other_provider):
            problem(await client.get(f"/v1/applications/{app['id']}", headers=party.headers), 404, "not_found")
            assert expect(await client.get("/v1/applications", headers=party.headers), 200)["items"] == []
        for party in (consumer["analyst"], owner, actors.operator):
            expect(await client.get(f"/v1/applications/{app['id']}", headers=party.headers), 200)
        problem(
            await client.patch(
                f"/v1/applications/{app['id']}", json={"requested_months": 3}, headers=other_consumer["buyer"].headers
            ),
            404,
            "not_found",
        )


class TestConcurrentDecisions:
    async def test_the_last_two_tracks_decided_at_once_leave_exactly_one_licence(
        self, client, circulation, app, settings
    ) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L3")
        consumer = await circulation.consumer()
        reviewers = await circulation.reviewers(owner)
        application = await circulation.apply(product, consumer)
        expect(
            await client.post(f"/v1/applications/{application['id']}/submit", headers=consumer["buyer"].headers), 200
        )
        url = f"/v1/applications/{application['id']}/tracks"
        expect(
            await client.post(
                f"{url}/provider/decision", json={"decision": "approve"}, headers=reviewers["provider"].headers
            ),
            200,
        )
        responses = await asyncio.gather(
            client.post(f"{url}/ethics/decision", json={"decision": "approve"}, headers=reviewers["ethics"].headers),
            client.post(
                f"{url}/compliance/decision", json={"decision": "approve"}, headers=reviewers["compliance"].headers
            ),
        )
        assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
        async with app.state.sessions() as s:
            count = (
                await s.execute(
                    select(func.count()).select_from(Licence).where(Licence.application_id == application["id"])
                )
            ).scalar_one()
        assert count == 1
        final = expect(await client.get(f"/v1/applications/{application['id']}", headers=owner.headers), 200)
        assert final["status"] == "approved"


async def _submitted(client, circulation, grade: str):
    """A submitted application for a fresh product of ``grade``: (owner, consumer, its URL)."""
    owner = await circulation.provider()
    product = await circulation.product(owner, grade)
    consumer = await circulation.consumer()
    app = await circulation.apply(product, consumer)
    expect(await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200)
    return owner, consumer, f"/v1/applications/{app['id']}"


async def _decide(client, url: str, track: str, party, decision: str = "approve", **body):
    return await client.post(
        f"{url}/tracks/{track}/decision", json={"decision": decision, **body}, headers=party.headers
    )


def _statuses(app) -> dict[str, str]:
    return {t["track"]: t["status"] for t in app["tracks"]}


class TestFourEyes:
    async def test_a_person_holding_two_track_roles_decides_only_one_track(self, client, circulation, actors) -> None:
        _, _, url = await _submitted(client, circulation, "L4")
        both = await actors.member(actors.operator.org_id, ["ethics", "security"])
        expect(await _decide(client, url, "ethics", both), 200)
        err = problem(await _decide(client, url, "security", both), 409, "four_eyes")
        assert err["decided_track"] == "ethics"
        assert _statuses(expect(await client.get(url, headers=both.headers), 200))["security"] == "pending"
        other = await actors.member(actors.operator.org_id, ["security"])
        assert _statuses(expect(await _decide(client, url, "security", other), 200))["security"] == "approved"

    async def test_the_operator_admin_decides_the_operator_track_and_no_other(
        self, client, circulation, actors
    ) -> None:
        _, _, url = await _submitted(client, circulation, "L5")
        admin = actors.operator  # holds only admin: it no longer acts in ethics, security or compliance
        for track in ("ethics", "security", "compliance"):
            problem(await _decide(client, url, track, admin), 403, "forbidden")
        expect(await _decide(client, url, "operator", admin), 200)
        also_ethics = await actors.member(actors.operator.org_id, ["admin", "ethics"])
        expect(await _decide(client, url, "ethics", also_ethics), 200)
        _, _, second = await _submitted(client, circulation, "L5")
        expect(await _decide(client, second, "ethics", also_ethics), 200)
        problem(await _decide(client, second, "operator", also_ethics), 409, "four_eyes")

    async def test_the_provider_track_needs_the_reviewer_role_not_the_admin(self, client, circulation) -> None:
        owner, _, url = await _submitted(client, circulation, "L3")
        problem(await _decide(client, url, "provider", owner), 403, "forbidden")

    async def test_after_a_return_the_same_track_again_but_never_another(self, client, circulation, actors) -> None:
        _, consumer, url = await _submitted(client, circulation, "L4")
        many = await actors.member(actors.operator.org_id, ["ethics", "security", "compliance"])
        returned = expect(await _decide(client, url, "security", many, "return", comment="explain storage"), 200)
        assert returned["status"] == "returned"
        again = expect(await client.post(f"{url}/submit", headers=consumer["buyer"].headers), 200)
        assert again["round"] == 2 and _statuses(again)["security"] == "pending"
        for track in ("ethics", "compliance"):
            problem(await _decide(client, url, track, many), 409, "four_eyes")
        decided = expect(await _decide(client, url, "security", many), 200)
        assert _statuses(decided) == {
            "provider": "pending",
            "ethics": "pending",
            "security": "approved",
            "compliance": "pending",
        }

    async def test_two_tracks_decided_at_once_by_one_person_only_one_passes(self, client, circulation, actors) -> None:
        _, _, url = await _submitted(client, circulation, "L4")
        both = await actors.member(actors.operator.org_id, ["ethics", "security"])
        responses = await asyncio.gather(_decide(client, url, "ethics", both), _decide(client, url, "security", both))
        assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]
        assert next(r for r in responses if r.status_code == 409).json()["code"] == "four_eyes"
        statuses = _statuses(expect(await client.get(url, headers=both.headers), 200))
        assert sorted([statuses["ethics"], statuses["security"]]) == ["approved", "pending"]


class TestConditions:
    async def test_conditions_are_copied_onto_the_licence(self, client, circulation) -> None:
        owner, consumer, url = await _submitted(client, circulation, "L3")
        reviewers = await circulation.reviewers(owner)
        conditional = {"provider": "Annual progress report to the hospital", "ethics": "Re-consent cohort by 2027"}
        for track, text in conditional.items():
            expect(await _decide(client, url, track, reviewers[track], "approve_with_conditions", conditions=text), 200)
        done = expect(await _decide(client, url, "compliance", reviewers["compliance"]), 200)
        licence = expect(await client.get(f"/v1/licences/{done['licence_id']}", headers=consumer["buyer"].headers), 200)
        decided = {t["track"]: t for t in done["tracks"]}
        assert licence["conditions"] == [
            {
                "track": track,
                "text": text,
                "decided_by": reviewers[track].user_id,
                "decided_at": decided[track]["decided_at"],
            }
            for track, text in conditional.items()
        ]

    async def test_approving_with_conditions_needs_them_and_only_then(self, client, circulation) -> None:
        owner, _, url = await _submitted(client, circulation, "L3")
        reviewer = await circulation.actors.member(owner.org_id, ["reviewer"])
        for decision, body in (
            ("approve_with_conditions", {}),
            ("approve_with_conditions", {"conditions": ""}),
            ("approve", {"conditions": "annual report"}),
        ):
            err = problem(await _decide(client, url, "provider", reviewer, decision, **body), 400, "validation_error")
            assert err["errors"][0]["field"] == "conditions"
        assert _statuses(expect(await client.get(url, headers=reviewer.headers), 200))["provider"] == "pending"
