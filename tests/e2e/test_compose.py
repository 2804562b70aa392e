"""envoy/docker-compose.yaml and envoy/Dockerfile: the compose file parses, the
Envoy config inside the gateway container is `mcpx render`'s output for the
mounted mcpx.yaml (no hand-kept Envoy file), and that mcpx.yaml serves the
quickstart. No Docker engine runs here, so the containers' commands are run
directly with the same arguments."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import ENVOY_BIN, MCPX_BIN, ROOT, WASM, denied, jsonrpc

ENVOY_DIR = ROOT / "envoy"
COMPOSE = ENVOY_DIR / "docker-compose.yaml"
DOCKERFILE = ENVOY_DIR / "Dockerfile"


def compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose` (v1), whichever works here."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if m:
            current = m.group(1)
            stages[current] = []
        elif current:
            stages[current].append(line)
    return stages


def exec_form(instr: str, keyword: str) -> list[str]:
    return json.loads(instr[len(keyword):].strip())


def gateway_argv() -> tuple[list[str], dict[str, str]]:
    """The gateway container's argv (ENTRYPOINT + compose command) and its bind mounts."""
    svc = compose()["services"]["gateway"]
    stage = dockerfile_stages()[svc["build"]["target"]]
    entry = next(exec_form(i, "ENTRYPOINT") for i in stage if i.upper().startswith("ENTRYPOINT"))
    command = svc.get("command") or next(exec_form(i, "CMD") for i in stage if i.upper().startswith("CMD"))
    if isinstance(command, str):
        command = shlex.split(command)
    mounts = {}
    for v in svc.get("volumes", []):
        src, dst = v.split(":")[:2]
        mounts[dst] = str((ENVOY_DIR / src).resolve())
    return entry + command, mounts


def test_compose_config_parses():
    cli = compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
    r = subprocess.run([*cli, "-f", str(COMPOSE), "config"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    services = yaml.safe_load(r.stdout)["services"]
    assert {"gateway", "demo"} <= set(services)
    ports = services["gateway"]["ports"][0]
    assert str(ports.get("published", ports)).startswith("8080"), ports


def test_compose_and_dockerfile_agree():
    c = compose()
    stages = dockerfile_stages()
    # Only the quickstart runs by default; the rest is opt-in (`--profile monitoring`).
    raw = c["services"]
    for name, svc in raw.items():
        assert ("profiles" in svc) == (name not in {"gateway", "demo"}), name
    assert {n for n, s in raw.items() if "monitoring" in s.get("profiles", [])} == {"prometheus", "grafana"}
    for name, svc in c["services"].items():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            assert (ENVOY_DIR / src).exists(), f"service {name} mounts {src}, which does not exist"
        if "build" not in svc:
            continue  # a published image (the monitoring profile)
        build = svc["build"]
        assert (ENVOY_DIR / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert build["target"] in stages, f"service {name}: no stage {build['target']} in envoy/Dockerfile"
    # Every COPY from the build context names a file in the repository.
    for stage, instrs in stages.items():
        for i in instrs:
            if i.upper().startswith("COPY") and "--from=" not in i:
                for src in i.split()[1:-1]:
                    assert (ROOT / src).exists(), f"stage {stage}: COPY {src} does not exist"
    # The build context leaves out build outputs (gigabytes of target/).
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target/" in ignored and ".venv/" in ignored


def test_gateway_container_renders_envoy_config_from_the_mounted_mcpx_yaml(tmp_path):
    argv, mounts = gateway_argv()
    # The container runs `mcpx run`: Envoy's config is rendered at start-up,
    # never a hand-written file.
    assert Path(argv[0]).name == "mcpx" and argv[1] == "run", argv
    assert not any(dst.endswith((".json", "envoy.yaml")) and "envoy" in dst for dst in mounts), mounts
    config_in_container = argv[argv.index("-c") + 1]
    assert mounts.get(config_in_container) == str(ENVOY_DIR / "mcpx.yaml"), (config_in_container, mounts)

    # `mcpx render` with the container's own arguments (host paths for the
    # config and filter) is what Envoy gets there; it must be a valid config.
    args = argv[2:]
    args[args.index("-c") + 1] = str(ENVOY_DIR / "mcpx.yaml")
    rendered = subprocess.run([MCPX_BIN, "render", *args, "--wasm", WASM, "--format", "json"],
                              check=True, capture_output=True, text=True).stdout
    doc = json.loads(rendered)
    listener = doc["static_resources"]["listeners"][0]["address"]["socket_address"]
    assert (listener["address"], listener["port_value"]) == ("0.0.0.0", 8080)
    assert doc["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    path = tmp_path / "envoy.json"
    path.write_text(rendered)
    r = subprocess.run([ENVOY_BIN, "--mode", "validate", "-c", str(path), "--log-level", "error"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr

    # The image's env points `mcpx run` at the files the image really has.
    gw = dockerfile_stages()[compose()["services"]["gateway"]["build"]["target"]]
    env = " ".join(i for i in gw if i.upper().startswith("ENV"))
    copies = " ".join(i for i in gw if i.upper().startswith("COPY"))
    wasm_path = re.search(r"MCPX_WASM=(\S+)", env).group(1)
    assert str(Path(wasm_path).parent) + "/" in copies and "mcpx_filter.wasm" in copies
    assert "ENVOY_BIN=/usr/local/bin/envoy" in env


def test_compose_mcpx_yaml_serves_the_quickstart(demo, gateway_factory):
    """envoy/mcpx.yaml as the gateway container would run it, with the `demo`
    service's address replaced by the local demo server."""
    text = (ENVOY_DIR / "mcpx.yaml").read_text()
    assert "http://demo:3001/mcp" in text
    gw = gateway_factory(text.replace("http://demo:3001/mcp", demo.url))
    r = gw.post("demo", jsonrpc("tools/list"))
    assert r.status == 200, r.text
    assert [t["name"] for t in r.json()["result"]["tools"]] == ["echo", "read_file"]
    demo.reset()
    r = gw.post("demo", jsonrpc("tools/call", {"name": "dangerous_delete", "arguments": {"path": "/"}}))
    assert denied(r), r.text
    r = gw.post("demo", jsonrpc("tools/call", {"name": "read_file", "arguments": {"path": "/etc/passwd"}}))
    assert denied(r) and "prefix" in r.json()["error"]["message"], r.text
    assert demo.received() == []
    r = gw.post("demo", jsonrpc("tools/call", {"name": "read_file", "arguments": {"path": "/data/a"}}))
    assert r.status == 200, r.text
