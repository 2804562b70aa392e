"""The official Python SDK's MCPServer over stdio, as a real-world child for the bridge."""

from mcp.server.mcpserver import MCPServer

app = MCPServer("sdk-stdio")


@app.tool()
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


@app.tool()
def shout(text: str) -> str:
    """Upper-cases the text."""
    return text.upper()


if __name__ == "__main__":
    app.run("stdio")
