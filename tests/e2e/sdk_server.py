"""A real MCP server built with the official Python SDK (MCPServer), served
over Streamable HTTP: the interop backend of test_sdk_interop.py.

    python sdk_server.py PORT [json|sse]

`json` answers every POST with application/json (json_response=True); `sse`
(the SDK default) answers with text/event-stream and so requires clients to
accept both. `GET /_calls` lists every tool call that reached the server
(name and arguments), so a test can count what a denial kept out.
"""

import sys
from typing import Annotated

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp.server.mcpserver import MCPServer
from mcp_types import AudioContent, EmbeddedResource, ImageContent, TextContent, TextResourceContents

server = MCPServer("sdk-interop")
calls: list[dict] = []


@server.custom_route("/_calls", methods=["GET"])
async def received_calls(request: Request) -> Response:
    return JSONResponse(calls)


@server.tool()
def echo(text: str) -> str:
    """Echoes the text back."""
    calls.append({"name": "echo", "arguments": {"text": text}})
    return text


@server.tool()
def weather(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], days: int = 1) -> str:
    """A tool whose `region` argument is mirrored as the Mcp-Param-Region header."""
    calls.append({"name": "weather", "arguments": {"region": region, "days": days}})
    return f"sunny in {region} for {days} days"


@server.tool()
def secret_delete(path: str) -> str:
    """Must never run behind the gateway."""
    calls.append({"name": "secret_delete", "arguments": {"path": path}})
    return f"deleted {path}"


# Fixtures the official conformance runner's scenarios look for.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="
EMBEDDED = EmbeddedResource(
    type="resource", resource=TextResourceContents(uri="test://embedded-resource", mimeType="text/plain", text="hi")
)


@server.tool()
def test_image_content() -> list:
    return [ImageContent(type="image", data=PNG, mimeType="image/png")]


@server.tool()
def test_audio_content() -> list:
    return [AudioContent(type="audio", data=WAV, mimeType="audio/wav")]


@server.tool()
def test_embedded_resource() -> list:
    return [EMBEDDED]


@server.tool()
def test_multiple_content_types() -> list:
    return [TextContent(type="text", text="mixed"), ImageContent(type="image", data=PNG, mimeType="image/png"), EMBEDDED]


@server.resource("test://static-text", mime_type="text/plain")
def static_text() -> str:
    return "static text"


@server.resource("test://static-binary", mime_type="image/png")
def static_binary() -> bytes:
    return b"\x89PNG\r\n"


@server.resource("test://template/{id}/data", mime_type="application/json")
def template(id: str) -> str:
    return f'{{"id": "{id}"}}'


@server.prompt()
def test_simple_prompt() -> str:
    return "a simple prompt"


@server.prompt()
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    return f"prompt with {arg1} and {arg2}"


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else "sse"
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]), json_response=mode == "json")
