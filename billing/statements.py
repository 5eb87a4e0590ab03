"""Statements: an organisation's month rebuilt from the ledger, never stored beside it.

What each line means depends on who reads it — a provider sees its gross share, what refunds and
disputes took back, what was transferred and what is still outstanding or owed; the operator also
its fee (with Stripe's processing fees beside it), the fund and tax; a consumer what it paid.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from billing import ledger
from billing import repository as repo
from billing.schemas import StatementLine, StatementRead
from catalog.auth import Principal, ensure_sees_org
from catalog.errors import NotFound, ValidationFailed
from catalog.orgs import repository as orgs_repo


async def read(session: AsyncSession, caller: Principal, org_id: str, period: str) -> StatementRead:
    ensure_sees_org(caller, org_id)
    org = await orgs_repo.get_org(session, org_id)
    if org is None:
        raise NotFound(f"No organisation {org_id}.")
    since, until = _month(period)
    lines = await _statement_lines(session, org_id, org.kind, since, until)
    return StatementRead(
        org_id=org_id,
        period=period,
        kind=org.kind,
        lines=lines,
        journal_count=await repo.journal_count(session, org_id, since, until),
    )


def _month(period: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValidationFailed.field("period", "use YYYY-MM") from None
    if not 2000 <= start.year <= 9998:
        raise ValidationFailed.field("period", "must be a month from 2000-01 to 9998-12")
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


async def _statement_lines(
    session: AsyncSession, org_id: str, kind: str, since: datetime, until: datetime
) -> list[StatementLine]:
    """Rebuilt from the ledger: the month's movements, and the balances at its end."""
    party = None if kind == "operator" else org_id
    accounts = [ledger.PAYABLE, ledger.RECEIVABLE, ledger.BALANCE, ledger.OPERATOR, ledger.FUND, ledger.TAX]
    month = await repo.ledger_sums(session, party, accounts, since, until, any_org=kind == "operator")
    ever = await repo.ledger_sums(session, party, accounts, None, until, any_org=kind == "operator")
    currencies = sorted({c for _, _, c in month} | {c for (_, a, c), v in ever.items() if v and a != ledger.BALANCE})

    def total(sums: dict[tuple[str, str, str], int], account: str, kinds: tuple[str, ...] | None, currency: str) -> int:
        return sum(
            v for (k, a, c), v in sums.items() if a == account and c == currency and (kinds is None or k in kinds)
        )

    lines = []
    for cur in currencies:
        gross = -total(month, ledger.PAYABLE, ("charge", "dispute_won"), cur)
        back = total(month, ledger.PAYABLE, ("refund", "dispute"), cur)
        transferred = total(month, ledger.PAYABLE, ("transfer",), cur) + total(
            month, ledger.PAYABLE, ("transfer_reversal",), cur
        )
        line = StatementLine(
            currency=cur,
            gross=gross,
            refunds_and_reversals=back,
            net=gross - back,
            transferred=transferred,
            outstanding=-total(ever, ledger.PAYABLE, None, cur),
            receivable=total(ever, ledger.RECEIVABLE, None, cur),
        )
        if kind == "operator":
            # The operator's part (after refunds), and beside it Stripe's fees, which come out of it.
            line.processing_fees = total(month, ledger.OPERATOR, ("fee",), cur)
            line.operator_fees = -total(month, ledger.OPERATOR, None, cur) + line.processing_fees
            line.fund = -total(month, ledger.FUND, None, cur)
            line.tax = -total(month, ledger.TAX, None, cur)
        if kind == "consumer":
            line.paid = total(month, ledger.BALANCE, ("charge", "dispute_won"), cur)
            line.refunds_and_reversals = -total(month, ledger.BALANCE, ("refund", "dispute"), cur)
            line.gross, line.net = line.paid, line.paid - line.refunds_and_reversals
        lines.append(line)
    return lines
