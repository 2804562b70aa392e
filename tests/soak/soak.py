#!/usr/bin/env python3
"""Soak with faults (issue 9): steady load through the real gateway while
backends die and the config is reloaded, with every request accounted for.

What runs (all on 127.0.0.1, all real processes):
  mcpx run (real Envoy, real wasm filter) in front of
    demo  - the HTTP demo backend (mcpx-demo) on a fixed port, so it can be
            stopped and started again on the same port;
    stdio - tests/e2e/stdio_server.py through the built-in stdio bridge.
  WORKERS threads send tools/call echo and tools/list to both servers, paced
  to RPS in total, each request with its own timeout.
  On a schedule (every INTERVAL seconds, in turn):
    stdio_kill      kill -9 of the stdio child (found in /proc by its tag)
    http_restart    the demo backend is stopped, left down for DOWNTIME s,
                    and started again on the same port
    reload_valid    a policy change (demo's deny_tools toggles `echo`) + SIGHUP
    reload_invalid  broken YAML + SIGHUP (must be rejected; the file is then
                    restored, so the running policy stays what it was)

Every response is classified (see `classify`). Failures of the soak:
  - any request that is neither a success nor a clean error ("unclean"),
    that did not finish within its timeout ("hung"), or that hit a transport
    error (Envoy itself stays up, so a reset/refused connection is not clean);
  - a reload that did not produce the expected audit event;
  - both servers not answering again after the faults stop;
  - any process of the gateway's tree (or a stdio child) alive after mcpx
    exits on SIGTERM;
  - Envoy RSS growth beyond the bound in `rss_verdict`.

Usage: soak.py [--seconds N] [--interval S] [--workers W] [--rps R] [--report docs/soak.md]
Environment (as `make e2e` sets): MCPX_BIN, MCPX_DEMO_BIN, MCPX_WASM, ENVOY_BIN.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from harness import DEMO_BIN, JSON, Gateway, Process, free_port, request, wait_until  # noqa: E402

STDIO_SERVER = str(HERE.parent / "e2e" / "stdio_server.py")

# Categories a request can end in. The first four are accounted for and fine;
# the last three fail the soak.
OK = "ok"                      # 200 + JSON-RPC result
RPC_ERROR = "jsonrpc_error"    # 200 + JSON-RPC error object
DENIED = "denied"              # a policy denial (-32003; HTTP 200 by default, 403 if configured): the policy reload in effect
HTTP_ERROR = "http_error"      # 4xx/5xx + JSON envelope with an error code
UNCLEAN = "unclean"            # anything else (non-JSON body, no error code, ...)
HUNG = "hung"                  # no complete answer within the request timeout
TRANSPORT = "transport_error"  # connection refused/reset by Envoy
CLEAN = (OK, RPC_ERROR, DENIED, HTTP_ERROR)
BAD = (UNCLEAN, HUNG, TRANSPORT)


def config_yaml(demo_port: int, tag: str, deny_echo: bool) -> str:
    deny = "[dangerous_delete, echo]" if deny_echo else "[dangerous_delete]"
    return f"""servers:
  - name: demo
    url: http://127.0.0.1:{demo_port}/mcp
    policy:
      deny_tools: {deny}
  - name: stdio
    transport: stdio
    command: {json.dumps(sys.executable)}
    args: {json.dumps([STDIO_SERVER, "--tag", tag])}
    request_timeout: 5s
    policy:
      deny_tools: [crash, spawn_grandchild]
inspection: {{ tool_integrity: off, filter_tools_list: true }}
circuit_breaker: {{ enabled: true, failure_threshold: 5, cooldown: 2s }}
"""


SLOW_MS = 300
BROKEN_YAML = "servers:\n  - name: demo\n    url: [this is: not, valid\n"


def classify(status: int, body: bytes) -> tuple[str, str]:
    """(category, detail) of one answer. Detail names the error code/status."""
    try:
        msg = json.loads(body)
    except ValueError:
        return UNCLEAN, f"HTTP {status}, non-JSON body {body[:80]!r}"
    if not isinstance(msg, dict):
        return UNCLEAN, f"HTTP {status}, JSON but not an object"
    err = msg.get("error")
    code = err.get("code") if isinstance(err, dict) else None
    if status == 200:
        if msg.get("jsonrpc") == "2.0" and "result" in msg:
            return OK, "200 result"
        if msg.get("jsonrpc") == "2.0" and code == -32003:
            # A policy denial: HTTP 200 by default (denial_http_status), 403 if configured.
            return DENIED, f"200 {code} {re.sub(r'[0-9]+', 'N', str(err.get('message')))[:60]}"
        if msg.get("jsonrpc") == "2.0" and isinstance(code, int):
            return RPC_ERROR, f"200 {code} {re.sub(r'[0-9]+', 'N', str(err.get('message')))[:60]}"
        return UNCLEAN, f"HTTP 200 without result or error: {body[:80]!r}"
    if isinstance(code, int) and isinstance(err.get("message"), str):
        # The start of the message says which failure it was (connect failure,
        # open breaker, child exit); numbers (pids, ms) are blanked so they group.
        what = re.sub(r"\d+", "N", err["message"])[:60]
        return (DENIED if status == 403 else HTTP_ERROR), f"{status} {code} {what}"
    return UNCLEAN, f"HTTP {status} without an error envelope: {body[:80]!r}"


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: int = 0
    counts: collections.Counter = field(default_factory=collections.Counter)      # (server, category)
    details: collections.Counter = field(default_factory=collections.Counter)     # (server, category, detail)
    bad_examples: list = field(default_factory=list)
    max_latency: float = 0.0

    def add(self, server: str, category: str, detail: str, latency: float) -> None:
        with self.lock:
            self.counts[(server, category)] += 1
            self.details[(server, category, detail)] += 1
            self.max_latency = max(self.max_latency, latency)
            if category in BAD and len(self.bad_examples) < 20:
                self.bad_examples.append(f"{server}: {category}: {detail}")

    def total(self) -> int:
        return sum(self.counts.values())


def one_request(port: int, server: str, msg: dict, timeout: float) -> tuple[str, str]:
    """One request on a fresh connection, bounded by `timeout` in total."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", f"/mcp/{server}", json.dumps(msg), JSON)
        r = conn.getresponse()
        body = r.read()
        if time.monotonic() - start > timeout:
            return HUNG, f"answered after {time.monotonic() - start:.1f}s"
        return classify(r.status, body)
    except TimeoutError:
        return HUNG, f"no answer within {timeout}s"
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        return TRANSPORT, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def worker(port: int, stop: threading.Event, tally: Tally, period: float, timeout: float, seed: int) -> None:
    rng = random.Random(seed)
    next_at = time.monotonic() + rng.random() * period
    n = 0
    while not stop.is_set():
        # Pacing, not waiting for a condition: keeps the load steady and the
        # shared machine usable.
        delay = next_at - time.monotonic()
        if delay > 0 and stop.wait(delay):
            break
        next_at += period
        n += 1
        server = rng.choice(("demo", "stdio"))
        roll = rng.random()
        if roll < 0.6:
            msg = {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"text": f"soak {seed}/{n}"}}}
        elif roll < 0.7:
            # Slow calls are in flight when a backend dies.
            msg = {"jsonrpc": "2.0", "id": n, "method": "tools/call",
                   "params": {"name": "slow", "arguments": {"ms": SLOW_MS}}}
        else:
            msg = {"jsonrpc": "2.0", "id": n, "method": "tools/list"}
        with tally.lock:
            tally.sent += 1
        t0 = time.monotonic()
        category, detail = one_request(port, server, msg, timeout)
        tally.add(server, category, detail, time.monotonic() - t0)


# ---- processes (/proc) -------------------------------------------------------

def proc_stat(pid: int) -> tuple[int, int, str, int] | None:
    """(ppid, pgid, comm, starttime) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2:].split()
    if rest[0] == "Z":  # a zombie is already dead; only its parent's wait is missing
        return None
    return int(rest[1]), int(rest[2]), comm, int(rest[19])


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> dict[int, tuple[str, int]]:
    """pid -> (comm, starttime) of every live descendant of `root`."""
    stats = {p: s for p in all_pids() if (s := proc_stat(p))}
    children = collections.defaultdict(list)
    for p, (ppid, _, _, _) in stats.items():
        children[ppid].append(p)
    out, todo = {}, [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out[c] = (stats[c][2], stats[c][3])
            todo.append(c)
    return out


def tagged(tag: str) -> list[int]:
    return [p for p in all_pids() if tag in cmdline(p) and proc_stat(p)]


def leftovers(seen: dict[int, tuple[str, int]], tag: str, pgid: int) -> list[str]:
    """Processes still alive from `seen` (same pid and start time, so a reused
    pid does not count), with `tag` in their command line, or in group `pgid`."""
    alive = {}
    for p, (comm, start) in seen.items():
        s = proc_stat(p)
        if s and s[3] == start:
            alive[p] = f"pid {p} ({comm})"
    for p in tagged(tag):
        alive.setdefault(p, f"pid {p} (stdio child: {cmdline(p)[:60]})")
    for p in all_pids():
        s = proc_stat(p)
        if s and s[1] == pgid:
            alive.setdefault(p, f"pid {p} ({s[2]}, in group {pgid})")
    return sorted(alive.values())


def vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# ---- the HTTP backend on a fixed port ----------------------------------------

class FixedDemo:
    def __init__(self, port: int):
        self.port = port
        self.process: Process | None = None
        self.start()

    def start(self) -> None:
        self.process = Process("soak-demo", [DEMO_BIN, "--listen", f"127.0.0.1:{self.port}", "--name", "demo"])
        wait_until(self._healthy, what="demo server health", proc=self.process.proc)

    def _healthy(self) -> bool:
        try:
            return request(self.port, "GET", "/_health", timeout=2).status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None


# ---- the soak ----------------------------------------------------------------

@dataclass
class Result:
    seconds: float
    workers: int
    rps: float
    timeout: float
    tally: Tally
    faults: list = field(default_factory=list)        # (t, kind, detail, ok)
    rss: list = field(default_factory=list)           # (t, KiB)
    failures: list = field(default_factory=list)
    leaks: list = field(default_factory=list)
    seen_processes: int = 0
    started_at: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures


def rss_verdict(samples: list[tuple[float, int]], warmup: float) -> tuple[int, int, int, int, str | None]:
    """(first, baseline, last, max) in KiB and a failure or None.

    Baseline is the first sample after `warmup` seconds of load: Envoy's
    allocator, connection pools and the wasm VMs of each worker are sized by
    then. The bound: the last sample may exceed the baseline by 32 MiB or
    25 %, whichever is larger. It is generous on purpose: fresh wasm VMs after
    filter reloads, allocator caches and per-cluster stats legitimately add a
    few MiB, and a flaky soak is worse than none. What it still catches at the
    default 3 minutes (about 10,800 requests, 6 reloads of each kind, 6 child
    restarts): a leak of about 3 KiB per request (a request or response body
    kept), or about 6 MiB per reload or per restart (a VM or a cluster kept).
    Longer runs (SOAK_SECONDS) catch smaller leaks; the report also prints the
    growth per 1000 requests, so a slow trend is visible before it fails."""
    if not samples:
        return 0, 0, 0, 0, "no RSS samples of Envoy"
    first = samples[0][1]
    base = next((kib for t, kib in samples if t >= warmup), samples[-1][1])
    last = samples[-1][1]
    peak = max(kib for _, kib in samples)
    bound = base + max(32 * 1024, base // 4)
    err = None if last <= bound else f"Envoy RSS grew from {base} KiB to {last} KiB (bound {bound} KiB)"
    return first, base, last, peak, err


def run_soak(seconds: float = 180, interval: float = 7.5, workers: int = 6, rps: float = 60,
             timeout: float = 10, downtime: float = 1.0, log=print) -> Result:
    tag = f"soak-{os.getpid()}-{time.monotonic_ns()}"
    res = Result(seconds, workers, rps, timeout, Tally(),
                 started_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"))
    demo = FixedDemo(free_port())
    gw = None
    try:
        gw = Gateway(config_yaml(demo.port, tag, deny_echo=False), concurrency=2)
        mcpx_pid = gw.process.proc.pid
        seen: dict[int, tuple[str, int]] = {}

        def envoy_pid() -> int | None:
            d = descendants(mcpx_pid)
            seen.update(d)
            return next((p for p, (comm, _) in d.items() if comm == "envoy"), None)

        epid = envoy_pid()
        if epid is None:
            raise RuntimeError("no envoy process under mcpx")
        # Both backends answer before the clock starts.
        for server in ("demo", "stdio"):
            wait_until(lambda s=server: one_request(gw.port, s, {"jsonrpc": "2.0", "id": 0, "method": "tools/list"},
                                                    timeout)[0] == OK, what=f"{server} through the gateway")

        stop = threading.Event()
        period = workers / rps
        threads = [threading.Thread(target=worker, args=(gw.port, stop, res.tally, period, timeout, i), daemon=True)
                   for i in range(workers)]
        t0 = time.monotonic()
        for t in threads:
            t.start()

        reloads_seen = 0
        deny_echo = False

        def reload_events() -> list[dict]:
            out = []
            for line in gw.process.log().splitlines():
                if '"event":"reload"' in line:
                    try:
                        out.append(json.loads(line[line.index("{"):]))
                    except ValueError:
                        pass
            return out

        def fault(kind: str) -> tuple[str, bool]:
            nonlocal reloads_seen, deny_echo
            if kind == "stdio_kill":
                pids = [p for p in tagged(tag) if p in descendants(mcpx_pid)]
                if not pids:
                    return "no stdio child running (not started again yet)", True
                for p in pids:
                    os.kill(p, signal.SIGKILL)
                return f"SIGKILL pid {','.join(map(str, pids))}", True
            if kind == "http_restart":
                demo.stop()
                down = time.monotonic()
                # The outage length is the fault itself, not a wait for a condition.
                stop.wait(downtime)
                demo.start()
                return f"down {time.monotonic() - down:.1f}s on port {demo.port}", True
            if kind in ("reload_valid", "reload_invalid"):
                if kind == "reload_valid":
                    deny_echo = not deny_echo
                    gw.config_path.write_text(config_yaml(demo.port, tag, deny_echo))
                    want = "applied"
                else:
                    gw.config_path.write_text(BROKEN_YAML)
                    want = "rejected"
                os.kill(mcpx_pid, signal.SIGHUP)
                try:
                    events = wait_until(lambda: (e := reload_events()) and len(e) > reloads_seen and e,
                                        timeout=20, what="reload event")
                except TimeoutError:
                    return "no reload event within 20 s", False
                ev = events[reloads_seen]
                reloads_seen = len(events)
                if kind == "reload_invalid":
                    # Restore the running config on disk, so the next change is a
                    # real change from it (no SIGHUP: nothing to apply).
                    gw.config_path.write_text(config_yaml(demo.port, tag, deny_echo))
                what = f"deny echo on demo: {deny_echo}" if kind == "reload_valid" else "broken YAML"
                return f"{what}; result {ev.get('result')}", ev.get("result") == want
            raise ValueError(kind)

        kinds = ["stdio_kill", "http_restart", "reload_valid", "reload_invalid"]
        next_fault, i, next_rss = interval, 0, 0.0
        while True:
            now = time.monotonic() - t0
            if now >= seconds:
                break
            if now >= next_rss:
                epid = envoy_pid() or epid
                kib = vm_rss_kib(epid)
                if kib is not None:
                    res.rss.append((round(now, 1), kib))
                next_rss = now + 1.0
            if now >= next_fault:
                kind = kinds[i % len(kinds)]
                try:
                    detail, ok = fault(kind)
                except Exception as e:  # a fault that cannot be injected fails the soak, with a report
                    detail, ok = f"{type(e).__name__}: {e}", False
                res.faults.append((round(now, 1), kind, detail, ok))
                log(f"[{now:6.1f}s] {kind}: {detail}{'' if ok else '  <-- FAILED'}")
                if not ok:
                    res.failures.append(f"fault {kind} at {now:.1f}s: {detail}")
                i += 1
                next_fault += interval
            stop.wait(min(0.2, max(0.0, next_fault - now), max(0.0, next_rss - now)) or 0.01)
        stop.set()
        for t in threads:
            t.join(timeout + 5)
            if t.is_alive():
                res.failures.append("a load worker did not finish within its request timeout")
        kib = vm_rss_kib(epid)
        if kib is not None:
            res.rss.append((round(time.monotonic() - t0, 1), kib))

        # Recovery: after the last fault both servers serve again.
        for server in ("demo", "stdio"):
            try:
                wait_until(lambda s=server: one_request(gw.port, s, {"jsonrpc": "2.0", "id": 0,
                                                                      "method": "tools/list"}, timeout)[0] == OK,
                           timeout=30, what=f"{server} recovers")
            except TimeoutError as e:
                res.failures.append(str(e))

        envoy_pid()
        res.seen_processes = len(seen)
        # Shutdown: SIGTERM to mcpx only (not its group), so a child it fails
        # to stop is still there to be found.
        gw.process.proc.send_signal(signal.SIGTERM)
        try:
            gw.process.proc.wait(30)
        except Exception:
            res.failures.append("mcpx did not exit within 30 s of SIGTERM")
        alive = leftovers(seen, tag, mcpx_pid)
        res.leaks = alive
        if alive:
            res.failures.append(f"processes left after mcpx exited: {', '.join(alive)}")

        t = res.tally
        if t.total() != t.sent:
            res.failures.append(f"{t.sent} requests sent but {t.total()} accounted for")
        for (server, category), n in sorted(t.counts.items()):
            if category in BAD:
                res.failures.append(f"{n} {category} requests to {server}")
        if not t.counts.get(("demo", OK)) or not t.counts.get(("stdio", OK)):
            res.failures.append("a server never answered successfully under load")
        _, _, _, _, rss_err = rss_verdict(res.rss, warmup=min(20.0, seconds / 3))
        if rss_err:
            res.failures.append(rss_err)
        if "panicked" in gw.process.log():
            res.failures.append("a panic in the gateway log (filter or mcpx)")
        return res
    finally:
        if gw is not None:
            gw.stop()  # kills the group if anything is left; a no-op when mcpx has exited
        demo.stop()
        for p in tagged(tag):  # never leave a stdio child behind, even on failure
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def report_markdown(res: Result) -> str:
    t = res.tally
    cats = [OK, RPC_ERROR, DENIED, HTTP_ERROR, UNCLEAN, HUNG, TRANSPORT]
    lines = [
        "# Soak with faults",
        "",
        "Generated by `make soak` (tests/soak/soak.py); do not edit by hand, run it again. "
        "`SOAK_SECONDS=N make soak` changes the duration (default 180 s); faults come every "
        "SOAK_SECONDS/24 s (at least 3 s), in turn: kill -9 of the stdio child, HTTP backend stopped for 1 s "
        "and started again on the same port, a valid policy reload (SIGHUP), an invalid one (broken YAML, "
        "SIGHUP). A 15 s variant with each fault once is an e2e test (tests/e2e/test_soak_smoke.py), so "
        "`make test` checks the accounting. The run fails on any request that is not a success or a clean "
        "error, any hang, a reload with the wrong outcome, a process left after mcpx exits, or RSS growth "
        "beyond the bound below.",
        "",
        f"- Started: {res.started_at}; ran {res.seconds:g} s of load: {res.workers} workers, "
        f"{res.rps:g} requests/s in total, {res.timeout:g} s timeout per request.",
        "- Gateway: the real `mcpx run` (Envoy, wasm filter, built-in stdio bridge) in front of `mcpx-demo` "
        "(HTTP, server `demo`) and `tests/e2e/stdio_server.py` (stdio, server `stdio`).",
        f"- Requests: 60 % `tools/call echo`, 10 % `tools/call slow` ({SLOW_MS} ms, so some are in flight when a "
        "backend dies), 30 % `tools/list`; each on a fresh connection, servers picked at random.",
        f"- **Verdict: {'PASS' if res.ok else 'FAIL'}** — {t.sent} sent, {t.total()} accounted for, "
        f"{t.sent - t.total()} unaccounted; slowest answer {t.max_latency:.2f} s.",
        "",
        "## Requests",
        "",
        "| server | " + " | ".join(cats) + " | total |",
        "|---|" + "---:|" * (len(cats) + 1),
    ]
    for server in ("demo", "stdio"):
        row = [t.counts.get((server, c), 0) for c in cats]
        lines.append(f"| {server} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    row = [sum(t.counts.get((s, c), 0) for s in ("demo", "stdio")) for c in cats]
    lines.append("| **all** | " + " | ".join(f"**{n}**" for n in row) + f" | **{sum(row)}** |")
    lines += [
        "",
        "Categories: `ok` = 200 with a JSON-RPC result; `jsonrpc_error` = 200 with a JSON-RPC error; "
        "`denied` = the policy reload denying `echo` on `demo` (code -32003; HTTP 200 by default); "
        "`http_error` = another HTTP error with the JSON error envelope (code below). "
        "`unclean` (no envelope), `hung` (no answer within the timeout) and `transport_error` "
        "(connection reset/refused) fail the soak.",
        "",
        "| server | category | status, code, message | count |",
        "|---|---|---|---:|",
    ]
    for (server, category, detail), n in sorted(t.details.items()):
        if category != OK:
            cell = detail.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {server} | {category} | {cell} | {n} |")
    lines += ["", "## Faults injected", "", "| t (s) | fault | detail | as expected |", "|---:|---|---|---|"]
    for at, kind, detail, ok in res.faults:
        lines.append(f"| {at} | {kind} | {detail} | {'yes' if ok else '**no**'} |")
    first, base, last, peak, rss_err = rss_verdict(res.rss, warmup=min(20.0, res.seconds / 3))
    mib = lambda k: f"{k / 1024:.1f} MiB"  # noqa: E731
    lines += [
        "",
        "## Envoy memory (VmRSS, sampled every second)",
        "",
        "| first | baseline (after warm-up) | last | max | samples |",
        "|---:|---:|---:|---:|---:|",
        f"| {mib(first)} | {mib(base)} | {mib(last)} | {mib(peak)} | {len(res.rss)} |",
        "",
        f"Growth from the baseline: {(last - base) / 1024:+.1f} MiB, "
        f"{(last - base) * 1024 / max(1, t.total()) * 1000 / 1024:+.1f} KiB per 1000 requests.",
        "",
        "Bound: last ≤ baseline + max(32 MiB, 25 %); at the default duration that catches a leak of about "
        "3 KiB per request or 6 MiB per reload or child restart (see `rss_verdict` in tests/soak/soak.py). "
        + ("Within it." if not rss_err else f"**{rss_err}**"),
        "",
        "## Processes",
        "",
        f"{res.seen_processes} processes were seen under `mcpx run` during the soak (Envoy, stdio children "
        "and their restarts). After SIGTERM to mcpx: "
        + ("none left." if not res.leaks else "**left: " + ", ".join(res.leaks) + "**"),
        "",
    ]
    if res.failures:
        lines += ["## Failures", ""] + [f"- {f}" for f in res.failures]
        if t.bad_examples:
            lines += ["", "Examples:", ""] + [f"- `{e}`" for e in t.bad_examples]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 180)))
    ap.add_argument("--interval", type=float, default=None, help="seconds between faults (default: seconds/24, "
                    "at least 3)")
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--rps", type=float, default=60)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--report", default=None, help="write the markdown report here")
    a = ap.parse_args()
    interval = a.interval or max(3.0, a.seconds / 24)
    res = run_soak(a.seconds, interval, a.workers, a.rps, a.timeout)
    md = report_markdown(res)
    if a.report:
        Path(a.report).write_text(md)
        print(f"report written to {a.report}")
    print(md)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
