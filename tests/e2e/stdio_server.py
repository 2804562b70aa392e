#!/usr/bin/env python3
"""A stdio MCP server (handshake era) written for the bridge tests.

One JSON-RPC message per line on stdin/stdout; each request is handled on its
own thread, so slow calls overlap. Tools:

  echo {text}            the text back
  slow {ms, tag}         sleeps, returns {tag, start, end} (wall-clock seconds)
  gather {n, group, tag} waits until n calls of the group are inside the server at once (at most
                         60 s), returns {tag, together}: together is true only if all n met
  stats                  pid, how many initialize / initialized / cancelled it saw, in-flight calls,
                         and `calls`: the name of every tools/call that reached this server, in order
  big {bytes}            a text of that many bytes, written to stdout in small pieces
  size {data}            length and sha256 of the argument (for big requests)
  garbage {text}         writes non-JSON lines to stdout, then answers
  env {name}             the value of an environment variable (or null)
  cwd                    the working directory
  spawn_grandchild       starts `sleep 300` as a child of this server, returns its pid
  server_initiated       sends a notification and a request to the client, then answers
  crash                  SIGKILLs itself

Flags: --ignore-eof (keep running after stdin closes), --tag X (shown in stats).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

TAG = ""
IGNORE_EOF = "--ignore-eof" in sys.argv
if "--tag" in sys.argv:
    TAG = sys.argv[sys.argv.index("--tag") + 1]

out_lock = threading.Lock()
state_lock = threading.Lock()
state = {"initialize": 0, "initialized": 0, "cancelled": 0, "in_flight": 0, "replies_to_server_requests": [],
         "calls": []}
gathered: dict[str, int] = {}
gather_cond = threading.Condition()
stdout = sys.stdout.buffer

TOOLS = [
    {"name": n, "description": f"test tool {n}", "inputSchema": {"type": "object"}}
    for n in ["echo", "slow", "stats", "big", "size", "garbage", "env", "cwd", "spawn_grandchild",
              "server_initiated", "crash", "gather"]
]


def write_raw(data: bytes, pieces: int = 1):
    with out_lock:
        step = max(1, len(data) // pieces)
        for i in range(0, len(data), step):
            stdout.write(data[i:i + step])
            stdout.flush()


def send(msg, pieces: int = 1):
    write_raw(json.dumps(msg).encode() + b"\n", pieces)


def text(t):
    return {"content": [{"type": "text", "text": t}]}


def call_tool(name, args):
    if name == "echo":
        return text(args.get("text", ""))
    if name == "slow":
        start = time.time()
        time.sleep(args.get("ms", 1000) / 1000)
        return text(json.dumps({"tag": args.get("tag"), "start": start, "end": time.time()}))
    if name == "gather":
        group, n = str(args.get("group", "")), int(args.get("n", 1))
        with gather_cond:
            gathered[group] = gathered.get(group, 0) + 1
            gather_cond.notify_all()
            together = gather_cond.wait_for(lambda: gathered[group] >= n, timeout=60)
        return text(json.dumps({"tag": args.get("tag"), "together": together}))
    if name == "stats":
        with state_lock:
            s = {k: v for k, v in state.items()}
        return text(json.dumps({"pid": os.getpid(), "tag": TAG, **s}))
    if name == "big":
        return text("x" * int(args.get("bytes", 1)))
    if name == "size":
        data = args.get("data", "").encode()
        return text(json.dumps({"len": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
    if name == "garbage":
        write_raw(b"this is not JSON at all\n")
        write_raw(b"\x00\xff\xfe binary junk }{\n")
        write_raw(b'{"half": \n')
        write_raw(b"[1, 2, 3]\n")
        return text(args.get("text", "survived"))
    if name == "env":
        return text(json.dumps(os.environ.get(args.get("name", ""))))
    if name == "cwd":
        return text(os.getcwd())
    if name == "spawn_grandchild":
        p = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
        return text(str(p.pid))
    if name == "server_initiated":
        send({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "hi"}})
        send({"jsonrpc": "2.0", "id": "srv-1", "method": "roots/list"})
        return text("sent")
    if name == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    raise KeyError(name)


def handle(msg):
    method = msg.get("method")
    mid = msg.get("id")
    if method is None:
        # A response to one of our server-initiated requests.
        with state_lock:
            state["replies_to_server_requests"].append(msg)
        return
    if mid is None:
        with state_lock:
            if method == "notifications/initialized":
                state["initialized"] += 1
            elif method == "notifications/cancelled":
                state["cancelled"] += 1
        return
    with state_lock:
        state["in_flight"] += 1
    try:
        if method == "initialize":
            with state_lock:
                state["initialize"] += 1
            version = msg.get("params", {}).get("protocolVersion", "2025-06-18")
            result = {"protocolVersion": version, "capabilities": {"tools": {}},
                      "serverInfo": {"name": "stdio-test", "version": "1.0"}}
        elif method == "ping":
            result = {}
        elif method == "tools/list":
            result = {"tools": TOOLS}
        elif method == "tools/call":
            p = msg.get("params", {})
            with state_lock:
                state["calls"].append(p.get("name"))
            try:
                result = call_tool(p.get("name"), p.get("arguments") or {})
            except KeyError:
                send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "unknown tool"}})
                return
            pieces = 50 if p.get("name") == "big" else 1
            send({"jsonrpc": "2.0", "id": mid, "result": result}, pieces)
            return
        else:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": f"method not found: {method}"}})
            return
        send({"jsonrpc": "2.0", "id": mid, "result": result})
    finally:
        with state_lock:
            state["in_flight"] -= 1


def main():
    print(f"stdio-test server starting (pid {os.getpid()}, tag {TAG!r})", file=sys.stderr, flush=True)
    for line in sys.stdin.buffer:
        line = line.strip()
        if not line:
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            print("stdio-test: bad JSON from the client", file=sys.stderr, flush=True)
            continue
        threading.Thread(target=handle, args=(msg,), daemon=True).start()
    if IGNORE_EOF:
        print("stdio-test: stdin closed, ignoring it", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
