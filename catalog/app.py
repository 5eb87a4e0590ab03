"""The composition root: settings, database, routes, outbox handlers, jobs and the worker.

This module (with ``cli.py``, ``worker.py`` and ``migrations/``) is the only place in ``catalog``
that may import ``billing``; everything else tells billing what happened through outbox events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig, SQLAlchemyPlugin
from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Server, Tag

from billing import meters, payments, refunds, simulated, subscriptions, transfers, webhooks
from billing.gateway import Gateway
from billing.routes import BillingController, WebhookController
from catalog import auth, db, errors, intake, observability, outbox, policy, shielded
from catalog.access import blocklists
from catalog.access import repository as access_repo
from catalog.access import sweep as licence_sweep
from catalog.access.licence_routes import BlocklistController, LicenceController, RegisterController
from catalog.access.models import Licence
from catalog.access.routes import ApplicationController
from catalog.delivery import auditor
from catalog.delivery.noise import Noise
from catalog.delivery.routes import DeliveryController, QueryAlertController
from catalog.metering import reservations as metering
from catalog.metering.routes import MeteringController
from catalog.notifications import audiences
from catalog.notifications.dispatcher import Dispatcher
from catalog.notifications.routes import NotificationController, WebhookEndpointController
from catalog.objectstore import open_store
from catalog.ops import AuditController, Health
from catalog.orgs.routes import OrgController
from catalog.pagination import provide_page
from catalog.products import releases
from catalog.products.commerce_routes import CommerceController
from catalog.products.release_routes import ReleaseController
from catalog.products.routes import ProductController
from catalog.settings import Settings, load_settings
from catalog.storage import Storage
from catalog.web import api as web_api
from catalog.web import routes as web
from catalog.worker import Worker

API_VERSION = "1.0.0"
MAX_BODY_BYTES = 1024 * 1024
ROUTES: list[Any] = [
    Health,
    OrgController,
    AuditController,
    ProductController,
    ReleaseController,
    CommerceController,
    ApplicationController,
    LicenceController,
    BlocklistController,
    RegisterController,
    DeliveryController,
    QueryAlertController,
    MeteringController,
    BillingController,
    WebhookController,
    NotificationController,
    WebhookEndpointController,
]


def build_registry(settings: Settings) -> outbox.Registry:
    """Outbox handlers by event name and periodic jobs."""
    registry = outbox.Registry()
    registry.every("licences.sweep", timedelta(minutes=5), licence_sweep.sweep)
    registry.every("reservations.sweep", timedelta(minutes=1), metering.sweep_reservations)
    registry.every("queries.audit", auditor.INTERVAL, auditor.audit_queries)
    registry.every("meters.report", timedelta(hours=1), meters.report_due)
    registry.handler("usage.recorded", meters.on_usage)
    registry.handler(meters.METER_EVENT, meters.send)
    registry.handler(webhooks.EVENT, webhooks.handle)
    registry.handler(webhooks.GRACE_EVENT, webhooks.grace_elapsed)
    registry.handler(transfers.TRANSFER_EVENT, transfers.send)
    registry.handler(payments.REVERSAL_EVENT, transfers.send_reversal)
    registry.handler(refunds.EVENT, refunds.send)
    registry.handler(payments.FEE_EVENT, payments.book_fee)
    registry.handler("licence.revoked", subscriptions.on_ended)
    registry.handler("licence.expired", subscriptions.on_ended)
    registry.handler("licence.suspended", subscriptions.on_suspended)
    registry.handler("licence.reinstated", subscriptions.on_reinstated)
    registry.handler(releases.STORAGE_DELETE, releases.delete_stored)
    return registry


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Lode — health-data product exchange",
        version=API_VERSION,
        description=(
            "Graded health-data products: find them, apply for access, sign a licence, pay, and use the data "
            "under the grade. Authenticate with `Authorization: Bearer <api key>`. Errors are RFC 9457 "
            "`application/problem+json` with a stable `code`."
        ),
        servers=[Server(url="/")],
        components=Components(
            security_schemes={"ApiKey": SecurityScheme(type="http", scheme="bearer", description="A Lode API key")}
        ),
        security=[{"ApiKey": []}],
        tags=[
            Tag(name=t)
            for t in (
                "Identity",
                "Catalogue",
                "Circulation",
                "Delivery",
                "Metering",
                "Billing",
                "Notifications",
                "Audit",
                "Operations",
            )
        ],
        path="/schema",
        use_handler_docstrings=False,
    )


def create_app(
    settings: Settings | None = None,
    *,
    run_worker: bool | None = None,
    registry: outbox.Registry | None = None,
    services: dict[str, Any] | None = None,
) -> Litestar:
    settings = settings or load_settings()
    observability.configure_logging(settings.log_level, settings.node_name)
    policy.install(policy.load(settings.policy_file))
    engine = db.create_engine(settings)
    sessions = db.create_sessionmaker(engine)
    registry = registry or build_registry(settings)
    services = services if services is not None else build_services(settings)
    simulator = services.get("stripe_simulator")
    dispatcher = build_dispatcher(settings, sessions)
    worker = Worker(
        sessions, registry, services, lease=timedelta(seconds=settings.worker_lease_s), companions=[dispatcher]
    )
    if run_worker is None:  # `lode serve --no-worker` reaches uvicorn's worker processes through the env
        run_worker = settings.env != "test" and os.environ.get("LODE_RUN_WORKER", "1") != "0"
    start_worker = run_worker

    @contextlib.asynccontextmanager
    async def worker_lifespan(app: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(worker.run(), name="lode-worker") if start_worker else None
        try:
            yield
        finally:
            worker.stop()
            if task is not None:
                await task  # the event in hand finishes: a graceful shutdown abandons nothing
            await shielded.drain()  # settlements of requests the server cancelled, before the engine goes
            await web_api.close(app)
            app.state.storage.close()
            if simulator is not None:
                simulator.close()
            await engine.dispose()  # pooled connections die with the loop that made them

    alchemy = SQLAlchemyAsyncConfig(
        engine_instance=engine,
        session_maker=sessions,
        session_dependency_key="db_session",
        create_all=False,
    )
    pages = [*web.router(), simulated.pages(simulator)] if simulator is not None else web.router()
    app = Litestar(
        route_handlers=[*ROUTES, *pages],
        template_config=web.template_config(),
        plugins=[SQLAlchemyPlugin(config=alchemy)],
        dependencies={
            "tx": Provide(db.provide_transaction),
            "page": Provide(provide_page),
            "caller": Provide(auth.provide_caller),
            "viewer": Provide(auth.provide_viewer),
        },
        middleware=[observability.AccessLogMiddleware(), auth.AuthenticationMiddleware(), intake.IntakeMiddleware()],
        request_class=intake.IntakeRequest,
        guards=[auth.require_caller],
        exception_handlers={Exception: errors.problem_response},
        before_send=[observability.add_request_id_header],
        lifespan=[worker_lifespan],
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
        debug=False,
        logging_config=None,
    )
    app.state.settings = settings
    app.state.query_parameters = intake.declared_query_parameters(app)
    app.state.engine = engine
    app.state.sessions = sessions
    app.state.registry = registry
    app.state.worker = worker
    app.state.dispatcher = dispatcher
    app.state.services = services
    app.state.storage = services.get("storage") or build_storage(settings)
    app.state.noise = Noise(settings.noise_secret)
    app.state.org_hooks = [blocklists.on_verification_changed]
    audiences.provide("licensees", access_repo.licensees)
    if simulator is not None:
        simulated.serve(simulator, app, settings)
    return app


def build_storage(settings: Settings) -> Storage:
    """Release files in the local folder, or in the bucket ``LODE_STORAGE_URL`` names; DuckDB's spill
    and scratch files stay in ``<LODE_DATA_DIR>/objects`` either way."""
    return Storage(
        settings.data_dir / "objects",
        store=open_store(settings),
        memory_limit=settings.query_memory_limit,
        timeout_s=settings.query_timeout_s,
    )


def build_services(settings: Settings, gateway: Gateway | None = None) -> dict[str, Any]:
    """Objects handlers, jobs and the demo need beyond the database.

    The gateway: the one given (tests), else Stripe when a key is configured, else — outside
    production — the built-in Stripe simulator (``stripe_simulator``, wired by
    ``billing/simulated.py``); in production without a key, none: priced checkouts answer
    ``503 billing_not_configured``.
    """
    if gateway is None and settings.stripe_api_key:
        gateway = Gateway.from_key(
            settings.stripe_api_key,
            settings.stripe_webhook_secrets,
            settings.stripe_api_base,
            timeout_s=settings.stripe_timeout_s,
            max_retries=settings.stripe_max_retries,
        )
    services: dict[str, Any] = {"settings": settings, "storage": build_storage(settings), "gateway": gateway}
    if gateway is None and settings.stripe_simulated:
        services["stripe_simulator"], services["gateway"] = simulated.build(settings)
    return services


def build_dispatcher(settings: Settings, sessions: Any) -> Dispatcher:
    return Dispatcher(
        sessions,
        pepper=settings.key_pepper,
        timeout_s=settings.webhook_timeout_s,
        allow_private=settings.webhook_allow_private,
    )


def create_worker(settings: Settings) -> tuple[Worker, Callable[[], Awaitable[None]]]:
    """A worker for ``lode worker``: the same handlers and jobs as the in-process one.

    On simulated Stripe its calls' webhooks wait in the simulator's state until a served
    process sends them (this process serves no webhook endpoint).
    """
    observability.configure_logging(settings.log_level, settings.node_name)
    engine = db.create_engine(settings)
    services = build_services(settings)
    sessions = db.create_sessionmaker(engine)
    worker = Worker(
        sessions,
        build_registry(settings),
        services,
        lease=timedelta(seconds=settings.worker_lease_s),
        companions=[build_dispatcher(settings, sessions)],
    )

    async def dispose() -> None:
        if services.get("stripe_simulator") is not None:
            services["stripe_simulator"].close()
        services["storage"].close()  # its kept query databases and the store's connections
        await engine.dispose()

    return worker, dispose


def render_openapi(settings: Settings) -> str:
    app = create_app(settings, run_worker=False)
    return json.dumps(app.openapi_schema.to_schema(), indent=2, ensure_ascii=False) + "\n"


async def seed_demo(settings: Settings, *, progress: bool) -> dict[str, Any]:
    """Seed the demo; with no Stripe key its paid licence is paid through simulated Stripe (the
    same simulated Stripe, kept in the data directory, that ``lode serve`` then uses)."""
    from billing.demo import pay_pending
    from catalog.demo.licences import paid_by_demo
    from catalog.demo.seed import seed

    services = build_services(settings)
    simulator = services.get("stripe_simulator")
    engine = db.create_engine(settings)
    try:
        sessions = db.create_sessionmaker(engine)
        if simulator is not None:
            await simulated.adopt_known_ids(sessions, simulator)
        result = await seed(sessions, settings, services, progress=progress)
        # Only the licences the demo pays for itself: never one a user made, nor the one left to pay.
        to_pay = [made["licence_id"] for made in result["licences"] if paid_by_demo(made)]
        result["payments"] = await pay_pending(sessions, services, build_registry(settings), to_pay)
        async with db.read_transaction(sessions) as session:  # payment moved some licences on
            for made in result["licences"]:
                made["status"] = (await session.get(Licence, made["licence_id"])).status
        result["stripe"] = "simulated (no LODE_STRIPE_API_KEY)" if simulator else "Stripe (LODE_STRIPE_API_KEY)"
        return result
    finally:
        if simulator is not None:
            simulator.close()
        await engine.dispose()
