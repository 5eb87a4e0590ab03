"""Routes of licences — offered, accepted, renewed, suspended, revoked — the block-lists that hold
them, and the public data-use register."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.access import examples
from catalog.access.blocklists import BlocklistService
from catalog.access.licences import LicenceService
from catalog.access.register import register
from catalog.access.renewal import RenewalService
from catalog.access.schemas import (
    BlocklistCreate,
    BlocklistEntryRead,
    BlocklistRead,
    EthicsApproval,
    LicenceAccept,
    LicenceList,
    LicenceRead,
    LicenceReason,
    LicenceRevoke,
    RegisterRead,
    RenewalRead,
)
from catalog.auth import ANYONE, Principal
from catalog.errors import problem_responses
from catalog.idempotency import IdempotencyKey, idempotent
from catalog.openapi import request_examples
from catalog.pagination import PageRequest

LicenceStatus = Literal[
    "pending_acceptance", "declined", "pending_payment", "active", "suspended", "expired", "revoked", "cancelled"
]


async def provide_licence_service(
    tx: NamedDependency[AsyncSession], caller: NamedDependency[Principal]
) -> LicenceService:
    return LicenceService(tx, caller)


async def provide_renewal_service(
    tx: NamedDependency[AsyncSession], caller: NamedDependency[Principal]
) -> RenewalService:
    return RenewalService(tx, caller)


async def provide_blocklist_service(
    tx: NamedDependency[AsyncSession], caller: NamedDependency[Principal]
) -> BlocklistService:
    return BlocklistService(tx, caller)


class LicenceController(Controller):
    path = "/v1/licences"
    tags = ["Circulation"]
    dependencies = {
        "licence_service": Provide(provide_licence_service),
        "renewal_service": Provide(provide_renewal_service),
    }

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
        "/{licence_id:str}/renew",
        operation_id="RenewLicence",
        summary="Renew a licence (a new licence following on from it)",
        description=(
            "Asks for a new licence of the same application following on from this one: before its end (starting "
            "the day after) or up to 30 days after (starting today). It pins the product's current terms and "
            "revenue-share rule and this licence's plan. Under unchanged terms the request accepts it: a free plan "
            "is `active` at once, a priced one `pending_payment` (pay through CheckoutLicence); under changed terms "
            "it is `pending_acceptance` (AcceptLicence with the new hash). 201 `offered` with the licence. When the "
            "product now requires review tracks the application was not approved on, only those reopen: 202 "
            "`in_review`, and their approval issues the renewal. Consumer members with the buyer role. 409 "
            "`not_renewable` (revoked, declined, cancelled, pending, or expired more than 30 days ago), "
            "`already_renewed` (with `renewal_id`), `renewal_in_review`, `plan_unavailable`, "
            "`product_not_available`, or `renewal_blocked` (with the eligibility `blockers`). Send an "
            "`Idempotency-Key` to retry safely."
        ),
        responses={
            202: ResponseSpec(
                data_container=RenewalRead,
                description="The renewal waits on the review tracks reopened (`in_review`)",
                generate_examples=False,
            ),
            **problem_responses(401, 403, 404, 409),
        },
    )
    async def renew(
        self,
        request: Request[Any, Any, Any],
        licence_id: FromPath[str],
        renewal_service: NamedDependency[RenewalService],
        caller: NamedDependency[Principal],
        tx: NamedDependency[AsyncSession],
        idempotency_key: IdempotencyKey = None,  # read by idempotent(); declared for the document
    ) -> Response[RenewalRead]:
        async def run() -> Response[RenewalRead]:
            renewal = await renewal_service.renew(licence_id)
            if renewal.licence is None:
                location = f"/v1/applications/{renewal.application_id}"
                return Response(renewal, status_code=202, headers={"Location": location})
            return Response(renewal, status_code=201, headers={"Location": f"/v1/licences/{renewal.licence.id}"})

        return await idempotent(request, caller.org_id, tx, run)

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
