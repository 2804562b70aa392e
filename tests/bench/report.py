"""Writes docs/performance.md and its plots from the results of bench.py (and
the native micro-benchmarks and the bridge benchmark, when present).

The hand-written part of the page (analysis, host-call counts) lives in
tests/bench/notes.md and is appended verbatim, so regenerating the numbers
never loses it. `python3 tests/bench/bench.py --only-doc RESULTS.json`
re-renders the page from saved results without running anything.
"""

from __future__ import annotations

import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

TARGET_RATIO = 0.80
TARGET_P99_ADDED_MS = 1.0
NAMES = {"a": "(a) direct", "b": "(b) Envoy, no wasm", "c": "(c) full gateway"}


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_us(us) -> str:
    if us is None:
        return "–"
    if abs(us) >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def fmt_ns(ns) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def fmt_num(x, digits=1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def summarise_overhead(runs: list[dict]) -> dict:
    """Median over rounds per (variant, connections), plus per-round ratios."""
    out: dict = {}
    conns = sorted({r["conns"] for r in runs})
    for c in conns:
        row = {}
        for v in "abc":
            rs = [r for r in runs if r["conns"] == c and r["variant"] == v]
            row[v] = {
                "rps": med([r["rps"] for r in rs]),
                "p50": med([r["p50_us"] for r in rs]),
                "p99": med([r["p99_us"] for r in rs]),
                "cpu_envoy": med([r.get("cpu_us_envoy") for r in rs]),
                "cpu_demo": med([r.get("cpu_us_demo") for r in rs]),
                "errors": sum(r["errors"] for r in rs),
                "n": len(rs),
            }
        rounds = sorted({r["round"] for r in runs if r["conns"] == c})
        ratios, p50_add, p99_add, cpu_add = [], [], [], []
        for rnd in rounds:
            b = next((r for r in runs if r["conns"] == c and r["variant"] == "b" and r["round"] == rnd), None)
            g = next((r for r in runs if r["conns"] == c and r["variant"] == "c" and r["round"] == rnd), None)
            if b and g and b["rps"]:
                ratios.append(g["rps"] / b["rps"])
                p50_add.append(g["p50_us"] - b["p50_us"])
                p99_add.append(g["p99_us"] - b["p99_us"])
                cpu_add.append(g.get("cpu_us_envoy", 0) - b.get("cpu_us_envoy", 0))
        row["ratio"] = med(ratios)
        row["ratio_range"] = (min(ratios), max(ratios)) if ratios else None
        row["p50_added"] = med(p50_add)
        row["p99_added"] = med(p99_add)
        row["cpu_added"] = med(cpu_add)
        out[c] = row
    return out


def linear_fit(xs, ys):
    """y = a + b x by least squares on the relative error (weights 1/y²), so
    the small lists count as much as the large ones; and the largest relative
    deviation of a point from the line."""
    ws = [1 / max(abs(y), 1e-9) ** 2 for y in ys]
    sw = sum(ws)
    mx = sum(w * x for w, x in zip(ws, xs)) / sw
    my = sum(w * y for w, y in zip(ws, ys)) / sw
    sxx = sum(w * (x - mx) ** 2 for w, x in zip(ws, xs))
    sxy = sum(w * (x - mx) * (y - my) for w, x, y in zip(ws, xs, ys))
    b = sxy / sxx if sxx else 0.0
    a = my - b * mx
    dev = max(abs(y - (a + b * x)) / max(abs(y), 1e-9) for x, y in zip(xs, ys))
    return a, b, dev


def summarise_lists(runs: list[dict]) -> list[dict]:
    rows = []
    for n in sorted({r["tools"] for r in runs}):
        b = next(r for r in runs if r["tools"] == n and r["variant"] == "b")
        c = next(r for r in runs if r["tools"] == n and r["variant"] == "c")
        rows.append({
            "tools": n,
            "kib": b["bytes"] / max(b["requests"], 1) / 1024,
            "kib_c": c["bytes"] / max(c["requests"], 1) / 1024,
            "b_us": b["cpu_us_envoy"], "c_us": c["cpu_us_envoy"],
            "inspect_us": c["cpu_us_envoy"] - b["cpu_us_envoy"],
            "b_p50": b["p50_us"], "c_p50": c["p50_us"],
            "b_req": b["requests"], "c_req": c["requests"],
            "errors": b["errors"] + c["errors"],
        })
    return rows


def plot_overhead(summary: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conns = sorted(summary)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"a": ("tab:green", "o"), "b": ("tab:blue", "s"), "c": ("tab:red", "^")}
    for v in "abc":
        color, marker = styles[v]
        ax1.plot(conns, [summary[c][v]["rps"] for c in conns], marker=marker, color=color, label=NAMES[v])
        ax2.plot(conns, [summary[c][v]["p99"] / 1000 for c in conns], marker=marker, color=color, label=NAMES[v])
    for ax, title, unit in ((ax1, "Throughput (POST tools/call)", "requests / s"), (ax2, "p99 latency", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(conns)
        ax.set_xticklabels([str(c) for c in conns])
        ax.set_xlabel("concurrent connections (wrk)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    ax1.legend()
    for c in conns:
        r = summary[c]["ratio"]
        if r is not None:
            ax1.annotate(f"c/b {r:.2f}", (c, summary[c]["c"]["rps"]), textcoords="offset points", xytext=(4, 6),
                         fontsize=8, color="tab:red")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lists(rows: list[dict], fit, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["tools"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(xs, [max(r["inspect_us"], 0.1) for r in rows], "o-", color="tab:red", label="filter CPU per response")
    ax.plot(xs, [max(r["b_us"], 0.1) for r in rows], "s--", color="tab:blue", label="Envoy without wasm")
    a, b, _ = fit
    ax.plot(xs, [max(a + b * x, 0.1) for x in xs], ":", color="black", label=f"linear fit {a:.0f} + {b:.2f}·N µs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tools in the tools/list response")
    ax.set_ylabel("CPU µs per response")
    ax.set_title("tools/list inspection cost")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# The ladder adds one stage at a time; every other variant is "full minus X".
LADDER = ["plain", "noop", "headers", "body", "parse", "full_ablation_build"]
# What each "full minus X" variant is compared with: the build it shares.
BASE_OF = {"skip": "full_ablation_build", "config": "full"}


def summarise_ablation(ab: dict) -> dict:
    """Per variant: median Envoy CPU µs/request and req/s, and the medians of
    the per-round differences that define each part's cost."""
    runs = ab["runs"]
    rounds = sorted({r["round"] for r in runs})
    by = {(r["variant"], r["round"]): r for r in runs}
    out = {}
    for v in ab["variants"]:
        k = v["key"]
        rs = [r for r in runs if r["variant"] == k]
        out[k] = {"cpu": med([r["cpu_us_envoy"] for r in rs]), "rps": med([r["rps"] for r in rs]),
                  "errors": sum(r["errors"] for r in rs)}

    def diff(a: str, b: str):
        d = [by[(a, n)]["cpu_us_envoy"] - by[(b, n)]["cpu_us_envoy"] for n in rounds if (a, n) in by and (b, n) in by]
        return med(d)

    def ratio(a: str, b: str):
        d = [by[(a, n)]["rps"] / by[(b, n)]["rps"] for n in rounds if (a, n) in by and (b, n) in by and by[(b, n)]["rps"]]
        return med(d)

    for v in ab["variants"]:
        k = v["key"]
        out[k]["cpu_vs_plain"] = (out[k]["cpu"] / out["plain"]["cpu"]) if out["plain"]["cpu"] else None
        out[k]["rps_vs_plain"] = ratio(k, "plain")
        if k in LADDER and k != "plain":
            out[k]["part"] = diff(k, LADDER[LADDER.index(k) - 1])
        elif k.startswith("no_"):
            out[k]["part"] = diff(BASE_OF.get(v["how"], "full"), k)
        elif k != "plain":
            out[k]["part"] = diff(k, "plain")
    return out


def fmt_start(seconds) -> str:
    return "–" if seconds is None else f"{seconds:.1f} s"


def ablation_section(ab: dict, w) -> None:
    s = summarise_ablation(ab)
    labels = {v["key"]: v["label"] for v in ab["variants"]}
    w("## Ablation: what each part of the gateway costs")
    w("")
    if ab.get("when"):
        w(f"Measured {ab['when']}" + (f" at `{ab['git']}`" if ab.get("git") else "")
          + " (its own run, `bench.py --only-ablation`).")
        w("")
    w(f"One Envoy per variant (`--concurrency 1`, all pinned to the Envoy CPU, wrk and the backend on the other), "
      f"the same 125-byte `tools/call` at {ab['conns']} connections, {ab['rounds']} interleaved rounds of "
      f"{ab['seconds']} s (every variant once per round, after a 1 s warm-up). Load average "
      f"{ab.get('loadavg_start', '?')} at the start. **Method: Envoy CPU time per request** (on-CPU time of all "
      f"its threads from `/proc/<pid>/task/*/schedstat`, in ns, over the run ÷ requests completed), not wall-clock req/s: CPU time counts only "
      f"Envoy's own work, so it survives a machine busy with other jobs far better than throughput does (a busy "
      f"machine still inflates it through cache and frequency effects, so compare ratios within one run). "
      f"Instruction counts were tried: this VM exposes no hardware counters to `perf`, and Envoy with V8 under "
      f"callgrind did not get ready within 7 minutes.")
    w("")
    w("The `skip` variants run the filter built with the benchmark-only cargo feature `bench-ablation` "
      "(`src/ablation.rs`; the shipped `.wasm` never has it): a marker comment on the first line of its "
      "configuration switches parts of the request path off. The `config` variants run the shipped `.wasm` with "
      "the benchmark config minus one feature. \"part\" is the median over rounds of the per-round CPU "
      "difference: for the ladder (noop → headers → body → parse → full) the step from the row above; for "
      "\"full − X\" rows what X costs (full minus the variant); for the others, the difference from plain Envoy.")
    w("")
    w("| variant | how | Envoy CPU µs/req | part | CPU vs plain | req/s vs plain | RSS | start to ready |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    mem = ab.get("memory", {})
    for v in ab["variants"]:
        k = v["key"]
        r = s[k]
        how = {"plain": "router only", "mcp_rbac": "Envoy filters", "config": "config",
               "skip": "bench build"}[v["how"]]
        if v["how"] == "skip" and v["arg"]:
            how += f" (`{v['arg']}`)"
        if v["how"] == "config" and v["arg"] == ["deny_only"]:
            how += " (deny list only)"
        elif v["how"] == "config" and v["arg"]:
            how += f" (without {', '.join(v['arg'])})"
        part = r.get("part")
        rss = mem.get(k, {}).get("after") or mem.get(k, {}).get("VmRSS")
        w(f"| {labels[k]} | {how} | {fmt_num(r['cpu'])} | {'–' if part is None else f'{part:+.1f}'} | "
          f"{fmt_num(r['cpu_vs_plain'], 2)} | {fmt_num(r['rps_vs_plain'], 2)} | "
          f"{'–' if not rss else f'{rss / 1024:.0f} MiB'} | {fmt_start(mem.get(k, {}).get('ready_s'))} |")
    w("")
    w("RSS: after the runs. Start to ready: from starting Envoy to its `/ready`, on the loaded machine; with the "
      "filter it is mostly V8 compiling the module (TurboFan, once per Envoy: the VMs of the main thread and the workers "
      "are clones that share the compiled code).")
    w("")
    errors = sum(r["errors"] for r in s.values())
    if errors:
        w(f"> {errors} wrk errors in the ablation runs: the variants with errors are not comparable.")
        w("")


def headline(results: dict, fit, w) -> None:
    """The targets, as ratios measured in one interleaved run (the ablation's
    rounds: every variant once per round, same backend, same CPU)."""
    ab = results.get("ablation")
    if not ab:
        return
    s = summarise_ablation(ab)
    runs = ab["runs"]
    by = {(r["variant"], r["round"]): r for r in runs}
    rounds = sorted({r["round"] for r in runs})

    def rps_ratio(a: str, b: str):
        return med([by[(a, n)]["rps"] / by[(b, n)]["rps"] for n in rounds
                    if (a, n) in by and (b, n) in by and by[(b, n)]["rps"]])

    def cpu_ratio(a: str, b: str):
        return med([by[(a, n)]["cpu_us_envoy"] / by[(b, n)]["cpu_us_envoy"] for n in rounds
                    if (a, n) in by and (b, n) in by and by[(b, n)]["cpu_us_envoy"]])

    def verdict(ok) -> str:
        return "met" if ok else "NOT met"

    mem = ab.get("memory", {})
    rss = {k: (mem.get(k, {}).get("after") or mem.get(k, {}).get("VmRSS") or 0) / 1024 for k in ("plain", "full")}
    wasm = results["machine"].get("wasm_bytes") or 0
    w("| target (one interleaved run, 16 connections) | measured | target | |")
    w("|---|---:|---:|---|")
    if "full" in s and "plain" in s:
        r = rps_ratio("full", "plain")
        w(f"| full gateway req/s ÷ plain Envoy req/s | **{fmt_num(r, 2)}** (CPU per request ×"
          f"{fmt_num(cpu_ratio('full', 'plain'), 2)}: {fmt_num(s['full']['cpu'])} vs {fmt_num(s['plain']['cpu'])} µs) "
          f"| ≥ 0.70 | {verdict(r is not None and r >= 0.70)} |")
    if "deny_only" in s and "mcp_rbac" in s:
        r = rps_ratio("deny_only", "mcp_rbac")
        w(f"| deny-only gateway req/s ÷ Envoy's mcp + RBAC req/s | **{fmt_num(r, 2)}** (CPU per request ×"
          f"{fmt_num(cpu_ratio('deny_only', 'mcp_rbac'), 2)}: {fmt_num(s['deny_only']['cpu'])} vs "
          f"{fmt_num(s['mcp_rbac']['cpu'])} µs) | ≥ 1.00 | {verdict(r is not None and r >= 1.0)} |")
    if rss["plain"] and rss["full"]:
        added = rss["full"] - rss["plain"]
        w(f"| RSS the filter adds to Envoy | **+{added:.0f} MiB** ({rss['full']:.0f} vs {rss['plain']:.0f} MiB) "
          f"| ≤ 25 MiB | {verdict(added <= 25)} |")
    if wasm:
        w(f"| `mcpx_filter.wasm` | **{wasm / 2**20:.2f} MiB** ({wasm:,} bytes) | < 1.19 MiB "
          f"| {verdict(wasm < 1.19 * 2**20)} |")
    if fit:
        w(f"| tools/list inspection per tool in Envoy (a new id per request, tools unchanged; a list never read before: see “Reading the tools/list target”) | **{fit[1]:.2f} µs** (+ {fit[0]:.0f} µs per response) "
          f"| ≤ 3 µs | {verdict(fit[1] <= 3)} |")
    w("")
    w(f"Ratios are medians of the per-round ratios; load average {ab.get('loadavg_start', '?')} when these rounds "
      f"started.")
    w("")


def write_report(results: dict, micro: list | None, bridge: str | None, bridge_status: str, doc: Path,
                 micro_problem: str = "") -> list[str]:
    problems: list[str] = [micro_problem] if micro_problem else []
    doc.parent.mkdir(parents=True, exist_ok=True)
    m = results["machine"]
    ov = summarise_overhead(results["overhead_runs"])
    lists = summarise_lists(results["list_runs"])
    fit = linear_fit([r["tools"] for r in lists], [r["inspect_us"] for r in lists])
    png = doc.with_suffix(".png")
    png_lists = doc.with_name(doc.stem + "-toolslist.png")
    plot_overhead(ov, png)
    plot_lists(lists, fit, png_lists)

    L: list[str] = []
    w = L.append
    w("# Performance")
    w("")
    w(f"<!-- Generated by `make bench` (tests/bench/run.sh). Do not edit: the numbers are rewritten on every run; "
      f"the hand-written part comes from tests/bench/notes.md. -->")
    w("")
    mode = ("**smoke run** (`BENCH_QUICK=1`: 2 s runs, 1 round) — it proves the harness works; do not quote "
            "these numbers" if results["quick"] else
            f"full run ({results['seconds']} s runs after a {results['warmup_seconds']} s warm-up, "
            f"{results['rounds']} interleaved rounds, medians shown)")
    w(f"Measured {results['when']} at `{m['git']}`; {mode}. Load average {results['loadavg_start']} at the start, "
      f"{results['loadavg_end']} at the end ({results['elapsed_s']} s). The machine is shared: anything else "
      f"running shows up as noise, and the final numbers are the ones from the lead's `make bench` run after "
      f"merging.")
    w("")

    # The 1-minute load average at the start still includes the micro-benchmarks
    # (one CPU), so only a load above the CPU count says someone else was busy.
    load = float(results["loadavg_start"].split()[0])
    cpus = m.get("nproc") or 1
    if load > cpus:
        w(f"> **The machine was busy during this run** (load average {load:.1f} on {cpus} CPUs when it "
          f"started): latencies and throughput below are mostly other processes' noise. Compare CPU "
          f"µs/request only, and re-run `make bench` on an idle machine for numbers to quote.")
        w("")
    c16 = ov.get(16)
    w("## Summary")
    w("")
    if c16:
        ok = c16["ratio"] is not None and c16["ratio"] >= TARGET_RATIO
        w(f"- Throughput ratio **(c)/(b) at 16 connections: {fmt_num(c16['ratio'], 2)}** "
          f"(target ≥ {TARGET_RATIO:.2f}: {'met' if ok else 'NOT met'}"
          + (f"; rounds {c16['ratio_range'][0]:.2f}–{c16['ratio_range'][1]:.2f}" if c16["ratio_range"] else "")
          + ").")
        p99 = c16["p99_added"]
        ok = p99 is not None and p99 / 1000 <= TARGET_P99_ADDED_MS
        w(f"- p99 added by the gateway at 16 connections: **{fmt_us(p99)}** "
          f"(target ≤ {TARGET_P99_ADDED_MS:g} ms: {'met' if ok else 'NOT met'}); at 1 connection: "
          f"{fmt_us(ov[1]['p99_added']) if 1 in ov else '–'}.")
        w(f"- Envoy CPU per proxied tools/call: {fmt_num(c16['b']['cpu_envoy'])} µs without wasm, "
          f"{fmt_num(c16['c']['cpu_envoy'])} µs with the full gateway (medians): the filter and the gateway's other "
          f"Envoy filters cost **{fmt_num(c16['cpu_added'])} µs of CPU per request** (median of the per-round "
          f"differences; the most noise-robust figure).")
    w(f"- tools/list inspection: about {fit[1]:.2f} µs of CPU per tool plus {fit[0]:.0f} µs per response "
      f"(fit over {', '.join(str(r['tools']) for r in lists)} tools; largest deviation {fit[2]:.0%}).")
    mem = results["memory_loaded"]
    w(f"- Envoy RSS after the tools/call runs: {mem['b']['VmRSS'] / 1024:.1f} MiB without the filter, "
      f"{mem['c']['VmRSS'] / 1024:.1f} MiB with it (+{(mem['c']['VmRSS'] - mem['b']['VmRSS']) / 1024:.1f} MiB); "
      f"`mcpx_filter.wasm` is {m['wasm_bytes'] / 1024:.0f} KiB.")
    w("")
    headline(results, fit, w)

    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    for k, label in (("cpu_model", "CPU"), ("cpu_mhz", "CPU MHz"), ("nproc_cmd", "nproc"), ("cpus_listed",
                     "CPUs in /proc/cpuinfo"), ("mem_total_gib", "memory (GiB)"), ("os", "OS"), ("kernel", "kernel"),
                     ("envoy", "Envoy"), ("wrk", "wrk"), ("git", "mcpx commit")):
        w(f"| {label} | {m.get(k, '?')} |")
    w(f"| pinning | Envoy (`--concurrency 1`) on CPU {results['envoy_cpu']}; wrk and the demo backend on CPU "
      f"{results['load_cpu']} (`taskset`) |")
    w("")

    w("## How it is measured")
    w("")
    w("```sh")
    w("make bench                  # full run, about 5 minutes; rewrites this page and the plots")
    w("BENCH_QUICK=1 make bench    # 2 s runs, 1 round: checks the harness, numbers not to quote")
    w("```")
    w("")
    w("- Backend: `mcpx-demo --no-record` (tokio/hyper), tool `echo`. Every variant gets the same request: "
      f"a {results.get('call_body_bytes', '?')}-byte "
      "`tools/call` POST with `Authorization: Bearer …`, from wrk (`tests/bench/post.lua`): "
      "`wrk -t1 -cN -dTs --timeout 10s -s tests/bench/post.lua URL`.")
    w("- **(a)** wrk → demo server. **(b)** wrk → Envoy → demo, with the config `mcpx render --format json` "
      "produces for the gateway below, minus every HTTP filter but the router and minus access logs "
      "(`strip_to_plain_envoy()` in `tests/bench/bench.py`). **(c)** wrk → Envoy with the whole rendered config → demo.")
    w(f"- HTTP filters in (c): `{'`, `'.join(results['filters_c'])}`; in (b): `{'`, `'.join(results['filters_b'])}`.")
    w("- (c) config (`tests/bench/bench.py: gateway_yaml()`): bearer auth with two named clients and a client "
      "override, allow/deny lists and argument rules (`regex` + `required` on `echo.text`, `prefix` on "
      "`read_file.path`), `rate_limit` with `per_tool: true` and budgets far above what a run reaches, "
      "`audit` to a file, `inspection: {tool_integrity: enforce, filter_tools_list: true}`. Before timing, each "
      "variant must answer the call (and (c) must refuse `dangerous_delete` with `-32003`).")
    w(f"- Envoy: `{results['envoy_argv']}`.")
    w("- CPU µs/request: the process's on-CPU time (user + system, all threads, from `/proc/<pid>/task/*/schedstat` "
      "in ns; utime+stime's 10 ms ticks would round by ±1.7 µs per request over a 3 s run) before and after the run, "
      "divided by the requests wrk completed. Latencies are wrk's (HdrHistogram), per request, connection reuse on.")
    w("- A warm-up run precedes every measured run; rounds are interleaved (a, b, c for each connection count) "
      "so drift in the machine's load hits every variant alike.")
    w("")

    w("## Gateway overhead: POST tools/call")
    w("")
    w(f"![throughput and p99 vs connections]({png.name})")
    w("")
    w("| conns | variant | req/s | p50 | p99 | Envoy CPU µs/req | backend CPU µs/req | errors |")
    w("|---:|---|---:|---:|---:|---:|---:|---:|")
    for c in sorted(ov):
        for v in "abc":
            r = ov[c][v]
            w(f"| {c} | {NAMES[v]} | {fmt_num(r['rps'], 0)} | {fmt_us(r['p50'])} | {fmt_us(r['p99'])} | "
              f"{fmt_num(r['cpu_envoy']) if v != 'a' else '–'} | {fmt_num(r['cpu_demo'])} | {r['errors']} |")
            if r["errors"]:
                problems.append(f"{r['errors']} failed requests in variant ({v}) at {c} connections")
    w("")
    w("| conns | (c)/(b) req/s | p50 added | p99 added | Envoy CPU added per request |")
    w("|---:|---:|---:|---:|---:|")
    for c in sorted(ov):
        r = ov[c]
        w(f"| {c} | **{fmt_num(r['ratio'], 2)}** | {fmt_us(r['p50_added'])} | {fmt_us(r['p99_added'])} | "
          f"{fmt_num(r['cpu_added'])} µs |")
    w("")
    w("\"added\" = (c) − (b), median over rounds. At 1 connection the p99 is dominated by scheduler noise on a "
      "shared VM (earlier hand measurements saw 0.6–4 ms for every variant, baseline included).")
    w("")

    if results.get("ablation"):
        ablation_section(results["ablation"], w)

    w("## tools/list inspection cost")
    w("")
    w(f"![tools/list inspection cost]({png_lists.name})")
    w("")
    w("For each N, a demo server with `--tools N` behind its own (b) and (c) Envoys (the same gateway config with "
      "one server, so no tool name is advertised twice); the policy denies `dangerous_delete`, so (c) parses, "
      "filters and re-serialises every response (and hashes and checks every tool once integrity pinning lands). "
      "Each request carries a new JSON-RPC id, as a client's do, so every answer is a text the gateway has not "
      "seen (its tools are unchanged). "
      f"2 connections, {results['list_seconds']} s per point. Inspection cost = Envoy CPU per response in (c) − (b).")
    w("")
    w("| tools | response (b) | response (c) | Envoy µs/resp (b) | Envoy µs/resp (c) | inspection µs/resp | "
      "µs per added tool | p50 (b) | p50 (c) | responses (b / c) |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    prev = None
    for r in lists:
        marginal = "–" if prev is None else \
            f"{(r['inspect_us'] - prev['inspect_us']) / (r['tools'] - prev['tools']):.2f}"
        prev = r
        w(f"| {r['tools']:,} | {r['kib']:.1f} KiB | {r['kib_c']:.1f} KiB | {r['b_us']:,.0f} | {r['c_us']:,.0f} | "
          f"**{r['inspect_us']:,.0f}** | {marginal} | {fmt_us(r['b_p50'])} | "
          f"{fmt_us(r['c_p50'])} | {r['b_req']} / {r['c_req']} |")
        if r["errors"]:
            problems.append(f"{r['errors']} failed requests in the tools/list run with {r['tools']} tools")
    w("")
    a, b, dev = fit
    w(f"Linear fit (least relative error): inspection ≈ {a:.0f} µs + {b:.2f} µs × N; the points lie within "
      f"{dev:.0%} of it. \"µs per added tool\" is the slope between neighbouring sizes: for linear growth it stays "
      f"flat as the list grows 500-fold; a super-linear cost would make it climb with N.")
    w("")

    w("## Filter micro-benchmarks (native)")
    w("")
    if micro:
        w("`cargo bench -p mcpx-filter --bench micro` (`filter/benches/micro.rs`): native x86-64, release build, "
          "median of batches. In Envoy the same code runs as wasm in V8, typically 1.5–3× slower, plus the "
          "host-call crossings measured above.")
        w("")
        if micro_problem:
            w(f"**Problem:** {micro_problem}.")
            w("")
        w("| case | median | min | what |")
        w("|---|---:|---:|---|")
        for c in micro:
            if c.get("skipped"):
                w(f"| {c['name']} | – | – | {c['note']} |")
            else:
                w(f"| {c['name']} | {fmt_ns(c['median_ns'])} | {fmt_ns(c['min_ns'])} | {c['note']} |")
    else:
        w("Not run (no results file); run `cargo bench -p mcpx-filter --bench micro`.")
        problems.append("no micro-benchmark results")
    w("")

    w("## Bridge (stdio servers)")
    w("")
    if bridge_status == "absent":
        w("Not measured in this tree: `tests/bench/bridge_bench.py` does not exist yet (the stdio bridge is "
          "being built on another branch). `make bench` runs it when it exists and includes what it prints here.")
    elif bridge_status == "ok" and bridge:
        text = bridge.strip()
        first = text.lstrip().splitlines()[0] if text else ""
        if first.startswith(("|", "#")):
            w(text)  # already markdown
        else:
            w("Output of `tests/bench/bridge_bench.py` (run by `make bench`):")
            w("")
            w("```text")
            w(text)
            w("```")
    else:
        w(f"`tests/bench/bridge_bench.py` failed ({bridge_status}); its output:")
        w("")
        w("```")
        w((bridge or "").strip()[-3000:])
        w("```")
        problems.append(f"bridge benchmark failed ({bridge_status})")
    w("")

    w("## Memory")
    w("")
    w("| | Envoy (b), no filter | Envoy (c), full gateway | difference |")
    w("|---|---:|---:|---:|")
    for label, key in (("RSS after start (idle)", "memory_idle"), ("RSS after the tools/call runs", "memory_loaded")):
        b, c = results[key]["b"]["VmRSS"], results[key]["c"]["VmRSS"]
        w(f"| {label} | {b / 1024:.1f} MiB | {c / 1024:.1f} MiB | +{(c - b) / 1024:.1f} MiB |")
    b, c = results["memory_loaded"]["b"]["VmHWM"], results["memory_loaded"]["c"]["VmHWM"]
    w(f"| peak RSS (VmHWM) | {b / 1024:.1f} MiB | {c / 1024:.1f} MiB | +{(c - b) / 1024:.1f} MiB |")
    w(f"| `mcpx_filter.wasm` | | {m['wasm_bytes']:,} bytes ({m['wasm_bytes'] / 1024:.0f} KiB) | |")
    w("")
    w("With `--concurrency 1` Envoy runs three wasm VMs (the base VM it clones from, the main thread's, one worker's; "
      "admin `/stats`: `wasm.envoy.wasm.runtime.v8.active`); each more worker adds one, about 1–2 MiB. Most of the "
      "difference is paid once per Envoy, not per VM: see \"2026-11-30, wasmsize\" below.")
    w("")

    if "global_rl" in results:
        from global_rl import markdown as global_rl_markdown
        L += global_rl_markdown(results["global_rl"])

    notes = HERE / "notes.md"
    if notes.exists():
        w(notes.read_text().rstrip())
        w("")

    doc.write_text("\n".join(L))
    return problems
