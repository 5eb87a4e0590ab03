"""Bodies of the billing API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from msgspec import Meta, Struct

from catalog.orgs.schemas import Body

Url = Annotated[str, Meta(pattern=r"^https?://\S+$", max_length=2000)]


class CheckoutCreate(Body):
    method: Literal["card", "invoice"] = "card"
    success_url: Url | None = None
    cancel_url: Url | None = None


class CheckoutRead(Struct, kw_only=True):
    session_id: str | None
    url: str
    method: str
    payment_id: str | None  # None for a subscription: each of its invoices is a payment of its own
    amount: int
    currency: str
    status: str
    simulated: bool


class PayoutAccountRead(Struct, kw_only=True):
    url: str
    account_id: str
    transfers_active: bool
    simulated: bool


class AllocationRead(Struct, kw_only=True):
    party: Literal["tax", "operator", "fund", "provider"]
    org_id: str | None
    amount: int
    reversed: int


class TransferRead(Struct, kw_only=True):
    id: str
    org_id: str
    method: str
    currency: str
    fx_rate: str
    amount: int
    reversed: int
    status: Literal["pending", "outstanding", "sent"]
    idempotency_key: str
    stripe_transfer_id: str | None
    sent_at: datetime | None
    attempts: int = 0
    last_error: str | None = None  # why the latest attempt failed; it is retried with the same key


class RefundRead(Struct, kw_only=True):
    id: str
    kind: Literal["refund", "dispute"]
    amount: int
    reason: str
    status: str
    parts: dict[str, int]
    created_at: datetime


class PaymentRead(Struct, kw_only=True):
    id: str
    licence_id: str
    consumer_org_id: str
    product_id: str
    amount: int
    tax: int
    currency: str
    status: str
    source: str
    refunded: int
    disputed: int
    fee: int | None  # Stripe's processing fee, out of the operator's part, once Stripe reports it
    paid_at: datetime | None
    allocations: list[AllocationRead]
    transfers: list[TransferRead]
    refunds: list[RefundRead]
    created_at: datetime


class PaymentList(Struct, kw_only=True):
    items: list[PaymentRead]
    next_cursor: str | None


class RefundCreate(Body):
    reason: Annotated[str, Meta(min_length=1, max_length=500)]
    amount: Annotated[int, Meta(gt=0)] | None = None


class StatementLine(Struct, kw_only=True):
    currency: str
    gross: int
    refunds_and_reversals: int
    net: int
    transferred: int
    outstanding: int
    receivable: int
    operator_fees: int | None = None
    processing_fees: int | None = None
    fund: int | None = None
    tax: int | None = None
    paid: int | None = None


class StatementRead(Struct, kw_only=True):
    org_id: str
    period: str
    kind: str
    lines: list[StatementLine]
    journal_count: int


class WebhookAck(Struct, kw_only=True):
    received: bool
    duplicate: bool
