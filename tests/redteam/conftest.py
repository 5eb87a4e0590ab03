"""Fixtures of the red team (``target.py`` builds what it attacks).

Each suite runs against two configurations:

* ``defended`` — the grade policy as shipped (on SQLite and on PostgreSQL);
* ``weakened`` — L4 as it was before its revision (``target.weakened_l4_rule``), on SQLite only: the
  answers do not depend on the database, and this run only proves that the attack works and that
  the new defences are what stop it.

The daily cap on L4 queries is lifted in both: the suites measure the anonymisation itself within
their own query budgets (the cap is one more layer on top).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from catalog import policy
from tests.redteam import target as redteam


@pytest.fixture(params=["defended", "weakened"], name="configuration")
def fx_configuration(request: pytest.FixtureRequest, database: str) -> Iterator[str]:
    if request.param == "weakened" and not database.startswith("sqlite"):
        pytest.skip("the weakened configuration runs on SQLite only: answers do not depend on the database")
    yield request.param
    policy.install(policy.DEFAULT_POLICY)


@pytest.fixture(name="target")
async def fx_target(client, actors, catalogue, app, configuration) -> dict[str, Any]:
    l4 = policy.DEFAULT_RULES["L4"]
    redteam.install(redteam.weakened_l4_rule(l4) if configuration == "weakened" else l4)
    analyst = await redteam.licensed_analyst(client, actors, catalogue)
    return {"analyst": analyst, "people": redteam.people(), "configuration": configuration}
