"""The demo's paid licence: paid through simulated Stripe, split, and paid out to the hospitals.

``lode demo`` (the composition root) calls this after seeding with the licences the demo pays
for itself. When no Stripe key is configured the demo's priced licence is checked out as its
buyer, the simulated customer pays, the signed webhooks are processed by the worker, and the
hospitals' shares are transferred to their (simulated) Connect accounts. With a real key nobody
can pay on the demo's behalf, so the checkout URL is printed instead. A licence not awaiting
payment is left alone, and so is every licence not named — a user's own, or the one the demo
leaves for a newcomer to pay — so a rerun changes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing import repository as repo
from billing import webhooks
from billing.checkout import CheckoutService
from billing.schemas import CheckoutCreate
from catalog.access import repository as access_repo
from catalog.auth import Principal
from catalog.db import read_transaction, write_transaction
from catalog.demo import catalog as demo
from catalog.orgs import repository as orgs_repo
from catalog.outbox import Registry
from catalog.products import repository as products_repo
from catalog.worker import Worker


async def _principal(session: AsyncSession, slug: str, role: str) -> Principal:
    member = demo.org(slug).member(role)
    user = await orgs_repo.user_by_email(session, member.email)
    membership = await orgs_repo.membership_of(session, user.id) if user else None
    org = await orgs_repo.get_org(session, membership.org_id) if membership else None
    assert user is not None and membership is not None and org is not None
    return Principal(
        user_id=user.id,
        org_id=org.id,
        org_kind=org.kind,
        org_status=org.status,
        roles=frozenset(membership.roles),
        key_id="key_demo",
    )


async def pay_pending(
    sessions: async_sessionmaker[AsyncSession], services: dict[str, Any], registry: Registry, licence_ids: list[str]
) -> list[dict[str, Any]]:
    """Pay those of ``licence_ids`` still awaiting payment; answers what was paid and how it was split."""
    settings = services["settings"]
    simulator = services.get("stripe_simulator")
    worker = Worker(sessions, registry, services)

    async def sink(payload: bytes, headers: dict[str, str]) -> None:
        event = services["gateway"].verify(payload, headers.get("Stripe-Signature"))
        async with write_transaction(sessions) as session:
            await webhooks.receive(session, event)

    if simulator is not None:
        simulator.webhook_sink = sink
    paid = []
    for licence_id in licence_ids:
        async with read_transaction(sessions) as session:
            licence = await access_repo.licence(session, licence_id)
            if licence is None or licence.status != "pending_payment":
                continue
            product = await products_repo.get(session, licence.product_id)
            item = demo.find_product(product.slug) if product else None
            consumer = None
            for candidate in demo.ORGS:
                if await orgs_repo.org_id_by_slug(session, candidate.slug) == licence.consumer_org_id:
                    consumer = candidate.slug
            if item is None or consumer is None:
                continue
            operator = await _principal(session, "operator", "admin")
            providers = [await orgs_repo.org_id_by_slug(session, slug) or "" for slug, _ in item.provider_weights]
            buyer = await _principal(session, consumer, "buyer")
        # As the API does it: Stripe is called between short transactions, never inside one.
        as_operator = CheckoutService(sessions, operator, services["gateway"], settings)
        accounts = [await as_operator.payout_account(org_id) for org_id in providers]
        checkout = await CheckoutService(sessions, buyer, services["gateway"], settings).checkout(
            licence.id, CheckoutCreate(method="card")
        )
        if simulator is None:
            paid.append({"licence_id": licence.id, "checkout_url": checkout.url, "paid": False})
            continue
        for account in accounts:
            if not account.transfers_active:
                await simulator.activate_account(account.account_id)
        await simulator.complete_checkout(checkout.session_id or "")
        while await worker.run_once(jobs=False):
            await simulator.deliver_pending()  # the transfers' own events, so none waits for `lode serve`
        paid.append({"licence_id": licence.id, "paid": True, **await _split(sessions, checkout.payment_id)})
    return paid


async def _split(sessions: async_sessionmaker[AsyncSession], payment_id: str) -> dict[str, Any]:
    """How the demo payment was divided and what reached each hospital, as the ledger has it."""
    async with read_transaction(sessions) as session:
        payment = await repo.payment(session, payment_id)
        assert payment is not None
        parts = (await repo.allocations(session, [payment_id])).get(payment_id, [])
        sent = (await repo.transfers(session, [payment_id])).get(payment_id, [])
        return {
            "payment_id": payment.id,
            "status": payment.status,
            "amount": payment.amount,
            "currency": payment.currency,
            "split": [{"party": part.party, "org_id": part.org_id, "amount": part.amount} for part in parts],
            "transfers": [
                {"org_id": transfer.org_id, "amount": transfer.amount, "status": transfer.status} for transfer in sent
            ],
        }
