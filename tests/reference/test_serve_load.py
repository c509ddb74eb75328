#!/usr/bin/env python3
"""`slm serve` under concurrency and load, with the official `openai` client, on SmolLM2-135M-Instruct
($SLM_TEST_MODELS), on the CPU. What test_serve_openai.py checks one or two requests at a time, this
checks with many at once: what must hold whether the slots are separate contexts or sequences of one
batched forward pass.

Servers A1 and A2 (--parallel 8), each fresh, so that no prompt finds a slot that holds it already (a
slot that does evaluates only the prompt's last token, and that path rounds differently from a whole
prompt's, enough to change a greedy reply after a few tokens):
- A1: 8 concurrent greedy streams of 8 prompts (no two with the same first token), all generating at once:
  each stream's text and completion token count equal `slm run --greedy` on its prompt;
- A2: 7 of them again while an 8th client disconnects mid-stream: the 7 are unchanged, the 8th's slot is
  freed at once (no active slot afterwards, few tokens generated beyond the others').
Server B (--parallel 4 --queue-limit 64, with MALLOC_ARENA_MAX=1):
- 300 requests, 16 at a time (chat and completions, streamed and whole, greedy and sampled, max_tokens 8):
  every one succeeds with its tokens, the server stays up, /metrics counts all 300, and its resident memory
  (VmRSS) after the whole run is within 8 MiB of what it was after a warm-up of 200 requests. One malloc
  arena, because glibc's default of one per thread (libmicrohttpd runs one thread per connection) lets the
  resident size creep for hundreds of requests without a leak, which would hide one;
- SIGTERM with 4 streams open: every stream ends with [DONE], exit status 0.

    python tests/reference/test_serve_load.py --build BUILD_DIR

Exit: 0 pass, 1 fail, 77 skip (no slm binary, a build without the server, no SmolLM2 model, no openai module).
"""
import os
import queue
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from test_serve_openai import MODEL, Server, read_events, slm_run, sse_stream, wait_for  # noqa: E402

PROMPTS = ["Paris is the capital of", "Water boils at a temperature of", "Jupiter is the largest planet in",
           "Once upon a time, in a small village,", "In 1969, the first man on the", "A haiku about autumn leaves:\n",
           "def fibonacci(n):\n", "Red, green and blue are"]
N_TOKENS = 24
RSS_SLACK_KIB = 8 << 10


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return -1


def stream_completion(client, prompt, max_tokens, barrier=None):
    """A greedy streamed completion: (text, completion tokens, time of the first text, time of the last)."""
    if barrier:
        barrier.wait(30)
    text, n, first, last = "", -1, None, None
    for c in client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=max_tokens,
                                       stream=True, stream_options={"include_usage": True}):
        if c.choices and c.choices[0].text:
            last = time.monotonic()
            first = first or last
            text += c.choices[0].text
        if c.usage:
            n = c.usage.completion_tokens
    return text, n, first, last


def run_threads(fn, n):
    """Runs fn(i) for i < n on n threads at once; a list of the results (an exception stands for its result)."""
    out = [None] * n

    def one(i):
        try:
            out[i] = fn(i)
        except Exception as e:  # noqa: BLE001 - reported by the caller
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(180)
    return out


def server_a1(slm, model, openai, single, t):
    s = Server(slm, model, "--parallel", "8", "-c", "256")
    try:
        client = openai.OpenAI(base_url=s.base, api_key="unused", max_retries=0, timeout=120)
        barrier = threading.Barrier(len(PROMPTS))
        got = run_threads(lambda i: stream_completion(client, PROMPTS[i], N_TOKENS, barrier), len(PROMPTS))
        for i, r in enumerate(got):
            t.check(isinstance(r, tuple) and r[:2] == single[i],
                    f"stream {i} equals slm run --greedy: {r[:2] if isinstance(r, tuple) else r} vs {single[i]}")
        # every full-length stream had shown text before any of them showed its last: they generated together
        full = [r for r in got if isinstance(r, tuple) and r[1] == N_TOKENS]
        if len(full) >= 2:
            first, last = max(r[2] for r in full), min(r[3] for r in full)
            t.check(first < last, f"the {len(full)} streams of {N_TOKENS} tokens overlapped (the last first token "
                    f"{last - first:.3f} s before the first last token)")
        else:
            t.check(False, f"at least 2 streams run to {N_TOKENS} tokens ({len(full)})")
    finally:
        rc = s.stop()
    t.check(rc == 0, f"server A1: SIGTERM exits 0 (exit {rc}; stderr {s.err[-500:]!r})")


def server_a2(slm, model, openai, single, t):
    """One client of 8 leaves after a few tokens; the other 7 are unchanged and its slot is freed."""
    s = Server(slm, model, "--parallel", "8", "-c", "256")
    try:
        client = openai.OpenAI(base_url=s.base, api_key="unused", max_retries=0, timeout=120)
        barrier = threading.Barrier(len(PROMPTS))
        left = {}

        def one(i):
            if i < len(PROMPTS) - 1:
                return stream_completion(client, PROMPTS[i], N_TOKENS, barrier)
            barrier.wait(30)
            c, r = sse_stream(s.port, {"prompt": PROMPTS[i], "temperature": 0, "max_tokens": 1000,
                                       "ignore_eos": True})
            left["events"] = read_events(r, 3)
            c.close()
            return None

        got = run_threads(one, len(PROMPTS))
        t.check(len(left.get("events", [])) == 3, f"the leaving client read 3 events: {left}")
        for i, r in enumerate(got[:-1]):
            t.check(isinstance(r, tuple) and r[:2] == single[i],
                    f"with a client leaving, stream {i} still equals slm run --greedy: "
                    f"{r[:2] if isinstance(r, tuple) else r}")
        freed = wait_for(lambda: s.metrics().get("slm_slots_active") == 0, 10)
        gen = s.metrics().get("slm_completion_tokens_total", 0)
        others = sum(r[1] for r in got[:-1] if isinstance(r, tuple))
        t.check(freed and gen - others < 60,
                f"the leaving client's slot is freed ({gen:.0f} tokens generated, {others} by the others)")
    finally:
        rc = s.stop()
    t.check(rc == 0, f"server A2: SIGTERM exits 0 (exit {rc}; stderr {s.err[-500:]!r})")


# requests before the resident size is taken: the allocator's arena and the threads' cached stacks settle first
# (measured: flat after ~200-400 requests, +0.8 MiB from 200 to 1000)
WARM = 200


def load_request(client, i):
    """Request i of the load run: chat or completion, streamed or whole, greedy or sampled; its token count."""
    # chat prompts (the template's ~30 tokens) every sixth: the run checks the server, not prompt speed
    stream, chat, greedy = i % 2 == 0, i % 6 == 1, i % 5 != 0
    kw = dict(model=MODEL, max_tokens=8, temperature=0 if greedy else 0.8, seed=i)
    if chat:
        msgs = [{"role": "user", "content": f"Say something about the number {i}."}]
        if not stream:
            r = client.chat.completions.create(messages=msgs, **kw)
            return r.usage.completion_tokens if r.choices[0].message.content is not None else -1
        n = -1
        for c in client.chat.completions.create(messages=msgs, stream=True, stream_options={"include_usage": True},
                                                **kw):
            n = c.usage.completion_tokens if c.usage else n
        return n
    prompt = PROMPTS[i % len(PROMPTS)] + f" ({i})"
    if not stream:
        r = client.completions.create(prompt=prompt, **kw)
        return r.usage.completion_tokens if r.choices[0].text is not None else -1
    n = -1
    for c in client.completions.create(prompt=prompt, stream=True, stream_options={"include_usage": True}, **kw):
        n = c.usage.completion_tokens if c.usage else n
    return n


def load(client, first, count, concurrency):
    """Requests first..first+count-1, `concurrency` at a time; a list of (i, token count or exception)."""
    todo = queue.Queue()
    for i in range(first, first + count):
        todo.put(i)
    results = []

    def worker():
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                results.append((i, load_request(client, i)))
            except Exception as e:  # noqa: BLE001 - reported by the caller
                results.append((i, e))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    return results


def server_b(slm, model, openai, t):
    s = Server(slm, model, "--parallel", "4", "--queue-limit", "64", "-c", "256", env={"MALLOC_ARENA_MAX": "1"})
    open_streams, reader_threads, got = [], [], []
    try:
        client = openai.OpenAI(base_url=s.base, api_key="unused", max_retries=0, timeout=120)
        t0 = time.time()
        warm = load(client, 0, WARM, 16)
        rss_warm = vm_rss_kib(s.p.pid)
        rest = load(client, WARM, 300 - WARM, 16)
        rss_end = vm_rss_kib(s.p.pid)
        dt = time.time() - t0
        results = warm + rest
        bad = [(i, r) for i, r in results if not isinstance(r, int) or not 1 <= r <= 8]
        t.check(len(results) == 300 and not bad, f"300 requests, 16 at a time, all served with 1..8 tokens "
                f"({len(results)} results, failures {bad[:5]})")
        t.check(s.p.poll() is None, "the server is up after the load")
        m = s.metrics()
        served = sum(v for k, v in m.items() if k.startswith("slm_requests_total{endpoint=\"/v1/")
                     and "completions" in k and 'status="200"' in k)
        t.check(served == 300, f"/metrics counts 300 completions with status 200 ({served:.0f})")
        t.check(m.get("slm_slots_active") == 0 and m.get("slm_queue_depth") == 0,
                f"nothing left running or queued: {m.get('slm_slots_active')} active, {m.get('slm_queue_depth')} queued")
        print(f"load: 300 requests in {dt:.1f} s; VmRSS {rss_warm / 1024:.1f} MiB after {WARM}, "
              f"{rss_end / 1024:.1f} MiB after 300 ({(rss_end - rss_warm) / 1024:+.1f} MiB)")
        t.check(rss_warm > 0 and rss_end - rss_warm <= RSS_SLACK_KIB,
                f"VmRSS after the run within {RSS_SLACK_KIB >> 10} MiB of after the warm-up "
                f"({rss_warm} -> {rss_end} KiB)")

        # SIGTERM with 4 streams open (every slot busy)
        for i in range(4):
            c, r = sse_stream(s.port, {"prompt": PROMPTS[i], "max_tokens": 1000, "temperature": 0,
                                       "ignore_eos": True})
            open_streams.append(c)
            read_events(r, 2)
            got.append([])
            th = threading.Thread(target=lambda r=r, g=got[-1]: g.extend(read_events(r, 100000)))
            th.start()
            reader_threads.append(th)
    finally:
        rc = s.stop()
    for th in reader_threads:
        th.join(10)
    if reader_threads:
        t.check(all(not th.is_alive() for th in reader_threads) and all(g and g[-1] == "[DONE]" for g in got),
                f"the 4 open streams end at SIGTERM ({[g[-1:] for g in got]})")
    for c in open_streams:
        c.close()
    t.check(rc == 0, f"server B: SIGTERM with 4 streams open exits 0 (exit {rc}; stderr {s.err[-500:]!r})")


def main():
    ap = common.build_arg_parser(__doc__)
    args = ap.parse_args()
    slm = common.build_binary(args.build, "slm")
    if not slm:
        common.skip(f"{args.build}/bin/slm not built")
    probe = subprocess.run([slm, "serve", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        common.skip(f"slm was built without the server: {probe.stderr.strip()}")
    d = common.models_dir()
    model = os.path.join(d, MODEL) if d else None
    if not model or not os.path.isfile(model):
        common.skip(f"no {MODEL} in $SLM_TEST_MODELS")
    (openai,) = common.require_modules("openai")
    t = common.Tally()
    t0 = time.time()
    single = [slm_run(slm, model, p, N_TOKENS, chat=False)[::2] for p in PROMPTS]
    t.check(all(txt and n > 0 for txt, n in single), f"slm run --greedy on each prompt: {single}")
    server_a1(slm, model, openai, single, t)
    server_a2(slm, model, openai, single, t)
    t1 = time.time()
    server_b(slm, model, openai, t)
    print(f"{time.time() - t0:.1f} s (slm run and servers A1, A2: {t1 - t0:.1f} s)")
    t.finish()


if __name__ == "__main__":
    main()
