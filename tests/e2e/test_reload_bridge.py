"""Hot reload with stdio servers through `mcpx run`: an unchanged stdio child
keeps running across a reload; a stdio server added by a reload is served."""

import json
import os
import signal

from harness import denied, jsonrpc, wait_until
from test_bridge import GATEWAY_CONFIG, stdio_server


def child_pid(gw, server: str) -> int:
    r = gw.post(server, jsonrpc("tools/call", {"name": "stats", "arguments": {}}))
    assert r.status == 200, r.text
    return json.loads(r.json()["result"]["content"][0]["text"])["pid"]


def test_reload_keeps_unchanged_stdio_children(gateway_factory):
    gw = gateway_factory(GATEWAY_CONFIG.format(servers=stdio_server("t")))
    pid = child_pid(gw, "t")
    echo = jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "x"}})
    assert gw.post("t", echo).status == 200
    text = GATEWAY_CONFIG.format(servers=stdio_server("t") + stdio_server("added")).replace(
        "deny_tools: [crash]", "deny_tools: [crash, echo]")
    gw.config_path.write_text(text)
    os.kill(gw.process.proc.pid, signal.SIGHUP)
    wait_until(lambda: '"event":"reload"' in gw.process.log(), timeout=20, what="reload event")
    assert '"result":"applied"' in gw.process.log(), gw.process.log()[-2000:]
    wait_until(lambda: denied(gw.post("added", echo)), timeout=10, what="new stdio server routed")
    assert child_pid(gw, "added") != pid
    assert child_pid(gw, "t") == pid
