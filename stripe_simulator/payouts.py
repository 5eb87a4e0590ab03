"""The Stripe REST subset the simulator answers for paying out and paying back: Connect accounts and
their onboarding links, transfers and their reversals, refunds.

Registered like ``selling.py``'s handlers (each with its SDK ``TypedDict`` and the parameters
it implements); the same checks Stripe makes on these calls are made here, because they are the
ones Lode's money paths must survive: an account without the transfers capability, a transfer
beyond what is left on its source charge, a reversal or refund beyond what is left.
"""

from __future__ import annotations

from typing import Any

import stripe.params as p

from stripe_simulator.objects import list_object
from stripe_simulator.selling import Params, bad, metadata_of, need
from stripe_simulator.state import BillingState
from stripe_simulator.wire import ID, route


# -- Connect: accounts, links, transfers -------------------------------------------------------
@route(
    "POST",
    "/v1/accounts",
    p.AccountCreateParams,
    "type controller country email capabilities metadata business_type default_currency",
)
def create_account(s: BillingState, q: Params) -> dict[str, Any]:
    if not q.get("controller"):
        need(q, "type")
    requested = [name for name, cap in (q.get("capabilities") or {}).items() if cap.get("requested")]
    if q.get("type") == "express" and not requested:
        raise bad("Express accounts must request the transfers or card_payments capability.", "capabilities")
    controller = {"type": "application", "is_controller": True, **(q.get("controller") or {})}
    account = s.make(
        "account",
        type=q.get("type", "none"),
        country=q.get("country", "US"),
        email=q.get("email"),
        metadata=metadata_of(q),
        business_type=q.get("business_type"),
        default_currency=q.get("default_currency", "usd"),
        controller=controller,
        capabilities=dict.fromkeys(requested, "inactive"),
        charges_enabled=False,
        payouts_enabled=False,
        details_submitted=False,
    )
    account["external_accounts"] = list_object([], f"/v1/accounts/{account['id']}/external_accounts")
    return account


@route("POST", "/v1/account_links", p.AccountLinkCreateParams, "account refresh_url return_url type")
def create_account_link(s: BillingState, q: Params) -> dict[str, Any]:
    account = s.get("account", q["account"], "account")
    flavour = "e" if account["type"] == "express" else "s"
    return {
        "object": "account_link",
        "created": s.now(),
        "expires_at": s.now() + 300,
        "url": f"https://connect.stripe.com/setup/{flavour}/{account['id']}/{s.token(12)}",
    }


@route(
    "POST",
    "/v1/transfers",
    p.TransferCreateParams,
    "amount currency destination source_transaction transfer_group metadata description",
)
def create_transfer(s: BillingState, q: Params) -> dict[str, Any]:
    amount = need(q, "amount")  # NotRequired in the TypedDict, but Lode always sends it
    if amount <= 0:
        raise bad("Invalid positive integer", "amount", "parameter_invalid_integer")
    account = s.get("account", q["destination"], "destination")
    if account["capabilities"].get("transfers") != "active":
        raise bad(
            "Your destination account needs to have at least one of the following capabilities "
            "enabled: transfers, crypto_transfers, legacy_payments",
            "destination",
            "insufficient_capabilities_for_transfer",
        )
    currency = q["currency"].lower()
    if source := q.get("source_transaction"):
        charge = s.get("charge", source, "source_transaction")
        if charge["currency"] != currency:
            raise bad("The transfer's currency must match the source transaction's.", "currency")
        used = sum(t["amount"] for t in s.objects("transfer") if t["source_transaction"] == source)
        if used + amount > charge["amount"]:
            raise bad(
                f"The transfer amount exceeds what is left on source transaction {source} ({charge['amount'] - used}).",
                "amount",
                "balance_insufficient",
            )
    transfer = s.make(
        "transfer",
        amount=amount,
        amount_reversed=0,
        currency=currency,
        destination=account["id"],
        destination_payment=s.new_id("py"),
        source_transaction=source,
        transfer_group=q.get("transfer_group"),
        metadata=metadata_of(q),
        description=q.get("description"),
        reversed=False,
        balance_transaction=s.new_id("txn"),
    )
    transfer["reversals"] = list_object([], f"/v1/transfers/{transfer['id']}/reversals")
    s.emit("transfer.created", transfer)
    return transfer


@route("POST", f"/v1/transfers/{ID}/reversals", p.TransferReversalCreateParams, "amount metadata description")
def reverse_transfer(s: BillingState, q: Params, id_: str) -> dict[str, Any]:
    transfer = s.get("transfer", id_)
    left = transfer["amount"] - transfer["amount_reversed"]
    amount = q.get("amount", left)
    if amount <= 0 or amount > left:
        raise bad(
            f"Transfer reversal amount ({amount}) is greater than the amount left on the transfer ({left}).", "amount"
        )
    reversal = s.make(
        "transfer_reversal",
        amount=amount,
        currency=transfer["currency"],
        transfer=id_,
        metadata=metadata_of(q),
        balance_transaction=s.new_id("txn"),
        destination_payment_refund=s.new_id("pyr"),
        source_refund=None,
    )
    transfer["reversals"]["data"].insert(0, reversal)
    previous = s.update(transfer, amount_reversed=transfer["amount_reversed"] + amount, reversed=amount == left)
    s.emit("transfer.reversed", transfer, previous=previous)
    return reversal


# -- refunds -----------------------------------------------------------------------------------
@route("POST", "/v1/refunds", p.RefundCreateParams, "charge payment_intent amount reason metadata")
def create_refund(s: BillingState, q: Params) -> dict[str, Any]:
    if q.get("charge"):
        charge = s.get("charge", q["charge"], "charge")
        if q.get("payment_intent") and q["payment_intent"] != charge["payment_intent"]:
            raise bad("The charge does not belong to the payment_intent.", "payment_intent")
    elif q.get("payment_intent"):
        intent = s.get("payment_intent", q["payment_intent"], "payment_intent")
        charge = s.get("charge", intent["latest_charge"] or "", "payment_intent")
    else:
        raise bad(
            "One of the following params should be provided for this request: payment_intent or charge.",
            "charge",
            "parameter_missing",
        )
    if any(d["charge"] == charge["id"] and d["status"] != "won" for d in s.objects("dispute")):
        raise bad(f"Charge {charge['id']} has been charged back; cannot issue a refund.", code="charge_disputed")
    left = charge["amount"] - charge["amount_refunded"]
    if left == 0:
        raise bad(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
    amount = q.get("amount", left)
    if amount <= 0 or amount > left:
        raise bad(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
            "amount",
            "amount_too_large",
        )
    refund = s.make(
        "refund",
        amount=amount,
        charge=charge["id"],
        currency=charge["currency"],
        payment_intent=charge["payment_intent"],
        reason=q.get("reason"),
        metadata=metadata_of(q),
        status="succeeded",
        balance_transaction=s.new_id("txn"),
        customer=charge["customer"],
    )
    charge["refunds"]["data"].insert(0, refund)
    previous = s.update(charge, amount_refunded=charge["amount_refunded"] + amount, refunded=amount == left)
    s.emit("refund.created", refund)
    s.emit("charge.refunded", charge, previous=previous)
    return refund
