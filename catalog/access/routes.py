"""HTTP routes of circulation: eligibility, applications and decisions, licences, block-lists,
and the public data-use register."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.access.blocklists import BlocklistService
from catalog.access.licences import LicenceService, register
from catalog.access.schemas import (
    ApplicationCreate,
    ApplicationList,
    ApplicationRead,
    ApplicationUpdate,
    BlocklistCreate,
    BlocklistEntryRead,
    BlocklistRead,
    Category,
    Decision,
    EligibilityRead,
    EthicsApproval,
    LicenceAccept,
    LicenceList,
    LicenceRead,
    LicenceReason,
    LicenceRevoke,
    RegisterRead,
    Track,
)
from catalog.access.service import ApplicationService, EligibilityQuery
from catalog.auth import ANYONE, Principal, consumer
from catalog.errors import FieldError, ValidationFailed, problem_responses
from catalog.pagination import PageRequest
from catalog.products.schemas import Region

ApplicationStatus = Literal["draft", "submitted", "under_review", "approved", "rejected", "returned", "withdrawn"]
ICD10 = re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?")
LicenceStatus = Literal[
    "pending_acceptance", "declined", "pending_payment", "active", "suspended", "expired", "revoked", "cancelled"
]


async def provide_application_service(
    tx: NamedDependency[AsyncSession], caller: NamedDependency[Principal]
) -> ApplicationService:
    return ApplicationService(tx, caller)


async def provide_licence_service(
    tx: NamedDependency[AsyncSession], caller: NamedDependency[Principal]
) -> LicenceService:
    return LicenceService(tx, caller)


async def provide_blocklist_service(
    tx: NamedDependency[AsyncSession], caller: NamedDependency[Principal]
) -> BlocklistService:
    return BlocklistService(tx, caller)


class ApplicationController(Controller):
    path = "/v1"
    tags = ["Circulation"]
    dependencies = {"application_service": Provide(provide_application_service)}

    @get(
        "/products/{product_id:str}/eligibility",
        operation_id="CheckEligibility",
        guards=[consumer("buyer", "analyst")],
        summary="Every blocker to licensing this product for a declared use",
        responses=problem_responses(401, 403, 404),
    )
    async def eligibility(
        self,
        product_id: FromPath[str],
        application_service: NamedDependency[ApplicationService],
        category: FromQuery[Category | None] = None,
        commercial: FromQuery[bool | None] = None,
        disease_codes: Annotated[
            str | None, QueryParameter(max_length=500, description="ICD-10, comma-separated")
        ] = None,
        territory: FromQuery[Region | None] = None,
        plan_id: Annotated[str | None, QueryParameter(max_length=40)] = None,
        months: Annotated[int | None, QueryParameter(ge=1, le=600)] = None,
        ethics_expires_on: FromQuery[date | None] = None,
        project_reference: Annotated[str | None, QueryParameter(max_length=80)] = None,
    ) -> EligibilityRead:
        codes = [c.strip().upper() for c in (disease_codes or "").split(",") if c.strip()]
        wrong = [c for c in codes if not _icd10(c)]
        if wrong:
            raise ValidationFailed(
                f"disease_codes: {', '.join(wrong)} are not ICD-10 codes",
                errors=[FieldError("disease_codes", "use ICD-10 codes such as E11,E10")],
            )
        query = EligibilityQuery(
            category=category,
            commercial=commercial,
            disease_codes=codes,
            territory=territory,
            plan_id=plan_id,
            months=months,
            ethics_expires_on=ethics_expires_on,
            project_reference=project_reference,
        )
        return await application_service.eligibility(product_id, query)

    @post(
        "/applications",
        operation_id="CreateApplication",
        guards=[consumer("buyer")],
        summary="Draft an application for access",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def create(
        self, data: JSONBody[ApplicationCreate], application_service: NamedDependency[ApplicationService]
    ) -> Response[ApplicationRead]:
        app = await application_service.create(data)
        return Response(app, status_code=201, headers={"Location": f"/v1/applications/{app.id}"})

    @get(
        "/applications",
        operation_id="ListApplications",
        summary="Applications: consumers their own, providers for their products, the operator all",
        responses=problem_responses(401),
    )
    async def list_applications(
        self,
        application_service: NamedDependency[ApplicationService],
        page: NamedDependency[PageRequest],
        status: FromQuery[ApplicationStatus | None] = None,
        product_id: Annotated[
            str | None, QueryParameter(max_length=120, description="The product's id or slug")
        ] = None,
    ) -> ApplicationList:
        return await application_service.list(page, status, product_id)

    @get(
        "/applications/{app_id:str}",
        operation_id="GetApplication",
        summary="An application with its tracks",
        responses=problem_responses(401, 404),
    )
    async def get_application(
        self, app_id: FromPath[str], application_service: NamedDependency[ApplicationService]
    ) -> ApplicationRead:
        return await application_service.get(app_id)

    @patch(
        "/applications/{app_id:str}",
        operation_id="UpdateApplication",
        guards=[consumer("buyer")],
        summary="Edit a draft or returned application",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def update(
        self,
        app_id: FromPath[str],
        data: JSONBody[ApplicationUpdate],
        application_service: NamedDependency[ApplicationService],
    ) -> ApplicationRead:
        return await application_service.update(app_id, data)

    @post(
        "/applications/{app_id:str}/submit",
        operation_id="SubmitApplication",
        status_code=200,
        guards=[consumer("buyer")],
        summary="Run eligibility and open the review tracks the grade requires",
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def submit(
        self, app_id: FromPath[str], application_service: NamedDependency[ApplicationService]
    ) -> ApplicationRead:
        return await application_service.submit(app_id)

    @post(
        "/applications/{app_id:str}/withdraw",
        operation_id="WithdrawApplication",
        status_code=200,
        guards=[consumer("buyer")],
        summary="Withdraw an application",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def withdraw(
        self, app_id: FromPath[str], application_service: NamedDependency[ApplicationService]
    ) -> ApplicationRead:
        return await application_service.withdraw(app_id)

    @post(
        "/applications/{app_id:str}/tracks/{track:str}/decision",
        operation_id="DecideTrack",
        status_code=200,
        summary="Decide a review track (its role only)",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def decide(
        self,
        app_id: FromPath[str],
        track: FromPath[Track],
        data: JSONBody[Decision],
        application_service: NamedDependency[ApplicationService],
    ) -> ApplicationRead:
        return await application_service.decide(app_id, track, data)


class LicenceController(Controller):
    path = "/v1/licences"
    tags = ["Circulation"]
    dependencies = {"licence_service": Provide(provide_licence_service)}

    @get("/", operation_id="ListLicences", summary="Licences you are a party to", responses=problem_responses(401))
    async def list_licences(
        self,
        licence_service: NamedDependency[LicenceService],
        page: NamedDependency[PageRequest],
        status: FromQuery[LicenceStatus | None] = None,
        product_id: Annotated[
            str | None, QueryParameter(max_length=120, description="The product's id or slug")
        ] = None,
    ) -> LicenceList:
        return await licence_service.list(page, status, product_id)

    @get(
        "/{licence_id:str}",
        operation_id="GetLicence",
        summary="A licence: status, holds, pinned terms, term, modes",
        responses=problem_responses(401, 404),
    )
    async def get_licence(
        self, licence_id: FromPath[str], licence_service: NamedDependency[LicenceService]
    ) -> LicenceRead:
        return await licence_service.get(licence_id)

    @post(
        "/{licence_id:str}/accept",
        operation_id="AcceptLicence",
        status_code=200,
        summary="Accept the pinned terms (echo their hash)",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def accept(
        self, licence_id: FromPath[str], data: JSONBody[LicenceAccept], licence_service: NamedDependency[LicenceService]
    ) -> LicenceRead:
        return await licence_service.accept(licence_id, data.terms_sha256)

    @post(
        "/{licence_id:str}/decline",
        operation_id="DeclineLicence",
        status_code=200,
        summary="Decline a licence",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def decline(self, licence_id: FromPath[str], licence_service: NamedDependency[LicenceService]) -> LicenceRead:
        return await licence_service.decline(licence_id)

    @post(
        "/{licence_id:str}/suspend",
        operation_id="SuspendLicence",
        status_code=200,
        summary="Hold a licence (operator, or the provider for its products)",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def suspend(
        self, licence_id: FromPath[str], data: JSONBody[LicenceReason], licence_service: NamedDependency[LicenceService]
    ) -> LicenceRead:
        return await licence_service.suspend(licence_id, data.reason)

    @post(
        "/{licence_id:str}/reinstate",
        operation_id="ReinstateLicence",
        status_code=200,
        summary="Lift your own hold",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def reinstate(
        self, licence_id: FromPath[str], data: JSONBody[LicenceReason], licence_service: NamedDependency[LicenceService]
    ) -> LicenceRead:
        return await licence_service.reinstate(licence_id, data.reason)

    @post(
        "/{licence_id:str}/revoke",
        operation_id="RevokeLicence",
        status_code=200,
        summary="Revoke a licence, optionally block-listing the consumer",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def revoke(
        self, licence_id: FromPath[str], data: JSONBody[LicenceRevoke], licence_service: NamedDependency[LicenceService]
    ) -> LicenceRead:
        return await licence_service.revoke(licence_id, data.reason, data.block_org)

    @post(
        "/{licence_id:str}/ethics-approval",
        operation_id="RenewEthicsApproval",
        status_code=200,
        summary="Record a renewed ethics approval (lifts the ethics hold)",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def renew_ethics(
        self,
        licence_id: FromPath[str],
        data: JSONBody[EthicsApproval],
        licence_service: NamedDependency[LicenceService],
    ) -> LicenceRead:
        return await licence_service.renew_ethics(licence_id, data)


class BlocklistController(Controller):
    path = "/v1/orgs/{org_id:str}/blocklist"
    tags = ["Circulation"]
    dependencies = {"blocklist_service": Provide(provide_blocklist_service)}

    @get(
        "/",
        operation_id="ListBlocklist",
        summary="A provider's or the platform's block-list",
        responses=problem_responses(401, 403, 404),
    )
    async def list_entries(
        self,
        org_id: FromPath[str],
        blocklist_service: NamedDependency[BlocklistService],
        page: NamedDependency[PageRequest],
    ) -> BlocklistRead:
        return await blocklist_service.list(org_id, page)

    @post(
        "/",
        operation_id="BlockOrg",
        summary="Block an organisation (its licences are held)",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def add(
        self,
        org_id: FromPath[str],
        data: JSONBody[BlocklistCreate],
        blocklist_service: NamedDependency[BlocklistService],
    ) -> Response[BlocklistEntryRead]:
        entry = await blocklist_service.add(org_id, data)
        return Response(entry, status_code=201, headers={"Location": f"/v1/orgs/{org_id}/blocklist/{data.org_id}"})

    @delete(
        "/{blocked_org_id:str}",
        operation_id="UnblockOrg",
        summary="Unblock (lifts only this list's holds)",
        responses=problem_responses(401, 403, 404),
    )
    async def remove(
        self, org_id: FromPath[str], blocked_org_id: FromPath[str], blocklist_service: NamedDependency[BlocklistService]
    ) -> None:
        await blocklist_service.remove(org_id, blocked_org_id)


class RegisterController(Controller):
    path = "/v1/register"
    tags = ["Circulation"]

    @get(
        "/",
        operation_id="GetRegister",
        opt={"public": True},
        security=ANYONE,
        summary="The public data-use register: who uses which product for what, in public words",
        responses=problem_responses(),
    )
    async def register(self, tx: NamedDependency[AsyncSession], page: NamedDependency[PageRequest]) -> RegisterRead:
        return await register(tx, page)


def _icd10(code: str) -> bool:
    return ICD10.fullmatch(code) is not None
