"""The official Python SDK's MCPServer over stdio, as a real-world child for the bridge.

Besides `add` and `shout`, for tests of one child shared by clients of both protocol eras:
  work {steps}   reports progress steps/steps and logs "step i" for each step
  hold           waits until `release` is called (a request kept in flight)
  release        lets `hold` finish
  record         this process's record: pid, every tool call that reached it (in order), and the
                 client capabilities its connection was opened with
Its instructions name its pid, so an answer describing an earlier child is told from a fresh one.
"""

import asyncio
import json
import os

from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("sdk-stdio", instructions=f"sdk-stdio test server, pid {os.getpid()}")
calls: list[str] = []
released = asyncio.Event()


@app.tool()
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    calls.append("add")
    return a + b


@app.tool()
def shout(text: str) -> str:
    """Upper-cases the text."""
    calls.append("shout")
    return text.upper()


@app.tool()
async def work(steps: int, ctx: Context) -> str:
    """Reports progress and logs each step."""
    calls.append("work")
    for i in range(1, steps + 1):
        await ctx.report_progress(i, steps, f"step {i}")
        await ctx.info(f"step {i}")
    return f"worked {steps} steps"


@app.tool()
async def hold() -> str:
    """Waits until `release` is called."""
    calls.append("hold")
    await released.wait()
    released.clear()
    return "released"


@app.tool()
def release() -> str:
    """Lets `hold` finish."""
    calls.append("release")
    released.set()
    return "ok"


@app.tool()
def record(ctx: Context) -> str:
    """This process's record (the call itself is not listed)."""
    caps = ctx.client_capabilities
    return json.dumps({"pid": os.getpid(), "calls": list(calls),
                       "client_capabilities": caps.model_dump(exclude_none=True, by_alias=True) if caps else None})


if __name__ == "__main__":
    app.run("stdio")
