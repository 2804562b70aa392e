"""The `make dist` layout: `mcpx` finds the filter next to itself, so dist/
can be copied anywhere (docs/deployment.md). `make dist` itself copies the
two files the e2e build produced and writes the .sha256 (checked here too)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

from harness import MCPX_BIN, ROOT, WASM


def test_dist_layout_finds_the_filter_next_to_mcpx(tmp_path):
    shutil.copy2(MCPX_BIN, tmp_path / "mcpx")
    shutil.copy2(WASM, tmp_path / "mcpx_filter.wasm")
    cfg = tmp_path / "mcpx.yaml"
    cfg.write_text("servers:\n  - name: demo\n    url: http://127.0.0.1:3001/mcp\n")
    env = {k: v for k, v in os.environ.items() if k != "MCPX_WASM"}
    out = subprocess.run([str(tmp_path / "mcpx"), "render", "-c", str(cfg), "--format", "json"],
                         check=True, capture_output=True, text=True, env=env).stdout
    assert f'"filename": "{tmp_path / "mcpx_filter.wasm"}"' in out


def test_dist_checksum_matches():
    """`make e2e` (and so `make test`) runs `make dist` first."""
    dist = ROOT / "dist"
    assert (dist / "mcpx_filter.wasm.sha256").exists(), "dist/ is missing: run `make dist` (make e2e does)"
    digest, name = (dist / "mcpx_filter.wasm.sha256").read_text().split()
    assert name == "mcpx_filter.wasm"
    assert hashlib.sha256((dist / name).read_bytes()).hexdigest() == digest
    assert (dist / "mcpx").stat().st_mode & 0o111
    # dist/ holds this build, not a stale one.
    assert (dist / name).read_bytes() == open(WASM, "rb").read(), "dist/ is stale: run `make dist`"
    assert (dist / "mcpx").read_bytes() == open(MCPX_BIN, "rb").read(), "dist/ is stale: run `make dist`"
