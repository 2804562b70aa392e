"""Authentication through the real Envoy + filter: static bearer tokens and
API keys, and OAuth with RS256 tokens minted here against a local JWKS
server (issue 10)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt  # PyJWT
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness import JSON, MCPX_BIN, denied, free_port, jsonrpc, wait_until

ISSUER = "https://issuer.test"
RESOURCE = "https://gw.test/mcp"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    def __init__(self, kid: str):
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict:
        n = self.private.public_key().public_numbers()
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                "n": b64url(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
                "e": b64url(n.e.to_bytes(3, "big"))}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def mint(self, server: str = "demo", **overrides) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "alice", "aud": f"{RESOURCE}/{server}", "iat": now - 5,
                  "exp": now + 600, "scope": "mcp:read"}
        for k, v in overrides.items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})


class JwksServer:
    """Serves {"keys": [...]} at /jwks.json; keys can change while it runs."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.keys: list[dict] = []
        self.hits = 0
        self.httpd: ThreadingHTTPServer | None = None

    def start(self) -> "JwksServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.hits += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"


@pytest.fixture
def jwks_server():
    servers: list[JwksServer] = []

    def make(port: int | None = None, start: bool = True) -> JwksServer:
        s = JwksServer(port)
        if start:
            s.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


# The least time between two JWKS fetches for unknown kids (docs/auth.md).
JWKS_REFETCH_FLOOR_S = 2

KEY_A = SigningKey("key-a")
KEY_B = SigningKey("key-b")

OAUTH_CONFIG = """
servers:
  - name: demo
    url: {url}
  - name: other
    url: {url}
auth:
  enabled: true
  type: oauth
  oauth:
    resource: "{resource}"
    jwks_uri: "{jwks}"
    issuer: "{issuer}"
    scopes: {{ "demo/dangerous_delete": [mcp:admin] }}
inspection: {{ tool_integrity: off }}
"""


def oauth_gateway(demo, gateway_factory, jwks):
    return gateway_factory(OAUTH_CONFIG.format(url=demo.url, resource=RESOURCE, jwks=jwks.uri, issuer=ISSUER))


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def call(gw, token: str | None, server: str = "demo", tool: str = "echo", args=None, id=1):
    headers = bearer(token) if token else {}
    return gw.post(server, jsonrpc("tools/call", {"name": tool, "arguments": args or {"text": "hi"}}, id=id), headers)


def wait_for_keys(gw, token: str, timeout: float = 30.0):
    """The filter fetches the JWKS on its first tick; until then it answers 503."""
    return wait_until(lambda: (r := call(gw, token)).status != 503 and r, timeout=timeout, what="JWKS loaded")


def assert_401(r, *needles):
    assert r.status == 401, (r.status, r.text)
    assert r.json()["error"]["code"] == -32001
    www = r.header("www-authenticate") or ""
    assert www.startswith("Bearer "), www
    for n in needles:
        assert n in www or n in r.text, (n, www, r.text)


def test_oauth_token_rules(demo, gateway_factory, jwks_server):
    jwks = jwks_server()
    jwks.keys = [KEY_A.jwk()]
    gw = oauth_gateway(demo, gateway_factory, jwks)
    ok = KEY_A.mint()
    r = wait_for_keys(gw, ok)
    assert r.status == 200, r.text
    assert r.json()["result"]["content"][0]["text"] == "hi"

    # The backend never sees the caller's credential (no token passthrough).
    demo.reset()
    assert call(gw, ok).status == 200
    seen = demo.received()[-1]["headers"]
    assert "authorization" not in seen, seen

    # Missing token: 401 whose challenge names the per-server metadata.
    demo.reset()
    r = call(gw, None)
    assert_401(r, 'resource_metadata="http://127.0.0.1:%d/.well-known/oauth-protected-resource/mcp/demo"' % gw.port)
    assert demo.count() == 0, "a request without a token reached the backend"

    now = int(time.time())
    refused = {
        "wrong audience": KEY_A.mint(aud="https://elsewhere.test/mcp/demo"),
        "gateway-wide audience (not accepted by default)": KEY_A.mint(aud=RESOURCE),
        "token for another server": KEY_A.mint(server="other"),
        "wrong issuer": KEY_A.mint(iss="https://evil.test"),
        "expired": KEY_A.mint(exp=now - 3600, iat=now - 7200),
        "not yet valid": KEY_A.mint(nbf=now + 3600),
        "no expiry": KEY_A.mint(exp=None),
    }
    header_payload = ok.rsplit(".", 1)[0]
    sig = bytearray(base64.urlsafe_b64decode(ok.rsplit(".", 1)[1] + "=="))
    sig[5] ^= 0x01
    refused["tampered signature"] = f"{header_payload}.{b64url(bytes(sig))}"
    claims_b64 = ok.split(".")[1]
    evil_claims = json.loads(base64.urlsafe_b64decode(claims_b64 + "=="))
    evil_claims["sub"] = "admin"
    refused["payload swapped"] = f"{ok.split('.')[0]}.{b64url(json.dumps(evil_claims).encode())}.{ok.split('.')[2]}"
    none_header = b64url(json.dumps({"alg": "none", "typ": "JWT", "kid": "key-a"}).encode())
    refused["alg none"] = f"{none_header}.{claims_b64}."
    hs_header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "key-a"}).encode())
    signing_input = f"{hs_header}.{claims_b64}".encode()
    hs_sig = hmac.new(KEY_A.public_pem(), signing_input, hashlib.sha256).digest()
    refused["HS256 signed with the public key"] = f"{hs_header}.{claims_b64}.{b64url(hs_sig)}"

    demo.reset()
    for what, token in refused.items():
        r = call(gw, token)
        assert r.status == 401, (what, r.status, r.text)
        assert 'error="invalid_token"' in r.header("www-authenticate"), (what, r.header("www-authenticate"))
    assert demo.received() == [], "a refused request reached the backend"

    # The token for "other" is good there, and only there.
    assert call(gw, KEY_A.mint(server="other"), server="other").status == 200
    # GET and DELETE are authenticated too.
    demo.reset()
    assert gw.request("GET", "/mcp/demo").status == 401
    assert gw.request("DELETE", "/mcp/demo").status == 401
    assert demo.count() == 0, "an unauthenticated GET or DELETE reached the backend"
    assert gw.request("DELETE", "/mcp/demo", headers=bearer(ok)).status == 200
    assert demo.count() == 1


def test_oauth_step_up_scope(demo, gateway_factory, jwks_server):
    jwks = jwks_server()
    jwks.keys = [KEY_A.jwk()]
    gw = oauth_gateway(demo, gateway_factory, jwks)
    reader = KEY_A.mint(scope="mcp:read")
    assert wait_for_keys(gw, reader).status == 200
    demo.reset()
    r = call(gw, reader, tool="dangerous_delete", args={"path": "/x"}, id=77)
    assert r.status == 403, r.text
    assert r.json()["id"] == 77
    www = r.header("www-authenticate")
    assert 'error="insufficient_scope"' in www and 'scope="mcp:admin"' in www, www
    assert "resource_metadata=" in www
    assert demo.received() == []
    admin = KEY_A.mint(scope="mcp:read mcp:admin")
    assert call(gw, admin, tool="dangerous_delete", args={"path": "/x"}).status == 200


def test_oauth_unknown_kid_then_rotation(demo, gateway_factory, jwks_server):
    jwks = jwks_server()
    jwks.keys = [KEY_A.jwk()]
    gw = oauth_gateway(demo, gateway_factory, jwks)
    assert wait_for_keys(gw, KEY_A.mint()).status == 200
    rotated = KEY_B.mint()
    demo.reset()
    r = call(gw, rotated)
    assert_401(r, "key-b")
    assert demo.count() == 0, "a token with an unknown kid reached the backend"
    # The authorization server rotates: the gateway re-fetches on the unknown
    # kid (at most once per floor interval) and then accepts.
    jwks.keys = [KEY_A.jwk(), KEY_B.jwk()]
    wait_until(lambda: call(gw, rotated).status == 200, timeout=30, what="rotated key accepted")
    # A flood of unknown kids does not turn into a flood of fetches.
    hits = jwks.hits
    bogus = SigningKey("kid-never-published")
    before = demo.count()
    started = time.monotonic()
    for i in range(30):
        assert call(gw, bogus.mint(sub=f"x{i}")).status == 401
    elapsed = time.monotonic() - started
    assert demo.count() == before, "a token with an unknown kid reached the backend"
    # At most one re-fetch per floor interval (JWKS_REFETCH_FLOOR_S) of the
    # time the flood really took, plus the one in flight: a bound that holds
    # on a slow machine too, and still catches a fetch per request.
    fetches = jwks.hits - hits
    assert fetches <= 2 + int(elapsed / JWKS_REFETCH_FLOOR_S), (fetches, elapsed)
    assert fetches < 30 / 2, f"{fetches} JWKS fetches for 30 unknown-kid requests in {elapsed:.1f}s"


def test_oauth_jwks_down_at_start_waits_fails_closed_then_recovers(demo, gateway_factory, jwks_server):
    jwks = jwks_server(start=False)
    jwks.keys = [KEY_A.jwk()]
    gw = oauth_gateway(demo, gateway_factory, jwks)
    token = KEY_A.mint()
    # No keys can be loaded: the request waits (bounded), then gets a clear
    # 503 in the envelope. It never reaches the backend.
    r = call(gw, token)
    assert r.status == 503, r.text
    assert "keys" in r.json()["error"]["message"]
    assert r.header("retry-after")
    assert demo.received() == []
    # A request sent while the JWKS is still down waits, paused, and
    # completes once the keys arrive.
    body = json.dumps(jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "waited"}}))
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    try:
        sock.sendall((f"POST /mcp/demo HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\nContent-Type: application/json\r\n"
                      f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                      f"{body}").encode())
        jwks.start()
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    finally:
        sock.close()
    assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
    assert b"waited" in raw
    assert call(gw, token).status == 200


def test_oauth_metadata_documents(demo, gateway_factory, jwks_server):
    jwks = jwks_server()
    jwks.keys = [KEY_A.jwk()]
    gw = oauth_gateway(demo, gateway_factory, jwks)
    r = gw.request("GET", "/.well-known/oauth-protected-resource/mcp/demo")
    assert r.status == 200, r.text
    doc = r.json()
    assert doc["resource"] == f"{RESOURCE}/demo"
    assert doc["authorization_servers"] == [ISSUER]
    assert doc["bearer_methods_supported"] == ["header"]
    assert doc["scopes_supported"] == ["mcp:admin"]
    doc = gw.request("GET", "/.well-known/oauth-protected-resource").json()
    assert doc["resource"] == RESOURCE
    assert "scopes_supported" in doc
    other = gw.request("GET", "/.well-known/oauth-protected-resource/mcp/other").json()
    assert other["resource"] == f"{RESOURCE}/other" and "scopes_supported" not in other
    # Unknown names get a document too (shaped like `other`'s): a 404 would
    # tell anyone which server names exist.
    nope = gw.request("GET", "/.well-known/oauth-protected-resource/mcp/nope")
    assert nope.status == 200, nope.text
    assert nope.json()["resource"] == f"{RESOURCE}/nope" and "scopes_supported" not in nope.json()


BEARER_CONFIG = """
servers:
  - name: demo
    url: {url}
auth:
  enabled: true
  type: bearer
  token: "${{MCPX_TEST_TOKEN}}"
  clients:
    - {{ name: ci-bot, token: "${{MCPX_TEST_BOT_TOKEN}}" }}
clients:
  ci-bot:
    servers:
      demo: {{ allow_tools: [echo] }}
inspection: {{ tool_integrity: off, filter_tools_list: true }}
"""

SECRET = "s3cret-anon-token-value"
BOT_SECRET = "s3cret-bot-token-value"
ENV = {"MCPX_TEST_TOKEN": SECRET, "MCPX_TEST_BOT_TOKEN": BOT_SECRET}


def test_bearer_tokens(demo, gateway_factory):
    gw = gateway_factory(BEARER_CONFIG.format(url=demo.url), env=ENV)
    demo.reset()
    assert call(gw, SECRET).status == 200
    assert "authorization" not in demo.received()[-1]["headers"]
    before = demo.count()
    for bad in [SECRET[:-1], SECRET + "x", SECRET.upper(), BOT_SECRET[:10], ""]:
        r = gw.post("demo", jsonrpc("ping"), {"Authorization": f"Bearer {bad}"})
        assert r.status == 401, (bad, r.status)
        assert r.header("www-authenticate").startswith("Bearer")
    assert gw.post("demo", jsonrpc("ping"), {"Authorization": f"Basic {SECRET}"}).status == 401
    assert gw.post("demo", jsonrpc("ping"), {"X-API-Key": SECRET}).status == 401
    r = gw.post("demo", jsonrpc("ping"))
    assert r.status == 401 and r.json()["error"]["code"] == -32001
    assert gw.request("GET", "/mcp/demo").status == 401
    assert gw.request("DELETE", "/mcp/demo").status == 401
    # Unauthenticated callers do not learn which servers exist.
    assert gw.post("nope", jsonrpc("ping")).status == 401
    assert demo.count() == before, "a request with a bad or missing token reached the backend"
    # Gateway endpoints need any valid credential (docs/auth.md).
    assert gw.request("GET", "/metrics").status == 401
    assert gw.request("GET", "/metrics", headers=bearer(BOT_SECRET)).status == 200
    # The secrets are nowhere in the rendered Envoy config (bootstrap and the
    # dynamic resources it loads); the filter holds their digests.
    rendered = "".join(p.read_text() for p in (gw.dir / "run").rglob("*") if p.is_file())
    assert SECRET not in rendered
    assert BOT_SECRET not in rendered
    assert "sha256:" in rendered


def test_per_client_tools_list_differs(demo, gateway_factory):
    gw = gateway_factory(BEARER_CONFIG.format(url=demo.url), env=ENV)

    def names(token):
        r = gw.post("demo", jsonrpc("tools/list"), bearer(token))
        assert r.status == 200, r.text
        return [t["name"] for t in r.json()["result"]["tools"]]

    everyone = names(SECRET)
    bot = names(BOT_SECRET)
    assert "read_file" in everyone and "dangerous_delete" in everyone
    assert bot == ["echo"]
    before = demo.tool_calls()
    assert denied(call(gw, BOT_SECRET, tool="read_file", args={"path": "/x"}))
    assert demo.tool_calls() == before, "the client override did not keep the call from the backend"
    assert call(gw, SECRET, tool="read_file", args={"path": "/x"}).status == 200
    assert demo.tool_calls() == [*before, "read_file"]


API_KEY_CONFIG = """
servers:
  - name: demo
    url: {url}
auth:
  enabled: true
  type: api_key
  header: X-Team-Key
  clients:
    - {{ name: team-a, token: key-aaaaaaaaaaaaaaaa }}
"""


def test_api_keys(demo, gateway_factory):
    gw = gateway_factory(API_KEY_CONFIG.format(url=demo.url))
    demo.reset()
    assert gw.post("demo", jsonrpc("ping"), {"X-Team-Key": "key-aaaaaaaaaaaaaaaa"}).status == 200
    assert "x-team-key" not in demo.received()[-1]["headers"]
    before = demo.count()
    for headers in [{"X-Team-Key": "key-aaaaaaaaaaaaaaa"}, {"X-Team-Key": "key-aaaaaaaaaaaaaaaab"},
                    {"X-API-Key": "key-aaaaaaaaaaaaaaaa"}, bearer("key-aaaaaaaaaaaaaaaa"), {}]:
        r = gw.post("demo", jsonrpc("ping"), headers)
        assert r.status == 401, (headers, r.status)
        assert r.json()["error"]["code"] == -32001
    assert demo.count() == before, "a request with a wrong or missing API key reached the backend"


def test_render_prints_no_secret(tmp_path):
    cfg = tmp_path / "mcpx.yaml"
    cfg.write_text(BEARER_CONFIG.format(url="http://127.0.0.1:3001/mcp"))
    out = subprocess.run([MCPX_BIN, "render", "-c", str(cfg)], env={**ENV, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert SECRET not in out.stdout and BOT_SECRET not in out.stdout
    assert "sha256:" in out.stdout
    missing = subprocess.run([MCPX_BIN, "render", "-c", str(cfg)], env={"PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode != 0 and "MCPX_TEST_TOKEN" in missing.stderr


def test_oauth_keys_survive_a_reload_while_the_jwks_is_down(demo, gateway_factory, jwks_server):
    jwks = jwks_server()
    jwks.keys = [KEY_A.jwk()]
    gw = oauth_gateway(demo, gateway_factory, jwks)
    token = KEY_A.mint()
    assert wait_for_keys(gw, token).status == 200
    jwks.stop()
    # A policy change: ECDS update, a new filter configuration in every VM.
    server = f"  - name: demo\n    url: {demo.url}\n"
    new = gw.config.replace(server, server + "    policy: { deny_tools: [echo] }\n", 1)
    assert new != gw.config
    gw.config_path.write_text(new)
    os.kill(gw.process.proc.pid, signal.SIGHUP)
    # The new config is live (echo denied) and tokens still verify, from the
    # key set fetched before the reload, although the JWKS is now down.
    wait_until(lambda: denied(call(gw, token)), timeout=20, what="new policy after reload")
    before = demo.tool_calls()
    assert call(gw, token, tool="read_file", args={"path": "/x"}).status == 200
    assert demo.tool_calls() == [*before, "read_file"]
