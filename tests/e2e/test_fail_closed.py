"""Fail closed: an Envoy handed a filter configuration the filter refuses
must not serve (no listener without the filter, no open door)."""

import json
import subprocess
import tempfile
from pathlib import Path

from harness import ENVOY_BIN, MCPX_BIN, WASM, free_port, request


def rendered(config: str) -> dict:
    d = Path(tempfile.mkdtemp(prefix="mcpx-fc-"))
    (d / "mcpx.yaml").write_text(config)
    out = subprocess.run([MCPX_BIN, "render", "-c", str(d / "mcpx.yaml"), "--format", "json", "--wasm", WASM,
                          "--listen", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{free_port()}",
                          "--no-control"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def test_envoy_refuses_to_serve_with_a_plugin_config_the_filter_rejects(tmp_path):
    port = free_port()
    boot = rendered(f"listen: 127.0.0.1:{port}\nservers:\n  - name: demo\n    url: http://127.0.0.1:9/mcp\n")
    wasm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
    wasm = next(f for f in wasm if f["name"] == "envoy.filters.http.wasm")
    # A server name the schema refuses: on_configure returns false.
    wasm["typed_config"]["config"]["configuration"]["value"] = json.dumps({"servers": [{"name": "Not Valid"}]})
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(boot))
    proc = subprocess.run([ENVOY_BIN, "-c", str(path), "--disable-hot-restart", "--log-level", "warn"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "invalid configuration" in proc.stderr and "Not Valid" in proc.stderr, proc.stderr[-2000:]
    try:
        request(port, "GET", "/mcp/demo", timeout=2)
        raise AssertionError("something answered on the gateway port")
    except OSError:
        pass
