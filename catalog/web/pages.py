"""What every page handler shares: who is signed in, the API as them, the language, CSRF, and
turning the API's refusals into a page that says why in words."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from litestar import MediaType, Request, Response
from litestar.datastructures import Cookie
from litestar.response import Redirect, Template

from catalog import observability
from catalog.currencies import minor_units
from catalog.errors import DomainError, problem_response, translate
from catalog.web import i18n, sessions
from catalog.web.api import Api, Refused

PAGE = {"public": True}  # no API key on the request: pages sign in with a session


@dataclass
class Ctx:
    request: Request[Any, Any, Any]
    lang: str
    member: sessions.Member | None
    me: dict[str, Any] | None
    api: Api
    csrf: str
    cookies: list[Cookie] = field(default_factory=list)

    @property
    def kind(self) -> str | None:
        return self.me["organisation"]["kind"] if self.me else None

    @property
    def org_id(self) -> str | None:
        return self.me["organisation"]["id"] if self.me else None

    def holds(self, *roles: str) -> bool:
        return bool(self.me) and any(r in self.me["roles"] for r in roles)


async def context(request: Request[Any, Any, Any]) -> Ctx:
    member = await sessions.current(request)
    request_id = observability.request_id(request.scope)
    cookies: list[Cookie] = []
    me = None
    if member is not None:
        api = Api(request.app, member.key, request_id)
        try:
            me = await api.get("/v1/me")
        except Refused as exc:
            if exc.status != 401:
                raise
            await sessions.end(request, member)  # the key was revoked: the session goes with it
            member, cookies = None, [sessions.cleared_cookie(request)]
    if member is None:
        api = Api(request.app, None, request_id)
        csrf, fresh = sessions.anonymous_csrf(request)
        if fresh:
            cookies.append(sessions.csrf_cookie(request, csrf))
    else:
        csrf = sessions.csrf_for_session(member.token)
    return Ctx(request, i18n.language(request), member, me, api, csrf, cookies)


async def form(ctx: Ctx) -> dict[str, Any]:
    """The submitted form, after its CSRF token is checked; repeated fields become lists."""
    data = await ctx.request.form()
    sessions.check_csrf(ctx.request, ctx.member, data.get(sessions.CSRF_FIELD))
    out: dict[str, Any] = {}
    for name in data:
        values = data.getall(name)
        out[name] = values if len(values) > 1 else values[0]
    return out


def is_htmx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def render(ctx: Ctx, template: str, *, status: int = 200, **values: Any) -> Template:
    base = {
        "lang": ctx.lang,
        "t": i18n.translator(ctx.lang),
        "me": ctx.me,
        "csrf": ctx.csrf,
        "nonce": uuid.uuid4().hex,  # an Idempotency-Key for the form, so a double submit acts once
        "path": ctx.request.url.path,
        "htmx": is_htmx(ctx.request),
        "local": lambda item, name: i18n.localised(item, name, ctx.lang),
        "money": money,
    }
    return Template(
        template_name=template,
        context={**base, **values},
        status_code=status,
        cookies=ctx.cookies,
        media_type=MediaType.HTML,
    )


def money(amount: int | None, currency: str) -> str:
    if amount is None:
        return "—"
    digits = minor_units(currency.upper())
    return f"{currency.upper()} {amount / 10**digits:,.{digits}f}"


def redirect(ctx: Ctx, to: str) -> Response[Any]:
    """After a form: htmx follows ``HX-Redirect``, a plain form the 303."""
    if is_htmx(ctx.request):
        return Response(content=b"", status_code=200, headers={"HX-Redirect": to}, cookies=ctx.cookies)
    return Redirect(path=to, status_code=303, cookies=ctx.cookies)


def require_member(ctx: Ctx) -> None:
    if ctx.me is None:
        raise SignInNeeded()


class SignInNeeded(Exception):
    pass


def page_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A refusal as a page (or, for htmx, the fragment in place of the result): its detail in words."""
    if isinstance(exc, SignInNeeded):
        return Redirect(path=f"/signin?next={request.url.path}", status_code=303)
    if isinstance(exc, Refused):
        status, code, detail, errors = exc.status, exc.code, exc.detail, exc.errors
    else:
        error = translate(exc)
        if not isinstance(exc, DomainError) and error.status >= 500:
            return problem_response(request, exc)  # a bug: logged, and answered as any other 500
        status, code, detail = error.status, error.code, error.detail
        errors = [{"field": e.field, "message": e.message} for e in error.errors or []]
    lang = i18n.language(request)
    values = {
        "lang": lang,
        "t": i18n.translator(lang),
        "me": None,
        "csrf": "",
        "path": request.url.path,
        "status": status,
        "code": code,
        "detail": detail,
        "errors": errors,
    }
    template = "problem_fragment.html" if is_htmx(request) else "problem.html"
    return Template(template_name=template, context=values, status_code=status, media_type=MediaType.HTML)
