"""Applications and their review, eligibility, and the usability check every delivery runs.

Application: ``draft → submitted → under_review → approved | rejected``, ``returned`` for changes,
``withdrawn`` by the applicant. Submit re-runs eligibility and opens the review tracks policy.py
names for the grade — none at L1/L2, where it is approved in the same request. Each track is
decided by its role; a reject beats a return; a return cancels the pending tracks; a resubmit
reopens only the tracks not approved. Decisions lock the application row, so two reviewers
deciding the last open tracks at once still leave exactly one licence.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from catalog import policy
from catalog.access import eligibility, review, tell
from catalog.access import repository as repo
from catalog.access.models import Application
from catalog.access.schemas import (
    ApplicationCreate,
    ApplicationList,
    ApplicationRead,
    ApplicationUpdate,
    BlockerRead,
    Decision,
    EligibilityRead,
    TrackRead,
)
from catalog.auth import Principal
from catalog.db import utcnow
from catalog.errors import Conflict, FieldError, NotFound, Unprocessable, ValidationFailed
from catalog.ids import new_id
from catalog.orgs import repository as orgs_repo
from catalog.pagination import PageRequest
from catalog.products import repository as products_repo
from catalog.products.models import Plan, Product

EDITABLE = ("draft", "returned")
WITHDRAWABLE = ("draft", "submitted", "under_review", "returned")


class EligibilityQuery(msgspec.Struct, frozen=True, kw_only=True):
    category: str | None = None
    commercial: bool | None = None
    disease_codes: list[str] = []
    territory: str | None = None
    plan_id: str | None = None
    months: int | None = None
    ethics_expires_on: date | None = None
    analysts: list[str] | None = None
    project_reference: str | None = None


class ApplicationService:
    def __init__(self, session: AsyncSession, caller: Principal) -> None:
        self.session = session
        self.caller = caller

    # --- eligibility ------------------------------------------------------------------------

    async def eligibility(self, product_id: str, query: EligibilityQuery) -> EligibilityRead:
        product = await self._listed_product(product_id)
        blockers = await self._blockers(product, query, self.caller.org_id)
        return EligibilityRead(
            eligible=not blockers,
            blockers=[BlockerRead(code=b.code, message=b.message, field=b.field) for b in blockers],
        )

    async def _blockers(self, product: Product, q: EligibilityQuery, org_id: str) -> list[eligibility.Blocker]:
        org = await orgs_repo.get_org(self.session, org_id)
        assert org is not None
        terms = await products_repo.current_terms(self.session, product.id)
        rule = await products_repo.current_revenue_share(self.session, product.id)
        lists = [product.owner_org_id, *(p["org_id"] for p in (rule.providers if rule else []))]
        operator_id = await orgs_repo.operator_id(self.session)
        blocked_by = await repo.blocking_lists(self.session, org.id, [*lists, *([operator_id] if operator_id else [])])
        plan = await products_repo.plan(self.session, q.plan_id) if q.plan_id else None
        plan_facts = None
        if q.plan_id:
            plan_facts = (
                eligibility.PlanFacts(id=q.plan_id, kind="free", active=False, private_to=[], term_months=None)
                if plan is None or plan.product_id != product.id
                else _plan_facts(plan)
            )
        return eligibility.evaluate(
            eligibility.Request(
                grade=product.grade,
                product_jurisdiction=product.jurisdiction,
                use_conditions=terms.use_conditions if terms else [],
                local_conditions=terms.local_conditions if terms else [],
                max_term_months=terms.max_term_months if terms else None,
                plan=plan_facts,
                org=eligibility.OrgFacts(
                    id=org.id, status=org.status, jurisdiction=org.jurisdiction, for_profit=org.for_profit
                ),
                blocked_by=blocked_by,
                category=q.category,
                commercial=org.for_profit if q.commercial is None else q.commercial,
                disease_codes=list(q.disease_codes),
                territory=q.territory or org.jurisdiction,
                months=q.months,
                ethics_expires_on=q.ethics_expires_on,
                analysts=q.analysts,
                project_reference=q.project_reference,
                today=utcnow().date(),
            )
        )

    async def blockers_of(
        self, app: Application, product: Product, plan_id: str, ethics_expires_on: date | None
    ) -> list[eligibility.Blocker]:
        """The application's eligibility as it stands: at submit, and again when its licence is
        renewed (on that licence's plan and ethics approval, which may have been renewed since)."""
        return await self._blockers(
            product,
            EligibilityQuery(
                category=app.purpose["category"],
                commercial=app.purpose["commercial"],
                disease_codes=app.purpose.get("disease_codes", []),
                territory=app.purpose["territory"],
                plan_id=plan_id,
                months=app.requested_months,
                ethics_expires_on=ethics_expires_on,
                analysts=app.analysts,
                project_reference=app.project.get("reference"),
            ),
            app.consumer_org_id,
        )

    async def _listed_product(self, product_id: str) -> Product:
        product = await products_repo.get_by_id_or_slug(self.session, product_id)
        if product is None or (
            product.status != "listed" and not self.caller.is_operator and product.owner_org_id != self.caller.org_id
        ):
            raise NotFound(f"No product {product_id}.")
        return product

    # --- the application --------------------------------------------------------------------

    async def create(self, data: ApplicationCreate) -> ApplicationRead:
        product = await self._listed_product(data.product_id)
        if product.status != "listed":
            raise Conflict("Only listed products take applications.", code="product_not_available")
        now = utcnow()
        app = Application(
            id=new_id("app"),
            consumer_org_id=self.caller.org_id,
            product_id=product.id,
            plan_id=data.plan_id,
            status="draft",
            purpose=msgspec.to_builtins(data.purpose),
            project=msgspec.to_builtins(data.project),
            analysts=list(dict.fromkeys(data.analysts)),
            ethics_approval=_plain(data.ethics_approval),
            requested_start=data.requested_start,
            requested_months=data.requested_months,
            round=0,
            created_by=self.caller.user_id,
            created_at=now,
            updated_at=now,
        )
        await self._check(app, product)
        self.session.add(app)
        await self.session.flush()
        await self._audit("application.created", app, product, {"plan_id": app.plan_id})
        return await self.read(app)

    async def update(self, app_id: str, data: ApplicationUpdate) -> ApplicationRead:
        app = await self._own(app_id, lock=True)
        if app.status not in EDITABLE:
            raise Conflict(f"An application that is {app.status} cannot be edited.", code="invalid_transition")
        changes = {k: v for k, v in msgspec.structs.asdict(data).items() if v is not msgspec.UNSET}
        for name, value in changes.items():
            setattr(app, name, list(dict.fromkeys(value)) if name == "analysts" else _plain(value))
        product = await self._product(app)
        await self._check(app, product)
        app.updated_at = utcnow()
        await self.session.flush()
        await self._audit("application.updated", app, product, {"fields": sorted(changes)})
        return await self.read(app)

    async def _check(self, app: Application, product: Product) -> None:
        """What must hold of the application itself (eligibility is separate, at submit)."""
        errors: list[FieldError] = []
        plan = await products_repo.plan(self.session, app.plan_id)
        if plan is None or plan.product_id != product.id:
            errors.append(FieldError("plan_id", "not a plan of this product"))
        rule = policy.rule(product.grade)
        if rule.named_analysts and not app.analysts:
            errors.append(FieldError("analysts", f"a {product.grade} licence names its analysts"))
        members = await repo.memberships(self.session, app.consumer_org_id, app.analysts)
        errors += [
            FieldError(f"analysts.{i}", "not a member of your organisation with the analyst role")
            for i, user in enumerate(app.analysts)
            if user not in members or not _is_analyst(members[user].roles)
        ]
        if rule.public_summary and not app.project.get("public_summary"):
            errors.append(FieldError("project.public_summary", f"required at {product.grade}: it is published"))
        ethics = app.ethics_approval
        if ethics and ethics["approved_on"] > ethics["expires_on"]:
            errors.append(FieldError("ethics_approval.expires_on", "expires before it was approved"))
        if errors:
            raise ValidationFailed.of(errors)

    async def submit(self, app_id: str) -> ApplicationRead:
        app = await self._own(app_id, lock=True)
        if app.status not in EDITABLE:
            raise Conflict(f"An application that is {app.status} cannot be submitted.", code="invalid_transition")
        product = await self._product(app)
        if product.status != "listed":
            raise Conflict("The product is no longer listed.", code="product_not_available")
        await self._check(app, product)
        ethics = app.ethics_approval
        blockers = await self.blockers_of(
            app, product, app.plan_id, date.fromisoformat(ethics["expires_on"]) if ethics else None
        )
        if blockers:
            raise Unprocessable(
                "The application is not eligible.",
                code="ineligible",
                blockers=[msgspec.to_builtins(b) for b in blockers],
            )
        now = utcnow()
        app.status, app.submitted_at, app.round = "submitted", now, app.round + 1
        tracks = await review.open_tracks(self.session, app, product)
        await self._audit("application.submitted", app, product, {"round": app.round, "tracks": tracks})
        await tell.application(self.session, "application.submitted", app, product, {"tracks": tracks})
        if not tracks:
            await review.approve(self.session, self.caller, app, product)
        else:
            app.status = "under_review"
        await self.session.flush()
        return await self.read(app)

    async def withdraw(self, app_id: str) -> ApplicationRead:
        app = await self._own(app_id, lock=True)
        if app.status not in WITHDRAWABLE:
            raise Conflict(f"An application that is {app.status} cannot be withdrawn.", code="invalid_transition")
        renewing = app.renewing_licence_id
        if renewing:  # a renewal under review: withdrawn, the approval of the licences it has stands
            app.status, app.renewing_licence_id = "approved", None
        else:
            app.status, app.decided_at = "withdrawn", utcnow()
        for track in (await repo.tracks(self.session, [app.id]))[app.id]:
            if track.status == "pending":
                track.status = "cancelled"
        await self.session.flush()
        action = "application.renewal_withdrawn" if renewing else "application.withdrawn"
        await self._audit(action, app, await self._product(app), {"licence_id": renewing} if renewing else {})
        return await self.read(app)

    # --- review -----------------------------------------------------------------------------

    async def decide(self, app_id: str, track: str, data: Decision) -> ApplicationRead:
        return await self.read(await review.decide(self.session, self.caller, app_id, track, data))

    # --- reads ------------------------------------------------------------------------------

    async def get(self, app_id: str) -> ApplicationRead:
        app = await repo.application(self.session, app_id)
        if app is None or not await self._party(app):
            raise NotFound(f"No application {app_id}.")
        return await self.read(app)

    async def list(self, page: PageRequest, status: str | None, product_id: str | None) -> ApplicationList:
        product_id = await products_repo.id_of(self.session, product_id)
        result = await repo.list_applications(self.session, self.caller, page, status, product_id)
        return ApplicationList(items=await self._reads(result.items), next_cursor=result.next_cursor)

    async def read(self, app: Application) -> ApplicationRead:
        return (await self._reads([app]))[0]

    async def _reads(self, apps: list[Application]) -> list[ApplicationRead]:
        ids = [a.id for a in apps]
        tracks = await repo.tracks(self.session, ids)
        licences = await repo.licence_ids_for(self.session, ids)
        return [
            ApplicationRead(
                id=a.id,
                product_id=a.product_id,
                plan_id=a.plan_id,
                consumer_org_id=a.consumer_org_id,
                status=a.status,
                purpose=a.purpose,
                project=a.project,
                analysts=list(a.analysts),
                ethics_approval=a.ethics_approval,
                requested_start=a.requested_start,
                requested_months=a.requested_months,
                round=a.round,
                tracks=[msgspec.convert(t, TrackRead, from_attributes=True) for t in tracks[a.id]],
                licence_id=licences.get(a.id),
                renewing_licence_id=a.renewing_licence_id,
                submitted_at=a.submitted_at,
                decided_at=a.decided_at,
                created_at=a.created_at,
                updated_at=a.updated_at,
            )
            for a in apps
        ]

    async def _party(self, app: Application) -> bool:
        if self.caller.is_operator or app.consumer_org_id == self.caller.org_id:
            return True
        product = await self._product(app)
        return product.owner_org_id == self.caller.org_id

    async def _own(self, app_id: str, *, lock: bool = False) -> Application:
        """The applicant's own application, for its buyers and admin."""
        app = await repo.application(self.session, app_id, lock=lock)
        if app is None or app.consumer_org_id != self.caller.org_id:
            raise NotFound(f"No application {app_id}.")
        return app

    async def _product(self, app: Application) -> Product:
        product = await products_repo.get(self.session, app.product_id)
        assert product is not None
        return product

    async def _audit(self, action: str, app: Application, product: Product, data: dict[str, Any]) -> None:
        await review.audit_application(self.session, self.caller, action, app, product, data)


def _plan_facts(plan: Plan) -> eligibility.PlanFacts:
    return eligibility.PlanFacts(
        id=plan.id, kind=plan.kind, active=plan.active, private_to=list(plan.private_to), term_months=plan.term_months
    )


def _is_analyst(roles: list[str]) -> bool:
    return "analyst" in roles or "admin" in roles


def _plain(value: Any) -> Any:
    return msgspec.to_builtins(value) if value is not None else None
