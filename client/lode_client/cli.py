"""``lode-client``: Lode's API for shells and scripts, over ``lode_client.Client``.

    lode-client products search 糖尿病
    lode-client --json licences --status active
    lode-client query LICENCE --json q.json --out answer.parquet

Tables for people by default; ``--json`` (before or after the command) prints exactly one JSON
document on stdout. ``query`` is the one exception to "after": its own ``--json FILE`` names the
query file, as Lode's issue spells it (``--query/-q FILE`` is the same option), so machine output
of a query is asked for before the command: ``lode-client --json query …``. The exit codes are
in ``HELP``; ``main`` maps the client's exceptions to them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from lode_client import cli_output as show
from lode_client import config, errors, models
from lode_client.client import Client
from lode_client.transport import VERSION

HELP = """Lode, the health-data product exchange, from the shell.

Where: --url/--api-key, else LODE_URL/LODE_API_KEY, else a profile of ~/.config/lode/config.toml
(--profile or LODE_PROFILE, else the file's default; `lode-client login` writes one).

Output: tables on stdout, notes on stderr; --json prints exactly one JSON document on stdout.

Exit codes: 0 done; 1 aborted (a confirmation declined; 130 on Ctrl-C); 2 usage error (bad option or argument, no
URL or profile, a query that is not JSON); 3 refused by Lode (a 4xx problem, printed as
"code: detail (request id)" on stderr; also `eligibility` with blockers); 4 failed (Lode
unreachable after retries, a 5xx, a download whose SHA-256 does not match).
"""

OK, ABORTED, USAGE, REFUSED, FAILED = 0, 1, 2, 3, 4

app = typer.Typer(
    name="lode-client", help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)  # fmt: skip
products_app = typer.Typer(help="Search the catalogue and read a product.", no_args_is_help=True)
applications_app = typer.Typer(help="Your organisation's applications (list, or `show ID`).")
licences_app = typer.Typer(help="Your organisation's licences (list, or `show ID`).")
release_app = typer.Typer(help="Providers: create a release, upload its files, publish it.", no_args_is_help=True)
app.add_typer(products_app, name="products")
app.add_typer(applications_app, name="applications")
app.add_typer(licences_app, name="licences")
app.add_typer(release_app, name="release")

JsonFlag = Annotated[bool, typer.Option("--json", help="Exactly one JSON document on stdout.")]
Many = Annotated[list[str] | None, typer.Option(help="Repeatable, or comma-separated.")]


class Category(StrEnum):
    GRU = "GRU"
    HMB = "HMB"
    DS = "DS"
    POA = "POA"
    MDS = "MDS"


class TrackName(StrEnum):
    provider = "provider"
    ethics = "ethics"
    security = "security"
    compliance = "compliance"
    operator = "operator"


class DecisionName(StrEnum):
    approve = "approve"
    approve_with_conditions = "approve_with_conditions"
    reject = "reject"
    return_ = "return"


class Method(StrEnum):
    card = "card"
    invoice = "invoice"


class Granularity(StrEnum):
    day = "day"
    hour = "hour"


@dataclass
class State:
    url: str | None = None
    api_key: str | None = None
    profile: str | None = None
    json: bool = False
    retries: int = 4
    client: Client | None = None

    def connect(self) -> Client:
        if self.client is None:
            self.client = Client(self.url, self.api_key, self.profile, retries=self.retries)
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


_STATE = State()  # the global options of this run, set by the app's callback


def _state() -> State:
    return _STATE


def _session(as_json: bool = False) -> tuple[Client, show.Output]:
    state = _state()
    return state.connect(), show.Output(state.json or as_json)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lode-client {VERSION}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(help="Lode's base URL.", show_default=False)] = None,
    api_key: Annotated[str | None, typer.Option(help="An API key (prefer LODE_API_KEY or a profile).")] = None,
    profile: Annotated[str | None, typer.Option(help="A profile of the config file.")] = None,
    as_json: JsonFlag = False,
    retries: Annotated[int, typer.Option(min=0, help="Retries of a request Lode did not answer.")] = 4,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    global _STATE
    _STATE = State(url=url, api_key=api_key, profile=profile, json=as_json, retries=retries)
    ctx.call_on_close(_STATE.close)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option) from None


# -- identity -----------------------------------------------------------------------------------


@app.command()
def login(
    url: Annotated[str | None, typer.Option(help="Lode's base URL (prompted if missing).")] = None,
    api_key: Annotated[str | None, typer.Option(help="The API key (prompted, hidden, if missing).")] = None,
    name: Annotated[str, typer.Option(help="The profile's name.")] = config.DEFAULT_PROFILE,
    make_default: Annotated[bool, typer.Option("--default", help="Make it the default profile.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Check an API key against Lode and save it as a profile (the file is private: mode 0600).

    The key comes from --api-key, a line on stdin, or a hidden prompt."""
    state = _state()
    url = url or state.url or os.environ.get("LODE_URL")
    api_key = api_key or state.api_key or os.environ.get("LODE_API_KEY")
    if not sys.stdin.isatty():  # `echo "$KEY" | lode-client login --url …`: the key stays out of argv
        if not url:
            raise typer.BadParameter("name the URL with --url when stdin is not a terminal", param_hint="--url")
        api_key = api_key or sys.stdin.readline().strip() or None
    url = url or typer.prompt("Lode URL", default="http://127.0.0.1:8000", err=True)
    api_key = api_key or typer.prompt("API key", hide_input=True, err=True)
    with Client(url, api_key, retries=state.retries) as lode:
        who = lode.me()
    path = config.write_profile(name, url, api_key, make_default=make_default)
    out = show.Output(state.json or as_json)
    data = {"profile": name, "path": str(path), "url": url.rstrip("/"), **who.to_dict()}
    out.emit(data, lambda c: show.me(c, who, url.rstrip("/"), name))
    out.note(f"profile {name!r} written to {path} (mode 0600)")


@app.command()
def whoami(as_json: JsonFlag = False) -> None:
    """The key's user, organisation and roles."""
    lode, out = _session(as_json)
    who = lode.me()
    data = {**who.to_dict(), "url": lode.url, "profile": lode.profile}
    out.emit(data, lambda c: show.me(c, who, lode.url, lode.profile))


# -- catalogue ----------------------------------------------------------------------------------


@products_app.command("search")
def products_search(
    q: Annotated[str | None, typer.Argument(metavar="WORDS", help="Words, in Chinese or English.")] = None,
    grade: Many = None,
    data_type: Many = None,
    therapeutic_area: Many = None,
    standard: Many = None,
    provider: Many = None,
    pricing: Many = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    every: Annotated[bool, typer.Option("--all", help="Every match, page after page.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Search listed products (facets and counts with --json)."""
    lode, out = _session(as_json)
    filters = {
        "grade": _split(grade), "data_type": _split(data_type), "therapeutic_area": _split(therapeutic_area),
        "standard": _split(standard), "provider": _split(provider), "pricing": _split(pricing),
    }  # fmt: skip
    if every:
        items = list(lode.products.iter(q, limit=100, **filters))
        out.emit({"items": items}, lambda c: show.products(c, items))
        return
    page = lode.products.search(q, limit=limit, **filters)
    out.emit(page, lambda c: show.products(c, page.items))
    more = "; --all for every one (or --limit)" if page.next_cursor else ""
    out.note(f"{len(page.items)} of {'at least ' if page.total_is_lower_bound else ''}{page.total}{more}")


@products_app.command("show")
def products_show(product: Annotated[str, typer.Argument(metavar="ID_OR_SLUG")], as_json: JsonFlag = False) -> None:
    """A product: grade, plans (with their ids), terms and hash, releases, data dictionary."""
    lode, out = _session(as_json)
    item = lode.products.get(product)
    out.emit(item, lambda c: show.product(c, item))


@app.command()
def eligibility(
    product: Annotated[str, typer.Argument(metavar="PRODUCT")],
    category: Annotated[Category | None, typer.Option(help="The DUO use category.")] = None,
    commercial: Annotated[bool | None, typer.Option("--commercial/--no-commercial")] = None,
    disease_codes: Annotated[str | None, typer.Option(help="ICD-10 codes, comma-separated.")] = None,
    territory: Annotated[str | None, typer.Option(help="Where the data will be used (CN, DE, …).")] = None,
    plan: Annotated[str | None, typer.Option(help="A plan id.")] = None,
    months: Annotated[int | None, typer.Option(min=1)] = None,
    ethics_expires_on: Annotated[str | None, typer.Option(help="YYYY-MM-DD.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every blocker between your organisation and a licence, for a declared use (exit 3 if any)."""
    expires = _date(ethics_expires_on, "--ethics-expires-on")
    lode, out = _session(as_json)
    result = lode.products.eligibility(
        product, category=category.value if category else None, commercial=commercial, territory=territory,
        disease_codes=_split([disease_codes or ""]) or None, plan_id=plan, months=months, ethics_expires_on=expires,
    )  # fmt: skip
    out.emit(result, lambda c: show.eligibility(c, result))
    if not result.eligible:
        raise typer.Exit(REFUSED)


# -- circulation --------------------------------------------------------------------------------


@app.command()
def apply(
    product: Annotated[str, typer.Argument(metavar="PRODUCT")],
    plan: Annotated[str, typer.Option(help="The plan id (`products show`).")],
    category: Annotated[Category, typer.Option(help="The DUO use category.")],
    commercial: Annotated[bool, typer.Option("--commercial/--no-commercial", help="Declare the use.")],
    description: Annotated[str, typer.Option(help="The purpose, in words.")],
    territory: Annotated[str, typer.Option(help="Where the data will be used (CN, DE, …).")],
    title: Annotated[str, typer.Option(help="The project's title.")],
    summary: Annotated[str, typer.Option(help="The project's summary.")] = "",
    public_summary: Annotated[str | None, typer.Option(help="For the public register (L3 and up).")] = None,
    disease_codes: Annotated[str | None, typer.Option(help="ICD-10 codes, comma-separated: E11,E10.")] = None,
    months: Annotated[int, typer.Option(min=1, max=600, help="The term asked for.")] = 12,
    start: Annotated[str | None, typer.Option(help="The start asked for, YYYY-MM-DD.")] = None,
    analyst: Annotated[list[str] | None, typer.Option(help="A user id, or `me`; repeatable.")] = None,
    ethics_committee: Annotated[str | None, typer.Option()] = None,
    ethics_reference: Annotated[str | None, typer.Option()] = None,
    ethics_approved_on: Annotated[str | None, typer.Option(help="YYYY-MM-DD.")] = None,
    ethics_expires_on: Annotated[str | None, typer.Option(help="YYYY-MM-DD.")] = None,
    submit: Annotated[bool, typer.Option("--submit/--no-submit", help="Submit for review, or keep a draft.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Apply for a licence to a product (submitted for review unless --no-submit)."""
    ethics = [ethics_committee, ethics_reference, ethics_approved_on, ethics_expires_on]
    if any(v is not None for v in ethics) and not all(v is not None for v in ethics):
        raise typer.BadParameter(
            "an ethics approval needs all four: --ethics-committee, --ethics-reference, --ethics-approved-on, "
            "--ethics-expires-on", param_hint="--ethics-*",
        )  # fmt: skip
    approval = None
    if ethics_committee is not None:
        approval = {
            "committee": ethics_committee, "reference": ethics_reference,
            "approved_on": _date(ethics_approved_on, "--ethics-approved-on"),
            "expires_on": _date(ethics_expires_on, "--ethics-expires-on"),
        }  # fmt: skip
    requested_start = _date(start, "--start")
    lode, out = _session(as_json)
    analysts = _split(analyst)
    if "me" in analysts:
        mine = lode.me().user["id"]
        analysts = [mine if a == "me" else a for a in analysts]
    project = {"title": title, "summary": summary}
    if public_summary is not None:
        project["public_summary"] = public_summary
    purpose = {
        "category": category.value, "commercial": commercial, "description": description, "territory": territory,
        "disease_codes": _split([disease_codes or ""]),
    }  # fmt: skip
    made = lode.applications.create(
        product, plan, purpose=purpose, project=project, requested_months=months, analysts=analysts,
        ethics_approval=approval, requested_start=requested_start,
    )  # fmt: skip
    if submit:
        made = lode.applications.submit(made.id)
    out.emit(made, lambda c: show.application(c, made))
    out.note(f"application {made.id}: {made.status}")


@applications_app.callback(invoke_without_command=True)
def applications(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="draft, submitted, approved, …")] = None,
    product: Annotated[str | None, typer.Option(help="A product id or slug.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Your organisation's applications (or those for your products, as a provider)."""
    if ctx.invoked_subcommand is not None:
        _state().json |= as_json  # `licences --json show ID`
        return
    lode, out = _session(as_json)
    items = list(lode.applications.list(status=status, product=product))
    out.emit({"items": items}, lambda c: show.applications(c, items))


@applications_app.command("show")
def applications_show(application_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False) -> None:
    """One application and its review tracks."""
    lode, out = _session(as_json)
    item = lode.applications.get(application_id)
    out.emit(item, lambda c: show.application(c, item))


@app.command()
def withdraw(application_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False) -> None:
    """Withdraw an application."""
    lode, out = _session(as_json)
    item = lode.applications.withdraw(application_id)
    out.emit(item, lambda c: show.application(c, item))


@app.command()
def decide(
    application_id: Annotated[str, typer.Argument(metavar="APPLICATION")],
    track: Annotated[TrackName, typer.Argument(metavar="TRACK")],
    decision: Annotated[DecisionName, typer.Argument(metavar="DECISION")],
    comment: Annotated[str | None, typer.Option()] = None,
    conditions: Annotated[str | None, typer.Option(help="With approve_with_conditions.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Reviewers: decide your track of an application."""
    lode, out = _session(as_json)
    item = lode.applications.decide(application_id, track.value, decision.value, comment=comment, conditions=conditions)
    out.emit(item, lambda c: show.application(c, item))


@licences_app.callback(invoke_without_command=True)
def licences(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="pending_acceptance, pending_payment, active, …")] = None,
    product: Annotated[str | None, typer.Option(help="A product id or slug.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Your organisation's licences."""
    if ctx.invoked_subcommand is not None:
        _state().json |= as_json  # `licences --json show ID`
        return
    lode, out = _session(as_json)
    items = list(lode.licences.list(status=status, product=product))
    out.emit({"items": items}, lambda c: show.licences(c, items))


@licences_app.command("show")
def licences_show(licence_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonFlag = False) -> None:
    """One licence: status, pinned terms hash, term, caps, modes, holds."""
    lode, out = _session(as_json)
    item = lode.licences.get(licence_id)
    out.emit(item, lambda c: show.licence(c, item))


def _pinned_terms(lode: Client, licence: models.Licence) -> models.Terms:
    """The version of the product's terms the licence pins."""
    return lode.products.terms(licence.product_id, version=licence.terms_version)


@app.command()
def accept(
    licence_id: Annotated[str, typer.Argument(metavar="LICENCE")],
    terms_sha256: Annotated[str | None, typer.Option(help="The hash of the terms you read and accept.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Accept the terms shown without asking.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Accept a licence's terms. Without --terms-sha256 the terms are shown and confirmed."""
    lode, out = _session(as_json)
    if terms_sha256 is None:
        if out.json:
            raise typer.BadParameter("with --json, name the hash of the terms you accept", param_hint="--terms-sha256")
        licence = lode.licences.get(licence_id)
        show.terms(out.err, _pinned_terms(lode, licence))
        if not yes:
            if not sys.stdin.isatty():
                raise typer.BadParameter("not a terminal: confirm with --yes, or pass --terms-sha256")
            typer.confirm("Accept these terms?", abort=True, err=True)
        terms_sha256 = licence.terms_sha256
    item = lode.licences.accept(licence_id, terms_sha256)
    out.emit(item, lambda c: show.licence(c, item))
    if item.status == "pending_payment":
        out.note(f"next: lode-client checkout {item.id}")


@app.command()
def checkout(
    licence_id: Annotated[str, typer.Argument(metavar="LICENCE")],
    method: Annotated[Method, typer.Option()] = Method.card,
    success_url: Annotated[str | None, typer.Option()] = None,
    cancel_url: Annotated[str | None, typer.Option()] = None,
    as_json: JsonFlag = False,
) -> None:
    """Pay for a priced licence: prints the checkout URL (open it in a browser)."""
    lode, out = _session(as_json)
    item = lode.licences.checkout(licence_id, method=method.value, success_url=success_url, cancel_url=cancel_url)
    out.emit(item, lambda c: typer.echo(item.url))
    out.note(f"{show.money(item.amount, item.currency)} by {item.method}: open the URL to pay")


# -- delivery -----------------------------------------------------------------------------------


def _read_query(spec: str) -> dict[str, Any]:
    hint = "--query/--json"
    if spec == "-":
        text, source = sys.stdin.read(), "stdin"
    elif spec.lstrip().startswith("{"):
        text, source = spec, "the query"
    else:
        try:
            text, source = Path(spec).read_text(encoding="utf-8"), spec
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {spec}: {exc.strerror}", param_hint=hint) from None
    try:
        query = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{source} is not JSON: {exc}", param_hint=hint) from None
    if not isinstance(query, dict):
        raise typer.BadParameter(f"{source} is not a JSON object", param_hint=hint)
    return query


def _out_format(out: str | None) -> str | None:
    """The format ``--out`` asks for, checked before the query spends anything."""
    if out is None:
        return None
    kind = "csv" if out == "-" else Path(out).suffix.lower().lstrip(".")
    if kind not in ("csv", "parquet"):
        raise typer.BadParameter(f"{out}: name a .parquet or .csv file (or - for CSV on stdout)", param_hint="--out")
    if kind == "parquet":
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise errors.ConfigurationError("writing Parquet needs pyarrow: pip install 'lode-client[arrow]'") from None
    return kind


@app.command()
def query(
    licence_id: Annotated[str, typer.Argument(metavar="LICENCE")],
    spec: Annotated[
        str | None,
        typer.Option(
            "--query",
            "-q",
            "--json",
            metavar="FILE",
            help="The query: a JSON file, - for stdin, or the JSON itself. --json FILE is the same option "
            "(for machine output of a query: lode-client --json query …).",
        ),
    ] = None,
    out: Annotated[
        str | None, typer.Option(metavar="FILE", help="Write the rows to a .parquet or .csv file (- : CSV on stdout).")
    ] = None,
    all_pages: Annotated[bool, typer.Option("--all-pages", help="Follow a row answer's pages to the end.")] = False,
    max_rows: Annotated[int | None, typer.Option(min=1, help="With --all-pages: stop after this many rows.")] = None,
) -> None:
    """Run a query under a licence, as its grade allows; disclosure notes go to stderr."""
    if spec is None:
        raise typer.BadParameter("name the query: --query FILE (or --json FILE, - for stdin)", param_hint="--query")
    body = _read_query(spec)
    kind = _out_format(out)
    lode, output = _session()
    if out == "-" and output.json:
        raise typer.BadParameter("--out - writes CSV on stdout; with --json name a file", param_hint="--out")
    answer = lode.licences.query(licence_id, body, all_pages=all_pages, max_rows=max_rows)
    if out is not None and kind is not None:
        show.write_answer(answer, out, kind)
        summary = {"out": out, "format": kind, "rows": len(answer.rows), "columns": answer.columns}
        output.emit({**summary, "disclosure": answer.disclosure}, lambda c: None)
        if out != "-":
            output.note(f"{len(answer.rows)} rows written to {out}")
    else:
        data = {**msgspec.to_builtins(answer), "disclosure": answer.disclosure}
        output.emit(data, lambda c: show.answer_rows(c, answer))
    for note in show.disclosure_notes(answer):
        output.note(note)


@app.command()
def files(licence_id: Annotated[str, typer.Argument(metavar="LICENCE")], as_json: JsonFlag = False) -> None:
    """The files a licence may download (L1 and L2), with their SHA-256."""
    lode, out = _session(as_json)
    items = lode.licences.files(licence_id)
    out.emit({"items": items}, lambda c: show.files(c, items))


@app.command()
def download(
    licence_id: Annotated[str, typer.Argument(metavar="LICENCE")],
    name: Annotated[str, typer.Argument(metavar="FILE")],
    dest: Annotated[str, typer.Option(help="A folder (made if it ends with /), or the file to write.")] = ".",
    release: Annotated[str | None, typer.Option(help="A release version (default: the newest).")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Default: on a terminal.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Download a file: resumed if interrupted, its SHA-256 checked before it takes its name."""
    lode, out = _session(as_json)
    bar = progress if progress is not None else (sys.stderr.isatty() and not out.json)
    target = Path(dest)
    if dest.endswith(("/", "\\")):
        target.mkdir(parents=True, exist_ok=True)
    path = lode.licences.download(licence_id, name, target, release=release, progress=bar)
    data = {"licence_id": licence_id, "name": name, "path": str(path), "bytes": path.stat().st_size}
    out.emit(data, lambda c: c.print(str(path)))


@app.command()
def budget(licence_id: Annotated[str, typer.Argument(metavar="LICENCE")], as_json: JsonFlag = False) -> None:
    """An L5 licence's ε budget: total, spent, left."""
    lode, out = _session(as_json)
    item = lode.licences.budget(licence_id)
    out.emit(item, lambda c: show.budget(c, item))


@app.command()
def usage(
    licence_id: Annotated[str | None, typer.Argument(metavar="LICENCE", help="One licence, or all yours.")] = None,
    granularity: Annotated[Granularity, typer.Option()] = Granularity.day,
    since: Annotated[str | None, typer.Option(help="ISO date or time.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO date or time.")] = None,
    tz: Annotated[str | None, typer.Option(help="An IANA time zone for the periods.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Metered usage: queries, rows, bytes, ε — by day or hour."""
    lode, out = _session(as_json)
    if licence_id:
        report = lode.licences.usage(licence_id, granularity=granularity.value, since=since, until=until, tz=tz)
    else:
        report = lode.usage.report(granularity=granularity.value, since=since, until=until, tz=tz)
    out.emit(report, lambda c: show.usage(c, report))


@app.command()
def payments(
    licence: Annotated[str | None, typer.Option(help="One licence's payments.")] = None, as_json: JsonFlag = False
) -> None:
    """Payments, with their split."""
    lode, out = _session(as_json)
    items = list(lode.payments.list(licence_id=licence))
    out.emit({"items": items}, lambda c: show.payments(c, items))


# -- providers ----------------------------------------------------------------------------------


@release_app.command("list")
def release_list(product: Annotated[str, typer.Argument(metavar="PRODUCT")], as_json: JsonFlag = False) -> None:
    """A product's releases."""
    lode, out = _session(as_json)
    items = list(lode.releases.list(product))
    out.emit({"items": items}, lambda c: show.releases(c, items))


@release_app.command("show")
def release_show(
    product: Annotated[str, typer.Argument(metavar="PRODUCT")],
    version: Annotated[str, typer.Argument(metavar="VERSION")],
    as_json: JsonFlag = False,
) -> None:
    """One release and its files."""
    lode, out = _session(as_json)
    item = lode.releases.get(product, version)
    out.emit(item, lambda c: show.release(c, item))


@release_app.command("create")
def release_create(
    product: Annotated[str, typer.Argument(metavar="PRODUCT")],
    version: Annotated[str, typer.Argument(metavar="VERSION")],
    notes: Annotated[str | None, typer.Option()] = None,
    dictionary: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="A JSON data dictionary, if it changes.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """A draft release of a product."""
    lode, out = _session(as_json)
    entries = None
    if dictionary is not None:
        try:
            entries = json.loads(dictionary.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"{dictionary} is not JSON: {exc}", param_hint="--dictionary") from None
    item = lode.releases.create(product, version, notes=notes, dictionary=entries)
    out.emit(item, lambda c: show.release(c, item))


@release_app.command("upload")
def release_upload(
    product: Annotated[str, typer.Argument(metavar="PRODUCT")],
    version: Annotated[str, typer.Argument(metavar="VERSION")],
    paths: Annotated[list[Path], typer.Argument(metavar="FILE", exists=True, dir_okay=False)],
    as_json: JsonFlag = False,
) -> None:
    """Upload CSV or Parquet files to a draft release (each file's name names its table)."""
    lode, out = _session(as_json)
    uploaded = []
    for path in paths:
        uploaded.append(lode.releases.upload(product, version, path))
        out.note(f"uploaded {path} ({uploaded[-1].rows:,} rows)")
    out.emit({"items": uploaded}, lambda c: show.release_files(c, uploaded))


@release_app.command("publish")
def release_publish(
    product: Annotated[str, typer.Argument(metavar="PRODUCT")],
    version: Annotated[str, typer.Argument(metavar="VERSION")],
    as_json: JsonFlag = False,
) -> None:
    """Publish a draft release: its files become what licences read."""
    lode, out = _session(as_json)
    item = lode.releases.publish(product, version)
    out.emit(item, lambda c: show.release(c, item))


# -- the entry point ----------------------------------------------------------------------------


def main() -> None:
    """The ``lode-client`` script: typer answers usage errors (2) and aborts (1) itself; Lode's
    refusals and failures are mapped here (see HELP)."""
    try:
        app(prog_name="lode-client")
    except errors.ConfigurationError as exc:
        typer.echo(f"configuration: {exc}", err=True)
        sys.exit(USAGE)
    except errors.ApiError as exc:
        show.refusal(exc)
        sys.exit(REFUSED if 400 <= exc.status < 500 else FAILED)
    except errors.LodeError as exc:  # TransportError, IntegrityError
        typer.echo(f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(FAILED)
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(FAILED)


if __name__ == "__main__":
    main()
