"""HTTP routes of delivery: files, queries and the ε budget of a licence.

A download is a ``connection.MeteredStream``: metered in the bytes the server took for the client,
settled once however the response ends. A query is cancelled when its client goes away
(``connection.until_client_leaves``). ``Accept`` picks a rows answer's format: JSON, or one page as
CSV or Parquet, with what the JSON answer says beside its rows in ``Lode-*`` headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Accept, State
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIHeader, OpenAPIMediaType, OpenAPIResponse, Operation, Schema
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import audit, auth
from catalog.auth import Principal
from catalog.delivery import auditor, examples, formats, paging
from catalog.delivery.connection import MeteredStream, until_client_leaves
from catalog.delivery.downloads import DownloadService, range_applies
from catalog.delivery.schemas import BudgetRead, FileList, QueryAnswer, QueryFile, QueryRequest
from catalog.delivery.service import DeliveryService
from catalog.errors import ValidationFailed, problem_responses
from catalog.openapi import request_examples
from catalog.pagination import MAX_LIMIT

JSON = "application/json"
PAGE_HEADERS = {
    "Lode-Release": "The release the rows come from.",
    "Lode-Rows": "How many rows the file holds.",
    "Lode-Truncated": "true when more rows match than the file holds.",
    "Lode-Next-Cursor": "Present when truncated: send it back as `cursor` for the next page.",
}


async def provide_delivery_service(
    request: Request[Any, Any, State], caller: NamedDependency[Principal]
) -> DeliveryService:
    state = request.app.state
    settings = state.settings
    return DeliveryService(
        state.sessions,
        state.storage,
        caller,
        noise=state.noise,
        timeout_s=settings.query_timeout_s,
        cursor_key=paging.cursor_key(settings.key_pepper),
    )


@dataclass
class QueryOperation(Operation):
    """The query's 200 also comes as CSV or Parquet (rows answers), with the page in headers."""

    def __post_init__(self) -> None:
        answer = self.responses["200"] if self.responses else None
        if isinstance(answer, OpenAPIResponse) and answer.content is not None:
            binary = Schema(type="string", format="binary")  # type: ignore[arg-type]
            for media_type in formats.MEDIA_TYPES.values():
                answer.content[media_type] = OpenAPIMediaType(schema=binary)
            answer.headers = {
                name: OpenAPIHeader(schema=Schema(type="string"), description=text)  # type: ignore[arg-type]
                for name, text in PAGE_HEADERS.items()
            }
            answer.description = (
                "The answer. A rows answer is one page: `truncated` says more rows match, and `next_cursor` "
                "continues it. With `Accept: text/csv` or `application/vnd.apache.parquet` the page comes as "
                "a file, and the Lode-* headers carry the rest (rows answers only; else 406)."
            )


async def provide_download_service(
    request: Request[Any, Any, State], caller: NamedDependency[Principal]
) -> DownloadService:
    state = request.app.state
    return DownloadService(state.sessions, state.storage, caller, timeout_s=state.settings.query_timeout_s)


class DeliveryController(Controller):
    path = "/v1/licences/{licence_id:str}"
    tags = ["Delivery"]
    dependencies = {
        "delivery_service": Provide(provide_delivery_service),
        "download_service": Provide(provide_download_service),
    }

    @get(
        "/files",
        operation_id="ListLicenceFiles",
        summary="Files this licence may download (named analysts)",
        description=(
            "The files of the published releases this licence covers. Analysts of the consumer (those the licence "
            "names, where it names them) while the licence is usable and its grade and plan allow downloads (L1 and "
            "L2); each refusal is 403 with its reason as `code`, and a licence the caller is no party to is 404."
        ),
        responses=problem_responses(401, 403, 404),
    )
    async def files(self, licence_id: FromPath[str], download_service: NamedDependency[DownloadService]) -> FileList:
        return await download_service.files(licence_id)

    @get(
        "/files/{name:str}",
        operation_id="DownloadLicenceFile",
        media_type="application/octet-stream",
        summary="Stream a file (ETag = sha256; one byte range; metered in bytes sent)",
        description=(
            "Streams one file of a covered release (the newest published one unless `release` names another), "
            "reserved against the licence's caps and metered in the bytes actually sent. One byte range is supported "
            "(`Range: bytes=a-b`; else 416), honoured under `If-Range` only while that names the current ETag (else "
            "the whole file comes, 200), and the ETag is the file's SHA-256. The same callers and refusals as "
            "ListLicenceFiles."
        ),
        responses=problem_responses(401, 403, 404, 409, 416),
    )
    async def download(
        self,
        request: Request[Any, Any, State],
        licence_id: FromPath[str],
        name: FromPath[str],
        download_service: NamedDependency[DownloadService],
        release: Annotated[str | None, QueryParameter(max_length=40)] = None,
    ) -> Response[Any]:
        range_header, if_range = request.headers.get("range"), request.headers.get("if-range")
        about, chunks, settle = await download_service.open_download(licence_id, name, release, range_header, if_range)
        ranged = range_applies(range_header, if_range, about.sha256)
        headers = {
            "ETag": f'"{about.sha256}"',
            "Accept-Ranges": "bytes",
            "Content-Length": str(about.end - about.start + 1),
            "Content-Disposition": f'attachment; filename="{about.name}"',
            "Content-Type": about.media_type,  # Stream would take the route's octet-stream over its own
        }
        if ranged:
            headers["Content-Range"] = f"bytes {about.start}-{about.end}/{about.size}"
        return MeteredStream(
            chunks, on_end=settle, status_code=206 if ranged else 200, headers=headers, media_type=about.media_type
        )

    @post(
        "/query",
        operation_id="QueryLicence",
        status_code=200,
        summary="Rows, aggregates under disclosure control, or DP aggregates — as the grade allows",
        description=(
            "At L4 aggregates are anonymised: every released value carries sticky noise whose SD the answer "
            "gives (`noise_sd`); conditions that move too few persons are answered as absent (`low_effect`); "
            "ranges snap to a 1/2/5 × 10ⁿ grid, or to months for dates (`snapped`); cells under a fuzzy "
            "threshold are withheld, never refused (L4 never answers `query_set_too_small`). `<`, `<=`, `>`, "
            "`>=`, `count` with a field and more than ten conditions are refused on the text (400), and "
            "filtering or grouping by a column that singles persons out, as measured at publish, is 403 "
            "`isolating_column`; each licence has a daily cap on L4 queries (429 `daily_query_limit`, with "
            "`Retry-After`). Row answers cut at their limit say `truncated` and give a `next_cursor` for the "
            "next page of the same query on the same release (400 `invalid_cursor` or `cursor_mismatch` "
            "otherwise); `Accept: text/csv` or `application/vnd.apache.parquet` returns rows as a file, and "
            "an aggregate asked for as a file is 406 `not_acceptable`."
        ),
        responses=problem_responses(401, 403, 404, 406, 409, 422, 429),
        operation_class=request_examples(examples.QUERY, base=QueryOperation),
    )
    async def query(
        self,
        request: Request[Any, Any, State],
        licence_id: FromPath[str],
        data: JSONBody[QueryRequest],
        delivery_service: NamedDependency[DeliveryService],
    ) -> QueryAnswer:
        best = Accept(request.headers.get("accept") or JSON).best_match([JSON, *formats.MEDIA_TYPES.values()], JSON)
        as_file = next((f for f, media in formats.MEDIA_TYPES.items() if media == best), None)
        answer = await until_client_leaves(request, delivery_service.query(licence_id, data, as_file))
        if not isinstance(answer, QueryFile):
            return answer
        headers = {
            "Content-Disposition": f'attachment; filename="{answer.filename}"',
            "Lode-Release": answer.release,
            "Lode-Rows": str(answer.rows),
            "Lode-Truncated": "true" if answer.truncated else "false",
        }
        if answer.next_cursor is not None:
            headers["Lode-Next-Cursor"] = answer.next_cursor
        # A file is a Response, not the QueryAnswer the signature (and so the JSON schema) names.
        return Response(answer.content, media_type=answer.media_type, headers=headers)  # type: ignore[return-value]

    @get(
        "/budget",
        operation_id="GetEpsilonBudget",
        summary="The ε budget of the licensee for this product: total, spent, left (the parties)",
        description=(
            "The differential-privacy ε budget the licensee organisation has for this product, shared by its licences "
            "to it: total, spent, left and the most one query may spend (zero below L5). The licence's parties and "
            "the operator; 404 otherwise."
        ),
        responses=problem_responses(401, 404),
    )
    async def budget(self, licence_id: FromPath[str], delivery_service: NamedDependency[DeliveryService]) -> BudgetRead:
        return await delivery_service.budget(licence_id)


class QueryAlertController(Controller):
    """What the offline auditor (``auditor.py``) flagged in the anonymised query log."""

    path = "/v1/query-alerts"
    tags = ["Delivery"]
    guards = [auth.operator("security")]

    @get(
        "/",
        operation_id="ListQueryAlerts",
        summary="Query patterns the auditor flagged on L4 licences, newest first (operator security)",
        description=(
            "Each alert is an audit event `licence.queries_flagged`: the licence (`subject_id`), and in `data` "
            "the analyst, the pattern (`differencing`, `low_effect`, `split_averaging`, `padding`), how often it "
            "was seen in the window against its threshold, and the audit seqs of example queries. Alerts never "
            "refuse a query; they are for people to look at."
        ),
        responses=problem_responses(401, 403),
    )
    async def list_alerts(
        self,
        tx: NamedDependency[AsyncSession],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 50,
        cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
        licence_id: Annotated[str | None, QueryParameter(max_length=40)] = None,
    ) -> audit.AuditList:
        if cursor is not None and not (cursor.isdigit() and len(cursor) <= 18):
            raise ValidationFailed.field("cursor", "is not a cursor returned by this list")
        return await audit.list_events(
            tx,
            org_id=None,
            limit=limit,
            before_seq=int(cursor) if cursor else None,
            action=auditor.FLAGGED,
            subject_id=licence_id,
        )
