"""Python decoders, run in-process on the bytes the gateway delivered.

Requests (what a Python MCP server reads):
  python-json        json.loads(body bytes): the standard library (it detects
                     UTF-16/32 from the bytes and accepts a UTF-8 BOM)
  python-sdk-server  the official `mcp` SDK's Streamable HTTP server path:
                     its Content-Type check, pydantic_core.from_json, then
                     jsonrpc_message_adapter.validate_python
Responses (what the official Python SDK client reads):
  python-sdk-client  JSON answers: jsonrpc_message_adapter.validate_json on the
                     bytes; SSE: httpx2.EventSource, events of type `message`;
                     a response on a request's own SSE stream takes that
                     request's id (the client rewrites it); ids are matched
                     with coerce_request_id, results read as ListToolsResult.
"""

from __future__ import annotations

import json

import httpx2
import pydantic_core
from mcp.shared.dispatcher import coerce_request_id
from mcp.types import JSONRPCError, JSONRPCResponse, ListToolsResult, jsonrpc_message_adapter


def view(msg) -> dict:
    v = {"kind": "response", "id": None, "method": None, "tool": None, "text": None, "kind_arg": None}
    if not isinstance(msg, dict):
        return {**v, "kind": "invalid"}
    if "id" in msg:
        v["id"] = json.dumps(msg["id"])
    if "method" in msg:
        v["method"] = msg["method"]
        v["kind"] = "request" if msg.get("id") is not None else "notification"
    p = msg.get("params")
    if msg.get("method") == "tools/call" and isinstance(p, dict):
        v["tool"] = p.get("name")
        a = p.get("arguments")
        if isinstance(a, dict):
            v["text"], v["kind_arg"] = a.get("text"), a.get("kind")
    return v


def _result(case: str, decoder: str, messages=None, error: str | None = None) -> dict:
    if error is not None:
        return {"case": case, "decoder": decoder, "status": "rejected", "error": error[:300], "messages": []}
    return {"case": case, "decoder": decoder, "status": "ok", "messages": messages}


def python_json(case: str, headers: dict, body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        return _result(case, "python-json", error=str(e))
    return _result(case, "python-json", [view(m) for m in (data if isinstance(data, list) else [data])])


def python_sdk_server(case: str, headers: dict, body: bytes) -> dict:
    name = "python-sdk-server"
    # StreamableHTTPServerTransport._check_content_type
    ct = headers.get("content-type", "")
    if not any(part.strip() == "application/json" for part in ct.split(";")[0].split(",")):
        return _result(case, name, error=f"415 content-type {ct!r}")
    try:
        raw = pydantic_core.from_json(body)
    except ValueError as e:
        return _result(case, name, error=f"parse: {e}")
    try:
        msg = jsonrpc_message_adapter.validate_python(raw, by_name=False)
    except pydantic_core.ValidationError as e:
        return _result(case, name, error=f"validation: {e}".splitlines()[0])
    return _result(case, name, [view(msg.model_dump(by_alias=True, exclude_unset=True))])


REQUEST_DECODERS = [python_json, python_sdk_server]


# ---- client side -----------------------------------------------------------

def _messages(stream: dict) -> list:
    """JSON-RPC messages the Python client takes from one delivered answer."""
    status, body = stream["status"], bytes.fromhex(stream["body_hex"])
    ct = (stream.get("content_type") or "").lower()
    if not 200 <= status < 300 or status == 202:
        return []
    orig = json.loads(stream["orig_id"]) if stream.get("orig_id") else None
    if ct.startswith("application/json"):
        try:
            return [jsonrpc_message_adapter.validate_json(body, by_name=False)]
        except pydantic_core.ValidationError:
            return []
    if ct.partition(";")[0].strip() != "text/event-stream":
        return []
    resp = httpx2.Response(status, headers={"content-type": stream["content_type"]}, content=body,
                           request=httpx2.Request("POST", "http://127.0.0.1/mcp"))
    out = []
    for ev in httpx2.EventSource(resp):
        if ev.event != "message" or not ev.data:
            continue
        try:
            m = jsonrpc_message_adapter.validate_json(ev.data, by_name=False)
        except pydantic_core.ValidationError:
            continue
        if orig is not None and isinstance(m, (JSONRPCResponse, JSONRPCError)):
            m.id = orig
        out.append(m)
    return out


def python_sdk_client(case: dict) -> dict:
    """Lists the client would resolve its pending tools/list with. Streams are
    taken as independent: the client abandons a request answered 202, but a
    hostile server chooses the order, so it pushes the list on the already
    open GET stream before it answers the POST."""
    want = coerce_request_id(json.loads(case["request_id"]))
    lists, errors = [], []
    for s in case["streams"]:
        try:
            msgs = _messages(s)
        except Exception as e:  # a client error on one stream ends that stream only
            errors.append(f"{s['label']}: {e}")
            continue
        for m in msgs:
            if not isinstance(m, JSONRPCResponse) or coerce_request_id(m.id) != want:
                continue
            try:
                r = ListToolsResult.model_validate(m.result)
            except pydantic_core.ValidationError:
                continue
            lists.append({"stream": s["label"], "id": json.dumps(m.id), "tools": [t.name for t in r.tools]})
    return {"case": case["case"], "decoder": "python-sdk-client", "status": "ok", "lists": lists, "errors": errors}
