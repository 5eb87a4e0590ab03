#!/usr/bin/env python3
"""Write the lowest versions pyproject.toml allows, as pip constraints (``name==floor``, one a line).

CI installs Lode against these (``.ci/run``) and runs the suite, so each ``>=`` floor in
pyproject.toml is a version the code is proven to work with. The pins are derived, never
written by hand, so raising a floor in pyproject.toml moves the CI step with it. Every
requirement must declare a ``>=`` floor: a dependency without one could not be proven.

    python3 .ci/floors.py > floors.txt        # runtime and every optional group
    .venv-floor/bin/python .ci/floors.py --check   # is each floor what that venv has installed?
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
# name, optional [extras], then the specifiers ("sqlalchemy[asyncio]>=2.1,<2.2"); no markers are used.
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*)$")


def floors(pyproject: Path = PYPROJECT) -> dict[str, str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for group in project.get("optional-dependencies", {}).values():
        requirements.extend(group)
    pins: dict[str, str] = {}
    problems: list[str] = []
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        if match is None or ";" in requirement:
            problems.append(f"{requirement!r}: not a plain 'name[extras]>=floor,<cap' requirement")
            continue
        name, specifiers = match.group(1).lower(), match.group(2)
        lowest = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
        if len(lowest) != 1:
            problems.append(f"{requirement!r}: needs exactly one '>=' floor for CI to prove")
            continue
        pins[name] = lowest[0]
    if problems:
        sys.exit("pyproject.toml:\n  " + "\n  ".join(problems))
    return pins


def _release(version: str) -> tuple[int, ...]:
    """PEP 440's release segment, zero-padded as ``==`` compares it ("2" is "2.0.0")."""
    parts = [int(p) for p in re.match(r"^\d+(?:\.\d+)*", version).group(0).split(".")]  # type: ignore[union-attr]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def check() -> None:
    """Fail unless the running interpreter has exactly the floors installed."""
    from importlib.metadata import PackageNotFoundError, version

    wrong = []
    for name, floor in sorted(floors().items()):
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = "nothing"
        if installed == "nothing" or _release(installed) != _release(floor):
            wrong.append(f"{name}: floor {floor}, installed {installed}")
    if wrong:
        sys.exit("not the floors:\n  " + "\n  ".join(wrong))
    print(f"{len(floors())} dependencies installed at their floors")


def main() -> None:
    if sys.argv[1:] == ["--check"]:
        check()
        return
    for name, version in sorted(floors().items()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
