"""Commands of using the data and publishing it: query, files and downloads, usage, the ε budget,
payments; and a provider's releases."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from lode_client import cli_output as show
from lode_client import errors
from lode_client.cli_base import (
    Granularity,
    JsonFlag,
    _session,
    app,
    release_app,
)

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
