"""Billing end to end on simulated Stripe: checkout, webhooks, the split, transfers, refunds,
disputes, metered usage and statements. Stripe behaviour here is simulated (stripe_simulator/)."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import func, select, update

from billing import meters, repository
from billing.models import LedgerEntry, Payment, WebhookEvent
from catalog.outbox import JobContext
from tests.billing.conftest import MONTHLY, ONE_TIME, checkout, market, pay, record_payment_only
from tests.support import expect, problem

pytestmark = pytest.mark.asyncio


class TestSimulatedCheckout:
    async def test_one_time_checkout_splits_exactly_and_pays_two_transfers(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        owner, partner, consumer, licence, accounts = await market(client, delivery, actors, sim, drain)
        session = expect(
            await client.post(
                f"/v1/licences/{licence['id']}/checkout", json={"method": "card"}, headers=consumer["buyer"].headers
            ),
            200,
        )
        again = expect(
            await client.post(
                f"/v1/licences/{licence['id']}/checkout", json={"method": "card"}, headers=consumer["buyer"].headers
            ),
            200,
        )
        assert again["session_id"] == session["session_id"] and session["amount"] == 3_333_333
        created = [r for r in sim.requests if r.path == "/v1/checkout/sessions" and r.method == "POST"]
        assert len(created) == 1
        assert created[0].params["payment_intent_data"]["transfer_group"] == session["payment_id"]
        assert created[0].params["mode"] == "payment" and created[0].idempotency_key
        await sim.complete_checkout(session["session_id"])
        assert all(h.status_code == 200 for h in hooks)
        await drain()
        active = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert active["status"] == "active"
        payment = expect(await client.get(f"/v1/payments/{session['payment_id']}", headers=owner.headers), 200)
        parts = {(a["party"], a["org_id"]): a["amount"] for a in payment["allocations"]}
        operator_org = actors.operator.org_id
        assert parts == {
            ("tax", None): 0,
            ("operator", operator_org): 499_999,
            ("fund", None): 166_666,
            ("provider", owner.org_id): 1_866_668,
            ("provider", partner.org_id): 800_000,
        }
        assert sorted(
            (t["org_id"], t["amount"], t["status"], t["idempotency_key"]) for t in payment["transfers"]
        ) == sorted(
            [
                (owner.org_id, 1_866_668, "sent", f"split:{payment['id']}:{owner.org_id}"),
                (partner.org_id, 800_000, "sent", f"split:{payment['id']}:{partner.org_id}"),
            ]
        )
        stripe_transfers = sim.objects("transfer")
        assert len(stripe_transfers) == 2
        assert {(t["destination"], t["amount"], t["transfer_group"]) for t in stripe_transfers} == {
            (accounts[owner.org_id], 1_866_668, payment["id"]),
            (accounts[partner.org_id], 800_000, payment["id"]),
        }
        assert all(t["source_transaction"] == sim.objects("charge")[0]["id"] for t in stripe_transfers)
        keys = {r.idempotency_key for r in sim.requests if r.path == "/v1/transfers" and r.method == "POST"}
        assert keys == {f"split:{payment['id']}:{owner.org_id}", f"split:{payment['id']}:{partner.org_id}"}
        async with app.state.sessions() as s:
            assert set(await repository.journal_totals(s)) == {0}  # every journal balances

    async def test_an_invoice_instead_of_a_card(self, client, delivery, actors, sim, hooks, drain) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        sent = expect(
            await client.post(
                f"/v1/licences/{licence['id']}/checkout", json={"method": "invoice"}, headers=consumer["buyer"].headers
            ),
            200,
        )
        invoice = sim.objects("invoice")[0]
        assert invoice["collection_method"] == "send_invoice" and invoice["amount_due"] == 3_333_333
        await sim.pay_invoice(invoice["id"])
        await drain()
        payment = expect(await client.get(f"/v1/payments/{sent['payment_id']}", headers=consumer["buyer"].headers), 200)
        assert payment["status"] == "paid" and payment["source"] == "invoice"
        licence = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert licence["status"] == "active"

    async def test_without_stripe_a_priced_checkout_is_billing_not_configured(self, client, delivery, app) -> None:
        app.state.services["gateway"] = None
        owner = await delivery.provider()
        product = await delivery.published(owner, "L2", plans=[ONE_TIME])
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        problem(
            await client.post(f"/v1/licences/{licence['id']}/checkout", json={}, headers=consumer["buyer"].headers),
            503,
            "billing_not_configured",
        )


class TestSimulatedWebhooks:
    async def test_the_same_event_three_times_is_processed_once(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        completed = next(e for e in sim.events if e["type"] == "checkout.session.completed")
        await sim.redeliver(completed["id"])
        await sim.redeliver(completed["id"])
        assert [h.json()["duplicate"] for h in hooks if completed["id"] in str(h.request.content[:200])][-2:] == [
            True,
            True,
        ]
        await drain()
        async with app.state.sessions() as s:
            payments = (await s.execute(select(func.count()).select_from(Payment))).scalar_one()
            charges = (
                await s.execute(
                    select(func.count(func.distinct(LedgerEntry.journal_id))).where(LedgerEntry.kind == "charge")
                )
            ).scalar_one()
        assert payments == 1 and charges == 1
        assert payment["status"] == "paid"

    async def test_events_out_of_order_are_processed_once_each(self, client, delivery, actors, sim, drain, app) -> None:
        plans = [MONTHLY]
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain, plans=plans)
        held: list[tuple[bytes, dict]] = []

        async def keep(payload: bytes, headers: dict) -> None:
            held.append((payload, headers))

        sim.webhook_sink = keep
        session = await checkout(client, consumer, licence)
        await sim.complete_checkout(session["session_id"])
        types = [json.loads(p)["type"] for p, _ in held]
        # Stripe sends invoice.paid before checkout.session.completed, which tells us the subscription:
        assert types.index("invoice.paid") < types.index("checkout.session.completed")
        for payload, headers in held + held[::-1]:  # as sent, then every event again backwards
            assert (await client.post("/v1/webhooks/stripe", content=payload, headers=headers)).status_code == 200
        await drain()
        licence = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert licence["status"] == "active"
        async with app.state.sessions() as s:
            unprocessed = (
                await s.execute(
                    select(func.count()).select_from(WebhookEvent).where(WebhookEvent.processed_at.is_(None))
                )
            ).scalar_one()
            payments = (await s.execute(select(Payment))).scalars().all()
        assert unprocessed == 0 and len(payments) == 1 and payments[0].amount == 80_000

    async def test_tampered_or_stale_signatures_are_400_and_record_nothing(self, client, sim, app) -> None:
        event = json.dumps({"id": "evt_forged", "type": "checkout.session.completed", "data": {"object": {}}}).encode()
        cases = [
            {"Stripe-Signature": sim.sign(event + b" ")},  # signed other bytes
            {"Stripe-Signature": sim.sign(event, timestamp=int(time.time()) - 301)},  # stale
            {"Stripe-Signature": sim.sign(event, secret="whsec_someone_else")},
            {},
        ]
        for headers in cases:
            problem(await client.post("/v1/webhooks/stripe", content=event, headers=headers), 400, "invalid_signature")
        async with app.state.sessions() as s:
            assert (await s.execute(select(func.count()).select_from(WebhookEvent))).scalar_one() == 0
        ok = await client.post("/v1/webhooks/stripe", content=event, headers={"Stripe-Signature": sim.sign(event)})
        assert ok.status_code == 200


class TestSimulatedTransfers:
    @pytest.mark.parametrize("failure", ["rate_limit", "server_error", "lock_timeout", "connection_reset"])
    async def test_injected_failures_are_retried_to_exactly_one_transfer_each(
        self, client, delivery, actors, sim, hooks, drain, failure
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        sim.fail_next("POST", "/v1/transfers", failure, times=2)
        payment = await pay(client, sim, drain, consumer, licence)
        assert sorted(t["status"] for t in payment["transfers"]) == ["sent", "sent"]
        assert len(sim.objects("transfer")) == 2

    async def test_a_crash_after_recording_the_payment_loses_nothing(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        from catalog import outbox

        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        session = await checkout(client, consumer, licence)
        await sim.complete_checkout(session["session_id"])
        # The worker records the payment, then dies holding the transfer events' leases:
        await record_payment_only(app)
        claimed = await outbox.claim(app.state.sessions)  # by the dying worker, never delivered
        assert sorted(e.name for e in claimed) == ["payment.fee", "transfer.send", "transfer.send"]
        assert sim.objects("transfer") == []
        await drain()  # after restart (leases reset by drain)
        payment = expect(
            await client.get(f"/v1/payments/{session['payment_id']}", headers=consumer["buyer"].headers), 200
        )
        assert sorted(t["status"] for t in payment["transfers"]) == ["sent", "sent"]
        assert len(sim.objects("transfer")) == 2

    async def test_a_provider_without_an_active_account_accrues_outstanding(
        self, client, delivery, actors, sim, hooks, drain
    ) -> None:
        owner, partner, consumer, licence, accounts = await market(
            client, delivery, actors, sim, drain, active_accounts=False
        )
        payment = await pay(client, sim, drain, consumer, licence)
        assert {t["status"] for t in payment["transfers"]} == {"outstanding"}
        await sim.activate_account(accounts[partner.org_id])
        await drain()
        payment = expect(await client.get(f"/v1/payments/{payment['id']}", headers=owner.headers), 200)
        assert {t["org_id"]: t["status"] for t in payment["transfers"]} == {
            owner.org_id: "outstanding",
            partner.org_id: "sent",
        }


class TestSimulatedRefundsAndDisputes:
    async def test_a_partial_refund_reverses_in_proportion(self, client, delivery, actors, sim, hooks, drain) -> None:
        owner, partner, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        finance = await actors.member(actors.operator.org_id, ["finance"])
        problem(
            await client.post(
                f"/v1/payments/{payment['id']}/refunds",
                json={"amount": 1, "reason": "x"},
                headers=consumer["buyer"].headers,
            ),
            403,
            "forbidden",
        )
        refunded = expect(
            await client.post(
                f"/v1/payments/{payment['id']}/refunds",
                json={"amount": 1_000_000, "reason": "partial delivery"},
                headers=finance.headers,
            ),
            201,
        )
        assert [(r["status"], r["amount"]) for r in refunded["refunds"]] == [("pending", 1_000_000)]
        assert sim.objects("refund") == []  # nothing leaves Lode before the request's transaction commits
        problem(  # what a pending refund holds is not left to refund
            await client.post(
                f"/v1/payments/{payment['id']}/refunds",
                json={"amount": 2_333_334, "reason": "x"},
                headers=finance.headers,
            ),
            409,
            "refund_exceeds_remaining",
        )
        await drain()  # the refund goes to Stripe, is booked, and queues the transfer reversals
        again = expect(await client.get(f"/v1/payments/{payment['id']}", headers=finance.headers), 200)
        assert again["refunded"] == 1_000_000 and [r["status"] for r in again["refunds"]] == ["succeeded"]
        parts = again["refunds"][0]["parts"]
        assert sum(parts.values()) == 1_000_000
        original = {"tax": 0, "operator": 499_999, "fund": 166_666, owner.org_id: 1_866_668, partner.org_id: 800_000}
        for part, share in parts.items():  # each within one unit of its exact proportional share
            assert abs(share - original[part] * 1_000_000 / 3_333_333) < 1, (part, share)
        reversals = sorted(int(r.params["amount"]) for r in sim.requests if "/reversals" in r.path)
        assert reversals == sorted([parts[owner.org_id], parts[partner.org_id]])
        assert sorted(t["reversed"] for t in again["transfers"]) == sorted(reversals)
        await sim.deliver_pending()  # charge.refunded for our own refund: already booked
        await drain()
        again = expect(await client.get(f"/v1/payments/{payment['id']}", headers=finance.headers), 200)
        assert again["refunded"] == 1_000_000 and len(again["refunds"]) == 1
        assert (
            expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)["status"]
            == "active"
        )

    async def test_a_full_refund_revokes_the_licence(self, client, delivery, actors, sim, hooks, drain) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        done = expect(
            await client.post(
                f"/v1/payments/{payment['id']}/refunds", json={"reason": "cancelled"}, headers=actors.operator.headers
            ),
            201,
        )
        assert done["refunds"][0]["status"] == "pending"
        await drain()
        done = expect(await client.get(f"/v1/payments/{payment['id']}", headers=actors.operator.headers), 200)
        assert done["status"] == "refunded" and done["refunded"] == 3_333_333
        assert sum(t["reversed"] for t in done["transfers"]) == 1_866_668 + 800_000
        assert (
            expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)["status"]
            == "revoked"
        )

    async def test_a_dispute_reverses_like_a_refund(self, client, delivery, actors, sim, hooks, drain) -> None:
        owner, partner, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        charge = sim.objects("charge")[0]["id"]
        await sim.create_dispute(charge, 333_333)
        await drain()
        disputed = expect(await client.get(f"/v1/payments/{payment['id']}", headers=owner.headers), 200)
        assert disputed["disputed"] == 333_333 and disputed["refunds"][0]["kind"] == "dispute"
        parts = disputed["refunds"][0]["parts"]
        assert sum(parts.values()) == 333_333
        # Each hospital's share of the dispute is pulled back from its transfer, once.
        assert {t["org_id"]: t["reversed"] for t in disputed["transfers"]} == {
            org: parts[org] for org in (owner.org_id, partner.org_id)
        }
        assert sum(r["amount"] for t in sim.objects("transfer") for r in t["reversals"]["data"]) == (
            parts[owner.org_id] + parts[partner.org_id]
        )


class TestSimulatedMeters:
    async def test_usage_becomes_meter_events_with_stable_identifiers_once_each(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        plans = [
            {
                "name": "Pay per use",
                "kind": "metered",
                "currency": "CNY",
                "interval": "month",
                "unit_prices": {"rows_returned": 20},
                "units": {"rows_returned": 1000},
                "included": {"rows_returned": 2000},
            }
        ]
        owner, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain, plans=plans)
        session = await checkout(client, consumer, licence)
        await sim.complete_checkout(session["session_id"])
        await drain()
        from datetime import UTC, datetime, timedelta

        from billing.models import Subscription
        from catalog import db
        from catalog.access.models import Licence

        hour = (datetime.now(UTC) - timedelta(hours=2)).replace(minute=5, second=0, microsecond=0)
        async with db.write_transaction(app.state.sessions) as session:  # term and period began days ago
            await session.execute(
                update(Licence).where(Licence.id == licence["id"]).values(starts_on=hour.date() - timedelta(days=3))
            )
            await session.execute(
                update(Subscription)
                .where(Subscription.licence_id == licence["id"])
                .values(period_anchor=hour.date() - timedelta(days=3))
            )
        events = [
            {
                "idempotency_key": f"u{i}",
                "licence_id": licence["id"],
                "dimension": "rows_returned",
                "quantity": 1500,
                "occurred_at": hour.isoformat(),
            }
            for i in range(3)
        ]
        expect(await client.post("/v1/usage-events", json={"events": events}, headers=owner.headers), 200)
        await drain()
        metered = sim.objects("billing.meter_event")
        assert len(metered) == 1 and metered[0]["payload"]["value"] == "3"  # ceil((4500 − 2000) / 1000)
        identifier = metered[0]["identifier"]
        assert identifier.startswith(f"lode:{licence['id']}:rows_returned:")
        expect(await client.post("/v1/usage-events", json={"events": events}, headers=owner.headers), 200)
        await meters.report_due(JobContext(sessions=app.state.sessions, services=app.state.services))
        await drain()
        assert len(sim.objects("billing.meter_event")) == 1  # the same usage and the hourly run: nothing new
        more = [{**events[0], "idempotency_key": "u9", "quantity": 1000}]
        expect(await client.post("/v1/usage-events", json={"events": more}, headers=owner.headers), 200)
        await drain()
        values = [(m["identifier"], m["payload"]["value"]) for m in sim.objects("billing.meter_event")]
        assert len(values) == 2 and values[1][1] == "1" and values[0][0] != values[1][0]


class TestStatements:
    async def test_statements_match_the_ledger_and_are_private(
        self, client, delivery, actors, sim, hooks, drain
    ) -> None:
        owner, partner, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        refunded = expect(
            await client.post(
                f"/v1/payments/{payment['id']}/refunds",
                json={"amount": 1_000_000, "reason": "x"},
                headers=actors.operator.headers,
            ),
            201,
        )
        assert refunded["refunds"][0]["status"] == "pending"
        await drain()
        payment = expect(await client.get(f"/v1/payments/{payment['id']}", headers=actors.operator.headers), 200)
        back = payment["refunds"][0]["parts"]
        period = payment["paid_at"][:7]
        mine = expect(
            await client.get(f"/v1/orgs/{owner.org_id}/statement?period={period}", headers=owner.headers), 200
        )
        line = mine["lines"][0]
        assert (line["gross"], line["refunds_and_reversals"]) == (1_866_668, back[owner.org_id])
        assert line["net"] == line["transferred"] == 1_866_668 - back[owner.org_id] and line["outstanding"] == 0
        operator = expect(
            await client.get(
                f"/v1/orgs/{actors.operator.org_id}/statement?period={period}", headers=actors.operator.headers
            ),
            200,
        )["lines"][0]
        assert (operator["operator_fees"], operator["fund"], operator["tax"]) == (
            499_999 - back["operator"],
            166_666 - back["fund"],
            0,
        )
        # Simulated Stripe charges 2.9 % + 30 fen; the fee comes out of the operator's part.
        assert operator["processing_fees"] == payment["fee"] == 3_333_333 * 290 // 10_000 + 30
        spent = expect(
            await client.get(
                f"/v1/orgs/{consumer['admin'].org_id}/statement?period={period}", headers=consumer["admin"].headers
            ),
            200,
        )["lines"][0]
        assert (spent["paid"], spent["refunds_and_reversals"]) == (3_333_333, 1_000_000)
        problem(
            await client.get(f"/v1/orgs/{owner.org_id}/statement?period={period}", headers=partner.headers),
            404,
            "not_found",  # another tenant: as for an organisation that does not exist
        )
        problem(
            await client.get(f"/v1/orgs/{owner.org_id}/statement?period=2025-13", headers=owner.headers),
            400,
            "validation_error",
        )
