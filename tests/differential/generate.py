"""Hostile variants of MCP requests (what a client sends) and of tools/list
answers (what a server sends), from a fixed seed.

Every request case is built so that the only allowed reading is harmless:
the gateway's policy allows the tool `echo` and only with text="hello",
kind="safe". Each variant hides a second reading (tool `dangerous_delete`,
text "pwned", kind "unsafe", method tools/call instead of tools/list) behind a
parser difference: a case-folded or duplicated key, an escape, a charset, a
BOM, request/response member mixing, control characters. If the gateway allows
a variant, every decoder must read the harmless message.

Response cases are tools lists with `dangerous_delete` in them, answered in
the forms and on the streams a hostile server could choose; a client must
never parse a list that still contains it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from jsonw import Obj, Raw, Str, Style, obj, utf7_run, write

GOOD_TOOL, BAD_TOOL = "echo", "dangerous_delete"
GOOD_ARGS = {"text": "hello", "kind": "safe"}
BAD_ARGS = {"text": "pwned", "kind": "unsafe"}
CT_JSON = "application/json"


@dataclass
class ReqCase:
    id: str
    cls: str
    body: bytes
    content_type: str = CT_JSON
    note: str = ""


@dataclass
class RespCase:
    id: str
    cls: str
    placement: str               # json | sse | get-stream | call-stream | batch
    request_id: object           # the id the client puts on its tools/list (a JSON value)
    content_type: str            # of the answer carrying the list
    body: bytes                  # the answer carrying the list
    note: str = ""


# ---- requests -------------------------------------------------------------

def args(d=None) -> Obj:
    d = d or GOOD_ARGS
    return obj(**d)


def params(tool=GOOD_TOOL, a=None) -> Obj:
    return Obj([("name", tool), ("arguments", a if a is not None else args())])


def call(tool=GOOD_TOOL, a=None, id_=Raw("1"), method="tools/call") -> Obj:
    return Obj([("jsonrpc", "2.0"), ("id", id_), ("method", method), ("params", params(tool, a))])


def listreq(id_=Raw("1")) -> Obj:
    return Obj([("jsonrpc", "2.0"), ("id", id_), ("method", "tools/list")])


# Spellings that Go's encoding/json folds onto each key (ASCII case, and
# Unicode simple folding: U+017F LATIN SMALL LETTER LONG S -> s,
# U+212A KELVIN SIGN -> k).
FOLDS = {
    "method": ["Method", "METHOD", "mEthod"],
    "params": ["Params", "PARAMS", "param\u017f"],
    "name": ["Name", "NAME"],
    "arguments": ["Arguments", "ARGUMENTS", "argument\u017f"],
    "text": ["Text", "TEXT"],
    "kind": ["Kind", "KIND", "\u212aind"],
    "result": ["Result", "re\u017fult"],
}


def _dup_target(key: str):
    """(message builder(benign, evil), benign value, evil value) for a key whose
    duplicate changes what the message does."""
    if key == "method":
        def build(pairs):
            return Obj([("jsonrpc", "2.0"), ("id", Raw("1")), *pairs, ("params", params(BAD_TOOL, args(BAD_ARGS)))])
        return build, "tools/list", "tools/call"
    if key == "params":
        def build(pairs):
            return Obj([("jsonrpc", "2.0"), ("id", Raw("1")), ("method", "tools/call"), *pairs])
        return build, params(), params(BAD_TOOL, args(BAD_ARGS))
    if key == "name":
        def build(pairs):
            return Obj([("jsonrpc", "2.0"), ("id", Raw("1")), ("method", "tools/call"),
                        ("params", Obj([*pairs, ("arguments", args())]))])
        return build, GOOD_TOOL, BAD_TOOL
    if key == "arguments":
        def build(pairs):
            return Obj([("jsonrpc", "2.0"), ("id", Raw("1")), ("method", "tools/call"),
                        ("params", Obj([("name", GOOD_TOOL), *pairs]))])
        return build, args(), args(BAD_ARGS)
    if key in ("text", "kind"):
        other = "kind" if key == "text" else "text"

        def build(pairs):
            return call(a=Obj([*pairs, (other, GOOD_ARGS[other])]))
        return build, GOOD_ARGS[key], BAD_ARGS[key]
    raise KeyError(key)


def request_cases() -> list[ReqCase]:
    """The fixed catalogue: every class, each spelling, both orders."""
    cases: list[ReqCase] = []

    def add(cls, node_or_bytes, ct=CT_JSON, note=""):
        body = node_or_bytes if isinstance(node_or_bytes, bytes) else write(node_or_bytes).encode()
        cases.append(ReqCase(f"{cls}#{sum(c.cls == cls for c in cases)}", cls, body, ct, note))

    # Controls: plain messages every decoder must read as the gateway does.
    add("control", call(), note="plain tools/call echo")
    add("control", listreq(), note="plain tools/list")
    add("control", [call(), listreq(Raw("2"))], note="plain batch")

    # Duplicate keys, exact and case-folded, in both orders, at every depth.
    for key in ["method", "params", "name", "arguments", "text", "kind"]:
        build, benign, evil = _dup_target(key)
        for spelling in [key, *FOLDS[key]]:
            kind = "dup-exact" if spelling == key else "dup-fold"
            add(f"{kind}:{key}", build([(key, benign), (spelling, evil)]), note=f"{key!r} then {spelling!r}")
            add(f"{kind}:{key}", build([(spelling, evil), (key, benign)]), note=f"{spelling!r} then {key!r}")
        for spelling in FOLDS[key]:
            # Only the folded spelling: no exact key at all.
            add(f"fold-only:{key}", build([(spelling, evil)]), note=f"only {spelling!r}")
        # The duplicate spelled with escapes: equal to `key` after unescaping.
        add(f"dup-escaped:{key}", build([(key, benign), (Str(key, "all"), evil)]), note=f"{key!r} then escaped {key!r}")
        add(f"dup-escaped:{key}", build([(Str(key, "first"), evil), (key, benign)]), note=f"escaped {key!r} then {key!r}")
        if key in ("params", "arguments"):
            add(f"dup-escaped:{key}", build([(key, benign), (Str(FOLDS[key][-1], "all"), evil)]),
                note=f"{key!r} then escaped {FOLDS[key][-1]!r}")

    # Escapes in values: same message, other spelling (all must agree).
    add("escape", call(tool=Str(GOOD_TOOL, "all")), note="tool name fully escaped")
    add("escape", Obj([("jsonrpc", "2.0"), ("id", Raw("1")), ("method", Str("tools/call", "first")),
                       ("params", params())]), note="method with an escaped first char")
    add("escape", Obj([("jsonrpc", "2.0"), ("id", Raw("1")), ("method", Raw('"tools\\/call"')),
                       ("params", params())]), note="escaped solidus in method")
    add("escape", call(tool=Str(BAD_TOOL, "all")), note="denied tool fully escaped (must be denied)")

    # Charsets: the body is ASCII JSON calling echo; read as UTF-7 it calls
    # dangerous_delete (a string member hides `","name":"dangerous_delete`).
    utf7 = Obj([("jsonrpc", "2.0"), ("id", Raw("1")), ("method", "tools/call"),
                ("params", Obj([("name", GOOD_TOOL), ("arguments", args()),
                                ("x", utf7_run('","name":"' + BAD_TOOL)), ]))])
    for ct in ["application/json; charset=utf-7", "application/json; charset=UTF-7",
               'application/json; charset="utf-7"', "application/json;charset=utf7",
               "application/json; charset=unicode-1-1-utf-7", "application/json; charset=csUnicode11UTF7",
               "application/json; charset=utf-8; charset=utf-7", "application/json; charset=utf-7; charset=utf-8",
               "application/json; CHARSET=utf-7", "application/json ; charset = utf-7",
               "Application/JSON; charset=utf-7", "application/json; foo=bar; charset=utf-7",
               "application/json; charset='utf-7'"]:
        add("charset:utf-7", utf7, ct, note=ct)
    for enc, label in [("utf-16-le", "utf-16le"), ("utf-16-be", "utf-16be"), ("utf-16", "utf-16"),
                       ("utf-32-le", "utf-32le")]:
        add("charset:utf-16/32", write(call(BAD_TOOL, args(BAD_ARGS))).encode(enc), f"application/json; charset={label}",
            note=f"denied call encoded as {label}")
        add("charset:utf-16/32", write(call(BAD_TOOL, args(BAD_ARGS))).encode(enc), CT_JSON,
            note=f"denied call encoded as {label}, no charset")
    # latin1: the same bytes, other characters (é in UTF-8 is 'Ã©' in latin1).
    add("charset:latin1", write(call(a=Obj([("text", "hello"), ("kind", "safe"), ("note", "caf\u00e9")]))).encode(),
        "application/json; charset=latin1", note="non-ASCII string, latin1 label")
    add("charset:latin1", write(call()).encode(), "application/json; charset=iso-8859-1", note="ASCII body, iso-8859-1 label")

    # BOMs.
    add("bom", b"\xef\xbb\xbf" + write(call(BAD_TOOL, args(BAD_ARGS))).encode(), note="UTF-8 BOM, denied call")
    add("bom", b"\xef\xbb\xbf" + write(call()).encode(), note="UTF-8 BOM, allowed call")
    add("bom", b"\xff\xfe" + write(call(BAD_TOOL, args(BAD_ARGS))).encode("utf-16-le"),
        "application/json; charset=utf-16", note="UTF-16LE BOM, denied call")
    add("bom", b"\xef\xbb\xbf" + write(utf7).encode(), "application/json; charset=utf-7", note="UTF-8 BOM + utf-7 payload")

    # Number forms for ids (the same message; every decoder must agree).
    for form in ["1", "1.0", "-0", "1e0", "1E0", '"1"', "10e-1", "100000000000000000001", "null", "0.1e1"]:
        add("id-form", call(id_=Raw(form)), note=f"id {form}")

    # Batches.
    add("batch", [call(), call(BAD_TOOL, args(BAD_ARGS))], note="allowed then denied element")
    add("batch", [listreq(), Obj([("jsonrpc", "2.0"), ("id", Raw("2")), ("Method", "tools/call"),
                                  ("method", "tools/list"), ("params", params(BAD_TOOL, args(BAD_ARGS)))])],
        note="folded method inside a batch element")
    add("batch", [[call(BAD_TOOL, args(BAD_ARGS))]], note="nested batch")
    add("batch", [call(a=Obj([("text", "hello"), ("kind", "safe"), ("Text", "pwned")]))], note="folded argument in a batch")
    add("batch", [], note="empty batch")

    # Request/response member mixing, in every spelling and order.
    evil_call = call(BAD_TOOL, args(BAD_ARGS))
    for member, value in [("result", obj()), ("error", obj(code=Raw("1"), message="x"))]:
        for spelling in [member, *FOLDS.get(member, ["Error", "ERROR"])]:
            add("mixing", Obj([*evil_call.pairs, (spelling, value)]), note=f"denied call + {spelling!r}")
            add("mixing", Obj([("jsonrpc", "2.0"), ("id", Raw("1")), (spelling, value),
                               *evil_call.pairs[2:]]), note=f"{spelling!r} before method")
    add("mixing", Obj([("jsonrpc", "2.0"), ("id", Raw("1")), ("result", obj()), ("Method", "tools/call"),
                       ("params", params(BAD_TOOL, args(BAD_ARGS)))]), note="response + folded method")

    # Whitespace and control characters in method and tool names.
    for m in [" tools/call", "tools/call ", "tools/call\n", "\ttools/call", "tools/call\u0000", "tools/call\u200b",
              "tools/call\u00a0", "Tools/Call", "TOOLS/CALL", "tools//call", "tools/call\r\n"]:
        add("ctl-method", call(BAD_TOOL, args(BAD_ARGS), method=m), note=f"method {m!r}")
    for t in [" echo", "echo ", "echo\n", "echo\u0000", "ECHO", "Echo", "dangerous_delete ", " dangerous_delete",
              "dangerous_delete\u0000", "dangerous_delete\t", "DANGEROUS_DELETE", "dangerous\u2010delete"]:
        add("ctl-tool", call(t), note=f"tool {t!r}")

    # Whitespace that JSON allows (every decoder must agree) and does not.
    add("whitespace", write(call(), Style(("\t\r\n ",))).encode(), note="all JSON whitespace between tokens")
    for ws, label in [("\u00a0", "NBSP"), ("\f", "form feed"), ("\v", "vertical tab"), ("\u2028", "U+2028"),
                      ("\x00", "NUL")]:
        add("whitespace", write(call(BAD_TOOL, args(BAD_ARGS)), Style((ws,))).encode(), note=f"{label} between tokens")
    return cases


# Random mutations for longer runs: each starts from a catalogue case and
# stacks one to three changes.
def _mutate(rng: random.Random, c: ReqCase, n: int) -> ReqCase:
    body, ct, notes = c.body, c.content_type, [c.note]
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(["ws", "ct", "bom", "trail", "case", "pad"])
        if op == "ws":
            gap = rng.choice([" ", "\t", "\n", "\r\n", "  \t"])
            i = rng.randrange(len(body) + 1)
            if body[i - 1:i] in (b",", b":", b"{", b"[") or i == 0:
                body = body[:i] + gap.encode() + body[i:]
                notes.append(f"ws@{i}")
        elif op == "ct":
            ct = rng.choice([CT_JSON, "application/json; charset=utf-8", "application/json; charset=UTF-8",
                             'application/json; charset="utf-8"', "application/json; charset=utf-7",
                             "application/json; charset=latin1", "application/json;charset=utf-16",
                             "text/json", "application/json, text/plain", "application/jsonrequest",
                             "application/json; charset=utf-8, application/json; charset=utf-7"])
            notes.append(f"ct={ct}")
        elif op == "bom":
            body = b"\xef\xbb\xbf" + body
            notes.append("bom")
        elif op == "trail":
            body = body + rng.choice([b"\n", b" ", b"\x00", b"{}", b"garbage", b"\xef\xbb\xbf"])
            notes.append("trailing bytes")
        elif op == "case":
            # Flip the case of one key's first letter somewhere in the body.
            keys = [b'"method"', b'"name"', b'"params"', b'"arguments"', b'"text"', b'"kind"']
            k = rng.choice(keys)
            if k in body:
                body = body.replace(k, k[:1] + k[1:2].upper() + k[2:], 1)
                notes.append(f"case {k.decode()}")
        elif op == "pad":
            body = body.replace(b'"jsonrpc"', b'"pad":"' + rng.choice([b"+ACIAfQ-", b"\\u0000", b"\\ud800"])
                                + b'","jsonrpc"', 1)
            notes.append("pad member")
    return ReqCase(f"random:{c.cls}#{n}", f"random:{c.cls}", body, ct, "; ".join(notes))


# Characters another reader may take for the one written: ASCII case, and
# the Unicode simple case folds Go's encoding/json applies.
_LOOKALIKE = {"s": ["S", "\u017f"], "k": ["K", "\u212a"]}


def _spell(rng: random.Random, key: str) -> str:
    """`key` with one to all letters swapped for a folding equivalent."""
    out = list(key)
    for i in rng.sample(range(len(key)), rng.randint(1, len(key))):
        c = key[i]
        choices = _LOOKALIKE.get(c, [c.upper()] if c.isalpha() else [c])
        out[i] = rng.choice(choices)
    return "".join(out)


def _key(rng: random.Random, key: str):
    r = rng.random()
    return Str(key, "all") if r < 0.1 else Str(key, "first") if r < 0.2 else key


def _member(rng: random.Random, key: str, benign, evil) -> list:
    """The pairs for one member: usually just the benign one; sometimes a
    second spelling (folded, escaped or exact) carrying the evil value,
    before or after; sometimes only a folded spelling."""
    r = rng.random()
    if r < 0.55:
        return [(_key(rng, key), benign)]
    if r < 0.65:
        return [(_spell(rng, key), evil)]
    other = rng.choice([_spell(rng, key), key, Str(key, "all"), Str(_spell(rng, key), "all")])
    pair = [(_key(rng, key), benign), (other, evil)]
    return pair if rng.random() < 0.5 else pair[::-1]


def _random_message(rng: random.Random):
    a = Obj([*_member(rng, "text", "hello", "pwned"), *_member(rng, "kind", "safe", "unsafe")])
    evil_args = args(BAD_ARGS)
    p = Obj([*_member(rng, "name", rng.choice([GOOD_TOOL, Str(GOOD_TOOL, "first")]), BAD_TOOL),
             *_member(rng, "arguments", a, evil_args)])
    if rng.random() < 0.1:
        p.pairs.append(("_meta", obj(progressToken=Raw("1"))))
    evil_p = params(BAD_TOOL, evil_args)
    method_benign, method_evil = rng.choice([("tools/call", "tools/call"), ("tools/list", "tools/call"),
                                             ("ping", "tools/call")])
    if method_benign != "tools/call":
        p = evil_p  # whoever reads the evil method reads evil params too
    idf = rng.choice(["1", "1", "1", "1.0", "-0", "1e0", '"1"', "null", "0"])
    pairs = [("jsonrpc", "2.0")]
    if rng.random() < 0.95:
        pairs.append((_key(rng, "id"), Raw(idf)))
    pairs += _member(rng, "method", method_benign, method_evil)
    pairs += _member(rng, "params", p, evil_p)
    if rng.random() < 0.08:
        pairs.insert(rng.randrange(len(pairs) + 1), (rng.choice(["result", "error", _spell(rng, "result")]), obj()))
    if rng.random() < 0.3:
        rng.shuffle(pairs)
    return Obj(pairs)


def _random_generated(rng: random.Random, n: int) -> ReqCase:
    """A message composed from scratch: every member may be respelled,
    duplicated or escaped, then framed, encoded and labelled at random."""
    msgs = [_random_message(rng) for _ in range(rng.choice([1, 1, 1, 1, 2, 3]))]
    node = msgs if len(msgs) > 1 or rng.random() < 0.05 else msgs[0]
    ct = rng.choice([CT_JSON] * 6 + ["application/json; charset=utf-8", "application/json; charset=UTF-8",
                                     'application/json; charset="utf-8"', "application/json; charset=utf-7",
                                     "application/json;charset=UTF-7", "application/json; charset=latin1"])
    if "7" in ct and isinstance(node, Obj):
        # Give a UTF-7 reader a different tool than a UTF-8 reader sees.
        node.pairs.append(("x", utf7_run('","params":{"name":"' + BAD_TOOL + '"},"y":"')))
    style = Style(rng.choice([("",), ("",), (" ", "\n", "\t", "\r\n"), ("\u00a0",)]), rng)
    body = write(node, style).encode()
    if rng.random() < 0.05:
        body = b"\xef\xbb\xbf" + body
    return ReqCase(f"generated#{n}", "generated", body, ct, f"composed at random, seed position {n}")


def random_cases(seed: int, count: int) -> list[ReqCase]:
    """Half mutations of catalogue cases, half messages composed from scratch."""
    rng = random.Random(seed)
    base = [c for c in request_cases() if c.cls != "control"]
    return [_mutate(rng, rng.choice(base), n) if n % 2 else _random_generated(rng, n) for n in range(count)]


# ---- responses ------------------------------------------------------------

def tools_result() -> Obj:
    def tool(name):
        return Obj([("name", name), ("description", f"{name} tool"),
                    ("inputSchema", Obj([("type", "object"), ("properties", obj())]))])
    return Obj([("tools", [tool(GOOD_TOOL), tool(BAD_TOOL)])])


def list_answer(id_token: str) -> str:
    return write(Obj([("jsonrpc", "2.0"), ("id", Raw(id_token)), ("result", tools_result())]))


def sse(*datas: str, eol: str = "\n", field_sep: str = ": ", event: str | None = None) -> bytes:
    out = []
    for d in datas:
        lines = []
        if event is not None:
            lines.append(f"event{field_sep}{event}")
        lines += [f"data{field_sep}{part}" for part in d.split("\n")]
        out.append(eol.join(lines) + eol + eol)
    return "".join(out).encode()


# Response ids a client may match to request id 1 (and -0 to 0): the TS SDK
# compares Number(id), the Python SDK coerces numeric strings to int.
ID_FORMS = [("1", "1"), ("1", '"1"'), ("1", "1.0"), ("1", "1e0"), ("1", "1E0"), ("1", '"01"'), ("1", '" 1"'),
            ("1", "10e-1"), ("0", "-0"), ("0", '"0"'), ("0", "-0.0"), ('"1"', "1"), ('"a"', '"a"'), ("1", "2")]


def response_cases() -> list[RespCase]:
    cases: list[RespCase] = []

    def add(cls, placement, req_id, ct, body, note=""):
        n = sum(c.cls == cls for c in cases)
        cases.append(RespCase(f"{cls}#{n}", cls, placement, req_id, ct, body, note))

    add("control", "json", "1", CT_JSON, list_answer("1").encode(), note="plain JSON list")
    add("control", "sse", "1", "text/event-stream", sse(list_answer("1")), note="plain SSE list")

    for req_id, resp_id in ID_FORMS:
        add("id-form:json", "json", req_id, CT_JSON, list_answer(resp_id).encode(), note=f"request id {req_id}, answer id {resp_id}")
        add("id-form:sse", "sse", req_id, "text/event-stream", sse(list_answer(resp_id)),
            note=f"request id {req_id}, answer id {resp_id}")

    # SSE framing.
    ans = list_answer("1")
    add("sse-bom", "sse", "1", "text/event-stream", b"\xef\xbb\xbf" + sse(ans), note="UTF-8 BOM before the first event")
    add("sse-bom", "sse", "1", "text/event-stream", b"\xef\xbb\xbf" + sse(ans, eol="\r\n"), note="BOM + CRLF")
    add("sse-framing", "sse", "1", "text/event-stream", sse(ans, eol="\r\n"), note="CRLF")
    add("sse-framing", "sse", "1", "text/event-stream", sse(ans, eol="\r"), note="CR only")
    add("sse-framing", "sse", "1", "text/event-stream", sse(ans, field_sep=":"), note="data: without space")
    add("sse-framing", "sse", "1", "text/event-stream", sse(ans, event="message"), note="explicit event: message")
    add("sse-framing", "sse", "1", "text/event-stream",
        sse(ans.replace(',"result"', ',\n"result"')), note="data split over two data: lines")
    add("sse-framing", "sse", "1", "text/event-stream",
        b": comment\n\nid: 7\nretry: 10\n\n" + sse(ans), note="comment, id-only and retry events first")
    add("sse-framing", "sse", "1", "text/event-stream",
        sse('{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}', ans),
        note="list after a notification")
    add("sse-framing", "sse", "1", "text/event-stream",
        sse(write(Obj([("jsonrpc", "2.0"), ("id", Raw("1")), ("result", Obj([("tools", [])]))])), ans),
        note="an empty list, then the real one")
    add("sse-framing", "sse", "1", "text/event-stream", sse(list_answer("99")),
        note="answer id 99 on the POST's own stream")
    add("sse-framing", "sse", "1", "text/event-stream", sse(ans).replace(b"data: ", b"DATA: ", 1) + sse(ans),
        note="upper-case field name, then the list")

    # Content types and JSON forms.
    for ct in ["application/json; charset=utf-8", "APPLICATION/JSON", "application/json ; charset=utf-8",
               "Text/Event-Stream", "text/event-stream; charset=utf-8"]:
        body = sse(ans) if "event-stream" in ct.lower() else ans.encode()
        add("content-type", "json" if "json" in ct.lower() else "sse", "1", ct, body, note=ct)
    add("json-form", "json", "1", CT_JSON, b"\xef\xbb\xbf" + ans.encode(), note="UTF-8 BOM before a JSON answer")
    add("json-form", "json", "1", CT_JSON, ("[" + ans + "]").encode(), note="the answer inside an array")
    add("json-form", "json", "1", CT_JSON,
        ans.replace('"result"', '"Result":{"tools":[]},"result"', 1).encode(), note="folded duplicate result")
    add("json-form", "json", "1", CT_JSON,
        ans.replace('{"tools"', '{"tools":[],"tools"', 1).encode(), note="duplicate tools key, last wins")
    add("json-form", "json", "1", CT_JSON, ans.replace('"tools"', '"\\u0074ools"', 1).encode(), note="escaped tools key")

    # Other streams: the POST answers 202 and the list arrives elsewhere.
    add("stream:get", "get-stream", "1", "text/event-stream", sse(ans), note="list on the GET stream after 202")
    add("stream:get", "get-stream", "1", "text/event-stream", b"\xef\xbb\xbf" + sse(ans), note="GET stream with BOM")
    add("stream:call", "call-stream", "1", "text/event-stream",
        sse(ans, '{"jsonrpc":"2.0","id":2,"result":{"content":[]}}'), note="list inside a tools/call stream")
    add("stream:call", "call-stream", "1", CT_JSON,
        ("[" + ans + ',{"jsonrpc":"2.0","id":2,"result":{"content":[]}}]').encode(),
        note="list in a JSON array answering tools/call")
    add("stream:batch", "batch", "1", CT_JSON, ("[" + ans + "]").encode(), note="batched tools/list, JSON array answer")
    return cases


def random_response_cases(seed: int, count: int) -> list[RespCase]:
    """Tools lists composed at random: placement, id form, framing, BOM and
    content type drawn independently, so combinations nobody listed occur."""
    rng = random.Random(seed)
    equal = {"1": ["1", '"1"', "1.0", "1e0", '"01"', '" 1"', "10e-1", "1.00"], "0": ["0", "-0", '"0"', "-0.0", "0e5"],
             '"1"': ["1", '"1"', '"01"', "1.0"]}
    cases = []
    for n in range(count):
        req_id = rng.choice(["1", "1", "1", "0", '"1"'])
        resp_id = rng.choice(equal[req_id] + ["2", '"x"', "null"])
        ans = list_answer(resp_id)
        placement = rng.choice(["json", "sse", "sse", "get-stream", "call-stream", "batch"])
        as_sse = placement in ("sse", "get-stream") or (placement == "call-stream" and rng.random() < 0.5)
        if as_sse:
            before = rng.choice([[], [], ['{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info"}}'],
                                 ['{"jsonrpc":"2.0","id":2,"result":{"content":[]}}']])
            body = sse(*before, ans, eol=rng.choice(["\n", "\r\n", "\r"]), field_sep=rng.choice([": ", ":"]),
                       event=rng.choice([None, None, "message"]))
            if rng.random() < 0.2:
                body = b": keep-alive\n\n" + body
            ct = rng.choice(["text/event-stream", "text/event-stream; charset=utf-8", "Text/Event-Stream"])
        else:
            text = "[" + ans + "]" if placement == "batch" or rng.random() < 0.2 else ans
            body = text.encode()
            ct = rng.choice([CT_JSON, CT_JSON, "application/json; charset=utf-8", "APPLICATION/JSON"])
        if rng.random() < 0.15:
            body = b"\xef\xbb\xbf" + body
        note = f"{placement}, request id {req_id}, answer id {resp_id}, {ct}"
        cases.append(RespCase(f"resp-generated#{n}", "generated", placement, req_id, ct, body, note))
    return cases
