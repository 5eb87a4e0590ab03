"""Commands of circulation: find a product, check eligibility, apply, follow the review, decide a
track, list and accept licences, check out."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from lode_client import cli_output as show
from lode_client import models
from lode_client.cli_base import (
    REFUSED,
    Category,
    DecisionName,
    JsonFlag,
    Many,
    Method,
    TrackName,
    _date,
    _session,
    _split,
    _state,
    app,
    applications_app,
    licences_app,
    products_app,
)
from lode_client.client import Client

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
