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

import os
import sys
from typing import Annotated

import typer

# cli_circulation and cli_data: importing them registers their commands on ``app``.
from lode_client import cli_circulation, cli_data, config, errors, models  # noqa: F401
from lode_client import cli_output as show
from lode_client.cli_base import (
    FAILED,
    REFUSED,
    USAGE,
    JsonFlag,
    _session,
    _state,
    app,
)
from lode_client.client import Client

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
