"""The pages anyone may browse: the catalogue, a product, the data-use register, the language switch."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Redirect

from catalog import policy
from catalog.errors import ValidationFailed
from catalog.products import quality
from catalog.products.terms import DUO, LOCAL
from catalog.web import i18n
from catalog.web.api import Refused, q
from catalog.web.pages import PAGE, Ctx, context, render

FACETS = (
    "grade", "data_type", "therapeutic_area", "standard", "provider", "pricing",
    "completeness", "conformance", "plausibility",
)  # fmt: skip
PAGE_SIZE = 20
MEASURED = ("completeness", "conformance", "plausibility")
Values = FromQuery[list[str] | None]


def _facet_query(q: str | None, chosen: dict[str, list[str]], cursor: str | None = None) -> str:
    pairs: list[tuple[str, str]] = [("q", q)] if q else []
    pairs += [(name, value) for name in FACETS for value in chosen.get(name, [])]
    if cursor:
        pairs.append(("cursor", cursor))
    return urlencode(pairs)


def at_least(counts: dict[str, int], chosen: list[str]) -> list[dict[str, Any]]:
    """A measured-quality facet as "at least" options: each bound counts the products measured at
    or above it (the API counts each product once, in the highest bucket it reaches)."""
    options, running = [], 0
    for bound in quality.BUCKETS[:-1]:  # "at least 0" would be every product measured
        running += counts.get(bound, 0)
        if running:
            options.append({"value": bound, "label": f"≥ {bound}", "count": running, "checked": bound in chosen})
    return options


def grade_plainly(grade: str) -> dict[str, Any]:
    """What a grade lets a licensee do, read off the policy in force (which alone decides it)."""
    rule = policy.rule(grade)
    controls = [f"cells under k = {rule.k} persons are withheld"]
    if rule.secondary_suppression:
        controls.append("secondary suppression, so withheld cells cannot be worked out from totals")
    if rule.perturbation:
        controls.append("cell-key perturbation: small noise fixed by the cell's rows")
    if rule.anonymisation is not None:
        controls.append("layered anonymisation (sticky noise, outlier flattening, low-effect detection)")
    if rule.epsilon_total_micro:
        controls.append(
            f"differential privacy: ε = {rule.epsilon_total_micro / 1e6:g} per licence, "
            f"at most {(rule.epsilon_per_query_micro or 0) / 1e6:g} per query"
        )
    if not rule.sensitive_columns:
        controls.append("sensitive columns may not be selected, filtered or grouped by")
    return {
        "name": rule.name,
        "modes": sorted(rule.modes),
        "tracks": list(rule.tracks),
        "controls": controls,
        "ethics_required": rule.ethics_required,
        "named_analysts": rule.named_analysts,
        "cross_border": rule.cross_border,
        "licensable_by": rule.licensable_by,
    }


def explain_terms(terms: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not terms:
        return []
    explained = []
    for item in terms["use_conditions"]:
        code = item["code"]
        ontology, label = DUO.get(code, ("", code))
        params = ", ".join(
            f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in (item.get("params") or {}).items()
        )
        explained.append({"code": code, "id": ontology, "label": label, "params": params})
    for code in terms["local_conditions"]:
        explained.append({"code": code, "id": "local", "label": LOCAL.get(code, code), "params": ""})
    return explained


async def product_action(ctx: Ctx, product: dict[str, Any]) -> dict[str, Any]:
    """The one next step for the signed-in organisation on this product."""
    if ctx.me is None:
        return {"step": "sign_in", "href": f"/signin?next=/products/{product['slug']}"}
    if ctx.kind != "consumer":
        return {"step": "none"}
    licences = (await ctx.api.get("/v1/licences", product_id=product["id"], limit=20))["items"]
    live = [
        lic for lic in licences if lic["status"] in ("pending_acceptance", "pending_payment", "active", "suspended")
    ]
    if live:
        lic = live[0]
        step = {"pending_acceptance": "accept", "pending_payment": "pay"}.get(lic["status"], "use")
        return {"step": step, "href": f"/licences/{lic['id']}"}
    applications = (await ctx.api.get("/v1/applications", product_id=product["id"], limit=20))["items"]
    open_ = [a for a in applications if a["status"] in ("draft", "submitted", "under_review", "returned", "approved")]
    if open_:
        return {"step": "application", "href": f"/applications/{open_[0]['id']}"}
    return {"step": "eligibility", "href": f"/products/{product['slug']}/apply"}


class CataloguePages(Controller):
    include_in_schema = False
    opt = PAGE

    @get("/", name="web.catalogue")
    async def catalogue(
        self,
        request: Request[Any, Any, Any],
        q: Annotated[str | None, QueryParameter(max_length=200)] = None,
        grade: Values = None,
        data_type: Values = None,
        therapeutic_area: Values = None,
        standard: Values = None,
        provider: Values = None,
        pricing: Values = None,
        completeness: Values = None,
        conformance: Values = None,
        plausibility: Values = None,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> Any:
        ctx = await context(request)
        chosen_values = (grade, data_type, therapeutic_area, standard, provider, pricing)
        raw = dict(zip(FACETS, (*chosen_values, completeness, conformance, plausibility), strict=True))
        chosen = {name: values for name, values in raw.items() if values}
        # A measured-quality bucket is asked for as the API's min_ filter: "at least" that score.
        for name in MEASURED:
            wrong = [v for v in chosen.get(name, []) if v not in quality.BUCKETS]
            if wrong:
                raise ValidationFailed.field(name, f"use one of {', '.join(quality.BUCKETS)}")
        minimums = {f"min_{k}": min(float(b) for b in v) for k, v in chosen.items() if k in MEASURED}
        plain = {k: ",".join(v) for k, v in chosen.items() if k not in MEASURED}
        found = await ctx.api.get("/v1/products", q=q, limit=PAGE_SIZE, cursor=cursor, **plain, **minimums)
        facets = []
        for name in FACETS:
            counts = found["facets"][name]
            if name in MEASURED:
                facets.append({"name": name, "options": at_least(counts, chosen.get(name, []))})
                continue
            options = [
                {
                    "value": value,
                    "label": found["provider_names"].get(value, value) if name == "provider" else value,
                    "count": count,
                    "checked": value in chosen.get(name, []),
                }
                for value, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            ]
            facets.append({"name": name, "options": options})
        return render(
            ctx,
            "catalogue.html",
            q=q or "",
            found=found,
            facets=facets,
            filtered=bool(chosen),
            next_href=f"/?{_facet_query(q, chosen, found['next_cursor'])}" if found["next_cursor"] else None,
            first_href=f"/?{_facet_query(q, chosen)}" if cursor else None,
        )

    @get("/products/{slug:str}", name="web.product")
    async def product(self, request: Request[Any, Any, Any], slug: FromPath[str]) -> Any:
        ctx = await context(request)
        product = await ctx.api.get(f"/v1/products/{q(slug)}")
        return render(
            ctx,
            "product.html",
            p=product,
            grade=grade_plainly(product["grade"]),
            terms=explain_terms(product.get("terms")),
            action=await product_action(ctx, product),
        )

    @get("/products/{slug:str}/eligibility", name="web.eligibility")
    async def eligibility(self, request: Request[Any, Any, Any], slug: FromPath[str]) -> Any:
        """The organisation-level blockers, before any form is filled (an htmx fragment)."""
        ctx = await context(request)
        if ctx.me is None:
            return render(ctx, "eligibility.html", result=None, slug=slug)
        product = await ctx.api.get(f"/v1/products/{q(slug)}")
        try:
            result = await ctx.api.get(f"/v1/products/{q(product['id'])}/eligibility")
        except Refused as exc:
            result = {"eligible": False, "blockers": [{"code": exc.code, "message": exc.detail, "field": None}]}
        return render(ctx, "eligibility.html", result=result, slug=slug)

    @get("/products/{slug:str}/releases/{version:str}/quality", name="web.quality")
    async def release_quality(
        self, request: Request[Any, Any, Any], slug: FromPath[str], version: FromPath[str]
    ) -> Any:
        ctx = await context(request)
        product = await ctx.api.get(f"/v1/products/{q(slug)}")
        report = await ctx.api.get(f"/v1/products/{q(product['id'])}/releases/{q(version)}/quality")
        return render(ctx, "quality.html", p=product, report=report)

    @get("/register", name="web.register")
    async def register(
        self, request: Request[Any, Any, Any], cursor: Annotated[str | None, QueryParameter(max_length=200)] = None
    ) -> Any:
        ctx = await context(request)
        found = await ctx.api.get("/v1/register", limit=50, cursor=cursor)
        return render(ctx, "register.html", found=found)

    @get("/lang/{code:str}", name="web.lang")
    async def switch_language(self, request: Request[Any, Any, Any], code: FromPath[str]) -> Response[Any]:
        back = request.headers.get("referer") or "/"
        parts = urlsplit(back)
        # Only back to a page of this site: the switch is no open redirect.
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        response: Response[Any] = Redirect(path=target, status_code=303)
        if code in i18n.LANGS:
            response.set_cookie(i18n.COOKIE, code, max_age=365 * 86400, samesite="lax", path="/")
        return response
