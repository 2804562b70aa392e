"""A JSON writer that can write what json.dumps cannot: duplicate keys, keys
and strings spelled with escapes, numbers in any lexical form, and chosen
whitespace. Hostile variants are built as trees of these nodes and written
byte for byte."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field


@dataclass
class Raw:
    """A token written as is (e.g. the number forms 1.0, -0, 1e0)."""
    text: str


@dataclass
class Str:
    """A string; `escape` chooses which characters are written as \\uXXXX."""
    value: str
    escape: str = "none"  # none | all | first

    def write(self) -> str:
        if self.escape == "none":
            return json.dumps(self.value, ensure_ascii=False)
        if self.escape == "all":
            return '"' + "".join(_u(c) for c in self.value) + '"'
        return '"' + _u(self.value[0]) + json.dumps(self.value[1:], ensure_ascii=False)[1:]


def _u(c: str) -> str:
    cp = ord(c)
    if cp > 0xFFFF:
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"
    return f"\\u{cp:04x}"


@dataclass
class Obj:
    """An object as an ordered list of (key, value) pairs: keys may repeat."""
    pairs: list = field(default_factory=list)

    def get(self, key: str):
        for k, v in self.pairs:
            if (k.value if isinstance(k, Str) else k) == key:
                return v
        return None


def obj(**kw) -> Obj:
    return Obj([(k, v) for k, v in kw.items()])


@dataclass
class Style:
    """Whitespace between tokens; `ws` is a list of strings to pick from."""
    ws: tuple = ("",)
    rng: random.Random | None = None

    def gap(self) -> str:
        if self.rng is None or len(self.ws) == 1:
            return self.ws[0]
        return self.rng.choice(self.ws)


def write(node, style: Style | None = None) -> str:
    s = style or Style()
    g = s.gap
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, Str):
        return node.write()
    if isinstance(node, str):
        return json.dumps(node, ensure_ascii=False)
    if isinstance(node, Obj):
        items = []
        for k, v in node.pairs:
            key = k.write() if isinstance(k, Str) else json.dumps(k, ensure_ascii=False)
            items.append(f"{g()}{key}{g()}:{g()}{write(v, s)}{g()}")
        return "{" + ",".join(items) + "}"
    if isinstance(node, list):
        return "[" + ",".join(f"{g()}{write(v, s)}{g()}" for v in node) + "]"
    return json.dumps(node)


def utf7_run(text: str) -> str:
    """`text` as one UTF-7 base64 run (+...-): plain ASCII to a UTF-8 reader,
    `text` itself to a UTF-7 reader."""
    import base64
    return "+" + base64.b64encode(text.encode("utf-16-be")).decode().rstrip("=") + "-"
