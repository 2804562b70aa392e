"""Real processes on 127.0.0.1 for end-to-end tests.

Every test talks to a real Envoy running the real filter, started by the real
`mcpx` binary, in front of the real demo server (or any other backend). Ports
are picked free, readiness is polled (never slept for), and every process is
stopped, and its group killed, when the test ends.

Binaries come from the environment `make e2e` sets: MCPX_BIN, MCPX_DEMO_BIN,
MCPX_WASM, ENVOY_BIN.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / ".artifacts"


def env_path(name: str, default: str) -> str:
    return os.environ.get(name) or str(ROOT / default)


MCPX_BIN = env_path("MCPX_BIN", "target/release/mcpx")
DEMO_BIN = env_path("MCPX_DEMO_BIN", "target/release/mcpx-demo")
WASM = env_path("MCPX_WASM", "target/wasm32-wasip1/wasm/mcpx_filter.wasm")
ENVOY_BIN = os.environ.get("ENVOY_BIN", "envoy")


def optional_tool(name: str) -> str | None:
    """None when the optional tool `name` was prepared by scripts/e2e-tools.sh
    (`make e2e` runs it before pytest), else why not: the skip reason."""
    status = ARTIFACTS / "tools" / name
    if not status.exists():
        return f"{name} was not prepared: run scripts/e2e-tools.sh first (make e2e does)"
    text = status.read_text().strip()
    return None if text == "ok" else f"{name}: {text}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 30.0, what: str = "condition", proc: subprocess.Popen | None = None):
    """Polls `predicate` until it returns a truthy value; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def request(port: int, method: str, path: str, body: bytes | str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
    """One HTTP/1.1 request on a fresh connection."""
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def serve_http(handler, tls=None):
    """A loopback HTTP server for `handler` (a BaseHTTPRequestHandler class)
    on a free port, each request on its own daemon thread, already serving.
    `tls`: an ssl.SSLContext to serve https with."""
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def answers_http(port: int, path: str = "/") -> bool:
    """Whether something on 127.0.0.1:`port` answers HTTP at all (a readiness
    check for `wait_until`)."""
    try:
        return request(port, "GET", path, timeout=1).status > 0
    except OSError:
        return False


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def unix_request(path: str, method: str, target: str, headers: dict[str, str] | None = None,
                 timeout: float = 10.0) -> Response:
    """One HTTP/1.1 request over a Unix socket (the operator control socket)."""
    conn = _UnixConnection(path, timeout)
    try:
        conn.request(method, target, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def jsonrpc(method: str, params: dict | None = None, id: int | str | None = 1) -> dict:
    msg: dict = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        msg["id"] = id
    if params is not None:
        msg["params"] = params
    return msg


JSON = {"Content-Type": "application/json"}


def denied(r: "Response") -> bool:
    """A policy denial as the gateway answers it by default: HTTP 200 with
    the JSON-RPC error -32003 (docs/policy.md, `denial_http_status`)."""
    if r.status != 200:
        return False
    try:
        body = r.json()
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict) and body["error"].get("code") == -32003


def tool_calls_in(bodies: list[str]) -> list[str]:
    """The tool names of the tools/call messages in these JSON-RPC bodies
    (single messages and batches; bodies that are not JSON count as none)."""
    names = []
    for body in bodies:
        try:
            msg = json.loads(body)
        except ValueError:
            continue
        for m in msg if isinstance(msg, list) else [msg]:
            if isinstance(m, dict) and m.get("method") == "tools/call" and isinstance(m.get("params"), dict):
                names.append(m["params"].get("name"))
    return names


class Process:
    """A child process in its own group, with its output kept in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class DemoServer:
    """The demo MCP server (examples/demo-server), with its control surface."""

    def __init__(self, name: str = "demo", extra: list[str] | None = None):
        ready = Path(tempfile.mkdtemp(prefix="mcpx-demo-")) / "addr"
        self.process = Process(f"demo-{name}", [DEMO_BIN, "--listen", "127.0.0.1:0", "--name", name,
                                                "--ready-file", str(ready), *(extra or [])])
        addr = wait_until(lambda: ready.exists() and ready.read_text().strip(), what="demo server address",
                          proc=self.process.proc)
        self.port = int(addr.rsplit(":", 1)[1])
        wait_until(lambda: self._healthy(), what="demo server health", proc=self.process.proc)

    def _healthy(self) -> bool:
        try:
            return request(self.port, "GET", "/_health").status == 200
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def received(self) -> list[dict]:
        return request(self.port, "GET", "/_received").json()

    def received_bodies(self) -> list[str]:
        return [r.get("body", "") for r in self.received()]

    def count(self) -> int:
        """How many MCP requests reached this backend (since the last reset).
        Refusal tests compare it before and after: a refused request must
        add nothing."""
        return len(self.received())

    def tool_calls(self) -> list[str]:
        """The tool names of every tools/call that reached this backend, in
        order (batches included), read by parsing each body as JSON."""
        return tool_calls_in(self.received_bodies())

    def reset(self) -> None:
        request(self.port, "POST", "/_reset")

    def mode(self, **switches) -> dict:
        return request(self.port, "POST", "/_mode", json.dumps(switches), JSON).json()

    def stop(self) -> None:
        self.process.stop()


class StreamBackend:
    """An MCP backend whose tool `stream` answers with an event stream the
    test drives: each `send()` lets one progress event out, `finish()` sends
    the result and ends the stream. No timing is involved: the test decides
    when each event exists, so it can check what arrived before the next one
    was even written. Other tools answer "ok" at once, other methods an empty
    result. `calls` counts the `stream` calls that arrived; `arrivals` keeps
    every message that arrived, in order."""

    def __init__(self):
        import queue
        from http.server import BaseHTTPRequestHandler

        self._queue: "queue.Queue[object]" = queue.Queue()
        self.calls = 0
        self.arrivals: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                msg = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                owner.arrivals.append(msg)
                params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
                if msg.get("method") != "tools/call" or params.get("name") != "stream":
                    result = {"content": [{"type": "text", "text": "ok"}]} if msg.get("method") == "tools/call" else {}
                    body = json.dumps({"jsonrpc": "2.0", "id": msg.get("id"), "result": result}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                owner.calls += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.flush()
                sent = 0
                while True:
                    item = owner._queue.get(timeout=120)
                    if item is None:
                        result = {"jsonrpc": "2.0", "id": msg.get("id"),
                                  "result": {"content": [{"type": "text", "text": f"streamed {sent} events"}]}}
                        self.wfile.write(f"event: message\ndata: {json.dumps(result)}\n\n".encode())
                        self.wfile.flush()
                        return
                    sent += 1
                    note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": sent}}
                    self.wfile.write(f"event: message\ndata: {json.dumps(note)}\n\n".encode())
                    self.wfile.flush()

            def log_message(self, *args):
                pass

        self.server = serve_http(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mcp"

    def send(self) -> None:
        """Lets the next progress event out."""
        self._queue.put(True)

    def finish(self) -> None:
        """Sends the result and ends the stream."""
        self._queue.put(None)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_sse_event(resp) -> dict | None:
    """Reads one event's JSON data from an http.client response (None at the
    end of the stream)."""
    data = []
    while True:
        line = resp.readline()
        if not line:
            return None
        line = line.decode().rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            return json.loads("\n".join(data))


@dataclass
class Gateway:
    """`mcpx run` with a given mcpx.yaml, on free ports."""

    config: str
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    concurrency: int = 2
    wasm: str = ""  # default: the shipped filter (MCPX_WASM)

    def __post_init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="mcpx-gw-"))
        self.config_path = self.dir / "mcpx.yaml"
        self.config_path.write_text(self.config)
        self.port = free_port()
        self.admin_port = free_port()
        # The operator control socket, in a directory only this user can enter.
        self.control_path = self.dir / "control" / "control.sock"
        argv = [MCPX_BIN, "run", "-c", str(self.config_path), "--listen", f"127.0.0.1:{self.port}",
                "--admin", f"127.0.0.1:{self.admin_port}", "--wasm", self.wasm or WASM, "--envoy", ENVOY_BIN,
                "--control", str(self.control_path),
                "--workdir", str(self.dir / "run"), "--concurrency", str(self.concurrency), *self.extra_args]
        self.process = Process("gateway", argv, self.env)
        try:
            wait_until(lambda: "gateway ready" in self.process.log(), timeout=60, what="gateway ready",
                       proc=self.process.proc)
        except Exception as e:
            log = self.process.log()
            self.process.stop()
            raise RuntimeError(f"gateway did not start: {e}\n--- log ---\n{log[-4000:]}") from e

    def request(self, method: str, path: str, body=None, headers=None, timeout: float = 10.0) -> Response:
        return request(self.port, method, path, body, headers, timeout)

    def post(self, server: str, message, headers: dict[str, str] | None = None, timeout: float = 10.0) -> Response:
        body = message if isinstance(message, (bytes, str)) else json.dumps(message)
        return self.request("POST", f"/mcp/{server}", body, {**JSON, **(headers or {})}, timeout)

    def admin(self, path: str) -> Response:
        return request(self.admin_port, "GET", path)

    def control(self, method: str, path: str, headers: dict[str, str] | None = None) -> Response:
        """The operator control listener (integrity baseline)."""
        return unix_request(str(self.control_path), method, path, headers=headers)

    def stop(self) -> int:
        return self.process.stop()
