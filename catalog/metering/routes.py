"""HTTP routes of metering: usage ingest from providers, and usage reports for the parties."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.auth import Principal, any_of, operator, provider
from catalog.errors import problem_responses
from catalog.idempotency import IdempotencyKey, idempotent
from catalog.metering import examples
from catalog.metering.schemas import IngestResult, UsageBatch, UsageReport
from catalog.metering.service import MeteringService
from catalog.openapi import request_examples

Granularity = Literal["day", "hour"]
Tz = Annotated[str, QueryParameter(max_length=64, description="IANA time zone; UTC by default")]


async def provide_metering_service(
    tx: NamedDependency[AsyncSession], caller: NamedDependency[Principal]
) -> MeteringService:
    return MeteringService(tx, caller)


class MeteringController(Controller):
    path = "/v1"
    tags = ["Metering"]
    dependencies = {"metering_service": Provide(provide_metering_service)}

    @post(
        "/usage-events",
        operation_id="IngestUsageEvents",
        guards=[any_of(provider("publisher"), operator("admin", "finance"))],
        status_code=200,
        summary="Report usage delivered outside Lode (≤ 1,000 events, idempotent per key)",
        description=(
            "Reports usage a provider delivered outside Lode (queries, rows returned, bytes downloaded) against "
            "licences of its products: up to 1,000 events, all checked before any is stored. Provider publishers, or "
            "operator admin or finance members. Each event is idempotent on its licence and `idempotency_key` (a "
            "repeat counts as a duplicate, another event under a used key as a conflict); an `Idempotency-Key` header "
            "replays the whole response."
        ),
        operation_class=request_examples(examples.INGEST_USAGE_EVENTS),
        responses=problem_responses(401, 403, 409, 422),
    )
    async def ingest(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[UsageBatch],
        metering_service: NamedDependency[MeteringService],
        caller: NamedDependency[Principal],
        tx: NamedDependency[AsyncSession],
        idempotency_key: IdempotencyKey = None,  # read by idempotent(); declared for the document
    ) -> Response[IngestResult]:
        async def run() -> Response[IngestResult]:
            return Response(await metering_service.ingest(data), status_code=200)

        return await idempotent(request, caller.org_id, tx, run)

    @get(
        "/licences/{licence_id:str}/usage",
        operation_id="GetLicenceUsage",
        summary="A licence's usage by day or hour, dimension and analyst (the parties)",
        description=(
            "A licence's metered usage summed per day or hour in the time zone `tz`, per dimension and analyst, from "
            "`since` to `until` (the last 30 days by default). The licence's parties and the operator; 404 otherwise."
        ),
        responses=problem_responses(401, 404),
    )
    async def licence_usage(
        self,
        licence_id: FromPath[str],
        metering_service: NamedDependency[MeteringService],
        granularity: FromQuery[Granularity] = "day",
        tz: Tz = "UTC",
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
    ) -> UsageReport:
        return await metering_service.report(licence_id, granularity, tz, since, until)

    @get(
        "/usage",
        operation_id="GetUsage",
        summary="Usage across the licences you are a party to",
        description=(
            "Usage summed as in GetLicenceUsage, across every licence the caller's organisation is a party to (the "
            "operator: all licences)."
        ),
        responses=problem_responses(401),
    )
    async def usage(
        self,
        metering_service: NamedDependency[MeteringService],
        granularity: FromQuery[Granularity] = "day",
        tz: Tz = "UTC",
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
    ) -> UsageReport:
        return await metering_service.report(None, granularity, tz, since, until)
