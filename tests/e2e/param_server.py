"""An official-SDK MCP server (MCPServer, Streamable HTTP) whose tools declare
`x-mcp-header`, with a recording front: the backend of test_mcp_param.py.

    python param_server.py PORT

Every POST that reaches the MCP endpoint is recorded (headers, body) before
the SDK sees it; `GET /_received` returns the record, `POST /_reset` clears
it, so a test counts what arrived. Some tools carry annotations the protocol
calls invalid: MCPServer refuses to register those, so their schemas are set
after registration (a broken or hostile server can send anything).
"""

import json
import sys

import uvicorn

from mcp.server.mcpserver import MCPServer

server = MCPServer("param-headers")
received: list[dict] = []


@server.tool()
def route(region: str, query: str = "") -> str:
    """`region` is mirrored as Mcp-Param-Region."""
    return f"ran {query!r} in {region}"


@server.tool()
def count(n: int) -> str:
    """`n` (an integer) is mirrored as Mcp-Param-N."""
    return f"n={n}"


@server.tool()
def toggle(dry_run: bool) -> str:
    """`dry_run` (a boolean) is mirrored as Mcp-Param-Dry-Run."""
    return f"dry_run={dry_run}"


@server.tool()
def tenant(cfg: dict) -> str:
    """`cfg.tenant` (nested) is mirrored as Mcp-Param-Tenant."""
    return f"tenant={cfg.get('tenant')}"


@server.tool()
def plain(text: str) -> str:
    """Declares no header."""
    return text


def prop(extra: dict) -> dict:
    return {"type": "object", "properties": {"a": extra}}


# name -> inputSchema set after registration.
SCHEMAS = {
    "route": {"type": "object", "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"}, "query": {"type": "string"}}, "required": ["region"]},
    "count": {"type": "object", "properties": {"n": {"type": "integer", "x-mcp-header": "N"}}, "required": ["n"]},
    "toggle": {"type": "object", "properties": {"dry_run": {"type": "boolean", "x-mcp-header": "Dry-Run"}}},
    "tenant": {"type": "object", "properties": {"cfg": {"type": "object", "properties": {
        "tenant": {"type": "string", "x-mcp-header": "Tenant"}}}}},
    "bad_empty": prop({"type": "string", "x-mcp-header": ""}),
    "bad_token": prop({"type": "string", "x-mcp-header": "Re gion"}),
    "bad_duplicate": {"type": "object", "properties": {
        "a": {"type": "string", "x-mcp-header": "Zone"}, "b": {"type": "string", "x-mcp-header": "ZONE"}}},
    "bad_object": prop({"type": "object", "x-mcp-header": "Obj"}),
    "bad_number": prop({"type": "number", "x-mcp-header": "Num"}),
    "bad_items": prop({"type": "array", "items": {"type": "string", "x-mcp-header": "Item"}}),
}


def make_bad(name: str):
    def bad(a: object = None) -> str:
        return f"{name} ran"
    bad.__name__ = name
    bad.__doc__ = "Carries an invalid x-mcp-header annotation."
    return bad


for bad_name in [n for n in SCHEMAS if n.startswith("bad_")]:
    server.tool(name=bad_name)(make_bad(bad_name))

for name, schema in SCHEMAS.items():
    server._tool_manager.get_tool(name).parameters = schema


def recording(app):
    async def front(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        if path in ("/_received", "/_reset"):
            if method == "POST" and path == "/_reset":
                received.clear()
            body = json.dumps(received).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            return await send({"type": "http.response.body", "body": body})
        if method != "POST":
            return await app(scope, receive, send)
        chunks, more = [], True
        while more:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        received.append({"headers": {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]},
                         "body": body.decode("utf-8", "replace")})
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await app(scope, replay, send)
    return front


if __name__ == "__main__":
    app = recording(server.streamable_http_app(json_response=True))
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
