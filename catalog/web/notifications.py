"""The signed-in member's notifications: their organisation's events, newest first, read or unread."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.params import FromQuery

from catalog.web.pages import PAGE, context, form, redirect, render, require_member

SUBJECT_PAGES = {"licence": "/licences/{id}", "application": "/applications/{id}", "product": "/products/{id}"}


def link(notice: dict[str, Any], kind: str | None) -> str | None:
    """Where the notice's subject has a page for this organisation (providers follow applications
    from their own list; a release is shown on its product's page)."""
    subject = notice["subject"]
    if subject["type"] == "release":
        return f"/products/{notice['data']['product_id']}"
    if subject["type"] in ("licence", "application") and kind != "consumer":
        return None
    pattern = SUBJECT_PAGES.get(subject["type"])
    return pattern.format(id=subject["id"]) if pattern else None


class NotificationPages(Controller):
    include_in_schema = False
    opt = PAGE

    @get("/notifications", name="web.notifications")
    async def notifications(
        self, request: Request[Any, Any, Any], unread: FromQuery[bool] = False, cursor: FromQuery[str | None] = None
    ) -> Any:
        ctx = await context(request)
        require_member(ctx)
        params: dict[str, Any] = {"limit": 50, "unread": "true" if unread else "false"}
        if cursor:
            params["cursor"] = cursor
        feed = await ctx.api.get("/v1/notifications", **params)
        links = {n["id"]: link(n, ctx.kind) for n in feed["items"]}
        return render(ctx, "notifications.html", feed=feed, links=links, only_unread=unread)

    @post("/notifications/read", name="web.notifications.read", status_code=303)
    async def mark_read(self, request: Request[Any, Any, Any]) -> Any:
        ctx = await context(request)
        require_member(ctx)
        data = await form(ctx)
        body = {"ids": [data["id"]]} if data.get("id") else {"all": True}
        await ctx.api.post("/v1/notifications/read", body)
        return redirect(ctx, "/notifications")
