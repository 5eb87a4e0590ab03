"""How ``lode-client`` shows what Lode answered: rich tables for people, one JSON document for machines.

Human output goes to stdout as tables; notes (what disclosure control did, where a file went, the
next step) go to stderr, so a pipe carries only the answer. With ``--json`` stdout carries exactly
one JSON document — ``msgspec.to_builtins`` of the client's models — and nothing else.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

# Currencies whose amounts Lode counts in whole units (no minor unit).
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "XAF"})


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Piped human output is not cut at 80 columns: a script grepping a table should see whole ids.
    wide = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(file=stream, markup=False, highlight=False, emoji=False, width=wide)


class Output:
    """Where one command's answer and notes go, by the ``--json`` switch."""

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        self.out = _console(stderr=False)
        self.err = _console(stderr=True)

    def emit(self, data: Any, render: Callable[[Console], None]) -> None:
        """The command's one answer: ``data`` as JSON, or ``render`` it for a person."""
        if self.json:
            sys.stdout.write(dumps(data) + "\n")
            sys.stdout.flush()
        else:
            render(self.out)

    def note(self, message: str) -> None:
        """A line for the person at the terminal (stderr; silent under ``--json``)."""
        if not self.json:
            self.err.print(message, soft_wrap=True)


def dumps(data: Any) -> str:
    return json.dumps(msgspec.to_builtins(data), ensure_ascii=False, indent=2)


def money(amount: int | None, currency: str | None) -> str:
    if amount is None or not currency:
        return ""
    if currency.upper() in ZERO_DECIMAL:
        return f"{amount:,} {currency}"
    return f"{amount / 100:,.2f} {currency}"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def table(columns: Iterable[str], rows: Iterable[Iterable[Any]], title: str | None = None) -> Table:
    grid = Table(*columns, title=title, title_justify="left", header_style="bold", show_lines=False)
    for row in rows:
        grid.add_row(*(_cell(v) for v in row))
    return grid


def fields(pairs: Iterable[tuple[str, Any]], title: str | None = None) -> Table:
    """A two-column key/value table, skipping empty values."""
    grid = Table(show_header=False, title=title, title_justify="left", box=None, pad_edge=False)
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for key, value in pairs:
        if value not in (None, "", [], {}):
            grid.add_row(key, _cell(value))
    return grid


# -- identity -----------------------------------------------------------------------------------


def me(console: Console, who: Any, url: str, profile: str | None) -> None:
    org = who.organisation
    console.print(fields([
        ("user", f"{who.user.get('name', '')} <{who.user.get('email', '')}>"), ("user id", who.user.get("id")),
        ("organisation", f"{org.get('name', '')} ({org.get('slug', '')})"), ("organisation id", org.get("id")),
        ("kind", org.get("kind")), ("roles", who.roles), ("url", url), ("profile", profile),
    ]))  # fmt: skip


# -- catalogue ----------------------------------------------------------------------------------


def products(console: Console, items: list[Any], title: str | None = None) -> None:
    rows = [
        (p.slug, p.grade, p.title, p.owner_org.slug if p.owner_org else "", p.pricing, p.data_types, p.id)
        for p in items
    ]
    console.print(table(["slug", "grade", "title", "provider", "pricing", "data types", "id"], rows, title))


def product(console: Console, p: Any) -> None:
    owner = f"{p.owner_org.name} ({p.owner_org.slug})" if p.owner_org else None
    console.print(fields([
        ("title", p.title), ("slug", p.slug), ("id", p.id), ("grade", p.grade), ("status", p.status),
        ("provider", owner), ("jurisdiction", p.jurisdiction), ("summary", p.summary),
        ("legal basis", p.legal_basis), ("data types", p.data_types), ("standards", p.standards),
        ("therapeutic areas", p.therapeutic_areas), ("population", p.population_size), ("records", p.record_count),
    ]))  # fmt: skip
    if p.plans:
        rows = [
            (pl.id, pl.name, pl.kind, money(pl.amount, pl.currency), pl.interval, pl.term_months, pl.modes, pl.caps)
            for pl in p.plans
        ]
        console.print(table(["plan id", "name", "kind", "price", "interval", "months", "modes", "caps"], rows, "plans"))
    if p.terms:
        conditions = _conditions(p.terms.use_conditions)
        console.print(fields([
            ("version", p.terms.version), ("terms sha256", p.terms.terms_sha256),
            ("use conditions", conditions), ("local conditions", p.terms.local_conditions),
        ], title="terms"))  # fmt: skip
    if p.releases:
        rows = [(r.version, r.status, [f.name for f in r.files], r.published_at, r.notes) for r in p.releases]
        console.print(table(["version", "status", "files", "published", "notes"], rows, "releases"))
    for tab in p.dictionary or []:
        rows = [
            (f["name"], f["type"], f.get("description"), f.get("sensitive"), _domain(f)) for f in tab.get("fields", [])
        ]
        title = f"dictionary: {tab['table']}" + (f" (person key {tab['person_key']})" if tab.get("person_key") else "")
        console.print(table(["field", "type", "description", "sensitive", "values"], rows, title))


def _conditions(use_conditions: list[dict[str, Any]]) -> list[str]:
    return [c["code"] + (f"({_cell(c['params'])})" if c.get("params") else "") for c in use_conditions]


def _domain(field: dict[str, Any]) -> str:
    if field.get("categories"):
        return ", ".join(map(str, field["categories"]))
    low, high = field.get("min"), field.get("max")
    if low is not None or high is not None:
        return f"{'' if low is None else f'{low:g}'}–{'' if high is None else f'{high:g}'}"
    return field.get("code_system") or ""


def eligibility(console: Console, result: Any) -> None:
    if result.eligible:
        console.print("eligible: nothing stands between your organisation and a licence")
        return
    rows = [(b.code, b.field, b.message) for b in result.blockers]
    console.print(table(["blocker", "field", "what"], rows, "not eligible"))


# -- circulation --------------------------------------------------------------------------------


def applications(console: Console, items: list[Any]) -> None:
    rows = [
        (a.id, a.product_id, a.status, a.round, ", ".join(f"{t.track}:{t.status}" for t in a.tracks), a.licence_id)
        for a in items
    ]
    console.print(table(["id", "product", "status", "round", "tracks", "licence"], rows))


def application(console: Console, a: Any) -> None:
    purpose = a.purpose
    console.print(fields([
        ("id", a.id), ("status", a.status), ("product", a.product_id), ("plan", a.plan_id), ("round", a.round),
        ("purpose", f"{purpose.get('category')}{' commercial' if purpose.get('commercial') else ''}"
                    f" {_cell(purpose.get('disease_codes'))} in {purpose.get('territory')}"),
        ("project", a.project.get("title")), ("analysts", a.analysts), ("months", a.requested_months),
        ("submitted", a.submitted_at), ("decided", a.decided_at), ("licence", a.licence_id),
    ]))  # fmt: skip
    rows = [(t.track, t.status, t.decision, t.comment, t.conditions, t.decided_at) for t in a.tracks]
    if rows:
        console.print(table(["track", "status", "decision", "comment", "conditions", "decided"], rows, "review tracks"))


def licences(console: Console, items: list[Any]) -> None:
    rows = [
        (lic.id, lic.product_id, lic.status, lic.modes, lic.starts_on, lic.ends_on, [h.kind for h in lic.holds])
        for lic in items
    ]
    console.print(table(["id", "product", "status", "modes", "starts", "ends", "holds"], rows))


def licence(console: Console, lic: Any) -> None:
    console.print(fields([
        ("id", lic.id), ("status", lic.status), ("product", lic.product_id), ("plan", lic.plan_id),
        ("application", lic.application_id), ("terms", f"version {lic.terms_version}"),
        ("terms sha256", lic.terms_sha256), ("term", f"{lic.starts_on} – {lic.ends_on}"), ("modes", lic.modes),
        ("caps", f"{_cell(lic.caps)} per {lic.cap_period}" if lic.caps else None), ("analysts", lic.analysts),
        ("holds", [f"{h.kind}{f' ({h.reason})' if h.reason else ''}" for h in lic.holds]),
        ("payment due by", lic.payment_due_by),
    ]))  # fmt: skip


def terms(console: Console, pinned: Any) -> None:
    conditions = _conditions(pinned.use_conditions)
    console.print(fields([
        ("terms", f"version {pinned.version}"), ("use conditions", conditions),
        ("local conditions", pinned.local_conditions),
    ]))  # fmt: skip
    console.print(pinned.clauses.rstrip())
    console.print(f"terms sha256: {pinned.terms_sha256}")


# -- delivery -----------------------------------------------------------------------------------


def answer_rows(console: Console, answer: Any) -> None:
    console.print(table(answer.columns, [[row.get(c) for c in answer.columns] for row in answer.rows]))


def disclosure_notes(answer: Any) -> list[str]:
    """What disclosure control did to an answer, in words: always the release, the cells withheld,
    whether values were perturbed and the ε spent; then the details."""
    notes = [
        f"release {answer.release} ({answer.mode}): {len(answer.rows)} rows; "
        f"{len(answer.suppressed)} {'cell' if len(answer.suppressed) == 1 else 'cells'} suppressed; "
        f"{'perturbed' if answer.perturbed else 'not perturbed'}; "
        f"ε spent {answer.epsilon_spent:g}"
    ]
    for cell in answer.suppressed[:10]:
        notes.append(f"  suppressed ({cell.get('reason')}): {_cell(cell.get('group'))} {_cell(cell.get('columns'))}")
    if len(answer.suppressed) > 10:
        notes.append(f"  … and {len(answer.suppressed) - 10} more suppressed")
    sd = sorted({v for row in answer.noise_sd or [] for v in row.values() if v is not None})
    if sd:
        notes.append(f"  noise SD {sd[0]:g}" + (f"–{sd[-1]:g}" if sd[-1] != sd[0] else ""))
    for snap in answer.snapped:
        notes.append(f"  snapped: {snap.get('condition')} read as [{snap.get('low')}, {snap.get('high')})")
    for low in answer.low_effect:
        notes.append(f"  low effect: {low.get('condition')} {low.get('field')} {_cell(low.get('value'))}".rstrip())
    if answer.truncated or answer.next_cursor:
        notes.append("  truncated: more rows remain (--all-pages)")
    return notes


def write_answer(answer: Any, out: str, kind: str) -> None:
    """An answer's rows as Parquet (the disclosure in the schema metadata, ``b"lode"``) or as CSV
    with a header (``-``: on stdout)."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(answer.to_arrow(), out)
        return
    fh = sys.stdout if out == "-" else open(out, "w", newline="", encoding="utf-8")
    try:
        writer = csv.writer(fh)
        writer.writerow(answer.columns)
        writer.writerows([row.get(c) for c in answer.columns] for row in answer.rows)
    finally:
        if fh is not sys.stdout:
            fh.close()


def files(console: Console, items: list[Any]) -> None:
    rows = [(f.name, f.release, f.table, f.format, f"{f.bytes:,}", f"{f.rows:,}", f.sha256) for f in items]
    console.print(table(["name", "release", "table", "format", "bytes", "rows", "sha256"], rows))


def budget(console: Console, b: Any) -> None:
    console.print(fields([
        ("ε total", f"{b.total:g}"), ("ε spent", f"{b.spent:g}"), ("ε left", f"{b.left:g}"),
        ("per query at most", f"{b.per_query_max:g}"),
    ]))  # fmt: skip


def usage(console: Console, report: Any) -> None:
    rows = [(r.period, r.licence_id, r.dimension, r.analyst_id, f"{r.quantity:,}", r.epsilon) for r in report.rows]
    title = f"usage by {report.granularity} ({report.tz})"
    console.print(table(["period", "licence", "dimension", "analyst", "quantity", "ε"], rows, title))
    totals = [(k, f"{v:,}") for k, v in sorted(report.totals.items())]
    if report.epsilon_spent:
        totals.append(("ε spent", f"{report.epsilon_spent:g}"))
    console.print(fields(totals, title="totals"))


def payments(console: Console, items: list[Any]) -> None:
    rows = [
        (p.id, p.licence_id, money(p.amount, p.currency), p.status, p.paid_at,
         "; ".join(f"{a.party} {money(a.amount, p.currency)}" for a in p.allocations if a.amount))
        for p in items
    ]  # fmt: skip
    console.print(table(["id", "licence", "amount", "status", "paid", "split"], rows))


# -- providers ----------------------------------------------------------------------------------


def release(console: Console, r: Any) -> None:
    console.print(fields([
        ("product", r.product_id), ("version", r.version), ("status", r.status), ("notes", r.notes),
        ("published", r.published_at),
    ]))  # fmt: skip
    if r.files:
        release_files(console, r.files)


def release_files(console: Console, items: list[Any]) -> None:
    rows = [(f.name, f.table, f.format, f"{f.bytes:,}", f"{f.rows:,}", f.sha256) for f in items]
    console.print(table(["name", "table", "format", "bytes", "rows", "sha256"], rows))


def releases(console: Console, items: list[Any]) -> None:
    rows = [(r.version, r.status, [f.name for f in r.files], r.published_at) for r in items]
    console.print(table(["version", "status", "files", "published"], rows))


# -- problems -----------------------------------------------------------------------------------


def refusal(exc: Any) -> None:
    """A problem on stderr: ``code: detail (request id)``, then the fields, blockers or holds it names."""
    lines = [f"{exc.code}: {exc.detail}" + (f" (request {exc.request_id})" if exc.request_id else "")]
    for error in exc.errors:
        where, what = error.get("field") or error.get("key") or "", error.get("message") or ""
        if what and what not in exc.detail:
            lines.append(f"  {where}: {what}")
    for item in [*(exc.problem.get("blockers") or []), *(exc.problem.get("holds") or [])]:
        if isinstance(item, dict):
            lines.append(f"  {item.get('code') or item.get('kind')}: {item.get('message') or item.get('reason') or ''}")
    sys.stderr.write("\n".join(lines) + "\n")
