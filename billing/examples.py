"""Example request bodies of the billing API (``catalog/openapi.py``)."""

from __future__ import annotations

from litestar.openapi.spec import Example

CHECKOUT = {
    "card": Example(
        summary="Pay by card on Stripe Checkout, then come back",
        value={
            "method": "card",
            "success_url": "https://portal.huadong-pharma.example/licences/paid",
            "cancel_url": "https://portal.huadong-pharma.example/licences/cancelled",
        },
    ),
    "invoice": Example(summary="Be sent an invoice (one-time plans)", value={"method": "invoice"}),
}

REFUND = {
    "partial": Example(
        summary="Part of a payment (in minor units)",
        value={"reason": "Two months of the term were unusable during a release withdrawal.", "amount": 833333},
    ),
    "full": Example(summary="All that is left to refund", value={"reason": "Licence cancelled by agreement."}),
}
