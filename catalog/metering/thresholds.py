"""Telling a licence's parties that it nears a cap or that its ε budget runs low — once each.

``usage.cap_near`` when a capped dimension reaches 80 % of its cap in a cap period (once per
dimension and period); ``budget.low`` when less than 20 % of the consumer's ε budget for the
product remains (once per budget, which is never refilled). Caps are judged on the counters the
settling (or, for reported usage, the ingesting) statement answers, the budget on what spending
it answers: no statement is added to a query for either.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from catalog.access import repository as access_repo
from catalog.access.models import Licence
from catalog.metering import once
from catalog.notifications import events as notices

NEAR = 0.8
LOW = 0.2


async def watch_caps(session: AsyncSession, licence: Licence, period: date, used: dict[str, int]) -> None:
    """``used``: the counters the caller just changed, as they now stand (the others did not move)."""
    keys = {d: f"usage.cap_near:{licence.id}:{d}:{period.isoformat()}" for d in licence.caps if d in used}
    for dimension, key in keys.items():
        cap = int(licence.caps[dimension])
        now = used.get(dimension, 0)
        if cap > 0 and now >= NEAR * cap and not once.told(key):
            data = {"licence_id": licence.id, "dimension": dimension, "used": now, "cap": cap, "period_start": period}
            await _tell(session, licence, "usage.cap_near", key, data)


async def watch_budget(session: AsyncSession, licence: Licence, spent_micro: int, total_micro: int) -> None:
    """Judged where ε is spent (at reserve: a spent ε is not given back once noise may be drawn),
    on what the spending statement answered."""
    key = f"budget.low:{licence.consumer_org_id}:{licence.product_id}"
    left = total_micro - spent_micro
    if total_micro and left < LOW * total_micro and not once.told(key):
        data = {
            "licence_id": licence.id,
            "product_id": licence.product_id,
            "epsilon_left": left / 1e6,
            "epsilon_total": total_micro / 1e6,
        }
        await _tell(session, licence, "budget.low", key, data)


async def _tell(session: AsyncSession, licence: Licence, type: str, key: str, data: dict[str, object]) -> None:
    parties = await access_repo.party_org_ids(session, licence.id)
    await notices.publish(session, type, ("licence", licence.id), parties, data, dedupe_key=key)
    once.remember(session, key)
