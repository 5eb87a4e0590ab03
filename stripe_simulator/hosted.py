"""The simulator's hosted Checkout page: what a buyer sees instead of checkout.stripe.com.

``checkout_pages(simulator)`` answers a Litestar ``Router`` for the app whose Checkout Sessions
point at it (``StripeSimulator(checkout_page=…)`` set to where the router is mounted):

* ``GET  {path}/{session_id}`` — the session's lines and total, a "Pay — simulated" button and a
  link back to the session's ``cancel_url`` (as Stripe's page has; the session stays open);
* ``POST {path}/{session_id}`` — the customer pays: ``complete_checkout`` sends the resulting
  events, signed, to the simulator's webhook sink exactly as Stripe would, then the browser is
  redirected (303) to the session's ``success_url``.

Plain HTML with its style inline: no script, nothing fetched from elsewhere. Whoever knows a
session's id can pay it, as on Stripe's page — the id is the capability.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from litestar import Response, Router, get, post
from litestar.enums import MediaType
from litestar.params import FromPath
from litestar.response import Redirect

from stripe_simulator.objects import SimulatedStripeError
from stripe_simulator.simulator import StripeSimulator

log = logging.getLogger("stripe_simulator")

# Stripe's currencies without minor units, and with three decimals; every other has two.
_ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
_THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f6f8fa; color: #1a1f36; margin: 0; }}
main {{ max-width: 34rem; margin: 3rem auto; background: #fff; padding: 2rem; border-radius: 8px;
        box-shadow: 0 1px 4px rgba(0, 0, 0, .12); }}
.banner {{ background: #fff4d6; border: 1px solid #e5c36a; padding: .6rem .8rem; border-radius: 6px; font-size: .9rem; }}
table {{ width: 100%; border-collapse: collapse; margin: 1.2rem 0; }}
td {{ padding: .4rem 0; border-bottom: 1px solid #e3e8ee; }}
td.amount {{ text-align: right; white-space: nowrap; }}
.total td {{ font-weight: 600; border-bottom: none; }}
button {{ width: 100%; padding: .8rem; font-size: 1rem; color: #fff; background: #635bff; border: 0;
          border-radius: 6px; cursor: pointer; }}
p.links {{ text-align: center; margin-top: 1rem; }}
</style>
</head>
<body>
<main>
<p class="banner"><strong>Simulated Stripe Checkout.</strong> No card is asked for, no money moves:
this page is served by the Stripe simulator because no Stripe key is configured.</p>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""


def money(amount: int, currency: str) -> str:
    """``amount`` minor units as the buyer reads them: ``CNY 33,333.33``."""
    code = currency.lower()
    digits = 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2
    return f"{code.upper()} {amount / 10**digits:,.{digits}f}"


def _link(url: str | None, text: str) -> str:
    return f'<p class="links"><a href="{html.escape(url)}">{html.escape(text)}</a></p>' if url else ""


def _lines(session: dict[str, Any]) -> str:
    rows = []
    for line in session["line_items"]["data"]:
        recurring = line["price"].get("recurring") or {}
        if recurring.get("usage_type") == "metered":
            amount = f"by usage, every {recurring['interval']}"
        else:
            every = f" every {recurring['interval']}" if recurring else ""
            amount = money(line["amount_total"], line["currency"]) + every
        quantity = f" × {line['quantity']}" if (line["quantity"] or 1) > 1 else ""
        rows.append(
            f"<tr><td>{html.escape(line['description'] or '')}{quantity}</td>"
            f'<td class="amount">{html.escape(amount)}</td></tr>'
        )
    total = money(session["amount_total"] or 0, session["currency"])
    rows.append(f'<tr class="total"><td>Due today</td><td class="amount">{html.escape(total)}</td></tr>')
    return f"<table>{''.join(rows)}</table>"


def page(title: str, body: str, status: int = 200) -> Response[str]:
    # no-store: the page shows a payment's state, which the POST changes.
    return Response(
        _PAGE.format(title=html.escape(title), body=body),
        status_code=status,
        media_type=MediaType.HTML,
        headers={"Cache-Control": "no-store"},
    )


def session_page(session: dict[str, Any]) -> Response[str]:
    if session["status"] == "complete":
        return page("Paid — simulated", _lines(session) + _link(session["success_url"], "Continue"))
    if session["status"] == "expired":
        return page("This checkout has expired", _link(session["cancel_url"], "Return"), status=410)
    form = '<form method="post"><button type="submit">Pay — simulated</button></form>'
    return page("Pay — simulated", _lines(session) + form + _link(session["cancel_url"], "Cancel and return"))


def checkout_pages(simulator: StripeSimulator, path: str = "/simulator/checkout", **router_options: Any) -> Router:
    """The page's routes; ``router_options`` go to the ``Router`` (``opt``, ``include_in_schema`` …)."""

    def find(session_id: str) -> dict[str, Any] | None:
        try:
            return simulator.checkout_session(session_id)
        except SimulatedStripeError:
            return None

    @get("/{session_id:str}", include_in_schema=False)
    async def show(session_id: FromPath[str]) -> Response[str]:
        session = find(session_id)
        if session is None:
            return page("No such checkout", "<p>This checkout session does not exist.</p>", status=404)
        return session_page(session)

    @post("/{session_id:str}", include_in_schema=False)
    async def pay(session_id: FromPath[str]) -> Response[Any]:
        session = find(session_id)
        if session is None:
            return page("No such checkout", "<p>This checkout session does not exist.</p>", status=404)
        if session["status"] == "open":
            try:
                await simulator.complete_checkout(session_id)
            except Exception:
                session = find(session_id) or session
                if session["status"] != "complete":
                    raise
                # Paid, but the webhook endpoint refused an event: it stays queued and is sent
                # again later, as Stripe retries; the buyer goes on meanwhile.
                log.warning("the checkout is paid but its webhook was not accepted", exc_info=True)
            session = find(session_id) or session
        if session["status"] == "complete" and session["success_url"]:
            return Redirect(session["success_url"], status_code=303)
        return session_page(session)

    return Router(path=path, route_handlers=[show, pay], **router_options)
