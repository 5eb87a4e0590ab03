"""Renewal (catalog/access/renewal.py): a new licence of the same application following on from the
old one — accepted at once under unchanged terms, offered under changed ones, paid through checkout
on a priced plan, reviewed only on the tracks a stricter grade adds — and subscriptions that run on
in the sweep while paid. The app is wired to simulated Stripe (tests/billing), so renewals can be paid."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select, update

from catalog import db
from catalog.access import sweep as licence_sweep
from catalog.access.licences import add_months
from catalog.access.models import Licence
from catalog.audit import AuditEvent
from catalog.migrations import alembic_config
from catalog.outbox import JobContext
from tests.billing.conftest import MONTHLY, fx_app, fx_drain, fx_hooks, fx_settings, fx_sim, pay  # noqa: F401
from tests.conftest import make_settings
from tests.support import ONE_TIME_PLAN, expect, problem

TERMS_V2 = {
    "use_conditions": ["HMB", "IRB", {"code": "DS", "params": {"diseases": ["E11"]}}],
    "local_conditions": ["no_linkage"],
    "max_term_months": 24,
    "clauses": "No re-identification. No linkage with other data sets.",
}


def renew(client, licence_id: str, party, key: str | None = None):
    headers = {**party.headers, **({"Idempotency-Key": key} if key else {})}
    return client.post(f"/v1/licences/{licence_id}/renew", headers=headers)


async def get_licence(client, licence_id: str, party) -> dict[str, Any]:
    return expect(await client.get(f"/v1/licences/{licence_id}", headers=party.headers), 200)


async def set_licence(app, licence_id: str, **values) -> None:
    async with db.write_transaction(app.state.sessions) as session:
        await session.execute(update(Licence).where(Licence.id == licence_id).values(**values))


async def renewals_of(app, licence_id: str) -> list[str]:
    async with app.state.sessions() as session:
        stmt = select(Licence.id).where(Licence.renews_licence_id == licence_id)
        return list((await session.execute(stmt)).scalars())


async def licensed(
    client, circulation, owner, consumer, grade: str, *, plans=None, terms=None, **app_overrides
) -> dict:
    """A licence on a fresh product of ``grade`` (all its tracks approved), accepted; free unless
    ``plan_id`` names a priced plan (then it awaits payment)."""
    product = await circulation.product(owner, grade, plans=plans, terms=terms)
    application = await circulation.apply(product, consumer, **app_overrides)
    application = expect(
        await client.post(f"/v1/applications/{application['id']}/submit", headers=consumer["buyer"].headers), 200
    )
    reviewers = await circulation.reviewers(owner)
    application = await circulation.approve_all(application, reviewers)
    licence = await circulation.accept(
        await get_licence(client, application["licence_id"], consumer["buyer"]), consumer
    )
    return {"licence": licence, "product": product, "application": application, "reviewers": reviewers}


def day(iso: str) -> date:
    return date.fromisoformat(iso)


class TestUnchangedTerms:
    async def test_a_free_renewal_is_active_from_the_day_after_the_end_and_keeps_the_approvals(
        self, client, circulation
    ) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        made = await licensed(client, circulation, owner, consumer, "L3")
        old = made["licence"]
        assert old["status"] == "active"

        body = expect(await renew(client, old["id"], consumer["buyer"]), 201)

        assert body["status"] == "offered" and body["reopened_tracks"] == []
        renewal = body["licence"]
        assert renewal["status"] == "active" and renewal["accepted_at"] and renewal["activated_at"]
        assert renewal["renews_licence_id"] == old["id"] and renewal["application_id"] == old["application_id"]
        starts = day(old["ends_on"]) + timedelta(days=1)
        assert renewal["starts_on"] == starts.isoformat()
        assert renewal["ends_on"] == (add_months(starts, 12) - timedelta(days=1)).isoformat()
        assert renewal["terms_sha256"] == old["terms_sha256"] and renewal["plan_id"] == old["plan_id"]
        assert (renewal["analysts"], renewal["purpose"]) == (old["analysts"], old["purpose"])
        assert renewal["modes"] == old["modes"] and renewal["ethics_expires_on"] == old["ethics_expires_on"]
        after = await get_licence(client, old["id"], consumer["buyer"])
        assert {**after, "holds": []} == {**old, "holds": []}  # the old licence runs to its end, untouched
        application = expect(
            await client.get(f"/v1/applications/{old['application_id']}", headers=consumer["buyer"].headers), 200
        )
        assert application["status"] == "approved" and application["licence_id"] == renewal["id"]
        assert application["round"] == 1  # no second review
        assert {t["status"] for t in application["tracks"]} == {"approved"}

    async def test_renewal_is_audited_on_both_licences(self, client, circulation, app) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        old = (await licensed(client, circulation, owner, consumer, "L1"))["licence"]
        renewal = expect(await renew(client, old["id"], consumer["buyer"]), 201)["licence"]
        async with app.state.sessions() as session:
            rows = await session.execute(
                select(AuditEvent.subject_id, AuditEvent.action).where(
                    AuditEvent.subject_id.in_([old["id"], renewal["id"]])
                )
            )
            actions = set(rows.all())
        assert (old["id"], "licence.renewal_offered") in actions
        assert {(renewal["id"], "licence.issued"), (renewal["id"], "licence.accepted")} <= actions


class TestChangedTerms:
    async def test_the_new_terms_hash_must_be_accepted(self, client, circulation) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        made = await licensed(client, circulation, owner, consumer, "L1")
        old = made["licence"]
        terms = expect(
            await client.put(f"/v1/products/{old['product_id']}/terms", json=TERMS_V2, headers=owner.headers), 201
        )
        assert terms["terms_sha256"] != old["terms_sha256"]

        renewal = expect(await renew(client, old["id"], consumer["buyer"]), 201)["licence"]

        assert renewal["status"] == "pending_acceptance" and renewal["accepted_at"] is None
        assert (renewal["terms_sha256"], renewal["terms_version"]) == (terms["terms_sha256"], terms["version"])
        accept = f"/v1/licences/{renewal['id']}/accept"
        err = problem(
            await client.post(accept, json={"terms_sha256": old["terms_sha256"]}, headers=consumer["buyer"].headers),
            409,
            "terms_mismatch",
        )
        assert err["terms_sha256"] == terms["terms_sha256"]
        accepted = expect(
            await client.post(accept, json={"terms_sha256": terms["terms_sha256"]}, headers=consumer["buyer"].headers),
            200,
        )
        assert accepted["status"] == "active"
        assert (await get_licence(client, old["id"], owner))["terms_sha256"] == old["terms_sha256"]


class TestGradeTightened:
    async def regraded(self, client, circulation, catalogue, grade: str, to: str, **licensed_kw) -> dict:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        made = await licensed(client, circulation, owner, consumer, grade, **licensed_kw)
        curator = await catalogue.curator()
        expect(
            await client.post(
                f"/v1/products/{made['product']['id']}/regrade",
                json={"grade": to, "reason": "re-identification risk reassessed"},
                headers=curator.headers,
            ),
            200,
        )
        return {**made, "owner": owner, "consumer": consumer}

    async def test_only_the_new_track_reopens_and_its_approval_issues_the_renewal(
        self, client, circulation, catalogue, app
    ) -> None:
        made = await self.regraded(client, circulation, catalogue, "L3", "L4")
        old, consumer, reviewers = made["licence"], made["consumer"], made["reviewers"]

        response = await renew(client, old["id"], consumer["buyer"])

        body = expect(response, 202)
        assert body == {
            "status": "in_review",
            "licence": None,
            "application_id": old["application_id"],
            "reopened_tracks": ["security"],
        }
        assert response.headers["location"] == f"/v1/applications/{old['application_id']}"
        path = f"/v1/applications/{old['application_id']}"
        application = expect(await client.get(path, headers=consumer["buyer"].headers), 200)
        assert application["status"] == "under_review" and application["round"] == 2
        assert application["renewing_licence_id"] == old["id"]
        assert {t["track"]: t["status"] for t in application["tracks"]} == {
            "provider": "approved",
            "ethics": "approved",
            "compliance": "approved",
            "security": "pending",
        }
        problem(await renew(client, old["id"], consumer["buyer"]), 409, "renewal_in_review")
        # The reviewers (the operator's, for the security track) are told the renewal awaits them.
        told = expect(
            await client.get("/v1/notifications?type=application.submitted", headers=reviewers["operator"].headers), 200
        )
        assert told["items"][0]["data"] == {
            "application_id": old["application_id"], "product_id": old["product_id"], "status": "under_review",
            "tracks": ["security"], "renews": old["id"],
        }  # fmt: skip

        application = expect(
            await client.post(
                f"{path}/tracks/security/decision", json={"decision": "approve"}, headers=reviewers["security"].headers
            ),
            200,
        )

        assert application["status"] == "approved" and application["renewing_licence_id"] is None
        renewal = await get_licence(client, application["licence_id"], consumer["buyer"])
        assert renewal["renews_licence_id"] == old["id"] and renewal["status"] == "pending_acceptance"
        assert renewal["starts_on"] == (day(old["ends_on"]) + timedelta(days=1)).isoformat()
        assert renewal["modes"] == ["aggregate"]  # L4's
        assert await renewals_of(app, old["id"]) == [renewal["id"]]
        assert (await get_licence(client, old["id"], consumer["buyer"]))["status"] == "active"

    async def test_a_rejected_track_ends_the_attempt_and_the_old_licence_stands(
        self, client, circulation, catalogue, app
    ) -> None:
        made = await self.regraded(client, circulation, catalogue, "L3", "L4")
        old, consumer, reviewers = made["licence"], made["consumer"], made["reviewers"]
        expect(await renew(client, old["id"], consumer["buyer"]), 202)
        path = f"/v1/applications/{old['application_id']}"

        application = expect(
            await client.post(
                f"{path}/tracks/security/decision",
                json={"decision": "reject", "comment": "Aggregates alone are not enough at L4 for this project."},
                headers=reviewers["security"].headers,
            ),
            200,
        )

        assert application["status"] == "approved" and application["renewing_licence_id"] is None
        assert application["licence_id"] == old["id"]
        assert await renewals_of(app, old["id"]) == []
        assert (await get_licence(client, old["id"], consumer["buyer"]))["status"] == "active"

    async def test_an_ethics_approval_the_grade_now_requires_blocks(self, client, circulation, catalogue) -> None:
        terms = {"use_conditions": ["HMB"], "local_conditions": [], "max_term_months": 24, "clauses": "No re-id."}
        made = await self.regraded(client, circulation, catalogue, "L2", "L3", terms=terms, ethics_approval=None)
        err = problem(await renew(client, made["licence"]["id"], made["consumer"]["buyer"]), 409, "renewal_blocked")
        assert "ethics_approval_missing" in [b["code"] for b in err["blockers"]]


class TestPricedPlan:
    async def test_a_renewal_is_paid_through_checkout_and_then_active(
        self, client, circulation, sim, hooks, drain
    ) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        plans = [{"name": "Research (free)", "kind": "free", "currency": "CNY"}, ONE_TIME_PLAN]
        product = await circulation.product(owner, "L1", plans=plans)
        application = await circulation.apply(product, consumer, plan_id=product["plans"][1]["id"])
        application = expect(
            await client.post(f"/v1/applications/{application['id']}/submit", headers=consumer["buyer"].headers), 200
        )
        old = await get_licence(client, application["licence_id"], consumer["buyer"])
        expect(
            await client.post(
                f"/v1/licences/{old['id']}/accept",
                json={"terms_sha256": old["terms_sha256"]},
                headers=consumer["buyer"].headers,
            ),
            200,
        )
        assert (await pay(client, sim, drain, consumer, old))["status"] == "paid"
        assert (await get_licence(client, old["id"], consumer["buyer"]))["status"] == "active"

        renewal = expect(await renew(client, old["id"], consumer["buyer"]), 201)["licence"]

        assert renewal["status"] == "pending_payment" and renewal["payment_due_by"] and renewal["accepted_at"]
        payment = await pay(client, sim, drain, consumer, renewal)
        assert payment["status"] == "paid" and payment["licence_id"] == renewal["id"]
        paid = await get_licence(client, renewal["id"], consumer["buyer"])
        assert paid["status"] == "active" and paid["activated_at"]
        assert paid["starts_on"] == (day(old["ends_on"]) + timedelta(days=1)).isoformat()

    async def test_a_plan_no_longer_offered_refuses(self, client, circulation) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        old = (await licensed(client, circulation, owner, consumer, "L1"))["licence"]
        expect(await client.patch(f"/v1/plans/{old['plan_id']}", json={"active": False}, headers=owner.headers), 200)
        problem(await renew(client, old["id"], consumer["buyer"]), 409, "plan_unavailable")


class TestWhen:
    async def test_within_30_days_of_expiry_it_starts_today(self, client, circulation, app) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        old = (await licensed(client, circulation, owner, consumer, "L1"))["licence"]
        today = db.utcnow().date()
        await set_licence(
            app, old["id"], starts_on=today - timedelta(days=375), ends_on=today - timedelta(days=30), status="expired"
        )
        renewal = expect(await renew(client, old["id"], consumer["buyer"]), 201)["licence"]
        assert renewal["starts_on"] == today.isoformat() and renewal["status"] == "active"
        assert (await get_licence(client, old["id"], consumer["buyer"]))["status"] == "expired"

    async def test_more_than_30_days_after_expiry_refuses_and_names_the_date(self, client, circulation, app) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        old = (await licensed(client, circulation, owner, consumer, "L1"))["licence"]
        today = db.utcnow().date()
        ended = today - timedelta(days=31)
        await set_licence(app, old["id"], starts_on=today - timedelta(days=400), ends_on=ended, status="expired")
        err = problem(await renew(client, old["id"], consumer["buyer"]), 409, "not_renewable")
        assert ended.isoformat() in err["detail"] and err["ends_on"] == ended.isoformat()
        assert await renewals_of(app, old["id"]) == []

    @pytest.mark.parametrize("status", ["revoked", "declined", "cancelled", "pending_acceptance", "pending_payment"])
    async def test_a_licence_that_is_not_live_refuses(self, client, circulation, app, status) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        old = (await licensed(client, circulation, owner, consumer, "L1"))["licence"]
        await set_licence(app, old["id"], status=status)
        problem(await renew(client, old["id"], consumer["buyer"]), 409, "not_renewable")


class TestAtMostOnce:
    async def test_a_second_renewal_names_the_first(self, client, circulation) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        old = (await licensed(client, circulation, owner, consumer, "L1"))["licence"]
        first = expect(await renew(client, old["id"], consumer["buyer"]), 201)["licence"]
        err = problem(await renew(client, old["id"], consumer["admin"]), 409, "already_renewed")
        assert err["renewal_id"] == first["id"]

    async def test_a_declined_renewal_leaves_the_licence_to_renew_again(self, client, circulation) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        old = (await licensed(client, circulation, owner, consumer, "L1"))["licence"]
        expect(await client.put(f"/v1/products/{old['product_id']}/terms", json=TERMS_V2, headers=owner.headers), 201)
        first = expect(await renew(client, old["id"], consumer["buyer"]), 201)["licence"]
        assert first["status"] == "pending_acceptance"
        declined = expect(
            await client.post(f"/v1/licences/{first['id']}/decline", headers=consumer["buyer"].headers), 200
        )
        assert declined["status"] == "declined" and declined["renews_licence_id"] is None
        second = expect(await renew(client, old["id"], consumer["buyer"]), 201)["licence"]
        assert second["id"] != first["id"] and second["renews_licence_id"] == old["id"]

    async def test_a_replay_of_the_same_key_answers_the_same_renewal(self, client, circulation, app) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        old = (await licensed(client, circulation, owner, consumer, "L1"))["licence"]
        first = await renew(client, old["id"], consumer["buyer"], key="renew-1")
        again = await renew(client, old["id"], consumer["buyer"], key="renew-1")
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
        assert await renewals_of(app, old["id"]) == [first.json()["licence"]["id"]]

    async def test_concurrent_renewals_leave_one(self, client, circulation, app) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        old = (await licensed(client, circulation, owner, consumer, "L1"))["licence"]
        responses = await asyncio.gather(
            *(renew(client, old["id"], consumer["buyer"], key=f"race-{i}") for i in range(4))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 409, 409, 409], [r.text for r in responses]
        assert {r.json()["code"] for r in responses if r.status_code == 409} <= {"already_renewed", "conflict"}
        assert len(await renewals_of(app, old["id"])) == 1


class TestWho:
    async def test_only_the_consumers_admin_and_buyers(self, client, circulation, actors) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        old = (await licensed(client, circulation, owner, consumer, "L1"))["licence"]
        stranger = await circulation.consumer()
        problem(await renew(client, old["id"], stranger["buyer"]), 404, "not_found")
        problem(await renew(client, old["id"], owner), 403, "forbidden")
        problem(await renew(client, old["id"], actors.operator), 403, "forbidden")
        problem(await renew(client, old["id"], consumer["analyst"]), 403, "forbidden")
        expect(await renew(client, old["id"], consumer["admin"]), 201)


class TestSubscriptions:
    async def test_an_active_subscription_runs_on_a_term_at_a_time(self, client, circulation, app) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        product = await circulation.product(
            owner, "L1", plans=[{"name": "Research (free)", "kind": "free", "currency": "CNY"}, MONTHLY]
        )
        lic = await self.monthly(client, circulation, product, consumer)
        today = db.utcnow().date()
        starts = today - timedelta(days=20)
        await set_licence(app, lic, status="active", starts_on=starts, ends_on=today - timedelta(days=1))

        await licence_sweep.sweep(JobContext(sessions=app.state.sessions, services={}))

        extended = await get_licence(client, lic, owner)
        assert extended["status"] == "active"
        assert extended["ends_on"] == (add_months(starts, 2) - timedelta(days=1)).isoformat()
        async with app.state.sessions() as session:
            actions = (await session.execute(select(AuditEvent.action).where(AuditEvent.subject_id == lic))).scalars()
            assert "licence.extended" in list(actions)

    async def test_a_subscription_is_not_renewed_by_hand(self, client, circulation, app) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        product = await circulation.product(
            owner, "L1", plans=[{"name": "Research (free)", "kind": "free", "currency": "CNY"}, MONTHLY]
        )
        lic = await self.monthly(client, circulation, product, consumer)
        await set_licence(app, lic, status="active")
        problem(await renew(client, lic, consumer["buyer"]), 409, "renewal_not_needed")

    async def test_a_suspended_subscription_expires(self, client, circulation, app) -> None:
        owner, consumer = await circulation.provider(), await circulation.consumer()
        product = await circulation.product(
            owner, "L1", plans=[{"name": "Research (free)", "kind": "free", "currency": "CNY"}, MONTHLY]
        )
        lic = await self.monthly(client, circulation, product, consumer)
        today = db.utcnow().date()
        await set_licence(app, lic, status="active", starts_on=today - timedelta(days=20))
        expect(
            await client.post(f"/v1/licences/{lic}/suspend", json={"reason": "unpaid invoice"}, headers=owner.headers),
            200,
        )
        await set_licence(app, lic, ends_on=today - timedelta(days=1))

        await licence_sweep.sweep(JobContext(sessions=app.state.sessions, services={}))

        assert (await get_licence(client, lic, owner))["status"] == "expired"

    async def monthly(self, client, circulation, product, consumer) -> str:
        """A licence on the product's monthly subscription plan, accepted (awaiting payment)."""
        application = await circulation.apply(product, consumer, plan_id=product["plans"][1]["id"], requested_months=1)
        application = expect(
            await client.post(f"/v1/applications/{application['id']}/submit", headers=consumer["buyer"].headers), 200
        )
        licence = await get_licence(client, application["licence_id"], consumer["buyer"])
        expect(
            await client.post(
                f"/v1/licences/{licence['id']}/accept",
                json={"terms_sha256": licence["terms_sha256"]},
                headers=consumer["buyer"].headers,
            ),
            200,
        )
        return licence["id"]


def test_migration_0015_keeps_licences_and_lets_an_application_hold_several(tmp_path: Path) -> None:
    """SQLite rebuilds ``licences`` (which other tables refer to) to drop its uniqueness; downgrading
    refuses while a licence renews another."""
    path = tmp_path / "old.db"
    config = alembic_config(make_settings(tmp_path, f"sqlite+aiosqlite:///{path}"))
    command.upgrade(config, "0014")
    conn = sqlite3.connect(path)
    for table, values in (
        ("licences", {"id": "lic_1", "application_id": "app_1"}),
        ("licence_parties", {"licence_id": "lic_1", "org_id": "org_1", "role": "consumer"}),
    ):
        columns = conn.execute(f"PRAGMA table_info({table})").fetchall()
        row = {name: values.get(name, "x" if notnull else None) for _, name, _, notnull, *_ in columns}
        conn.execute(
            f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", list(row.values())
        )
    conn.commit()
    conn.close()

    command.upgrade(config, "head")

    conn = sqlite3.connect(path, isolation_level=None)
    columns = [c[1] for c in conn.execute("PRAGMA table_info(licences)")]

    def renewal(licence_id: str) -> str:
        copy = ", ".join(
            f"'{licence_id}'" if c == "id" else "'lic_1'" if c == "renews_licence_id" else c for c in columns
        )
        return f"INSERT INTO licences ({', '.join(columns)}) SELECT {copy} FROM licences WHERE id = 'lic_1'"

    conn.execute(renewal("lic_2"))
    assert conn.execute("SELECT count(*) FROM licences WHERE application_id = 'app_1'").fetchone() == (2,)
    assert conn.execute("SELECT licence_id FROM licence_parties").fetchall() == [("lic_1",)]
    with pytest.raises(sqlite3.IntegrityError):  # a licence is renewed at most once
        conn.execute(renewal("lic_3"))
    conn.close()
    with pytest.raises(RuntimeError, match="renew"):
        command.downgrade(config, "0014")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM licences WHERE id = 'lic_2'")
    conn.close()
    command.downgrade(config, "0014")
    conn = sqlite3.connect(path, isolation_level=None)
    assert conn.execute("SELECT id FROM licences").fetchall() == [("lic_1",)]
    assert "renews_licence_id" not in [c[1] for c in conn.execute("PRAGMA table_info(licences)")]
    conn.close()
