"""The double-entry ledger: every movement of money as balanced entries; balances are derived.

Accounts (debits positive, credits negative; every journal sums to zero)::

    stripe:balance              the platform's money at Stripe (an asset)
    tax:liability               tax collected, owed to the authorities, never split
    operator:revenue            the operator's fee; processing fees come out of it
    fund:liability              the public fund's part
    provider:payable            owed to a provider (org_id set): credited by allocations, debited by
                                transfers and by reversals of refunds and disputes
    provider:receivable         a provider's debt when a transfer reversal failed (org_id set)

A statement is a query over these entries for an organisation and a month; nothing is stored
beside the entries, so every number can be rebuilt at any time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import LedgerEntry
from catalog.db import utcnow
from catalog.ids import new_id

BALANCE = "stripe:balance"
TAX = "tax:liability"
OPERATOR = "operator:revenue"
FUND = "fund:liability"
PAYABLE = "provider:payable"
RECEIVABLE = "provider:receivable"


class Unbalanced(ValueError):
    pass


def post(
    session: AsyncSession,
    kind: str,
    legs: list[tuple[str, str | None, int]],
    *,
    currency: str,
    payment_id: str | None,
    memo: str = "",
    at: datetime | None = None,
) -> str:
    """Add one balanced journal — (account, org_id, amount) legs — to the session; return its id."""
    legs = [(account, org, amount) for account, org, amount in legs if amount]
    if sum(amount for _, _, amount in legs) != 0:
        raise Unbalanced(f"journal {kind} does not balance: {legs}")
    journal = new_id("jrn")
    posted = at or utcnow()
    session.add_all(
        LedgerEntry(
            id=new_id("acc"),
            journal_id=journal,
            kind=kind,
            account=account,
            org_id=org,
            payment_id=payment_id,
            currency=currency,
            amount=amount,
            memo=memo,
            posted_at=posted,
        )
        for account, org, amount in legs
    )
    return journal


def charge_legs(
    gross: int, parts: Mapping[str, int], operator_org: str | None, providers: Mapping[str, int], *, payer: str
) -> list[tuple[str, str | None, int]]:
    """Money in: the balance grows by the gross, from the paying organisation; each part is owed to
    its party."""
    legs: list[tuple[str, str | None, int]] = [
        (BALANCE, payer, gross),
        (TAX, None, -parts.get("tax", 0)),
        (OPERATOR, operator_org, -parts.get("operator", 0)),
        (FUND, None, -parts.get("fund", 0)),
    ]
    legs += [(PAYABLE, org, -amount) for org, amount in providers.items()]
    return legs


def reversal_legs(
    amount: int, reversed_parts: Mapping[str, int], operator_org: str | None, *, payer: str
) -> list[tuple[str, str | None, int]]:
    """Money out for a refund or dispute, back to the paying organisation: each part gives back its
    share."""
    legs: list[tuple[str, str | None, int]] = [(BALANCE, payer, -amount)]
    for part, value in reversed_parts.items():
        if part == "tax":
            legs.append((TAX, None, value))
        elif part == "operator":
            legs.append((OPERATOR, operator_org, value))
        elif part == "fund":
            legs.append((FUND, None, value))
        else:
            legs.append((PAYABLE, part, value))
    return legs
