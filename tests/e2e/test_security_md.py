"""SECURITY.md's threat table says which tests prove each defence, and that
"every test named runs in `make test`". This holds it to that: every name in
the table's "proved by" column must resolve to something `make test` runs:

  `test_x.py`            a file under tests/e2e with collected tests
  `test_name`            a collected pytest test (any parameters), or a Rust #[test]
  fuzz target `name`     a [[bin]] of fuzz/Cargo.toml (the smoke run runs every one)
  `name` (other words)   a Rust #[test] fn (native tests), or a fuzz target
  `make x`               a Makefile target;  `dir/` or `file.ext`  an existing path

A name that resolves to nothing fails this test with the row it is in, so a
renamed or deleted test cannot leave SECURITY.md claiming proof it no longer
has."""

from __future__ import annotations

import re
import subprocess
import sys

from harness import ROOT

SECURITY = ROOT / "SECURITY.md"


def proof_cells() -> list[tuple[str, str]]:
    """(threat, "proved by" cell) for every row of the threat table."""
    rows = []
    header = None
    for line in SECURITY.read_text().splitlines():
        if not line.startswith("|"):
            header = None if not line.strip() else header
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if set(line) <= set("|-: "):
            continue
        if "proved by" in header:
            rows.append((cells[0], cells[header.index("proved by")]))
    return rows


def pytest_names() -> tuple[set[str], set[str]]:
    """(collected test function names, files with collected tests)."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          str(ROOT / "tests" / "e2e")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    assert ids, f"pytest collected nothing:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    names = {re.sub(r"\[.*\]$", "", i.split("::")[-1]) for i in ids}
    # A parametrized case (e.g. a policy vector) may be named by its id.
    names |= {m.group(1) for i in ids if (m := re.search(r"\[(.*)\]$", i))}
    files = {i.split("::")[0].rsplit("/", 1)[-1] for i in ids}
    return names, files


def rust_tests() -> set[str]:
    """Names of every #[test] fn (not #[ignore]d) in the workspace sources."""
    names = set()
    for path in ROOT.glob("**/*.rs"):
        if any(part in ("target", ".venv", "fuzz") for part in path.relative_to(ROOT).parts):
            continue
        text = path.read_text(errors="replace")
        for m in re.finditer(r"#\[test\]\s*((?:#\[[^\]]*\]\s*)*)(?:async\s+)?fn\s+(\w+)", text):
            if "ignore" not in m.group(1):
                names.add(m.group(2))
    return names


def fuzz_targets() -> set[str]:
    return set(re.findall(r'\[\[bin\]\]\s*name\s*=\s*"([^"]+)"', (ROOT / "fuzz" / "Cargo.toml").read_text()))


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z0-9_-]+):", (ROOT / "Makefile").read_text(), re.M))


def test_every_test_security_md_names_exists_and_runs():
    rows = proof_cells()
    assert len(rows) >= 10, f"the threat table was not found in SECURITY.md ({len(rows)} rows)"
    py_names, py_files = pytest_names()
    rust, fuzz, make = rust_tests(), fuzz_targets(), make_targets()
    missing = []
    for threat, cell in rows:
        for m in re.finditer(r"(fuzz targets?\s+)?`([^`]+)`", cell):
            name, is_fuzz = m.group(2).strip(), bool(m.group(1))
            if is_fuzz:
                ok = name in fuzz
            elif name.startswith("make "):
                ok = name.split()[1] in make
            elif name.endswith(".py") and "/" not in name:
                ok = name in py_files
            elif "/" in name or re.search(r"\.\w+$", name):
                ok = (ROOT / name).exists()
            elif re.fullmatch(r"\d+", name):
                ok = True  # a status code, e.g. "(`413` cases)"
            elif re.fullmatch(r"\w+", name):
                ok = name in py_names or name in rust or name in fuzz
            else:
                ok = False
            if not ok:
                missing.append(f"  {name!r} (row: {threat[:60]})")
    assert not missing, ("SECURITY.md names tests that do not exist or are not collected; rename them in the "
                         "table or restore the tests:\n" + "\n".join(missing))
