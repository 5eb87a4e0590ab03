"""A consumer's pages: apply, follow the application, accept, pay and use a licence."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery
from markupsafe import Markup

from catalog.delivery.formats import to_csv
from catalog.web import charts
from catalog.web.api import Refused, q
from catalog.web.catalogue import explain_terms
from catalog.web.pages import PAGE, Ctx, context, form, redirect, render, require_member

CATEGORIES = ("GRU", "HMB", "DS", "POA", "MDS")
QUERY_MODES = ("aggregate", "dp_aggregate", "rows")


def _lines(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [s.strip() for item in items for s in str(item or "").replace(",", "\n").splitlines() if s.strip()]


def application_body(product: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The API's ApplicationCreate from the form; the API validates it (its field names come back
    in the refusal, which the form shows)."""
    body: dict[str, Any] = {
        "product_id": product["id"],
        "plan_id": data.get("plan_id", ""),
        "purpose": {
            "category": data.get("category", ""),
            "commercial": data.get("commercial") == "on",
            "description": data.get("description", ""),
            "territory": str(data.get("territory", "")).strip().upper(),
            "disease_codes": [c.upper() for c in _lines(data.get("disease_codes"))],
        },
        "project": {"title": data.get("project_title", ""), "summary": data.get("project_summary", "")},
        "requested_months": int(data["months"]) if str(data.get("months", "")).isdigit() else 0,
        "analysts": _lines(data.get("analysts")),
    }
    if data.get("public_summary"):
        body["project"]["public_summary"] = data["public_summary"]
    if data.get("ethics_reference"):
        body["ethics_approval"] = {
            "committee": data.get("ethics_committee", ""),
            "reference": data["ethics_reference"],
            "approved_on": data.get("ethics_approved_on", ""),
            "expires_on": data.get("ethics_expires_on", ""),
        }
    return body


async def _members(ctx: Ctx) -> list[dict[str, Any]]:
    try:
        return (await ctx.api.get(f"/v1/orgs/{q(ctx.org_id)}/members", limit=100))["items"]
    except Refused:
        return [{"id": ctx.me["user"]["id"], "name": ctx.me["user"]["name"], "roles": ctx.me["roles"]}]


async def _products(ctx: Ctx, items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The products a list names, by id, so rows show titles rather than ids (one call each)."""
    products = {}
    for product_id in dict.fromkeys(item["product_id"] for item in items):
        try:
            products[product_id] = await ctx.api.get(f"/v1/products/{q(product_id)}")
        except Refused:  # a product no longer visible (retired): the row keeps its id
            continue
    return products


def example_query(product: dict[str, Any], modes: list[str]) -> dict[str, Any]:
    """A first query the console offers, from the dictionary: counts by a non-sensitive category."""
    table = (product.get("dictionary") or [{}])[0]
    group = next((f["name"] for f in table.get("fields", []) if f.get("categories") and not f.get("sensitive")), None)
    query: dict[str, Any] = {"table": table.get("table", ""), "aggregates": [{"fn": "count"}]}
    if group:
        query["group_by"] = [group]
    if modes == ["dp_aggregate"]:
        query["epsilon"] = 0.1
    return query


def csv_href(answer: dict[str, Any]) -> str:
    """The answer already shown, as a CSV link: downloading it runs (and meters) no second query."""
    rows = [[row.get(c) for c in answer["columns"]] for row in answer["rows"]]
    return "data:text/csv;charset=utf-8," + quote(to_csv(answer["columns"], rows).decode())


class ConsumerPages(Controller):
    include_in_schema = False
    opt = PAGE

    @get("/products/{slug:str}/apply", name="web.apply")
    async def apply_form(self, request: Request[Any, Any, Any], slug: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        product = await ctx.api.get(f"/v1/products/{q(slug)}")
        return render(
            ctx, "apply.html", p=product, members=await _members(ctx), categories=CATEGORIES,
            terms=explain_terms(product.get("terms")), error=None, values={},
        )  # fmt: skip

    @post("/products/{slug:str}/apply", name="web.apply.post", status_code=303)
    async def apply(self, request: Request[Any, Any, Any], slug: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        data = await form(ctx)
        product = await ctx.api.get(f"/v1/products/{q(slug)}")
        terms = explain_terms(product.get("terms"))
        unattested = [t["code"] for t in terms if data.get(f"attest_{t['code']}") != "on"]
        try:
            if unattested:
                raise Refused(422, {
                    "code": "attestation_missing",
                    "detail": f"Attest each condition of the terms before applying: {', '.join(unattested)}.",
                })  # fmt: skip
            created = await ctx.api.post("/v1/applications", application_body(product, data))
        except Refused as exc:
            return render(
                ctx, "apply.html", status=exc.status, p=product, members=await _members(ctx),
                categories=CATEGORIES, terms=terms, error=exc, values=data,
            )  # fmt: skip
        try:
            await ctx.api.post(f"/v1/applications/{q(created['id'])}/submit")
        except Refused as exc:  # kept as a draft: its page, with why, and a button to submit again
            app = await ctx.api.get(f"/v1/applications/{q(created['id'])}")
            return render(ctx, "application.html", status=exc.status, a=app, p=product, refused=exc.detail)
        return redirect(ctx, f"/applications/{created['id']}")

    @get("/applications", name="web.applications")
    async def applications(self, request: Request[Any, Any, Any]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        found = await ctx.api.get("/v1/applications", limit=100)
        return render(ctx, "applications.html", items=found["items"], products=await _products(ctx, found["items"]))

    @get("/applications/{app_id:str}", name="web.application")
    async def application(self, request: Request[Any, Any, Any], app_id: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        app = await ctx.api.get(f"/v1/applications/{q(app_id)}")
        product = await ctx.api.get(f"/v1/products/{q(app['product_id'])}")
        return render(ctx, "application.html", a=app, p=product, refused=None)

    @post("/applications/{app_id:str}/{action:str}", name="web.application.act", status_code=303)
    async def application_act(
        self, request: Request[Any, Any, Any], app_id: FromPath[str], action: FromPath[str]
    ) -> Any:
        ctx = await context(request)
        require_member(ctx)
        await form(ctx)
        if action not in ("submit", "withdraw"):
            raise Refused(404, {"code": "not_found", "detail": f"No action {action}."})
        await ctx.api.post(f"/v1/applications/{q(app_id)}/{q(action)}")
        return redirect(ctx, f"/applications/{app_id}")

    @get("/licences", name="web.licences")
    async def licences(self, request: Request[Any, Any, Any]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        found = await ctx.api.get("/v1/licences", limit=100)
        return render(ctx, "licences.html", items=found["items"], products=await _products(ctx, found["items"]))

    @get("/licences/{licence_id:str}", name="web.licence")
    async def licence(
        self, request: Request[Any, Any, Any], licence_id: FromPath[str], checkout: FromQuery[str | None] = None
    ) -> Any:
        ctx = await context(request)
        require_member(ctx)
        lic = await ctx.api.get(f"/v1/licences/{q(licence_id)}")
        product = await ctx.api.get(f"/v1/products/{q(lic['product_id'])}")
        terms = product.get("terms")
        if not terms or terms["version"] != lic["terms_version"]:  # the licence pins an older version
            terms = await ctx.api.get(f"/v1/products/{q(lic['product_id'])}/terms", version=lic["terms_version"])
        until = datetime.now(UTC)
        since = until - timedelta(days=29)
        usage = await ctx.api.get(
            f"/v1/licences/{q(licence_id)}/usage", granularity="day", since=since.isoformat(), until=until.isoformat()
        )
        chart = charts.bar_chart(
            charts.daily(usage["rows"], "queries", since.date(), until.date()), "Queries per day, last 30 days"
        )
        budget = None
        if "dp_aggregate" in lic["modes"]:
            budget = await ctx.api.get(f"/v1/licences/{q(licence_id)}/budget")
        return render(
            ctx, "licence.html", lic=lic, p=product, terms=terms, explained=explain_terms(terms),
            usage=usage, chart=Markup(chart), budget=budget, checkout=checkout,
        )  # fmt: skip

    @post("/licences/{licence_id:str}/accept", name="web.licence.accept", status_code=303)
    async def accept(self, request: Request[Any, Any, Any], licence_id: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        data = await form(ctx)
        await ctx.api.post(f"/v1/licences/{q(licence_id)}/accept", {"terms_sha256": data.get("terms_sha256", "")})
        return redirect(ctx, f"/licences/{licence_id}")

    @post("/licences/{licence_id:str}/checkout", name="web.licence.checkout", status_code=303)
    async def checkout(self, request: Request[Any, Any, Any], licence_id: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        data = await form(ctx)
        back = f"{str(request.base_url).rstrip('/')}/licences/{licence_id}"
        session = await ctx.api.post(
            f"/v1/licences/{q(licence_id)}/checkout",
            {"method": "card", "success_url": f"{back}?checkout=success", "cancel_url": f"{back}?checkout=cancelled"},
            idempotency_key=data.get("nonce") or None,
        )
        return redirect(ctx, session["url"])

    @get("/licences/{licence_id:str}/console", name="web.console")
    async def console(self, request: Request[Any, Any, Any], licence_id: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        lic = await ctx.api.get(f"/v1/licences/{q(licence_id)}")
        product = await ctx.api.get(f"/v1/products/{q(lic['product_id'])}")
        modes = [m for m in QUERY_MODES if m in lic["modes"]]
        example = json.dumps(example_query(product, modes), indent=2, ensure_ascii=False)
        return render(ctx, "console.html", lic=lic, p=product, modes=modes, example=example)

    @post("/licences/{licence_id:str}/console", name="web.console.run", status_code=200)
    async def run_query(self, request: Request[Any, Any, Any], licence_id: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        data = await form(ctx)
        try:
            query = json.loads(data.get("query") or "")
        except ValueError as exc:
            raise Refused(400, {"code": "malformed_json", "detail": f"The query is not JSON: {exc}."}) from exc
        answer = await ctx.api.post(f"/v1/licences/{q(licence_id)}/query", query)
        return render(ctx, "answer.html", answer=answer, csv=csv_href(answer))
