"""The pages' way into Lode: the JSON API, called in-process with the signed-in member's key.

Going through the API rather than beside it is the point: a page can never apply a rule the API
does not (grade, roles, tenant scoping, validation, idempotency), and a refusal reaches the page
as the same problem+json a client would get, shown to the user by its ``detail``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
from litestar import Litestar

from catalog.db import ensure_no_connection_held

# The host the in-process calls name; nothing resolves it, the transport is the app itself.
BASE = "http://lode.internal"


def q(value: object) -> str:
    """A value as one path segment of an API call: a slug or id from the page's own URL may hold
    anything (``a%3Fb`` arrives as ``a?b``), and must stay one segment."""
    return quote(str(value), safe="")


class Refused(Exception):
    """The API answered with a problem: its ``detail`` is what the page shows."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.code: str = problem.get("code") or "error"
        self.detail: str = problem.get("detail") or problem.get("title") or f"HTTP {status}"
        self.errors: list[dict[str, Any]] = problem.get("errors") or []
        super().__init__(f"{status} {self.code}: {self.detail}")


def _client(app: Litestar) -> httpx.AsyncClient:
    client = getattr(app.state, "web_api_client", None)
    if client is None:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE, timeout=120)
        app.state.web_api_client = client
    return client


class Api:
    """The API as one member (``key``) or an anonymous visitor (``None``) sees it."""

    def __init__(self, app: Litestar, key: str | None, request_id: str | None = None) -> None:
        self._client = _client(app)
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        if request_id:
            self._headers["X-Request-Id"] = request_id

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        content: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        # The page's handler holds no connection (the API opens its own): the same rule as for Stripe.
        ensure_no_connection_held(f"web → {method} {path}")
        answer = await self._client.request(
            method, path, params=params, json=json, content=content, headers={**self._headers, **(headers or {})}
        )
        if answer.status_code >= 400:
            try:
                problem = answer.json()
            except ValueError:
                problem = {"detail": answer.text[:500]}
            raise Refused(answer.status_code, problem if isinstance(problem, dict) else {"detail": str(problem)})
        return answer

    async def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v not in (None, "", [])}
        return (await self.call("GET", path, params=clean)).json()

    async def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        answer = await self.call("POST", path, json=body if body is not None else {}, headers=headers)
        return answer.json() if answer.content else None

    async def put_stream(self, path: str, chunks: AsyncIterator[bytes], content_type: str) -> Any:
        return (await self.call("PUT", path, content=chunks, headers={"Content-Type": content_type})).json()


async def close(app: Litestar) -> None:
    client = getattr(app.state, "web_api_client", None)
    if client is not None:
        await client.aclose()
        app.state.web_api_client = None
