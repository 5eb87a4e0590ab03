"""Alembic migrations; ``lode db upgrade`` runs them (no alembic.ini: the config is built in code).

Part of the composition root: it sees every model, billing's included.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from catalog.settings import Settings

SCRIPT_LOCATION = Path(__file__).parent


def load_all_models() -> None:
    """Import every model module so ``Base.metadata`` is complete."""
    from billing import models as _billing  # noqa: F401
    from catalog import audit, idempotency, outbox  # noqa: F401
    from catalog.access import models as _access  # noqa: F401
    from catalog.metering import models as _metering  # noqa: F401
    from catalog.notifications import models as _notifications  # noqa: F401
    from catalog.orgs import models as _orgs  # noqa: F401
    from catalog.products import models as _products  # noqa: F401
    from catalog.products import search_sql as _search  # noqa: F401
    from catalog.web import models as _web  # noqa: F401


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    config.attributes["settings"] = settings
    return config
