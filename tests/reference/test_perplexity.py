"""`slm perplexity` on SmolLM2-135M-Instruct ($SLM_TEST_MODELS), CPU, against numpy.

The perplexity is computed again here from `slm logits` on the same chunks (tokens from `slm tokenize
--ids`): the text's tokens cut into chunks of -c, each chunk's first token BOS when the model adds one, the
logits of positions c/2 .. c-2 scoring the tokens after them; log-softmax in float64. The running values,
the final perplexity and its standard error must agree to 1e-4 relative (both sides read the same float32
logits; the printed figures have 4-5 decimals).

The KL path: a base written from one run is checked against numpy's log-softmax of the same logits (its
header and size as documented in tools/cmd_perplexity.c); the same model against it gives KL 0 and 100 %
top-1 agreement; one thread instead of two, and f32 activations (on a short base, --f32-act is slow), give a
small KL; a base from another text, another -c, another vocabulary, a truncated file and a file that is no
base are refused. Usage errors exit 1, as every slm command's.

Exit: 0 pass, 1 fail, 77 skip (no slm binary, no numpy, or no SmolLM2 test model).
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
CTX = 128
DEV = ["--device", "cpu", "-t", "2"]

# Written for this test: about 420 SmolLM2 tokens, three chunks of 128.
TEXT = """The lighthouse keeper kept a notebook in which he wrote down the weather every morning at six. Most entries \
were short: wind from the west, light rain, a grey sea. On the rare clear days he added a line about the ships he \
could see from the gallery, their names if he could read them through the old brass telescope, and the direction \
they were heading. Over thirty years the notebooks filled two shelves in the kitchen, and when the light was \
automated and he moved to the town, he took them with him in a wooden crate.

His granddaughter found them years later while clearing out the house. She was a student of climate at the time, \
and she realised that the entries, taken together, formed one of the longest continuous records of coastal \
weather in the region. The official station had been moved twice and had a gap of four years in the middle of \
the century; the keeper had never missed a day. She typed the entries into a spreadsheet over a winter, one \
notebook each evening, and compared them with the measurements from the airport forty kilometres inland.

The comparison was not simple. The keeper had no instruments apart from a barometer and a thermometer that hung \
on the north wall, and his descriptions of the wind were words rather than numbers. She built a small table that \
turned his words into the Beaufort scale, checking it against the days on which both records existed. A fresh \
breeze became force five, a gale force eight, and a flat calm force zero. Where he wrote that the spray reached \
the gallery, she allowed force ten or more.

When the work was done, the record showed what the older fishermen had always said: the storms of autumn had \
begun to arrive earlier, and the calm spells of late summer had grown shorter. The change was small from one \
year to the next, but over three decades it was clear. She published the data with a short paper, and the \
notebooks went to the county archive, where they are kept in a cool room next to the parish registers.
"""

OTHER = ("A different text about gardens, soil and the slow work of compost, long enough for two chunks. " * 30)


def run(cmd, timeout=120):
    p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def parse_ppl(out):
    """(running values, final ppl, its standard error, KL line's figures or None) from stdout."""
    running = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+)", out)]
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
    k = re.search(r"KL divergence: mean ([0-9.]+) \+/- ([0-9.]+), max ([0-9.]+); top-1 agreement ([0-9.]+)%", out)
    return (running, float(m.group(1)) if m else None, float(m.group(2)) if m else None,
            tuple(float(x) for x in k.groups()) if k else None)


def main():
    ap = common.build_arg_parser(__doc__)
    args = ap.parse_args()
    slm = common.build_binary(args.build, "slm")
    if not slm:
        common.skip(f"{args.build}/bin/slm not built")
    (np,) = common.require_modules("numpy")
    d = common.models_dir()
    model = os.path.join(d, MODEL) if d else None
    if not model or not os.path.isfile(model):
        common.skip(f"no {MODEL} in $SLM_TEST_MODELS")
    tmp = tempfile.mkdtemp(prefix="slm-ppl-")
    try:
        check(slm, model, np, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check(slm, model, np, tmp):
    t = common.Tally()
    text = os.path.join(tmp, "text.txt")
    with open(text, "w") as f:
        f.write(TEXT)
    other = os.path.join(tmp, "other.txt")
    with open(other, "w") as f:
        f.write(OTHER)
    ppl = [slm, "perplexity", "-m", model] + DEV

    # the reference: tokens, chunks, logits, float64 log-softmax
    rc, out, err = run([slm, "tokenize", "-m", model, "-f", text, "--ids"])
    if not t.check(rc == 0, f"slm tokenize --ids: exit {rc} {err[-300:]!r}"):
        t.finish()
    ids = [int(x) for x in out.strip()[1:-1].split(",")]
    rc, out, _ = run([slm, "tokenize", "-m", model, "-p", "", "--ids"])
    added = [int(x) for x in out.strip()[1:-1].split(",") if x.strip()]
    bos = added[0] if added else None
    n_chunks = len(ids) // CTX
    first = CTX // 2
    t.check(n_chunks >= 2, f"the text is {len(ids)} tokens: {n_chunks} chunks of {CTX}")
    nll, logps, rows = [], [], []
    for k in range(n_chunks):
        chunk = ids[k * CTX:(k + 1) * CTX]
        if bos is not None:
            chunk[0] = bos
        lf = os.path.join(tmp, f"logits{k}.bin")
        rc, _, err = run([slm, "logits", "-m", model, "-c", str(CTX), "--tokens", ",".join(map(str, chunk)),
                          "--out", lf, "-n", "0"] + DEV)
        if not t.check(rc == 0, f"slm logits on chunk {k + 1}: exit {rc} {err[-300:]!r}"):
            t.finish()
        lg = np.fromfile(lf, dtype=np.float32).reshape(CTX, -1).astype(np.float64)
        sc = lg[first:CTX - 1]
        mx = sc.max(axis=1, keepdims=True)
        lsm = sc - (mx + np.log(np.exp(sc - mx).sum(axis=1, keepdims=True)))
        tgt = np.array(chunk[first + 1:CTX])
        nll.append(-lsm[np.arange(len(tgt)), tgt])
        logps.append(lsm)
        rows.append(chunk)
    all_nll = np.concatenate(nll)
    ref_running = [float(np.exp(np.concatenate(nll[:k + 1]).mean())) for k in range(n_chunks)]
    ref_ppl = float(np.exp(all_nll.mean()))
    ref_se = ref_ppl * float(all_nll.std() / np.sqrt(len(all_nll) - 1))
    print(f"numpy: PPL {ref_ppl:.4f} +/- {ref_se:.5f} over {len(all_nll)} tokens in {n_chunks} chunks")

    rc, out, err = run(ppl + ["-f", text, "-c", str(CTX)])
    running, p, se, _ = parse_ppl(out)
    t.check(rc == 0 and p is not None, f"slm perplexity: exit {rc}, {out.strip()!r} {err[-300:]!r}")
    if p is not None:
        t.check(abs(p - ref_ppl) <= 1e-4 * ref_ppl, f"perplexity {p} vs numpy {ref_ppl:.6f}")
        t.check(abs(se - ref_se) <= 1e-4 * ref_se + 1e-5, f"standard error {se} vs numpy {ref_se:.6f}")
        t.check(len(running) == n_chunks and all(abs(a - b) <= 1e-4 * b for a, b in zip(running, ref_running)),
                f"running values {running} vs numpy {[round(x, 4) for x in ref_running]}")
        t.check(f"{len(all_nll)} tokens scored in {n_chunks} chunks of {CTX}" in out, "the count of scored tokens")
    t.check(re.search(r"tokens/s", err) is not None, f"tokens/s reported: {err.strip()!r}")
    rc, out, _ = run(ppl + ["-f", text, "-c", str(CTX), "--chunks", "1", "-b", "32"])
    running, p, _, _ = parse_ppl(out)
    t.check(rc == 0 and p is not None and abs(p - ref_running[0]) <= 1e-4 * ref_running[0] and len(running) == 1,
            f"--chunks 1 -b 32 scores chunk 1 alone: {out.strip()!r} (numpy {ref_running[0]:.4f})")

    # KL base: written, and as documented
    base = os.path.join(tmp, "base.kld")
    rc, out, err = run(ppl + ["-f", text, "-c", str(CTX), "--kl-divergence-base", base])
    t.check(rc == 0 and os.path.isfile(base), f"writing a KL base: exit {rc} {err[-300:]!r}")
    if os.path.isfile(base):
        raw = open(base, "rb").read()
        magic = raw[:8]
        version, n_vocab, n_ctx, nc, fst = struct.unpack("<5I", raw[8:28])
        hdr_ok = magic == b"SLMKLD1\0" and version == 1 and (n_ctx, nc, fst) == (CTX, n_chunks, first)
        t.check(hdr_ok, f"base header: {magic!r} v{version} n_vocab {n_vocab} n_ctx {n_ctx} chunks {nc} first {fst}")
        if hdr_ok:
            ntok = nc * n_ctx
            toks = np.frombuffer(raw, dtype=np.int32, count=ntok, offset=28)
            lp = np.frombuffer(raw, dtype=np.float32, offset=28 + 4 * ntok).reshape(nc, n_ctx - 1 - fst, n_vocab)
            t.check(len(raw) == 28 + 4 * ntok + 4 * nc * (n_ctx - 1 - fst) * n_vocab, f"base size {len(raw)}")
            t.check(toks.tolist() == sum(rows, []), "base tokens are the chunks evaluated")
            diff = max(float(np.abs(lp[k] - logps[k]).max()) for k in range(nc))
            t.check(diff < 1e-4, f"base log-probabilities vs numpy's log-softmax: max difference {diff:.2e}")

    # the same model against its base: KL 0, full agreement; the tokens come from the base
    rc, out, err = run(ppl + ["--kl-divergence-base", base, "--kl-divergence"])
    _, p, _, kl = parse_ppl(out)
    t.check(rc == 0 and kl is not None and kl[0] == 0 and kl[2] == 0 and kl[3] == 100.0 and p is not None
            and abs(p - ref_ppl) <= 1e-4 * ref_ppl, f"same model, no -f: {out.strip()!r} {err[-200:]!r}")
    rc, out, err = run(ppl + ["-f", text, "--kl-divergence-base", base, "--kl-divergence", "-t", "1"])
    _, _, _, kl = parse_ppl(out)
    t.check(rc == 0 and kl is not None and kl[0] < 1e-3 and kl[2] < 1e-2 and kl[3] >= 95.0,
            f"one thread: small KL: {out.strip()!r} {err[-200:]!r}")
    # f32 activations change every mat-mul a little: a small but nonzero KL (a short base: --f32-act is slow)
    short = os.path.join(tmp, "short.kld")
    rc, out, err = run(ppl + ["-f", text, "-c", "32", "--chunks", "2", "--kl-divergence-base", short])
    t.check(rc == 0, f"a short base (-c 32, 2 chunks): exit {rc} {err[-200:]!r}")
    rc, out, err = run(ppl + ["--kl-divergence-base", short, "--kl-divergence", "--f32-act"])
    _, _, _, kl = parse_ppl(out)
    t.check(rc == 0 and kl is not None and 0 < kl[0] < 0.05 and kl[2] < 0.5 and kl[3] >= 80.0,
            f"--f32-act: small KL: {out.strip()!r} {err[-200:]!r}")

    # bases that do not fit
    def refused(extra, want, what):
        rc, out, err = run(ppl + extra)
        t.check(rc == 1 and want in err, f"{what}: exit {rc} (want 1), {err.strip()[-300:]!r}")

    refused(["-f", other, "--kl-divergence-base", base, "--kl-divergence"], "does not give the KL base's tokens",
            "a base of another text")
    refused(["-f", text, "-c", "64", "--kl-divergence-base", base, "--kl-divergence"],
            f"-c 64, but the KL base {base} was made with -c {CTX}", "a base of another -c")
    if os.path.isfile(base):
        raw = open(base, "rb").read()
        cut = os.path.join(tmp, "cut.kld")
        with open(cut, "wb") as f:
            f.write(raw[:len(raw) - 4096])
        refused(["--kl-divergence-base", cut, "--kl-divergence"], "implies", "a truncated base")
        # a base made with a vocabulary of 1000 tokens (consistent in itself)
        nv = 1000
        fake = os.path.join(tmp, "vocab.kld")
        with open(fake, "wb") as f:
            f.write(b"SLMKLD1\0" + struct.pack("<5I", 1, nv, CTX, 2, first))
            f.write(np.zeros(2 * CTX, dtype=np.int32).tobytes())
            f.write(np.zeros(2 * (CTX - 1 - first) * nv, dtype=np.float32).tobytes())
        refused(["--kl-divergence-base", fake, "--kl-divergence"], "vocabulary of 1000 tokens", "another vocabulary")
    refused(["--kl-divergence-base", text, "--kl-divergence"], "is not a KL base", "a text file as base")
    refused(["--kl-divergence-base", os.path.join(tmp, "none.kld"), "--kl-divergence"], "cannot read the KL base",
            "a missing base")

    # usage errors
    empty = os.path.join(tmp, "empty.txt")
    open(empty, "w").close()
    refused(["-f", text, "-c", "512"], f"the text is {len(ids)} tokens: perplexity needs at least 2 chunks of 512",
            "a text shorter than 2 chunks")
    refused(["-f", text, "-c", "4"], "-c 4 is too small", "-c 4")
    refused(["-f", empty], "is empty", "an empty text")
    refused(["-f", os.path.join(tmp, "missing.txt")], "cannot read", "a missing text")
    refused([], "needs a text file (-f FILE)", "no -f")
    refused(["-f", text, "--kl-divergence"], "--kl-divergence-base FILE", "--kl-divergence without a base")
    refused(["-f", text, "--chunks", "0"], "--chunks: '0' is out of range", "--chunks 0")
    rc, out, err = run([slm, "perplexity", "--help"])
    t.check(rc == 0 and out.startswith("usage: slm perplexity") and not err, f"--help: exit {rc}")
    t.finish()


if __name__ == "__main__":
    main()
