"""The command line's shared parts: the app and its sub-apps, the global options, the session (a
``Client`` and where its output goes), and the argument types several commands take."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Annotated

import typer

from lode_client import cli_output as show
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
