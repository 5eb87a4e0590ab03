#!/usr/bin/env python3
"""Run Lode or its tests from a fresh clone with nothing but Python 3.11+.

    python3 dev.py serve   set up ./.venv, migrate, seed the demo marketplace, serve on :8000
    python3 dev.py test    set up ./.venv and run the whole test suite, one worker per core
                           (extra args go to pytest; `-n 0` runs it in one process)

The virtual environment is (re)installed only when pyproject.toml changed since the last install.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
MARKER = VENV / ".lode-installed"


def ensure_environment() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script is what tells an old Python so
        sys.exit(f"Lode needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if MARKER.exists() and MARKER.read_text() == wanted:
        return
    if not (BIN / "python").exists():
        print("Creating .venv …", file=sys.stderr)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    print("Installing Lode and its test tools into .venv (first run only) …", file=sys.stderr)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True, cwd=ROOT)
    MARKER.write_text(wanted)


def lode(*args: str) -> None:
    subprocess.run([str(BIN / "lode"), *args], check=True, cwd=ROOT)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "help"
    if command not in ("serve", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    ensure_environment()
    try:
        if command == "serve":
            lode("db", "upgrade")
            lode("demo")
            os.execv(str(BIN / "lode"), [str(BIN / "lode"), "serve", *argv[1:]])
        args = argv[1:]
        if not any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args):
            args = ["-n", "auto", *args]  # one pytest-xdist worker per core; `-n 0` runs in-process
        return subprocess.run([str(BIN / "python"), "-m", "pytest", *args], cwd=ROOT).returncode
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
