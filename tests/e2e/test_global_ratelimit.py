"""Global rate limits (`rate_limit.backend: global`) through two real gateways,
one real `mcpx ratelimit` and one real Redis (docs/operations.md#global-rate-limits).

- A budget of N calls is N in total across both gateways, not N per gateway:
  counted by what arrived at the backend.
- With Redis stopped, `failure_mode: deny` refuses with a 503 envelope and
  nothing reaches the backend; `allow` lets calls through uncounted. Both
  recover when Redis comes back.

Timing: the global bucket is `rps: 1, burst: N`, which a shared service
counts as a window of N seconds admitting N calls. The test sends its 2N
calls back to back and checks they all went out within that window (on a
machine so slow they did not, the count would be inconclusive, and the test
says so rather than passing).
"""

from __future__ import annotations

import os
import shutil
import socket
import time

import pytest

from harness import MCPX_BIN, Process, free_port, jsonrpc, wait_until

N = 10
RATE_LIMITED = -32029
UNAVAILABLE = -32050

CONFIG = """
servers:
  - name: demo
    url: {url}
inspection: {{ tool_integrity: off }}
rate_limit: {{ enabled: true, rps: 1, burst: {burst}, backend: global, service: "127.0.0.1:{rl_port}", failure_mode: {mode} }}
"""


def redis_bin() -> str:
    b = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
    if not b:
        # Not a skip: `make e2e` installs it (scripts/redis.sh).
        pytest.fail("redis-server not found: run scripts/redis.sh (make e2e does) or set REDIS_SERVER_BIN")
    return b


class Redis:
    """A throwaway redis-server on a fixed port (restartable on the same one)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.start()

    def start(self):
        self.process = Process("redis", [redis_bin(), "--port", str(self.port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no"])
        wait_until(self.ping, what="redis ping", proc=self.process.proc)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self):
        self.process.stop()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


class RateLimitService:
    """`mcpx ratelimit` with the gateways' own config file."""

    def __init__(self, config_path, port: int, redis: Redis):
        self.process = Process("ratelimit", [MCPX_BIN, "ratelimit", "-c", str(config_path),
                                             "--listen", f"127.0.0.1:{port}", "--redis", redis.url])
        wait_until(lambda: "serving domain" in self.process.log(), what="mcpx ratelimit ready",
                   proc=self.process.proc)

    def stop(self):
        self.process.stop()


@pytest.fixture
def redis():
    r = Redis()
    yield r
    r.stop()


@pytest.fixture
def scaled(demo, redis, gateway_factory, tmp_path):
    """Returns start(mode, burst, gateways) -> [Gateway, ...] sharing one
    `mcpx ratelimit` (same config file) and one Redis."""
    services = []

    def start(mode: str, burst: int, gateways: int = 2):
        rl_port = free_port()
        config = CONFIG.format(url=demo.url, burst=burst, rl_port=rl_port, mode=mode)
        path = tmp_path / "mcpx.yaml"
        path.write_text(config)
        svc = RateLimitService(path, rl_port, redis)
        services.append(svc)
        return [gateway_factory(config) for _ in range(gateways)]

    yield start
    for s in services:
        s.stop()


def call(gw, i: int):
    return gw.post("demo", jsonrpc("tools/call", {"name": "echo", "arguments": {"text": f"c{i}"}}, id=i))


def test_budget_is_shared_by_both_gateways(demo, scaled):
    gws = scaled("deny", N)
    demo.reset()
    statuses = []
    limited = None
    start = time.monotonic()
    for i in range(2 * N):
        r = call(gws[i % 2], i)
        statuses.append(r.status)
        if r.status == 429:
            limited = (i, r)
    elapsed = time.monotonic() - start
    assert elapsed < N, f"inconclusive: {2 * N} calls took {elapsed:.1f}s, longer than the {N}s window"
    arrived = demo.count()
    # N in total, not N per gateway (2N with per-gateway limits).
    assert arrived == N, (arrived, statuses)
    assert statuses.count(200) == N and statuses.count(429) == N, statuses
    # Both gateways were refused once the shared budget was spent.
    assert {i % 2 for i, s in enumerate(statuses) if s == 429} == {0, 1}, statuses
    i, r = limited
    body = r.json()
    assert body["error"]["code"] == RATE_LIMITED and body["id"] == i, body
    assert r.header("content-type") == "application/json"
    retry = int(r.header("retry-after"))
    assert 1 <= retry <= N, r.headers


def test_deny_refuses_while_redis_is_down_and_recovers(demo, redis, scaled):
    gws = scaled("deny", 1000)
    assert call(gws[0], 1).status == 200
    redis.stop()
    before = demo.count()
    for i, gw in enumerate(gws):
        r = call(gw, 100 + i)
        assert r.status == 503, (r.status, r.text)
        body = r.json()
        assert body["error"]["code"] == UNAVAILABLE and body["id"] == 100 + i, body
        assert "failure_mode is deny" in body["error"]["message"], body
        assert r.header("retry-after") == "1"
    # Refused at the gateway: nothing arrived.
    assert demo.count() == before
    redis.start()
    wait_until(lambda: call(gws[0], 200).status == 200, what="calls pass again once Redis is back")
    assert call(gws[1], 201).status == 200


def test_allow_passes_while_redis_is_down_and_limits_again_after(demo, redis, scaled):
    (gw,) = scaled("allow", 3, gateways=1)
    redis.stop()
    before = demo.count()
    for i in range(5):
        r = call(gw, i)
        assert r.status == 200, (r.status, r.text)
    # Uncounted, but not unchecked: every call went through the filter to the backend.
    assert demo.count() == before + 5
    redis.start()
    wait_until(lambda: call(gw, 50).status == 429, what="the limit holds again once Redis is back")
