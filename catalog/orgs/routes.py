"""HTTP routes for identity and tenancy: thin — parse, call the service, answer."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.auth import Principal, operator
from catalog.errors import problem_responses
from catalog.idempotency import IdempotencyKey, idempotent
from catalog.openapi import request_examples
from catalog.orgs import examples
from catalog.orgs.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    MemberCreate,
    MemberList,
    MemberRead,
    MemberUpdate,
    MeRead,
    OrgCreate,
    OrgList,
    OrgRead,
    OrgVerify,
)
from catalog.orgs.service import OrgService
from catalog.pagination import PageRequest


async def provide_org_service(tx: NamedDependency[AsyncSession], request: Request[Any, Any, Any]) -> OrgService:
    state = request.app.state
    return OrgService(tx, request.scope.get("user"), state.settings.key_pepper, state.org_hooks)


class OrgController(Controller):
    path = "/v1"
    tags = ["Identity"]
    dependencies = {"org_service": Provide(provide_org_service)}

    @get(
        "/me",
        operation_id="GetMe",
        summary="Who am I: user, organisation and roles",
        description=(
            "The caller as its API key identifies it: the user, their organisation (with its verification status) and "
            "their roles in it. Any valid key may call it."
        ),
        responses=problem_responses(401),
    )
    async def get_me(self, org_service: NamedDependency[OrgService]) -> MeRead:
        return await org_service.me()

    @post(
        "/orgs",
        operation_id="CreateOrg",
        summary="Register an organisation (operator admin)",
        description=(
            "Registers a provider, consumer or (once only) operator organisation; it starts `pending` until an "
            "operator admin verifies it. Operator admins only. Send an `Idempotency-Key` to retry safely; a taken "
            "slug is 409 `slug_taken`, a second operator 409 `operator_exists`."
        ),
        operation_class=request_examples(examples.CREATE_ORG),
        guards=[operator("admin")],
        responses=problem_responses(401, 403, 409, 422),
    )
    async def create_org(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[OrgCreate],
        org_service: NamedDependency[OrgService],
        caller: NamedDependency[Principal],
        tx: NamedDependency[AsyncSession],
        idempotency_key: IdempotencyKey = None,  # read by idempotent(); declared for the document
    ) -> Response[OrgRead]:
        async def run() -> Response[OrgRead]:
            org = await org_service.create_org(data)
            return Response(org, status_code=201, headers={"Location": f"/v1/orgs/{org.id}"})

        return await idempotent(request, caller.org_id, tx, run)

    @get(
        "/orgs",
        operation_id="ListOrgs",
        summary="List organisations (the operator sees all, others their own)",
        description=(
            "The operator sees every organisation, any other caller only its own, newest first. Filter by `kind` and "
            "`status`; page with `limit` and `cursor`."
        ),
        responses=problem_responses(401),
    )
    async def list_orgs(
        self,
        org_service: NamedDependency[OrgService],
        page: NamedDependency[PageRequest],
        kind: FromQuery[Literal["operator", "provider", "consumer"] | None] = None,
        status: FromQuery[Literal["pending", "verified", "rejected"] | None] = None,
    ) -> OrgList:
        return await org_service.list_orgs(page, kind, status)

    @get(
        "/orgs/{org_id:str}",
        operation_id="GetOrg",
        summary="Get an organisation",
        description=(
            "An organisation by id. Members see their own and the operator sees any; another organisation's id is "
            "404, exactly as a made-up one."
        ),
        responses=problem_responses(401, 404),
    )
    async def get_org(self, org_id: FromPath[str], org_service: NamedDependency[OrgService]) -> OrgRead:
        return await org_service.get_org(org_id)

    @post(
        "/orgs/{org_id:str}/verify",
        operation_id="VerifyOrg",
        status_code=200,
        summary="Verify or reject an organisation (operator admin)",
        description=(
            "Sets an organisation `verified` or `rejected`, with an optional note (operator admins only). Rejecting "
            "puts an `org_blocked` hold on the organisation's open licences, and verifying lifts it; the "
            "operator organisation itself cannot change (409 `invalid_transition`)."
        ),
        operation_class=request_examples(examples.VERIFY_ORG),
        guards=[operator("admin")],
        responses=problem_responses(401, 403, 404, 409),
    )
    async def verify_org(
        self, org_id: FromPath[str], data: JSONBody[OrgVerify], org_service: NamedDependency[OrgService]
    ) -> OrgRead:
        return await org_service.verify(org_id, data)

    @post(
        "/orgs/{org_id:str}/members",
        operation_id="AddMember",
        summary="Add a member with roles",
        description=(
            "Adds a user (created from the email if new) with roles valid for the organisation's kind: operator "
            "(admin, curator, compliance, ethics, security, finance), provider (admin, publisher, reviewer), consumer "
            "(admin, buyer, analyst). The organisation's admin or the operator's admin only; a user who already "
            "belongs to an organisation is 409 `already_member`."
        ),
        operation_class=request_examples(examples.ADD_MEMBER),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def add_member(
        self, org_id: FromPath[str], data: JSONBody[MemberCreate], org_service: NamedDependency[OrgService]
    ) -> Response[MemberRead]:
        member = await org_service.add_member(org_id, data)
        return Response(member, status_code=201, headers={"Location": f"/v1/orgs/{org_id}/members/{member.id}"})

    @get(
        "/orgs/{org_id:str}/members",
        operation_id="ListMembers",
        summary="List an organisation's members",
        description=(
            "An organisation's members and their roles, newest first. Its own members and the operator may list them; "
            "to anyone else the organisation is 404."
        ),
        responses=problem_responses(401, 403, 404),
    )
    async def list_members(
        self, org_id: FromPath[str], org_service: NamedDependency[OrgService], page: NamedDependency[PageRequest]
    ) -> MemberList:
        return await org_service.list_members(org_id, page)

    @patch(
        "/orgs/{org_id:str}/members/{user_id:str}",
        operation_id="UpdateMember",
        summary="Change a member's name or roles",
        description=(
            "Renames a member or replaces their roles (the organisation's admin or the operator's admin). Taking the "
            "admin role from the last active admin is 409 `last_admin`."
        ),
        operation_class=request_examples(examples.UPDATE_MEMBER),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def update_member(
        self,
        org_id: FromPath[str],
        user_id: FromPath[str],
        data: JSONBody[MemberUpdate],
        org_service: NamedDependency[OrgService],
    ) -> MemberRead:
        return await org_service.update_member(org_id, user_id, data)

    @delete(
        "/orgs/{org_id:str}/members/{user_id:str}",
        operation_id="RemoveMember",
        summary="Remove a member: its keys are revoked and its data access ends",
        description=(
            "Removes a member from the organisation: all their API keys are revoked and their data access ends. The "
            "organisation's admin or the operator's admin; removing the last admin is 409 `last_admin`."
        ),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def remove_member(
        self, org_id: FromPath[str], user_id: FromPath[str], org_service: NamedDependency[OrgService]
    ) -> None:
        await org_service.remove_member(org_id, user_id)

    @post(
        "/orgs/{org_id:str}/api-keys",
        operation_id="IssueApiKey",
        summary="Issue an API key (the secret is shown once)",
        description=(
            "Issues an API key for a member of the organisation; the response carries its secret, shown this once and "
            "never again. Members may issue keys for themselves; a key for someone else needs the organisation's "
            "admin or the operator's admin."
        ),
        operation_class=request_examples(examples.ISSUE_API_KEY),
        responses=problem_responses(401, 403, 404),
    )
    async def issue_key(
        self, org_id: FromPath[str], data: JSONBody[ApiKeyCreate], org_service: NamedDependency[OrgService]
    ) -> Response[ApiKeyCreated]:
        key = await org_service.issue_key(org_id, data)
        return Response(key, status_code=201, headers={"Location": f"/v1/orgs/{org_id}/api-keys"})

    @get(
        "/orgs/{org_id:str}/api-keys",
        operation_id="ListApiKeys",
        summary="List API keys (admins see all, members their own); never the secrets",
        description=(
            "The organisation's API keys, newest first, never their secrets: its admin (and the operator's admin) "
            "sees all, any other member their own. Another organisation is 404."
        ),
        responses=problem_responses(401, 404),
    )
    async def list_keys(
        self, org_id: FromPath[str], org_service: NamedDependency[OrgService], page: NamedDependency[PageRequest]
    ) -> ApiKeyList:
        return await org_service.list_keys(org_id, page)

    @delete(
        "/api-keys/{key_id:str}",
        operation_id="RevokeApiKey",
        summary="Revoke an API key",
        description=(
            "Revokes an API key at once; revoking a revoked key changes nothing. The key's own user, the "
            "organisation's admin or the operator's admin; another organisation's key is 404."
        ),
        responses=problem_responses(401, 403, 404),
    )
    async def revoke_key(
        self,
        key_id: Annotated[str, PathParameter(description="The key's id (key_…)")],
        org_service: NamedDependency[OrgService],
    ) -> None:
        await org_service.revoke_key(key_id)
