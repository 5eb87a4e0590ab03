"""HTTP routes of circulation: eligibility, applications and decisions, licences, block-lists,
and the public data-use register."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.access import examples
from catalog.access.schemas import (
    ApplicationCreate,
    ApplicationList,
    ApplicationRead,
    ApplicationUpdate,
    Category,
    Decision,
    EligibilityRead,
    Track,
)
from catalog.access.service import ApplicationService, EligibilityQuery
from catalog.auth import Principal, consumer
from catalog.errors import FieldError, ValidationFailed, problem_responses
from catalog.idempotency import IdempotencyKey, idempotent
from catalog.openapi import request_examples
from catalog.pagination import PageRequest
from catalog.products.schemas import Region

ApplicationStatus = Literal["draft", "submitted", "under_review", "approved", "rejected", "returned", "withdrawn"]
ICD10 = re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?")


async def provide_application_service(
    tx: NamedDependency[AsyncSession], caller: NamedDependency[Principal]
) -> ApplicationService:
    return ApplicationService(tx, caller)


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


def _icd10(code: str) -> bool:
    return ICD10.fullmatch(code) is not None
