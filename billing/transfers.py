"""Payouts: each provider's share sent as a separate Stripe transfer by the outbox worker.

One transfer per provider allocation: ``source_transaction`` = the charge, ``transfer_group`` =
our payment id, idempotency key ``split:{payment}:{org}``. The outbox retries failures with backoff;
the key makes every retry safe for 24 hours, and before retrying an attempt older than 23 hours the
handler lists the group's transfers and adopts one that already exists instead of sending again.
A provider without an active payout account accrues ``outstanding``; its transfers go out when
Stripe says the account can receive them.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from billing import ledger
from billing import repository as repo
from billing.models import Transfer, TransferReversal
from billing.payments import TRANSFER_EVENT
from catalog import audit, outbox
from catalog.db import utcnow, write_transaction
from catalog.errors import DomainError, ServiceUnavailable

KEY_WINDOW = timedelta(hours=23)


async def send(ctx: outbox.JobContext, payload: dict) -> None:
    gateway = ctx.services["gateway"]
    async with write_transaction(ctx.sessions) as session:
        transfer = await repo.transfer(session, payload["transfer_id"])
        if transfer is None or transfer.status == "sent" or transfer.amount <= 0:
            return
        account = await repo.payout_account(session, transfer.org_id)
        if account is None or not account.transfers_active:
            transfer.status = "outstanding"  # the account lost its capability meanwhile: wait for it again
            return
        payment = await repo.payment(session, transfer.payment_id)
        assert payment is not None
        now = utcnow()
        transfer.attempts += 1
        transfer.first_attempt_at = transfer.first_attempt_at or now
        stale = now - transfer.first_attempt_at > KEY_WINDOW
        attempt = (
            transfer.id,
            transfer.key,
            transfer.amount,
            transfer.currency,
            account.account_id,
            payment.id,
            transfer.source_charge_id,
            transfer.org_id,
            stale,
        )
    transfer_id, key, amount, currency, destination, payment_id, charge, org_id, stale = attempt
    existing = None
    if stale:  # Stripe forgets idempotency keys after 24 hours: look before sending again
        existing = next(
            (
                t["id"]
                for t in await gateway.transfers_in_group(payment_id)
                if (t.get("metadata") or {}).get("lode_transfer_key") == key
            ),
            None,
        )
    try:
        stripe_id = existing or await gateway.transfer(
            key=key,
            payment_id=payment_id,
            org_id=org_id,
            amount=amount,
            currency=currency,
            destination=destination,
            source_transaction=charge,
        )
    except DomainError as exc:  # kept on the transfer for the operator; the outbox retries with the same key
        async with write_transaction(ctx.sessions) as session:
            failed = await repo.transfer(session, transfer_id)
            if failed is not None and failed.status != "sent":
                failed.last_error = f"{exc.code}: {exc.detail}"[:1000]
        raise
    async with write_transaction(ctx.sessions) as session:
        transfer = await repo.transfer(session, transfer_id)
        if transfer is None or transfer.status == "sent":
            return
        transfer.status, transfer.stripe_transfer_id, transfer.sent_at = "sent", stripe_id, utcnow()
        transfer.last_error = None
        ledger.post(
            session,
            "transfer",
            [(ledger.PAYABLE, org_id, amount), (ledger.BALANCE, None, -amount)],
            currency=currency,
            payment_id=payment_id,
            memo=f"{key} → {destination}",
        )
        audit.record(
            session,
            None,
            "transfer.sent",
            "transfer",
            transfer_id,
            [org_id],
            {
                "payment_id": payment_id,
                "amount": amount,
                "currency": currency,
                "idempotency_key": key,
                "stripe_transfer_id": stripe_id,
            },
        )


async def _pending_reversal(session: AsyncSession, reversal_id: str) -> tuple[TransferReversal, Transfer] | None:
    """The reversal, locked, with its transfer — or None once it is no longer pending."""
    reversal = await repo.reversal(session, reversal_id, lock=True)
    if reversal is None or reversal.status != "pending":
        return None
    transfer = await repo.transfer(session, reversal.transfer_id)
    assert transfer is not None
    return reversal, transfer


async def send_reversal(ctx: outbox.JobContext, payload: dict) -> None:
    """Take part of a sent transfer back (``reversal:{refund}:{transfer}``), then book it — once.

    A transfer still in flight is waited for. A refusal from Stripe is final: the provider owes the
    amount (a receivable). Stripe being unavailable is not: the outbox retries with the same key."""
    gateway = ctx.services["gateway"]
    async with write_transaction(ctx.sessions) as session:
        if (pending := await _pending_reversal(session, payload["reversal_id"])) is None:
            return
        reversal, transfer = pending
        if transfer.status != "sent" or transfer.stripe_transfer_id is None:
            raise outbox.RetryLater(f"transfer {transfer.id} is not sent yet")
        stripe_transfer, key, amount = transfer.stripe_transfer_id, reversal.key, reversal.amount
    refused = None
    try:
        stripe_id = await gateway.reverse_transfer(stripe_transfer, amount, key)
    except ServiceUnavailable:
        raise
    except DomainError as exc:
        stripe_id, refused = None, exc.detail
    async with write_transaction(ctx.sessions) as session:
        if (pending := await _pending_reversal(session, payload["reversal_id"])) is None:
            return
        reversal, transfer = pending
        reversal.done_at = utcnow()
        if refused is not None:
            reversal.status = "receivable"
            legs = [(ledger.RECEIVABLE, transfer.org_id, amount), (ledger.PAYABLE, transfer.org_id, -amount)]
            memo = f"{key} refused: {refused}"[:500]
        else:
            reversal.status, reversal.stripe_id = "reversed", stripe_id
            transfer.reversed += amount
            legs = [(ledger.BALANCE, None, amount), (ledger.PAYABLE, transfer.org_id, -amount)]
            memo = key
        kind = "receivable" if refused is not None else "transfer_reversal"
        ledger.post(session, kind, legs, currency=transfer.currency, payment_id=transfer.payment_id, memo=memo)
        audit.record(
            session,
            None,
            f"transfer.{'reversal_refused' if refused else 'reversed'}",
            "transfer",
            transfer.id,
            [transfer.org_id],
            {"payment_id": transfer.payment_id, "amount": amount, "idempotency_key": key, "refused": refused},
        )


async def release_outstanding(session, org_id: str) -> int:  # type: ignore[no-untyped-def]
    """The provider can now be paid: queue what it accrued."""
    released = 0
    for transfer in await repo.outstanding_transfers(session, org_id):
        transfer.status = "pending"
        # No dedupe key: the transfer row (locked, status checked by send) is what makes this once.
        outbox.emit(session, TRANSFER_EVENT, {"transfer_id": transfer.id})
        released += 1
    return released
