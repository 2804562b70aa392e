"""What the filter costs Envoy in memory (docs/performance.md, "wasmsize"):
the shipped `.wasm` stays under its size budget with no debug or name
sections, and the operator control listener runs in the MCP listener's VMs
instead of starting its own (every VM set is a compiled module plus one VM
per thread).
"""

import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import ENVOY_BIN, MCPX_BIN, WASM, Process, free_port, request, wait_until

# Issue 19's target: smaller than 1.19 MiB. The cold-crate profile brought it
# to about 1.16 MiB; this keeps what other changes may add in view.
WASM_BUDGET_BYTES = 1_247_805


def sections(data: bytes) -> list[tuple[int, str]]:
    """(id, custom-section name or '') of every section of a wasm module."""

    def leb(i: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, i

    assert data[:4] == b"\0asm"
    out, i = [], 8
    while i < len(data):
        sid = data[i]
        size, i = leb(i + 1)
        name = ""
        if sid == 0:
            n, j = leb(i)
            name = data[j:j + n].decode()
        out.append((sid, name))
        i += size
    return out


def test_the_shipped_wasm_is_under_its_size_budget_and_stripped():
    data = Path(WASM).read_bytes()
    custom = [name for sid, name in sections(data) if sid == 0]
    assert custom == [], f"custom sections in the shipped filter (strip = true in [profile.wasm]): {custom}"
    # scripts/toolchain.sh says which path built it. The budget is that of the
    # std-from-source build (std built for size); a rustup toolchain links its
    # prebuilt std, about 67 KB larger.
    built_by = Path(str(WASM) + ".toolchain")
    if built_by.exists() and built_by.read_text().strip() == "rustup":
        pytest.skip("built by a rustup toolchain (prebuilt std): the size budget is the std-from-source build's")
    assert len(data) < WASM_BUDGET_BYTES, (
        f"{WASM} is {len(data):,} bytes, over the {WASM_BUDGET_BYTES:,}-byte budget: every byte is compiled by V8 "
        "in each Envoy and held there (docs/performance.md, wasmsize); find what grew before raising it")


def active_vms(bootstrap: dict, tmp: Path, name: str) -> int:
    """Starts Envoy with one worker on `bootstrap` and reads how many V8 VMs run."""
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(bootstrap))
    admin = bootstrap["admin"]["address"]["socket_address"]["port_value"]
    envoy = Process(f"envoy-{name}", [ENVOY_BIN, "-c", str(path), "--concurrency", "1", "--disable-hot-restart",
                                      "--log-level", "warn"])
    try:
        wait_until(lambda: answers_ready(admin), timeout=60, what=f"Envoy {name} ready", proc=envoy.proc)
        stats = request(admin, "GET", "/stats?filter=wasm.envoy.wasm.runtime.v8.active").text
        m = re.search(r"wasm\.envoy\.wasm\.runtime\.v8\.active: (\d+)", stats)
        assert m, f"no V8 VM gauge in Envoy's stats: {stats!r}"
        return int(m.group(1))
    finally:
        envoy.stop()


def answers_ready(admin: int) -> bool:
    try:
        return request(admin, "GET", "/ready").status == 200
    except OSError:
        return False


def test_the_control_listener_shares_the_filters_vms():
    tmp = Path(tempfile.mkdtemp(prefix="mcpx-footprint-"))
    config = tmp / "mcpx.yaml"
    config.write_text('listen: "127.0.0.1:8080"\nservers:\n  - name: demo\n    url: http://127.0.0.1:9/mcp\n')
    control = tmp / "control" / "control.sock"
    control.parent.mkdir(mode=0o700)
    rendered = subprocess.run(
        [MCPX_BIN, "render", "-c", str(config), "--format", "json", "--listen", f"127.0.0.1:{free_port()}",
         "--admin", f"127.0.0.1:{free_port()}", "--wasm", WASM, "--control", str(control)],
        capture_output=True, text=True, timeout=60, check=True).stdout
    with_control = json.loads(rendered)
    names = [x["name"] for x in with_control["static_resources"]["listeners"]]
    assert "mcpx_control" in names, names
    # The same gateway without the operator listener.
    without = json.loads(rendered)
    without["static_resources"]["listeners"] = [
        x for x in without["static_resources"]["listeners"] if x["name"] != "mcpx_control"]

    alone = active_vms(without, tmp, "without-control")
    assert alone >= 2  # the main thread's and the worker's, at least
    # A control listener with its own VMs would add a whole second set.
    assert active_vms(with_control, tmp, "with-control") == alone
