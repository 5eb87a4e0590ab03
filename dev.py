#!/usr/bin/env python3
"""Run Lode or its tests from a fresh clone with nothing but Python 3.11+.

    python3 dev.py serve [--host HOST] [--port PORT]
                           set up ./.venv, migrate, seed the demo marketplace and serve on
                           HOST:PORT (default 127.0.0.1:8000); the URLs it prints, and the links the
                           app makes, follow LODE_PUBLIC_URL or else the host and port
    python3 dev.py test [PYTEST ARGS]
                           set up ./.venv and run the whole test suite, one worker per core
                           (`-n 0` runs it in one process); the PostgreSQL half runs on a fresh
                           database at LODE_TEST_PG_URL's server, or, when that is unset, on the
                           local PostgreSQL at postgresql://postgres@127.0.0.1:5432 if it answers
                           (the database is dropped afterwards); LODE_TEST_PG_URL= (empty) skips it;
                           with LODE_TEST_S3=1 (as CI runs) the tests start moto's S3 server on
                           127.0.0.1 and the PostgreSQL half of the delivery and catalogue tests
                           keeps its files in a bucket there

The virtual environment is (re)installed only when pyproject.toml changed since the last install.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
import venv
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
MARKER = VENV / ".lode-installed"
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432"
# Run by .venv's Python, which has asyncpg: create or drop one database on the server at argv[1].
POSTGRES_DATABASE = """
import asyncio, sys, asyncpg
async def main(server, action, name):
    conn = await asyncpg.connect(server + "/postgres", timeout=10)
    try:
        if action == "create":
            await conn.execute(f'CREATE DATABASE "{name}"')
        else:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
asyncio.run(main(*sys.argv[1:]))
"""


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script is what tells an old Python so
        sys.exit(f"Lode needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    wanted = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + (ROOT / "client" / "pyproject.toml").read_bytes()
    ).hexdigest()
    if MARKER.exists() and MARKER.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("Creating .venv …", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    print("Installing Lode and its test tools into .venv (first run only) …", file=sys.stderr)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    # The server with its test tools, and the Python client (its own distribution) with its extras.
    subprocess.run([*pip, "-e", f"{ROOT}[dev]", "-e", f"{ROOT / 'client'}[all]"], check=True, cwd=ROOT)
    MARKER.write_text(wanted)


def lode(*args: str, env: Mapping[str, str] | None = None) -> None:
    subprocess.run([str(BIN / "lode"), *args], check=True, cwd=ROOT, env=env)


def public_url(host: str, port: int, environ: Mapping[str, str]) -> str:
    """Where clients reach the server: LODE_PUBLIC_URL when set, else the host and port it serves
    on (a wildcard host is reached on this machine through 127.0.0.1)."""
    configured = environ.get("LODE_PUBLIC_URL", "").strip()
    if configured:
        return configured.rstrip("/")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def serve(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="dev.py serve", description="Seed the demo and serve it.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    known, rest = parser.parse_known_args(args)  # the rest goes to `lode serve` (--workers, --no-worker)
    env = {**os.environ, "LODE_PUBLIC_URL": public_url(known.host, known.port, os.environ)}
    lode("db", "upgrade", env=env)
    lode("demo", env=env)
    command = [str(BIN / "lode"), "serve", "--host", known.host, "--port", str(known.port), *rest]
    os.execve(command[0], command, env)


def test(args: list[str]) -> int:
    if not any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args):
        args = ["-n", "auto", *args]  # one pytest-xdist worker per core; `-n 0` runs in-process
    env = dict(os.environ)
    database = None
    if "LODE_TEST_PG_URL" in env:
        if env["LODE_TEST_PG_URL"].strip():
            print(f"dev.py: PostgreSQL half on LODE_TEST_PG_URL={env['LODE_TEST_PG_URL']}", file=sys.stderr)
        else:
            print("dev.py: PostgreSQL half skipped (LODE_TEST_PG_URL is empty)", file=sys.stderr)
    else:
        database = f"lode_dev_{int(time.time())}_{os.getpid()}"
        if postgres_database(LOCAL_POSTGRES, "create", database):
            env["LODE_TEST_PG_URL"] = f"{LOCAL_POSTGRES}/{database}"
            print(f"dev.py: PostgreSQL half on {env['LODE_TEST_PG_URL']} (a fresh database, dropped afterwards)",
                  file=sys.stderr)  # fmt: skip
        else:
            database = None
            print(f"dev.py: PostgreSQL half skipped: nothing answers at {LOCAL_POSTGRES} "
                  "(set LODE_TEST_PG_URL to a database the tests may wipe)", file=sys.stderr)  # fmt: skip
    if env.get("LODE_TEST_S3", "").strip().lower() not in ("", "0", "false", "no"):
        print("dev.py: object storage on moto's S3 server too (LODE_TEST_S3)", file=sys.stderr)
    try:
        return subprocess.run([str(BIN / "python"), "-m", "pytest", *args], cwd=ROOT, env=env).returncode
    finally:
        if database is not None and not postgres_database(LOCAL_POSTGRES, "drop", database):
            print(f"dev.py: could not drop the test database {database}; drop it by hand", file=sys.stderr)


def postgres_database(server: str, action: str, name: str) -> bool:
    """Create or drop a database; False if the server does not answer or refuses. Generous time:
    on a busy machine starting Python and ending the tests' connections takes a while."""
    try:
        done = subprocess.run(
            [str(BIN / "python"), "-c", POSTGRES_DATABASE, server, action, name], capture_output=True, timeout=180
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command not in ("serve", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    ensure_environment()
    try:
        if command == "serve":
            serve(argv[1:])
        return test(argv[1:])
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
