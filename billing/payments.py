"""Recording money: a paid charge split among the parties, and its proportional reversal.

``record_paid`` books a payment once: the split of billing/money.py (tax first, never split; the
operator and fund rounded down; providers by weight with largest remainder), one balanced ledger
journal, and one payout instruction per provider — sent by the outbox in the same transaction, so
a crash after recording loses nothing. ``reverse`` takes a refund or a dispute back from every part
in proportion, never more than a part had, and pulls providers' shares back from their transfers.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing import ledger, money
from billing import repository as repo
from billing.models import Allocation, Payment, Refund, Transfer, TransferReversal
from catalog import audit, outbox
from catalog.access import licences as access_licences
from catalog.access import repository as access_repo
from catalog.db import utcnow, write_transaction
from catalog.ids import new_id
from catalog.notifications import events as notices
from catalog.orgs import repository as orgs_repo
from catalog.products import repository as products_repo

TRANSFER_EVENT = "transfer.send"
REVERSAL_EVENT = "transfer.reverse"
FEE_EVENT = "payment.fee"


async def record_paid(
    session: AsyncSession,
    payment: Payment,
    *,
    charge_id: str | None,
    payment_intent_id: str | None,
    gross: int,
    tax_bps: int,
    tax: int | None = None,
) -> bool:
    """Book a payment as paid — once. False if it already was.

    A payment whose session we had given up on (expired, failed) is still booked when Stripe says
    the money arrived: it is then refunded if nobody owes it (webhooks._refund_if_unwanted)."""
    if payment.status not in ("pending", "expired", "failed"):
        return False
    rule = await products_repo.revenue_share(session, payment.revenue_share_id)
    assert rule is not None
    net, tax = (gross - tax, tax) if tax is not None else money.split_gross(gross, tax_bps)
    split = money.allocate(
        net, rule.operator_bps, rule.fund_bps, {p["org_id"]: int(p["weight"]) for p in rule.providers}
    )
    operator_org = await orgs_repo.operator_id(session)
    payment.amount, payment.tax, payment.status, payment.paid_at = gross, tax, "paid", utcnow()
    payment.charge_id, payment.payment_intent_id = charge_id, payment_intent_id
    session.add_all(
        [
            Allocation(id=new_id("alc"), payment_id=payment.id, party="tax", org_id=None, amount=tax),
            Allocation(
                id=new_id("alc"), payment_id=payment.id, party="operator", org_id=operator_org, amount=split.operator
            ),
            Allocation(id=new_id("alc"), payment_id=payment.id, party="fund", org_id=None, amount=split.fund),
            *(
                Allocation(id=new_id("alc"), payment_id=payment.id, party="provider", org_id=org, amount=amount)
                for org, amount in split.providers.items()
            ),
        ]
    )
    parts = money.parts_of(split, tax)
    legs = ledger.charge_legs(gross, parts, operator_org, split.providers, payer=payment.consumer_org_id)
    ledger.post(
        session, "charge", legs, currency=payment.currency, payment_id=payment.id, memo=f"licence {payment.licence_id}"
    )
    for org, amount in split.providers.items():
        if amount > 0:
            await add_transfer(session, payment, org, amount, f"split:{payment.id}:{org}", source_charge_id=charge_id)
    if charge_id is not None:
        outbox.emit(session, FEE_EVENT, {"payment_id": payment.id}, dedupe_key=f"fee:{payment.id}")
    await session.flush()
    await access_licences.activate_paid(session, payment.licence_id, payment.id)
    parties = await access_repo.party_org_ids(session, payment.licence_id)
    audit.record(
        session,
        None,
        "payment.recorded",
        "payment",
        payment.id,
        parties,
        {
            "licence_id": payment.licence_id,
            "amount": gross,
            "tax": tax,
            "currency": payment.currency,
            "operator": split.operator,
            "fund": split.fund,
            "providers": split.providers,
        },
    )
    await notices.publish(
        session,
        "payment.succeeded",
        ("payment", payment.id),
        parties,
        {"licence_id": payment.licence_id, "amount": gross, "currency": payment.currency},
    )
    return True


async def book_fee(ctx: outbox.JobContext, payload: dict[str, Any]) -> None:
    """Stripe's processing fee on the charge, out of the operator's part (PRODUCT.md) — booked once."""
    async with write_transaction(ctx.sessions) as session:
        payment = await repo.payment(session, payload["payment_id"])
        if payment is None or payment.fee is not None or payment.charge_id is None:
            return
        charge = payment.charge_id
    found = await ctx.services["gateway"].charge_fee(charge)
    if found is None:
        raise outbox.RetryLater(f"the fee on {charge} is not known yet")
    fee, currency = found
    async with write_transaction(ctx.sessions) as session:
        payment = await repo.payment(session, payload["payment_id"], lock=True)
        if payment is None or payment.fee is not None:
            return
        payment.fee = fee
        operator_org = await orgs_repo.operator_id(session)
        ledger.post(
            session,
            "fee",
            [(ledger.OPERATOR, operator_org, fee), (ledger.BALANCE, None, -fee)],
            currency=currency,
            payment_id=payment.id,
            memo=f"Stripe processing fee on {charge}",
        )


async def add_transfer(
    session: AsyncSession, payment: Payment, org_id: str, amount: int, key: str, *, source_charge_id: str | None
) -> Transfer:
    """A payout instruction, paid out of ``source_charge_id`` (or the balance); sent by the outbox now,
    or kept outstanding until the provider can be paid."""
    # Locked against account.updated: otherwise a transfer made "outstanding" while the account
    # turns active in another transaction would wait for a release that already happened.
    account = await repo.payout_account(session, org_id, lock=True)
    ready = account is not None and account.transfers_active
    transfer = Transfer(
        id=new_id("xfr"),
        key=key,
        payment_id=payment.id,
        org_id=org_id,
        method=account.method if account else "stripe_connect",
        currency=payment.currency,
        fx_rate="1",
        amount=amount,
        status="pending" if ready else "outstanding",
        source_charge_id=source_charge_id,
        created_at=utcnow(),
    )
    session.add(transfer)
    await session.flush()
    if ready:
        outbox.emit(session, TRANSFER_EVENT, {"transfer_id": transfer.id}, dedupe_key=f"transfer:{transfer.id}")
    return transfer


def part_key(allocation: Allocation) -> str:
    """The name money.reverse knows the part by: the party, or a provider's org id."""
    key = allocation.org_id if allocation.party == "provider" else allocation.party
    assert key is not None
    return key


def parts_and_reversed(allocations: list[Allocation]) -> tuple[dict[str, int], dict[str, int]]:
    """The payment's parts keyed as money.reverse expects, and what each has given back so far."""
    parts: dict[str, int] = {}
    done: dict[str, int] = {}
    for a in allocations:
        key = part_key(a)
        parts[key] = parts.get(key, 0) + a.amount
        done[key] = done.get(key, 0) + a.reversed
    return parts, done


async def reverse(session: AsyncSession, payment: Payment, refund: Refund, actor: Any) -> dict[str, int]:
    """Take ``refund.amount`` back from every part in proportion, and the providers' shares from their
    payouts: a payout not attempted yet is cut; one sent (or in flight) gets a transfer reversal that the
    outbox sends once it is sent. Answers each part's share. Stripe is never called here: the caller's
    transaction may still fail, and nothing must have left Lode when it does."""
    allocations = (await repo.allocations(session, [payment.id]))[payment.id]
    parts, done = parts_and_reversed(allocations)
    shares = money.reverse(refund.amount, parts, done)
    for a in allocations:
        a.reversed += shares.get(part_key(a), 0)
    operator_org = next((a.org_id for a in allocations if a.party == "operator"), None)
    legs = ledger.reversal_legs(refund.amount, shares, operator_org, payer=payment.consumer_org_id)
    ledger.post(
        session,
        refund.kind,
        legs,
        currency=payment.currency,
        payment_id=payment.id,
        memo=f"{refund.kind} {refund.id}: {refund.reason}",
    )
    payouts: dict[str, list[Transfer]] = defaultdict(list)
    for transfer in (await repo.transfers(session, [payment.id], lock=True))[payment.id]:
        payouts[transfer.org_id].append(transfer)
    claimed = await repo.reversals(session, [t.id for ts in payouts.values() for t in ts])
    for org, share in shares.items():
        if share > 0 and org in payouts:
            await _take_back(session, payment, refund, payouts[org], claimed, share)
    refund.parts = shares
    if refund.kind == "refund":
        payment.refunded += refund.amount
    else:
        payment.disputed += refund.amount
    taken_back = payment.refunded + payment.disputed
    payment.status = "refunded" if taken_back >= payment.amount else "partially_refunded"
    await session.flush()
    parties = await access_repo.party_org_ids(session, payment.licence_id)
    action = "payment.refunded" if refund.kind == "refund" else "payment.disputed"
    audit.record(
        session,
        actor,
        action,
        "payment",
        payment.id,
        parties,
        {"amount": refund.amount, "parts": shares, "reason": refund.reason},
    )
    # Ours, the Stripe dashboard's and a lost dispute alike: money went back to the consumer.
    data = {"licence_id": payment.licence_id, "refund_id": refund.id, "amount": refund.amount, "kind": refund.kind}
    await notices.publish(session, "payment.refunded", ("payment", payment.id), parties, data)
    if taken_back >= payment.amount:
        await access_licences.end_licence(
            session, None, payment.licence_id, f"payment fully {refund.kind}ed", by="billing"
        )
    return shares


async def _take_back(
    session: AsyncSession,
    payment: Payment,
    refund: Refund,
    payouts: list[Transfer],
    claimed: dict[str, list[TransferReversal]],
    share: int,
) -> None:
    left = share
    for transfer in payouts:  # first what was never attempted: pay out less
        if left and transfer.status != "sent" and transfer.attempts == 0:
            cut = min(left, transfer.amount)
            transfer.amount -= cut
            left -= cut
    for transfer in payouts:  # then what left, or may have left: reverse it once it is sent
        if not left or (transfer.status != "sent" and transfer.attempts == 0):
            continue
        cut = min(left, transfer.amount - sum(r.amount for r in claimed[transfer.id]))
        if cut <= 0:
            continue
        row = TransferReversal(
            id=new_id("xrv"),
            key=f"reversal:{refund.id}:{transfer.id}",
            transfer_id=transfer.id,
            refund_id=refund.id,
            amount=cut,
            status="pending",
            created_at=utcnow(),
        )
        session.add(row)
        claimed[transfer.id].append(row)
        outbox.emit(session, REVERSAL_EVENT, {"reversal_id": row.id}, dedupe_key=row.key)
        left -= cut
    if left:  # more than the payouts hold (never for a history made here): the provider owes it
        org = payouts[0].org_id
        ledger.post(
            session,
            "receivable",
            [(ledger.RECEIVABLE, org, left), (ledger.PAYABLE, org, -left)],
            currency=payment.currency,
            payment_id=payment.id,
            memo=f"{refund.kind} {refund.id}: more than was paid out",
        )


async def restore(session: AsyncSession, payment: Payment, dispute: Refund) -> None:
    """A dispute was won: the money is back, so every part gets its share again.

    Each part returns to its proportional share of what is still refunded (so later refunds continue
    the same proportional history); that differs from undoing the dispute's own shares by at most
    one unit a part. Providers are paid their part again by new transfers."""
    allocations = (await repo.allocations(session, [payment.id]))[payment.id]
    parts, done = parts_and_reversed(allocations)
    still = payment.refunded + payment.disputed - dispute.amount
    target = money.reverse(still, parts, {}) if still > 0 else dict.fromkeys(parts, 0)
    back = {key: done[key] - target[key] for key in parts}
    for a in allocations:
        a.reversed = target[part_key(a)]
    operator_org = next((a.org_id for a in allocations if a.party == "operator"), None)
    reversal = ledger.reversal_legs(dispute.amount, back, operator_org, payer=payment.consumer_org_id)
    legs = [(account, org, -amount) for account, org, amount in reversal]  # the reversal, undone
    ledger.post(
        session, "dispute_won", legs, currency=payment.currency, payment_id=payment.id, memo=f"dispute {dispute.id} won"
    )
    payment.disputed -= dispute.amount
    payment.status = "paid" if payment.refunded + payment.disputed == 0 else "partially_refunded"
    unrecovered = await _unrecovered(session, payment, dispute)
    for a in allocations:
        owed = back.get(a.org_id or "", 0) if a.party == "provider" else 0
        # What this dispute failed to take back from the provider is still with it: settle that
        # debt against what it is owed again instead of paying it a second time.
        offset = min(owed, unrecovered.get(a.org_id or "", 0))
        if offset:
            ledger.post(
                session,
                "receivable_offset",
                [(ledger.RECEIVABLE, a.org_id, -offset), (ledger.PAYABLE, a.org_id, offset)],
                currency=payment.currency,
                payment_id=payment.id,
                memo=f"dispute {dispute.id} won: the refused reversal is owed no more",
            )
        if owed - offset > 0:
            key = f"split:{payment.id}:{a.org_id}:{dispute.id}"
            # Out of the balance: the charge's own funds went back with the dispute.
            await add_transfer(session, payment, a.org_id or "", owed - offset, key, source_charge_id=None)


async def _unrecovered(session: AsyncSession, payment: Payment, dispute: Refund) -> dict[str, int]:
    """Per provider, the dispute's reversals Stripe refused (booked as receivables); marked offset."""
    payouts = (await repo.transfers(session, [payment.id], lock=True))[payment.id]
    by_transfer = {t.id: t.org_id for t in payouts}
    found: dict[str, int] = {}
    for rows in (await repo.reversals(session, list(by_transfer))).values():
        for row in rows:
            if row.refund_id == dispute.id and row.status == "receivable":
                row.status = "offset"
                org = by_transfer[row.transfer_id]
                found[org] = found.get(org, 0) + row.amount
    return found
