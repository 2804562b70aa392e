"""Canaries: inputs fed straight to the decoders (not through the gateway)
on which each decoder must show the quirk it is here for.

Without them a decoder that silently stopped working the way it does in the
wild (a package update, a broken install, a decoder that rejects everything)
would make the suite pass for the wrong reason. A canary that no longer
sings is a harness error (exit 2), not a pass.
"""

from __future__ import annotations

from generate import BAD_TOOL, CT_JSON, GOOD_TOOL, RespCase, list_answer, sse, utf7_run

BAD = ("tools/call", BAD_TOOL)
GOOD = ("tools/call", GOOD_TOOL)


def _call(params: str) -> bytes:
    return ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{' + params + "}}").encode()


ARGS = '"arguments":{"text":"hello","kind":"safe"}'

# (case id, content type, body, {decoder: (method, tool) it must read, or "rejected"})
REQUESTS = [
    ("canary:go-folds-keys", CT_JSON,
     ('{"jsonrpc":"2.0","id":1,"method":"tools/list","param\u017f":{"name":"' + BAD_TOOL + '"},'
      '"Method":"tools/call"}').encode(),
     {"go-encoding-json": BAD, "python-json": ("tools/list", None), "rust-serde-value": ("tools/list", None)}),
    ("canary:express-honours-utf-7", "application/json; charset=utf-7",
     _call('"name":"' + GOOD_TOOL + '",' + ARGS + ',"x":"' + utf7_run('","name":"' + BAD_TOOL) + '"'),
     {"node-express-json": BAD, "ts-sdk-server": BAD, "go-encoding-json": GOOD, "python-json": GOOD,
      "python-sdk-server": GOOD, "rust-serde-value": GOOD}),
    ("canary:last-duplicate-wins", CT_JSON,
     _call('"name":"' + GOOD_TOOL + '","name":"' + BAD_TOOL + '",' + ARGS),
     {"go-encoding-json": BAD, "node-express-json": BAD, "ts-sdk-server": BAD, "python-json": BAD,
      "python-sdk-server": BAD, "rust-serde-value": BAD, "rust-serde-derive": "rejected"}),
]


def _stream(ct: str, body: bytes) -> list[dict]:
    return [{"label": "post-list", "status": 200, "content_type": ct, "body_hex": body.hex(), "orig_id": "1"}]


# (case, streams, {decoder: whether it must read the list holding BAD_TOOL})
RESPONSES = [
    (RespCase("canary:string-id-matches", "canary", "json", "1", CT_JSON, b"", "id \"1\" for request 1"),
     _stream(CT_JSON, list_answer('"1"').encode()),
     {"ts-sdk-client": True, "ts-sdk-client-real": True, "python-sdk-client": True}),
    (RespCase("canary:sse-bom-skipped", "canary", "sse", "1", "text/event-stream", b"", "BOM before SSE"),
     _stream("text/event-stream", b"\xef\xbb\xbf" + sse(list_answer("1"))),
     {"ts-sdk-client": True, "ts-sdk-client-real": True, "python-sdk-client": False}),
    (RespCase("canary:python-rewrites-ids", "canary", "sse", "1", "text/event-stream", b"", "id 99 on the POST stream"),
     _stream("text/event-stream", sse(list_answer("99"))),
     {"ts-sdk-client": False, "ts-sdk-client-real": False, "python-sdk-client": True}),
]


def request_items() -> list[dict]:
    return [{"case": cid, "headers": {"content-type": ct, "accept": "application/json, text/event-stream",
                                      "mcp-protocol-version": "2025-06-18"}, "body_hex": body.hex()}
            for cid, ct, body, _ in REQUESTS]


def response_items() -> tuple[list[dict], dict[str, RespCase]]:
    items = [{"case": c.id, "request_id": c.request_id, "streams": streams} for c, streams, _ in RESPONSES]
    return items, {c.id: c for c, _, _ in RESPONSES}


def check(views: list[dict], rviews: list[dict]) -> list[str]:
    """Harness errors for every canary that did not sing."""
    errors = []
    by = {(v["case"], v["decoder"]): v for v in views + rviews}
    for cid, _, _, expect in REQUESTS:
        for dec, want in expect.items():
            v = by.get((cid, dec))
            if v is None:
                errors.append(f"{cid}: no answer from {dec}")
                continue
            got = "rejected" if v["status"] != "ok" else \
                (v["messages"][0]["method"], v["messages"][0]["tool"]) if v["messages"] else None
            if got != want:
                errors.append(f"{cid}: {dec} read {got}, its known behaviour is {want}; "
                              f"the decoder changed, so the suite cannot vouch for this class")
    for c, _, expect in RESPONSES:
        for dec, want in expect.items():
            v = by.get((c.id, dec))
            got = v is not None and any(BAD_TOOL in lst["tools"] for lst in v["lists"])
            if got != want:
                errors.append(f"{c.id}: {dec} {'read' if got else 'did not read'} the list "
                              f"({c.note}), its known behaviour is the opposite; the client changed")
    return errors
