"""HTTP routes of circulation: eligibility, applications and decisions, licences, block-lists,
and the public data-use register."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.access import examples
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
from catalog.idempotency import IdempotencyKey, idempotent
from catalog.openapi import request_examples
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
        description=(
            "Evaluates, without creating anything, whether the caller's organisation could license this product for "
            "the use described, and lists every blocker with its code (verification, jurisdiction, block-lists, the "
            "terms' use conditions, plan, term, ethics approval). Consumer members with the buyer or analyst role; a "
            "product that is not listed is 404."
        ),
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
        description=(
            "Drafts an application to use a listed product under one of its plans, with purpose, project, analysts "
            "and ethics approval; nothing is reviewed until SubmitApplication. Consumer members with the buyer role; "
            "analysts must be members with the analyst role, and from L3 the analysts are named and a public summary "
            "is required (400 `validation_error`). Send an `Idempotency-Key` to retry safely: a replay answers the "
            "application the first request drafted."
        ),
        operation_class=request_examples(examples.CREATE_APPLICATION),
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[ApplicationCreate],
        application_service: NamedDependency[ApplicationService],
        caller: NamedDependency[Principal],
        tx: NamedDependency[AsyncSession],
        idempotency_key: IdempotencyKey = None,  # read by idempotent(); declared for the document
    ) -> Response[ApplicationRead]:
        async def run() -> Response[ApplicationRead]:
            app = await application_service.create(data)
            return Response(app, status_code=201, headers={"Location": f"/v1/applications/{app.id}"})

        return await idempotent(request, caller.org_id, tx, run)

    @get(
        "/applications",
        operation_id="ListApplications",
        summary="Applications: consumers their own, providers for their products, the operator all",
        description=(
            "Applications newest first: a consumer sees its own, a provider those for its products, the operator all. "
            "Filter by `status` or `product_id` (id or slug)."
        ),
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
        description=(
            "An application with its review tracks and, once approved, its licence's id. The applicant, the product's "
            "owner and the operator may read it; to anyone else it is 404."
        ),
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
        description=(
            "Changes the fields given of the caller's own application while it is `draft` or `returned` (consumer "
            "members with the buyer role); in any other status 409 `invalid_transition`. Another organisation's "
            "application is 404."
        ),
        operation_class=request_examples(examples.UPDATE_APPLICATION),
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
        description=(
            "Checks eligibility (422 `ineligible` lists the blockers) and opens the review tracks the grade requires: "
            "none at L1 and L2, where the licence is issued at once; provider, ethics and compliance at L3, plus "
            "security at L4 and operator at L5. A returned application reopens only the tracks not approved. Consumer "
            "members with the buyer role, for their own application."
        ),
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
        description=(
            "Withdraws the caller's own application before its decision (`draft`, `submitted`, `under_review` or "
            "`returned`); its pending review tracks are cancelled. Consumer members with the buyer role."
        ),
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
        description=(
            "Decides one review track: `approve`, `approve_with_conditions` (with conditions, copied onto the "
            "licence), `reject` or `return` (both with a comment). Only a holder of the track's own role decides it "
            "(the owner's reviewer for `provider`; the operator's ethics, security, compliance or admin member for "
            "the others), and one person decides at most one track of an application (409 `four_eyes`). All tracks "
            "approved issues the licence; a reject closes the application."
        ),
        operation_class=request_examples(examples.DECIDE_TRACK),
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

    @get(
        "/",
        operation_id="ListLicences",
        summary="Licences you are a party to",
        description=(
            "Licences the caller's organisation is a party to (as consumer, owner or a provider in the revenue "
            "share), newest first; the operator sees all. Filter by `status` or `product_id` (id or slug)."
        ),
        responses=problem_responses(401),
    )
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
        description=(
            "A licence: status and holds, pinned terms and revenue-share versions, term, caps, modes and the "
            "reviewers' conditions. Its parties and the operator; any other caller gets 404."
        ),
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
        description=(
            "Accepts a `pending_acceptance` licence by echoing the `terms_sha256` it pins (409 `terms_mismatch` if it "
            "differs). Consumer members with the buyer role. A free licence becomes `active` at once; a priced one "
            "`pending_payment`, with 30 days to pay through CheckoutLicence."
        ),
        operation_class=request_examples(examples.ACCEPT_LICENCE),
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
        description=(
            "Declines a `pending_acceptance` licence, which ends it. Consumer members with the buyer role; in any "
            "other status 409 `invalid_transition`."
        ),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def decline(self, licence_id: FromPath[str], licence_service: NamedDependency[LicenceService]) -> LicenceRead:
        return await licence_service.decline(licence_id)

    @post(
        "/{licence_id:str}/suspend",
        operation_id="SuspendLicence",
        status_code=200,
        summary="Hold a licence (operator, or the provider for its products)",
        description=(
            "Puts the caller's side's hold on an open licence, with a reason; a licence is suspended while any hold "
            "remains. Operator members with the compliance or security role, or the owning provider's reviewers and "
            "publishers; holding it twice is 409 `already_held`."
        ),
        operation_class=request_examples(examples.SUSPEND_LICENCE),
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
        description=(
            "Lifts the hold the caller's side set (the operator's, or the owning provider's), never another; the "
            "licence is active again once no hold remains. The same callers as SuspendLicence; 409 `no_such_hold` "
            "when there is none of theirs."
        ),
        operation_class=request_examples(examples.REINSTATE_LICENCE),
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
        description=(
            "Ends an active or suspended licence for good, with a reason; with `block_org` the consumer also goes on "
            "the caller's organisation's block-list, which needs its admin. Operator members with the compliance or "
            "security role, or the owning provider's reviewers and publishers."
        ),
        operation_class=request_examples(examples.REVOKE_LICENCE),
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
        description=(
            "Records a renewed ethics approval for the licence and lifts the hold an expired approval set. Consumer "
            "members with the buyer role; an approval that has already expired is 409 `ethics_approval_expired`."
        ),
        operation_class=request_examples(examples.RENEW_ETHICS_APPROVAL),
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
        description=(
            "The organisations on a provider's block-list, or on the platform's (the operator's). The list "
            "organisation's admin or the operator's admin; consumers keep none (403), and another organisation's list "
            "is 404."
        ),
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
        description=(
            "Puts a consumer organisation on the list: eligibility refuses it, and its open licences the list "
            "concerns (the provider's products; every product for the platform's list) get an `org_blocked` hold. The "
            "list organisation's admin or the operator's admin; 409 `already_blocked` if it is on the list."
        ),
        operation_class=request_examples(examples.BLOCK_ORG),
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
        description=(
            "Takes an organisation off the list, lifting only the holds this list set. The list organisation's admin "
            "or the operator's admin; 404 when it is not on the list."
        ),
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
        description=(
            "The public data-use register, newest first: which organisation uses which product, for which category of "
            "purpose and when, with the applicant's public summary, never the confidential project. Public: no key "
            "needed."
        ),
        responses=problem_responses(),
    )
    async def register(self, tx: NamedDependency[AsyncSession], page: NamedDependency[PageRequest]) -> RegisterRead:
        return await register(tx, page)


def _icd10(code: str) -> bool:
    return ICD10.fullmatch(code) is not None
