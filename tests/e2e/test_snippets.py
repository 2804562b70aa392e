"""`mcpx render --snippets` merged into a user's own Envoy config (the worked
example of docs/deployment.md), run by a real Envoy started directly (no
`mcpx run`): the quickstart must work and the user's own route must survive."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from harness import (ENVOY_BIN, JSON, MCPX_BIN, ROOT, WASM, DemoServer, Process, denied, free_port, jsonrpc, request,
                     wait_until)

DOC = ROOT / "docs" / "deployment.md"


def doc_example(name: str) -> str:
    """The fenced block after `<!-- example: NAME ... -->` in docs/deployment.md."""
    m = re.search(r"<!-- example: " + re.escape(name) + r"\b.*?-->\s*```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert m, f"docs/deployment.md has no example block {name}"
    return m.group(1)


def snippets(mcpx_yaml: Path, fmt: str = "json"):
    out = subprocess.run([MCPX_BIN, "render", "--snippets", "-c", str(mcpx_yaml), "--wasm", WASM, "--format", fmt],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out) if fmt == "json" else out


def merge_snippets(user: dict, s: dict) -> dict:
    """The merge docs/deployment.md describes, into the first listener's first HCM."""
    listener = user["static_resources"]["listeners"][0]
    hcm = next(f["typed_config"] for f in listener["filter_chains"][0]["filters"]
               if f["name"] == "envoy.filters.network.http_connection_manager")
    router = next(i for i, f in enumerate(hcm["http_filters"]) if f["name"] == "envoy.filters.http.router")
    hcm["http_filters"][router:router] = s.get("http_filters", [])
    hcm.update(s.get("http_connection_manager", {}))
    vhost = hcm["route_config"]["virtual_hosts"][0]
    vhost["routes"][0:0] = s.get("routes", [])
    for k, v in s.get("virtual_host", {}).items():
        vhost[k] = {**vhost.get(k, {}), **v} if isinstance(v, dict) else v
    listener.update(s.get("listener", {}))
    user["static_resources"]["clusters"].extend(s.get("clusters", []))
    user["static_resources"]["listeners"].extend(s.get("listeners", []))
    for k, v in s.get("bootstrap", {}).items():
        user[k] = v
    return user


class UserEnvoy:
    """Envoy started directly with a given bootstrap, as a user would."""

    def __init__(self, bootstrap: dict, admin_port: int):
        d = Path(tempfile.mkdtemp(prefix="mcpx-user-envoy-"))
        path = d / "envoy.yaml"
        path.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
        self.process = Process("user-envoy", [ENVOY_BIN, "-c", str(path), "--concurrency", "1",
                                              "--disable-hot-restart", "--log-level", "warn"])
        self.admin_port = admin_port
        try:
            wait_until(self._ready, timeout=60, what="envoy ready", proc=self.process.proc)
        except Exception as e:
            log = self.process.log()
            self.process.stop()
            raise RuntimeError(f"envoy did not start: {e}\n--- log ---\n{log[-4000:]}") from e

    def _ready(self) -> bool:
        try:
            return request(self.admin_port, "GET", "/ready").status == 200
        except OSError:
            return False

    def stop(self):
        self.process.stop()


@pytest.fixture
def app():
    """The user's own application behind their Envoy (a second demo server)."""
    server = DemoServer(name="my-app")
    yield server
    server.stop()


def build_user_config(demo: DemoServer, app: DemoServer, tmp: Path) -> tuple[dict, int, int]:
    mcpx_yaml = tmp / "mcpx.yaml"
    mcpx_yaml.write_text(doc_example("mcpx.yaml").replace("http://127.0.0.1:3001/mcp", demo.url))
    user = yaml.safe_load(doc_example("user-envoy.yaml"))
    # The example's fixed ports, moved to free ones.
    port, admin_port = free_port(), free_port()
    user["admin"]["address"]["socket_address"].update(address="127.0.0.1", port_value=admin_port)
    listener = user["static_resources"]["listeners"][0]
    listener["address"]["socket_address"].update(address="127.0.0.1", port_value=port)
    app_ep = user["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    app_ep["endpoint"]["address"]["socket_address"]["port_value"] = app.port
    return merge_snippets(user, snippets(mcpx_yaml)), port, admin_port


def test_snippets_merged_into_a_user_envoy_serve_the_quickstart(demo, app, tmp_path):
    config, port, admin_port = build_user_config(demo, app, tmp_path)
    envoy = UserEnvoy(config, admin_port)
    try:
        post = lambda msg, **h: request(port, "POST", "/mcp/demo", json.dumps(msg), {**JSON, **h})

        # The user's own route is untouched.
        r = request(port, "GET", "/_health")
        assert r.status == 200 and r.text == "ok", r.text

        # tools/list is filtered to the allow list.
        r = post(jsonrpc("tools/list"))
        assert r.status == 200, r.text
        assert [t["name"] for t in r.json()["result"]["tools"]] == ["echo", "read_file"]
        assert r.header("x-request-id"), "request-id settings from the snippets are missing"

        # A denied call is a JSON-RPC error naming the tool, and never reaches the server.
        demo.reset()
        r = post(jsonrpc("tools/call", {"name": "dangerous_delete", "arguments": {"path": "/"}}, id=7))
        assert denied(r), r.text
        assert r.json()["id"] == 7 and "dangerous_delete" in r.json()["error"]["message"]
        # The bypass: a client-sent internal header does not change the decision.
        r = post(jsonrpc("tools/call", {"name": "dangerous_delete", "arguments": {"path": "/"}}, id=8),
                 **{"x-mcpx-tool": "echo"})
        assert denied(r), r.text
        assert not any("dangerous_delete" in b for b in demo.received_bodies())

        # An allowed call passes, to the backend's own path.
        r = post(jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, id=9))
        assert r.status == 200, r.text
        assert r.json()["result"]["content"][0]["text"] == "hi"
        assert demo.received()[-1]["path"] == "/mcp"
        # MCP traffic went to the MCP server, not to the user's app.
        assert not any("tools/call" in x.get("body", "") for x in app.received())
    finally:
        envoy.stop()


def test_yaml_snippets_match_json_and_say_where_each_goes(demo, tmp_path):
    mcpx_yaml = tmp_path / "mcpx.yaml"
    mcpx_yaml.write_text(doc_example("mcpx.yaml").replace("http://127.0.0.1:3001/mcp", demo.url))
    text = snippets(mcpx_yaml, "yaml")
    assert yaml.safe_load(text) == snippets(mcpx_yaml)
    sections = [line.split(":")[0] for line in text.splitlines() if re.match(r"^[a-z_]+:", line)]
    assert sections[:2] == ["http_filters", "http_connection_manager"]
    for name in sections:
        # Every section has a comment right above it.
        before = text.split(f"\n{name}:", 1)[0].rstrip().splitlines()[-1]
        assert before.startswith("# "), f"section {name} has no comment saying where it goes"


def test_snippets_refuse_an_invalid_config(tmp_path):
    bad = tmp_path / "mcpx.yaml"
    bad.write_text("servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n    polcy: {}\n")
    r = subprocess.run([MCPX_BIN, "render", "--snippets", "-c", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == ""
    assert "polcy" in r.stderr


def is_abridged(doc, real, path="") -> list[str]:
    """Where the doc's abridged YAML differs from the real output: every key it
    shows must exist with the value shown (values containing "..." are elided)."""
    if isinstance(doc, str) and "..." in doc:
        return []
    if isinstance(doc, dict):
        if not isinstance(real, dict):
            return [f"{path}: not an object in the real output"]
        out = []
        for k, v in doc.items():
            out += is_abridged(v, real[k], f"{path}.{k}") if k in real else [f"{path}.{k}: not in the real output"]
        return out
    if isinstance(doc, list):
        if not isinstance(real, list) or len(doc) != len(real):
            return [f"{path}: {len(doc)} items shown, the real output has {len(real) if isinstance(real, list) else 'none'}"]
        return [e for i, (d, r) in enumerate(zip(doc, real)) for e in is_abridged(d, r, f"{path}[{i}]")]
    return [] if doc == real else [f"{path}: shown {doc!r}, real {real!r}"]


def test_documented_snippets_output_matches_the_real_output(tmp_path):
    mcpx_yaml = tmp_path / "mcpx.yaml"
    mcpx_yaml.write_text(doc_example("mcpx.yaml"))
    shown = yaml.safe_load(doc_example("snippets-output"))
    real = snippets(mcpx_yaml)
    # The doc shows the path a user passes; the test renders with the real build.
    real["http_filters"][0]["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = \
        "/etc/envoy/mcpx_filter.wasm"
    assert set(shown) <= set(real)
    diffs = is_abridged(shown, real)
    assert not diffs, "docs/deployment.md's snippets output is out of date:\n  " + "\n  ".join(diffs)
