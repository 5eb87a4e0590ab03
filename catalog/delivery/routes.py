"""HTTP routes of delivery: files, queries and the ε budget of a licence."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Stream

from catalog.auth import Principal
from catalog.delivery.schemas import BudgetRead, FileList, QueryAnswer, QueryRequest
from catalog.delivery.service import DeliveryService
from catalog.errors import problem_responses


async def provide_delivery_service(
    request: Request[Any, Any, State], caller: NamedDependency[Principal]
) -> DeliveryService:
    state = request.app.state
    return DeliveryService(state.sessions, state.storage, caller, timeout_s=state.settings.query_timeout_s)


class DeliveryController(Controller):
    path = "/v1/licences/{licence_id:str}"
    tags = ["Delivery"]
    dependencies = {"delivery_service": Provide(provide_delivery_service)}

    @get(
        "/files",
        operation_id="ListLicenceFiles",
        summary="Files this licence may download (named analysts)",
        responses=problem_responses(401, 403, 404),
    )
    async def files(self, licence_id: FromPath[str], delivery_service: NamedDependency[DeliveryService]) -> FileList:
        return await delivery_service.files(licence_id)

    @get(
        "/files/{name:str}",
        operation_id="DownloadLicenceFile",
        media_type="application/octet-stream",
        summary="Stream a file (ETag = sha256; one byte range; metered in bytes sent)",
        responses=problem_responses(401, 403, 404, 409, 416),
    )
    async def download(
        self,
        request: Request[Any, Any, State],
        licence_id: FromPath[str],
        name: FromPath[str],
        delivery_service: NamedDependency[DeliveryService],
        release: Annotated[str | None, QueryParameter(max_length=40)] = None,
    ) -> Response[Any]:
        ranged = request.headers.get("range")
        about, chunks = await delivery_service.open_download(licence_id, name, release, ranged)
        headers = {
            "ETag": f'"{about.sha256}"',
            "Accept-Ranges": "bytes",
            "Content-Length": str(about.end - about.start + 1),
            "Content-Disposition": f'attachment; filename="{about.name}"',
            "Content-Type": about.media_type,  # Stream would take the route's octet-stream over its own
        }
        if ranged:
            headers["Content-Range"] = f"bytes {about.start}-{about.end}/{about.size}"
        return Stream(chunks, status_code=206 if ranged else 200, headers=headers, media_type=about.media_type)

    @post(
        "/query",
        operation_id="QueryLicence",
        status_code=200,
        summary="Rows, aggregates under disclosure control, or DP aggregates — as the grade allows",
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def query(
        self,
        licence_id: FromPath[str],
        data: JSONBody[QueryRequest],
        delivery_service: NamedDependency[DeliveryService],
    ) -> QueryAnswer:
        return await delivery_service.query(licence_id, data)

    @get(
        "/budget",
        operation_id="GetEpsilonBudget",
        summary="The ε budget of the licensee for this product: total, spent, left (the parties)",
        responses=problem_responses(401, 404),
    )
    async def budget(self, licence_id: FromPath[str], delivery_service: NamedDependency[DeliveryService]) -> BudgetRead:
        return await delivery_service.budget(licence_id)
