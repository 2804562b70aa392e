#!/usr/bin/env python3
"""Benchmark (not a test): calls/s through the stdio bridge vs the same child
driven directly over its pipes, at several numbers of concurrent callers.

    python tests/bench/bridge_bench.py [--mcpx target/release/mcpx] [--seconds 5] [--repeat 3]
                                       [--callers 1,8,64] [--server test|sdk] [--driver rust|python] [--json]

Each caller sends `tools/call echo` and waits for its answer before sending the
next. "direct": one driver owns the child's stdin/stdout and matches answers by
id. "bridge": `mcpx bridge` runs the same child; every caller has its own
keep-alive HTTP/1.1 connection. The ratio bridge/direct is what the bridge
costs (target >= 0.9); "bridge CPU us/call" is the bridge process's own CPU.

The default driver is the Rust load generator stdio-bridge/examples/bridge_bench.rs
(built here with cargo if missing), whose own cost is small next to the child's.
`--driver python` uses the asyncio drivers below instead; on a small machine the
Python client's HTTP handling then competes with the child for CPU and the
bridge numbers come out lower than the bridge itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVERS = {
    "test": [str(ROOT / "tests/e2e/stdio_server.py")],
    "sdk": [str(ROOT / "tests/e2e/sdk_stdio_server.py")],
}
INIT = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}


def tool_call(server: str, i: int) -> dict:
    if server == "sdk":
        params = {"name": "shout", "arguments": {"text": f"hello {i}"}}
    else:
        params = {"name": "echo", "arguments": {"text": f"hello {i}"}}
    return {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params}


async def direct(server: str, callers: int, seconds: float) -> float:
    proc = await asyncio.create_subprocess_exec(sys.executable, *SERVERS[server], stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                                limit=64 * 1024 * 1024)
    waiting: dict[int, asyncio.Future] = {}

    async def reader():
        while line := await proc.stdout.readline():
            msg = json.loads(line)
            fut = waiting.pop(msg.get("id"), None)
            if fut and not fut.done():
                fut.set_result(msg)

    read_task = asyncio.create_task(reader())
    next_id = 0

    async def call(msg: dict) -> dict:
        nonlocal next_id
        next_id += 1
        msg = {**msg, "id": next_id}
        fut = asyncio.get_running_loop().create_future()
        waiting[next_id] = fut
        proc.stdin.write(json.dumps(msg).encode() + b"\n")
        return await fut

    await call({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": INIT})
    proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    rate, _ = await drive(lambda i: call(tool_call(server, i)), callers, seconds)
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), 5)
    except asyncio.TimeoutError:
        proc.kill()
    read_task.cancel()
    return rate


class HttpConn:
    """One keep-alive HTTP/1.1 connection; just enough parsing for the bridge's answers."""

    def __init__(self, port: int):
        self.port = port

    async def open(self):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port, limit=64 * 1024 * 1024)
        return self

    async def post(self, path: str, body: bytes, headers: str = "") -> tuple[int, bytes]:
        self.w.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n{headers}\r\n".encode() + body)
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"(?i)content-length: *(\d+)", head)
        data = await self.r.readexactly(int(m.group(1))) if m else b""
        return status, data

    def close(self):
        self.w.close()


async def via_bridge(mcpx: str, server: str, callers: int, seconds: float) -> float:
    d = Path(tempfile.mkdtemp(prefix="mcpx-bench-"))
    cfg = d / "mcpx.yaml"
    cfg.write_text(f"servers:\n  - name: b\n    transport: stdio\n    command: {json.dumps(sys.executable)}\n"
                   f"    args: {json.dumps(SERVERS[server])}\n")
    log = open(d / "bridge.log", "wb")
    proc = subprocess.Popen([mcpx, "bridge", "-c", str(cfg), "--listen", "127.0.0.1:0"], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", (d / "bridge.log").read_text())
            port = int(m.group(1)) if m else None
            await asyncio.sleep(0.02)
        if port is None:
            raise RuntimeError("the bridge did not start: " + (d / "bridge.log").read_text())
        first = await HttpConn(port).open()
        status, _ = await first.post("/mcp/b", json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                                           "params": INIT}).encode())
        assert status == 200, status
        first.close()
        conns = [await HttpConn(port).open() for _ in range(callers)]

        async def call(i: int):
            # Caller k numbers its calls from k * 10_000_000: that picks its connection.
            status, body = await conns[i // 10_000_000].post("/mcp/b", json.dumps(tool_call(server, i)).encode())
            # Parse the answer like a client must (the direct driver does too).
            if status != 200 or json.loads(body)["id"] != i:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")

        cpu_before = cpu_seconds(proc.pid)
        rate, calls = await drive(call, callers, seconds)
        cpu = cpu_seconds(proc.pid) - cpu_before
        for c in conns:
            c.close()
        return rate, (cpu / calls * 1e6 if calls else 0.0)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (the bridge itself, not its child)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(call, callers: int, seconds: float) -> tuple[float, int]:
    """`callers` loops calling back to back for `seconds` (after a 0.5 s warm-up).
    Returns (calls/s, calls counted)."""
    done = 0
    stop_at = time.monotonic() + seconds + 0.5
    counting = False

    async def loop(k: int):
        nonlocal done
        i = k * 10_000_000
        while True:
            i += 1
            await call(i)
            if time.monotonic() >= stop_at:
                return
            if counting:
                done += 1

    tasks = [asyncio.create_task(loop(k)) for k in range(callers)]
    await asyncio.sleep(0.5)
    counting = True
    start = time.monotonic()
    await asyncio.gather(*tasks)
    return done / (time.monotonic() - start), done


RUST_DRIVER = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target") / "release/examples/bridge_bench"


def rust_driver() -> str:
    if not RUST_DRIVER.exists():
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "mcpx", "--example", "bridge_bench"],
                       cwd=ROOT, check=True)
    return str(RUST_DRIVER)


def rust_point(mode: str, mcpx: str, server: str, callers: int, seconds: float):
    if server != "test":
        raise SystemExit("--driver rust drives the echo tool of the test server only; use --driver python")
    cmd = [rust_driver(), mode, str(callers), str(seconds), *([mcpx] if mode == "bridge" else []), "--",
           sys.executable, *SERVERS[server]]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    return out["calls_per_s"] if mode == "direct" else (out["calls_per_s"], out["bridge_cpu_us_per_call"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mcpx", default=os.environ.get("MCPX_BIN", str(ROOT / "target/release/mcpx")))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--callers", default="1,8,64")
    ap.add_argument("--server", choices=sorted(SERVERS), default="test")
    ap.add_argument("--driver", choices=["rust", "python"], default="rust")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per point, alternating direct and bridge; the best of each is kept (noisy neighbours)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = ap.parse_args()
    rows = []
    for n in [int(x) for x in a.callers.split(",")]:
        ds, bs = [], []
        for _ in range(a.repeat):
            if a.driver == "rust":
                ds.append(rust_point("direct", a.mcpx, a.server, n, a.seconds))
                bs.append(rust_point("bridge", a.mcpx, a.server, n, a.seconds))
            else:
                ds.append(asyncio.run(direct(a.server, n, a.seconds)))
                bs.append(asyncio.run(via_bridge(a.mcpx, a.server, n, a.seconds)))
        d = max(ds)
        b, cpu_us = max(bs)
        rows.append({"callers": n, "direct_calls_per_s": round(d, 1), "bridge_calls_per_s": round(b, 1),
                     "ratio": round(b / d, 3) if d else None, "bridge_cpu_us_per_call": round(cpu_us, 1)})
    if a.json:
        print(json.dumps({"benchmark": "stdio-bridge", "server": a.server, "seconds": a.seconds, "repeat": a.repeat, "driver": a.driver,
                          "loadavg": os.getloadavg()[0], "rows": rows}))
        return
    print(f"stdio bridge vs direct pipes ({a.server} server, {a.driver} driver, best of {a.repeat} x {a.seconds:g}s per point, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    print(f"{'callers':>8} {'direct calls/s':>15} {'bridge calls/s':>15} {'ratio':>7} {'bridge CPU us/call':>19}")
    for r in rows:
        print(f"{r['callers']:>8} {r['direct_calls_per_s']:>15.1f} {r['bridge_calls_per_s']:>15.1f} {r['ratio']:>7.3f}"
              f" {r['bridge_cpu_us_per_call']:>19.1f}")


if __name__ == "__main__":
    main()
