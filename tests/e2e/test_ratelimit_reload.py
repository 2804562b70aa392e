"""Rate-limit buckets across reloads, through the real `mcpx run`: a reload
that changes only policy (a deny list) is an update of the filter alone, so
Envoy keeps the route configuration and every bucket in it; a spent bucket
stays spent (docs/operations.md#rate-limits).

Timing: the per-tool bucket holds 40 tokens refilled at 1 per second. A reset
would hand back all 40 at once; a kept bucket gives back at most one token per
second elapsed since it was spent, measured by the test, so the check holds
however slow the machine is (a reload taking longer than 35 s would make the
test inconclusive, and it says so)."""

from __future__ import annotations

import json
import os
import signal
import time

from harness import denied, jsonrpc, wait_until

BURST = 40

CONFIG = """
servers:
  - name: demo
    url: {url}
    policy:
      deny_tools: [{deny}]
inspection: {{ tool_integrity: off }}
rate_limit: {{ enabled: true, rps: 1000, burst: 1000, per_tool: true, tool_rps: 1, tool_burst: {burst} }}
"""


def call(gw, tool: str):
    return gw.post("demo", jsonrpc("tools/call", {"name": tool, "arguments": {"text": "hi"}}))


def allowed_until_429(gw, tool: str, limit: int = 500) -> int:
    for n in range(limit):
        r = call(gw, tool)
        if r.status == 429:
            return n
        assert r.status == 200, (r.status, r.text)
    raise AssertionError(f"no 429 after {limit} calls")


def stat(gw, suffix: str) -> int:
    for line in gw.admin("/stats?filter=rds").text.splitlines():
        key, _, value = line.partition(": ")
        if key.endswith(suffix):
            return int(value)
    return 0


def reload_events(gw) -> list[dict]:
    return [json.loads(l) for l in gw.process.log().splitlines() if l.startswith("{") and '"event":"reload"' in l]


def test_deny_list_reload_keeps_a_spent_bucket_spent(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url, deny="dangerous_delete", burst=BURST))
    start = time.monotonic()
    first = allowed_until_429(gw, "echo")
    spent = time.monotonic()
    # The whole bucket, plus what refilled (1/s) while it was being spent.
    assert BURST <= first <= BURST + int(spent - start) + 2, (first, spent - start)
    routes_before = stat(gw, ".rds.mcpx.update_success")
    demo.reset()

    gw.config_path.write_text(CONFIG.format(url=demo.url, deny="dangerous_delete, add", burst=BURST))
    os.kill(gw.process.proc.pid, signal.SIGHUP)
    wait_until(lambda: reload_events(gw), timeout=30, what="the reload event", proc=gw.process.proc)
    # The new deny list is in force (a denial spends no token and never reaches the backend).
    wait_until(lambda: denied(call(gw, "add")), timeout=10, what="add denied after the reload")
    assert [r for r in demo.received() if '"add"' in r.get("body", "")] == []

    after = allowed_until_429(gw, "echo")
    elapsed = time.monotonic() - spent
    assert elapsed < BURST - 5, f"inconclusive: {elapsed:.1f}s passed, the bucket could have refilled by itself"
    # A kept bucket refills one token per second; a reset one would give BURST.
    assert after <= int(elapsed) + 2, (after, elapsed)
    assert after < BURST - 5, after
    # Only the filter changed: Envoy never received a new route configuration.
    event = reload_events(gw)[0]
    assert event["result"] == "applied" and event["changed"] == ["filter"], event
    assert stat(gw, ".rds.mcpx.update_success") == routes_before
    # What did pass reached the backend; nothing over the limit did.
    assert len([r for r in demo.received() if '"echo"' in r.get("body", "")]) == after
