"""A real MCP server built with the official Python SDK (MCPServer), served
over Streamable HTTP: the interop backend of test_sdk_interop.py.

    python sdk_server.py PORT [json|sse]

`json` answers every POST with application/json (json_response=True); `sse`
(the SDK default) answers with text/event-stream and so requires clients to
accept both.
"""

import sys
from typing import Annotated

from pydantic import Field

from mcp.server.mcpserver import MCPServer

server = MCPServer("sdk-interop")


@server.tool()
def echo(text: str) -> str:
    """Echoes the text back."""
    return text


@server.tool()
def weather(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], days: int = 1) -> str:
    """A tool whose `region` argument is mirrored as the Mcp-Param-Region header."""
    return f"sunny in {region} for {days} days"


@server.tool()
def secret_delete(path: str) -> str:
    """Must never run behind the gateway."""
    return f"deleted {path}"


if __name__ == "__main__":
    mode = sys.argv[2] if len(sys.argv) > 2 else "sse"
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]), json_response=mode == "json")
