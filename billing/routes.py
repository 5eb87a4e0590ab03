"""HTTP routes of billing: checkout, Stripe's webhooks, payout accounts, payments, refunds, statements.

Checkout and payout-account take no request transaction (``tx``): they wait on Stripe, so
``billing/checkout.py`` runs them in short transactions of its own."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from billing import examples, webhooks
from billing.checkout import CheckoutService
from billing.gateway import configured
from billing.schemas import (
    CheckoutCreate,
    CheckoutRead,
    PaymentList,
    PaymentRead,
    PayoutAccountRead,
    RefundCreate,
    StatementRead,
    WebhookAck,
)
from billing.service import BillingService
from catalog.auth import ANYONE, Principal, consumer, operator
from catalog.errors import problem_responses
from catalog.idempotency import IdempotencyKey, idempotent
from catalog.openapi import request_examples
from catalog.pagination import PageRequest


async def provide_billing_service(
    tx: NamedDependency[AsyncSession], caller: NamedDependency[Principal], request: Request[Any, Any, State]
) -> BillingService:
    state = request.app.state
    return BillingService(tx, caller, state.services.get("gateway"), state.settings)


async def provide_checkout_service(
    caller: NamedDependency[Principal], request: Request[Any, Any, State]
) -> CheckoutService:
    """No request transaction: these routes wait on Stripe between short transactions of their own."""
    state = request.app.state
    return CheckoutService(state.sessions, caller, state.services.get("gateway"), state.settings)


class BillingController(Controller):
    path = "/v1"
    tags = ["Billing"]
    dependencies = {
        "billing_service": Provide(provide_billing_service),
        "checkout_service": Provide(provide_checkout_service),
    }

    @post(
        "/licences/{licence_id:str}/checkout",
        operation_id="CheckoutLicence",
        status_code=200,
        guards=[consumer("buyer")],
        summary="Pay for a licence: a Stripe Checkout Session (one open per licence) or a sent invoice",
        description=(
            "Starts paying for a `pending_payment` licence: a Stripe Checkout Session for a card (one open session "
            "per licence, answered again while open), or for a one-time plan a Stripe invoice. Consumer members with "
            "the buyer role; a free plan is 409 `nothing_to_pay`, a payment in progress 409 `payment_processing`, and "
            "without Stripe 503 `billing_not_configured`. Safe to retry; an `Idempotency-Key` replays the first "
            "answer."
        ),
        operation_class=request_examples(examples.CHECKOUT),
        responses=problem_responses(401, 403, 404, 409, 422, 503),
    )
    async def checkout(
        self,
        request: Request[Any, Any, State],
        licence_id: FromPath[str],
        data: JSONBody[CheckoutCreate],
        checkout_service: NamedDependency[CheckoutService],
        caller: NamedDependency[Principal],
        idempotency_key: IdempotencyKey = None,  # read by idempotent(); declared for the document
    ) -> Response[CheckoutRead]:
        async def run() -> Response[CheckoutRead]:
            return Response(await checkout_service.checkout(licence_id, data), status_code=200)

        return await idempotent(request, caller.org_id, None, run)

    @post(
        "/orgs/{org_id:str}/payout-account",
        operation_id="PayoutAccount",
        status_code=200,
        summary="A Stripe Connect onboarding link for a provider's payouts (provider admin, operator admin)",
        description=(
            "Creates the provider's Stripe Connect account the first time and returns a fresh onboarding link for it, "
            "so that its share of payments can be transferred. The organisation's admin or the operator's admin; 409 "
            "`not_a_provider` for other kinds, 503 without Stripe."
        ),
        responses=problem_responses(401, 403, 404, 409, 503),
    )
    async def payout_account(
        self, org_id: FromPath[str], checkout_service: NamedDependency[CheckoutService]
    ) -> PayoutAccountRead:
        return await checkout_service.payout_account(org_id)

    @get(
        "/payments",
        operation_id="ListPayments",
        summary="Payments of the licences you are a party to",
        description=(
            "Payments (not those still pending) of the licences the caller's organisation is a party to, newest "
            "first; the operator sees all. Filter by `licence_id`."
        ),
        responses=problem_responses(401),
    )
    async def list_payments(
        self,
        billing_service: NamedDependency[BillingService],
        page: NamedDependency[PageRequest],
        licence_id: Annotated[str | None, QueryParameter(max_length=40)] = None,
    ) -> PaymentList:
        return await billing_service.list_payments(page, licence_id)

    @get(
        "/payments/{payment_id:str}",
        operation_id="GetPayment",
        summary="A payment with its allocations, transfers and refunds (the parties)",
        description=(
            "A payment with its split (tax, operator, fund, providers), the transfers to providers and any refunds or "
            "disputes. The parties to its licence and the operator; 404 otherwise."
        ),
        responses=problem_responses(401, 404),
    )
    async def get_payment(
        self, payment_id: FromPath[str], billing_service: NamedDependency[BillingService]
    ) -> PaymentRead:
        return await billing_service.get_payment(payment_id)

    @post(
        "/payments/{payment_id:str}/refunds",
        operation_id="RefundPayment",
        status_code=201,
        guards=[operator("finance")],
        summary="Refund part or all of a payment; the parts give back in proportion (operator finance)",
        description=(
            "Refunds `amount` (minor units; by default all that is left) of a paid payment; Stripe is asked "
            "afterwards, and each party gives back in proportion to its part. Operator members with the finance role; "
            "more than is left is 409 `refund_exceeds_remaining`. Send an `Idempotency-Key` to retry safely."
        ),
        operation_class=request_examples(examples.REFUND),
        responses=problem_responses(401, 403, 404, 409, 503),
    )
    async def refund(
        self,
        request: Request[Any, Any, State],
        payment_id: FromPath[str],
        data: JSONBody[RefundCreate],
        billing_service: NamedDependency[BillingService],
        caller: NamedDependency[Principal],
        tx: NamedDependency[AsyncSession],
        idempotency_key: IdempotencyKey = None,  # read by idempotent(); declared for the document
    ) -> Response[PaymentRead]:
        async def run() -> Response[PaymentRead]:
            payment = await billing_service.refund(payment_id, data)
            return Response(payment, status_code=201, headers={"Location": f"/v1/payments/{payment_id}"})

        return await idempotent(request, caller.org_id, tx, run)

    @get(
        "/orgs/{org_id:str}/statement",
        operation_id="GetStatement",
        summary="A month's statement rebuilt from the ledger (the organisation, the operator)",
        description=(
            "A month's statement (`period` as YYYY-MM) for an organisation, rebuilt from the ledger: per currency, "
            "gross, refunds and reversals, net, transferred and outstanding. Its members and the operator; another "
            "organisation is 404."
        ),
        responses=problem_responses(401, 403, 404),
    )
    async def statement(
        self,
        org_id: FromPath[str],
        billing_service: NamedDependency[BillingService],
        period: Annotated[str, QueryParameter(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")],
    ) -> StatementRead:
        return await billing_service.statement(org_id, period)


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["Billing"]

    @post(
        "/stripe",
        operation_id="StripeWebhook",
        status_code=200,
        opt={"public": True},
        security=ANYONE,
        summary="Stripe's events: signature-checked on the raw body, recorded once, processed once",
        description=(
            "Stripe's event deliveries, not for API clients. The raw body is checked against the `Stripe-Signature` "
            "header (400 `invalid_signature`), recorded once by event id (a repeat answers `duplicate: true`) and "
            "processed by the worker; no key needed."
        ),
        responses=problem_responses(503),
    )
    async def stripe(self, request: Request[Any, Any, State], tx: NamedDependency[AsyncSession]) -> WebhookAck:
        gateway = configured(request.app.state.services.get("gateway"))
        event = gateway.verify(await request.body(), request.headers.get("stripe-signature"))
        new = await webhooks.receive(tx, event)
        return WebhookAck(received=True, duplicate=not new)
