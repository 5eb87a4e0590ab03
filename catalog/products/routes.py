"""HTTP routes of the catalogue: products and their lifecycle, terms, plans, revenue shares, and the
DCAT-AP export (releases are in release_routes.py)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.auth import ANYONE, Principal, operator, provider
from catalog.errors import FieldError, ValidationFailed, problem_responses
from catalog.openapi import request_examples
from catalog.pagination import MAX_LIMIT
from catalog.products import examples, quality, search, views
from catalog.products.schemas import (
    DataType,
    Grade,
    PlanKind,
    ProductCreate,
    ProductList,
    ProductRead,
    ProductRegrade,
    ProductReview,
    ProductStatus,
    ProductUpdate,
    Standard,
    StatusChange,
)
from catalog.products.service import ProductService, search_scope

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
IfNoneMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-None-Match",
        max_length=4096,
        description="An `ETag` this read answered before: 304 Not Modified, without a body, while it still holds.",
    ),
]
CACHED_READ = (
    " Answers carry an `ETag` (the same on every node for the same answer) and `Cache-Control: no-cache` "
    "(`public` without a key, `private` with one; `Vary: Authorization`): send it back in `If-None-Match` to get "
    "304 Not Modified without a body while nothing the answer shows has changed."
)
# One header only: Litestar keeps a route's response headers in a frozenset, whose order (and so the
# OpenAPI document's) would change from run to run; Cache-Control and Vary are in CACHED_READ.
CACHE_HEADERS = [
    ResponseHeader(name="ETag", documentation_only=True, description="A hash of the body, the same on every node.")
]
NOT_MODIFIED = {
    304: ResponseSpec(data_container=None, description="Not Modified: the `If-None-Match` ETag still holds; no body.")
}


MinScore = Annotated[
    float | None,
    QueryParameter(ge=0, le=1, description="Measured score at least this: 0.8, 0.9, 0.95, 0.98, 0.99 or 1"),
]


def _measured_at_least(name: str, minimum: float) -> tuple[str, ...]:
    selected = quality.buckets_from(minimum)
    if selected is None:
        raise ValidationFailed(
            f"{name}: {minimum:g} is not a score the catalogue buckets by",
            errors=[FieldError(name, "use one of 0.8, 0.9, 0.95, 0.98, 0.99, 1")],
        )
    return selected


def caller_of(request: Request[Any, Any, Any]) -> Principal | None:
    return request.scope.get("user")


async def provide_product_service(tx: NamedDependency[AsyncSession], request: Request[Any, Any, Any]) -> ProductService:
    return ProductService(tx, caller_of(request))


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
        description=(
            "Creates a product in `draft`, owned by the caller's organisation (provider members with the publisher "
            "role). A product that declares no legal basis, holds identified records or is core data cannot circulate "
            "and is refused with 422 `not_circulable`; source shares must sum to 1, and a taken slug is 409 "
            "`slug_taken`."
        ),
        operation_class=request_examples(examples.CREATE_PRODUCT),
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
        description=(
            "Full-text search (English words or Chinese terms) with facet filters, each facet counted as if its own "
            "filter were not applied. Anyone may search listed products without a key; other `status` values need one "
            "and show the owner its own products and the operator all (403 without a key). `min_completeness`, "
            "`min_conformance` and `min_plausibility` keep the products whose newest published release measured at "
            "least that score (one of 0.8, 0.9, 0.95, 0.98, 0.99, 1)." + CACHED_READ
        ),
        responses={**NOT_MODIFIED, **problem_responses(401, 403)},
        response_headers=CACHE_HEADERS,
    )
    async def list_products(
        self,
        request: Request[Any, Any, Any],
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
        min_completeness: MinScore = None,
        min_conformance: MinScore = None,
        min_plausibility: MinScore = None,
        if_none_match: IfNoneMatch = None,
    ) -> Response[ProductList]:
        raw = {
            "grade": grade,
            "data_type": data_type,
            "therapeutic_area": therapeutic_area,
            "standard": standard,
            "provider": provider,
            "pricing": pricing,
        }
        filters = {name: _split(name, raw[name], FILTERS[name]) for name in FILTERS if raw[name]}
        minimums = {"completeness": min_completeness, "conformance": min_conformance, "plausibility": min_plausibility}
        for category, minimum in minimums.items():
            if minimum is not None:
                filters[category] = _measured_at_least(f"min_{category}", minimum)
        statuses, owner = search_scope(caller_of(request), list(status) if status else None)
        query = search.SearchQuery(
            q=q.strip() if q and q.strip() else None,
            filters=filters,
            statuses=statuses,
            owner_org_id=owner,
            limit=limit,
            cursor=cursor,
        )
        return await views.listing(request, query, if_none_match)

    @get(
        "/{key:str}",
        operation_id="GetProduct",
        opt=PUBLIC,
        security=ANYONE,
        summary="A product by id or slug, with its current terms, plans and published releases",
        description=(
            "A product by id or slug, with its current terms, the plans the caller may see and its published "
            "releases. Listed products are public; any other status is visible only to the owning organisation and "
            "the operator, and 404 to anyone else." + CACHED_READ
        ),
        responses={**NOT_MODIFIED, **problem_responses(401, 404)},
        response_headers=CACHE_HEADERS,
    )
    async def get_product(
        self, request: Request[Any, Any, Any], key: FromPath[str], if_none_match: IfNoneMatch = None
    ) -> Response[ProductRead]:
        return await views.product(request, key, if_none_match)

    @patch(
        "/{product_id:str}",
        operation_id="UpdateProduct",
        summary="Edit a draft; once submitted only descriptive fields (audited)",
        description=(
            "Changes the fields given (members of the owning organisation with the publisher role). A draft may "
            "change any field; once submitted only descriptive fields may (409 `not_editable` otherwise; grades "
            "tighten only through RegradeProduct), and a retired product not at all. Every change is audited."
        ),
        operation_class=request_examples(examples.UPDATE_PRODUCT),
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
        description=(
            "Sends a draft to the operator's curators (`draft` to `in_review`); members of the owning organisation "
            "with the publisher role. The product needs terms, an active plan and a revenue-share rule first, else "
            "409 `incomplete_product` names what is missing."
        ),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def submit(self, product_id: FromPath[str], product_service: NamedDependency[ProductService]) -> ProductRead:
        return await product_service.submit(product_id)

    @post(
        "/{product_id:str}/review",
        operation_id="ReviewProduct",
        status_code=200,
        summary="List or return a product under review (curator; + security at L4/L5)",
        description=(
            "Operator curators list a product under review (`in_review` to `listed`) or return it to `draft` with a "
            "comment, which returning requires. Listing an L4 or L5 product also needs the security role (403 "
            "`listing_role_required`)."
        ),
        operation_class=request_examples(examples.REVIEW_PRODUCT),
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
        description=(
            "Moves a product to a stricter grade, with a reason (operator curators). A grade only tightens: one that "
            "is not stricter is 422 `regrade_not_stricter`, and a retired product is 409."
        ),
        operation_class=request_examples(examples.REGRADE_PRODUCT),
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
        description=(
            "Suspends a listed product, with a reason: it leaves the catalogue and its licences cannot use it (403 "
            "`product_suspended`) until reinstated. The operator (curator, compliance or security members) or the "
            "owner's publishers; a product that is not listed is 409 `invalid_transition`."
        ),
        operation_class=request_examples(examples.SUSPEND_PRODUCT),
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
        description=(
            "Lists a suspended product again, with a reason. The operator (curator, compliance or security members) "
            "or the owner's publishers, but a suspension the operator made is lifted only by the operator (403 "
            "`operator_suspension`)."
        ),
        operation_class=request_examples(examples.REINSTATE_PRODUCT),
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
        description=(
            "Retires a product for good, from any status, with a reason: it takes no more edits, releases, terms, "
            "plans or applications, and its licences can no longer use it. The operator (curator, compliance or "
            "security members) or the owner's publishers."
        ),
        operation_class=request_examples(examples.RETIRE_PRODUCT),
        responses=problem_responses(401, 403, 404, 409),
    )
    async def retire(
        self, product_id: FromPath[str], data: JSONBody[StatusChange], product_service: NamedDependency[ProductService]
    ) -> ProductRead:
        return await product_service.change_status(product_id, "retire", data.reason)
