"""`tests/bench/bench.py --compare OLD.wasm NEW.wasm` (two filter builds beside
plain Envoy in one interleaved run): each build is really loaded by its own
VM, and the table's arithmetic is right. The comparison itself is a
benchmark, never part of `make test`; this only guards its setup.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench  # noqa: E402


def test_each_build_gets_its_own_vm_and_every_plugin_loads_it():
    plugin = {"configuration": {"value": "servers: []"},
              "vm_config": {"vm_id": "mcpx", "code": {"local": {"filename": "/shipped.wasm"}}}}
    bootstrap = {"a": [dict(plugin)], "b": {"c": dict(plugin)}}
    out = bench.with_wasm(bootstrap, Path("/tmp/new.wasm"), "new")
    plugins = list(bench._wasm_plugins(out))
    assert len(plugins) == 2
    for p in plugins:
        assert p["vm_config"]["code"]["local"]["filename"] == "/tmp/new.wasm"
        # Another vm_id: two builds in one process would otherwise be one VM.
        assert p["vm_config"]["vm_id"] == "mcpx-new"
    # The rendered bootstrap is left as it was.
    assert list(bench._wasm_plugins(bootstrap))[0]["vm_config"]["code"]["local"]["filename"] == "/shipped.wasm"


def test_compare_table_arithmetic():
    def run(v, rnd, cpu):
        return {"variant": v, "round": rnd, "cpu_us_envoy": cpu, "rps": 1000.0, "rss_after_kib": 100 * 1024}

    def idle(v, rnd, rss_mib):
        return {"variant": v, "round": rnd, "ready_s": 1.0, "VmRSS": rss_mib * 1024, "RssAnon": rss_mib * 1024,
                "RssFile": 0, "tcmalloc": {"allocated": 1.0}}

    out = {"when": "now", "config": "full", "concurrency": 1, "rounds": 3, "seconds": 1, "conns": 16,
           "loadavg_start": "0", "loadavg_end": "0", "old_bytes": 2000, "new_bytes": 1000,
           "runs": [run("plain", r, 50) for r in range(3)]
           + [run("old", r, c) for r, c in enumerate((100, 120, 110))]
           + [run("new", r, c) for r, c in enumerate((90, 125, 100))],
           "idle": [idle("plain", r, 60) for r in range(3)] + [idle("old", r, 110) for r in range(3)]
           + [idle("new", r, m) for r, m in enumerate((100, 104, 102))]}
    table = "\n".join(bench.compare_markdown(out))
    assert "| Envoy CPU µs/request | 50.0 | 110.0 | 100.0 |" in table  # medians
    assert "| RSS idle (MiB) | 60.0 | 110.0 (+50.0) | 102.0 (+42.0) |" in table
    # Per round, new minus old of the same round (the noise-robust figure).
    assert table.endswith("new − old CPU µs/request per round: -10.0, +5.0, -10.0")
