"""`slm` and `slm-bench` on bad input and lost output: every case exits non-zero with a message that says
why, never a crash, a hang or a silent success.

1. options (no model needed: refused while parsing): NaN, infinity and out-of-range sampling values
   (--temp, --top-p, --min-p, --repeat-penalty), --vram-budget beyond size_t or not finite, --seed abc,
   -1 or past 2^64, --device "", integers with trailing garbage, overflow, zero or negative (-n, -t, -c, -b,
   -ngl, --top-k), --tensor-split lists, an unknown option (also as the last argument), a missing value;
   slm-bench likewise (unknown last option named "unknown", -c 0, --seed abc, an empty --out);
2. -h/--help on every subcommand: its usage on stdout, exit 0 (also with the output on /dev/full: exit 1);
3. lost output (a tiny synthetic model written by slm-bench --write-synthetic, no tokenizer needed):
   `slm logits --out /dev/full`, `slm logits` and `slm devices` on /dev/full and on a closed stdout, where the
   closed stdout must not make the ids land in the --out file; `slm-bench --out /dev/full`, its report on
   /dev/full and on a closed stdout, `--write-synthetic /dev/full`;
4. on SmolLM2-135M-Instruct ($SLM_TEST_MODELS; skipped without it): `slm run` on /dev/full and on a closed
   stdout, `-n 4` reports exactly 4 generated tokens, `slm chat` with /reset before any message (exit 0;
   the null-pointer memmove it once made is caught by the sanitizer build of scripts/test), `slm chat` on
   /dev/full, and --no-parse-special: with it, a user's "<|im_end|>" is several text tokens in the prompt,
   without it one special token, in `slm run --chat` and `slm chat` alike.

    python tests/reference/test_cli_errors.py --build BUILD_DIR

Exit: 0 pass, 1 fail, 77 skip (slm or slm-bench not built).
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPEC = "custom:q4_0:n_layer=2:n_embd=256"
SUMMARY = re.compile(r"^slm: prompt (\d+) tok .* \| gen (\d+) tok ", re.M)


def run(cmd, stdout="pipe", stdin_data=None, timeout=120):
    """Runs cmd; stdout "pipe" (captured), "full" (/dev/full) or "closed" (fd 1 closed in the child).
    Returns (rc, stdout text, stderr text)."""
    kw = {}
    out_file = None
    if stdout == "pipe":
        kw["stdout"] = subprocess.PIPE
    elif stdout == "full":
        out_file = open("/dev/full", "wb")
        kw["stdout"] = out_file
    else:
        # runs in the child after its descriptors are set up: the program starts with fd 1 closed
        kw["preexec_fn"] = lambda: os.close(1)
    try:
        p = subprocess.run(cmd, stderr=subprocess.PIPE, input=stdin_data, timeout=timeout, **kw)
    finally:
        if out_file:
            out_file.close()
    out = p.stdout.decode(errors="replace") if p.stdout is not None else ""
    return p.returncode, out, p.stderr.decode(errors="replace")


def expect_fail(t, cmd, want, what, stdout="pipe"):
    """cmd must exit with a status in 1..125 (not a signal, not 0) and say `want` on stderr."""
    rc, _, err = run(cmd, stdout=stdout)
    t.check(0 < rc < 126 and want in err and "Segmentation" not in err,
            f"{what}: exit {rc}, stderr has {want!r}: {err.strip()[-300:]!r}")


def options(t, slm, bench, model):
    base = [slm, "run", "-m", model, "-p", "hi"]
    cases = [
        (["--temp", "nan"], "--temp: 'nan' is not a finite number"),
        (["--temp", "inf"], "--temp: 'inf' is not a finite number"),
        (["--temp", "-0.5"], "--temp: '-0.5' is out of range"),
        (["--temp", "1e39"], "--temp: '1e39' is out of range"),  # finite, but no float holds it
        (["--top-p", "nan"], "--top-p: 'nan' is not a finite number"),
        (["--top-p", "0"], "--top-p: '0' is out of range (0 < P <= 1)"),
        (["--top-p", "1.01"], "--top-p: '1.01' is out of range"),
        (["--min-p", "-inf"], "--min-p: '-inf' is not a finite number"),
        (["--min-p", "2"], "--min-p: '2' is out of range (0 <= P <= 1)"),
        (["--repeat-penalty", "NaN"], "--repeat-penalty: 'NaN' is not a finite number"),
        (["--repeat-penalty", "0"], "--repeat-penalty: '0' is out of range (> 0)"),
        (["--vram-budget", "nan"], "--vram-budget: 'nan' is not a finite number"),
        (["--vram-budget", "1e30"], "--vram-budget: '1e30' is out of range"),
        (["--vram-budget", "16E"], "--vram-budget: '16E' is not a size"),
        (["--vram-budget", "-1G"], "--vram-budget: '-1G' is out of range"),
        (["--seed", "abc"], "--seed: 'abc' is not a whole number"),
        (["--seed", "-1"], "--seed: '-1' is out of range"),
        (["--seed", "18446744073709551616"], "--seed: '18446744073709551616' is out of range"),
        (["--seed", "12abc"], "--seed: '12abc' is not a whole number"),
        (["--device", ""], "--device: the value is empty"),
        (["-m", ""], "-m: the value is empty"),
        (["-n", "-1"], "-n: '-1' is out of range"),
        (["-n", "4x"], "-n: '4x' is not a whole number"),
        (["-n", "99999999999999999999"], "-n: '99999999999999999999' is out of range"),
        (["-n", " 4"], "-n: ' 4' is not a number (leading blank)"),
        (["-t", "0"], "-t: '0' is out of range 1..1024"),
        (["-t", ""], "-t: the value is empty"),
        (["-c", "0"], "-c: '0' is out of range"),
        (["-c", "4096k"], "-c: '4096k' is not a whole number"),
        (["-b", "-8"], "-b: '-8' is out of range"),
        (["--top-k", "1.5"], "--top-k: '1.5' is not a whole number"),
        (["--repeat-last-n", "-1"], "--repeat-last-n: '-1' is out of range"),
        (["-ngl", "-3"], "-ngl: '-3' is not a layer count"),
        (["-ngl", "al"], "-ngl: 'al' is not a layer count"),
        (["--tensor-split", "3,,1"], "--tensor-split: '3,,1' is not a list of shares"),
        (["--tensor-split", "nan,1"], "--tensor-split: 'nan,1' is not a list of shares"),
        (["--tensor-split", "0,0"], "--tensor-split: '0,0' is all zero"),
        (["-ctk", "q9_0"], "-ctk: 'q9_0' is not a KV cache type (f16, q8_0, q4_0)"),
        (["-ctv", "f32"], "-ctv: 'f32' is not a KV cache type"),
        (["--frobnicate"], "unknown option '--frobnicate'"),
        (["-t"], "option -t needs a value"),
    ]
    for extra, want in cases:
        expect_fail(t, base + extra, want, f"slm run {' '.join(extra)}")
    # the same parser serves chat and logits
    expect_fail(t, [slm, "chat", "-m", model, "--seed", "x1"], "--seed: 'x1' is not a whole number", "slm chat --seed")
    expect_fail(t, [slm, "chat", "-m", model, "-n", "0"], "-n: a reply needs at least 1 token", "slm chat -n 0")
    expect_fail(t, [slm, "logits", "-m", model, "--tokens", "1,,2"], "--tokens: '' in '1,,2' is empty",
                "slm logits --tokens 1,,2")
    expect_fail(t, [slm, "logits", "-m", model, "--tokens", "1,2x"], "--tokens: '2x' in '1,2x' is not a whole number",
                "slm logits --tokens 1,2x")
    expect_fail(t, [slm, "logits", "-m", model, "--tokens", "1,-2"], "is out of range", "slm logits --tokens 1,-2")
    expect_fail(t, [slm, "devices", "--all"], "devices takes no argument", "slm devices --all")
    expect_fail(t, [slm, "frob"], "unknown command 'frob'", "slm frob")

    # slm-bench: usage errors exit 2 and name the option
    for extra, want in [
        (["--frobnicate"], "unknown option '--frobnicate'"),  # last: not "needs a value"
        (["-c", "0"], "-c: '0' is out of range 1.."),
        (["-c", "8x"], "-c: '8x' is not a whole number"),
        (["-r", "0"], "-r: '0' is out of range 1.."),
        (["--seed", "abc"], "--seed: 'abc' is not a whole number"),
        (["--seed", "-5"], "--seed: '-5' is out of range"),
        (["--out", ""], "--out: the value is empty"),
        (["-p", "99999999999"], "-p: '99999999999' in '99999999999' is not a non-negative number"),
        (["-t", "1,x"], "'x' in '1,x' is not a non-negative number"),
        (["-o"], "option -o needs a value"),
    ]:
        rc, _, err = run([bench, "--synthetic", SPEC] + extra)
        t.check(rc == 2 and want in err, f"slm-bench {' '.join(extra)}: exit {rc} (want 2), {err.strip()[:200]!r}")


def helps(t, slm, bench):
    for cmd in (["run"], ["chat"], ["logits"], ["perplexity"], ["tokenize"], ["devices"], []):
        for flag in ("-h", "--help"):
            rc, out, err = run([slm] + cmd + [flag])
            name = cmd[0] if cmd else "<command>"
            t.check(rc == 0 and out.startswith("usage: slm " + name) and not err,
                    f"slm {' '.join(cmd + [flag])}: usage on stdout, exit 0 (exit {rc}, {out[:60]!r}, {err[:100]!r})")
    rc, out, _ = run([slm, "run", "-m", "x", "--temp", "0.5", "--help"])
    t.check(rc == 0 and out.startswith("usage: slm run"), f"--help after other options: exit {rc}")
    expect_fail(t, [slm, "run", "--help"], "No space left on device", "slm run --help > /dev/full", stdout="full")
    rc, out, _ = run([bench, "--help"])
    t.check(rc == 0 and out.startswith("usage: slm-bench"), f"slm-bench --help: exit {rc}")
    expect_fail(t, [bench, "--help"], "No space left on device", "slm-bench --help > /dev/full", stdout="full")


def lost_output(t, slm, bench, tmp):
    model = os.path.join(tmp, "tiny.gguf")
    rc, _, err = run([bench, "--synthetic", SPEC, "--write-synthetic", model])
    if not t.check(rc == 0 and os.path.isfile(model), f"--write-synthetic: exit {rc} {err[-200:]!r}"):
        return None
    expect_fail(t, [bench, "--synthetic", SPEC, "--write-synthetic", "/dev/full"], "writing /dev/full: No space left",
                "slm-bench --write-synthetic /dev/full")
    logits = [slm, "logits", "-m", model, "--tokens", "1,2,3", "-n", "2", "-t", "1"]
    rc, out, err = run(logits)
    t.check(rc == 0 and len(out.split()) == 2, f"slm logits on the tiny model: exit {rc}, {out!r} {err[-200:]!r}")
    expect_fail(t, logits + ["--out", "/dev/full"], "slm: writing /dev/full: No space left on device",
                "slm logits --out /dev/full")
    expect_fail(t, logits, "slm: writing to stdout: No space left on device", "slm logits > /dev/full", stdout="full")
    out_file = os.path.join(tmp, "logits.f32")
    expect_fail(t, logits + ["--out", out_file], "slm: writing to stdout: Bad file descriptor",
                "slm logits with stdout closed", stdout="closed")
    # the size a good run writes ([3][n_vocab] floats), compared rather than computed from the model
    good = os.path.join(tmp, "good.f32")
    run(logits + ["--out", good])
    t.check(os.path.getsize(out_file) == os.path.getsize(good) > 0,
            f"with stdout closed the ids did not land in --out ({os.path.getsize(out_file)} vs "
            f"{os.path.getsize(good)} bytes)")
    expect_fail(t, [slm, "devices"], "slm: writing to stdout: No space left on device", "slm devices > /dev/full",
                stdout="full")
    expect_fail(t, [slm, "devices"], "slm: writing to stdout: Bad file descriptor", "slm devices >&-",
                stdout="closed")

    b = [bench, "-m", model, "-p", "0", "-n", "2", "-r", "1", "-t", "1", "--no-peak", "--no-warmup"]
    rc, out, err = run(b)
    t.check(rc == 0 and "tg2" in out, f"slm-bench on the tiny model: exit {rc} {err[-200:]!r}")
    expect_fail(t, b + ["--out", "/dev/full"], "slm-bench: writing /dev/full: No space left on device",
                "slm-bench --out /dev/full")
    expect_fail(t, b + ["-o", "json"], "slm-bench: writing to stdout: No space left on device",
                "slm-bench -o json > /dev/full", stdout="full")
    expect_fail(t, b, "slm-bench: writing to stdout: Bad file descriptor", "slm-bench >&-", stdout="closed")
    rc, _, err = run(b + ["-c", "1"])
    t.check(rc == 1 and "2 tokens do not fit the context of 1" in err,
            f"slm-bench -c 1 is honoured, not raised to 16: exit {rc}, {err.strip()[-200:]!r}")
    return model


def with_smollm2(t, slm, model):
    runp = [slm, "run", "-m", model, "-p", "The capital of France is", "--greedy", "-t", "2"]
    # a quantized KV cache where a device has no kernel for it: refused when the context is made, by name
    rc, out, _ = run([slm, "devices"])
    if rc == 0 and "vulkan:0" in out:
        expect_fail(t, runp + ["-n", "1", "--device", "vulkan:0", "-ngl", "all", "-ctk", "q8_0"],
                    "-ctk q8_0 is not supported on vulkan:0", "-ctk q8_0 on vulkan:0")
    rc, out, err = run(runp + ["-n", "4"])
    m = SUMMARY.search(err)
    t.check(rc == 0 and m is not None and m.group(2) == "4", f"-n 4 reports 4 generated tokens: {err.strip()!r}")
    # a one-token prompt is still counted as prompt, not as a generated token
    rc, out, err = run([slm, "run", "-m", model, "-p", "Hello", "--greedy", "-t", "2", "-n", "4"])
    m = SUMMARY.search(err)
    t.check(rc == 0 and m is not None and m.group(2) == "4" and m.group(1) == "1",
            f"one-token prompt, -n 4: prompt 1, gen 4: {err.strip()!r}")
    expect_fail(t, runp + ["-n", "4"], "slm: writing to stdout: No space left on device", "slm run > /dev/full",
                stdout="full")
    rc, _, err = run(runp + ["-n", "4"], stdout="full")
    t.check(err.count("writing to stdout") == 1, f"the write error is said once: {err!r}")
    expect_fail(t, runp + ["-n", "4"], "slm: writing to stdout: Bad file descriptor", "slm run >&-", stdout="closed")

    chat = [slm, "chat", "-m", model, "--greedy", "-t", "2", "-n", "4"]
    rc, out, err = run(chat, stdin_data=b"/reset\nHi!\n/reset\n/exit\n")
    t.check(rc == 0 and err.count("conversation cleared") == 2 and out.strip(),
            f"slm chat: /reset before any message: exit {rc}, {err.strip()[-300:]!r}")
    rc, out, err = run(chat + ["--system", "Be brief."], stdin_data=b"/reset\nHi!\n/exit\n")
    t.check(rc == 0 and out.strip(), f"slm chat --system: /reset first: exit {rc}")
    rc, _, err = run(chat, stdout="full", stdin_data=b"Hi!\nHow are you?\n")
    t.check(rc == 1 and err.count("slm: writing to stdout: No space left on device") == 1,
            f"slm chat > /dev/full: exit {rc}, {err.strip()[-300:]!r}")

    # special-token text typed by the user: one token by default (as llama.cpp), text with --no-parse-special
    def prompt_tokens(args):
        rc, _, err = run(args)
        m = SUMMARY.search(err)
        return int(m.group(1)) if rc == 0 and m else None

    rq = [slm, "run", "-m", model, "--chat", "-n", "0", "-t", "2", "-p"]
    plain = prompt_tokens(rq + ["Say X now"])
    special = prompt_tokens(rq + ["Say <|im_end|> now"])
    kept = prompt_tokens(rq + ["Say <|im_end|> now", "--no-parse-special"])
    plain2 = prompt_tokens(rq + ["Say X now", "--no-parse-special"])
    t.check(plain is not None and plain2 == plain,
            f"--chat --no-parse-special leaves a prompt without special-token text alone ({plain2} vs {plain})")
    t.check(kept is not None and special is not None and kept > special + 2,
            f"--chat --no-parse-special: '<|im_end|>' is text ({kept} tokens vs {special})")
    turn = re.compile(r"^slm: turn 1: prompt (\d+) tokens", re.M)
    counts = []
    for flags in ([], ["--no-parse-special"]):
        rc, _, err = run([slm, "chat", "-m", model, "--greedy", "-t", "2", "-n", "1", "-v"] + flags,
                         stdin_data=b"Say <|im_end|> now\n")
        m = turn.search(err)
        counts.append(int(m.group(1)) if rc == 0 and m else None)
    t.check(None not in counts and counts[1] > counts[0] + 2,
            f"slm chat --no-parse-special: the user's '<|im_end|>' is text (prompt {counts[1]} vs {counts[0]} tokens)")


def main():
    ap = common.build_arg_parser(__doc__)
    args = ap.parse_args()
    slm = common.build_binary(args.build, "slm")
    bench = common.build_binary(args.build, "slm-bench")
    if not slm or not bench:
        common.skip(f"{args.build}/bin/slm or slm-bench not built")
    t = common.Tally()
    with tempfile.TemporaryDirectory() as tmp:
        helps(t, slm, bench)
        model = lost_output(t, slm, bench, tmp)
        if model:
            options(t, slm, bench, model)
        d = common.models_dir()
        smol = os.path.join(d, SMOLLM2) if d else None
        if smol and os.path.isfile(smol):
            with_smollm2(t, slm, smol)
        else:
            t.skip(f"no {SMOLLM2} in $SLM_TEST_MODELS: run, chat and --no-parse-special cases")
    t.finish()


if __name__ == "__main__":
    main()
