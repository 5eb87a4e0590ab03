"""The pages' router: every page controller, the assets Lode serves itself, and refusals as pages."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig

from catalog.web.catalogue import CataloguePages
from catalog.web.consumer import ConsumerPages
from catalog.web.notifications import NotificationPages
from catalog.web.pages import PAGE, page_error
from catalog.web.provider import ProviderPages
from catalog.web.reviews import ReviewPages
from catalog.web.signin import SignInPages

HERE = Path(__file__).parent
ASSETS_MAX_AGE = 3600


def swagger_ui_dir() -> Path:
    """Swagger UI's files from the ``swagger-ui-py`` wheel, found without importing the package
    (its ``__init__`` wires web frameworks Lode does not use)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed; it serves /docs' assets")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def template_config() -> TemplateConfig[Any]:
    return TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine)


def router() -> list[Any]:
    pages = Router(
        path="/",
        route_handlers=[CataloguePages, SignInPages, ConsumerPages, ReviewPages, ProviderPages, NotificationPages],
        exception_handlers={Exception: page_error},
        include_in_schema=False,
    )
    cache = CacheControlHeader(max_age=ASSETS_MAX_AGE, public=True)
    assets = create_static_files_router(
        "/static", [HERE / "static"], opt=PAGE, include_in_schema=False, cache_control=cache, name="web.static"
    )
    swagger = create_static_files_router(
        "/static/swagger-ui", [swagger_ui_dir()], opt=PAGE, include_in_schema=False, cache_control=cache,
        name="web.swagger",
    )  # fmt: skip
    return [pages, swagger, assets]
