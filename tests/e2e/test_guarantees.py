"""Documented guarantees that had no test of their own (issue: "tests and
docs that prove what they claim"), each through the real Envoy + wasm +
`mcpx run`, each proven at the backend where a request is refused:

- docs/auth.md: the verified-token cache is emptied when the key set changes;
- docs/security-model.md: tokens never appear in logs or audit lines;
- docs/operations.md: requests the gateway refuses spend nothing of the
  global rate-limit budget; at most 256 learned tool names per server; the
  audit line's `integrity` field;
- docs/reload-and-health.md: anonymous `/health` is 503 when every backend is
  down, and tells nothing else;
- docs/security-model.md: rendered Envoy files are owner-only;
- docs/bridge.md: a stdio server's `request_timeout` answers 504 in the
  envelope through the gateway, with the request's id; concurrent first
  requests share one child start; shutdown lets in-flight requests finish.
"""

from __future__ import annotations

import json
import re
import signal
import stat
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import DemoServer, denied, free_port, jsonrpc, wait_until
from test_bridge import bridges, stdio_server  # noqa: F401 (fixture)
from test_auth import KEY_A, KEY_B, OAUTH_CONFIG, bearer, call, jwks_server, wait_for_keys  # noqa: F401 (fixture)

HERE = Path(__file__).resolve().parent


def audit_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def test_token_cache_is_emptied_when_the_key_set_changes(demo, gateway_factory, jwks_server):
    jwks = jwks_server()
    jwks.keys = [KEY_A.jwk()]
    gw = gateway_factory(OAUTH_CONFIG.format(url=demo.url, resource="https://gw.test/mcp", jwks=jwks.uri,
                                             issuer="https://issuer.test"))
    old = KEY_A.mint()
    assert wait_for_keys(gw, old).status == 200  # verified once, now cached
    for _ in range(4):
        assert call(gw, old).status == 200
    # The authorization server retires key A. A token with the new kid makes
    # the gateway fetch the new key set...
    jwks.keys = [KEY_B.jwk()]
    new = KEY_B.mint()
    wait_until(lambda: call(gw, new).status == 200, timeout=30, what="the new key set is loaded")
    # ...and the token verified with the retired key is not served from the
    # cache any more, on any worker (each worker's VM loads the new key set
    # on its own tick, so wait until 32 calls in a row, each on a fresh
    # connection, are refused: with 8, all of them landed on the worker that
    # had the new keys often enough to make this flaky under load, while the
    # other worker's tick was still to come), and never reaches the backend
    # again.
    wait_until(lambda: all(call(gw, old).status == 401 for _ in range(32)), timeout=30,
               what="the cached token refused by every worker")
    demo.reset()
    for _ in range(8):
        assert call(gw, old).status == 401
    assert demo.count() == 0, "a token signed with a retired key reached the backend"


BEARER = """
servers:
  - name: demo
    url: {url}
    policy: {{ deny_tools: [dangerous_delete] }}
auth:
  enabled: true
  type: bearer
  token: "${{MCPX_G_TOKEN}}"
  clients:
    - {{ name: bot, token: "${{MCPX_G_BOT}}" }}
audit: {{ output: {audit} }}
"""

TOKEN = "tok-3f9a1c77e2b04d5e8a6b"
BOT = "bot-91c2d0e4a7f34b1c9e55"


def test_tokens_never_appear_in_logs_or_audit_lines(demo, gateway_factory):
    audit = Path(tempfile.mkdtemp(prefix="mcpx-audit-")) / "audit.log"
    gw = gateway_factory(BEARER.format(url=demo.url, audit=audit), env={"MCPX_G_TOKEN": TOKEN, "MCPX_G_BOT": BOT})
    wrong = "wrong-7d1e5b2c9a8f4e03b6"
    jwt_like = KEY_A.mint()
    sent = 0
    for token in (TOKEN, BOT, wrong, TOKEN + "x", jwt_like):
        for msg in (jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}),
                    jsonrpc("tools/call", {"name": "dangerous_delete", "arguments": {}}), "{broken"):
            gw.post("demo", msg, bearer(token), timeout=10)
            sent += 1
    gw.request("GET", "/metrics", headers=bearer(TOKEN))
    gw.request("GET", "/health", headers=bearer(wrong))
    lines = wait_until(lambda: (ls := [l for l in audit_lines(audit) if l.get("event") == "request"])
                       and len(ls) >= sent and ls, timeout=20, what=f"{sent} audit lines")
    assert {l["decision"] for l in lines} >= {"allow", "deny", "auth_failed", "error"}, lines
    texts = {"audit file": audit.read_text(), "gateway and Envoy log": gw.process.log()}
    for where, text in texts.items():
        for secret in (TOKEN, BOT, wrong, TOKEN + "x", jwt_like, jwt_like.split(".")[2]):
            assert secret not in text, f"a token ({secret[:12]}...) is in the {where}"


def test_refused_requests_spend_no_global_budget(demo, gateway_factory):
    gw = gateway_factory(f"""
servers:
  - name: demo
    url: {demo.url}
    policy: {{ deny_tools: [dangerous_delete] }}
rate_limit: {{ enabled: true, rps: 1, burst: 5 }}
""")
    demo.reset()
    # 30 requests the gateway refuses itself: denials, bad bodies, unknown servers.
    for i in range(10):
        assert denied(gw.post("demo", jsonrpc("tools/call", {"name": "dangerous_delete", "arguments": {}}, id=i)))
        assert gw.post("demo", "{broken").status == 400
        assert gw.post("nope", jsonrpc("ping")).status == 404
    assert demo.count() == 0, "a refused request reached the backend"
    # The whole burst is still there: had the 30 refusals spent tokens (1/s
    # refill), the bucket would be empty and these would be 429.
    statuses = [gw.post("demo", jsonrpc("ping", id=100 + i)).status for i in range(5)]
    assert statuses == [200] * 5, statuses
    assert demo.count() == 5


def test_learned_tool_names_are_capped_per_server(gateway_factory):
    # 305 advertised tools: echo, read_file, dangerous_delete, slow, stream, tool_0..tool_299.
    big = DemoServer("big", ["--tools", "300"])
    try:
        gw = gateway_factory(f"servers:\n  - name: big\n    url: {big.url}\n")
        assert len(gw.post("big", jsonrpc("tools/list")).json()["result"]["tools"]) == 305
        # The first 256 names are learned (5 + tool_0..tool_250); the rest
        # share the `_other` label and bucket.
        for name in ("tool_0", "tool_250", "tool_251", "tool_299"):
            assert gw.post("big", jsonrpc("tools/call", {"name": name, "arguments": {}})).status == 200
        m = gw.request("GET", "/metrics").text
        tools = set(re.findall(r'^mcpx_tool_calls_total\{server="big",tool="([^"]+)"', m, re.M))
        assert tools == {"tool_0", "tool_250", "_other"}, tools
        assert re.search(r'^mcpx_tool_calls_total\{server="big",tool="_other",[^}]*\} 2$', m, re.M), m[-1500:]
    finally:
        big.stop()


def test_integrity_audit_field_names_the_violation(demo, gateway_factory):
    audit = Path(tempfile.mkdtemp(prefix="mcpx-audit-")) / "audit.log"
    gw = gateway_factory(f"""
servers:
  - name: demo
    url: {demo.url}
inspection: {{ tool_integrity: warn }}
audit: {{ output: {audit} }}
""")
    assert gw.post("demo", jsonrpc("tools/list", id=1), headers={"X-Request-ID": "before"}).status == 200
    demo.mode(rug_pull=True)
    assert gw.post("demo", jsonrpc("tools/list", id=2), headers={"X-Request-ID": "pulled"}).status == 200

    def by_id():
        ls = {l.get("request_id"): l for l in audit_lines(audit) if l.get("event") == "request"}
        return ls if {"before", "pulled"} <= set(ls) else None

    lines = wait_until(by_id, timeout=20, what="both audit lines")
    assert lines["before"]["integrity"] is None, lines["before"]
    assert lines["pulled"]["integrity"] == "rug_pull:echo", lines["pulled"]


AUTH_HEALTH = """
servers:
  - name: a
    url: http://127.0.0.1:{a}/mcp
  - name: b
    url: http://127.0.0.1:{b}/mcp
auth:
  enabled: true
  type: bearer
  token: "${{MCPX_G_TOKEN}}"
"""


def test_anonymous_health_is_503_when_every_backend_is_down(gateway_factory):
    gw = gateway_factory(AUTH_HEALTH.format(a=free_port(), b=free_port()), env={"MCPX_G_TOKEN": TOKEN})
    r = gw.request("GET", "/health")
    assert r.status == 503, (r.status, r.text)
    assert r.json() == {"status": "unhealthy"}, "an anonymous caller learns more than the overall status"
    detail = gw.request("GET", "/health", headers=bearer(TOKEN))
    assert detail.status == 503 and set(detail.json()["servers"]) == {"a", "b"}, detail.text


def test_rendered_files_are_owner_only(demo, gateway_factory):
    gw = gateway_factory(BEARER.format(url=demo.url, audit="stdout"), env={"MCPX_G_TOKEN": TOKEN, "MCPX_G_BOT": BOT})
    run = gw.dir / "run"
    # Every file mcpx renders, and every directory it creates under the work
    # directory (the work directory itself is the caller's --workdir).
    paths = list(run.rglob("*"))
    assert len(paths) > 3, paths
    loose = []
    for p in paths:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if p.is_symlink():
            continue
        if mode & 0o077:
            loose.append(f"{p.relative_to(gw.dir)} {oct(mode)}")
    assert not loose, f"rendered files readable by others: {loose}"


def test_stdio_request_timeout_is_a_504_envelope_through_the_gateway(gateway_factory):
    server = (f"  - name: t\n    transport: stdio\n    command: {json.dumps(sys.executable)}\n"
              f"    args: {json.dumps([str(HERE / 'stdio_server.py')])}\n    request_timeout: 500ms\n")
    gw = gateway_factory(f"servers:\n{server}")
    started = time.monotonic()
    r = gw.post("t", jsonrpc("tools/call", {"name": "slow", "arguments": {"ms": 20000}}, id="late"), timeout=30)
    assert time.monotonic() - started < 15, "the timeout did not cut the call short"
    assert r.status == 504, (r.status, r.text)
    body = r.json()
    assert body["id"] == "late" and body["error"]["code"] == -32054, body
    assert "request_timeout" in body["error"]["message"]
    # The child is fine and answers the next call.
    ok = gw.post("t", jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "after"}}, id=2))
    assert ok.status == 200 and ok.json()["result"]["content"][0]["text"] == "after"


def test_concurrent_first_requests_share_one_child_start(bridges):
    """docs/bridge.md: the child starts on the first request and concurrent
    first requests wait for the same start."""
    b = bridges(stdio_server("t"))
    gate = threading.Barrier(12)
    pids: list[int] = []

    def first(i: int):
        gate.wait(30)
        r = b.call("t", "stats", id=i)
        pids.append(json.loads(r.json()["result"]["content"][0]["text"])["pid"])

    threads = [threading.Thread(target=first, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(pids) == 12 and len(set(pids)) == 1, pids
    assert b.log().count("started server `t`") == 1, b.log()[-2000:]


def test_bridge_shutdown_lets_in_flight_requests_finish(bridges):
    """docs/bridge.md: on SIGTERM, in-flight requests get up to
    min(request_timeout, 10 s) to finish before the child is stopped."""
    b = bridges(stdio_server("t"))
    outcome = []
    t = threading.Thread(target=lambda: outcome.append(b.call("t", "slow", {"ms": 1500, "tag": "in-flight"}, id="s")))
    t.start()
    wait_until(lambda: b.stats("t")["in_flight"] >= 2, what="the slow call in the child")  # it + the stats call
    b.process.proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert outcome, "the in-flight request got no answer"
    r = outcome[0]
    assert r.status == 200, (r.status, r.text)
    assert json.loads(r.json()["result"]["content"][0]["text"])["tag"] == "in-flight"
    assert b.process.proc.wait(30) == 0
