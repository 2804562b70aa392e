"""The official Python SDK client calling tools through one session, printing
what the caller sees for each call as one JSON line (like ts_client.mjs):
    python py_client.py MODE URL TOOL [TOOL ...]      MODE: auto | legacy
TOOL is a name, or NAME=JSON with the call's arguments.
"""

import asyncio
import json
import sys

from mcp import Client
from mcp.shared.exceptions import MCPError


async def main(mode: str, url: str, tools: list[str]) -> None:
    async with Client(url, mode=mode) as c:
        print(json.dumps({"version": c.protocol_version}), flush=True)
        for spec in tools:
            tool, _, args = spec.partition("=")
            try:
                r = await c.call_tool(tool, json.loads(args or "{}"))
                text = r.content[0].text if r.content else None
                print(json.dumps({"tool": tool, "outcome": "result", "isError": r.is_error, "text": text}), flush=True)
            except MCPError as e:
                print(json.dumps({"tool": tool, "outcome": "error", "class": type(e).__name__, "code": e.code,
                                  "message": str(e)}), flush=True)
            except Exception as e:  # what a caller that is not an SDK error handler sees
                print(json.dumps({"tool": tool, "outcome": "error", "class": type(e).__name__, "code": None,
                                  "message": str(e)}), flush=True)
    print(json.dumps({"session": "closed"}), flush=True)


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2], sys.argv[3:]), 60))
