"""A real MCP server built with the official Python SDK (MCPServer, both
protocol eras, Streamable HTTP answering in JSON), wrapped so that it records
every POST it receives: the backend of test_denial_clients.py.

    python denial_backend.py PORT

GET /_received lists the arrived JSON-RPC messages as {"method", "tool"}
(tool: params.name of a tools/call), so a test can count what reached the
server, never just search for a string."""

import json
import sys

import uvicorn

from mcp.server.mcpserver import MCPServer

server = MCPServer("denial-backend")
RECEIVED: list[dict] = []


@server.tool()
def echo(text: str) -> str:
    """Echoes the text back."""
    return text


@server.tool()
def secret_delete(path: str) -> str:
    """Must never run behind the gateway."""
    return f"deleted {path}"


def recording(app):
    async def wrapped(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/_received":
            body = json.dumps(RECEIVED).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            return await send({"type": "http.response.body", "body": body})
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        chunks, more = [], True
        while more:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        raw = b"".join(chunks)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        for m in parsed if isinstance(parsed, list) else [parsed]:
            if isinstance(m, dict):
                params = m.get("params") if isinstance(m.get("params"), dict) else {}
                tool = params.get("name") if m.get("method") == "tools/call" else None
                RECEIVED.append({"method": m.get("method"), "tool": tool})
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        return await app(scope, replay, send)

    return wrapped


if __name__ == "__main__":
    app = server.streamable_http_app(json_response=True)
    uvicorn.run(recording(app), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
