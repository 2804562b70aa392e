"""Bench variant: the cost per request of `rate_limit.backend: global` (one gRPC
`ShouldRateLimit` call to `mcpx ratelimit`, counters in Redis) next to local
buckets. Two Envoys from the same full-gateway config, differing only in
`rate_limit.backend`, hit in interleaved rounds with the same tools/call; the
budgets are far above what the runs reach, so every call is served.

Run alone: `python tests/bench/bench.py --only-global-rl` (with the variables
`make bench` sets); `make bench` runs it as part of the full run. `b` is the
bench module (bench.py), whose helpers this uses.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import time

ROOT_REDIS = "scripts/redis.sh"


def redis_bin(b) -> str:
    found = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
    if found:
        return found
    r = subprocess.run([str(b.ROOT / ROOT_REDIS)], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        raise b.BenchError(f"redis-server not found (scripts/redis.sh: {r.stderr.strip()[-300:]})")
    return r.stdout.strip()


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def measure(b, quick: bool) -> dict:
    seconds, warm, rounds = (2, 1, 1) if quick else (3, 1, 3)
    conns = 16
    envoy_cpu, load_cpu = b.choose_cpus()
    token = b.secrets.token_hex(24)
    started, load = time.monotonic(), b.loadavg()
    demo, demo_proc = b.start_demo("demo-global-rl", 0, load_cpu)
    rport, svc_port = b.free_port(), b.free_port()
    redis, rlog = b.PROCS.start("redis-global-rl", b.pin(load_cpu) + [
        redis_bin(b), "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    b.wait_until(lambda: _ping(rport), 30, "redis to answer PING", redis, rlog)

    base = b.gateway_yaml(demo, {}, token, b.WORK / "audit-global-rl.log", frozenset({"audit"}))
    local_cfg = b.WORK / "global-rl-local.yaml"
    global_cfg = b.WORK / "global-rl-global.yaml"
    local_cfg.write_text(base)
    if "rate_limit: { enabled: true," not in base:
        raise b.BenchError("the gateway config has no rate_limit line to switch to backend: global")
    global_cfg.write_text(base.replace(
        "rate_limit: { enabled: true,",
        f"rate_limit: {{ enabled: true, backend: global, service: \"127.0.0.1:{svc_port}\", failure_mode: deny,", 1))
    for c in (local_cfg, global_cfg):
        os.chmod(c, 0o600)  # holds the bench token
    # The service counts on the load CPU, with wrk and the demo: the Envoy CPU
    # column is the gateway's own cost; the service's is reported beside it.
    svc, slog = b.PROCS.start("ratelimit-global-rl", b.pin(load_cpu) + [
        b.MCPX_BIN, "ratelimit", "-c", str(global_cfg), "--listen", f"127.0.0.1:{svc_port}",
        "--redis", f"redis://127.0.0.1:{rport}"])
    b.wait_until(lambda: "serving domain" in slog.read_text(errors="replace"), 30, "mcpx ratelimit ready", svc, slog)

    envoys = {}
    for key, cfg in (("local", local_cfg), ("global", global_cfg)):
        port, admin = b.free_port(), b.free_port()
        envoys[key] = b.Envoy(f"envoy-rl-{key}", b.render(cfg, port, admin), port, admin, envoy_cpu)
        b.expect_ok(port, "/mcp/demo", b.TOOLS_CALL, token, f"rate limit {key}: tools/call",
                    "hello from the mcpx benchmark")
    # The global variant must really ask the service: its Envoy counts the calls.
    stats = b.http(envoys["global"].admin, "GET", "/stats?filter=^cluster.mcpx_ratelimit.upstream_rq_total")[1].decode()
    if not b.re.search(r"upstream_rq_total: [1-9]", stats):
        raise b.BenchError(f"the global variant's Envoy never asked the rate-limit service: {stats[:300]}")

    call_body = b.WORK / "tools-call.json"
    call_body.write_text(b.json.dumps(b.TOOLS_CALL, separators=(",", ":")))
    runs = []
    for rnd in range(rounds):
        for key, envoy in envoys.items():
            url = f"http://127.0.0.1:{envoy.port}/mcp/demo"
            r = b.warm_then_run(url, call_body, conns, warm, seconds, token, load_cpu,
                                {"envoy": envoy.pid, "service": svc.pid, "redis": redis.pid}, envoy.alive_or_fail)
            r.update(variant=key, round=rnd, conns=conns)
            runs.append(r)
            b.say(f"rate limit round {rnd + 1}/{rounds} {key:<6} {r['rps']:>8.0f} req/s  "
                  f"envoy {r['cpu_us_envoy']:6.1f} µs/req  service {r['cpu_us_service']:6.1f}  "
                  f"redis {r['cpu_us_redis']:6.1f}  errors {r['errors']}")
    for e in envoys.values():
        b.PROCS.stop(e.proc)
    for p in (svc, redis, demo_proc):
        b.PROCS.stop(p)
    return {"runs": runs, "seconds": seconds, "rounds": rounds, "conns": conns, "loadavg_start": load,
            "loadavg_end": b.loadavg(), "elapsed_s": round(time.monotonic() - started, 1)}


def summary(res: dict) -> dict[str, dict[str, float]]:
    """Medians per variant: req/s, p50 and p99 latency (µs), CPU µs per request."""
    out = {}
    for key in ("local", "global"):
        rs = [r for r in res["runs"] if r["variant"] == key]
        if not rs:
            continue
        med = lambda k: statistics.median(r.get(k, 0.0) for r in rs)  # noqa: E731
        out[key] = {"rps": med("rps"), "p50": med("p50_us"), "p99": med("p99_us"),
                    "envoy": med("cpu_us_envoy"), "service": med("cpu_us_service"), "redis": med("cpu_us_redis")}
    return out


def markdown(res: dict) -> list[str]:
    """The section for docs/performance.md."""
    if "error" in res:
        return ["## Global rate limits: cost per request", "", f"Not measured in this run: {res['error']}", ""]
    s = summary(res)
    L = ["## Global rate limits: cost per request", "",
         f"The full gateway with `rate_limit.backend: local` and with `backend: global` (`mcpx ratelimit`, "
         f"counters in Redis on loopback), {res['conns']} connections, {res['seconds']} s runs, "
         f"{res['rounds']} interleaved round(s), medians. Global limits add one gRPC round trip to the service "
         f"per request; the service and Redis run on the load CPU, so their CPU is shown apart.", "",
         "| backend | req/s | p50 | p99 | Envoy CPU µs/req | service CPU µs/req | Redis CPU µs/req |",
         "|---|---|---|---|---|---|---|"]
    for key, v in s.items():
        L.append(f"| `{key}` | {v['rps']:.0f} | {v['p50'] / 1000:.2f} ms | {v['p99'] / 1000:.2f} ms | "
                 f"{v['envoy']:.1f} | {v['service']:.1f} | {v['redis']:.1f} |")
    L.append("")
    return L
