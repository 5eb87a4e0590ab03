"""Licences: acceptance under the pinned hash, holds and their causes, check_usable, block-lists,
the sweep, and the public register."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from catalog import db
from catalog.access import licences as licence_service
from catalog.access import sweep as licence_sweep
from catalog.access.models import Licence
from catalog.access.usable import check_usable
from catalog.auth import Principal
from catalog.outbox import JobContext
from tests.support import expect, problem

pytestmark = pytest.mark.asyncio


def principal(party, roles=("analyst",)) -> Principal:
    return Principal(
        user_id=party.user_id,
        org_id=party.org_id,
        org_kind="consumer",
        org_status="verified",
        roles=frozenset(roles),
        key_id="key_x",
    )


async def usable(app, licence_id: str, party) -> str | None:
    async with app.state.sessions() as session:
        licence = await session.get(Licence, licence_id)
        return await check_usable(session, licence, principal(party), db.utcnow())


async def set_licence(app, licence_id: str, **values) -> None:
    async with db.write_transaction(app.state.sessions) as session:
        await session.execute(update(Licence).where(Licence.id == licence_id).values(**values))


class TestAccept:
    async def test_the_pinned_hash_must_be_echoed(self, client, circulation) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L1")
        consumer = await circulation.consumer()
        app = await circulation.apply(product, consumer)
        app = expect(await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200)
        licence_id = app["licence_id"]
        licence = expect(await client.get(f"/v1/licences/{licence_id}", headers=consumer["buyer"].headers), 200)
        assert licence["terms_sha256"] == product["offer"]["terms"]["terms_sha256"]
        err = problem(
            await client.post(
                f"/v1/licences/{licence_id}/accept", json={"terms_sha256": "0" * 64}, headers=consumer["buyer"].headers
            ),
            409,
            "terms_mismatch",
        )
        assert err["terms_sha256"] == licence["terms_sha256"]
        problem(
            await client.post(
                f"/v1/licences/{licence_id}/accept",
                json={"terms_sha256": licence["terms_sha256"]},
                headers=consumer["analyst"].headers,
            ),
            403,
            "forbidden",
        )
        accepted = expect(
            await client.post(
                f"/v1/licences/{licence_id}/accept",
                json={"terms_sha256": licence["terms_sha256"]},
                headers=consumer["buyer"].headers,
            ),
            200,
        )
        assert accepted["status"] == "active"  # a free plan

    async def test_a_priced_plan_waits_for_payment_and_billing_activates_it(self, client, circulation, app) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L1")
        consumer = await circulation.consumer()
        paid_plan = product["plans"][1]["id"]
        application = await circulation.apply(product, consumer, plan_id=paid_plan)
        application = expect(
            await client.post(f"/v1/applications/{application['id']}/submit", headers=consumer["buyer"].headers), 200
        )
        licence = expect(
            await client.get(f"/v1/licences/{application['licence_id']}", headers=consumer["buyer"].headers), 200
        )
        licence = expect(
            await client.post(
                f"/v1/licences/{licence['id']}/accept",
                json={"terms_sha256": licence["terms_sha256"]},
                headers=consumer["buyer"].headers,
            ),
            200,
        )
        assert licence["status"] == "pending_payment" and licence["payment_due_by"]
        assert await usable(app, licence["id"], consumer["analyst"]) == "licence_not_active"
        async with db.write_transaction(app.state.sessions) as session:
            assert await licence_service.activate_paid(session, licence["id"], "pay_test") is True
        assert await usable(app, licence["id"], consumer["analyst"]) is None
        plan = expect(await client.get(f"/v1/plans/{paid_plan}", headers=owner.headers), 200)
        assert plan["locked"] is True  # a licence refers to it: its price is frozen

    async def test_decline(self, client, circulation) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L1")
        consumer = await circulation.consumer()
        app = await circulation.apply(product, consumer)
        app = expect(await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200)
        declined = expect(
            await client.post(f"/v1/licences/{app['licence_id']}/decline", headers=consumer["buyer"].headers), 200
        )
        assert declined["status"] == "declined"

    async def test_the_term_is_the_shorter_of_request_and_plan(self, client, circulation) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L1")
        consumer = await circulation.consumer()
        app = await circulation.apply(
            product, consumer, plan_id=product["plans"][1]["id"], requested_months=20, requested_start="2030-01-31"
        )
        app = expect(await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200)
        licence = expect(await client.get(f"/v1/licences/{app['licence_id']}", headers=owner.headers), 200)
        assert (licence["starts_on"], licence["ends_on"]) == ("2030-01-31", "2031-01-30")


class TestUsability:
    async def test_an_active_licence_is_usable_by_its_named_analyst_only(self, client, circulation, app) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        licensed = await circulation.licensed(owner, consumer, "L3")
        lic = licensed["licence"]["id"]
        assert await usable(app, lic, consumer["analyst"]) is None
        assert await usable(app, lic, consumer["buyer"]) == "not_named_analyst"  # a member, but not named
        stranger = await circulation.consumer()
        assert await usable(app, lic, stranger["analyst"]) == "not_named_analyst"

    async def test_a_removed_analyst_or_role_loses_access(self, client, circulation, app, actors) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        lic = (await circulation.licensed(owner, consumer, "L3"))["licence"]["id"]
        admin, analyst = consumer["admin"], consumer["analyst"]
        expect(
            await client.patch(
                f"/v1/orgs/{admin.org_id}/members/{analyst.user_id}", json={"roles": ["buyer"]}, headers=admin.headers
            ),
            200,
        )
        assert await usable(app, lic, analyst) == "not_named_analyst"
        expect(
            await client.patch(
                f"/v1/orgs/{admin.org_id}/members/{analyst.user_id}", json={"roles": ["analyst"]}, headers=admin.headers
            ),
            200,
        )
        assert await usable(app, lic, analyst) is None
        expect(await client.delete(f"/v1/orgs/{admin.org_id}/members/{analyst.user_id}", headers=admin.headers), 204)
        assert await usable(app, lic, analyst) == "not_named_analyst"

    async def test_revoked_expired_pending_lapsed_and_not_started(self, client, circulation, app) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        lic = (await circulation.licensed(owner, consumer, "L3"))["licence"]
        analyst = consumer["analyst"]
        today = db.utcnow().date()
        await set_licence(app, lic["id"], ethics_expires_on=today - timedelta(days=1))
        assert await usable(app, lic["id"], analyst) == "ethics_approval_expired"
        await set_licence(
            app, lic["id"], ethics_expires_on=today + timedelta(days=300), starts_on=today + timedelta(days=3)
        )
        assert await usable(app, lic["id"], analyst) == "licence_not_started"
        await set_licence(app, lic["id"], starts_on=today, status="pending_acceptance")
        assert await usable(app, lic["id"], analyst) == "licence_not_active"
        await set_licence(app, lic["id"], status="active", ends_on=today - timedelta(days=1))
        assert await usable(app, lic["id"], analyst) == "licence_expired"
        await set_licence(app, lic["id"], ends_on=today + timedelta(days=30))
        assert await usable(app, lic["id"], analyst) is None
        expect(
            await client.post(f"/v1/licences/{lic['id']}/revoke", json={"reason": "misuse"}, headers=owner.headers), 200
        )
        assert await usable(app, lic["id"], analyst) == "licence_revoked"

    async def test_ethics_expiry_wins_over_its_hold(self, client, circulation, app) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        lic = (await circulation.licensed(owner, consumer, "L4"))["licence"]
        await set_licence(app, lic["id"], ethics_expires_on=db.utcnow().date() - timedelta(days=1))
        await licence_sweep.sweep(JobContext(sessions=app.state.sessions, services={}))
        held = expect(await client.get(f"/v1/licences/{lic['id']}", headers=owner.headers), 200)
        assert held["status"] == "suspended" and [h["kind"] for h in held["holds"]] == ["ethics_expired"]
        assert await usable(app, lic["id"], consumer["analyst"]) == "ethics_approval_expired"
        renewed = expect(
            await client.post(
                f"/v1/licences/{lic['id']}/ethics-approval",
                json={
                    "committee": "IRB",
                    "reference": "2026-7",
                    "approved_on": "2026-01-01",
                    "expires_on": "2099-01-01",
                },
                headers=consumer["buyer"].headers,
            ),
            200,
        )
        assert renewed["status"] == "active" and renewed["holds"] == []

    async def test_a_suspended_product_refuses(self, client, circulation, app, catalogue) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        licensed = await circulation.licensed(owner, consumer, "L2")
        curator = await catalogue.curator()
        expect(
            await client.post(
                f"/v1/products/{licensed['product']['id']}/suspend", json={"reason": "audit"}, headers=curator.headers
            ),
            200,
        )
        assert await usable(app, licensed["licence"]["id"], consumer["analyst"]) == "product_suspended"


class TestHolds:
    async def test_each_hold_is_lifted_only_by_its_cause(self, client, circulation, app, actors) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        lic = (await circulation.licensed(owner, consumer, "L2"))["licence"]["id"]
        compliance = await actors.member(actors.operator.org_id, ["compliance"])
        expect(
            await client.post(f"/v1/licences/{lic}/suspend", json={"reason": "audit"}, headers=compliance.headers), 200
        )
        both = expect(
            await client.post(f"/v1/licences/{lic}/suspend", json={"reason": "late report"}, headers=owner.headers), 200
        )
        assert both["status"] == "suspended" and {h["kind"] for h in both["holds"]} == {"operator", "provider"}
        problem(
            await client.post(f"/v1/licences/{lic}/suspend", json={"reason": "again"}, headers=owner.headers),
            409,
            "already_held",
        )
        lifted = expect(
            await client.post(f"/v1/licences/{lic}/reinstate", json={"reason": "report filed"}, headers=owner.headers),
            200,
        )
        assert lifted["status"] == "suspended" and [h["kind"] for h in lifted["holds"]] == ["operator"]
        problem(
            await client.post(f"/v1/licences/{lic}/reinstate", json={"reason": "x"}, headers=owner.headers),
            409,
            "no_such_hold",
        )
        assert await usable(app, lic, consumer["analyst"]) == "licence_not_active"
        active = expect(
            await client.post(f"/v1/licences/{lic}/reinstate", json={"reason": "cleared"}, headers=compliance.headers),
            200,
        )
        assert active["status"] == "active" and active["holds"] == []
        assert await usable(app, lic, consumer["analyst"]) is None

    async def test_billing_holds_for_non_payment(self, client, circulation, app) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        lic = (await circulation.licensed(owner, consumer, "L2"))["licence"]["id"]
        async with db.write_transaction(app.state.sessions) as session:
            licence = await session.get(Licence, lic)
            await licence_service.add_hold(session, None, licence, "non_payment", "billing", "invoice unpaid")
        assert await usable(app, lic, consumer["analyst"]) == "licence_not_active"
        async with db.write_transaction(app.state.sessions) as session:
            licence = await session.get(Licence, lic)
            await licence_service.lift_hold(session, None, licence, "non_payment", "billing", "paid")
        assert await usable(app, lic, consumer["analyst"]) is None

    async def test_others_cannot_hold_or_revoke(self, client, circulation, actors) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        lic = (await circulation.licensed(owner, consumer, "L2"))["licence"]["id"]
        other_provider = await circulation.provider()
        finance = await actors.member(actors.operator.org_id, ["finance"])
        problem(
            await client.post(f"/v1/licences/{lic}/suspend", json={"reason": "x"}, headers=other_provider.headers),
            404,
            "not_found",
        )
        problem(
            await client.post(f"/v1/licences/{lic}/suspend", json={"reason": "x"}, headers=finance.headers),
            403,
            "forbidden",
        )
        problem(
            await client.post(f"/v1/licences/{lic}/revoke", json={"reason": "x"}, headers=consumer["buyer"].headers),
            403,
            "forbidden",
        )


class TestBlocklists:
    async def test_blocking_holds_licences_and_unblocking_lifts_only_that_hold(
        self, client, circulation, app, actors
    ) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        lic = (await circulation.licensed(owner, consumer, "L2"))["licence"]["id"]
        org = consumer["admin"].org_id
        expect(
            await client.post(
                f"/v1/orgs/{owner.org_id}/blocklist", json={"org_id": org, "reason": "misuse"}, headers=owner.headers
            ),
            201,
        )
        expect(
            await client.post(
                f"/v1/orgs/{actors.operator.org_id}/blocklist",
                json={"org_id": org, "reason": "fraud"},
                headers=actors.operator.headers,
            ),
            201,
        )
        held = expect(await client.get(f"/v1/licences/{lic}", headers=owner.headers), 200)
        assert sorted(h["source"] for h in held["holds"]) == sorted([owner.org_id, actors.operator.org_id])
        expect(await client.delete(f"/v1/orgs/{owner.org_id}/blocklist/{org}", headers=owner.headers), 204)
        still = expect(await client.get(f"/v1/licences/{lic}", headers=owner.headers), 200)
        assert still["status"] == "suspended" and [h["source"] for h in still["holds"]] == [actors.operator.org_id]
        expect(
            await client.delete(f"/v1/orgs/{actors.operator.org_id}/blocklist/{org}", headers=actors.operator.headers),
            204,
        )
        assert await usable(app, lic, consumer["analyst"]) is None
        listed = expect(await client.get(f"/v1/orgs/{owner.org_id}/blocklist", headers=owner.headers), 200)
        assert listed["items"] == []

    async def test_unverifying_an_org_holds_its_licences(self, client, circulation, app, actors) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        lic = (await circulation.licensed(owner, consumer, "L2"))["licence"]["id"]
        org = consumer["admin"].org_id
        expect(
            await client.post(
                f"/v1/orgs/{org}/verify",
                json={"status": "rejected", "note": "lapsed licence"},
                headers=actors.operator.headers,
            ),
            200,
        )
        assert await usable(app, lic, consumer["analyst"]) == "licence_not_active"
        expect(
            await client.post(f"/v1/orgs/{org}/verify", json={"status": "verified"}, headers=actors.operator.headers),
            200,
        )
        assert await usable(app, lic, consumer["analyst"]) is None

    async def test_revoke_with_block_org(self, client, circulation) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        lic = (await circulation.licensed(owner, consumer, "L2"))["licence"]["id"]
        revoked = expect(
            await client.post(
                f"/v1/licences/{lic}/revoke", json={"reason": "breach", "block_org": True}, headers=owner.headers
            ),
            200,
        )
        assert revoked["status"] == "revoked"
        listed = expect(await client.get(f"/v1/orgs/{owner.org_id}/blocklist", headers=owner.headers), 200)
        assert [e["blocked_org_id"] for e in listed["items"]] == [consumer["admin"].org_id]

    async def test_only_list_owners_manage_lists(self, client, circulation) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        other = await circulation.provider()
        body = {"org_id": consumer["admin"].org_id, "reason": "x"}
        problem(  # another tenant's list: as for an organisation that does not exist
            await client.post(f"/v1/orgs/{owner.org_id}/blocklist", json=body, headers=other.headers), 404, "not_found"
        )
        problem(
            await client.post(
                f"/v1/orgs/{consumer['admin'].org_id}/blocklist", json=body, headers=consumer["admin"].headers
            ),
            403,
            "forbidden",
        )


class TestSweep:
    async def test_expiry_and_unpaid_cancellation(self, client, circulation, app) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        lic = (await circulation.licensed(owner, consumer, "L1"))["licence"]["id"]
        await set_licence(app, lic, ends_on=db.utcnow().date() - timedelta(days=1))
        unpaid = (await circulation.licensed(owner, await circulation.consumer(), "L1"))["licence"]["id"]
        # As a licence still awaiting payment whose 30 days ran out yesterday:
        await set_licence(app, unpaid, status="pending_payment", payment_due_by=db.utcnow() - timedelta(days=1))
        await licence_sweep.sweep(JobContext(sessions=app.state.sessions, services={}))
        assert expect(await client.get(f"/v1/licences/{lic}", headers=owner.headers), 200)["status"] == "expired"
        cancelled = expect(await client.get(f"/v1/licences/{unpaid}", headers=owner.headers), 200)
        assert cancelled["status"] == "cancelled" and cancelled["end_reason"] == "unpaid after 30 days"


class TestRegister:
    async def test_the_register_shows_approved_uses_in_public_words(self, client, circulation) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        licensed = await circulation.licensed(owner, consumer, "L3")
        product = licensed["product"]
        withdrawn = await circulation.apply(product, consumer)
        expect(
            await client.post(f"/v1/applications/{withdrawn['id']}/withdraw", headers=consumer["buyer"].headers), 200
        )
        rejected = await circulation.apply(product, consumer)
        rejected = expect(
            await client.post(f"/v1/applications/{rejected['id']}/submit", headers=consumer["buyer"].headers), 200
        )
        reviewers = await circulation.reviewers(owner)
        expect(
            await client.post(
                f"/v1/applications/{rejected['id']}/tracks/ethics/decision",
                json={"decision": "reject", "comment": "no"},
                headers=reviewers["ethics"].headers,
            ),
            200,
        )
        register = expect(await client.get("/v1/register"), 200)
        assert [e["licence_id"] for e in register["items"]] == [licensed["licence"]["id"]]
        entry = register["items"][0]
        assert entry["public_summary"] == "A study of diabetes treatments" and entry["purpose_category"] == "HMB"
        assert "confidential" not in str(register)


class TestLifecycleRules:
    async def test_accepting_a_held_licence_leaves_it_suspended(self, client, circulation, actors) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L1")
        consumer = await circulation.consumer()
        app = await circulation.apply(product, consumer)
        app = expect(await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200)
        expect(
            await client.post(
                f"/v1/orgs/{owner.org_id}/blocklist",
                json={"org_id": consumer["admin"].org_id, "reason": "x"},
                headers=owner.headers,
            ),
            201,
        )
        licence = expect(await client.get(f"/v1/licences/{app['licence_id']}", headers=consumer["buyer"].headers), 200)
        accepted = expect(
            await client.post(
                f"/v1/licences/{licence['id']}/accept",
                json={"terms_sha256": licence["terms_sha256"]},
                headers=consumer["buyer"].headers,
            ),
            200,
        )
        assert accepted["status"] == "suspended" and [h["kind"] for h in accepted["holds"]] == ["org_blocked"]

    async def test_only_a_live_licence_is_revoked(self, client, circulation) -> None:
        owner = await circulation.provider()
        product = await circulation.product(owner, "L1")
        consumer = await circulation.consumer()
        app = await circulation.apply(product, consumer)
        app = expect(await client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200)
        problem(
            await client.post(f"/v1/licences/{app['licence_id']}/revoke", json={"reason": "x"}, headers=owner.headers),
            409,
            "invalid_transition",
        )

    async def test_blocking_on_revocation_needs_an_admin(self, client, circulation, actors) -> None:
        owner = await circulation.provider()
        consumer = await circulation.consumer()
        lic = (await circulation.licensed(owner, consumer, "L2"))["licence"]["id"]
        reviewer = await actors.member(owner.org_id, ["reviewer"])
        problem(
            await client.post(
                f"/v1/licences/{lic}/revoke", json={"reason": "x", "block_org": True}, headers=reviewer.headers
            ),
            403,
            "forbidden",
        )
        expect(await client.post(f"/v1/licences/{lic}/revoke", json={"reason": "x"}, headers=reviewer.headers), 200)
