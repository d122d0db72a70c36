"""The published contracts, checked by third-party tools rather than our own code.

One Node process (``contracts/tools/validate.mjs``) runs both checks:

* the committed ``contracts/asyncapi.json`` through the official AsyncAPI parser
  (``@asyncapi/parser`` 3): any error fails, warnings are reported as pytest warnings;
* a generated scenario's events, plus one deliberately broken event, against the committed
  per-type JSON Schemas with ajv (draft 2020-12) and ajv-formats: every scenario event must be
  valid and the broken one must be rejected, so the check is known to be able to fail.

The Node packages are pinned by ``contracts/tools/package.json`` and ``package-lock.json`` and
installed with ``npm ci`` into the git-ignored ``.local/node`` on first use (again whenever the
lock file changes). Node.js and npm are required: without them the test fails, it never skips.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest
from homeward.contracts import schema

from homeward.scenario import ScenarioConfig, generate

REPO = schema.CONTRACTS_ROOT.parent
TOOLS = schema.CONTRACTS_ROOT / "tools"
NODE_DIR = REPO / ".local" / "node"
MARKER = NODE_DIR / ".homeward-installed"
INSTALL_HINT = "install them with `apt-get install -y nodejs npm` (or run scripts/bootstrap.sh as root)"

# npm ci and a cold parser start can be slow on a loaded machine; the default is 300 s.
pytestmark = pytest.mark.timeout(900)


def _lock_hash() -> str:
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        h.update((TOOLS / name).read_bytes())
    return h.hexdigest()


def _installed(wanted: str) -> bool:
    return MARKER.is_file() and MARKER.read_text().strip() == wanted and (NODE_DIR / "node_modules").is_dir()


def _node() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        pytest.fail(f"Node.js not found: the AsyncAPI parser and ajv run on it; {INSTALL_HINT}", pytrace=False)
    return node


def _install() -> Path:
    """npm ci into .local/node unless the installed tree matches the committed lock file."""
    wanted = _lock_hash()
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    with (NODE_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be installing right now
        if _installed(wanted):
            return NODE_DIR / "node_modules"
        npm = shutil.which("npm")
        if not npm:
            pytest.fail(f"npm not found: it installs @asyncapi/parser and ajv; {INSTALL_HINT}", pytrace=False)
        MARKER.unlink(missing_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(TOOLS / name, NODE_DIR / name)
        argv = [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=800, check=False)
        if result.returncode != 0:
            pytest.fail(
                f"npm could not install the contract tools (exit code {result.returncode}); check that the npm "
                f"registry is reachable, then rerun.\ncommand: {' '.join(argv)}\n{result.stdout}{result.stderr}",
                pytrace=False,
            )
        MARKER.write_text(wanted + "\n")
    return NODE_DIR / "node_modules"


def _broken_event(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A copy of the scenario's first PlacementMade with the rate as a string, which the schema refuses."""
    first = next(e for e in events if e["type"] == "homeward.PlacementMade.v1")
    broken = json.loads(json.dumps(first))
    broken["id"] = "deliberately-broken"
    broken["data"]["daily_rate_pence"] = "545.00"
    return broken


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    node = _node()
    modules = _install()
    events = [event.to_dict() for _, event in generate(ScenarioConfig(seed=1, placements=50)).events]
    assert events, "the scenario generated no events"
    events.append(_broken_event(events))
    events_file = tmp_path_factory.mktemp("contract-events") / "events.json"
    events_file.write_text(json.dumps(events))
    argv = [
        node,
        str(TOOLS / "validate.mjs"),
        "--modules",
        str(modules),
        "--asyncapi",
        str(schema.ASYNCAPI_PATH),
        "--events",
        str(events_file),
        "--schemas",
        str(schema.SCHEMA_DIR),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode not in (0, 1):
        pytest.fail(f"validate.mjs failed (exit code {result.returncode}):\n{result.stderr}", pytrace=False)
    out: dict[str, Any] = json.loads(result.stdout)
    out["expected_broken_index"] = len(events) - 1
    return out


def test_asyncapi_document_passes_the_official_parser(report: dict[str, Any]) -> None:
    parsed = report["asyncapi"]
    for w in parsed["warnings"]:
        warnings.warn(f"@asyncapi/parser: {w['code']}: {w['message']} at {w['path']}", UserWarning, stacklevel=1)
    errors = [f"{e['code']}: {e['message']} at {e['path'] or '(root)'}" for e in parsed["errors"]]
    assert not errors, "@asyncapi/parser rejects contracts/asyncapi.json:\n" + "\n".join(errors)


def test_scenario_events_match_the_committed_json_schemas(report: dict[str, Any]) -> None:
    checked = report["events"]
    broken = report["expected_broken_index"]
    assert checked["checked"] == broken + 1
    assert checked["schemas"] == len(list(schema.SCHEMA_DIR.glob("*.json")))
    unexpected = [i for i in checked["invalid"] if i["index"] != broken]
    assert not unexpected, "events the committed JSON Schemas reject:\n" + json.dumps(unexpected, indent=2)


def test_a_broken_event_is_rejected(report: dict[str, Any]) -> None:
    rejected = [i for i in report["events"]["invalid"] if i["index"] == report["expected_broken_index"]]
    assert rejected, "ajv accepted an event whose daily_rate_pence is a string: the check cannot fail"
    assert rejected[0]["id"] == "deliberately-broken"
    assert any("/data/daily_rate_pence" in e for e in rejected[0]["errors"]), rejected[0]["errors"]
