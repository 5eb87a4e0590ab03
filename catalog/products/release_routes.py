"""HTTP routes of releases: a version's dictionary and files, publish and withdraw."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.auth import ANYONE, Principal
from catalog.errors import problem_responses
from catalog.openapi import request_examples
from catalog.pagination import PageRequest
from catalog.products import examples
from catalog.products.releases import ReleaseService, publish, upload
from catalog.products.schemas import ReleaseCreate, ReleaseFileRead, ReleaseList, ReleaseRead, StatusChange

PUBLIC = {"public": True}


def _caller(request: Request[Any, Any, Any]) -> Principal | None:
    return request.scope.get("user")


async def provide_release_service(tx: NamedDependency[AsyncSession], request: Request[Any, Any, Any]) -> ReleaseService:
    return ReleaseService(tx, _caller(request), request.app.state.storage)


class ReleaseController(Controller):
    path = "/v1/products/{product_id:str}/releases"
    tags = ["Catalogue"]
    dependencies = {"release_service": Provide(provide_release_service)}

    @post(
        "/",
        operation_id="CreateRelease",
        summary="Start a release with its own dictionary",
        description=(
            "Starts a release in `draft` with its own data dictionary or, without one, a copy of the latest release's "
            "(else the product's) dictionary; 422 `dictionary_required` when there is none to copy. Members of the "
            "owning organisation with the publisher role; an existing version is 409 `version_exists`."
        ),
        operation_class=request_examples(examples.CREATE_RELEASE),
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def create(
        self,
        product_id: FromPath[str],
        data: JSONBody[ReleaseCreate],
        release_service: NamedDependency[ReleaseService],
    ) -> Response[ReleaseRead]:
        release = await release_service.create(product_id, data)
        location = f"/v1/products/{release.product_id}/releases/{release.version}"
        return Response(release, status_code=201, headers={"Location": location})

    @get(
        "/",
        operation_id="ListReleases",
        opt=PUBLIC,
        security=ANYONE,
        summary="Releases: metadata and dictionary, never the data",
        description=(
            "A product's releases, newest first: metadata, dictionary and files, never the data. Anyone sees the "
            "published and withdrawn releases of a listed product; the owning organisation and the operator also see "
            "drafts."
        ),
        responses=problem_responses(401, 404),
    )
    async def list_releases(
        self,
        product_id: FromPath[str],
        release_service: NamedDependency[ReleaseService],
        page: NamedDependency[PageRequest],
    ) -> ReleaseList:
        return await release_service.list(product_id, page)

    @get(
        "/{version:str}",
        operation_id="GetRelease",
        opt=PUBLIC,
        security=ANYONE,
        summary="A release: metadata, dictionary and files",
        description=(
            "One release: metadata, dictionary and its files' names, sizes and hashes. A draft is 404 to all but the "
            "product's owner and the operator."
        ),
        responses=problem_responses(401, 404),
    )
    async def get_release(
        self, product_id: FromPath[str], version: FromPath[str], release_service: NamedDependency[ReleaseService]
    ) -> ReleaseRead:
        return await release_service.get(product_id, version)

    @get(
        "/{version:str}/quality",
        operation_id="GetReleaseQuality",
        opt=PUBLIC,
        security=ANYONE,
        summary="A release's measured quality: conformance, completeness and plausibility checks",
        description=(
            "The quality report profiled when the release was published, immutable with it: per table, each check "
            "(conformance to the dictionary and the code standards it declares, completeness, plausibility) with its "
            "numerator, denominator, fraction, threshold and pass or fail; each category's score; and the drift "
            "from the previous published release. Only counts, never a row value. The owner and the operator see "
            'every count; anyone else sees a failing count under the grade\'s k as `"< k"`. 404 for a draft, or a '
            "release published before quality was measured."
        ),
        responses=problem_responses(401, 404),
    )
    async def get_quality(
        self, product_id: FromPath[str], version: FromPath[str], release_service: NamedDependency[ReleaseService]
    ) -> dict[str, Any]:
        return await release_service.quality(product_id, version)

    @put(
        "/{version:str}/files/{name:str}",
        operation_id="UploadReleaseFile",
        status_code=201,
        summary="Stream a CSV or Parquet file into a draft release ({name}.csv is table {name})",
        description=(
            "Streams the raw request body, a CSV or Parquet file, into a draft release as `{name}`; its stem names "
            "the dictionary table it holds (`visits.csv` is table `visits`). Members of the owning organisation with "
            "the publisher role; a file of the same name is replaced, a body over the upload limit is 413, and a "
            "release no longer in draft is 409 `release_frozen`."
        ),
        request_max_body_size=None,
        responses=problem_responses(401, 403, 404, 409, 413, 422),
    )
    async def upload_file(
        self,
        request: Request[Any, Any, State],
        product_id: FromPath[str],
        version: FromPath[str],
        name: FromPath[str],
    ) -> Response[ReleaseFileRead]:
        state = request.app.state
        stored = await upload(
            state.sessions,
            _caller(request),
            state.storage,
            product_id,
            version,
            name,
            request.stream(),
            state.settings.max_upload_bytes,
        )
        location = f"/v1/products/{product_id}/releases/{version}/files/{name}"
        return Response(stored, status_code=201, headers={"Location": location})

    @delete(
        "/{version:str}/files/{name:str}",
        operation_id="DeleteReleaseFile",
        summary="Remove a file from a draft release",
        description=(
            "Removes an uploaded file from a draft release; its bytes are deleted once the removal commits. Members "
            "of the owning organisation with the publisher role; 409 `release_frozen` once the release is published."
        ),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def delete_file(
        self,
        product_id: FromPath[str],
        version: FromPath[str],
        name: FromPath[str],
        release_service: NamedDependency[ReleaseService],
    ) -> None:
        await release_service.delete_file(product_id, version, name)

    @post(
        "/{version:str}/publish",
        operation_id="PublishRelease",
        status_code=200,
        summary="Check the files against the dictionary, write the tables and freeze the release",
        description=(
            "Checks that each dictionary table has exactly one file whose columns agree with it (409 "
            "`dictionary_mismatch` lists the problems), writes the tables and freezes the release as `published`, for "
            "the licences that cover it. Members of the owning organisation with the publisher role; a large release "
            "may take minutes."
        ),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def publish(
        self, request: Request[Any, Any, State], product_id: FromPath[str], version: FromPath[str]
    ) -> ReleaseRead:
        state = request.app.state
        return await publish(state.sessions, _caller(request), state.storage, product_id, version)

    @post(
        "/{version:str}/withdraw",
        operation_id="WithdrawRelease",
        status_code=200,
        summary="Make a release undeliverable (owner or operator)",
        description=(
            "Withdraws a published release, with a reason: it stays visible as withdrawn and is no longer delivered. "
            "The operator (curator, compliance or security members) or the owner's publishers; a release that is not "
            "published is 409 `invalid_transition`."
        ),
        operation_class=request_examples(examples.WITHDRAW_RELEASE),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def withdraw(
        self,
        product_id: FromPath[str],
        version: FromPath[str],
        data: JSONBody[StatusChange],
        release_service: NamedDependency[ReleaseService],
    ) -> ReleaseRead:
        return await release_service.withdraw(product_id, version, data.reason)
