"""A crashed filter VM: Envoy's `FAIL_RELOAD` answers 503 while it starts a
new VM, never lets a request past the filter, and the integrity baseline in
shared data survives into the new VM (docs/integrity.md, "Where the baseline
lives"). Without the survival, the new VM would trust the first definition it
sees again, so a rug pull timed with a crash would pass.

The filter never panics on any input (tests/e2e/test_runtime_failsafe.py,
the fuzz targets), so these tests crash it on purpose with a test-only copy
built with the `crash-probe` feature (`make crash-probe`): a request carrying
`x-mcpx-test-crash` panics the VM. The shipped `.wasm` has no such path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import ROOT, WASM, jsonrpc, wait_until
from test_integrity import DEMO_TOOLS, baseline, names, start

PROBE_HEADER = b"x-mcpx-test-crash"
PROBE_WASM = Path(os.environ.get("MCPX_CRASH_PROBE_WASM") or ROOT / "target/test/mcpx_filter_crash_probe.wasm")


@pytest.fixture(scope="module")
def probe_wasm() -> str:
    if not PROBE_WASM.is_file():
        pytest.fail(f"{PROBE_WASM} is missing: `make e2e` builds it, or run `make crash-probe`")
    return str(PROBE_WASM)


def test_the_shipped_filter_has_no_crash_probe(probe_wasm):
    assert PROBE_HEADER not in Path(WASM).read_bytes()
    assert PROBE_HEADER in Path(probe_wasm).read_bytes()  # the control: the probe copy has it


def reloads(gw) -> int:
    """Envoy's count of successful VM reloads after a crash (FAIL_RELOAD)."""
    r = gw.admin("/stats?filter=vm_reload_success")
    assert r.status == 200, r.text
    return sum(int(line.rsplit(":", 1)[1]) for line in r.text.splitlines() if "vm_reload_success" in line)


def test_the_baseline_survives_a_vm_restart(demo, gateway_factory, probe_wasm):
    # One worker, so the crashed VM is the only one and every later request
    # must be served by its replacement.
    gw = start(demo, gateway_factory, "enforce", concurrency=1, wasm=probe_wasm)
    assert names(gw) == DEMO_TOOLS
    pinned = baseline(gw)["servers"]["demo"]
    assert reloads(gw) == 0

    demo.reset()
    r = gw.post("demo", jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "boom"}}),
                headers={PROBE_HEADER.decode(): "1"})
    assert r.status == 503, r.text  # the crashed VM's request: refused, never passed on
    wait_until(lambda: "mcpx crash probe" in gw.process.log(), timeout=20, what="the probe's panic in the log")
    assert demo.tool_calls() == [], "a request reached the backend through a crashed VM"

    # A new VM serves again (after Envoy's backoff)...
    wait_until(lambda: gw.post("demo", jsonrpc("ping")).status == 200, timeout=30, what="a new VM serving")
    assert reloads(gw) >= 1
    # The control listener's plugin shares the VM and reloads on its own
    # first request after the backoff.
    wait_until(lambda: gw.control("GET", "/baseline").status == 200, timeout=30, what="the control plugin reloaded")
    # ...with the old pins: the rug pull is caught, not pinned afresh.
    demo.mode(rug_pull=True)
    assert "echo" not in names(gw)
    after = baseline(gw)
    assert after["servers"]["demo"]["echo"]["sha256"] == pinned["echo"]["sha256"]
    assert after["violations"]["demo"]["echo"]["kind"] == "rug_pull"
    demo.reset()
    r = gw.post("demo", jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}))
    assert r.json()["error"]["data"]["reason"] == "integrity_rug_pull"
    assert demo.tool_calls() == [], "the rug-pulled tool was called after the restart"
