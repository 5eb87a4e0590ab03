"""A provider's pages: their products and releases (create, upload with progress, publish),
applications for their products, payments and the monthly statement."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.params import FromPath, FromQuery
from litestar.response import Response

from catalog.web.api import Refused, q
from catalog.web.pages import PAGE, context, form, redirect, render, require_member
from catalog.web.sessions import check_csrf

OWNED = ["draft", "in_review", "listed", "suspended", "retired"]


class ProviderPages(Controller):
    include_in_schema = False
    opt = PAGE
    path = "/provider"

    @get("/", name="web.provider")
    async def home(self, request: Request[Any, Any, Any]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        products = (await ctx.api.get("/v1/products", status=OWNED, limit=100))["items"]
        applications = (await ctx.api.get("/v1/applications", status="under_review", limit=100))["items"]
        return render(ctx, "provider.html", products=products, applications=applications)

    @get("/products/{product_id:str}", name="web.provider.product")
    async def product(self, request: Request[Any, Any, Any], product_id: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        product = await ctx.api.get(f"/v1/products/{q(product_id)}")
        releases = (await ctx.api.get(f"/v1/products/{q(product['id'])}/releases", limit=100))["items"]
        return render(ctx, "provider_product.html", p=product, releases=releases)

    @post("/products/{product_id:str}/releases", name="web.provider.release", status_code=303)
    async def create_release(self, request: Request[Any, Any, Any], product_id: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        data = await form(ctx)
        body = {"version": data.get("version", "")}
        if data.get("notes"):
            body["notes"] = data["notes"]
        await ctx.api.post(f"/v1/products/{q(product_id)}/releases", body)
        return redirect(ctx, f"/provider/products/{product_id}")

    @put(
        "/products/{product_id:str}/releases/{version:str}/files/{name:str}",
        name="web.provider.upload",
        request_max_body_size=None,  # the API's own limit applies as the bytes stream through
        status_code=201,
    )
    async def upload(
        self, request: Request[Any, Any, Any], product_id: FromPath[str], version: FromPath[str], name: FromPath[str]
    ) -> Any:
        """The page's upload (XHR, for its progress bar), streamed on to the API without buffering."""
        ctx = await context(request)
        require_member(ctx)
        check_csrf(request, ctx.member, None)  # the header: an upload has no form around it
        stored = await ctx.api.put_stream(
            f"/v1/products/{q(product_id)}/releases/{q(version)}/files/{q(name)}",
            request.stream(),
            request.headers.get("content-type", "application/octet-stream"),
        )
        return Response(content=stored, status_code=201)

    @post("/products/{product_id:str}/releases/{version:str}/publish", name="web.provider.publish", status_code=303)
    async def publish(self, request: Request[Any, Any, Any], product_id: FromPath[str], version: FromPath[str]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        await form(ctx)
        await ctx.api.post(f"/v1/products/{q(product_id)}/releases/{q(version)}/publish")
        return redirect(ctx, f"/provider/products/{product_id}")

    @get("/payments", name="web.provider.payments")
    async def payments(self, request: Request[Any, Any, Any], period: FromQuery[str | None] = None) -> Any:
        ctx = await context(request)
        require_member(ctx)
        period = period or datetime.now(UTC).strftime("%Y-%m")
        found = await ctx.api.get("/v1/payments", limit=100)
        try:
            statement = await ctx.api.get(f"/v1/orgs/{q(ctx.org_id)}/statement", period=period)
        except Refused as exc:  # e.g. a member without the finance or admin role: the page says so
            statement = {"refused": exc.detail}
        return render(ctx, "payments.html", items=found["items"], statement=statement, period=period)
