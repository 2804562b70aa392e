#!/usr/bin/env python3
"""mcpx benchmarks on loopback: gateway overhead, tools/list inspection cost,
memory; then docs/performance.md and its plots.

Run through `make bench` (tests/bench/run.sh), which builds everything and sets
ENVOY_BIN, MCPX_WASM, MCPX_BIN and MCPX_DEMO_BIN. BENCH_QUICK=1 makes every run
short (a smoke test of the harness, not numbers to quote).

Layout: Envoy runs with --concurrency 1 pinned to one CPU;
wrk and the demo backend share the other. Variants, all hit with the same
request bytes:
  (a) direct   wrk -> mcpx-demo --no-record
  (b) envoy    wrk -> Envoy (the rendered config with the wasm filter and every
               other mcpx HTTP filter removed: router only) -> mcpx-demo
  (c) gateway  wrk -> Envoy with the full rendered config (auth, policy with
               argument rules, per-tool rate limit, audit) -> mcpx-demo
The (b) config is derived from `mcpx render --format json` of the (c) config
by a function here, so there is no second config to keep in step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORK = ROOT / "tests" / ".artifacts" / "bench"

ENVOY_BIN = os.environ.get("ENVOY_BIN", "envoy")
MCPX_BIN = os.environ.get("MCPX_BIN") or str(ROOT / "target/release/mcpx")
DEMO_BIN = os.environ.get("MCPX_DEMO_BIN") or str(ROOT / "target/release/mcpx-demo")
WASM = os.environ.get("MCPX_WASM") or str(ROOT / "target/wasm32-wasip1/wasm/mcpx_filter.wasm")
WRK = os.environ.get("WRK_BIN", "wrk")
# The same filter built with the benchmark-only cargo feature `bench-ablation`
# (run.sh builds it): parts of the request path can be switched off.
ABLATION_WASM = os.environ.get("MCPX_ABLATION_WASM", "")

CONNECTIONS = [1, 16, 64]
LIST_SIZES = [10, 100, 1000, 5000]
VARIANTS = {"a": "direct (demo server)", "b": "Envoy, no wasm", "c": "full gateway"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

TOOLS_CALL = {"jsonrpc": "2.0", "id": 42, "method": "tools/call",
              "params": {"name": "echo", "arguments": {"text": "hello from the mcpx benchmark"}}}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


class BenchError(Exception):
    """A failure that stops the benchmark, with a message saying what to do."""


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes

class Procs:
    """Every process the benchmark starts, each in its own group, all stopped
    at the end (also on Ctrl-C / SIGTERM)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str], env: dict | None = None) -> tuple[subprocess.Popen, Path]:
        log = WORK / f"{name}.log"
        f = open(log, "wb")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})}, start_new_session=True)
        f.close()
        self.procs.append((name, p, log))
        return p, log

    def stop(self, proc: subprocess.Popen) -> None:
        """Stops one process (and its group) early."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs = [t for t in self.procs if t[1] is not proc]

    def stop_all(self) -> None:
        for _, p, _ in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for _, p, _ in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.procs.clear()


PROCS = Procs()


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def wait_until(pred, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what}: the process exited with {proc.returncode}; its log:\n{tail(log) if log else ''}")
        time.sleep(0.05)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}" + (f"; log:\n{tail(log)}" if log else ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def pin(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu is not None else []


def proc_cpu_seconds(pid: int) -> float:
    """On-CPU time (user + system) of a whole process, all threads. From each
    thread's schedstat (nanoseconds) where the kernel has it: utime + stime
    count 10 ms ticks, which over a 3 s run of ~6,000 requests is ±1.7 µs per
    request of rounding, as large as the cuts being measured."""
    try:
        return sum(int((t / "schedstat").read_text().split()[0])
                   for t in Path(f"/proc/{pid}/task").iterdir()) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_mem_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])
    return out


# ---------------------------------------------------------------- the pieces

def start_demo(name: str, tools: int, cpu: str | None) -> tuple[int, subprocess.Popen]:
    ready = WORK / f"{name}.addr"
    ready.unlink(missing_ok=True)
    argv = pin(cpu) + [DEMO_BIN, "--listen", "127.0.0.1:0", "--ready-file", str(ready), "--no-record",
                       "--tools", str(tools)]
    p, log = PROCS.start(name, argv)
    addr = wait_until(lambda: ready.exists() and ready.read_text().strip(), 30, f"{name} to listen", p, log)
    port = int(addr.rsplit(":", 1)[1])
    wait_until(lambda: http(port, "GET", "/_health")[0] == 200, 30, f"{name} /_health", p, log)
    return port, p


DEMO_POLICY = [
    "    policy:",
    "      allow_tools: [echo, read_file]",
    "      deny_tools: [dangerous_delete]",
    "      tool_rules:",
    "        echo:",
    "          args:",
    "            text: { regex: \"^[a-z0-9 ]{1,200}$\", required: true }",
    "        read_file:",
    "          args:",
    "            path: { prefix: \"/data/\" }",
]
LIST_POLICY = ["    policy:", "      deny_tools: [dangerous_delete]"]


def gateway_yaml(demo_port: int | None, list_ports: dict[int, int], token: str, audit_path: Path,
                 without: frozenset[str] = frozenset()) -> str:
    """The full-gateway config (c): auth, policy with argument rules, per-tool
    rate limit with budgets far above what the runs reach, audit to a file.
    Servers: `demo` (the tools/call target) and `list{N}` per entry of
    `list_ports` (tools/list targets). `without` leaves features out for the
    ablation table: auth, rate_limit, per_tool, audit, integrity, rules
    (only the deny list), or deny_only (the deny list and nothing else)."""
    big = 10_000_000
    if "deny_only" in without:
        without = frozenset({"auth", "rate_limit", "audit", "integrity", "rules"})
    lines = [
        "# Generated by tests/bench/bench.py: the full-gateway benchmark variant (c).",
        "listen: \"127.0.0.1:8080\"",
        "servers:",
    ]
    if demo_port is not None:
        policy = LIST_POLICY if "rules" in without else DEMO_POLICY
        lines += ["  - name: demo", f"    url: http://127.0.0.1:{demo_port}/mcp", *policy]
    for n, port in list_ports.items():
        lines += [f"  - name: list{n}", f"    url: http://127.0.0.1:{port}/mcp", *LIST_POLICY]
    if "auth" in without:
        return "\n".join(lines + _optional_sections(big, audit_path, without)) + "\n"
    lines += [
        "auth:",
        "  enabled: true",
        "  type: bearer",
        "  clients:",
        f"    - {{ name: bench, token: \"{token}\" }}",
        f"    - {{ name: other, token: \"{secrets.token_hex(16)}\" }}",
    ]
    if demo_port is not None and "rules" not in without:
        lines += ["clients:", "  bench:", "    servers:", "      demo: { allow_tools: [echo, read_file] }"]
    return "\n".join(lines + _optional_sections(big, audit_path, without)) + "\n"


def _optional_sections(big: int, audit_path: Path, without: frozenset[str]) -> list[str]:
    lines = []
    if "audit" not in without:
        lines.append(f"audit: {{ enabled: true, output: \"{audit_path}\" }}")
    else:
        lines.append("audit: { enabled: false }")  # on (to stdout) by default
    if "rate_limit" not in without:
        per_tool = "false" if "per_tool" in without else "true"
        lines.append(f"rate_limit: {{ enabled: true, rps: {big}, burst: {big}, per_tool: {per_tool}, "
                     f"tool_rps: {big}, tool_burst: {big} }}")
    if "integrity" not in without:
        lines.append("inspection: { tool_integrity: enforce, filter_tools_list: true }")
    return lines


_RENDER_FLAGS: set[str] | None = None


def render_flags() -> set[str]:
    """The options `mcpx render` has in this tree (e.g. --no-control, to
    leave out the operator control socket)."""
    global _RENDER_FLAGS
    if _RENDER_FLAGS is None:
        r = subprocess.run([MCPX_BIN, "render", "--help"], capture_output=True, text=True, timeout=30)
        _RENDER_FLAGS = set(re.findall(r"(--[a-z][a-z0-9-]*)", r.stdout))
    return _RENDER_FLAGS


def render(config_path: Path, port: int, admin: int) -> dict:
    argv = [MCPX_BIN, "render", "-c", str(config_path), "--format", "json", "--listen", f"127.0.0.1:{port}",
            "--admin", f"127.0.0.1:{admin}", "--wasm", WASM]
    if "--no-control" in render_flags():
        argv += ["--no-control"]  # the bench needs no operator socket
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise BenchError(f"`mcpx render` failed for {config_path}:\n{r.stderr.strip()}")
    return json.loads(r.stdout)


def hcms(bootstrap: dict) -> list[dict]:
    """The HTTP connection managers of the static listeners."""
    out = []
    for listener in bootstrap.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for f in chain.get("filters", []):
                if f.get("name") == "envoy.filters.network.http_connection_manager":
                    out.append(f["typed_config"])
    if not out:
        raise BenchError("the rendered config has no static listener with an HTTP connection manager; "
                         "update hcms() in tests/bench/bench.py to the new render layout")
    return out


def main_filters(bootstrap: dict) -> list[str]:
    """The HTTP filter names of the main listener (`mcpx`, else the first)."""
    listeners = bootstrap["static_resources"]["listeners"]
    main = next((x for x in listeners if x.get("name") == "mcpx"), listeners[0])
    return [f["name"] for c in main.get("filter_chains", []) for nf in c.get("filters", [])
            if nf.get("name") == "envoy.filters.network.http_connection_manager"
            for f in nf["typed_config"].get("http_filters", [])]


def has_wasm(bootstrap: dict) -> bool:
    return any(f.get("name") == "envoy.filters.http.wasm" for h in hcms(bootstrap) for f in h["http_filters"])


def strip_to_plain_envoy(bootstrap: dict) -> dict:
    """Variant (b): the same listener, routes and clusters, but the router is
    the only HTTP filter (no wasm, no rate limit, no CORS ...) and no access
    log: what a plain Envoy reverse proxy on the same route does."""
    b = json.loads(json.dumps(bootstrap))
    listeners = b.get("static_resources", {}).get("listeners", [])
    if any(lst.get("name") == "mcpx" for lst in listeners):
        # Only the main listener: operator side listeners are not the data path.
        b["static_resources"]["listeners"] = [lst for lst in listeners if lst.get("name") == "mcpx"]
    for h in hcms(b):
        h["http_filters"] = [f for f in h["http_filters"] if f.get("name") == "envoy.filters.http.router"]
        if not h["http_filters"]:
            raise BenchError("the rendered config has no envoy.filters.http.router; update strip_to_plain_envoy()")
        h.pop("access_log", None)
        h.pop("tracing", None)
        rc = h.get("route_config", {})
        for vh in rc.get("virtual_hosts", []):
            vh.pop("typed_per_filter_config", None)
            for route in vh.get("routes", []):
                route.pop("typed_per_filter_config", None)
    for listener in b["static_resources"]["listeners"]:
        listener.pop("access_log", None)
    return b


# ---------------------------------------------------------------- ablation

# The ablation variants, each one Envoy: (key, label, how). `how` is one of
#   ("plain",)               router-only Envoy, as (b)
#   ("mcp_rbac",)            (b) plus Envoy's own MCP filter and RBAC denying one tool
#   ("config", {features})   the shipped filter, the full config without those features
#   ("skip", "a,b")          the bench-ablation build with those parts switched off
ABLATION = [
    ("plain", "plain Envoy, router only", ("plain",)),
    ("mcp_rbac", "Envoy's `envoy.filters.http.mcp` + RBAC denying one tool", ("mcp_rbac",)),
    ("deny_only", "mcpx, deny list only (no auth, rate limit, audit, pinning)", ("config", {"deny_only"})),
    ("full", "mcpx, full gateway (shipped .wasm)", ("config", set())),
    ("full_ablation_build", "mcpx, full gateway (bench-ablation build, nothing off)", ("skip", "")),
    ("noop", "wasm present, returns at once (context + callbacks)", ("skip", "all")),
    ("headers", "… + read request headers", ("skip", "after_headers")),
    ("body", "… + buffer and copy out the body", ("skip", "after_body")),
    ("parse", "… + parse the body", ("skip", "after_parse")),
    ("no_attributes", "full − audit attributes (filter state)", ("skip", "attributes")),
    ("no_rl_headers", "full − rate-limit key and hit headers", ("skip", "rate_limit_headers")),
    ("no_metrics", "full − metrics in on_log (+ clock reads)", ("skip", "metrics")),
    ("no_response", "full − response phase", ("skip", "response")),
    ("no_auth", "full − bearer auth", ("config", {"auth"})),
    ("no_rate_limit", "full − rate limiting (filter headers + Envoy local_ratelimit)", ("config", {"rate_limit"})),
    ("no_per_tool", "full − per-tool buckets (global bucket kept)", ("config", {"per_tool"})),
    ("no_audit", "full − audit access log", ("config", {"audit"})),
    ("no_integrity", "full − integrity pinning (enforce)", ("config", {"integrity"})),
    ("no_rules", "full − argument rules and client override (deny list kept)", ("config", {"rules"})),
]


def _wasm_plugins(node):
    """Every wasm plugin config (the dict holding `vm_config`) in a bootstrap."""
    if isinstance(node, dict):
        if "vm_config" in node and "configuration" in node:
            yield node
        for v in node.values():
            yield from _wasm_plugins(v)
    elif isinstance(node, list):
        for v in node:
            yield from _wasm_plugins(v)


def with_skips(bootstrap: dict, skips: str) -> dict:
    """The bootstrap with the bench-ablation build and, when `skips` is set,
    the marker line that switches those parts off (a YAML comment the
    shipped filter would ignore)."""
    b = json.loads(json.dumps(bootstrap))
    plugins = list(_wasm_plugins(b))
    if not plugins:
        raise BenchError("no wasm plugin config found in the rendered bootstrap; update with_skips()")
    for plugin in plugins:
        plugin["vm_config"]["code"]["local"]["filename"] = ABLATION_WASM
        plugin["vm_config"]["vm_id"] = plugin["vm_config"].get("vm_id", "") + "-ablation"
        if skips:
            conf = plugin["configuration"]
            conf["value"] = f"# mcpx-bench-skip: {skips}\n" + conf["value"]
    return b


def with_mcp_rbac(plain: dict) -> dict:
    """Plain Envoy plus Envoy 1.40's own MCP filter (REJECT_NO_MCP: a request it
    cannot parse is refused, not passed without metadata) and an RBAC filter
    denying `tools/call` of `dangerous_delete`: the simplest policy an Envoy
    user can have without mcpx."""
    b = json.loads(json.dumps(plain))
    mcp = {"name": "envoy.filters.http.mcp", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp", "traffic_mode": "REJECT_NO_MCP"}}
    rbac = {"name": "envoy.filters.http.rbac", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"action": "DENY", "policies": {"deny-dangerous-delete": {
            "permissions": [{"metadata": {"filter": "envoy.filters.http.mcp",
                                          "path": [{"key": "params"}, {"key": "name"}],
                                          "value": {"string_match": {"exact": "dangerous_delete"}}}}],
            "principals": [{"any": True}]}}}}}
    for h in hcms(b):
        h["http_filters"] = [mcp, rbac] + h["http_filters"]
    return b


def measure_ablation(quick: bool, token: str, demo: int, demo_proc: subprocess.Popen, envoy_cpu: str | None,
                     load_cpu: str | None) -> dict:
    """Envoy CPU per request of each variant in ABLATION, 16 connections, all
    variants interleaved in every round. Every variant's Envoy is started
    first (all pinned to the same CPU; idle ones cost nothing measurable) and
    checked to serve the call and, where the policy is on, refuse the denied
    tool."""
    if not ABLATION_WASM or not Path(ABLATION_WASM).is_file():
        raise BenchError("MCPX_ABLATION_WASM is not set or missing: run through `make bench`, which builds "
                         "the filter with --features bench-ablation")
    seconds, warm, rounds = (2, 1, 1) if quick else (3, 1, 3)
    conns = 16
    load_start = loadavg()
    call_body = WORK / "tools-call.json"
    denied = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                         "params": {"name": "dangerous_delete", "arguments": {"path": "/x"}}}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "Authorization": f"Bearer {token}"}
    bootstraps: dict[str, tuple[dict, int, int]] = {}
    for key, _label, how in ABLATION:
        port, admin = free_port(), free_port()
        without = how[1] if how[0] == "config" else set()
        cfg = WORK / f"ablation-{key}.yaml"
        cfg.write_text(gateway_yaml(demo, {}, token, WORK / "audit-ablation.log", frozenset(without)))
        os.chmod(cfg, 0o600)
        full = render(cfg, port, admin)
        if how[0] == "plain":
            b = strip_to_plain_envoy(full)
        elif how[0] == "mcp_rbac":
            b = with_mcp_rbac(strip_to_plain_envoy(full))
        elif how[0] == "skip":
            b = with_skips(full, how[1])
        else:
            b = full
        bootstraps[key] = (b, port, admin)
    runs: list[dict] = []
    memory: dict[str, dict] = {}
    envoys: dict[str, Envoy] = {}
    for key, _label, how in ABLATION:
        b, port, admin = bootstraps[key]
        t0 = time.monotonic()
        envoys[key] = Envoy(f"envoy-ablation-{key}", b, port, admin, envoy_cpu)
        ready_s = time.monotonic() - t0  # mostly the wasm VMs' start (V8 compiles the module per VM)
        expect_ok(port, "/mcp/demo", TOOLS_CALL, token, f"ablation {key} tools/call",
                  "hello from the mcpx benchmark")
        if how[0] in ("mcp_rbac", "config") or how == ("skip", ""):
            # The variant must really refuse the denied tool.
            status, body = http(port, "POST", "/mcp/demo", denied, headers)
            # Envoy's RBAC answers 403; mcpx answers the JSON-RPC error -32003
            # (HTTP 200 by default, docs/policy.md).
            refused = status == 403 if how[0] == "mcp_rbac" else b'"code":-32003' in body.replace(b" ", b"")
            if not refused:
                raise BenchError(f"ablation {key}: a denied tool was not refused ({status}): {body[:200]!r}")
        memory[key] = {**proc_mem_kib(envoys[key].pid), "ready_s": round(ready_s, 2)}
    for rnd in range(rounds):
        for key, label, how in ABLATION:
            envoy = envoys[key]
            url = f"http://127.0.0.1:{envoy.port}/mcp/demo"
            r = warm_then_run(url, call_body, conns, warm, seconds, token, load_cpu, {"envoy": envoy.pid},
                              envoy.alive_or_fail)
            r.update(variant=key, conns=conns, round=rnd)
            runs.append(r)
            say(f"ablation round {rnd + 1}/{rounds} {key:<20} {r['rps']:>8.0f} req/s  "
                f"envoy {r['cpu_us_envoy']:6.1f} µs/req  errors {r['errors']}")
    for key, e in envoys.items():
        memory[key]["after"] = proc_mem_kib(e.pid)["VmRSS"]
        PROCS.stop(e.proc)
    return {"variants": [{"key": k, "label": lbl, "how": h[0],
                          "arg": (sorted(h[1]) if isinstance(h[1], set) else h[1]) if len(h) > 1 else None}
                         for k, lbl, h in ABLATION],
            "runs": runs, "memory": memory, "seconds": seconds, "rounds": rounds, "conns": conns,
            "loadavg_start": load_start,
            "ablation_wasm_bytes": Path(ABLATION_WASM).stat().st_size}


class Envoy:
    def __init__(self, name: str, bootstrap: dict, port: int, admin: int, cpu: str | None, concurrency: int = 1):
        self.name, self.port, self.admin = name, port, admin
        path = WORK / f"{name}.json"
        path.write_text(json.dumps(bootstrap, indent=1))
        os.chmod(path, 0o600)  # holds the bench token
        self.argv = pin(cpu) + [ENVOY_BIN, "-c", str(path), "--concurrency", str(concurrency), "--disable-hot-restart",
                                "--log-level", "warn"]
        self.proc, self.log = PROCS.start(name, self.argv)
        wait_until(lambda: http(admin, "GET", "/ready")[0] == 200, 60, f"Envoy {name} to be ready",
                   self.proc, self.log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive_or_fail(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"Envoy {self.name} exited ({self.proc.returncode}); log:\n{tail(self.log)}")


def expect_ok(port: int, path: str, body: dict, token: str, what: str, must_contain: str) -> None:
    status, data = http(port, "POST", path, json.dumps(body).encode(),
                        {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                         "Authorization": f"Bearer {token}"})
    if status != 200 or must_contain.encode() not in data:
        raise BenchError(f"{what}: expected 200 containing {must_contain!r}, got {status}: {data[:300]!r}")


def warm_then_run(url: str, body_file: Path, conns: int, warm: int, seconds: int, token: str, cpu: str | None,
                  watch: dict[str, int], check=lambda: None, fresh_ids: bool = False) -> dict:
    """A warm-up run (not measured), then `check()`, then the measured run."""
    run_wrk(url, body_file, conns, warm, token, cpu, {}, fresh_ids)
    check()
    return run_wrk(url, body_file, conns, seconds, token, cpu, watch, fresh_ids)


def run_wrk(url: str, body_file: Path, conns: int, seconds: int, token: str, cpu: str | None,
            watch: dict[str, int], fresh_ids: bool = False) -> dict:
    """One wrk run; `watch` names processes whose CPU time per request is
    reported. `fresh_ids`: a new JSON-RPC id per request (post.lua)."""
    argv = pin(cpu) + [WRK, "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "10s", "-s",
                       str(HERE / "post.lua"), url]
    before = {k: proc_cpu_seconds(pid) for k, pid in watch.items()}
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                       env={**os.environ, "BENCH_BODY": str(body_file), "BENCH_TOKEN": token,
                            "BENCH_FRESH_IDS": "1" if fresh_ids else "0"})
    after = {k: proc_cpu_seconds(pid) for k, pid in watch.items()}
    m = re.search(r"^WRKJSON (\{.*\})$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise BenchError(f"wrk failed ({r.returncode}) on {url}:\n{r.stdout}\n{r.stderr}")
    res = json.loads(m.group(1))
    n = max(res["requests"], 1)
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["errors"] = sum(res[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors",
                                          "timeouts"))
    for k in watch:
        res[f"cpu_us_{k}"] = (after[k] - before[k]) * 1e6 / n
    return res


# ---------------------------------------------------------------- phases

def machine() -> dict:
    info = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        info["cpu_model"] = models[0] if models else platform.processor()
        info["cpus_listed"] = len(models)
        mhz = re.findall(r"^cpu MHz\s*:\s*(.+)$", cpuinfo, re.M)
        info["cpu_mhz"] = mhz[0] if mhz else "?"
    except OSError:
        pass
    try:
        mem = Path("/proc/meminfo").read_text()
        info["mem_total_gib"] = round(int(re.search(r"MemTotal:\s+(\d+)", mem).group(1)) / 1024 / 1024, 1)
    except (OSError, AttributeError):
        pass
    try:
        osr = Path("/etc/os-release").read_text()
        info["os"] = re.search(r'^PRETTY_NAME="?([^"\n]+)', osr, re.M).group(1)
    except (OSError, AttributeError):
        pass
    info["nproc_cmd"] = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    ev = subprocess.run([ENVOY_BIN, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version: (\S+)", ev)
    info["envoy"] = m.group(1) if m else ev.strip()[:120]
    info["wrk"] = subprocess.run([WRK, "--version"], capture_output=True, text=True).stdout.splitlines()[0] \
        if shutil.which(WRK) else "?"
    g = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    info["git"] = g.stdout.strip() or "?"
    info["wasm_bytes"] = Path(WASM).stat().st_size
    return info


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def choose_cpus() -> tuple[str | None, str | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not shutil.which("taskset"):
        say("warning: fewer than 2 usable CPUs (or no taskset): not pinning; numbers will be noisier")
        return None, None
    return str(cpus[0]), str(cpus[1])


# ---------------------------------------------------------------- compare two builds

COMPARE_CONFIGS = {"full": frozenset(), "deny_only": frozenset({"deny_only"})}


def tcmalloc_mib(admin: int) -> dict:
    """Envoy's allocator figures (admin /memory), MiB."""
    status, body = http(admin, "GET", "/memory")
    if status != 200:
        return {}
    return {k: round(int(v) / 2**20, 1) for k, v in json.loads(body).items() if str(v).isdigit()}


def rss_split_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0])
    return out


def with_wasm(bootstrap: dict, wasm: Path, tag: str) -> dict:
    """The bootstrap with every wasm plugin loading `wasm` (a vm_id of its own)."""
    b = json.loads(json.dumps(bootstrap))
    plugins = list(_wasm_plugins(b))
    if not plugins:
        raise BenchError("no wasm plugin config found in the rendered bootstrap; update with_wasm()")
    for plugin in plugins:
        plugin["vm_config"]["code"]["local"]["filename"] = str(wasm)
        plugin["vm_config"]["vm_id"] = plugin["vm_config"].get("vm_id", "") + "-" + tag
    return b


def measure_compare(old: Path, new: Path, config: str, quick: bool, rounds: int, concurrency: int) -> dict:
    """Plain Envoy, OLD and NEW filter builds, the same config, in one run.
    Every round starts a fresh Envoy per variant (start to ready, RSS when
    idle), checks it serves the call (and that the filters refuse the denied
    tool), then times wrk against each in turn (Envoy CPU per request); the
    Envoys of a round are stopped before the next."""
    envoy_cpu, load_cpu = choose_cpus()
    seconds, warm, conns = (2, 1, 16) if quick else (4, 1, 16)
    rounds = 1 if quick else rounds
    token = secrets.token_hex(24)
    started, load_start = time.monotonic(), loadavg()
    demo, demo_proc = start_demo("demo-compare", 0, load_cpu)
    call_body = WORK / "tools-call.json"
    call_body.write_text(json.dumps(TOOLS_CALL, separators=(",", ":")))
    cfg = WORK / "compare.yaml"
    cfg.write_text(gateway_yaml(demo, {}, token, WORK / "audit-compare.log", COMPARE_CONFIGS[config]))
    os.chmod(cfg, 0o600)
    denied = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                         "params": {"name": "dangerous_delete", "arguments": {"path": "/x"}}}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "Authorization": f"Bearer {token}"}
    variants = {"plain": None, "old": old, "new": new}
    runs, idle = [], []
    for rnd in range(rounds):
        envoys = {}
        for key, wasm in variants.items():
            port, admin = free_port(), free_port()
            full = render(cfg, port, admin)
            b = strip_to_plain_envoy(full) if wasm is None else with_wasm(full, wasm, key)
            t0 = time.monotonic()
            envoys[key] = Envoy(f"envoy-compare-{key}", b, port, admin, envoy_cpu, concurrency)
            ready_s = time.monotonic() - t0
            expect_ok(port, "/mcp/demo", TOOLS_CALL, token, f"compare {key} tools/call", "hello from the mcpx benchmark")
            if wasm is not None:
                status, body = http(port, "POST", "/mcp/demo", denied, headers)
                if b'"code":-32003' not in body.replace(b" ", b""):
                    raise BenchError(f"compare {key}: a denied tool was not refused ({status}): {body[:200]!r}")
            time.sleep(1)  # let start-up work (V8 compile threads) settle before reading memory
            idle.append({"variant": key, "round": rnd, "ready_s": round(ready_s, 2),
                         **rss_split_kib(envoys[key].pid), "tcmalloc": tcmalloc_mib(admin)})
        for key, envoy in envoys.items():
            url = f"http://127.0.0.1:{envoy.port}/mcp/demo"
            envoy.alive_or_fail()
            r = warm_then_run(url, call_body, conns, warm, seconds, token, load_cpu, {"envoy": envoy.pid})
            r.update(variant=key, round=rnd, conns=conns, rss_after_kib=proc_mem_kib(envoy.pid)["VmRSS"])
            runs.append(r)
            say(f"compare round {rnd + 1}/{rounds} {key:<5} {r['rps']:>8.0f} req/s  envoy "
                f"{r['cpu_us_envoy']:6.1f} µs/req  errors {r['errors']}")
        for envoy in envoys.values():
            PROCS.stop(envoy.proc)
    PROCS.stop(demo_proc)
    return {"old": str(old), "new": str(new), "old_bytes": old.stat().st_size, "new_bytes": new.stat().st_size,
            "config": config, "concurrency": concurrency, "rounds": rounds, "seconds": seconds, "conns": conns,
            "runs": runs, "idle": idle, "loadavg_start": load_start, "loadavg_end": loadavg(),
            "elapsed_s": round(time.monotonic() - started, 1),
            "when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def compare_markdown(out: dict) -> list[str]:
    """Medians over rounds; the per-round CPU differences say whether a change is above the noise."""
    med = statistics.median

    def per(key: str, field: str, src: str = "runs") -> list[float]:
        return [r[field] for r in out[src] if r["variant"] == key]

    lines = [f"`--compare` {out['when']}: config `{out['config']}`, Envoy --concurrency {out['concurrency']}, "
             f"{out['rounds']} interleaved rounds of {out['seconds']} s at {out['conns']} connections; "
             f"load average {out['loadavg_start']} → {out['loadavg_end']}.", "",
             "| | plain Envoy | old | new |", "|---|---:|---:|---:|",
             f"| `.wasm` bytes | | {out['old_bytes']:,} | {out['new_bytes']:,} |"]
    cells = {k: med(per(k, "cpu_us_envoy")) for k in ("plain", "old", "new")}
    lines.append("| Envoy CPU µs/request | " + " | ".join(f"{cells[k]:.1f}" for k in ("plain", "old", "new")) + " |")
    rps = {k: med(per(k, "rps")) for k in ("plain", "old", "new")}
    lines.append("| req/s | " + " | ".join(f"{rps[k]:.0f}" for k in ("plain", "old", "new")) + " |")
    for field, label in (("VmRSS", "RSS idle"), ("RssAnon", "anonymous RSS idle"), ("RssFile", "file RSS idle")):
        v = {k: med(per(k, field, "idle")) / 1024 for k in ("plain", "old", "new")}
        lines.append(f"| {label} (MiB) | {v['plain']:.1f} | {v['old']:.1f} (+{v['old'] - v['plain']:.1f}) | "
                     f"{v['new']:.1f} (+{v['new'] - v['plain']:.1f}) |")
    v = {k: med(per(k, "rss_after_kib")) / 1024 for k in ("plain", "old", "new")}
    lines.append(f"| RSS after the runs (MiB) | {v['plain']:.1f} | {v['old']:.1f} (+{v['old'] - v['plain']:.1f}) | "
                 f"{v['new']:.1f} (+{v['new'] - v['plain']:.1f}) |")
    v = {k: med([r["tcmalloc"].get("allocated", 0) for r in out["idle"] if r["variant"] == k])
         for k in ("plain", "old", "new")}
    lines.append("| Envoy heap allocated, idle (MiB) | " + " | ".join(f"{v[k]:.1f}" for k in ("plain", "old", "new")) + " |")
    v = {k: med(per(k, "ready_s", "idle")) for k in ("plain", "old", "new")}
    lines.append("| start to ready (s) | " + " | ".join(f"{v[k]:.2f}" for k in ("plain", "old", "new")) + " |")
    diffs = [n["cpu_us_envoy"] - o["cpu_us_envoy"] for o, n in zip(
        [r for r in out["runs"] if r["variant"] == "old"], [r for r in out["runs"] if r["variant"] == "new"])]
    lines += ["", "new − old CPU µs/request per round: " + ", ".join(f"{d:+.1f}" for d in diffs)]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    ap.add_argument("--micro-json", type=Path, help="results of the native micro-benchmarks (cargo bench)")
    ap.add_argument("--bridge-md", type=Path, help="markdown printed by tests/bench/bridge_bench.py")
    ap.add_argument("--bridge-status", default="absent", help="absent | ok | failed (exit code)")
    ap.add_argument("--micro-problem", default="", help="why some micro-benchmark cases did not run")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md")
    ap.add_argument("--only-doc", type=Path, help="re-render the doc from a saved results JSON; no runs")
    ap.add_argument("--only-ablation", action="store_true",
                    help="run only the ablation table, merged into the saved results.json, then re-render")
    ap.add_argument("--only-global-rl", action="store_true",
                    help="run only the global-vs-local rate-limit variant (needs redis-server), merged into the "
                         "saved results.json, then re-render")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("OLD.wasm", "NEW.wasm"),
                    help="compare two filter builds with plain Envoy in one interleaved run (CPU µs/request, RSS, "
                         "start to ready); prints a table, writes compare.json; the page is not touched")
    ap.add_argument("--compare-config", default="full", choices=sorted(COMPARE_CONFIGS),
                    help="the gateway config of --compare (default: full, the benchmark's (c))")
    ap.add_argument("--compare-rounds", type=int, default=3)
    ap.add_argument("--compare-concurrency", type=int, default=1, help="Envoy --concurrency for --compare")
    args = ap.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    if args.compare:
        for exe in (ENVOY_BIN, MCPX_BIN, DEMO_BIN, WRK):
            if not shutil.which(exe):
                raise BenchError(f"{exe} not found or not executable (make bench builds and sets them)")
        for w in args.compare:
            if not w.is_file():
                raise BenchError(f"{w} not found")
        out = measure_compare(args.compare[0], args.compare[1], args.compare_config, args.quick,
                              args.compare_rounds, args.compare_concurrency)
        (WORK / "compare.json").write_text(json.dumps(out, indent=1))
        print("\n".join(compare_markdown(out)))
        say(f"raw results: {WORK / 'compare.json'}")
        return 0
    if args.only_doc:
        results = json.loads(args.only_doc.read_text())
    else:
        for exe in (ENVOY_BIN, MCPX_BIN, DEMO_BIN, WRK):
            if not shutil.which(exe):
                raise BenchError(f"{exe} not found or not executable (make bench builds and sets them)")
        if not Path(WASM).is_file():
            raise BenchError(f"{WASM} not found; run `make wasm`")
        results_path = WORK / "results.json"
        if args.only_global_rl:
            import global_rl
            results = json.loads(results_path.read_text()) if results_path.exists() else {}
            results["global_rl"] = global_rl.measure(sys.modules[__name__], args.quick)
            if "overhead_runs" not in results:
                (WORK / "global_rl.json").write_text(json.dumps(results["global_rl"], indent=1))
                print("\n".join(global_rl.markdown(results["global_rl"])))
                say(f"no saved full run to merge into: results in {WORK / 'global_rl.json'}, page not written")
                return 0
        elif args.only_ablation:
            results = json.loads(results_path.read_text()) if results_path.exists() else {}
            results["ablation"] = measure_ablation_alone(args.quick)
            if "overhead_runs" not in results:
                (WORK / "ablation.json").write_text(json.dumps(results["ablation"], indent=1))
                say(f"no saved full run to merge into: ablation results in {WORK / 'ablation.json'}, page not written")
                return 0
        else:
            results = measure(args.quick)
        results_path.write_text(json.dumps(results, indent=1))
        say(f"raw results: {results_path}")
    micro = json.loads(args.micro_json.read_text()) if args.micro_json and args.micro_json.exists() else None
    bridge = args.bridge_md.read_text() if args.bridge_md and args.bridge_md.exists() else None

    from report import write_report  # matplotlib is imported only here
    problems = write_report(results, micro, bridge, args.bridge_status, args.doc, args.micro_problem)
    for p in problems:
        say(f"problem: {p}")
    return 1 if problems else 0


def start_pair(tag: str, config_text: str, cpu: str | None) -> tuple[dict, dict, dict, dict]:
    """Renders `config_text` and starts Envoy (b) and (c) for it. Returns the
    Envoys, their ports, and the (c) and (b) bootstraps."""
    cfg = WORK / f"{tag}.yaml"
    cfg.write_text(config_text)
    os.chmod(cfg, 0o600)  # holds the bench token
    ports = {v: free_port() for v in "bc"}
    admins = {v: free_port() for v in "bc"}
    full = render(cfg, ports["c"], admins["c"])
    if not has_wasm(full):
        raise BenchError("the rendered gateway config has no wasm filter")
    plain = strip_to_plain_envoy(render(cfg, ports["b"], admins["b"]))
    envoys = {"b": Envoy(f"envoy-plain-{tag}", plain, ports["b"], admins["b"], cpu),
              "c": Envoy(f"envoy-gateway-{tag}", full, ports["c"], admins["c"], cpu)}
    return envoys, ports, full, plain


def measure(quick: bool) -> dict:
    seconds, warm, rounds = (2, 1, 1) if quick else (5, 1, 3)
    list_seconds = 2 if quick else 5
    envoy_cpu, load_cpu = choose_cpus()
    token = secrets.token_hex(24)
    started = time.monotonic()
    results: dict = {
        "when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": quick, "seconds": seconds, "warmup_seconds": warm, "rounds": rounds,
        "list_seconds": list_seconds, "envoy_cpu": envoy_cpu, "load_cpu": load_cpu,
        "loadavg_start": loadavg(), "machine": machine(),
    }
    say(f"{'quick' if quick else 'full'} run; Envoy on CPU {envoy_cpu}, wrk + demo on CPU {load_cpu}; "
        f"load average {results['loadavg_start']}")

    demo, demo_proc = start_demo("demo", 0, load_cpu)
    envoys, ports, full, plain = start_pair(
        "gateway", gateway_yaml(demo, {}, token, WORK / "audit.log"), envoy_cpu)
    results["filters_c"] = main_filters(full)
    results["filters_b"] = main_filters(plain)
    results["envoy_argv"] = " ".join(envoys["c"].argv).replace(str(WORK), "$WORK")
    results["memory_idle"] = {v: proc_mem_kib(e.pid) for v, e in envoys.items()}

    # Each variant must really serve the call (and (c) must really be the
    # gateway: a denied call must be refused) before we time anything.
    urls = {"a": (demo, "/mcp"), "b": (ports["b"], "/mcp/demo"), "c": (ports["c"], "/mcp/demo")}
    for v, (port, path) in urls.items():
        expect_ok(port, path, TOOLS_LIST, token, f"variant ({v}) tools/list", '"echo"')
        expect_ok(port, path, TOOLS_CALL, token, f"variant ({v}) tools/call", "hello from the mcpx benchmark")
    status, body = http(ports["c"], "POST", "/mcp/demo", json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "dangerous_delete",
                                                                          "arguments": {"path": "/x"}}}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    # A denial is HTTP 200 with the JSON-RPC error -32003 (docs/policy.md).
    if b'"code":-32003' not in body.replace(b" ", b""):
        raise BenchError(f"the full gateway did not refuse a denied tool (got {status}: {body[:200]!r})")

    call_body = WORK / "tools-call.json"
    call_body.write_text(json.dumps(TOOLS_CALL, separators=(",", ":")))
    results["call_body_bytes"] = call_body.stat().st_size
    list_body = WORK / "tools-list.json"
    list_body.write_text(json.dumps(TOOLS_LIST, separators=(",", ":")))

    # Gateway overhead: rounds x connections x variants, interleaved so drift
    # in the machine's load hits every variant alike.
    runs: list[dict] = []
    for rnd in range(rounds):
        for conns in CONNECTIONS:
            for v in "abc":
                port, path = urls[v]
                url = f"http://127.0.0.1:{port}{path}"
                watch = {"demo": demo_proc.pid}
                if v in envoys:
                    envoys[v].alive_or_fail()
                    watch["envoy"] = envoys[v].pid
                r = warm_then_run(url, call_body, conns, warm, seconds, token, load_cpu, watch)
                r.update(variant=v, conns=conns, round=rnd)
                runs.append(r)
                say(f"round {rnd + 1}/{rounds} ({v}) c={conns:<3} {r['rps']:>9.0f} req/s  p50 {r['p50_us']:>6} µs  "
                    f"p99 {r['p99_us']:>6} µs  envoy {r.get('cpu_us_envoy', 0):6.1f} µs/req  errors {r['errors']}")
    results["overhead_runs"] = runs
    results["memory_loaded"] = {v: proc_mem_kib(e.pid) for v, e in envoys.items()}
    for e in envoys.values():
        PROCS.stop(e.proc)

    # tools/list inspection cost: Envoy CPU per response with and without the
    # filter, per list size. One backend and one gateway pair per size, so no
    # tool name is advertised by two servers (that would be cross-server
    # shadowing for integrity pinning, a different code path).
    list_runs = []
    for n in LIST_SIZES:
        port, proc = start_demo(f"demo-list{n}", n, load_cpu)
        envoys, ports, _, _ = start_pair(f"list{n}", gateway_yaml(None, {n: port}, token, WORK / "audit.log"),
                                         envoy_cpu)
        for v in "bc":  # also pins the baseline before the timed runs (integrity)
            expect_ok(ports[v], f"/mcp/list{n}", TOOLS_LIST, token, f"variant ({v}) tools/list {n}", f"tool_{n - 1}")
        for v in "bc":
            url = f"http://127.0.0.1:{ports[v]}/mcp/list{n}"
            envoys[v].alive_or_fail()
            # A new id per request, as clients send: every answer is a new
            # text (its tools unchanged), so no answer is served from a kept read.
            r = warm_then_run(url, list_body, 2, 1, list_seconds, token, load_cpu, {"envoy": envoys[v].pid},
                              fresh_ids=True)
            r.update(variant=v, tools=n)
            list_runs.append(r)
            say(f"tools/list n={n:<5} ({v}) {r['rps']:>8.0f} req/s  envoy {r['cpu_us_envoy']:9.1f} µs/resp  "
                f"{r['bytes'] / max(r['requests'], 1) / 1024:8.1f} KiB/resp  errors {r['errors']}")
        for e in envoys.values():
            PROCS.stop(e.proc)
        PROCS.stop(proc)
    results["list_runs"] = list_runs

    say("ablation table (Envoy CPU per request with parts of the gateway switched off)")
    results["ablation"] = measure_ablation(quick, token, demo, demo_proc, envoy_cpu, load_cpu)

    results["loadavg_end"] = loadavg()
    import global_rl
    try:
        results["global_rl"] = global_rl.measure(sys.modules[__name__], quick)
    except BenchError as e:
        # A side table: its failure (e.g. no redis-server) is reported on the page, not fatal.
        say(f"global rate-limit variant failed: {e}")
        results["global_rl"] = {"error": str(e)}
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    return results


def measure_ablation_alone(quick: bool) -> dict:
    envoy_cpu, load_cpu = choose_cpus()
    token = secrets.token_hex(24)
    started, load = time.monotonic(), loadavg()
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    demo, demo_proc = start_demo("demo", 0, load_cpu)
    call_body = WORK / "tools-call.json"
    call_body.write_text(json.dumps(TOOLS_CALL, separators=(",", ":")))
    out = measure_ablation(quick, token, demo, demo_proc, envoy_cpu, load_cpu)
    out.update(loadavg_start=load, loadavg_end=loadavg(), elapsed_s=round(time.monotonic() - started, 1),
               when=when, git=machine()["git"])
    PROCS.stop(demo_proc)
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))

    def _term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    try:
        rc = main()
    except BenchError as e:
        say(f"error: {e}")
        rc = 1
    finally:
        PROCS.stop_all()
    sys.exit(rc)
