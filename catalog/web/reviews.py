"""Reviewers' queues: products waiting for listing, application tracks waiting for their role.

Which tracks a person may decide is the API's rule (``access/review.py``); the queue only shows
each signed-in reviewer the pending tracks named after the roles they hold, and the API refuses
any decision they may not take (its detail is shown on the page).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath

from catalog import policy
from catalog.access.review import TRACK_ROLES
from catalog.web.api import q
from catalog.web.pages import PAGE, Ctx, context, form, redirect, render, require_member

# Who may review what is decided elsewhere (access/review.py's TRACK_ROLES, the policy's listing
# roles); the queue reads it from there to show each reviewer what is theirs.
LISTING_ROLES = tuple(sorted({role for grade in policy.GRADES for role in policy.rule(grade).listing_roles}))
DECISIONS = ("approve", "approve_with_conditions", "reject", "return")


def my_tracks(ctx: Ctx) -> list[str]:
    if ctx.kind == "provider":
        return ["provider"] if ctx.holds("reviewer") else []
    if ctx.kind == "operator":
        return [track for track, role in TRACK_ROLES.items() if ctx.holds(role)]
    return []


async def waiting_applications(ctx: Ctx, tracks: list[str]) -> list[dict[str, Any]]:
    if not tracks:
        return []
    found = await ctx.api.get("/v1/applications", status="under_review", limit=200)
    waiting = []
    for app in found["items"]:
        pending = [t["track"] for t in app["tracks"] if t["status"] == "pending" and t["track"] in tracks]
        if pending:
            waiting.append({**app, "pending": pending})
    return waiting


class ReviewPages(Controller):
    include_in_schema = False
    opt = PAGE

    @get("/reviews", name="web.reviews")
    async def queue(self, request: Request[Any, Any, Any]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        tracks = my_tracks(ctx)
        products = []
        if ctx.kind == "operator" and ctx.holds(*LISTING_ROLES):
            waiting = (await ctx.api.get("/v1/products", status="in_review", limit=100))["items"]
            # The curator decides with the measured quality in view (the list leaves it out).
            products = [
                {**item, "measured": (await ctx.api.get(f"/v1/products/{q(item['id'])}"))["measured_quality"]}
                for item in waiting
            ]
        return render(
            ctx, "reviews.html", tracks=tracks, products=products,
            applications=await waiting_applications(ctx, tracks), decisions=DECISIONS,
        )  # fmt: skip

    @post("/reviews/applications/{app_id:str}/{track:str}", name="web.reviews.decide", status_code=303)
    async def decide(self, request: Request[Any, Any, Any], app_id: FromPath[str], track: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        data = await form(ctx)
        body = {"decision": data.get("decision", "")}
        for name in ("comment", "conditions"):
            if data.get(name):
                body[name] = data[name]
        await ctx.api.post(f"/v1/applications/{q(app_id)}/tracks/{q(track)}/decision", body)
        return redirect(ctx, "/reviews")

    @post("/reviews/products/{product_id:str}", name="web.reviews.product", status_code=303)
    async def review_product(self, request: Request[Any, Any, Any], product_id: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        data = await form(ctx)
        body = {"decision": data.get("decision", "")}
        if data.get("comment"):
            body["comment"] = data["comment"]
        await ctx.api.post(f"/v1/products/{q(product_id)}/review", body)
        return redirect(ctx, "/reviews")
