"""docs/architecture.md stays true to the tree, and the repository is
self-contained. No Envoy needed: these read files only.

- no tracked file cites a document that is not in the repository;
- every module of the filter and of the `mcpx` binary is on the map;
- every test the Envoy-facts table names as proof exists.
"""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCH = ROOT / "docs" / "architecture.md"

# Built from pieces so this file does not match itself.
OUTSIDE_DOCS = [
    re.compile(r"\bSPEC(\.md| §)"),
    re.compile("ENVOY" + "-FACTS"),
    re.compile("TOOL" + r"CHAIN\.md"),
    re.compile(r"\.\./" + "shared/"),
    re.compile("/work/" + "shared"),
]


def tracked_text_files():
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in out.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file() or path.suffix in {".png", ".lock"}:
            continue
        try:
            yield name, path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue


def test_no_file_cites_a_document_outside_the_repository():
    hits = []
    for name, text in tracked_text_files():
        for n, line in enumerate(text.splitlines(), 1):
            if any(p.search(line) for p in OUTSIDE_DOCS):
                hits.append(f"{name}:{n}: {line.strip()[:120]}")
    assert not hits, "state the fact or link a page under docs/ instead:\n" + "\n".join(hits)


def modules(src: Path):
    """Every module file under src, as the path the map names (dir/ for a
    directory's mod.rs, dir/file.rs inside one)."""
    for f in sorted(src.rglob("*.rs")):
        yield f.relative_to(src).as_posix()


def test_every_module_is_on_the_map():
    text = ARCH.read_text()
    missing = []
    for src in (ROOT / "filter" / "src", ROOT / "stdio-bridge" / "src"):
        for rel in modules(src):
            parent, _, leaf = rel.rpartition("/")
            if not parent:
                named = f"`{leaf}`" in text
            else:
                # In a directory: the file as `dir/file.rs`, or its name in the
                # directory's own row (`bridge/` ... `ids.rs`).
                row = next((l for l in text.splitlines() if l.startswith(f"| `{parent}/")), "")
                named = f"`{rel}`" in text or f"`{leaf}`" in row
            if not named:
                missing.append(f"{src.relative_to(ROOT)}/{rel}")
    assert not missing, "add a line for each to docs/architecture.md's map: " + ", ".join(missing)


def test_the_binarys_layout_section_names_every_directory_and_top_level_module():
    """main.rs opens with a "Layout" tree of stdio-bridge/src/: each directory
    and each top-level file must be on it, so the tree cannot go stale."""
    src = ROOT / "stdio-bridge" / "src"
    main = (src / "main.rs").read_text()
    layout = main.split("//! # Layout", 1)[1].split("//! ```", 2)[1]
    named = set(re.findall(r"^//!\s+([a-z_]+(?:/|\.rs))", layout, re.M))
    wanted = {f.name for f in src.glob("*.rs")} | {f"{d.name}/" for d in src.rglob("*") if d.is_dir()}
    missing = sorted(wanted - named)
    assert not missing, "add these to the Layout section at the top of stdio-bridge/src/main.rs: " + ", ".join(missing)


def test_the_filters_layout_section_names_every_directory_and_top_level_module():
    """lib.rs opens with a "Layout" tree of filter/src/: each directory and
    each top-level file must be on it, so the tree cannot go stale."""
    src = ROOT / "filter" / "src"
    lib = (src / "lib.rs").read_text()
    layout = lib.split("//! # Layout", 1)[1].split("//! ```", 2)[1]
    named = set(re.findall(r"^//!\s+([a-z_]+(?:/|\.rs))", layout, re.M))
    wanted = {f.name for f in src.glob("*.rs")} | {f"{d.name}/" for d in src.iterdir() if d.is_dir()}
    missing = sorted(wanted - named)
    assert not missing, "add these to the Layout section at the top of filter/src/lib.rs: " + ", ".join(missing)


def test_every_test_named_as_proof_exists():
    text = ARCH.read_text()
    section = text.split("## The Envoy facts the design depends on", 1)[1].split("\n## ", 1)[0]
    pytest_refs = re.findall(r"`(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)`", section)
    rust_refs = re.findall(r"`([a-z_]+\.rs)` `([a-z0-9_]+)`", section)
    assert len(pytest_refs) >= 10 and len(rust_refs) >= 3, "the table lost its proofs"
    missing = []
    for file, name in pytest_refs:
        path = ROOT / "tests" / "e2e" / file
        if not path.is_file() or not re.search(rf"^(async )?def {name}\(", path.read_text(), re.M):
            missing.append(f"{file}::{name}")
    for file, name in rust_refs:
        found = [p for p in (ROOT / "stdio-bridge" / "src").rglob(file)] + [p for p in (ROOT / "filter" / "src").rglob(file)]
        if not any(re.search(rf"\bfn {name}\(", p.read_text()) for p in found):
            missing.append(f"{file} {name}")
    assert not missing, "docs/architecture.md names tests that do not exist: " + ", ".join(missing)


def core_imports():
    """module -> the crate modules its non-test code names (`crate::x`), for
    the host-independent core (glue/ is the layer on top and may use any)."""
    src = ROOT / "filter" / "src"
    graph = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src)
        if rel.parts[0] == "glue" or f.stem.endswith("tests") or f.name in {"lib.rs", "tests.rs"}:
            continue
        module = rel.parts[0].removesuffix(".rs")
        code = f.read_text().split("#[cfg(test)]", 1)[0]
        code = "\n".join(l for l in code.splitlines() if not l.lstrip().startswith("//"))
        graph.setdefault(module, set()).update(set(re.findall(r"crate::([a-z_]+)", code)) - {module})
    return graph


def test_the_core_has_no_import_cycles():
    graph = core_imports()
    assert {"request", "names", "gateway", "auth"} <= graph.keys()
    assert graph["request"] <= {"names"} and not graph["names"], "request/ and names.rs are leaves"
    cycles = []

    def visit(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif len(path) < len(graph):
                visit(nxt, path + [nxt])

    for m in sorted(graph):
        visit(m, [m])
    assert not cycles, "import cycles in the core: " + "; ".join(sorted(set(cycles))[:10])
