"""HTTP routes of the catalogue: products and their lifecycle, terms, plans, revenue shares, and the
DCAT-AP export (releases are in release_routes.py)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.auth import ANYONE, Principal, operator, provider
from catalog.errors import FieldError, ValidationFailed, problem_responses
from catalog.pagination import MAX_LIMIT
from catalog.products import dcat, search
from catalog.products.commerce import CommerceService
from catalog.products.offer_schemas import PlanCreate, PlanList, PlanUpdate, RevenueSharePut, RevenueShareRead, TermsPut
from catalog.products.schemas import (
    DataType,
    Grade,
    PlanKind,
    PlanRead,
    ProductCreate,
    ProductList,
    ProductRead,
    ProductRegrade,
    ProductReview,
    ProductStatus,
    ProductUpdate,
    Standard,
    StatusChange,
    TermsRead,
)
from catalog.products.service import ProductService

PUBLIC = {"public": True}
FILTERS: dict[str, tuple[str, ...] | None] = {
    "grade": Grade.__args__,  # type: ignore[attr-defined]
    "data_type": DataType.__args__,  # type: ignore[attr-defined]
    "therapeutic_area": None,
    "standard": Standard.__args__,  # type: ignore[attr-defined]
    "provider": None,
    "pricing": PlanKind.__args__,  # type: ignore[attr-defined]
}
Filter = Annotated[list[str] | None, QueryParameter(description="One or more values (repeat or comma-separate)")]


def _caller(request: Request[Any, Any, Any]) -> Principal | None:
    return request.scope.get("user")


async def provide_product_service(tx: NamedDependency[AsyncSession], request: Request[Any, Any, Any]) -> ProductService:
    return ProductService(tx, _caller(request))


async def provide_commerce_service(
    tx: NamedDependency[AsyncSession], request: Request[Any, Any, Any]
) -> CommerceService:
    return CommerceService(tx, _caller(request))


def _split(name: str, raw: list[str] | None, allowed: tuple[str, ...] | None) -> tuple[str, ...]:
    values = tuple(v.strip() for item in raw or [] for v in item.split(",") if v.strip())
    wrong = [v for v in values if allowed is not None and v not in allowed]
    if wrong:
        raise ValidationFailed(
            f"{name}: {', '.join(wrong)} not one of {', '.join(allowed or ())}",
            errors=[FieldError(name, f"use one of {', '.join(allowed or ())}")],
        )
    return values


class ProductController(Controller):
    path = "/v1/products"
    tags = ["Catalogue"]
    dependencies = {"product_service": Provide(provide_product_service)}

    @post(
        "/",
        operation_id="CreateProduct",
        summary="Create a draft product (provider publisher)",
        guards=[provider("publisher")],
        responses=problem_responses(401, 403, 409, 422),
    )
    async def create(
        self, data: JSONBody[ProductCreate], product_service: NamedDependency[ProductService]
    ) -> Response[ProductRead]:
        product = await product_service.create(data)
        return Response(product, status_code=201, headers={"Location": f"/v1/products/{product.id}"})

    @get(
        "/",
        operation_id="ListProducts",
        opt=PUBLIC,
        security=ANYONE,
        summary="Search and browse products, with disjunctive facets",
        responses=problem_responses(401, 403),
    )
    async def list_products(
        self,
        product_service: NamedDependency[ProductService],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT, description="Page size, 1–500.")] = 50,
        q: Annotated[str | None, QueryParameter(max_length=200, description="English words or Chinese terms")] = None,
        grade: Filter = None,
        data_type: Filter = None,
        therapeutic_area: Filter = None,
        standard: Filter = None,
        provider: Filter = None,
        pricing: Filter = None,
        status: FromQuery[list[ProductStatus] | None] = None,
        cursor: Annotated[
            str | None, QueryParameter(max_length=200, description="`next_cursor` of the previous page")
        ] = None,
    ) -> ProductList:
        raw = {
            "grade": grade,
            "data_type": data_type,
            "therapeutic_area": therapeutic_area,
            "standard": standard,
            "provider": provider,
            "pricing": pricing,
        }
        filters = {name: _split(name, raw[name], FILTERS[name]) for name in FILTERS if raw[name]}
        statuses, owner = product_service.search_scope(list(status) if status else None)
        query = search.SearchQuery(
            q=q.strip() if q and q.strip() else None,
            filters=filters,
            statuses=statuses,
            owner_org_id=owner,
            limit=limit,
            cursor=cursor,
        )
        return await product_service.list(query)

    @get(
        "/{key:str}",
        operation_id="GetProduct",
        opt=PUBLIC,
        security=ANYONE,
        summary="A product by id or slug, with its current terms, plans and published releases",
        responses=problem_responses(401, 404),
    )
    async def get_product(self, key: FromPath[str], product_service: NamedDependency[ProductService]) -> ProductRead:
        return await product_service.get(key)

    @patch(
        "/{product_id:str}",
        operation_id="UpdateProduct",
        summary="Edit a draft; once submitted only descriptive fields (audited)",
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def update(
        self, product_id: FromPath[str], data: JSONBody[ProductUpdate], product_service: NamedDependency[ProductService]
    ) -> ProductRead:
        return await product_service.update(product_id, data)

    @post(
        "/{product_id:str}/submit",
        operation_id="SubmitProduct",
        status_code=200,
        summary="Send a draft for curation",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def submit(self, product_id: FromPath[str], product_service: NamedDependency[ProductService]) -> ProductRead:
        return await product_service.submit(product_id)

    @post(
        "/{product_id:str}/review",
        operation_id="ReviewProduct",
        status_code=200,
        summary="List or return a product under review (curator; + security at L4/L5)",
        guards=[operator("curator")],
        responses=problem_responses(401, 403, 404, 409),
    )
    async def review(
        self,
        product_id: FromPath[str],
        data: JSONBody[ProductReview],
        product_service: NamedDependency[ProductService],
    ) -> ProductRead:
        return await product_service.review(product_id, data)

    @post(
        "/{product_id:str}/regrade",
        operation_id="RegradeProduct",
        status_code=200,
        summary="Move a product to a stricter grade (curator)",
        guards=[operator("curator")],
        responses=problem_responses(401, 403, 404, 409, 422),
    )
    async def regrade(
        self,
        product_id: FromPath[str],
        data: JSONBody[ProductRegrade],
        product_service: NamedDependency[ProductService],
    ) -> ProductRead:
        return await product_service.regrade(product_id, data)

    @post(
        "/{product_id:str}/suspend",
        operation_id="SuspendProduct",
        status_code=200,
        summary="Suspend a listed product (operator, or the owner)",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def suspend(
        self, product_id: FromPath[str], data: JSONBody[StatusChange], product_service: NamedDependency[ProductService]
    ) -> ProductRead:
        return await product_service.change_status(product_id, "suspend", data.reason)

    @post(
        "/{product_id:str}/reinstate",
        operation_id="ReinstateProduct",
        status_code=200,
        summary="Lift a suspension (only the operator lifts its own)",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def reinstate(
        self, product_id: FromPath[str], data: JSONBody[StatusChange], product_service: NamedDependency[ProductService]
    ) -> ProductRead:
        return await product_service.change_status(product_id, "reinstate", data.reason)

    @post(
        "/{product_id:str}/retire",
        operation_id="RetireProduct",
        status_code=200,
        summary="Retire a product for good",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def retire(
        self, product_id: FromPath[str], data: JSONBody[StatusChange], product_service: NamedDependency[ProductService]
    ) -> ProductRead:
        return await product_service.change_status(product_id, "retire", data.reason)


class CommerceController(Controller):
    path = "/v1"
    tags = ["Catalogue"]
    dependencies = {"commerce_service": Provide(provide_commerce_service)}

    @put(
        "/products/{product_id:str}/terms",
        operation_id="PutTerms",
        status_code=201,
        summary="Publish a new terms version (unchanged content answers the current one)",
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
        responses=problem_responses(401, 404),
    )
    async def get_plan(self, plan_id: FromPath[str], commerce_service: NamedDependency[CommerceService]) -> PlanRead:
        return await commerce_service.get_plan(plan_id)

    @patch(
        "/plans/{plan_id:str}",
        operation_id="UpdatePlan",
        summary="Edit a plan (once licensed: only name, active, private_to)",
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
        responses=problem_responses(),
    )
    async def catalog_jsonld(
        self, request: Request[Any, Any, State], tx: NamedDependency[AsyncSession]
    ) -> dict[str, Any]:
        return await dcat.catalog(tx, request.app.state.settings.public_url)
