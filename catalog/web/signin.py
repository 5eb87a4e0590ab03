"""Signing in with an API key, and out."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromQuery
from litestar.response import Redirect

from catalog.web import sessions
from catalog.web.api import Api, Refused
from catalog.web.pages import PAGE, context, form, render


def safe_next(value: str | None) -> str:
    """Only a path on this site: sign-in is no open redirect."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


class SignInPages(Controller):
    include_in_schema = False
    opt = PAGE

    @get("/signin", name="web.signin")
    async def show(self, request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Any:
        ctx = await context(request)
        return render(ctx, "signin.html", next=safe_next(next), error=None)

    @post("/signin", name="web.signin.post", status_code=303)
    async def sign_in(self, request: Request[Any, Any, Any]) -> Any:
        ctx = await context(request)
        data = await form(ctx)
        key = str(data.get("api_key", "")).strip()
        target = safe_next(data.get("next"))
        try:
            me = await Api(request.app, key).get("/v1/me")
        except Refused as exc:
            return render(ctx, "signin.html", status=exc.status, next=target, error=exc.detail)
        token = await sessions.start(request, key, me["user"]["id"], me["organisation"]["id"])
        return Redirect(path=target, status_code=303, cookies=[sessions.session_cookie(request, token)])

    @post("/signout", name="web.signout", status_code=303)
    async def sign_out(self, request: Request[Any, Any, Any]) -> Any:
        ctx = await context(request)
        await form(ctx)
        await sessions.end(request, ctx.member)
        return Redirect(path="/", status_code=303, cookies=[sessions.cleared_cookie(request)])
