"""Usage over time as an SVG drawn on the server: no chart library, nothing for the browser to fetch."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from html import escape
from typing import Any

WIDTH, HEIGHT, PAD = 600, 160, 28


def daily(rows: list[dict[str, Any]], dimension: str, since: date, until: date) -> list[tuple[date, float]]:
    """One point per day from ``since`` to ``until``, zero where nothing was metered."""
    totals: dict[date, float] = defaultdict(float)
    for row in rows:
        if row["dimension"] == dimension:
            value = row["epsilon"] if dimension == "epsilon_spent" and row["epsilon"] is not None else row["quantity"]
            totals[date.fromisoformat(row["period"][:10])] += value
    days = (until - since).days + 1
    return [(since + timedelta(days=i), totals.get(since + timedelta(days=i), 0.0)) for i in range(days)]


def bar_chart(points: list[tuple[date, float]], title: str) -> str:
    """Bars per day with the maximum labelled; the title doubles as the image's accessible name."""
    top = max((v for _, v in points), default=0) or 1
    width = (WIDTH - 2 * PAD) / max(len(points), 1)
    bars = []
    for i, (day, value) in enumerate(points):
        h = (HEIGHT - 2 * PAD) * value / top
        x = PAD + i * width
        bars.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{max(width - 2, 1):.1f}" height="{h:.1f}">'
            f"<title>{day.isoformat()}: {value:g}</title></rect>"
        )
    first = points[0][0].isoformat() if points else ""
    last = points[-1][0].isoformat() if points else ""
    return (
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>'
        f'<text x="{PAD}" y="{PAD - 10}" class="label">max {top:g}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 8}" class="label">{first}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" class="label" text-anchor="end">{last}</text>'
        f"{''.join(bars)}</svg>"
    )
