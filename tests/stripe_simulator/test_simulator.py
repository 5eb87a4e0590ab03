"""Tests of the Stripe simulator (stripe_simulator/simulator.py): Stripe's behaviour is SIMULATED here.

Every test drives the real stripe-python SDK (``client.v1.*``) against the in-process
simulator, so what is checked is that the simulator answers the SDK the way Stripe does
(objects, errors, idempotency, signed webhooks). Nothing here talks to Stripe.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import stripe
from stripe.params import TransferCreateParams
from stripe.params.checkout import SessionCreateParams

from stripe_simulator import StripeSimulator
from stripe_simulator.params import check_params

SECRET = "whsec_simulated_platform"
CONNECT_SECRET = "whsec_simulated_connect"


class WebhookRecorder:
    """A webhook sink that keeps what it is sent."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[bytes, dict[str, str]]] = []

    async def __call__(self, payload: bytes, headers: dict[str, str]) -> None:
        self.deliveries.append((payload, headers))

    def types(self) -> list[str]:
        return [json.loads(payload)["type"] for payload, _ in self.deliveries]

    def last(self, type_: str) -> tuple[bytes, dict[str, str]]:
        return next(d for d in reversed(self.deliveries) if json.loads(d[0])["type"] == type_)


@pytest.fixture(name="sink")
def fx_sink() -> WebhookRecorder:
    return WebhookRecorder()


@pytest.fixture(name="sim")
def fx_sim(sink: WebhookRecorder):
    sim = StripeSimulator(webhook_secret=SECRET, webhook_sink=sink, connect_webhook_secret=CONNECT_SECRET, seed=7)
    yield sim
    sim.close()


@pytest.fixture(name="client")
def fx_client(sim: StripeSimulator) -> stripe.StripeClient:
    return sim.client()


def one_time_session(customer: str, *, amount: int = 5000, group: str = "pay_1") -> dict:
    return {
        "mode": "payment",
        "customer": customer,
        "success_url": "https://lode.test/ok",
        "cancel_url": "https://lode.test/cancel",
        "client_reference_id": "lic_1",
        "metadata": {"licence_id": "lic_1"},
        "line_items": [
            {
                "price_data": {
                    "currency": "cny",
                    "unit_amount": amount,
                    "product_data": {"name": "Annual research licence"},
                },
                "quantity": 1,
            }
        ],
        "payment_intent_data": {"transfer_group": group, "metadata": {"payment_id": group}},
    }


async def paid_charge(
    client: stripe.StripeClient, sim: StripeSimulator, *, amount: int = 5000, group: str = "pay_1"
) -> stripe.Charge:
    customer = await client.v1.customers.create_async({"email": "buyer@example.org"})
    params = one_time_session(customer.id, amount=amount, group=group)
    session = await client.v1.checkout.sessions.create_async(params)
    done = await sim.complete_checkout(session.id)
    intent = await client.v1.payment_intents.retrieve_async(done["payment_intent"])
    return await client.v1.charges.retrieve_async(intent.latest_charge)


async def active_account(client: stripe.StripeClient, sim: StripeSimulator) -> str:
    account = await client.v1.accounts.create_async(
        {
            "type": "express",
            "country": "US",
            "email": "finance@hospital.example",
            "capabilities": {"transfers": {"requested": True}},
            "metadata": {"org_id": "org_1"},
        }
    )
    await sim.activate_account(account.id)
    return account.id


async def metered_price(client: stripe.StripeClient, currency: str = "cny") -> stripe.Price:
    """A monthly price per row returned, on a meter of its own (a metered price needs one)."""
    meter = await client.v1.billing.meters.create_async(
        {"display_name": "Rows", "event_name": "rows_returned", "default_aggregation": {"formula": "sum"}}
    )
    return await client.v1.prices.create_async(
        {
            "currency": currency,
            "unit_amount": 20,
            "product_data": {"name": "Rows"},
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )


class TestSimulatedCheckout:
    """Checkout Sessions and what a (simulated) paying customer makes Stripe do."""

    async def test_simulated_payment_checkout_sends_a_verifiable_signed_webhook(self, client, sim, sink):
        customer = await client.v1.customers.create_async({"email": "buyer@example.org", "name": "Buyer"})
        session = await client.v1.checkout.sessions.create_async(one_time_session(customer.id))
        assert session.id.startswith("cs_") and session.object == "checkout.session"
        assert session.url == f"https://checkout.stripe.com/c/pay/{session.id}"
        assert (session.status, session.amount_total, session.currency) == ("open", 5000, "cny")

        await sim.complete_checkout(session.id)

        payload, headers = sink.last("checkout.session.completed")
        event = stripe.Webhook.construct_event(payload, headers["Stripe-Signature"], SECRET)
        assert event.data.object.id == session.id and event.data.object.payment_status == "paid"
        intent = await client.v1.payment_intents.retrieve_async(
            event.data.object.payment_intent, {"expand": ["latest_charge"]}
        )
        assert intent.transfer_group == "pay_1" and intent.metadata["payment_id"] == "pay_1"
        assert intent.latest_charge.id.startswith("ch_") and intent.latest_charge.amount == 5000
        assert sink.types() == ["charge.succeeded", "payment_intent.succeeded", "checkout.session.completed"]

    async def test_simulated_async_payment_completes_unpaid_then_succeeds(self, client, sim, sink):
        customer = await client.v1.customers.create_async({})
        session = await client.v1.checkout.sessions.create_async(one_time_session(customer.id))
        await sim.complete_checkout(session.id, async_payment=True)
        completed = json.loads(sink.last("checkout.session.completed")[0])["data"]["object"]
        succeeded = json.loads(sink.last("checkout.session.async_payment_succeeded")[0])["data"]["object"]
        assert (completed["payment_status"], succeeded["payment_status"]) == ("unpaid", "paid")
        types = sink.types()
        assert types.index("checkout.session.completed") < types.index("checkout.session.async_payment_succeeded")

    async def test_simulated_subscription_checkout_invoice_payment_leads_to_a_charge(self, client, sim, sink):
        product = await client.v1.products.create_async({"name": "Monthly licence"})
        price = await client.v1.prices.create_async(
            {"currency": "cny", "unit_amount": 2000, "product": product.id, "recurring": {"interval": "month"}}
        )
        customer = await client.v1.customers.create_async({})
        session = await client.v1.checkout.sessions.create_async(
            {
                "mode": "subscription",
                "customer": customer.id,
                "success_url": "https://lode.test/ok",
                "line_items": [{"price": price.id, "quantity": 1}],
            }
        )
        done = await sim.complete_checkout(session.id)

        invoice = await client.v1.invoices.retrieve_async(done["invoice"], {"expand": ["payments"]})
        assert invoice.status == "paid" and invoice.amount_paid == 2000
        assert invoice.parent.subscription_details.subscription == done["subscription"]
        payment = invoice.payments.data[0]
        assert payment.id.startswith("inpay_") and payment.payment.type == "payment_intent"
        intent = await client.v1.payment_intents.retrieve_async(payment.payment.payment_intent)
        charge = await client.v1.charges.retrieve_async(intent.latest_charge)
        assert (charge.amount, charge.status) == (2000, "succeeded")
        assert {"invoice.paid", "checkout.session.completed"} <= set(sink.types())

    async def test_simulated_metered_price_line_takes_no_quantity(self, client):
        price = await metered_price(client)
        customer = await client.v1.customers.create_async({})
        base = {"mode": "subscription", "customer": customer.id}
        without_quantity = {**base, "line_items": [{"price": price.id}]}
        session = await client.v1.checkout.sessions.create_async(without_quantity)
        assert session.amount_total == 0
        expanded = await client.v1.checkout.sessions.retrieve_async(session.id, {"expand": ["line_items"]})
        assert expanded.line_items.data[0].price.recurring.usage_type == "metered"
        with_quantity = {**base, "line_items": [{"price": price.id, "quantity": 1}]}
        with pytest.raises(stripe.InvalidRequestError) as exc:
            await client.v1.checkout.sessions.create_async(with_quantity)
        assert exc.value.param == "line_items[0][quantity]"

    async def test_simulated_expired_session_cannot_be_completed(self, client, sim):
        customer = await client.v1.customers.create_async({})
        session = await client.v1.checkout.sessions.create_async(one_time_session(customer.id))
        expired = await client.v1.checkout.sessions.expire_async(session.id)
        assert expired.status == "expired"
        with pytest.raises(stripe.InvalidRequestError):
            await client.v1.checkout.sessions.expire_async(session.id)


class TestSimulatedIdempotency:
    """Idempotency keys as the simulated Stripe keeps them."""

    async def test_simulated_replay_returns_the_stored_response(self, client, sim):
        params = {"email": "a@example.org"}
        first = await client.v1.customers.create_async(params, {"idempotency_key": "cus-1"})
        second = await client.v1.customers.create_async(params, {"idempotency_key": "cus-1"})
        assert second.id == first.id and len(sim.objects("customer")) == 1
        assert second.last_response.headers["Idempotent-Replayed"] == "true"
        assert second.last_response.body == first.last_response.body

    async def test_simulated_same_key_other_params_is_an_idempotency_error(self, client):
        await client.v1.customers.create_async({"email": "a@example.org"}, {"idempotency_key": "cus-2"})
        with pytest.raises(stripe.IdempotencyError):
            await client.v1.customers.create_async({"email": "b@example.org"}, {"idempotency_key": "cus-2"})


class TestSimulatedParameterChecks:
    """Parameters checked against the SDK's TypedDicts, answered as Stripe would (simulated)."""

    async def test_simulated_unknown_parameter_is_refused(self, client):
        params = one_time_session("cus_x")
        params["line_items"][0]["foo"] = "bar"
        with pytest.raises(stripe.InvalidRequestError) as exc:
            await client.v1.checkout.sessions.create_async(params)
        assert (exc.value.code, exc.value.param) == ("parameter_unknown", "line_items[0][foo]")

    async def test_simulated_missing_and_mistyped_parameters_are_refused(self, client):
        with pytest.raises(stripe.InvalidRequestError) as missing:
            await client.v1.transfers.create_async({"amount": 100, "currency": "cny"})
        assert (missing.value.code, missing.value.param) == ("parameter_missing", "destination")
        with pytest.raises(stripe.InvalidRequestError) as mistyped:
            await client.v1.transfers.create_async({"amount": "many", "currency": "cny", "destination": "acct_1"})
        assert (mistyped.value.code, mistyped.value.param) == ("parameter_invalid_integer", "amount")

    async def test_simulated_enum_values_are_checked_by_hand(self, client):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            await client.v1.checkout.sessions.create_async({**one_time_session("cus_x"), "mode": "pay"})
        assert exc.value.param == "mode"

    def test_check_params_reports_problems_client_side(self):
        assert check_params(SessionCreateParams, one_time_session("cus_1")) == []
        bad = {"amount": "1", "currency": "cny", "idempotency_key": "k"}
        problems = check_params(TransferCreateParams, bad)
        assert any("destination" in p and "parameter_missing" in p for p in problems)
        assert any(p.startswith("amount:") for p in problems)
        assert any(p.startswith("idempotency_key:") and "parameter_unknown" in p for p in problems)


class TestSimulatedFailures:
    """Failures injected into the simulated Stripe surface as the SDK's own exceptions."""

    @pytest.mark.parametrize(
        ("kind", "error", "status"),
        [
            ("lock_timeout", stripe.APIError, 409),  # the SDK has no LockTimeoutError: a 409 is an APIError
            ("rate_limit", stripe.RateLimitError, 429),
            ("server_error", stripe.APIError, 500),
            ("connection_reset", stripe.APIConnectionError, None),
        ],
    )
    async def test_simulated_failure_then_retry_with_same_key_transfers_once(self, client, sim, kind, error, status):
        account = await active_account(client, sim)
        charge = await paid_charge(client, sim)
        params = {
            "amount": 4000,
            "currency": "cny",
            "destination": account,
            "transfer_group": "pay_1",
            "source_transaction": charge.id,
        }
        sim.fail_next("POST", "/v1/transfers", kind)
        with pytest.raises(error) as exc:
            await client.v1.transfers.create_async(params, {"idempotency_key": "xfr-1"})
        assert exc.value.http_status == status
        if kind == "lock_timeout":
            assert exc.value.error.code == "lock_timeout"
        # A connection reset loses the response of a request that ran; the others never ran.
        assert len(sim.objects("transfer")) == (1 if kind == "connection_reset" else 0)
        retried = await client.v1.transfers.create_async(params, {"idempotency_key": "xfr-1"})
        assert [t["id"] for t in sim.objects("transfer")] == [retried.id]
        replayed = retried.last_response.headers.get("Idempotent-Replayed")
        assert replayed == ("true" if kind == "connection_reset" else None)

    async def test_simulated_card_decline_is_stored_under_the_key(self, client, sim):
        sim.fail_next("POST", "/v1/customers", "card_declined")
        for _ in range(2):  # the retry replays the stored decline
            with pytest.raises(stripe.CardError) as exc:
                await client.v1.customers.create_async({"email": "a@example.org"}, {"idempotency_key": "k-1"})
            assert exc.value.code == "card_declined"
        assert sim.objects("customer") == []
        await client.v1.customers.create_async({"email": "a@example.org"}, {"idempotency_key": "k-2"})
        assert len(sim.objects("customer")) == 1

    async def test_simulated_requests_are_logged(self, client, sim):
        await client.v1.customers.create_async(
            {"email": "a@example.org"}, {"idempotency_key": "k-3", "stripe_account": "acct_9"}
        )
        assert sim.requests[-1] == ("POST", "/v1/customers", {"email": "a@example.org"}, "k-3", "acct_9")


class TestSimulatedConnect:
    """Connect accounts, onboarding links and transfers on the simulated Stripe."""

    async def test_simulated_transfer_needs_an_active_transfers_capability(self, client, sim, sink):
        account = await client.v1.accounts.create_async(
            {"type": "express", "country": "US", "capabilities": {"transfers": {"requested": True}}}
        )
        link = await client.v1.account_links.create_async(
            {
                "account": account.id,
                "type": "account_onboarding",
                "refresh_url": "https://lode.test/r",
                "return_url": "https://lode.test/done",
            }
        )
        assert link.url.startswith(f"https://connect.stripe.com/setup/e/{account.id}/")
        with pytest.raises(stripe.InvalidRequestError) as exc:
            await client.v1.transfers.create_async({"amount": 100, "currency": "cny", "destination": account.id})
        assert exc.value.code == "insufficient_capabilities_for_transfer"

        await sim.activate_account(account.id)
        payload, headers = sink.last("account.updated")
        event = stripe.Webhook.construct_event(payload, headers["Stripe-Signature"], CONNECT_SECRET)
        assert event.account == account.id and event.data.object.capabilities.transfers == "active"
        transfer = await client.v1.transfers.create_async({"amount": 100, "currency": "cny", "destination": account.id})
        assert transfer.id.startswith("tr_") and transfer.destination == account.id

    async def test_simulated_transfers_list_by_group_and_respect_the_source_charge(self, client, sim):
        account = await active_account(client, sim)
        first = await paid_charge(client, sim, amount=1000, group="pay_1")
        second = await paid_charge(client, sim, amount=1000, group="pay_2")
        for charge, group in ((first, "pay_1"), (first, "pay_1"), (second, "pay_2")):
            await client.v1.transfers.create_async(
                {
                    "amount": 500,
                    "currency": "cny",
                    "destination": account,
                    "transfer_group": group,
                    "source_transaction": charge.id,
                }
            )
        listed = await client.v1.transfers.list_async({"transfer_group": "pay_1"})
        assert len(listed.data) == 2 and {t.transfer_group for t in listed.data} == {"pay_1"}
        with pytest.raises(stripe.InvalidRequestError):  # first's 1000 is already transferred
            await client.v1.transfers.create_async(
                {"amount": 1, "currency": "cny", "destination": account, "source_transaction": first.id}
            )

    async def test_simulated_transfer_reversal(self, client, sim):
        account = await active_account(client, sim)
        transfer = await client.v1.transfers.create_async({"amount": 900, "currency": "cny", "destination": account})
        reversal = await client.v1.transfers.reversals.create_async(transfer.id, {"amount": 300})
        assert reversal.id.startswith("trr_") and reversal.transfer == transfer.id
        again = await client.v1.transfers.retrieve_async(transfer.id)
        assert (again.amount_reversed, again.reversed) == (300, False)
        with pytest.raises(stripe.InvalidRequestError):
            await client.v1.transfers.reversals.create_async(transfer.id, {"amount": 601})


class TestSimulatedRefundsAndDisputes:
    """Refunds and disputes on the simulated Stripe."""

    async def test_simulated_refund_beyond_the_charge_is_refused(self, client, sim, sink):
        charge = await paid_charge(client, sim, amount=5000)
        refund = await client.v1.refunds.create_async(
            {"charge": charge.id, "amount": 3000, "reason": "requested_by_customer"}
        )
        assert refund.id.startswith("re_") and refund.status == "succeeded"
        with pytest.raises(stripe.InvalidRequestError) as exc:
            await client.v1.refunds.create_async({"charge": charge.id, "amount": 2001})
        assert exc.value.code == "amount_too_large"
        after = await client.v1.charges.retrieve_async(charge.id)
        assert (after.amount_refunded, after.refunded) == (3000, False)

        assert "charge.refunded" not in sink.types()  # API-caused events wait for deliver_pending
        await sim.deliver_pending()
        event = json.loads(sink.last("charge.refunded")[0])
        assert event["data"]["previous_attributes"] == {"amount_refunded": 0}

    async def test_simulated_dispute_events(self, client, sim, sink):
        charge = await paid_charge(client, sim)
        dispute = await sim.create_dispute(charge.id, 5000)
        assert dispute["id"].startswith("du_")
        with pytest.raises(stripe.InvalidRequestError) as exc:
            await client.v1.refunds.create_async({"charge": charge.id})
        assert exc.value.code == "charge_disputed"
        await sim.close_dispute(dispute["id"], status="lost")
        closed = json.loads(sink.last("charge.dispute.closed")[0])["data"]["object"]
        assert (closed["status"], closed["charge"]) == ("lost", charge.id)
        assert sink.types()[-2:] == ["charge.dispute.created", "charge.dispute.closed"]


class TestSimulatedInvoicesAndSubscriptions:
    """Sent invoices and subscriptions on the simulated Stripe."""

    async def test_simulated_sent_invoice_is_paid(self, client, sim, sink):
        customer = await client.v1.customers.create_async({"email": "ap@pharma.example"})
        invoice = await client.v1.invoices.create_async(
            {
                "customer": customer.id,
                "collection_method": "send_invoice",
                "days_until_due": 30,
                "auto_advance": False,
                "metadata": {"licence_id": "lic_1"},
            }
        )
        await client.v1.invoice_items.create_async(
            {
                "customer": customer.id,
                "invoice": invoice.id,
                "amount": 7000,
                "currency": "cny",
                "description": "Annual licence",
            }
        )
        await client.v1.invoices.finalize_invoice_async(invoice.id)
        sent = await client.v1.invoices.send_invoice_async(invoice.id)
        assert (sent.status, sent.amount_due, sent.currency) == ("open", 7000, "cny")
        await sim.fail_invoice(invoice.id)
        await sim.pay_invoice(invoice.id)
        paid = await client.v1.invoices.retrieve_async(invoice.id, {"expand": ["payments"]})
        assert paid.status == "paid" and paid.payments.data[0].amount_paid == 7000
        expected = {"invoice.finalized", "invoice.sent", "invoice.payment_failed", "invoice.paid"}
        assert expected <= set(sink.types())

    async def test_simulated_subscription_pause_resume_and_cancel(self, client, sim, sink):
        price = await client.v1.prices.create_async(
            {
                "currency": "cny",
                "unit_amount": 100,
                "product_data": {"name": "Monthly"},
                "recurring": {"interval": "month"},
            }
        )
        customer = await client.v1.customers.create_async({})
        session = await client.v1.checkout.sessions.create_async(
            {"mode": "subscription", "customer": customer.id, "line_items": [{"price": price.id, "quantity": 1}]}
        )
        sub_id = (await sim.complete_checkout(session.id))["subscription"]
        pause = {"pause_collection": {"behavior": "void"}}
        paused = await client.v1.subscriptions.update_async(sub_id, pause)
        assert paused.pause_collection.behavior == "void"
        resumed = await client.v1.subscriptions.update_async(sub_id, {"pause_collection": ""})
        assert resumed.pause_collection is None
        canceled = await client.v1.subscriptions.cancel_async(sub_id)
        assert canceled.status == "canceled"
        await sim.deliver_pending()
        assert sink.types()[-1] == "customer.subscription.deleted"


class TestSimulatedMeters:
    """Billing meters and meter events on the simulated Stripe."""

    async def test_simulated_duplicate_meter_event_identifier_is_refused_for_24_hours(self, client, sim):
        customer = await client.v1.customers.create_async({})
        await client.v1.billing.meters.create_async(
            {
                "display_name": "Rows",
                "event_name": "rows_returned",
                "default_aggregation": {"formula": "sum"},
                "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
                "value_settings": {"event_payload_key": "value"},
            }
        )
        event = {
            "event_name": "rows_returned",
            "identifier": "use_1",
            "timestamp": int(time.time()),
            "payload": {"stripe_customer_id": customer.id, "value": "250"},
        }
        await client.v1.billing.meter_events.create_async(event)
        with pytest.raises(stripe.InvalidRequestError) as exc:
            await client.v1.billing.meter_events.create_async(event)
        assert (exc.value.code, exc.value.param) == ("resource_already_exists", "identifier")
        await client.v1.billing.meter_events.create_async({**event, "identifier": "use_2"})
        sim.advance_clock(86400 + 1)  # outside the 24 h window the identifier may be used again
        await client.v1.billing.meter_events.create_async(event)
        assert sim.meter_usage("rows_returned", customer.id) == 750
        meters = await client.v1.billing.meters.list_async()
        assert [m.event_name for m in meters.data] == ["rows_returned"]


class TestSimulatorPlumbing:
    """How the SDK reaches the simulated Stripe: sync and async, 404s, signatures, events."""

    async def test_simulated_sync_call_works_inside_a_running_loop(self, client, sim):
        customer = client.v1.customers.create({"email": "sync@example.org"})
        assert sim.get("customer", customer.id)["email"] == "sync@example.org"

    def test_simulated_sync_call_works_without_a_loop(self, sim):
        own = stripe.StripeClient(
            "sk_test_own", http_client=sim.http_client(), base_addresses={"api": "https://stripe.simulated"}
        )
        customer = own.v1.customers.create({"name": "Plain sync"})
        assert own.v1.customers.retrieve(customer.id).name == "Plain sync"

    async def test_simulated_unknown_path_and_missing_object_are_stripe_shaped_404s(self, sim):
        transport = httpx.ASGITransport(app=sim.app)
        async with httpx.AsyncClient(transport=transport, base_url="https://api.stripe.com") as http:
            auth = {"Authorization": "Bearer sk_test_x"}
            unknown = await http.get("/v1/nowhere", headers=auth)
            missing = await http.get("/v1/customers/cus_missing", headers=auth)
            anonymous = await http.get("/v1/customers/cus_missing")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "resource_missing"
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "No such customer: 'cus_missing'"
        assert anonymous.status_code == 401

    async def test_simulated_signatures_can_be_made_stale_and_events_redelivered(self, client, sim, sink):
        await paid_charge(client, sim)
        payload, _ = sink.deliveries[-1]
        stale = sim.sign(payload, timestamp=int(time.time()) - 3600)
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(payload, stale, SECRET)
        event_id = json.loads(payload)["id"]
        await sim.redeliver(event_id)
        assert sink.deliveries[-1][0] == payload
        fetched = await client.v1.events.retrieve_async(event_id)
        assert fetched.type == "checkout.session.completed"
