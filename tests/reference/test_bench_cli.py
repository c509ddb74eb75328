#!/usr/bin/env python3
"""Runs the slm-bench binary on a tiny synthetic model and checks what it prints, against values computed
here from the GGUF file it writes (read with the `gguf` package, independently of slm's reader).

  python tests/reference/test_bench_cli.py --build BUILD_DIR [--part cpu|vulkan|ceiling]

--part cpu (the default; ctest py_test_bench_cli):
1. usage errors exit 2 and say why (an unsupported -ctk lists the supported KV types);
2. --write-synthetic writes a GGUF whose tensors give, by hand, the bytes per generated token (every
   weight, one embedding row, the f16 KV cache at the mean position) and the parameter count;
3. -o json, -o csv and -o md of one pp and one tg run: well formed, one row per test, tokens/s > 0, bytes
   per token equal to the value from the file, GB/s and % of peak consistent with them, build and CPU facts
   in every CSV row, integers printed exactly;
4. -m on the written file gives the same bytes per token, size and parameters as the in-memory model;
5. --profile: the per-op table's calls per token follow the graph, its ms and % columns add up to the
   total, its MB/token total equals the tg row's bytes per token; with -o json it leaves stdout valid JSON;
   --parallel 1,3: a tg row per level, "tgN x3" with the per-stream t/s a third of the aggregate and the
   weights' bytes shared by the 3 tokens of a step; --parallel 0 is a usage error.
--part vulkan (ctest py_test_bench_cli_vulkan; skips without a Vulkan device):
6. --sweep-ngl -dev vulkan:0: one table row and one main-table row per split point, an SVG with the
   predicted and the measured curve, and the device named once in the header.
--part ceiling (ctest py_test_bench_ceiling, run alone: it measures bandwidth):
7. the peak is a ceiling: decode of a synthetic Llama 3.2 1B Q4_0 (far larger than the last-level cache) on
   every core reads no faster than the measured peak plus its spread; a --peak-gbps figure is used as given.

Timings are never compared with fixed numbers (the machine may be busy); the profile's op-by-op total
against the fused decode time is printed for information.

Exit codes: 0 pass, 1 fail, 77 skip (gguf missing, slm-bench not built, no Vulkan device for --part vulkan).
"""
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO_ROOT, Tally, build_arg_parser, build_binary, require_modules, skip  # noqa: E402

SPEC = "custom:q4_0:n_layer=2:n_embd=256"
N_LAYER = 2
# By hand for this shape (see tests/test_bench.c): the file-derived values must equal these too.
HAND_WEIGHTS = 883856
HAND_KV_PER_POS = 1024
# Small and fast: a 32 MiB peak read, one thread (a busy 2-core machine stays usable).
COMMON = ["-t", "1", "--peak-mib", "32"]


def run(bench, args, want_rc=0, t=None):
    """Runs slm-bench; returns (rc, stdout, stderr). Checks the exit status when want_rc is not None."""
    p = subprocess.run([bench] + args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    if want_rc is not None and t is not None:
        t.check(p.returncode == want_rc,
                f"slm-bench {' '.join(args)} exits {p.returncode} (want {want_rc})"
                + (f"\n--- stderr ---\n{p.stderr[-2000:]}" if p.returncode != want_rc else ""))
    return p.returncode, p.stdout, p.stderr


def expected_bytes(path):
    """(weights per token, KV bytes per cached position, size in bytes, parameters) from the GGUF file."""
    from gguf import GGUFReader

    r = GGUFReader(path)
    names = {t.name for t in r.tensors}
    weights = size = params = 0
    for t in r.tensors:
        size += int(t.n_bytes)
        params += int(t.n_elements)
        if t.name == "rope_freqs.weight":
            continue
        if t.name == "token_embd.weight":
            rows = int(t.n_elements) // int(t.shape[0])
            weights += int(t.n_bytes) // rows  # the lookup reads one row
            if "output.weight" not in names:
                weights += int(t.n_bytes)      # tied: the matrix is also the output head
            continue
        weights += int(t.n_bytes)
    arch = r.fields["general.architecture"].contents()

    def u(key):
        return int(r.fields[f"{arch}.{key}"].contents())

    head_dim = u("attention.key_length") if f"{arch}.attention.key_length" in r.fields else \
        u("embedding_length") // u("attention.head_count")
    kv = 2 * u("block_count") * u("attention.head_count_kv") * head_dim * 2  # K and V, f16
    return weights, kv, size, params


def tg_bytes(weights, kv, n):
    # token i of n (from an empty cache) attends i + 1 positions: (n + 1) / 2 on average
    return weights + kv * (n + 1) / 2


def strict_json(text):
    def bad(c):
        raise ValueError(f"non-standard JSON constant {c}")
    return json.loads(text, parse_constant=bad)


def md_tables(text):
    """Every markdown table in text as a list of rows (lists of cells), header first, rule dropped."""
    tables, cur = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if cur is None:
                cur = []
                tables.append(cur)
            if not all(re.fullmatch(r"-+:?|:?-+:?", c) for c in cells):
                cur.append(cells)
        else:
            cur = None
    return tables


def close(a, b, rel=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def part_cpu(t, bench, tmp):
    # 1. usage errors
    rc, _, err = run(bench, ["--synthetic", SPEC, "-ctk", "q5_0"])
    t.check(rc == 2 and "'q5_0'" in err and "supported: f16,q8_0,q4_0" in err,
            f"-ctk q5_0: exit 2 naming the KV types ({rc}: {err.strip()})")
    rc, _, err = run(bench, ["--synthetic", SPEC, "--frobnicate"])
    t.check(rc == 2 and "--frobnicate" in err, f"unknown option: exit 2 ({rc})")

    # 2. the file and the values it implies
    path = os.path.join(tmp, "tiny.gguf")
    run(bench, ["--synthetic", SPEC, "--write-synthetic", path], 0, t)
    if not t.check(os.path.isfile(path), "--write-synthetic wrote the file"):
        return
    weights, kv, size, params = expected_bytes(path)
    t.check(weights == HAND_WEIGHTS and kv == HAND_KV_PER_POS,
            f"from the file: weights {weights} (by hand {HAND_WEIGHTS}), KV {kv}/position (by hand {HAND_KV_PER_POS})")
    want_tg4 = tg_bytes(weights, kv, 4)

    # 3. JSON
    args = ["--synthetic", SPEC, "-p", "8", "-n", "4", "-r", "2"] + COMMON
    rc, out, err = run(bench, args + ["-o", "json"], 0, t)
    try:
        doc = strict_json(out)
    except ValueError as e:
        t.check(False, f"JSON parses: {e}\n{out}")
        return
    t.check(all(k in doc["build"] for k in ("version", "commit", "build_type", "compiler", "backends")) and
            isinstance(doc["system"]["n_cores"], int) and doc["system"]["cpu"], "JSON build and system facts")
    cpu_devs = [d for d in doc["devices"] if d["spec"] == "cpu"]
    t.check(cpu_devs and all(d["buffer_mib"] == 32 and d["peak_gbps"] > 0 for d in cpu_devs),
            f"JSON devices: the CPU peak read a 32 MiB buffer: {cpu_devs}")
    rows = doc["results"]
    t.check([r["test"] for r in rows] == ["pp8", "tg4"] and all(r["ok"] and r["reps"] == 2 for r in rows),
            f"JSON rows: {[(r['test'], r['ok'], r['error']) for r in rows]}")
    if len(rows) != 2:
        return
    pp, tg = rows
    t.check(all(isinstance(r[k], int) for r in rows for k in ("size_bytes", "params", "n_tokens", "threads")),
            "JSON counts are integers")
    t.check(pp["size_bytes"] == size and pp["params"] == params,
            f"JSON size {pp['size_bytes']} (file {size}), params {pp['params']} (file {params})")
    t.check(pp["avg_ts"] > 0 and tg["avg_ts"] > 0 and pp["stddev_ts"] >= 0 and tg["stddev_ts"] >= 0,
            f"tokens/s > 0: pp {pp['avg_ts']}, tg {tg['avg_ts']}")
    t.check(tg["bytes_per_token"] == want_tg4 and tg["weight_bytes_per_token"] == weights and pp["bytes_per_token"] == 0,
            f"tg4 bytes per token {tg['bytes_per_token']} (from the file {want_tg4})")
    t.check(close(tg["gbps"], tg["bytes_per_token"] * tg["avg_ts"] / 1e9), f"GB/s {tg['gbps']} = bytes x t/s")
    # one device (the CPU) holds every byte: % of peak = GB/s / peak
    t.check(tg["peak_gbps"] > 0 and close(tg["pct_peak"], 100 * tg["gbps"] / tg["peak_gbps"], 1e-6),
            f"% of peak {tg['pct_peak']} = 100 x {tg['gbps']} / {tg['peak_gbps']}")

    # CSV of the same configuration
    rc, out, _ = run(bench, args + ["-o", "csv"], 0, t)
    recs = list(csv.reader(io.StringIO(out)))
    t.check(len(recs) == 3 and all(len(r) == len(recs[0]) for r in recs), f"CSV: header and 2 rows of equal width")
    drows = list(csv.DictReader(io.StringIO(out)))
    if len(drows) == 2:
        for r in drows:
            t.check(r["build_commit"] == doc["build"]["commit"] and r["cpu_info"] == doc["system"]["cpu"] and
                    r["backends"] == doc["build"]["backends"] and r["n_cores"] == str(doc["system"]["n_cores"]),
                    f"CSV row {r['test']}: build and CPU facts")
        t.check(drows[1]["test"] == "tg4" and drows[1]["bytes_per_token"] == str(int(want_tg4)) and
                drows[0]["size_bytes"] == str(size) and drows[0]["params"] == str(params),
                f"CSV exact integers: bytes/token {drows[1]['bytes_per_token']}, size {drows[0]['size_bytes']}")
        t.check(float(drows[0]["avg_ts"]) > 0 and float(drows[1]["avg_ts"]) > 0 and drows[1]["ok"] == "true",
                "CSV tokens/s > 0")

    # markdown
    rc, out, _ = run(bench, args + ["-o", "md"], 0, t)
    t.check(re.search(r"^slm \S+ \(commit ", out, re.M) and re.search(r"^CPU: .* last-level cache", out, re.M) and
            re.search(r"^peak read bandwidth: cpu \(.*\): [0-9.]+ GB/s ± [0-9.]+ \(best of [0-9]+ read kernels: "
                      r".*stream.*; a 32 MiB buffer\)$", out, re.M),
            "markdown header: build, CPU, peak with its buffer")
    tabs = md_tables(out)
    main = tabs[0] if tabs else []
    t.check(len(main) == 3 and all(len(r) == 13 for r in main), f"markdown: header and 2 rows of 13 cells: {main}")
    if len(main) == 3:
        h = main[0]
        cell = {r[h.index("test")]: dict(zip(h, r)) for r in main[1:]}
        t.check(set(cell) == {"pp8", "tg4"}, f"markdown tests {sorted(cell)}")
        ts = [float(c["t/s"].split("±")[0]) for c in cell.values()]
        t.check(all(x > 0 for x in ts), f"markdown t/s {ts}")
        t.check(cell.get("tg4", {}).get("MB/token") == f"{want_tg4 / 1e6:.3f}",
                f"markdown MB/token {cell.get('tg4', {}).get('MB/token')} (want {want_tg4 / 1e6:.3f})")

    # 4. the written file gives the same accounting as the in-memory model
    rc, out, _ = run(bench, ["-m", path, "-p", "0", "-n", "4", "-r", "1"] + COMMON + ["-o", "json"], 0, t)
    try:
        frows = strict_json(out)["results"]
    except ValueError as e:
        frows = []
        t.check(False, f"-m JSON: {e}")
    if frows:
        f = frows[0]
        t.check(f["model"] == "tiny.gguf" and f["bytes_per_token"] == tg["bytes_per_token"] and
                f["size_bytes"] == pp["size_bytes"] and f["params"] == pp["params"],
                f"-m FILE: bytes/token {f['bytes_per_token']} vs in memory {tg['bytes_per_token']}")

    # 5. profile
    n = 16
    rc, out, _ = run(bench, ["--synthetic", SPEC, "-p", "0", "-n", str(n), "-r", "2", "--profile"] + COMMON, 0, t)
    prof = [tb for tb in md_tables(out) if tb and tb[0][:2] == ["op", "kind"]]
    if not t.check(len(prof) == 1, "--profile prints one per-op table"):
        return
    h, body = prof[0][0], prof[0][1:]
    ops = {r[0]: dict(zip(h, r)) for r in body if r[0] != "total"}
    total = next((dict(zip(h, r)) for r in body if r[0] == "total"), None)
    if not t.check(total is not None and ops, "profile has op rows and a total"):
        return
    per_layer = ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attention", "ffn_norm", "ffn_gate",
                 "ffn_up", "ffn_down"]
    t.check(all(ops.get(o, {}).get("calls/token") == str(N_LAYER) for o in per_layer) and
            all(ops.get(o, {}).get("calls/token") == "1" for o in ("token_embd", "output_norm", "output")),
            f"calls per token follow the graph: {[(o, v['calls/token']) for o, v in ops.items()]}")
    ms = [float(v["ms/token"]) for v in ops.values()]
    tot_ms = float(total["ms/token"])
    t.check(tot_ms > 0 and abs(sum(ms) - tot_ms) <= 0.0005 * len(ms) + 1e-9,
            f"op ms/token add up: {sum(ms):.3f} vs total {tot_ms:.3f}")
    pct = sum(float(v["% of time"].rstrip("%")) for v in ops.values())
    t.check(abs(pct - 100) <= 0.05 * len(ops) + 1e-9, f"% of time adds up to {pct:.1f}")
    t.check(total["MB/token"] == f"{tg_bytes(weights, kv, n) / 1e6:.3f}",
            f"profile MB/token {total['MB/token']} = tg{n} bytes {tg_bytes(weights, kv, n) / 1e6:.3f}")
    m = re.search(r"the tg%d row's fused decode: ([0-9.]+) ms/token .* op by op / fused = ([0-9]+\.[0-9]+)" % n, out)
    if t.check(m is not None, "profile compares with the tg row's fused time"):
        print(f"INFO: profile total {tot_ms:.3f} ms/token op by op, fused tg{n} {m.group(1)} ms/token "
              f"(ratio {m.group(2)})")
    rc, out, err = run(bench, ["--synthetic", SPEC, "-p", "0", "-n", "4", "-r", "1", "--profile", "-o", "json"]
                       + COMMON, 0, t)
    try:
        strict_json(out)
        ok = "| op | kind |" in err
    except ValueError:
        ok = False
    t.check(ok, "--profile -o json: stdout stays JSON, the table goes to stderr")

    # --parallel: P sequences decode together; t/s is theirs together, MB/token shares the weights among them
    n = 8
    rc, out, _ = run(bench, ["--synthetic", SPEC, "-p", "0", "-n", str(n), "-r", "1", "--parallel", "1,3", "-o",
                             "json", "--no-peak"] + COMMON, 0, t)
    try:
        rows = strict_json(out)["results"]
    except (ValueError, KeyError):
        rows = []
    by_p = {r.get("n_parallel"): r for r in rows}
    if t.check(sorted(by_p) == [1, 3] and all(r["ok"] for r in rows), f"--parallel 1,3: one tg row each: {rows}"):
        r1, r3 = by_p[1], by_p[3]
        t.check(r3["test"] == f"tg{n} x3" and r1["test"] == f"tg{n}", f"test names {r1['test']}, {r3['test']}")
        t.check(close(r3["avg_ts_per_stream"] * 3, r3["avg_ts"], 1e-6) and close(r1["avg_ts_per_stream"],
                                                                                 r1["avg_ts"], 1e-6),
                "per-stream t/s is the aggregate over the sequences")
        want = weights / 3 + (tg_bytes(weights, kv, n) - weights)
        t.check(close(r3["bytes_per_token"], want, 1e-9) and close(r3["weight_bytes_per_token"], weights / 3, 1e-9),
                f"x3 bytes per token {r3['bytes_per_token']} = weights / 3 + one sequence's KV {want}")
    run(bench, ["--synthetic", SPEC, "-p", "0", "-n", "4", "--parallel", "0"] + COMMON, 2, t)


def part_vulkan(t, bench, tmp):
    rc, out, err = run(bench, ["--synthetic", SPEC, "-p", "0", "-n", "1", "-r", "1", "--no-peak", "--no-warmup",
                               "-o", "json"] + COMMON)
    try:
        backends = strict_json(out)["build"]["backends"]
    except (ValueError, KeyError):
        backends = ""
    mv = re.search(r"vulkan\((\d+)\)", backends)
    if not mv or int(mv.group(1)) == 0:
        skip(f"no Vulkan device (backends: {backends or 'slm-bench failed: ' + err[-300:]})")
    svg = os.path.join(tmp, "sweep.svg")
    n_units = N_LAYER + 1  # layers and the output head
    rc, out, err = run(bench, ["--synthetic", SPEC, "-p", "0", "-n", "4", "-r", "1", "--sweep-ngl", "-dev", "vulkan:0",
                               "--svg", svg] + COMMON, 0, t)
    tabs = md_tables(out)
    sweep = [tb for tb in tabs if tb and tb[0][0] == "GPU units"]
    if t.check(len(sweep) == 1, "one sweep table"):
        body = sweep[0][1:]
        t.check([r[0] for r in body] == [str(k) for k in range(n_units + 1)],
                f"one row per split point 0..{n_units}: {[r[0] for r in body]}")
        t.check(all(float(r[1]) > 0 and float(r[2]) > 0 for r in body), f"predicted and measured > 0: {body}")
    main = tabs[0] if tabs else []
    if main:
        h = main[0]
        ngl = [r[h.index("ngl")] for r in main[1:] if r[h.index("backend")] == "vulkan:0"]
        # the -dev row (every layer on the GPU), then the sweep's rows
        t.check(ngl == ["all"] + [str(k) for k in range(n_units + 1)], f"main table rows by ngl: {ngl}")
    t.check(re.search(r"^peak read bandwidth: vulkan:0 \((?!vulkan:0)[^)]", out, re.M) is not None,
            "the header names vulkan:0 once")
    try:
        root = ET.parse(svg).getroot()
    except (OSError, ET.ParseError) as e:
        t.check(False, f"SVG parses: {e}")
        return
    lines = [el for el in root.iter() if el.tag.split("}")[-1] == "polyline"]
    pts = [len(el.get("points", "").split()) for el in lines]
    t.check(root.tag.split("}")[-1] == "svg" and len(lines) == 2 and pts == [n_units + 1] * 2,
            f"SVG: two curves of {n_units + 1} points: {pts}")


def part_ceiling(t, bench, tmp):
    model = "llama3-1b:q4_0"
    rc, out, err = run(bench, ["--synthetic", model, "-p", "0", "-n", "32", "-r", "3", "-o", "json"], 0, t)
    try:
        doc = strict_json(out)
    except ValueError:
        t.check(False, f"JSON: {out[-500:]}")
        return
    tg = [r for r in doc["results"] if r["test"] == "tg32" and r["ok"]]
    llc = doc["system"]["llc_bytes"]
    if not tg:
        t.check(False, f"a tg32 row: {doc['results']}")
        return
    tg = tg[0]
    if llc and tg["size_bytes"] < 4 * llc:
        skip(f"the last-level cache ({llc >> 20} MiB) holds a quarter of {model}")
    peak, spread = tg["peak_gbps"], tg["peak_spread_gbps"]
    print(f"INFO: {model} tg32 {tg['avg_ts']:.2f} t/s, {tg['gbps']:.2f} GB/s; peak {peak:.2f} ± {spread:.2f} GB/s "
          f"({[d.get('kernel') for d in doc['devices']]})")
    t.check(peak > 0 and 0 <= spread < peak, f"peak {peak} GB/s with spread {spread}")
    t.check(tg["gbps"] <= peak + spread,
            f"decode reads {tg['gbps']:.2f} GB/s: no more than the peak {peak:.2f} + its spread {spread:.2f}")
    t.check(tg["peak_exceeded"] == (tg["pct_peak"] > 100), "peak_exceeded says whether % of peak is above 100")
    # a datasheet figure is taken as given: no measurement, the header says so
    rc, out, err = run(bench, ["--synthetic", "custom:q4_0:n_layer=2:n_embd=256", "-p", "0", "-n", "4", "-r", "1",
                               "-t", "1", "--peak-gbps", "cpu=1000"], 0, t)
    t.check(re.search(r"^peak read bandwidth: cpu \(.*\): 1000\.00 GB/s \(given with --peak-gbps, not measured\)$",
                      out, re.M) is not None, f"--peak-gbps in the header: {out[:600]}")


def main():
    ap = build_arg_parser(__doc__)
    ap.add_argument("--part", choices=("cpu", "vulkan", "ceiling"), default="cpu")
    a = ap.parse_args()
    require_modules("gguf")
    bench = build_binary(a.build, "slm-bench")
    if not bench:
        skip(f"{a.build}/bin/slm-bench not built")
    t = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        {"cpu": part_cpu, "vulkan": part_vulkan, "ceiling": part_ceiling}[a.part](t, bench, tmp)
    t.finish()


if __name__ == "__main__":
    main()
