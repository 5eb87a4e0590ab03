"""Billing's tables: Stripe identities, payments and their splits, transfers, refunds, the ledger."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db import Base, CreatedMixin, IdMixin, utcnow


class StripeCustomer(Base):
    __tablename__ = "stripe_customers"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PayoutAccount(Base):
    """A provider's Connect account; transfers go out only once Stripe says they are active."""

    __tablename__ = "payout_accounts"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    method: Mapped[str] = mapped_column(String(24), default="stripe_connect")
    account_id: Mapped[str] = mapped_column(String(64), unique=True)
    currency: Mapped[str | None] = mapped_column(String(3))
    transfers_active: Mapped[bool] = mapped_column(Boolean, default=False)
    activated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Checkout(IdMixin, CreatedMixin, Base):
    """One Stripe Checkout Session (or sent invoice) for a licence; at most one open at a time.

    ``pending`` from the moment Lode decides to ask Stripe until Stripe's answer is recorded:
    ``params`` is the request fixed then, so every attempt (a retry after a crash or a timeout, or
    a concurrent checkout of the licence) sends the same request under the same idempotency key and
    gets the same Stripe object. Then ``open`` → ``processing`` | ``completed`` | ``expired``, or
    ``failed`` (Stripe refused it; the next checkout starts afresh)."""

    __tablename__ = "checkouts"
    __table_args__ = (Index("ix_checkouts_licence_id_status", "licence_id", "status"),)

    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"))
    payment_id: Mapped[str] = mapped_column(String(40))
    method: Mapped[str] = mapped_column(String(16))  # card | invoice
    mode: Mapped[str] = mapped_column(String(16))  # payment | subscription | invoice
    session_id: Mapped[str | None] = mapped_column(String(80), unique=True)
    invoice_id: Mapped[str | None] = mapped_column(String(80))
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    expires_at: Mapped[datetime | None]
    # Without the customer and metered prices, which come from Stripe under keys of their own.
    params: Mapped[dict[str, Any] | None]


class Subscription(Base):
    __tablename__ = "subscriptions"

    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(String(80), unique=True)
    customer_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24), default="active")  # active | paused | canceled
    period_anchor: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Payment(IdMixin, CreatedMixin, Base):
    """Money received for a licence: gross including tax, and the charge it came from."""

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_licence_id", "licence_id"),)

    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"))
    consumer_org_id: Mapped[str] = mapped_column(String(40), index=True)
    product_id: Mapped[str] = mapped_column(String(40))
    revenue_share_id: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)  # gross, tax included
    tax: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(24), default="pending")
    source: Mapped[str] = mapped_column(String(24))  # checkout | invoice | subscription_invoice
    invoice_id: Mapped[str | None] = mapped_column(String(80), unique=True)
    payment_intent_id: Mapped[str | None] = mapped_column(String(80))
    charge_id: Mapped[str | None] = mapped_column(String(80), index=True)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    disputed: Mapped[int] = mapped_column(BigInteger, default=0)
    fee: Mapped[int | None] = mapped_column(BigInteger)  # Stripe's processing fee, once booked
    paid_at: Mapped[datetime | None]


class Allocation(IdMixin, Base):
    """One party's part of a payment: tax, operator, fund, or a provider (by weight)."""

    __tablename__ = "allocations"
    __table_args__ = (UniqueConstraint("payment_id", "party", "org_id"),)

    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    party: Mapped[str] = mapped_column(String(16))  # tax | operator | fund | provider
    org_id: Mapped[str | None] = mapped_column(String(40), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    reversed: Mapped[int] = mapped_column(BigInteger, default=0)


class Transfer(IdMixin, CreatedMixin, Base):
    """A payout instruction: one per provider allocation, by a method, in a currency, at an FX rate."""

    __tablename__ = "transfers"

    key: Mapped[str] = mapped_column(String(160), unique=True)  # the idempotency key: split:{payment}:{org}
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    org_id: Mapped[str] = mapped_column(String(40), index=True)
    method: Mapped[str] = mapped_column(String(24), default="stripe_connect")
    currency: Mapped[str] = mapped_column(String(3))
    fx_rate: Mapped[str] = mapped_column(String(24), default="1")
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | outstanding | sent
    stripe_transfer_id: Mapped[str | None] = mapped_column(String(80))
    reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # What Stripe pays it out of (source_transaction): the payment's charge for its split; none for a
    # re-payment after a won dispute, whose charge's funds went back with the dispute.
    source_charge_id: Mapped[str | None] = mapped_column(String(80))


class TransferReversal(IdMixin, CreatedMixin, Base):
    """Part of a sent transfer taken back for a refund or dispute: sent by the outbox, booked once.

    ``pending`` until Stripe has it; ``reversed`` when it did; ``receivable`` when Stripe refused
    for good (the provider owes the amount instead); ``offset`` when a won dispute settled that
    debt against what the provider was owed again."""

    __tablename__ = "transfer_reversals"

    key: Mapped[str] = mapped_column(String(200), unique=True)  # idempotency key: reversal:{refund}:{transfer}
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), index=True)
    refund_id: Mapped[str] = mapped_column(ForeignKey("refunds.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    stripe_id: Mapped[str | None] = mapped_column(String(80))
    done_at: Mapped[datetime | None]


class Refund(IdMixin, CreatedMixin, Base):
    """A refund or a dispute: money back to the consumer, taken back from the parts in proportion.

    A refund Lode makes is ``pending`` until Stripe confirms it (the outbox sends it, with the key
    ``refund:{id}``), then ``succeeded`` or ``failed``; a dispute is ``open`` until Stripe closes it."""

    __tablename__ = "refunds"

    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # refund | dispute
    amount: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    stripe_id: Mapped[str | None] = mapped_column(String(80), unique=True)
    parts: Mapped[dict[str, Any]]  # what each part gave back
    created_by: Mapped[str | None] = mapped_column(String(40))


class LedgerEntry(IdMixin, Base):
    """One leg of a balanced journal: debits positive, credits negative; a journal sums to zero."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        Index("ix_ledger_entries_org_id_posted_at", "org_id", "posted_at"),
        Index("ix_ledger_entries_journal_id", "journal_id"),
    )

    journal_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(24))  # charge | fee | transfer | refund | dispute | reversal | …
    account: Mapped[str] = mapped_column(String(40))
    org_id: Mapped[str | None] = mapped_column(String(40))
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    memo: Mapped[str] = mapped_column(Text, default="")
    posted_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """The inbox: a Stripe event recorded once, by its id, and processed once."""

    __tablename__ = "webhook_events"

    event_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    type: Mapped[str] = mapped_column(String(80))
    account: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)


class Meter(Base):
    __tablename__ = "stripe_meters"

    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(24), primary_key=True)
    meter_id: Mapped[str] = mapped_column(String(80))
    event_name: Mapped[str] = mapped_column(String(100))


class MeterReport(Base):
    """Billable units reported to Stripe for a licence, dimension and billing period."""

    __tablename__ = "meter_reports"

    licence_id: Mapped[str] = mapped_column(ForeignKey("licences.id"), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(24), primary_key=True)
    period_start: Mapped[date] = mapped_column(primary_key=True)
    units: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
