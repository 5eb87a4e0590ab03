"""Operations routes: liveness, readiness, the spec and its docs page, and the audit log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from litestar import Controller, MediaType, Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit
from catalog.auth import ANYONE, Principal, operator
from catalog.errors import ServiceUnavailable, ValidationFailed, problem_responses
from catalog.pagination import MAX_LIMIT

PUBLIC = {"public": True}
READY_TIMEOUT_S = 2.0  # below a load balancer's usual probe timeout, well above a healthy answer
COMPONENTS = {"database": "the database", "object_store": "the object store"}
log = logging.getLogger("lode.ready")
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Lode API</title>
  <link rel="stylesheet" href="/static/swagger-ui/swagger-ui.css">
</head>
<body>
  <noscript>Lode's API reference needs JavaScript; the raw spec is at
    <a href="/openapi.json">/openapi.json</a>.</noscript>
  <div id="docs"></div>
  <script src="/static/swagger-ui/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#docs", persistAuthorization: true});
  </script>
</body>
</html>
"""


class Health(Controller):
    include_in_schema = True
    tags = ["Operations"]

    @get(
        "/health",
        operation_id="Health",
        summary="Liveness: the process answers",
        description=(
            "Answers 200 with status `ok` whenever the process serves requests, without touching the database. No API "
            "key is needed: use it as a liveness probe."
        ),
        opt=PUBLIC,
        security=ANYONE,
        responses=problem_responses(),
    )
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/ready",
        operation_id="Ready",
        summary="Readiness: the database and the object store answer",
        description=(
            "Answers 200 with status `ready` when the database answers a trivial query and the object store "
            "(the release files' folder or bucket) answers too, each within 2 seconds; otherwise 503 `not_ready`, "
            "whose `failed` lists the components that did not (`database`, `object_store`). No API key is "
            "needed: use it as a readiness probe, so a load balancer sends no traffic to a node that cannot "
            "serve it."
        ),
        opt=PUBLIC,
        security=ANYONE,
        responses=problem_responses(503),
    )
    async def ready(self, request: Request[Any, Any, Any]) -> dict[str, str]:
        state = request.app.state

        async def database() -> None:
            async with state.sessions() as session:
                await session.execute(text("SELECT 1"))

        checks = await asyncio.gather(_check("database", database), _check("object_store", state.storage.ready))
        failed = [name for name in checks if name is not None]
        if failed:
            raise ServiceUnavailable(
                f"Not ready: {' and '.join(COMPONENTS[name] for name in failed)} did not answer.",
                code="not_ready",
                failed=failed,
            )
        return {"status": "ready"}

    @get(
        "/openapi.json",
        operation_id="GetOpenApi",
        summary="This API's OpenAPI 3.1 document",
        opt=PUBLIC,
        security=ANYONE,
        include_in_schema=False,
        media_type="application/vnd.oai.openapi+json",
    )
    async def openapi_json(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        return request.app.openapi_schema.to_schema()

    @get(
        "/docs",
        operation_id="GetDocs",
        summary="Interactive API documentation",
        opt=PUBLIC,
        security=ANYONE,
        include_in_schema=False,
        media_type=MediaType.HTML,
    )
    async def docs(self) -> str:
        return DOCS_PAGE


async def _check(name: str, probe: Callable[[], Awaitable[None]]) -> str | None:
    """``name`` if ``probe`` fails or takes longer than READY_TIMEOUT_S, else None.

    The cause goes to the log, not to the answer: the probe is public, and an error from a driver
    or an object store can name hosts, buckets and users.
    """
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await probe()
    except Exception as exc:
        log.warning("not ready", extra={"component": name, "error": f"{type(exc).__name__}: {exc}"[:500]})
        return name
    return None


class AuditController(Controller):
    path = "/v1/audit"
    tags = ["Audit"]

    @get(
        "/",
        operation_id="ListAuditEvents",
        summary="Audit events, newest first (the operator sees all; others, events concerning their org)",
        description=(
            "The hash-chained audit log, newest first: the operator sees every event, any other caller the events "
            "that concern its own organisation. Filter by `action` or `subject_id`; page with `limit` and `cursor`."
        ),
        responses=problem_responses(401),
    )
    async def list_events(
        self,
        caller: NamedDependency[Principal],
        tx: NamedDependency[AsyncSession],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 50,
        cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
        action: Annotated[str | None, QueryParameter(max_length=80)] = None,
        subject_id: Annotated[str | None, QueryParameter(max_length=80)] = None,
    ) -> audit.AuditList:
        if cursor is not None and not (cursor.isdigit() and len(cursor) <= 18):
            raise ValidationFailed.field("cursor", "is not a cursor returned by this list")
        return await audit.list_events(
            tx,
            org_id=None if caller.is_operator else caller.org_id,
            limit=limit,
            before_seq=int(cursor) if cursor else None,
            action=action,
            subject_id=subject_id,
        )

    @get(
        "/verify",
        operation_id="VerifyAuditChain",
        summary="Verify the audit chain (operator)",
        description=(
            "Walks the audit chain from `from_seq` and reports the first event whose hash does not hold; with "
            "`expected_head` (a head published earlier) it also checks that the chain still reaches it, so deleting "
            "the newest events is detected. Operator members with the admin, compliance or security role only."
        ),
        guards=[operator("admin", "compliance", "security")],
        responses=problem_responses(401, 403),
    )
    async def verify(
        self,
        tx: NamedDependency[AsyncSession],
        expected_head: Annotated[
            str | None,
            QueryParameter(
                description="A head published earlier, `<seq>:<hash>` as `lode audit head` prints it", max_length=200
            ),
        ] = None,
        from_seq: Annotated[int, QueryParameter(ge=1, le=2**62)] = 1,
    ) -> audit.VerifyResult:
        return await audit.verify(tx, expected_head=expected_head, from_seq=from_seq)
