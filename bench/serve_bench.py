#!/usr/bin/env python3
"""Concurrent-stream throughput of an OpenAI-compatible server: `slm serve`, llama.cpp's `llama-server`, or
any command that serves /v1/completions (issue 16's figure).

For each server: start it once with --parallel P (default: the largest level), wait for /health, then for
each level N (default 1,2,4,8) fire N streaming /v1/completions requests at once (greedy, `ignore_eos`,
the same prompt length and max_tokens for every stream, each prompt distinct so that no prompt cache
helps), and measure from the client:
  per stream    decode tokens/s = (completion tokens - 1) / (time of its last token - time of its first)
  aggregate     tokens/s        = all completion tokens / (last token of any stream - first token of any)
  e2e           tokens/s        = all completion tokens / (last token - the moment the requests were sent)
  ttft                          = time to a stream's first token (mean)
Token counts come from the stream's usage (stream_options.include_usage) and the prompt length is
calibrated against the server's own count (usage.prompt_tokens), so both servers see the same number of
prompt tokens. With N above P, N - P streams wait for a slot: that shows in ttft and e2e.

One server is started for all levels (not one per level): the levels then differ only in the number of
streams, and a 3B model is loaded once. Needs only the Python standard library.

  python3 bench/serve_bench.py -m /tmp/l1b_q40.gguf --slm build/bin/slm \\
      --llama-server /path/to/llama-server --parallel 4 --threads 2 --levels 1,2,4,8 --json out.json

Exit 0, or 1 with the reason when a server does not start or a request fails.
"""
import argparse
import csv
import http.client
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TEXT = ("the river turns slowly past the old mill where children used to play every summer evening until the "
        "lamps came on and the bakers closed their doors for the night while far away a train crossed the valley "
        "carrying letters and bread to the small towns along the coast ") * 8


class BenchError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on a free port, its output in a log file; ready once GET /health answers 200."""

    def __init__(self, name, argv, port, start_timeout):
        self.name, self.port = name, port
        self.log = tempfile.NamedTemporaryFile(prefix=f"serve_bench_{name}_", suffix=".log", delete=False)
        print(f"[{name}] {shlex.join(argv)}  (log {self.log.name})", file=sys.stderr, flush=True)
        try:
            self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except OSError as e:
            raise BenchError(f"{name}: cannot start {argv[0]}: {e}") from e
        end = time.time() + start_timeout
        while True:
            if self.p.poll() is not None:
                raise BenchError(f"{name}: the server exited with status {self.p.returncode} before it was "
                                 f"ready; the end of its log:\n{self.tail()}")
            try:
                st, _ = request(port, "GET", "/health", timeout=2)
                if st == 200:
                    break
            except OSError:
                pass
            if time.time() > end:
                self.stop()
                raise BenchError(f"{name}: not ready after {start_timeout} s (GET /health); the end of its "
                                 f"log:\n{self.tail()}")
            time.sleep(0.25)

    def tail(self, n=2000):
        with open(self.log.name, errors="replace") as f:
            return f.read()[-n:]

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def request(port, method, path, body=None, timeout=600):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read().decode(errors="replace")
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data
    finally:
        c.close()


def prompt_text(tag, n_chars):
    """A numeric tag, then the first n_chars characters of TEXT: the tag (its digits reversed, so that
    consecutive tags differ in their first digit) makes each prompt distinct from its first token on, so
    that no prompt cache helps; the rest is the same for all."""
    return f"{tag % 10000:04d}"[::-1] + " " + TEXT[:n_chars]


def prompt_tokens(port, text):
    st, body = request(port, "POST", "/v1/completions", {"prompt": text, "max_tokens": 1, "temperature": 0})
    if st != 200 or not isinstance(body, dict) or "usage" not in body:
        raise BenchError(f"a calibration request failed: {st} {str(body)[:300]}")
    return body["usage"]["prompt_tokens"]


def calibrate(port, target):
    """The fewest characters of TEXT whose prompt (with a tag) the server counts as at least `target` tokens
    (a binary search: the count grows with the characters), and that count."""
    lo, hi, seen = 1, target, {}
    # double until long enough (each step at most doubles the count, which stays within the context)
    while (seen.setdefault(hi, prompt_tokens(port, prompt_text(9999, hi)))) < target:
        if hi >= len(TEXT):
            return hi, seen[hi]
        lo, hi = hi + 1, min(2 * hi, len(TEXT))
    while lo < hi:
        mid = (lo + hi) // 2
        seen[mid] = prompt_tokens(port, prompt_text(9999, mid))
        if seen[mid] >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo, seen.get(lo) or prompt_tokens(port, prompt_text(9999, lo))


def stream_once(port, text, max_tokens, ignore_eos, go, out):
    """One streamed completion, started when `go` is set; fills out with its times and counts."""
    body = {"prompt": text, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if ignore_eos:
        body["ignore_eos"] = True
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        go.wait()
        out["sent"] = time.monotonic()
        c.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            out["error"] = f"status {r.status}: {r.read()[:300]!r}"
            return
        chunks = 0
        while True:
            ln = r.fp.readline()
            if not ln:
                break
            ln = ln.decode(errors="replace").strip()
            if not ln.startswith("data:"):
                continue
            data = ln[5:].strip()
            if data == "[DONE]":
                break
            ev = json.loads(data)
            if "error" in ev:
                out["error"] = str(ev["error"])[:300]
                return
            now = time.monotonic()
            if ev.get("choices") and ev["choices"][0].get("text"):
                chunks += 1
                out.setdefault("first", now)
                out["last"] = now
            if ev.get("usage"):
                out["n_gen"] = ev["usage"].get("completion_tokens")
                out["n_prompt"] = ev["usage"].get("prompt_tokens")
        out.setdefault("n_gen", chunks)  # a server without usage in streams: one chunk a token
        if "first" not in out:
            out["error"] = "no text came back"
    except (OSError, ValueError, http.client.HTTPException) as e:
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        c.close()


def run_level(port, n, chars, max_tokens, ignore_eos, tag0):
    go = threading.Event()
    outs = [{} for _ in range(n)]
    threads = [threading.Thread(target=stream_once, args=(port, prompt_text(tag0 + i, chars), max_tokens,
                                                          ignore_eos, go, outs[i])) for i in range(n)]
    for th in threads:
        th.start()
    time.sleep(0.05)
    go.set()
    for th in threads:
        th.join()
    errors = [o["error"] for o in outs if "error" in o]
    if errors:
        raise BenchError(f"{len(errors)} of {n} streams failed: {errors[0]}")
    total = sum(o["n_gen"] for o in outs)
    t0, t1 = min(o["first"] for o in outs), max(o["last"] for o in outs)
    sent = min(o["sent"] for o in outs)
    per = [(o["n_gen"] - 1) / (o["last"] - o["first"]) for o in outs if o["n_gen"] > 1 and o["last"] > o["first"]]
    return {
        "streams": n,
        "prompt_tokens": sorted({o.get("n_prompt") for o in outs if o.get("n_prompt") is not None}),
        "gen_tokens": total,
        "gen_per_stream": sorted({o["n_gen"] for o in outs}),
        "agg_tps": total / (t1 - t0) if t1 > t0 else float("nan"),
        "e2e_tps": total / (t1 - sent),
        "stream_tps_mean": statistics.mean(per) if per else float("nan"),
        "stream_tps_min": min(per) if per else float("nan"),
        "ttft_s": statistics.mean(o["first"] - o["sent"] for o in outs),
        "wall_s": t1 - sent,
    }


def server_argv(kind, binary, model, port, parallel, ctx, threads, extra):
    if kind == "slm":
        argv = [binary, "serve", "-m", model, "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
                "--parallel", str(parallel), "-c", str(ctx), "--queue-limit", "256"]
        if threads:
            argv += ["-t", str(threads)]
    elif kind == "llama-server":
        # llama-server's -c is shared by its slots: each gets ctx
        argv = [binary, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-np", str(parallel),
                "-c", str(parallel * ctx)]
        if threads:
            argv += ["-t", str(threads)]
    else:
        argv = shlex.split(binary.format(model=model, port=port, parallel=parallel, ctx=ctx, ctx_total=parallel * ctx,
                                         threads=threads or 0))
    return argv + shlex.split(extra or "")


def bench_server(name, kind, binary, args, levels, parallel):
    port = free_port()
    argv = server_argv(kind, binary, args.model, port, parallel, args.ctx, args.threads, args.extra_args.get(name))
    s = Server(name, argv, port, args.start_timeout)
    rows = []
    try:
        chars, got = calibrate(port, args.prompt_tokens)
        print(f"[{name}] prompt: a tag and {chars} characters = {got} tokens (target {args.prompt_tokens})",
              file=sys.stderr, flush=True)
        tag = 100
        for _ in range(args.warmup):
            run_level(port, 1, chars, min(8, args.max_tokens), args.ignore_eos, tag)
            tag += 1
        for n in levels:
            best = None
            for _ in range(args.repeat):
                r = run_level(port, n, chars, args.max_tokens, args.ignore_eos, tag)
                tag += n
                if best is None or r["agg_tps"] > best["agg_tps"]:
                    best = r
            best.update(server=name, parallel=parallel)
            rows.append(best)
            print(f"[{name}] {n} streams: {best['agg_tps']:.1f} tok/s aggregate, {best['stream_tps_mean']:.1f} "
                  f"per stream", file=sys.stderr, flush=True)
    finally:
        s.stop()
    base = next((r["agg_tps"] for r in rows if r["streams"] == 1), None)
    for r in rows:
        r["vs_1"] = r["agg_tps"] / base if base else float("nan")
    return rows


def fmt_list(v):
    return "-".join(str(x) for x in (v[0], v[-1])) if len(v) > 1 and v[0] != v[-1] else (str(v[0]) if v else "?")


def print_table(rows):
    hdr = ["server", "slots", "streams", "prompt tok", "gen tok/stream", "agg tok/s", "x 1 stream",
           "stream tok/s (mean)", "stream tok/s (min)", "ttft s", "e2e tok/s"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "|".join(" --- " for _ in hdr) + "|")
    for r in rows:
        print(f"| {r['server']} | {r['parallel']} | {r['streams']} | {fmt_list(r['prompt_tokens'])} | "
              f"{fmt_list(r['gen_per_stream'])} | {r['agg_tps']:.1f} | {r['vs_1']:.2f} | {r['stream_tps_mean']:.1f} | "
              f"{r['stream_tps_min']:.1f} | {r['ttft_s']:.2f} | {r['e2e_tps']:.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True, help="the GGUF file every server loads")
    ap.add_argument("--slm", metavar="BIN", help="the slm binary: runs `BIN serve ...`")
    ap.add_argument("--llama-server", metavar="BIN", help="llama.cpp's llama-server binary")
    ap.add_argument("--server", action="append", default=[], metavar="NAME=CMD",
                    help="any other server: a command line with {model} {port} {parallel} {ctx} (per slot), "
                         "{ctx_total} (parallel x ctx) and {threads} (repeatable)")
    ap.add_argument("--levels", default="1,2,4,8", help="concurrent streams per level (default 1,2,4,8)")
    ap.add_argument("--parallel", type=int, default=0,
                    help="the servers' slots (default: the largest level)")
    ap.add_argument("--threads", type=int, default=0, help="-t of the servers (default: theirs)")
    ap.add_argument("--ctx", type=int, default=0, help="context per slot (default: prompt + max_tokens + 64)")
    ap.add_argument("--prompt-tokens", type=int, default=32, help="prompt length in tokens (default 32)")
    ap.add_argument("--max-tokens", type=int, default=64, help="tokens each stream generates (default 64)")
    ap.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false",
                    help="do not send ignore_eos (a stream may then end early)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per level; the best aggregate is kept (default 1)")
    ap.add_argument("--warmup", type=int, default=1, help="single-stream runs before the levels (default 1)")
    ap.add_argument("--start-timeout", type=float, default=300, help="seconds a server may take to be ready")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=ARGS",
                    help="more arguments for a server: slm=..., llama-server=... or a --server NAME")
    ap.add_argument("--csv", metavar="FILE", help="write the rows as CSV")
    ap.add_argument("--json", metavar="FILE", help="write the rows (and the settings) as JSON")
    args = ap.parse_args()
    try:
        levels = [int(x) for x in args.levels.split(",")]
        if not levels or min(levels) < 1:
            raise ValueError
    except ValueError:
        ap.error(f"--levels: {args.levels!r} is not a list of positive numbers")
    if not os.path.isfile(args.model):
        ap.error(f"--model: no file {args.model}")
    servers = []
    if args.slm:
        servers.append(("slm", "slm", args.slm))
    if args.llama_server:
        servers.append(("llama-server", "llama-server", args.llama_server))
    for s in args.server:
        name, eq, cmd = s.partition("=")
        if not eq or not name or not cmd:
            ap.error(f"--server: {s!r} is not NAME=CMD")
        servers.append((name, "custom", cmd))
    if not servers:
        ap.error("no server: give --slm, --llama-server or --server")
    args.extra_args = {}
    for e in args.extra:
        name, _, rest = e.partition("=")
        args.extra_args[name] = rest
    parallel = args.parallel or max(levels)
    args.ctx = args.ctx or args.prompt_tokens + args.max_tokens + 64

    rows = []
    try:
        for name, kind, binary in servers:
            rows += bench_server(name, kind, binary, args, levels, parallel)
    except BenchError as e:
        print(f"serve_bench: {e}", file=sys.stderr)
        if rows:
            print_table(rows)
        return 1
    except KeyboardInterrupt:
        return 1
    print_table(rows)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            for r in rows:
                w.writerow({k: (fmt_list(v) if isinstance(v, list) else v) for k, v in r.items()})
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("extra_args",)}
        with open(args.json, "w") as f:
            json.dump({"settings": settings, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
