"""Routes of a product's offer — terms, plans, revenue share — and the DCAT-AP catalogue."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.auth import ANYONE
from catalog.errors import problem_responses
from catalog.openapi import request_examples
from catalog.products import dcat, examples
from catalog.products.commerce import CommerceService
from catalog.products.offer_schemas import PlanCreate, PlanList, PlanUpdate, RevenueSharePut, RevenueShareRead, TermsPut
from catalog.products.routes import PUBLIC, caller_of
from catalog.products.schemas import (
    PlanRead,
    TermsRead,
)


async def provide_commerce_service(
    tx: NamedDependency[AsyncSession], request: Request[Any, Any, Any]
) -> CommerceService:
    return CommerceService(tx, caller_of(request))


class CommerceController(Controller):
    path = "/v1"
    tags = ["Catalogue"]
    dependencies = {"commerce_service": Provide(provide_commerce_service)}

    @put(
        "/products/{product_id:str}/terms",
        operation_id="PutTerms",
        status_code=201,
        summary="Publish a new terms version (unchanged content answers the current one)",
        description=(
            "Publishes a new immutable terms version: GA4GH DUO use conditions (at least one naming a permitted use), "
            "Lode's local conditions, a maximum term and clauses. Members of the owning organisation with the "
            "publisher role. Content equal to the current version answers that version with 200 instead of 201; a "
            "licence pins the version and its `terms_sha256`."
        ),
        operation_class=request_examples(examples.PUT_TERMS),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def put_terms(
        self, product_id: FromPath[str], data: JSONBody[TermsPut], commerce_service: NamedDependency[CommerceService]
    ) -> Response[TermsRead]:
        terms, created = await commerce_service.put_terms(product_id, data)
        return Response(
            terms,
            status_code=201 if created else 200,
            headers={"Location": f"/v1/products/{terms.product_id}/terms?version={terms.version}"},
        )

    @get(
        "/products/{product_id:str}/terms",
        operation_id="GetTerms",
        opt=PUBLIC,
        security=ANYONE,
        summary="The current terms, or a given version",
        description=(
            "The product's current terms, or the `version` asked for, with the `terms_sha256` a consumer echoes to "
            "accept a licence. Public for listed products; 404 when the product is not visible to the caller or has "
            "no terms."
        ),
        responses=problem_responses(401, 404),
    )
    async def get_terms(
        self,
        product_id: FromPath[str],
        commerce_service: NamedDependency[CommerceService],
        version: Annotated[int | None, QueryParameter(ge=1, le=1_000_000)] = None,
    ) -> TermsRead:
        return await commerce_service.get_terms(product_id, version)

    @post(
        "/products/{product_id:str}/plans",
        operation_id="CreatePlan",
        summary="Offer a plan",
        description=(
            "Offers a plan: free, one-time, subscription, metered or public-interest, priced in minor units of an ISO "
            "4217 currency, with optional caps and modes, and optionally private to named consumer organisations. "
            "Members of the owning organisation with the publisher role; an inconsistent plan (a free plan with an "
            "amount, a metered one without unit prices) is 400 `validation_error`."
        ),
        operation_class=request_examples(examples.CREATE_PLAN),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def create_plan(
        self, product_id: FromPath[str], data: JSONBody[PlanCreate], commerce_service: NamedDependency[CommerceService]
    ) -> Response[PlanRead]:
        plan = await commerce_service.create_plan(product_id, data)
        return Response(plan, status_code=201, headers={"Location": f"/v1/plans/{plan.id}"})

    @get(
        "/products/{product_id:str}/plans",
        operation_id="ListPlans",
        opt=PUBLIC,
        security=ANYONE,
        summary="The plans you may choose",
        description=(
            "The product's plans the caller may choose: active ones not private to other organisations; the owning "
            "organisation and the operator see every plan. Public for listed products."
        ),
        responses=problem_responses(401, 404),
    )
    async def list_plans(
        self, product_id: FromPath[str], commerce_service: NamedDependency[CommerceService]
    ) -> PlanList:
        return await commerce_service.list_plans(product_id)

    @get(
        "/plans/{plan_id:str}",
        operation_id="GetPlan",
        opt=PUBLIC,
        security=ANYONE,
        summary="A plan",
        description=(
            "A plan by id, visible as in ListPlans: an inactive plan, or one private to another organisation, is 404 "
            "to all but the product's owner and the operator."
        ),
        responses=problem_responses(401, 404),
    )
    async def get_plan(self, plan_id: FromPath[str], commerce_service: NamedDependency[CommerceService]) -> PlanRead:
        return await commerce_service.get_plan(plan_id)

    @patch(
        "/plans/{plan_id:str}",
        operation_id="UpdatePlan",
        summary="Edit a plan (once licensed: only name, active, private_to)",
        description=(
            "Changes the fields given (members of the owning organisation with the publisher role). Once a licence "
            "refers to the plan only `name`, `active` and `private_to` may change (409 `plan_locked`): a new price is "
            "a new plan."
        ),
        operation_class=request_examples(examples.UPDATE_PLAN),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def update_plan(
        self, plan_id: FromPath[str], data: JSONBody[PlanUpdate], commerce_service: NamedDependency[CommerceService]
    ) -> PlanRead:
        return await commerce_service.update_plan(plan_id, data)

    @put(
        "/products/{product_id:str}/revenue-share",
        operation_id="PutRevenueShare",
        status_code=201,
        summary="A new revenue-share rule version (owner admin or operator admin)",
        description=(
            "Publishes a new revenue-share rule version: the operator's and the fund's parts in basis points, the "
            "rest split between provider organisations by weight. The owner's admin or the operator's admin only; a "
            "licence pins the version in force when it is issued."
        ),
        operation_class=request_examples(examples.PUT_REVENUE_SHARE),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def put_revenue_share(
        self,
        product_id: FromPath[str],
        data: JSONBody[RevenueSharePut],
        commerce_service: NamedDependency[CommerceService],
    ) -> Response[RevenueShareRead]:
        rule = await commerce_service.put_revenue_share(product_id, data)
        return Response(rule, status_code=201, headers={"Location": f"/v1/products/{rule.product_id}/revenue-share"})

    @get(
        "/products/{product_id:str}/revenue-share",
        operation_id="GetRevenueShare",
        summary="The current revenue-share rule (owner, its providers, the operator)",
        description=(
            "The product's current revenue-share rule. Only the owning organisation, the providers the rule names and "
            "the operator may read it (403 otherwise); 404 while there is none."
        ),
        responses=problem_responses(401, 403, 404),
    )
    async def get_revenue_share(
        self, product_id: FromPath[str], commerce_service: NamedDependency[CommerceService]
    ) -> RevenueShareRead:
        return await commerce_service.get_revenue_share(product_id)

    @get(
        "/catalog.jsonld",
        operation_id="GetCatalogJsonLd",
        opt=PUBLIC,
        security=ANYONE,
        media_type="application/ld+json",
        summary="The listed products as DCAT-AP (HealthDCAT-AP) JSON-LD",
        description=(
            "Every listed product as a DCAT-AP (HealthDCAT-AP) catalogue in JSON-LD, for data portals to harvest. "
            "Public: no key needed."
        ),
        responses=problem_responses(),
    )
    async def catalog_jsonld(
        self, request: Request[Any, Any, State], tx: NamedDependency[AsyncSession]
    ) -> dict[str, Any]:
        return await dcat.catalog(tx, request.app.state.settings.public_url)
