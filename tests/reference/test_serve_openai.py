#!/usr/bin/env python3
"""`slm serve` end to end with the official `openai` Python client, on SmolLM2-135M-Instruct
($SLM_TEST_MODELS), on the CPU.

Server A (--parallel 2, -c 512):
- /v1/models lists the model, /health answers;
- chat, greedy: the reply equals `slm run --chat --greedy` on the same message, token for token (same text,
  same token counts); streamed, the deltas add up to the same text, the first carries the role, the last the
  finish_reason, and stream_options.include_usage adds the usage;
- completions, greedy: equal to `slm run --greedy` on the same prompt;
- a stop string (taken from the middle of the greedy reply) ends the reply before it, in full and streamed,
  and no streamed chunk shows any part of it; max_tokens ends with finish_reason length after that many;
- bad input: malformed JSON, wrong types, n = 2, a prompt longer than the context (400 naming both
  numbers), a body over the limit (413), unknown path (404), wrong method (405), all as OpenAI-style errors,
  and the server answers normally afterwards; unknown fields are ignored;
- 4 concurrent greedy requests all complete, each equal to its single-request reply; ignore_eos makes a reply
  that ends by itself run to max_tokens;
- /metrics counts requests by endpoint and status, tokens, and shows the gauges;
- SIGTERM: exit status 0.
Server B (--parallel 1 --queue-limit 1 --api-key, -c 2048):
- without or with a wrong key 401; with it 200 (the openai client's api_key);
- a full queue: one stream running and one waiting, a third request gets 503;
- a client that disconnects mid-stream frees its slot at once (metrics: no active slot, far fewer tokens
  generated than it asked for) and the next request is served; so does one waiting for a whole reply;
- SIGTERM with a stream open: the stream ends, exit status 0.

    python tests/reference/test_serve_openai.py --build BUILD_DIR

Exit: 0 pass, 1 fail, 77 skip (no slm binary, a build without the server, no SmolLM2 model, no openai module).
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = "What is the capital of France? Answer in one sentence."
KEY = "sk-test-0123456789"


class Server:
    """An `slm serve` process on a free port (--port 0: the URL it prints says which)."""

    def __init__(self, slm, model, *opts, env=None):
        cmd = [slm, "serve", "-m", model, "--device", "cpu", "--port", "0", *opts]
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, **(env or {})))
        line = self.p.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        if not m:
            self.p.kill()
            raise RuntimeError(f"slm serve did not print its URL: {line!r} {self.p.stderr.read()}")
        self.port = int(m.group(1))
        self.base = f"http://127.0.0.1:{self.port}/v1"

    def request(self, method, path, body=None, headers=None, raw=None):
        """(status, parsed JSON or text) of one plain HTTP request."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        h = {"Content-Type": "application/json", **(headers or {})}
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text

    def metrics(self, headers=None):
        _, text = self.request("GET", "/metrics", headers=headers)
        out = {}
        for ln in text.splitlines():
            if ln and not ln.startswith("#"):
                name, _, value = ln.rpartition(" ")
                out[name] = float(value)
        return out

    def stop(self, timeout=20):
        """SIGTERM; returns the exit status (None if it did not exit in time, then it is killed)."""
        self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            rc = None
        self.err = self.p.stderr.read()
        self.p.stdout.close()
        self.p.stderr.close()
        return rc


def slm_run(slm, model, prompt, n, chat):
    """(text, prompt tokens, generated tokens) of `slm run --greedy`."""
    cmd = [slm, "run", "-m", model, "--device", "cpu", "--greedy", "-n", str(n), "-p", prompt]
    if chat:
        cmd.append("--chat")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r"prompt (\d+) tok .* gen (\d+) tok", r.stderr)
    text = r.stdout[:-1] if r.stdout.endswith("\n") else r.stdout
    return text, int(m.group(1)) if m else -1, int(m.group(2)) if m else -1


def is_error(status, body, want_status, t, what):
    ok = (status == want_status and isinstance(body, dict) and isinstance(body.get("error"), dict)
          and all(k in body["error"] for k in ("message", "type", "param", "code")))
    t.check(ok, f"{what}: {status} with an OpenAI error (want {want_status}): {str(body)[:300]}")
    return body["error"]["message"] if ok else ""


def sse_stream(port, body, headers=None):
    """An open streaming request: (connection, response)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}),
              headers={"Content-Type": "application/json", **(headers or {})})
    return c, c.getresponse()


def read_events(resp, n):
    """Reads n data events of an SSE response (skipping comments); returns them."""
    events = []
    while len(events) < n:
        ln = resp.fp.readline().decode()
        if not ln:
            break
        if ln.startswith("data: "):
            events.append(ln[6:].strip())
    return events


def wait_for(cond, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def cli(slm, model, t):
    """The command line: help, bad values, no model."""
    r = subprocess.run([slm, "serve", "-h"], capture_output=True, text=True)
    t.check(r.returncode == 0 and r.stdout.startswith("usage: slm serve") and "--api-key" in r.stdout,
            f"slm serve -h: exit {r.returncode}")
    for args, want in ((["--port", "70000"], "--port: '70000' is out of range"),
                       (["--parallel", "0"], "--parallel: '0' is out of range"),
                       (["--queue-limit", "x"], "--queue-limit: 'x' is not a whole number"),
                       (["--host", ""], "--host: the value is empty"),
                       (["-n", "0"], "-n: a reply needs at least 1 token")):
        r = subprocess.run([slm, "serve", "-m", model, *args], capture_output=True, text=True, timeout=30)
        t.check(r.returncode == 1 and want in r.stderr, f"slm serve {' '.join(args)}: exit {r.returncode}, "
                f"{r.stderr.strip()!r}")
    r = subprocess.run([slm, "serve"], capture_output=True, text=True, timeout=30)
    t.check(r.returncode == 1 and "no model given" in r.stderr, f"slm serve without -m: {r.stderr.strip()!r}")


def server_a(slm, model, openai, t):
    s = Server(slm, model, "--parallel", "2", "-c", "512")
    try:
        # a second server on the same port is refused, saying why
        r = subprocess.run([slm, "serve", "-m", model, "--device", "cpu", "--port", str(s.port)],
                           capture_output=True, text=True, timeout=60)
        t.check(r.returncode == 1 and "cannot listen on 127.0.0.1 port" in r.stderr,
                f"a port in use: exit {r.returncode}, {r.stderr.strip()[-200:]!r}")
        client = openai.OpenAI(base_url=s.base, api_key="unused", max_retries=0, timeout=60)
        models = client.models.list()
        t.check([m.id for m in models.data] == [MODEL], f"/v1/models lists the model: {[m.id for m in models.data]}")
        st, body = s.request("GET", "/health")
        t.check(st == 200 and body.get("status") == "ok", f"/health: {st} {body}")

        # chat, greedy, equal to slm run --chat --greedy
        want, want_prompt, want_gen = slm_run(slm, model, QUESTION, 48, chat=True)
        msgs = [{"role": "user", "content": QUESTION}]
        r = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=48)
        got = r.choices[0].message.content
        t.check(got == want and got, f"chat equals slm run --chat --greedy: {got!r} vs {want!r}")
        t.check(r.usage.prompt_tokens == want_prompt and r.usage.completion_tokens == want_gen
                and r.usage.total_tokens == want_prompt + want_gen,
                f"usage {r.usage.prompt_tokens}+{r.usage.completion_tokens} (slm run: {want_prompt}+{want_gen})")
        t.check(r.choices[0].finish_reason == ("length" if want_gen == 48 else "stop"),
                f"finish_reason {r.choices[0].finish_reason} after {want_gen} tokens")

        # streamed: the same text, role first, finish_reason last, usage when asked
        chunks = list(client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=48,
                                                     stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        t.check(text == want, f"streamed chat equals it too: {text!r}")
        with_choices = [c for c in chunks if c.choices]
        t.check(with_choices and with_choices[0].choices[0].delta.role == "assistant"
                and with_choices[-1].choices[0].finish_reason == r.choices[0].finish_reason
                and all(c.choices[0].finish_reason is None for c in with_choices[:-1]),
                "stream: role in the first chunk, finish_reason in the last only")
        t.check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == want_gen,
                f"stream_options.include_usage: the last chunk has the usage ({chunks[-1].usage})")

        # completions, greedy, equal to slm run --greedy
        prompt = "The three primary colors are"
        want_c, _, _ = slm_run(slm, model, prompt, 24, chat=False)
        rc = client.completions.create(model=MODEL, prompt=prompt, temperature=0, max_tokens=24)
        t.check(rc.choices[0].text == want_c and want_c, f"completions equal slm run --greedy: {rc.choices[0].text!r}"
                f" vs {want_c!r}")

        # a stop string from the middle of the greedy reply
        words = want.split(" ")
        if len(words) >= 4:
            stop = " " + words[len(words) // 2]
            cut = want[:want.index(stop)]
            r = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=48,
                                               stop=[stop, "never-appears"])
            t.check(r.choices[0].message.content == cut and r.choices[0].finish_reason == "stop",
                    f"stop {stop!r}: {r.choices[0].message.content!r} (want {cut!r}), {r.choices[0].finish_reason}")
            chunks = list(client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=48,
                                                         stop=stop, stream=True))
            parts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
            t.check("".join(parts) == cut, f"streamed stop: {''.join(parts)!r}")
            # no part of the stop string ever left the server: what was shown is exactly the cut text
            t.check(chunks[-1].choices[0].finish_reason == "stop", "streamed stop: finish_reason stop")
        else:
            t.skip(f"stop: the greedy reply is too short ({want!r})")
        r = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_completion_tokens=3)
        t.check(r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 3,
                f"max_completion_tokens 3: {r.choices[0].finish_reason}, {r.usage.completion_tokens} tokens")

        # bad input, and the server goes on
        st, body = s.request("POST", "/v1/chat/completions", raw=b'{"messages": [')
        is_error(st, body, 400, t, "malformed JSON")
        st, body = s.request("POST", "/v1/chat/completions", {"messages": msgs, "temperature": "hot"})
        is_error(st, body, 400, t, "temperature of the wrong type")
        st, body = s.request("POST", "/v1/chat/completions", {"messages": "hi"})
        is_error(st, body, 400, t, "messages of the wrong type")
        st, body = s.request("POST", "/v1/chat/completions", {"messages": msgs, "n": 2})
        is_error(st, body, 400, t, "n = 2")
        long_prompt = "apple banana cherry " * 400
        st, body = s.request("POST", "/v1/completions", {"prompt": long_prompt, "max_tokens": 4})
        msg = is_error(st, body, 400, t, "a prompt longer than the context")
        nums = [int(x) for x in re.findall(r"\d+", msg)]
        t.check(len(nums) >= 2 and nums[0] > 512 and nums[1] == 512, f"the message gives both numbers: {msg!r}")
        st, body = s.request("POST", "/v1/chat/completions", raw=b'{"pad": "' + b"x" * (5 << 20) + b'"}')
        is_error(st, body, 413, t, "a 5 MiB body")
        st, body = s.request("GET", "/v1/nothing")
        is_error(st, body, 404, t, "unknown path")
        st, body = s.request("GET", "/v1/chat/completions")
        is_error(st, body, 405, t, "GET on a POST endpoint")
        st, body = s.request("POST", "/v1/chat/completions",
                             {"messages": msgs, "temperature": 0, "max_tokens": 4, "user": "x", "frobnicate": [1]})
        t.check(st == 200 and body["choices"][0]["message"]["content"], f"unknown fields ignored: {st}")

        # 4 concurrent requests (2 run, 2 wait), each equal to its own single-request reply
        prompts = ["Name a fruit.", "Name a color.", "Name an animal.", "Name a country."]
        single = [client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": p}],
                                                 temperature=0, max_tokens=16).choices[0].message.content
                  for p in prompts]
        results = [None] * 4

        def one(i):
            try:
                results[i] = client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": prompts[i]}], temperature=0,
                    max_tokens=16).choices[0].message.content
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = e

        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        t.check(results == single, f"4 concurrent requests complete with their single replies: {results} vs {single}")

        # ignore_eos (llama.cpp's extension, for benchmarks): a reply that ends by itself goes on to max_tokens
        short = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompts[0]}],
                                               temperature=0, max_tokens=40)
        long = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompts[0]}],
                                              temperature=0, max_tokens=40, extra_body={"ignore_eos": True})
        t.check(short.choices[0].finish_reason == "stop" and short.usage.completion_tokens < 40
                and long.choices[0].finish_reason == "length" and long.usage.completion_tokens == 40
                and long.choices[0].message.content.startswith(short.choices[0].message.content),
                f"ignore_eos: {short.usage.completion_tokens} tokens ({short.choices[0].finish_reason}) become "
                f"{long.usage.completion_tokens} ({long.choices[0].finish_reason})")

        m = s.metrics()
        t.check(m.get('slm_requests_total{endpoint="/v1/chat/completions",status="200"}', 0) >= 10
                and m.get('slm_requests_total{endpoint="/v1/chat/completions",status="400"}', 0) == 4
                and m.get('slm_requests_total{endpoint="/v1/chat/completions",status="413"}', 0) == 1
                and m.get('slm_requests_total{endpoint="other",status="404"}', 0) == 1
                and m.get('slm_requests_total{endpoint="/v1/completions",status="400"}', 0) == 1,
                f"metrics count requests by endpoint and status: "
                f"{ {k: v for k, v in m.items() if k.startswith('slm_requests')} }")
        t.check(m.get("slm_prompt_tokens_total", 0) > 0 and m.get("slm_completion_tokens_total", 0) > 0
                and m.get("slm_tokens_per_second", 0) > 0 and m.get("slm_slots_total") == 2
                and m.get("slm_slots_active") == 0 and m.get("slm_queue_depth") == 0
                and m.get("slm_kv_cache_capacity_tokens") == 1024 and 0 < m.get("slm_kv_cache_used_tokens", 0) <= 1024,
                f"metrics: tokens, tokens/s, slots, queue, KV cache: { {k: v for k, v in m.items()} }")
    finally:
        rc = s.stop()
    t.check(rc == 0, f"server A: SIGTERM exits 0 (exit {rc}; stderr {s.err[-500:]!r})")


def server_b(slm, model, openai, t):
    s = Server(slm, model, "--parallel", "1", "--queue-limit", "1", "-c", "2048", "--api-key", KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    count = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,", "max_tokens": 1500, "temperature": 0}
    open_streams = []
    try:
        st, body = s.request("GET", "/v1/models")
        is_error(st, body, 401, t, "no API key")
        st, body = s.request("GET", "/health", headers={"Authorization": "Bearer sk-wrong"})
        is_error(st, body, 401, t, "a wrong API key")
        client = openai.OpenAI(base_url=s.base, api_key=KEY, max_retries=0, timeout=60)
        r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
        t.check(r.choices[0].message.content is not None, "the right API key: 200")

        # one running, one waiting: the third gets 503
        c1, r1 = sse_stream(s.port, count, auth)
        open_streams.append(c1)
        t.check(r1.status == 200 and len(read_events(r1, 2)) == 2, "stream 1 runs")
        c2, r2 = sse_stream(s.port, count, auth)
        open_streams.append(c2)
        queued = wait_for(lambda: s.metrics(auth).get("slm_queue_depth") == 1, 10)
        t.check(queued, "stream 2 waits in the queue")
        st, body = s.request("POST", "/v1/completions", {**count, "max_tokens": 2}, headers=auth)
        is_error(st, body, 503, t, "a third request with --parallel 1 --queue-limit 1")
        # both clients leave: the running one frees the slot, the waiting one leaves the queue
        before = s.metrics(auth).get("slm_completion_tokens_total", 0)
        c2.close()
        c1.close()
        open_streams.clear()
        freed = wait_for(lambda: (lambda m: m.get("slm_slots_active") == 0 and m.get("slm_queue_depth") == 0)(
            s.metrics(auth)), 5)
        after = s.metrics(auth).get("slm_completion_tokens_total", 0)
        t.check(freed and after - before < 200,
                f"disconnected clients free the slot and the queue at once ({after - before:.0f} tokens after)")
        r = client.completions.create(model=MODEL, prompt="Hello", max_tokens=4, temperature=0)
        t.check(r.choices[0].text is not None and r.usage.completion_tokens > 0, "the next request is served")

        # a client of a whole (non-streamed) reply that leaves while it is generated frees the slot too
        c4 = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        c4.request("POST", "/v1/completions", body=json.dumps(count),
                   headers={"Content-Type": "application/json", **auth})
        running = wait_for(lambda: s.metrics(auth).get("slm_slots_active") == 1, 10)
        c4.close()
        freed = wait_for(lambda: s.metrics(auth).get("slm_slots_active") == 0, 5)
        t.check(running and freed, f"a non-streamed request's client leaving frees the slot (ran {running}, "
                f"freed {freed})")

        # SIGTERM with a stream open: the stream ends and the server exits 0
        c3, r3 = sse_stream(s.port, count, auth)
        open_streams.append(c3)
        read_events(r3, 2)
        got = []
        reader = threading.Thread(target=lambda: got.extend(read_events(r3, 10000)))
        reader.start()
    finally:
        rc = s.stop()
    if open_streams:
        reader.join(10)
        t.check(not reader.is_alive() and got and got[-1] == "[DONE]",
                f"the open stream ends at SIGTERM ({got[-2:] if got else got})")
        for c in open_streams:
            c.close()
    t.check(rc == 0, f"server B: SIGTERM with a stream open exits 0 (exit {rc}; stderr {s.err[-500:]!r})")


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
    cli(slm, model, t)
    server_a(slm, model, openai, t)
    server_b(slm, model, openai, t)
    print(f"{time.time() - t0:.1f} s")
    t.finish()


if __name__ == "__main__":
    main()
