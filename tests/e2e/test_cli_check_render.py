"""`mcpx check` and `mcpx render` as a user runs them: `check` says `valid`
only when `run` would start (every `${VAR}` resolved, named with its key when
it is not), and `render --wasm PATH` writes PATH as given, even when it does
not exist on the rendering machine (docs/configuration.md, docs/deployment.md)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from harness import ENVOY_BIN, MCPX_BIN, WASM, free_port

AUTH_VAR = "MCPX_TEST_UNSET_GW_TOKEN"
CHILD_VAR = "MCPX_TEST_UNSET_CHILD_TOKEN"

CONFIG = f"""
servers:
  - name: api
    url: http://127.0.0.1:9/mcp
  - name: tools
    transport: stdio
    command: /bin/true
    env: {{ TOKEN: "${{{CHILD_VAR}}}" }}
auth: {{ enabled: true, token: "${{{AUTH_VAR}}}" }}
"""


def mcpx(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in (AUTH_VAR, CHILD_VAR, "MCPX_WASM")}
    return subprocess.run([MCPX_BIN, *args], capture_output=True, text=True, env={**base, **(env or {})},
                          timeout=timeout)


def test_check_resolves_env_like_run(tmp_path: Path):
    cfg = tmp_path / "mcpx.yaml"
    cfg.write_text(CONFIG)

    # Neither variable set: the stdio child's reference is named with its key.
    r = mcpx("check", "-c", str(cfg))
    assert r.returncode == 1 and "valid" not in r.stdout, (r.stdout, r.stderr)
    assert f"servers.tools.env.TOKEN: environment variable {CHILD_VAR} is not set" in r.stderr, r.stderr

    # The child's set, the credential not: the credential's key and variable.
    r = mcpx("check", "-c", str(cfg), env={CHILD_VAR: "x"})
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"auth.token: environment variable {AUTH_VAR} is not set" in r.stderr, r.stderr
    assert "mcpx check --no-env" in r.stderr

    # `run` refuses the same config with the same words, before Envoy starts.
    run = mcpx("run", "-c", str(cfg), "--listen", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{free_port()}",
               "--control", str(tmp_path / "ctl" / "control.sock"), "--wasm", WASM, "--envoy", ENVOY_BIN,
               "--workdir", str(tmp_path / "run"), env={CHILD_VAR: "x"})
    assert run.returncode != 0, run.stderr
    assert f"auth.token: environment variable {AUTH_VAR} is not set" in run.stderr, run.stderr

    # Both set: valid.
    r = mcpx("check", "-c", str(cfg), env={CHILD_VAR: "x", AUTH_VAR: "secret"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{cfg}: valid (2 servers)"

    # Without the environment (CI for a config that runs elsewhere): valid, and it says so.
    r = mcpx("check", "--no-env", "-c", str(cfg))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{cfg}: valid (2 servers; environment not checked)"

    # --no-env still checks everything else.
    cfg.write_text(CONFIG.replace("url: http://127.0.0.1:9/mcp", "url: ftp://nowhere"))
    r = mcpx("check", "--no-env", "-c", str(cfg))
    assert r.returncode == 1 and "servers.api.url" in r.stderr, r.stderr


def test_check_refuses_a_workdir_run_could_not_use(tmp_path: Path):
    cfg = tmp_path / "mcpx.yaml"
    cfg.write_text(f"servers:\n  - name: t\n    transport: stdio\n    command: /bin/true\n"
                   f"    workdir: {tmp_path / 'missing'}\n")
    r = mcpx("check", "-c", str(cfg))
    assert r.returncode == 1 and "servers.t.workdir" in r.stderr, r.stderr
    assert mcpx("check", "--no-env", "-c", str(cfg)).returncode == 0


def test_render_keeps_wasm_path_as_given(tmp_path: Path):
    cfg = tmp_path / "mcpx.yaml"
    cfg.write_text("servers:\n  - name: api\n    url: http://127.0.0.1:9/mcp\n")
    remote = "/etc/envoy/mcpx_filter.wasm"
    assert not Path(remote).exists()
    for extra in ([], ["--snippets"]):
        r = mcpx("render", *extra, "-c", str(cfg), "--wasm", remote, "--format", "json")
        assert r.returncode == 0, r.stderr
        assert r.stderr == "", r.stderr
        text = json.loads(r.stdout)
        names = sorted(set(_filenames(text)))
        assert names == [remote], names


def _filenames(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "filename" and isinstance(x, str) and x.endswith(".wasm"):
                yield x
            else:
                yield from _filenames(x)
    elif isinstance(v, list):
        for x in v:
            yield from _filenames(x)
