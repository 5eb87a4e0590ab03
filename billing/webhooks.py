"""Stripe webhooks: verified on the raw body, recorded once in an inbox, processed once in any order.

``receive`` checks the signature, inserts the event into the inbox (unique on its id) and queues it
on the outbox in the same transaction — a redelivery finds it there and changes nothing. ``handle``
processes it in its own transaction and marks it done; an event whose prerequisite has not been
seen yet (a refund of a charge we have not recorded) raises ``NotYet`` and the outbox retries it
later, so events may arrive in any order.

What a handler needs from Stripe beyond the event (the charge behind a paid session or invoice)
is read first, with no transaction open (``LOOKUPS``), and handed to it: the processing
transaction never waits on Stripe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from billing import payments, refunds, transfers
from billing import repository as repo
from billing.gateway import Gateway
from billing.models import Checkout, Payment, Refund, Subscription
from catalog import outbox
from catalog.access import licences as access_licences
from catalog.access import repository as access_repo
from catalog.db import read_transaction, utcnow, write_transaction
from catalog.ids import new_id
from catalog.products import repository as products_repo

EVENT = "stripe.event"
GRACE_EVENT = "billing.grace_elapsed"


class NotYet(outbox.RetryLater):
    """The event depends on one not processed yet; the outbox will retry it."""


async def receive(session: AsyncSession, event: dict[str, Any]) -> bool:
    """Record a verified event; False if it was seen before."""
    if not await repo.record_event(session, event):
        return False
    outbox.emit(session, EVENT, {"event_id": event["id"]}, dedupe_key=f"stripe:{event['id']}")
    return True


class Charge(NamedTuple):
    """The payment intent and charge behind a paid session or invoice, as Stripe has them."""

    payment_intent: str | None = None
    charge: str | None = None


async def handle(ctx: outbox.JobContext, payload: dict[str, Any]) -> None:
    async with read_transaction(ctx.sessions) as session:
        event = await repo.unprocessed_event(session, payload["event_id"])
    if event is None:
        return  # processed already
    obj = (event.get("data") or {}).get("object")
    lookup = LOOKUPS.get(event.get("type", ""))
    charge = await lookup(ctx.services["gateway"], obj) if lookup and isinstance(obj, dict) else Charge()
    async with write_transaction(ctx.sessions) as session:
        row = await repo.claim_event(session, payload["event_id"])
        if row is None:
            return  # processed meanwhile
        handler = HANDLERS.get(event.get("type", ""))
        outcome = "ignored"
        if handler is not None and not isinstance(obj, dict):
            outcome = "malformed: no data.object"  # signed but unusable: retrying cannot help
        elif handler is not None:
            outcome = await handler(session, ctx, obj, event, charge) or "processed"
        await repo.mark_processed(session, row.event_id, outcome)


async def _session_charge(gateway: Gateway, obj: dict) -> Charge:
    intent = obj.get("payment_intent")
    paid = obj.get("payment_status") in ("paid", "no_payment_required") and obj.get("mode") != "subscription"
    if not paid or not intent or not (obj.get("metadata") or {}).get("lode_licence_id"):
        return Charge()  # nothing checkout_completed will book
    return Charge(intent, await gateway.intent_charge(intent))


async def _invoice_charge(gateway: Gateway, obj: dict) -> Charge:
    if not (obj.get("metadata") or {}).get("lode_licence_id") and not _subscription_of(obj):
        return Charge()  # not an invoice of ours
    return Charge(*await gateway.invoice_charge(obj["id"]))


async def checkout_completed(
    session: AsyncSession, ctx: outbox.JobContext, obj: dict, event: dict, found: Charge
) -> str:
    metadata = obj.get("metadata") or {}
    checkout = await repo.checkout_by_session(session, obj["id"])
    if checkout is None or checkout.licence_id != metadata.get("lode_licence_id"):
        return "not a Lode checkout"
    if obj.get("payment_status") not in ("paid", "no_payment_required"):
        if checkout.status == "open":  # a bank debit is clearing: no new session meanwhile
            checkout.status = "processing"
        return "awaiting asynchronous payment"
    checkout.status = "completed"
    if obj.get("mode") == "subscription":
        if await repo.subscription(session, checkout.licence_id) is None:
            session.add(
                Subscription(
                    licence_id=checkout.licence_id,
                    subscription_id=obj["subscription"],
                    customer_id=obj["customer"],
                    period_anchor=utcnow().date(),
                )
            )
        await session.flush()
        return "subscription started; its invoices bring the payments"
    payment = await repo.payment(session, checkout.payment_id, lock=True)
    assert payment is not None
    await payments.record_paid(
        session,
        payment,
        charge_id=found.charge,
        payment_intent_id=obj.get("payment_intent"),
        gross=int(obj.get("amount_total") or payment.amount),
        tax_bps=0,
        tax=payment.tax,
    )
    return await _refund_if_unwanted(session, payment, "paid")


async def invoice_paid(session: AsyncSession, ctx: outbox.JobContext, obj: dict, event: dict, found: Charge) -> str:
    licence_id = await _licence_of_invoice(session, obj)
    if licence_id is None:
        return "not a Lode invoice"
    payment = await repo.payment_by_invoice(session, obj["id"]) or await _payment_sending(session, obj)
    licence = await access_repo.licence(session, licence_id)
    assert licence is not None
    plan = await products_repo.plan(session, licence.plan_id)
    if payment is None:
        payment = new_payment(
            licence,
            source="subscription_invoice",
            invoice_id=obj["id"],
            currency=obj["currency"].upper(),
            amount=int(obj["amount_paid"]),
            tax=0,
        )
        session.add(payment)
        await session.flush()
    fixed_tax = payment.tax if payment.source == "invoice" else None
    await payments.record_paid(
        session,
        payment,
        charge_id=found.charge,
        payment_intent_id=found.payment_intent,
        gross=int(obj["amount_paid"]),
        tax_bps=plan.tax_bps if plan else 0,
        tax=fixed_tax,
    )
    await access_licences.lift_hold(session, None, licence, "non_payment", "billing", "invoice paid")
    return await _refund_if_unwanted(session, payment, "paid")


async def _payment_sending(session: AsyncSession, obj: dict) -> Payment | None:
    """The invoice checkout's payment the invoice names, if its checkout has not recorded the invoice
    yet: Stripe emails an invoice as it is sent, so it may be paid before checkout's last phase."""
    payment_id = (obj.get("metadata") or {}).get("lode_payment_id")
    payment = await repo.payment(session, payment_id, lock=True) if payment_id else None
    if payment is None or payment.source != "invoice" or payment.invoice_id is not None:
        return None
    payment.invoice_id = obj["id"]
    return payment


async def _refund_if_unwanted(session: AsyncSession, payment: Payment, outcome: str) -> str:
    """Money nobody owes goes back in full: for a licence that ended meanwhile (cancelled unpaid,
    revoked), or a second one-time payment for a licence another one already paid for."""
    if payment.status != "paid":
        return outcome
    licence = await access_repo.licence(session, payment.licence_id)
    if licence is not None and licence.status not in ("active", "suspended"):
        reason = f"paid after the licence was {licence.status}"
    elif payment.source != "subscription_invoice" and await repo.other_one_time_payment(session, payment):
        reason = "the licence was already paid for"
    else:
        return outcome
    await refunds.request(session, payment, None, reason, None, created_by=None)
    return f"{outcome}; refunded in full: {reason}"


async def invoice_failed(session: AsyncSession, ctx: outbox.JobContext, obj: dict, event: dict, found: Charge) -> str:
    licence_id = await _licence_of_invoice(session, obj)
    if licence_id is None:
        return "not a Lode invoice"
    grace = ctx.services["settings"].billing_grace_days
    outbox.emit(
        session,
        GRACE_EVENT,
        {"licence_id": licence_id, "invoice_id": obj["id"]},
        dedupe_key=f"grace:{obj['id']}",
        delay=timedelta(days=grace),
    )
    return f"non-payment hold in {grace} days unless paid"


async def grace_elapsed(ctx: outbox.JobContext, payload: dict[str, Any]) -> None:
    async with write_transaction(ctx.sessions) as session:
        payment = await repo.payment_by_invoice(session, payload["invoice_id"])
        if payment is not None and payment.status != "pending":
            return  # paid in time
        licence = await access_repo.licence(session, payload["licence_id"], lock=True)
        if licence is not None and licence.status in ("active", "suspended", "pending_payment"):
            await access_licences.add_hold(
                session,
                None,
                licence,
                "non_payment",
                "billing",
                f"invoice {payload['invoice_id']} unpaid after the grace period",
            )


async def subscription_deleted(
    session: AsyncSession, ctx: outbox.JobContext, obj: dict, event: dict, found: Charge
) -> str:
    sub = await repo.subscription_by_stripe_id(session, obj["id"])
    if sub is None:
        return "not a Lode subscription"
    sub.status = "canceled"
    await access_licences.end_licence(session, None, sub.licence_id, "subscription ended", by="billing")
    return "licence ended"


async def charge_refunded(session: AsyncSession, ctx: outbox.JobContext, obj: dict, event: dict, found: Charge) -> str:
    """Refunds made outside Lode (the Stripe dashboard) are booked like ours; ours are already booked."""
    payment = await repo.payment_by_charge(session, obj["id"])
    if payment is None:
        raise NotYet(f"charge {obj['id']} is not recorded yet")
    if await repo.pending_refunds(session, payment.id):
        raise NotYet(f"a refund of {payment.id} is being booked; compare once it is")
    booked = payment.refunded
    missing = int(obj.get("amount_refunded") or 0) - booked
    if missing <= 0:
        return "already booked"
    refund = Refund(
        id=new_id("rfd"),
        payment_id=payment.id,
        kind="refund",
        amount=missing,
        reason="refunded in Stripe",
        status="succeeded",
        stripe_id=None,
        parts={},
        created_at=utcnow(),
    )
    session.add(refund)
    await session.flush()
    await payments.reverse(session, payment, refund, None)
    return "booked"


async def dispute(session: AsyncSession, ctx: outbox.JobContext, obj: dict, event: dict, found: Charge) -> str:
    """A dispute takes the money back like a refund; if it is won, the parts are restored."""
    payment = await repo.payment_by_charge(session, obj["charge"])
    if payment is None:
        raise NotYet(f"charge {obj['charge']} is not recorded yet")
    existing = await repo.refund_by_stripe_id(session, obj["id"])
    if event["type"] == "charge.dispute.created" and existing is None:
        amount = min(int(obj["amount"]), payment.amount - payment.refunded - payment.disputed)
        refund = Refund(
            id=new_id("rfd"),
            payment_id=payment.id,
            kind="dispute",
            amount=amount,
            reason=obj.get("reason") or "dispute",
            status="open",
            stripe_id=obj["id"],
            parts={},
            created_at=utcnow(),
        )
        session.add(refund)
        await session.flush()
        if amount > 0:
            await payments.reverse(session, payment, refund, None)
        return "reversed"
    if event["type"] == "charge.dispute.closed":
        if existing is None:
            raise NotYet(f"dispute {obj['id']} was not opened yet")
        won = obj.get("status") == "won" and existing.status != "won"
        existing.status = obj.get("status", "closed")
        if won:
            await payments.restore(session, payment, existing)
        return f"closed: {existing.status}"
    return "noted"


async def account_updated(session: AsyncSession, ctx: outbox.JobContext, obj: dict, event: dict, found: Charge) -> str:
    account = await repo.payout_account_by_stripe_id(session, obj["id"])
    if account is None:
        return "not a Lode account"
    active = (obj.get("capabilities") or {}).get("transfers") == "active"
    if active:
        if not account.transfers_active:
            account.transfers_active, account.activated_at = True, utcnow()
        # On every "active" update, not only the first: whatever is still outstanding can go.
        released = await transfers.release_outstanding(session, account.org_id)
        return f"transfers active; {released} outstanding released"
    account.transfers_active = False
    return "updated"


async def _licence_of_invoice(session: AsyncSession, obj: dict) -> str | None:
    licence_id = (obj.get("metadata") or {}).get("lode_licence_id")
    if licence_id:
        return licence_id
    sub_id = _subscription_of(obj)
    sub = await repo.subscription_by_stripe_id(session, sub_id) if sub_id else None
    if sub is None and sub_id:
        raise NotYet(f"subscription {sub_id} is not recorded yet")
    return sub.licence_id if sub else None


def _subscription_of(invoice: dict) -> str | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return invoice.get("subscription") or details.get("subscription")


def new_payment(licence: Any, *, source: str, invoice_id: str | None, currency: str, amount: int, tax: int) -> Payment:
    """A payment for the licence, pending until Stripe says it was paid."""
    return Payment(
        id=new_id("pay"),
        licence_id=licence.id,
        consumer_org_id=licence.consumer_org_id,
        product_id=licence.product_id,
        revenue_share_id=licence.revenue_share_id,
        currency=currency,
        amount=amount,
        tax=tax,
        status="pending",
        source=source,
        invoice_id=invoice_id,
        created_at=utcnow(),
    )


async def checkout_payment_failed(
    session: AsyncSession, ctx: outbox.JobContext, obj: dict, event: dict, found: Charge
) -> str:
    """The bank debit behind a completed session failed: nothing was paid, the buyer may try again."""
    checkout = await repo.checkout_by_session(session, obj["id"])
    if checkout is None:
        return "not a Lode checkout"
    if checkout.status in ("open", "processing"):
        await expire_checkout(session, checkout, status="failed")
    return f"checkout {checkout.status}"


async def checkout_expired(session: AsyncSession, ctx: outbox.JobContext, obj: dict, event: dict, found: Charge) -> str:
    checkout = await repo.checkout_by_session(session, obj["id"])
    if checkout is None:
        return "not a Lode checkout"
    if checkout.status == "open":
        await expire_checkout(session, checkout)
    return f"checkout {checkout.status}"


async def expire_checkout(session: AsyncSession, checkout: Checkout, *, status: str = "expired") -> None:
    """An abandoned (or failed) session: the next checkout makes a new one, and its payment stays
    unpaid — unless Stripe later says it was paid after all, which record_paid still accepts."""
    checkout.status = status
    payment = await repo.payment(session, checkout.payment_id, lock=True)
    if payment is not None and payment.status == "pending":
        payment.status = status


LOOKUPS: dict[str, Callable[[Gateway, dict], Awaitable[Charge]]] = {
    "checkout.session.completed": _session_charge,
    "checkout.session.async_payment_succeeded": _session_charge,
    "invoice.paid": _invoice_charge,
}
HANDLERS = {
    "checkout.session.completed": checkout_completed,
    "checkout.session.expired": checkout_expired,
    "checkout.session.async_payment_succeeded": checkout_completed,
    "checkout.session.async_payment_failed": checkout_payment_failed,
    "invoice.paid": invoice_paid,
    "invoice.payment_failed": invoice_failed,
    "customer.subscription.deleted": subscription_deleted,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": dispute,
    "charge.dispute.closed": dispute,
    "account.updated": account_updated,
}
