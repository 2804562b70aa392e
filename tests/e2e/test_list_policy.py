"""prompts/list, resources/list and resources/templates/list agree with the
caller's policy as tools/list does, and completion/complete for a prompt or
resource the caller may not use never reaches the backend. Through the real
Envoy + wasm started by `mcpx run`, against a scripted backend
(hostile_backend.py) that records every request."""

import json

import pytest

from harness import denied, jsonrpc
from hostile_backend import HostileBackend, json_answer, result, sse_answer

CONFIG = """
servers:
  - name: h
    url: {url}
    policy:
      deny_prompts: [secret_prompt]
      deny_resources: ["file:///data/secret"]
auth:
  enabled: true
  type: bearer
  clients:
    - {{ name: alice, token: alice-token }}
    - {{ name: bob, token: bob-token }}
clients:
  bob:
    servers:
      h: {{ allow_prompts: [greet], allow_resources: ["file:///data/public/"] }}
inspection: {{ tool_integrity: off, filter_tools_list: true }}
"""

PROMPTS = [{"name": "greet"}, {"name": "secret_prompt"}, {"name": "summarise"}]
RESOURCES = [{"uri": "file:///data/public/a.txt", "name": "a"}, {"uri": "file:///data/secret/key", "name": "k"},
             {"uri": "file:///data/other.txt", "name": "o"}]
TEMPLATES = [{"uriTemplate": "file:///data/secret/{name}", "name": "s"},
             {"uriTemplate": "file:///data/public/{name}", "name": "p"}, {"uriTemplate": "file:///{path}", "name": "any"}]


@pytest.fixture
def backend():
    b = HostileBackend()
    b.answer("prompts/list", json_answer(result(1, {"prompts": PROMPTS, "nextCursor": "n"})))
    b.answer("resources/list", sse_answer(result(1, {"resources": RESOURCES})))
    b.answer("resources/templates/list", json_answer(result(1, {"resourceTemplates": TEMPLATES})))
    yield b
    b.stop()


def as_(who):
    return {"Authorization": f"Bearer {who}-token"}


def read(gw, method, who):
    r = gw.post("h", jsonrpc(method), headers={**as_(who), "Accept": "application/json, text/event-stream"})
    assert r.status == 200, r.text
    if "event-stream" in (r.header("content-type") or ""):
        data = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
        return json.loads(data[0])["result"]
    return r.json()["result"]


def test_prompt_and_resource_lists_follow_the_callers_policy(backend, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=backend.url))
    res = read(gw, "prompts/list", "alice")
    assert [p["name"] for p in res["prompts"]] == ["greet", "summarise"]
    assert res["nextCursor"] == "n"
    assert [p["name"] for p in read(gw, "prompts/list", "bob")["prompts"]] == ["greet"]
    assert read(gw, "prompts/list", "bob")["cacheScope"] == "private"

    uris = lambda who: [x["uri"] for x in read(gw, "resources/list", who)["resources"]]
    assert uris("alice") == ["file:///data/public/a.txt", "file:///data/other.txt"]
    assert uris("bob") == ["file:///data/public/a.txt"]

    templates = [t["uriTemplate"] for t in read(gw, "resources/templates/list", "alice")["resourceTemplates"]]
    # Only the template whose every expansion is denied goes.
    assert templates == ["file:///data/public/{name}", "file:///{path}"]


@pytest.mark.parametrize("who,ref", [
    ("alice", {"type": "ref/prompt", "name": "secret_prompt"}),
    ("bob", {"type": "ref/prompt", "name": "summarise"}),
    ("alice", {"type": "ref/resource", "uri": "file:///data/secret/{name}"}),
    ("bob", {"type": "ref/resource", "uri": "file:///data/other/{name}"}),
])
def test_completion_for_a_denied_prompt_or_resource_never_reaches_the_backend(backend, gateway_factory, who, ref):
    gw = gateway_factory(CONFIG.format(url=backend.url))
    params = {"ref": ref, "argument": {"name": "name", "value": ""}}
    r = gw.post("h", jsonrpc("completion/complete", params, id=11), headers=as_(who))
    assert denied(r), r.text
    err = r.json()["error"]
    assert err["code"] == -32003 and r.json()["id"] == 11, err
    assert backend.count("completion/complete") == 0
    # The same caller's completion for something it may use goes through.
    ok = {"type": "ref/prompt", "name": "greet"}
    r = gw.post("h", jsonrpc("completion/complete", {**params, "ref": ok}, id=12), headers=as_(who))
    assert r.status == 200, r.text
    assert backend.count("completion/complete") == 1
