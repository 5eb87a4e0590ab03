"""The simulator is a package that ships: it needs nothing outside itself and the public stripe SDK.

The copies are run in a fresh interpreter from a temporary directory, so nothing beside the
repository (``../shared``) and no module already imported here can stand in for what is missing.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import stripe_simulator

PACKAGE = Path(stripe_simulator.__file__).parent

# Makes a customer in a fresh interpreter and prints where the package came from and the fields
# only Stripe's sample customer has (the simulator sets neither).
PROBE = """
import json, stripe_simulator
sim = stripe_simulator.StripeSimulator()
customer = sim.client().v1.customers.create({"name": "Ruijin"}).to_dict()
print(json.dumps({"file": stripe_simulator.__file__, "invoice_settings": "invoice_settings" in customer,
                  "preferred_locales": customer.get("preferred_locales")}))
sim.close()
"""


def run_copy(tmp_path: Path, *, drop: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run PROBE against a copy of the package in ``tmp_path`` (without the file ``drop``)."""
    copy = tmp_path / "site" / "stripe_simulator"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    if drop:
        (copy / drop).unlink()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LODE_", "PYTHON"))}
    code = f"import sys; sys.path.insert(0, {str(copy.parent)!r})\n" + PROBE
    return subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True, timeout=120)


class TestSelfContained:
    def test_no_module_of_the_package_imports_a_private_stripe_module(self) -> None:
        offenders = []
        for path in sorted(PACKAGE.rglob("*.py")):
            source = path.read_text("utf-8")
            for node in ast.walk(ast.parse(source)):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                offenders += [f"{path.name}: {n}" for n in names if re.match(r"stripe(\.[a-z]\w*)*\._[a-z]", n)]
            # Attribute access (stripe._api_version…) reaches a private module without importing it.
            offenders += [f"{path.name}: {m}" for m in re.findall(r"\bstripe(?:\.[a-z]\w*)*\._[a-z]\w*", source)]
        assert offenders == []

    def test_the_package_imports_nothing_of_lode(self) -> None:
        lode = {"billing", "catalog", "tests"}
        found = []
        for path in sorted(PACKAGE.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if isinstance(node, ast.Import):
                    found += [a.name for a in node.names if a.name.split(".")[0] in lode]
                elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in lode:
                    found.append(node.module)
        assert found == []

    def test_a_copy_away_from_the_repository_makes_objects_from_stripes_samples(self, tmp_path: Path) -> None:
        done = run_copy(tmp_path)
        assert done.returncode == 0, done.stderr
        probe = json.loads(done.stdout.strip().splitlines()[-1])
        assert probe["file"].startswith(str(tmp_path))  # the copy ran, not the repository's package
        assert probe["invoice_settings"] is True and probe["preferred_locales"] == []

    def test_without_its_samples_the_simulator_refuses_to_start(self, tmp_path: Path) -> None:
        done = run_copy(tmp_path, drop="samples/stripe-objects.json")
        assert done.returncode != 0
        assert "MissingSamples" in done.stderr and "stripe-objects.json" in done.stderr

    def test_the_samples_ship_with_stripes_licence(self) -> None:
        licence = (PACKAGE / "samples" / "LICENSE").read_text("utf-8")
        assert "The MIT License" in licence and "Stripe, Inc." in licence
