"""Hot reload through the real `mcpx run`: SIGHUP and --watch re-read
mcpx.yaml; a valid config reaches new requests (and open keep-alive
connections) through Envoy's dynamic resources while in-flight streams finish;
an invalid one is refused and the old config keeps working. Every wait is a
bounded poll."""

import http.client
import json
import os
import signal

from harness import JSON, StreamBackend, denied, free_port, jsonrpc, read_sse_event, wait_until

CONFIG = """
servers:
  - name: demo
    url: {url}
    policy:
      deny_tools: [{deny}]
inspection: {{ tool_integrity: off }}
"""


def call(gw, tool: str, args: dict | None = None):
    return gw.post("demo", jsonrpc("tools/call", {"name": tool, "arguments": args or {"text": "hi"}}))


def reload_events(gw) -> list[dict]:
    events = []
    for line in gw.process.log().splitlines():
        if line.startswith("{") and '"event":"reload"' in line:
            events.append(json.loads(line))
    return events


def wait_for_event(gw, count: int, timeout: float = 20) -> dict:
    """Waits for the `count`-th reload event and returns it."""
    events = wait_until(lambda: len(reload_events(gw)) >= count and reload_events(gw), timeout=timeout,
                        what=f"reload event #{count}", proc=gw.process.proc)
    return events[count - 1]


def sighup(gw):
    os.kill(gw.process.proc.pid, signal.SIGHUP)


def test_sighup_applies_a_new_policy(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url, deny="dangerous_delete"))
    assert call(gw, "echo").status == 200
    gw.config_path.write_text(CONFIG.format(url=demo.url, deny="echo"))
    sighup(gw)
    event = wait_for_event(gw, 1)
    assert event["result"] == "applied" and event["trigger"] == "sighup", event
    # A policy-only change is an ECDS update: the listener and clusters stay.
    assert event["changed"] == ["filter"], event
    wait_until(lambda: denied(call(gw, "echo")), timeout=10, what="echo denied after reload")
    # The old denial is gone with the old config.
    assert call(gw, "dangerous_delete", {"path": "/x"}).status == 200
    assert gw.process.alive()


def test_watch_picks_up_a_file_change(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url, deny="dangerous_delete"), extra_args=["--watch"])
    assert call(gw, "echo").status == 200
    gw.config_path.write_text(CONFIG.format(url=demo.url, deny="echo"))
    event = wait_for_event(gw, 1)
    assert event["result"] == "applied" and event["trigger"] == "watch", event
    wait_until(lambda: denied(call(gw, "echo")), timeout=10, what="echo denied after watch reload")


def test_an_invalid_file_is_rejected_and_the_old_policy_keeps_working(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url, deny="dangerous_delete"), extra_args=["--watch"])
    # Would allow everything if it were applied, but a server name is invalid.
    gw.config_path.write_text(f"servers:\n  - name: Demo!\n    url: {demo.url}\n")
    event = wait_for_event(gw, 1)
    assert event["result"] == "rejected", event
    assert "servers[0].name" in event["error"], event
    assert "reload rejected" in gw.process.log()
    assert denied(call(gw, "dangerous_delete", {"path": "/"}))
    assert call(gw, "echo").status == 200
    # Broken YAML, and a config the filter itself would refuse (bad regex).
    gw.config_path.write_text("servers: [ {name: demo, url: ")
    assert wait_for_event(gw, 2)["result"] == "rejected"
    gw.config_path.write_text(CONFIG.format(url=demo.url, deny="echo").replace(
        "inspection:", "      tool_rules: { read_file: { args: { path: { regex: '(' } } } }\ninspection:"))
    assert wait_for_event(gw, 3)["result"] == "rejected"
    assert call(gw, "echo").status == 200
    assert denied(call(gw, "dangerous_delete", {"path": "/"}))
    # A valid file after all that is applied.
    gw.config_path.write_text(CONFIG.format(url=demo.url, deny="echo"))
    assert wait_for_event(gw, 4)["result"] == "applied"
    wait_until(lambda: denied(call(gw, "echo")), timeout=10, what="echo denied after the valid file")


def cluster_manager_stats(gw) -> dict[str, int]:
    text = gw.admin("/stats?filter=%5Ecluster_manager%5C.cluster_").text
    return {k: int(v) for k, v in (line.split(": ", 1) for line in text.splitlines() if ": " in line)}


def test_a_new_server_is_routed_after_reload(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url, deny="dangerous_delete"))
    assert gw.post("second", jsonrpc("ping")).status == 404
    before = cluster_manager_stats(gw)
    text = CONFIG.format(url=demo.url, deny="dangerous_delete").replace(
        "inspection:", f"  - name: second\n    url: {demo.url}\ninspection:")
    gw.config_path.write_text(text)
    sighup(gw)
    event = wait_for_event(gw, 1)
    assert event["result"] == "applied", event
    assert event["changed"] == ["clusters", "filter", "routes"], event
    wait_until(lambda: gw.post("second", jsonrpc("ping")).status == 200, timeout=10, what="new server routed")
    # The unchanged cluster was kept as it was (its breaker/outlier state with it).
    after = cluster_manager_stats(gw)
    assert after["cluster_manager.cluster_added"] == before["cluster_manager.cluster_added"] + 1, (before, after)
    assert after["cluster_manager.cluster_modified"] == before["cluster_manager.cluster_modified"], (before, after)
    assert after["cluster_manager.cluster_removed"] == before["cluster_manager.cluster_removed"], (before, after)
    assert gw.request("GET", "/health").json()["servers"]["second"]["healthy"] is True


def test_a_long_sse_stream_survives_reloads(gateway_factory):
    """A stream opened before two reloads keeps flowing after both: the
    backend writes each event only when the test says so, so the events after
    the reloads provably left the backend after the reloads were applied (no
    timing window: the stream lasts as long as the test needs)."""
    backend = StreamBackend()
    try:
        config = CONFIG.format(url=backend.url, deny="dangerous_delete")
        gw = gateway_factory(config)
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
        body = json.dumps(jsonrpc("tools/call", {"name": "stream", "arguments": {}}, id="s1"))
        conn.request("POST", "/mcp/demo", body, {**JSON, "Accept": "application/json, text/event-stream"})
        backend.send()
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("content-type", "").startswith("text/event-stream")
        assert read_sse_event(resp)["params"]["progress"] == 1
        # Two reloads while the stream is open: a policy change (ECDS), then a
        # new server (CDS + RDS; the listener itself is unchanged).
        gw.config_path.write_text(config.replace("[dangerous_delete]", "[echo]"))
        sighup(gw)
        assert wait_for_event(gw, 1)["result"] == "applied"
        gw.config_path.write_text(config.replace("[dangerous_delete]", "[echo]").replace(
            "inspection:", f"  - name: second\n    url: {backend.url}\ninspection:"))
        sighup(gw)
        second = wait_for_event(gw, 2)
        assert second["changed"] == ["clusters", "filter", "routes"], second
        # New requests already see the new config while the stream still runs.
        wait_until(lambda: denied(call(gw, "echo")), timeout=10, what="echo denied during the stream")
        # Only now does the backend write the rest: it reaches the client.
        for i in range(2, 6):
            backend.send()
            e = read_sse_event(resp)
            assert e is not None, f"the stream ended after {i - 1} events"
            assert e["params"]["progress"] == i, e
        backend.finish()
        last = read_sse_event(resp)
        assert last["id"] == "s1" and last["result"]["content"][0]["text"] == "streamed 5 events", last
        conn.close()
    finally:
        backend.finish()
        backend.stop()


def test_a_keep_alive_connection_sees_the_new_filter_config(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url, deny="dangerous_delete"))
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    body = json.dumps(jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}))

    def call_on_conn() -> tuple[int | str, tuple]:
        """(HTTP status, or "denied" for a policy denial, and the local address)."""
        conn.request("POST", "/mcp/demo", body, JSON)
        local = conn.sock.getsockname()
        r = conn.getresponse()
        data = r.read()
        is_denial = r.status == 200 and json.loads(data).get("error", {}).get("code") == -32003
        return ("denied" if is_denial else r.status), local

    status, first = call_on_conn()
    assert status == 200
    gw.config_path.write_text(CONFIG.format(url=demo.url, deny="echo"))
    sighup(gw)
    assert wait_for_event(gw, 1)["changed"] == ["filter"]

    def denied_on_same_connection():
        status, local = call_on_conn()
        assert local == first, "the connection was reopened"
        return status == "denied"

    wait_until(denied_on_same_connection, timeout=10, what="echo denied on the open connection")
    conn.close()


def test_a_keep_alive_connection_reaches_a_new_server(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url, deny="dangerous_delete"))
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    ping = json.dumps(jsonrpc("ping"))

    def ping_on_conn(server: str) -> tuple[int, tuple]:
        conn.request("POST", f"/mcp/{server}", ping, JSON)
        local = conn.sock.getsockname()
        r = conn.getresponse()
        r.read()
        return r.status, local

    status, first = ping_on_conn("demo")
    assert status == 200
    gw.config_path.write_text(CONFIG.format(url=demo.url, deny="dangerous_delete").replace(
        "inspection:", f"  - name: second\n    url: {demo.url}\ninspection:"))
    sighup(gw)
    assert wait_for_event(gw, 1)["changed"] == ["clusters", "filter", "routes"]

    def routed_on_same_connection():
        status, local = ping_on_conn("second")
        assert local == first, "the connection was reopened"
        return status == 200

    # Routes come by RDS: no listener drain, the open connection sees them.
    wait_until(routed_on_same_connection, timeout=10, what="new server on the open connection")
    conn.close()


def test_the_listen_override_survives_a_reload(demo, gateway_factory):
    # The harness passes --listen, which wins over `listen:` in the file on
    # every reload too: the listener stays where it is.
    gw = gateway_factory(CONFIG.format(url=demo.url, deny="dangerous_delete"))
    text = "listen: \"127.0.0.1:%d\"\n" % free_port() + CONFIG.format(url=demo.url, deny="echo")
    gw.config_path.write_text(text)
    sighup(gw)
    event = wait_for_event(gw, 1)
    assert event["result"] == "applied" and event["changed"] == ["filter"], event
    wait_until(lambda: denied(call(gw, "echo")), timeout=10, what="echo denied")


def test_reload_events_go_to_the_audit_file(demo, gateway_factory, tmp_path):
    audit = tmp_path / "audit.log"
    base = CONFIG.format(url=demo.url, deny="dangerous_delete") + f"audit: {{ enabled: true, output: \"{audit}\" }}\n"
    gw = gateway_factory(base)
    gw.config_path.write_text(base.replace("deny_tools: [dangerous_delete]", "deny_tools: [echo]"))
    sighup(gw)

    def events():
        if not audit.exists():
            return []
        return [json.loads(line) for line in audit.read_text().splitlines()
                if line.startswith("{") and '"event":"reload"' in line]

    applied = wait_until(events, timeout=20, what="reload event in the audit file")[0]
    assert applied["result"] == "applied" and applied["changed"] == ["filter"], applied
    gw.config_path.write_text("servers: []\n")
    sighup(gw)
    rejected = wait_until(lambda: len(events()) >= 2 and events(), timeout=20, what="rejected event")[1]
    assert rejected["result"] == "rejected" and "servers" in rejected["error"], rejected


def test_envoy_refusing_a_new_listener_keeps_the_old_one(demo, tmp_path):
    """A config mcpx accepts but Envoy cannot apply (the new port is taken):
    reported as rejected, nothing of it applied, and the old listener keeps
    serving with the old policy."""
    import socket

    from harness import ENVOY_BIN, MCPX_BIN, WASM, Process, request

    def config(port: int, deny: str) -> str:
        return f'listen: "127.0.0.1:{port}"\n' + CONFIG.format(url=demo.url, deny=deny)

    port, admin = free_port(), free_port()
    path = tmp_path / "mcpx.yaml"
    path.write_text(config(port, "dangerous_delete"))
    proc = Process("gateway-listen", [MCPX_BIN, "run", "-c", str(path), "--admin", f"127.0.0.1:{admin}",
                                      "--wasm", WASM, "--envoy", ENVOY_BIN, "--workdir", str(tmp_path / "run"),
                                      "--concurrency", "1", "--no-control"])
    try:
        wait_until(lambda: "gateway ready" in proc.log(), timeout=60, what="gateway ready", proc=proc.proc)

        def echo(p: int) -> int | str:
            """The HTTP status, or "denied" for a policy denial."""
            body = json.dumps(jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}))
            r = request(p, "POST", "/mcp/demo", body, JSON)
            return "denied" if denied(r) else r.status

        def events() -> list[dict]:
            return [json.loads(line) for line in proc.log().splitlines()
                    if line.startswith("{") and '"event":"reload"' in line]

        assert echo(port) == 200
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            path.write_text(config(taken.getsockname()[1], "echo"))
            os.kill(proc.proc.pid, signal.SIGHUP)
            event = wait_until(lambda: events(), timeout=20, what="reload event", proc=proc.proc)[0]
        assert event["result"] == "rejected", event
        # All or nothing: the policy that came with the refused listener is
        # not applied either (the filter goes last and was never written).
        assert event["changed"] == ["filter", "listener"] and event["applied"] == [], event
        assert "listener" in event["error"]
        # The old listener still serves, with the old policy.
        assert echo(port) == 200
        # A free port then works: the listener moves.
        new_port = free_port()
        path.write_text(config(new_port, "echo"))
        os.kill(proc.proc.pid, signal.SIGHUP)
        event = wait_until(lambda: len(events()) >= 2 and events(), timeout=20, what="second reload")[1]
        assert event["result"] == "applied" and "listener" in event["changed"], event
        wait_until(lambda: echo(new_port) == "denied", timeout=10, what="new port")
    finally:
        proc.stop()
