"""Money under failure and out of the ordinary, on simulated Stripe (stripe_simulator/): refunds
that race payouts, refusals, won disputes, abandoned checkouts, late payments, unpaid invoices,
cancelled subscriptions, late usage — never lost, never doubled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from billing import meters
from billing import repository as repo
from billing.models import Checkout, LedgerEntry, Subscription, Transfer, TransferReversal, WebhookEvent
from catalog import db, outbox
from catalog.access.models import Licence
from tests.billing.conftest import MONTHLY, checkout, market, pay, record_payment_only
from tests.support import expect, problem

pytestmark = pytest.mark.asyncio

SHARES = {"owner": 1_866_668, "partner": 800_000}


async def refund(client, actors, payment_id: str, amount: int | None = None) -> dict:
    body = {"reason": "test"} | ({"amount": amount} if amount is not None else {})
    return expect(
        await client.post(f"/v1/payments/{payment_id}/refunds", json=body, headers=actors.operator.headers), 201
    )


async def payment_of(client, actors, payment_id: str) -> dict:
    return expect(await client.get(f"/v1/payments/{payment_id}", headers=actors.operator.headers), 200)


async def ledger_balances(app) -> None:
    async with app.state.sessions() as s:
        sums = (await s.execute(select(LedgerEntry.journal_id, LedgerEntry.amount))).all()
    journals: dict[str, int] = {}
    for journal, amount in sums:
        journals[journal] = journals.get(journal, 0) + amount
    assert journals and set(journals.values()) == {0}


class TestRefundsRacingPayouts:
    async def test_a_payout_in_flight_is_sent_whole_then_reversed_once(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        owner, partner, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        session = await checkout(client, consumer, licence)
        await sim.complete_checkout(session["session_id"])
        await record_payment_only(app)
        async with db.write_transaction(app.state.sessions) as s:  # a first attempt whose fate is unknown
            await s.execute(update(Transfer).values(attempts=1, first_attempt_at=db.utcnow()))
        held = await refund(client, actors, session["payment_id"], 1_000_000)
        assert held["refunds"][0]["status"] == "pending"
        await drain()
        paid = await payment_of(client, actors, session["payment_id"])
        parts = paid["refunds"][0]["parts"]
        sent = sorted(t["amount"] for t in sim.objects("transfer"))
        assert sent == sorted(SHARES.values())  # the payouts left whole: their amounts were never cut
        reversals = sorted(int(r.params["amount"]) for r in sim.requests if r.path.endswith("/reversals"))
        assert reversals == sorted([parts[owner.org_id], parts[partner.org_id]])
        assert {t["org_id"]: t["reversed"] for t in paid["transfers"]} == {
            owner.org_id: parts[owner.org_id],
            partner.org_id: parts[partner.org_id],
        }
        await drain()  # nothing is left to do twice
        assert len([r for r in sim.requests if r.path.endswith("/reversals")]) == 2
        await ledger_balances(app)

    async def test_a_payout_never_attempted_is_cut_instead(self, client, delivery, actors, sim, hooks, drain) -> None:
        owner, partner, consumer, licence, accounts = await market(
            client, delivery, actors, sim, drain, active_accounts=False
        )
        payment = await pay(client, sim, drain, consumer, licence)
        refund_made = await refund(client, actors, payment["id"], 1_000_000)
        assert refund_made["refunds"][0]["status"] == "pending"
        await drain()
        paid = await payment_of(client, actors, payment["id"])
        parts = paid["refunds"][0]["parts"]
        for hospital in (owner, partner):
            await sim.activate_account(accounts[hospital.org_id])
        await drain()
        sent = {t["destination"]: t["amount"] for t in sim.objects("transfer")}
        assert sent == {
            accounts[owner.org_id]: SHARES["owner"] - parts[owner.org_id],
            accounts[partner.org_id]: SHARES["partner"] - parts[partner.org_id],
        }
        assert not [r for r in sim.requests if r.path.endswith("/reversals")]

    async def test_a_refund_stripe_refuses_frees_what_it_held(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        sim.fail_next("POST", "/v1/refunds", "card_declined")
        await refund(client, actors, payment["id"], 1_000_000)
        await drain()
        failed = await payment_of(client, actors, payment["id"])
        assert [r["status"] for r in failed["refunds"]] == ["failed"] and failed["refunded"] == 0
        assert failed["status"] == "paid"
        await refund(client, actors, payment["id"])  # all of it is still there to refund
        await drain()
        whole = await payment_of(client, actors, payment["id"])
        assert whole["refunded"] == 3_333_333 and whole["status"] == "refunded"
        await ledger_balances(app)

    async def test_a_reversal_stripe_refuses_becomes_a_receivable(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        owner, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        sim.fail_next("POST", "/v1/transfers/", "card_declined", times=2)  # the reversals, not new transfers
        await refund(client, actors, payment["id"], 1_000_000)
        await drain()
        paid = await payment_of(client, actors, payment["id"])
        share = paid["refunds"][0]["parts"][owner.org_id]
        assert all(t["reversed"] == 0 for t in paid["transfers"])
        async with app.state.sessions() as s:
            statuses = (await s.execute(select(TransferReversal.status))).scalars().all()
        assert sorted(statuses) == ["receivable", "receivable"]
        period = paid["paid_at"][:7]
        line = expect(
            await client.get(f"/v1/orgs/{owner.org_id}/statement?period={period}", headers=owner.headers), 200
        )["lines"][0]
        assert line["receivable"] == share
        await ledger_balances(app)


class TestDisputes:
    async def test_a_won_dispute_pays_again_under_new_keys_and_a_later_refund_takes_all_back(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        owner, partner, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        dispute = await sim.create_dispute(sim.objects("charge")[0]["id"], 1_000_000)
        await drain()
        await sim.close_dispute(dispute["id"], "won")
        await drain()
        restored = await payment_of(client, actors, payment["id"])
        assert restored["disputed"] == 0 and restored["status"] == "paid"
        keys = [t["idempotency_key"] for t in restored["transfers"]]
        assert len(keys) == len(set(keys)) == 4 and len(sim.objects("transfer")) == 4
        stripe_keys = {t["metadata"]["lode_transfer_key"] for t in sim.objects("transfer")}
        assert stripe_keys == set(keys)
        # The splits were paid out of the charge; the re-payments out of the balance, as the
        # charge's own funds went back with the dispute.
        charge = sim.objects("charge")[0]["id"]
        sources = {t["metadata"]["lode_transfer_key"]: t.get("source_transaction") for t in sim.objects("transfer")}
        assert sources == {key: charge if key.count(":") == 2 else None for key in keys}
        async with app.state.sessions() as s:
            stored = dict((await s.execute(select(Transfer.key, Transfer.source_charge_id))).all())
        assert stored == sources
        await refund(client, actors, payment["id"])
        await drain()
        gone = await payment_of(client, actors, payment["id"])
        assert gone["status"] == "refunded"
        paid_out: dict[str, int] = {}
        for t in gone["transfers"]:
            paid_out[t["org_id"]] = paid_out.get(t["org_id"], 0) + t["amount"] - t["reversed"]
        assert paid_out == {owner.org_id: 0, partner.org_id: 0}
        await ledger_balances(app)


class TestPayoutRetries:
    async def test_an_attempt_older_than_23_hours_adopts_the_transfer_stripe_has(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        first = {t["id"]: t["stripe_transfer_id"] for t in payment["transfers"]}
        # As if the worker died after Stripe made the transfers, and came back a day later:
        async with db.write_transaction(app.state.sessions) as s:
            await s.execute(
                update(Transfer).values(status="pending", first_attempt_at=db.utcnow() - timedelta(hours=24))
            )
            for transfer_id in first:
                outbox.emit(s, "transfer.send", {"transfer_id": transfer_id}, dedupe_key=f"again:{transfer_id}")
        created_before = len([r for r in sim.requests if r.method == "POST" and r.path == "/v1/transfers"])
        await drain()
        created_after = len([r for r in sim.requests if r.method == "POST" and r.path == "/v1/transfers"])
        assert created_after == created_before  # looked up, not sent again
        assert any(r.method == "GET" and r.path == "/v1/transfers" for r in sim.requests)
        again = await payment_of(client, actors, payment["id"])
        assert {t["id"]: t["stripe_transfer_id"] for t in again["transfers"]} == first


class TestCheckoutLifecycle:
    async def test_an_expired_session_is_replaced_and_its_payment_expires(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        path = f"/v1/licences/{licence['id']}/checkout"
        first = expect(await client.post(path, json={}, headers=consumer["buyer"].headers), 200)
        await sim.client().v1.checkout.sessions.expire_async(first["session_id"])  # Stripe says so
        await sim.deliver_pending()
        await drain()
        second = expect(await client.post(path, json={}, headers=consumer["buyer"].headers), 200)
        assert second["session_id"] != first["session_id"]
        async with db.write_transaction(app.state.sessions) as s:  # and one whose time ran out, unannounced
            await s.execute(
                update(Checkout)
                .where(Checkout.session_id == second["session_id"])
                .values(expires_at=db.utcnow() - timedelta(seconds=1))
            )
        third = expect(await client.post(path, json={}, headers=consumer["buyer"].headers), 200)
        assert third["session_id"] not in (first["session_id"], second["session_id"])
        async with app.state.sessions() as s:
            statuses = dict((await s.execute(select(Checkout.session_id, Checkout.status))).all())
            first_payment = await repo.payment(s, first["payment_id"])
        assert statuses == {
            first["session_id"]: "expired",
            second["session_id"]: "expired",
            third["session_id"]: "open",
        }
        assert first_payment is not None and first_payment.status == "expired"
        await sim.complete_checkout(third["session_id"])
        await drain()
        active = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert active["status"] == "active"

    async def test_money_for_a_licence_that_ended_meanwhile_goes_back(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        session = await checkout(client, consumer, licence)
        async with db.write_transaction(app.state.sessions) as s:  # unpaid for 30 days: the sweep cancelled it
            await s.execute(update(Licence).where(Licence.id == licence["id"]).values(status="cancelled"))
        await sim.complete_checkout(session["session_id"])
        await drain()
        payment = await payment_of(client, actors, session["payment_id"])
        assert payment["status"] == "refunded" and payment["refunded"] == 3_333_333
        assert "cancelled" in payment["refunds"][0]["reason"]
        assert sim.objects("refund")[0]["amount"] == 3_333_333
        await ledger_balances(app)


class TestInvoicesAndSubscriptions:
    async def test_an_unpaid_invoice_holds_the_licence_after_the_grace_period_until_paid(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        sent = expect(
            await client.post(
                f"/v1/licences/{licence['id']}/checkout", json={"method": "invoice"}, headers=consumer["buyer"].headers
            ),
            200,
        )
        invoice_id = sim.objects("invoice")[0]["id"]
        await sim.fail_invoice(invoice_id)
        for _ in range(5):  # what is due now: the failure is recorded, the hold waits for its day
            await record_payment_only(app)
        waiting = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert waiting["holds"] == []
        async with app.state.sessions() as s:
            grace = (
                await s.execute(select(outbox.OutboxEvent).where(outbox.OutboxEvent.name == "billing.grace_elapsed"))
            ).scalar_one()
        assert timedelta(days=6, hours=23) < grace.available_at - db.utcnow() <= timedelta(days=7)
        await drain()  # the grace period passes instantly here
        held = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert "non_payment" in [h["kind"] for h in held["holds"]]
        await sim.pay_invoice(invoice_id)
        await drain()
        paid = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert paid["status"] == "active" and paid["holds"] == []
        assert (await payment_of(client, actors, sent["payment_id"]))["status"] == "paid"

    async def test_a_deleted_subscription_ends_the_licence(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        plans = [MONTHLY]
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain, plans=plans)
        session = await checkout(client, consumer, licence)
        await sim.complete_checkout(session["session_id"])
        await drain()
        async with app.state.sessions() as s:
            subscription = (await s.execute(select(Subscription))).scalar_one()
        await sim.client().v1.subscriptions.cancel_async(subscription.subscription_id)
        await sim.deliver_pending()
        await drain()
        ended = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert ended["status"] == "revoked"

    async def test_usage_too_old_to_meter_is_invoiced_with_its_tax(
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
                "included": {},
                "tax_bps": 600,
            }
        ]
        owner, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain, plans=plans)
        session = await checkout(client, consumer, licence)
        await sim.complete_checkout(session["session_id"])
        await drain()
        began = datetime.now(UTC).date() - timedelta(days=75)
        async with db.write_transaction(app.state.sessions) as s:  # the term began 75 days ago
            await s.execute(update(Licence).where(Licence.id == licence["id"]).values(starts_on=began))
            await s.execute(update(Subscription).values(period_anchor=began))
        late = datetime.combine(began + timedelta(days=2), datetime.min.time(), tzinfo=UTC)
        events = [
            {
                "idempotency_key": "late-1",
                "licence_id": licence["id"],
                "dimension": "rows_returned",
                "quantity": 2500,
                "occurred_at": late.isoformat(),
            }
        ]
        expect(await client.post("/v1/usage-events", json={"events": events}, headers=owner.headers), 200)
        await drain()
        await meters.report_due(outbox.JobContext(sessions=app.state.sessions, services=app.state.services))
        await drain()
        items = sim.objects("invoiceitem")
        assert [i["amount"] for i in items] == [3 * (20 + 20 * 600 // 10_000)]  # 3 units, 6 % tax included
        assert sim.objects("billing.meter_event") == []


class TestReading:
    async def test_payments_are_for_their_parties_only(self, client, delivery, actors, sim, hooks, drain) -> None:
        owner, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        stranger = await delivery.consumer()
        problem(await client.get(f"/v1/payments/{payment['id']}", headers=stranger["buyer"].headers), 404, "not_found")
        assert expect(await client.get("/v1/payments", headers=stranger["buyer"].headers), 200)["items"] == []
        mine = expect(await client.get("/v1/payments", headers=owner.headers), 200)["items"]
        assert [p["id"] for p in mine] == [payment["id"]]
        for period in ("9999-12", "1999-12", "2025-00"):
            problem(
                await client.get(f"/v1/orgs/{owner.org_id}/statement?period={period}", headers=owner.headers),
                400,
                "validation_error",
            )


class TestMeterReports:
    async def test_a_worker_holding_a_stale_figure_reports_nothing(
        self, client, delivery, actors, sim, drain, app
    ) -> None:
        _, _, _, licence, _ = await market(client, delivery, actors, sim, drain)
        period = datetime.now(UTC).date()
        async with db.write_transaction(app.state.sessions) as s:
            assert await repo.advance_reported(s, licence["id"], "rows_returned", period, 0, 3)
        async with db.write_transaction(app.state.sessions) as s:  # a second worker read 0 before the first wrote
            assert not await repo.advance_reported(s, licence["id"], "rows_returned", period, 0, 3)
            assert await repo.advance_reported(s, licence["id"], "rows_returned", period, 3, 5)


class TestPaidAtTheLastMoment:
    """A session must never be replaced while Stripe may still take (or has taken) its money."""

    async def test_a_session_paid_as_its_time_ran_out_is_not_replaced(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        first = await checkout(client, consumer, licence)
        await sim.complete_checkout(first["session_id"])  # paid; the webhook is not processed yet
        async with db.write_transaction(app.state.sessions) as s:  # and our clock says it ran out
            await s.execute(update(Checkout).values(expires_at=db.utcnow() - timedelta(seconds=1)))
        path = f"/v1/licences/{licence['id']}/checkout"
        problem(await client.post(path, json={}, headers=consumer["buyer"].headers), 409, "payment_processing")
        await drain()
        paid = await payment_of(client, actors, first["payment_id"])
        assert paid["status"] == "paid" and paid["refunds"] == []
        assert len(sim.objects("checkout.session")) == 1 and len(sim.objects("charge")) == 1
        active = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert active["status"] == "active"

    async def test_an_unannounced_expiry_is_closed_at_stripe_before_a_new_session(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        first = await checkout(client, consumer, licence)
        async with db.write_transaction(app.state.sessions) as s:
            await s.execute(update(Checkout).values(expires_at=db.utcnow() - timedelta(seconds=1)))
        second = await checkout(client, consumer, licence)
        assert second["session_id"] != first["session_id"]
        assert sim.state.get("checkout.session", first["session_id"])["status"] == "expired"
        with pytest.raises(Exception, match="expired"):  # so the buyer can no longer pay the old one
            await sim.complete_checkout(first["session_id"])

    async def test_a_clearing_bank_debit_blocks_a_new_session_until_it_clears(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        first = await checkout(client, consumer, licence)
        await sim.complete_checkout(first["session_id"], async_payment=True, clears=None)
        await drain()
        path = f"/v1/licences/{licence['id']}/checkout"
        problem(await client.post(path, json={}, headers=consumer["buyer"].headers), 409, "payment_processing")
        await sim.clear_async_payment(first["session_id"])
        await drain()
        assert (await payment_of(client, actors, first["payment_id"]))["status"] == "paid"
        active = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert active["status"] == "active"

    async def test_a_failed_bank_debit_frees_a_new_session(self, client, delivery, actors, sim, hooks, drain) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        first = await checkout(client, consumer, licence)
        await sim.complete_checkout(first["session_id"], async_payment=True, clears=False)
        await drain()
        assert (await payment_of(client, actors, first["payment_id"]))["status"] == "failed"
        second = await checkout(client, consumer, licence)
        assert second["session_id"] != first["session_id"] and second["status"] == "open"

    async def test_a_payment_we_gave_up_on_is_booked_and_a_second_one_refunded(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        """Defence in depth: if our record of a session was closed while Stripe kept it open (as an
        older release did), its money is still booked, and a second payment for the licence goes back."""
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        first = await checkout(client, consumer, licence)
        async with db.write_transaction(app.state.sessions) as s:  # closed here only, not at Stripe
            row = await repo.checkout_by_session(s, first["session_id"])
            from billing.webhooks import expire_checkout

            await expire_checkout(s, row)
        second = await checkout(client, consumer, licence)
        await sim.complete_checkout(first["session_id"])
        await sim.complete_checkout(second["session_id"])
        await drain()
        one = await payment_of(client, actors, first["payment_id"])
        two = await payment_of(client, actors, second["payment_id"])
        assert one["status"] == "paid" and one["refunds"] == []
        assert two["status"] == "refunded" and "already paid" in two["refunds"][0]["reason"]
        assert sum(r["amount"] for r in sim.objects("refund")) == two["amount"]
        await ledger_balances(app)


class TestWonDisputeAfterARefusedReversal:
    async def test_the_providers_debt_is_offset_not_paid_again(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        owner, partner, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        sim.fail_next("POST", "/v1/transfers/", "card_declined", times=2)  # both reversals refused
        dispute = await sim.create_dispute(sim.objects("charge")[0]["id"], 1_000_000)
        await drain()
        async with app.state.sessions() as s:
            assert sorted((await s.execute(select(TransferReversal.status))).scalars()) == ["receivable"] * 2
        await sim.close_dispute(dispute["id"], "won")
        await drain()
        restored = await payment_of(client, actors, payment["id"])
        assert restored["status"] == "paid" and len(restored["transfers"]) == 2  # nothing paid twice
        assert len(sim.objects("transfer")) == 2
        received = {t["org_id"]: t["amount"] - t["reversed"] for t in restored["transfers"]}
        assert received == {owner.org_id: SHARES["owner"], partner.org_id: SHARES["partner"]}
        async with app.state.sessions() as s:
            assert sorted((await s.execute(select(TransferReversal.status))).scalars()) == ["offset"] * 2
        period = restored["paid_at"][:7]
        for hospital in (owner, partner):
            line = expect(
                await client.get(f"/v1/orgs/{hospital.org_id}/statement?period={period}", headers=hospital.headers),
                200,
            )["lines"][0]
            assert line["receivable"] == 0
        await ledger_balances(app)


class TestOddWebhooks:
    async def test_every_active_account_update_releases_what_is_outstanding(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        owner, _, consumer, licence, accounts = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        # The race's outcome: the account is active, yet a transfer was left outstanding.
        async with db.write_transaction(app.state.sessions) as s:
            await s.execute(update(Transfer).where(Transfer.org_id == owner.org_id).values(status="outstanding"))
        await sim.activate_account(accounts[owner.org_id])  # already active: Stripe says so again
        await drain()
        again = await payment_of(client, actors, payment["id"])
        assert {t["status"] for t in again["transfers"]} == {"sent"}

    async def test_a_signed_event_without_an_object_is_set_aside_not_retried(
        self, client, sim, hooks, drain, app
    ) -> None:
        event = b'{"id": "evt_hollow", "type": "checkout.session.completed", "data": {}}'
        answer = await client.post("/v1/webhooks/stripe", content=event, headers={"Stripe-Signature": sim.sign(event)})
        assert answer.status_code == 200
        await drain()
        async with app.state.sessions() as s:
            row = (await s.execute(select(WebhookEvent))).scalar_one()
            parked = (await s.execute(select(outbox.OutboxEvent).where(outbox.OutboxEvent.status != "delivered"))).all()
        assert row.processed_at is not None and row.outcome.startswith("malformed")
        assert parked == []

    async def test_a_subscription_checkout_names_no_payment(self, client, delivery, actors, sim, hooks, drain) -> None:
        plans = [MONTHLY]
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain, plans=plans)
        opened = await checkout(client, consumer, licence)
        assert opened["payment_id"] is None and opened["amount"] == 80_000


class TestSubscriptionsFollowTheLicence:
    async def test_a_suspended_licence_pauses_collection_reinstating_resumes_revoking_cancels(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        plans = [MONTHLY]
        owner, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain, plans=plans)
        session = await checkout(client, consumer, licence)
        await sim.complete_checkout(session["session_id"])
        await drain()
        (stripe_sub,) = sim.objects("subscription")
        path = f"/v1/licences/{licence['id']}"
        expect(await client.post(f"{path}/suspend", json={"reason": "late report"}, headers=owner.headers), 200)
        await drain()
        assert sim.state.get("subscription", stripe_sub["id"])["pause_collection"]["behavior"] == "void"
        expect(await client.post(f"{path}/reinstate", json={"reason": "filed"}, headers=owner.headers), 200)
        await drain()
        assert sim.state.get("subscription", stripe_sub["id"])["pause_collection"] is None
        expect(await client.post(f"{path}/revoke", json={"reason": "misuse"}, headers=owner.headers), 200)
        await drain()
        assert sim.state.get("subscription", stripe_sub["id"])["status"] == "canceled"
        async with app.state.sessions() as s:
            assert (await s.execute(select(Subscription.status))).scalar_one() == "canceled"


class TestRefundsMadeAtStripe:
    async def test_a_refund_made_in_stripes_dashboard_is_booked_and_reversed_in_proportion(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        owner, partner, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        payment = await pay(client, sim, drain, consumer, licence)
        charge = sim.objects("charge")[0]["id"]
        await sim.client().v1.refunds.create_async({"charge": charge, "amount": 1_000_000})  # not through Lode
        await sim.deliver_pending()
        await drain()
        booked = await payment_of(client, actors, payment["id"])
        assert booked["refunded"] == 1_000_000 and booked["status"] == "partially_refunded"
        (made,) = booked["refunds"]
        assert made["status"] == "succeeded" and sum(made["parts"].values()) == 1_000_000
        reversed_ = {t["org_id"]: t["reversed"] for t in booked["transfers"]}
        assert reversed_ == {owner.org_id: made["parts"][owner.org_id], partner.org_id: made["parts"][partner.org_id]}
        assert len(sim.objects("refund")) == 1  # booked, not refunded a second time
        await ledger_balances(app)


class TestFailedPayoutAttempts:
    async def test_a_failed_attempt_shows_its_error_until_the_retry_sends_it(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        session = await checkout(client, consumer, licence)
        await sim.complete_checkout(session["session_id"])
        await record_payment_only(app)  # the payment is recorded, its transfers queued
        sim.fail_next("POST", "/v1/transfers", "server_error", times=2)
        await record_payment_only(app)  # each transfer's first attempt, both refused
        failing = await payment_of(client, actors, session["payment_id"])
        assert [(t["status"], t["attempts"]) for t in failing["transfers"]] == [("pending", 1), ("pending", 1)]
        assert all(t["last_error"].startswith("payment_provider_unavailable") for t in failing["transfers"])
        await drain()
        sent = await payment_of(client, actors, session["payment_id"])
        assert [(t["status"], t["last_error"]) for t in sent["transfers"]] == [("sent", None), ("sent", None)]
