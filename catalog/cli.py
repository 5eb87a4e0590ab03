"""The ``lode`` command line (part of the composition root)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import msgspec

from catalog.settings import Settings, SettingsError, load_settings

OPENAPI_PATH = Path("openapi") / "openapi.json"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        settings = load_settings()
    except SettingsError as exc:
        print("lode: the configuration is not valid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    try:
        return int(args.handler(settings, args) or 0)
    except CliError as exc:
        print(f"lode: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line; the traceback only when asked for
        if settings.log_level == "DEBUG":
            raise
        print(f"lode: {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("lode: rerun with LODE_LOG_LEVEL=DEBUG for the traceback.", file=sys.stderr)
        return 1


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lode", description="Lode — the health-data product exchange.")
    sub = parser.add_subparsers(dest="command")

    db_cmd = sub.add_parser("db", help="database schema")
    db_sub = db_cmd.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="migrate the configured database to the newest schema").set_defaults(
        handler=cmd_db_upgrade
    )
    db_sub.add_parser("status", help="print the schema revision and whether it is current").set_defaults(
        handler=cmd_db_status
    )

    admin = sub.add_parser("admin", help="administration")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    boot = admin_sub.add_parser("bootstrap", help="create the operator organisation and its first admin")
    boot.add_argument("--org", required=True, help="the operator organisation's name")
    boot.add_argument("--email", required=True, help="the first admin's email")
    boot.add_argument("--jurisdiction", default="CN", help="ISO 3166-1 alpha-2 (default CN)")
    boot.add_argument("--json", action="store_true", help="print only JSON")
    boot.set_defaults(handler=cmd_bootstrap)

    serve = sub.add_parser("serve", help="serve the API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="API worker processes")
    serve.add_argument("--no-worker", action="store_true", help="do not run the outbox worker in-process")
    serve.set_defaults(handler=cmd_serve)

    sub.add_parser("worker", help="run the outbox and periodic jobs").set_defaults(handler=cmd_worker)

    demo = sub.add_parser("demo", help="seed the demo marketplace and print its API keys")
    demo.add_argument("--json", action="store_true", help="stdout carries only the JSON")
    demo.set_defaults(handler=cmd_demo)

    spec = sub.add_parser("openapi", help="write openapi/openapi.json from the app")
    spec.add_argument("--check", action="store_true", help="exit non-zero if the committed spec differs")
    spec.add_argument("--path", type=Path, default=OPENAPI_PATH)
    spec.set_defaults(handler=cmd_openapi)

    audit_cmd = sub.add_parser("audit", help="the audit chain")
    audit_sub = audit_cmd.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser("head", help="print the chain's sequence number and hash").set_defaults(handler=cmd_audit_head)
    return parser


def cmd_db_upgrade(settings: Settings, _args: argparse.Namespace) -> int:
    from alembic import command

    from catalog.migrations import alembic_config

    command.upgrade(alembic_config(settings), "head")
    current, head = schema_status(settings)
    print(f"database schema at {current} (newest: {head})", file=sys.stderr)
    return 0


def cmd_db_status(settings: Settings, _args: argparse.Namespace) -> int:
    current, head = schema_status(settings)
    print(json.dumps({"current": current, "head": head, "up_to_date": current == head}))
    return 0 if current == head else 1


def schema_status(settings: Settings) -> tuple[str | None, str | None]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from catalog.db import create_engine
    from catalog.migrations import alembic_config

    head = ScriptDirectory.from_config(alembic_config(settings)).get_current_head()

    async def current() -> str | None:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
        finally:
            await engine.dispose()

    return asyncio.run(current()), head


def require_current_schema(settings: Settings) -> None:
    try:
        current, head = schema_status(settings)
    except Exception as exc:  # an unreachable database: say so plainly
        raise CliError(f"cannot reach the database: {exc}") from None
    if current != head:
        raise CliError(
            f"the database schema is at {current or 'nothing'} but this Lode needs {head}; run `lode db upgrade`."
        )


def cmd_bootstrap(settings: Settings, args: argparse.Namespace) -> int:
    from catalog import db
    from catalog.errors import DomainError
    from catalog.orgs.service import OrgService

    require_current_schema(settings)

    async def run() -> Any:
        engine = db.create_engine(settings)
        try:
            async with db.write_transaction(db.create_sessionmaker(engine)) as session:
                return await OrgService(session, None, settings.key_pepper).bootstrap(
                    args.org, args.email, args.jurisdiction.upper()
                )
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(run())
    except DomainError as exc:
        raise CliError(exc.detail or exc.code) from None
    print(msgspec.json.encode(result).decode())
    if not args.json:
        print("Keep this API key secret: it is shown once.", file=sys.stderr)
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from catalog.observability import configure_logging
    from catalog.server import ProblemH11Protocol

    if args.workers < 1:
        raise CliError("--workers must be at least 1.", exit_code=2)
    require_current_schema(settings)
    if args.no_worker:
        os.environ["LODE_RUN_WORKER"] = "0"
    if not os.environ.get("LODE_PUBLIC_URL", "").strip():
        # Unset, the app's own links (DCAT, Stripe return URLs) and the docs URL printed below
        # follow the port it serves on rather than the default :8000; uvicorn's app reads the env.
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        os.environ["LODE_PUBLIC_URL"] = (
            f"http://[{shown}]:{args.port}" if ":" in shown else f"http://{shown}:{args.port}"
        )
    public = os.environ["LODE_PUBLIC_URL"].strip().rstrip("/")
    print(f"Lode serving on {args.host}:{args.port} — pages at {public}/ — API docs at {public}/docs", file=sys.stderr)
    print(serving_line(settings, args.workers, not args.no_worker), file=sys.stderr)
    # With --workers, uvicorn's supervising process logs too (children started, restarted, stopped):
    # as JSON lines naming this node, like every other line. Each child configures its own.
    configure_logging(settings.log_level, settings.node_name)
    uvicorn.run(
        "catalog.app:create_app",
        factory=True,
        # The class itself, not its import string: uvicorn 0.30 (our floor) looks a string up in its
        # own table of protocol names only. Unparseable requests are refused as problem+json too.
        http=ProblemH11Protocol,
        host=args.host,
        port=args.port,
        workers=args.workers if args.workers > 1 else None,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
    )
    return 0


def serving_line(settings: Settings, workers: int, with_worker: bool) -> str:
    """What the processes about to start are: how many, whether each runs the outbox worker, and
    the database connections they may open between them (PostgreSQL's max_connections must cover
    every node's and worker's)."""
    processes = "1 process" if workers == 1 else f"{workers} processes"
    jobs = (
        "each with the outbox worker in-process"
        if with_worker
        else "no outbox worker (run `lode worker` beside them, or events wait)"
    )
    # db.create_engine's default pool size, restated, and on PostgreSQL the connection of its own
    # that reads the catalogue version (products/catalogue_version.py): the sum is what an operator
    # must provision.
    per_process = (settings.db_max_connections or (15 if settings.is_sqlite else 30)) + (0 if settings.is_sqlite else 1)
    database = "SQLite" if settings.is_sqlite else "PostgreSQL"
    named = os.environ.get("LODE_NODE_NAME", "").strip()
    node = f"node {named}" if named else f"node {socket.gethostname()}-<pid> (LODE_NODE_NAME unset)"
    return (
        f"{processes}, {jobs}; {database}, up to {per_process * workers} connections in all "
        f"({per_process} a process); logs name {node}"
    )


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> int:
    import signal

    from catalog.app import create_worker

    require_current_schema(settings)

    async def run() -> None:
        worker, dispose = create_worker(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stop)
        try:
            await worker.run()
        finally:
            await dispose()

    asyncio.run(run())
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from catalog.app import seed_demo

    if settings.is_production:
        raise CliError("`lode demo` refuses to run when LODE_ENV=production: demo keys are public.")
    require_current_schema(settings)
    result = asyncio.run(seed_demo(settings, progress=not args.json))
    print(json.dumps(result, indent=None if args.json else 2, ensure_ascii=False))
    if not args.json:
        print(
            "\nThese demo keys are public (derived from LODE_DEMO_SEED); never use them for real data.\n"
            f"Pages: {settings.public_url}/ (sign in with a key above; member_keys holds each reviewer's)\n"
            f"API docs: {settings.public_url}/docs" + _near_expiry_line(result.get("near_expiry"), settings.public_url),
            file=sys.stderr,
        )
    return 0


def _near_expiry_line(near: dict[str, Any] | None, url: str) -> str:
    if not near:
        return ""
    return (
        f"\nExpiring: {near['consumer']}'s licence {near['licence_id']} to {near['product']} ends on "
        f"{near['ends_on']}; its reminder is on {url}/notifications.\n"
        f"Renew it: POST /v1/licences/{near['licence_id']}/renew"
    )


def cmd_openapi(settings: Settings, args: argparse.Namespace) -> int:
    from catalog.app import render_openapi

    text = render_openapi(settings)
    if args.check:
        committed = args.path.read_text() if args.path.exists() else ""
        if committed != text:
            raise CliError(f"{args.path} differs from the app's spec; run `lode openapi` and commit it.")
        print(f"{args.path} matches the app.", file=sys.stderr)
        return 0
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text)
    print(f"wrote {args.path}", file=sys.stderr)
    return 0


def cmd_audit_head(settings: Settings, _args: argparse.Namespace) -> int:
    from catalog import audit, db

    require_current_schema(settings)

    async def run() -> tuple[int, str]:
        engine = db.create_engine(settings)
        try:
            async with db.read_transaction(db.create_sessionmaker(engine)) as session:
                return await audit.current_head(session)
        finally:
            await engine.dispose()

    seq, digest = asyncio.run(run())
    print(json.dumps({"seq": seq, "hash": digest, "expected_head": f"{seq}:{digest}"}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
