"""``lode-client``, the command line, run as a user runs it (a subprocess) against a live demo Lode.

Each test uses its own demo organisations and products: the consumer journey is fudan-sph's on
``liver-imaging-reports``, the download shanghai-pharma-rd's L1 licence, the release huashan's
``risk-factor-survey``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from tests.web.conftest import DemoServer

LIVER = "liver-imaging-reports"
REVIEWERS = {"provider": "zhongshan/reviewer", "ethics": "operator/ethics", "compliance": "operator/compliance"}
AGGREGATE = {
    "table": "reports",
    "group_by": ["modality"],
    "aggregates": [{"fn": "count"}, {"fn": "avg", "field": "largest_lesion_mm"}],
}


def lode_client(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``lode-client ARGS`` in a process of its own, with the test's environment (see ``client_home``)."""
    return subprocess.run(
        [sys.executable, "-m", "lode_client.cli", *args],
        env={**os.environ, "COLUMNS": "200", **(env or {})},  # whole ids in tables, whatever the terminal
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
    )


class As:
    """The command line signed in as one of the demo's keys (by ``LODE_URL`` / ``LODE_API_KEY``)."""

    def __init__(self, live: DemoServer, who: str) -> None:
        self.env = {"LODE_URL": live.base, "LODE_API_KEY": live.key(who)}

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess:
        done = lode_client(*args, env=self.env)
        assert done.returncode == code, f"lode-client {' '.join(args)} → {done.returncode}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        """``lode-client --json ARGS``: stdout is one JSON document and nothing else."""
        done = self("--json", *args)
        return json.loads(done.stdout)


def test_consumer_journey(live: DemoServer, client_home: Path, tmp_path: Path) -> None:
    fudan = As(live, "fudan-sph")

    found = fudan("products", "search", "肝")
    assert LIVER in found.stdout
    assert LIVER in [p["slug"] for p in fudan.json("products", "search", "liver", "--grade", "L3")["items"]]

    shown = fudan("products", "show", LIVER)
    product = fudan.json("products", "show", LIVER)
    plan = next(p for p in product["plans"] if p["kind"] == "one_time" and p["amount"] > 0)
    assert plan["id"] in shown.stdout and product["terms"]["terms_sha256"] in shown.stdout
    assert "largest_lesion_mm" in shown.stdout  # the dictionary

    use = ["--category", "DS", "--no-commercial", "--disease-codes", "C22", "--territory", "CN"]
    blocked = fudan("eligibility", LIVER, *use, code=3)
    assert "ethics_approval_missing" in blocked.stdout
    assert fudan.json("eligibility", LIVER, *use, "--plan", plan["id"], "--ethics-expires-on", "2030-01-01")["eligible"]

    analyst = As(live, "fudan-sph/analyst").json("whoami")["user"]["id"]
    application = fudan.json(
        "apply", LIVER, "--plan", plan["id"], *use, "--description", "LI-RADS categories and outcomes",
        "--title", "LI-RADS audit", "--public-summary", "An audit of liver imaging categories",
        "--analyst", "me", "--analyst", analyst, "--months", "12",
        "--ethics-committee", "Fudan SPH IRB", "--ethics-reference", "IRB-2026-17",
        "--ethics-approved-on", "2026-01-05", "--ethics-expires-on", "2028-01-04",
    )  # fmt: skip
    assert application["status"] not in ("draft", "approved")
    assert analyst in application["analysts"] and len(application["analysts"]) == 2
    assert {t["track"] for t in application["tracks"]} == set(REVIEWERS)

    for track, reviewer in REVIEWERS.items():
        decided = As(live, reviewer).json("decide", application["id"], track, "approve", "--comment", "fine")
    assert decided["status"] == "approved" and decided["licence_id"]
    licence = decided["licence_id"]
    assert application["id"] in fudan("applications").stdout
    assert fudan.json("applications", "show", application["id"])["licence_id"] == licence

    pending = fudan.json("licences", "--status", "pending_acceptance")["items"]
    pinned = next(lic for lic in pending if lic["id"] == licence)["terms_sha256"]
    wrong = fudan("accept", licence, "--terms-sha256", "0" * 64, code=3)
    assert wrong.stderr.startswith("terms_mismatch: ") and "(request " in wrong.stderr
    fudan("--json", "accept", licence, code=2)  # a machine names the hash it accepts
    assert fudan.json("accept", licence, "--terms-sha256", pinned)["status"] == "pending_payment"

    url = fudan("checkout", licence).stdout.strip()
    assert url.startswith(live.base + "/")
    paid = httpx.post(url, follow_redirects=False, timeout=30)
    assert paid.status_code == 303
    deadline = time.monotonic() + 30
    while fudan.json("licences", "show", licence)["status"] != "active":
        assert time.monotonic() < deadline, "the payment did not activate the licence"
        time.sleep(0.3)

    query = tmp_path / "q.json"
    query.write_text(json.dumps(AGGREGATE))
    parquet, table = tmp_path / "answer.parquet", tmp_path / "answer.csv"
    wrote = fudan("query", licence, "--json", str(query), "--out", str(parquet))  # the spelling
    assert "suppressed" in wrote.stderr and "ε spent" in wrote.stderr and "release " in wrote.stderr
    frame = pq.read_table(parquet)
    assert frame.column_names == ["modality", "count", "avg_largest_lesion_mm"]
    assert json.loads(frame.schema.metadata[b"lode"])["mode"] == "aggregate"
    fudan("query", licence, "-q", str(query), "--out", str(table))
    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["modality"]: int(r["count"]) for r in rows} == dict(
        zip(frame.column("modality").to_pylist(), frame.column("count").to_pylist(), strict=True)
    )
    assert sum(int(r["count"]) for r in rows) > 0

    answer = fudan.json("query", licence, "--query", str(query))
    assert answer["columns"] == ["modality", "count", "avg_largest_lesion_mm"]
    assert {"suppressed", "perturbed", "epsilon_spent", "release"} <= set(answer["disclosure"])
    assert len(answer["rows"]) == len(rows)
    written = fudan.json("query", licence, "-q", str(query), "--out", str(table))
    assert written["rows"] == len(rows) and written["disclosure"]["release"] == answer["release"]

    usage = fudan.json("usage", licence)
    assert usage["totals"].get("queries", 0) >= 4


def test_download_checks_sha256(live: DemoServer, client_home: Path, tmp_path: Path) -> None:
    pharma = As(live, "shanghai-pharma-rd")
    licences = pharma.json("licences", "--product", "open-checkup-sample", "--status", "active")["items"]
    licence = next(lic["id"] for lic in licences if "download" in lic["modes"])
    files = pharma.json("files", licence)["items"]
    entry = files[0]

    done = pharma.json("download", licence, entry["name"], "--dest", f"{tmp_path}/here/")
    path = Path(done["path"])
    assert path == tmp_path / "here" / entry["name"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert path.stat().st_size == entry["bytes"] == done["bytes"]

    named = tmp_path / "copy.csv"
    human = pharma("download", licence, entry["name"], "--dest", str(named), "--no-progress")
    assert human.stdout.strip() == str(named) and named.read_bytes() == path.read_bytes()
    assert not list(tmp_path.glob("*.part*"))


def test_provider_release(live: DemoServer, client_home: Path, tmp_path: Path) -> None:
    from catalog.demo import catalog as demo
    from catalog.demo.data import write_product

    huashan = As(live, "huashan")
    product = huashan.json("products", "show", "risk-factor-survey")["id"]
    item = next(p for p in demo.PRODUCTS if p.slug == "risk-factor-survey")
    paths = write_product(item, tmp_path, "cli-test")
    version = "2026.7-cli"

    created = huashan.json("release", "create", product, version, "--notes", "from the command line")
    assert created["status"] == "draft" and created["version"] == version
    uploaded = huashan.json("release", "upload", product, version, *map(str, paths.values()))["items"]
    assert {f["table"] for f in uploaded} == set(paths) and all(f["rows"] > 0 for f in uploaded)
    published = huashan("release", "publish", product, version)
    assert "published" in published.stdout
    release = huashan.json("release", "show", product, version)
    assert release["status"] == "published" and release["published_at"]
    frozen = huashan("release", "upload", product, version, *map(str, paths.values()), code=3)
    assert frozen.stderr.startswith("release_frozen: ")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_login_profiles_json_and_exit_codes(live: DemoServer, client_home: Path, tmp_path: Path) -> None:
    key = live.key("fudan-sph")
    logged = lode_client("login", "--url", live.base, "--api-key", key, "--name", "uni", "--default")
    assert logged.returncode == 0, logged.stderr
    config = client_home / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and key in config.read_text()
    assert key not in logged.stdout + logged.stderr

    who = lode_client("--profile", "uni", "--json", "whoami")
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["organisation"]["slug"] == "fudan-sph" and who.stderr == ""
    assert "fudan-sph" in lode_client("whoami").stdout  # the default profile

    pharma = live.key("shanghai-pharma-rd")
    piped = lode_client("login", "--url", live.base, "--name", "pharma", stdin=pharma + "\n")  # key not in argv
    assert piped.returncode == 0, piped.stderr
    mine = lode_client("--profile", "pharma", "whoami", "--json")
    assert json.loads(mine.stdout)["organisation"]["slug"] == "shanghai-pharma-rd"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    listed = lode_client("--json", "products", "search", "糖尿病")
    assert listed.returncode == 0 and listed.stderr == ""
    assert "t2d-ehr-cohort" in [p["slug"] for p in json.loads(listed.stdout)["items"]]

    # 2: usage errors — an unknown option, an unknown profile, a query that is not JSON
    unknown = lode_client("products", "search", "--bogus")
    assert unknown.returncode == 2 and "--bogus" in unknown.stderr and unknown.stdout == ""
    assert lode_client("--profile", "nobody", "whoami").returncode == 2
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    bad_query = lode_client("query", "lic_x", "--json", str(broken))
    assert bad_query.returncode == 2 and "not JSON" in bad_query.stderr

    # 3: refusals — another organisation's licence is not found for fudan-sph
    theirs = next(lic["licence_id"] for lic in live.demo["licences"] if lic["consumer"] == "shanghai-pharma-rd")
    (tmp_path / "q.json").write_text(json.dumps({"table": "exams", "aggregates": [{"fn": "count"}]}))
    refused = lode_client("--profile", "uni", "query", theirs, "-q", str(tmp_path / "q.json"))
    assert refused.returncode == 3 and refused.stdout == ""
    assert refused.stderr.startswith("not_found: ") and "(request " in refused.stderr

    # 4: failures — nothing listens at the URL (no retries, so it fails at once)
    closed = f"http://127.0.0.1:{_closed_port()}"
    failed = lode_client("--retries", "0", "whoami", env={"LODE_URL": closed, "LODE_API_KEY": key})
    assert failed.returncode == 4 and "TransportError" in failed.stderr


@pytest.mark.parametrize("spelling", [["--json"], ["--query"], ["-q"]])
def test_query_file_spellings_are_one_option(spelling: list[str], client_home: Path, tmp_path: Path) -> None:
    """The issue's ``query LICENCE --json q.json`` and ``--query/-q`` name the same file; without
    a URL the command stops at configuration (2) only after the file was read and found JSON."""
    good = tmp_path / "q.json"
    good.write_text("{}")
    done = lode_client("query", "lic_x", *spelling, str(good))
    assert done.returncode == 2 and "No Lode URL" in done.stderr
    missing = lode_client("query", "lic_x", *spelling, str(tmp_path / "absent.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
