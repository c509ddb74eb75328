"""`slm tokenize` on SmolLM2-135M-Instruct ($SLM_TEST_MODELS).

Its ids must equal those of BUILD/bin/tokenize (tests/tools/tokenize.c: slm's tokenizer, which
test_tokenizer_hf.py holds to the transformers tokenizer) for the same strings, with and without the
special tokens the model adds (--no-bos) and special-token text parsed or not (--parse-special), and, for
plain English text, those of the `tokenizers` byte-level BPE built from the file (common.gguf_bpe_tokenizer)
when that package is there. The three output forms must agree: the default ID<TAB>'PIECE' lines, --ids'
[ID, ...] list, --pieces; the pieces, unescaped, must join to the text (SmolLM2's byte-level BPE is
lossless). Bad input exits 1 with a reason.

Exit: 0 pass, 1 fail, 77 skip (no slm or tokenize binary, or no SmolLM2 test model).
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
STRINGS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, a tab\there and a newline\nthen more",
    "quotes ' and \" and a backslash \\ here",
    "accents: café, naïve, Zürich; emoji: 🙂; CJK: 東京",
    "<|im_start|>user\nHi there<|im_end|>",
    "Prices rose 3.5% in 2024, to $1,234.56.",
]


def run(cmd, stdin=None):
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", errors="replace"), p.stderr.decode(errors="replace")


def unescape(s):
    """The bytes of a piece as slm tokenize prints it (C escapes: \\n \\t \\r \\\\ \\' \\xNN)."""
    out, i, raw = bytearray(), 0, s.encode("utf-8")
    while i < len(raw):
        if raw[i:i + 1] == b"\\":
            c = raw[i + 1:i + 2]
            if c == b"x":
                out.append(int(raw[i + 2:i + 4], 16))
                i += 4
                continue
            out += {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"\\": b"\\", b"'": b"'"}[c]
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def reference_ids(tool, model, s, add_special, parse_special):
    """ids from BUILD/bin/tokenize (one hex-encoded string on stdin)."""
    cmd = [tool, model] + (["--add-special"] if add_special else []) + (["--parse-special"] if parse_special else [])
    rc, out, err = run(cmd, (s.encode().hex() + "\n").encode())
    if rc != 0:
        return None
    ids = out.split("|")[0].split()
    return [int(x) for x in ids]


def main():
    ap = common.build_arg_parser(__doc__)
    args = ap.parse_args()
    slm = common.build_binary(args.build, "slm")
    tool = common.build_binary(args.build, "tokenize")
    if not slm or not tool:
        common.skip(f"{args.build}/bin/slm or bin/tokenize not built")
    d = common.models_dir()
    model = os.path.join(d, MODEL) if d else None
    if not model or not os.path.isfile(model):
        common.skip(f"no {MODEL} in $SLM_TEST_MODELS")
    t = common.Tally()
    base = [slm, "tokenize", "-m", model]

    def ids_of(s, *extra):
        rc, out, err = run(base + ["-p", s, "--ids"] + list(extra))
        if rc != 0 or not re.fullmatch(r"\[(\d+(, \d+)*)?\]\n", out):
            return None, err
        return [int(x) for x in out.strip()[1:-1].split(",") if x.strip()], err

    for s in STRINGS:
        for extra, add, parse in (([], True, False), (["--no-bos"], False, False), (["--parse-special"], True, True),
                                  (["--no-bos", "--parse-special"], False, True)):
            got, err = ids_of(s, *extra)
            want = reference_ids(tool, model, s, add, parse)
            t.check(got is not None and got == want and f"slm: {len(got)} tokens" in err,
                    f"{s[:30]!r} {' '.join(extra) or '(default)'}: {got} vs tokenize {want}")
        # the default lines and --pieces: the same tokens; the pieces join to the text
        rc, out, _ = run(base + ["-p", s])
        lines = out.split("\n")[:-1]
        parsed = [re.fullmatch(r"(\d+)\t'(.*)'", ln) for ln in lines]
        ok = rc == 0 and all(parsed)
        got, _ = ids_of(s)
        t.check(ok and [int(m.group(1)) for m in parsed] == got and
                b"".join(unescape(m.group(2)) for m in parsed) == s.encode(),
                f"{s[:30]!r}: ID<TAB>'PIECE' lines give the ids and, joined, the text: {out[:200]!r}")
        rc, out2, _ = run(base + ["-p", s, "--pieces"])
        t.check(rc == 0 and ok and out2.split("\n")[:-1] == [m.group(2) for m in parsed],
                f"{s[:30]!r}: --pieces prints the same pieces")

    # special-token text: one token with --parse-special, plain text without
    special, _ = ids_of("<|im_start|>", "--parse-special")
    plain, _ = ids_of("<|im_start|>")
    t.check(special is not None and len(special) == 1 and plain is not None and len(plain) > 1 and
            special[0] not in plain, f"<|im_start|>: {special} with --parse-special, {plain} without")

    # -f FILE reads the same text (newlines included)
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write("\n".join(STRINGS).encode())
        path = f.name
    try:
        rc, out, _ = run(base + ["-f", path, "--ids"])
        got, _ = ids_of("\n".join(STRINGS))
        t.check(rc == 0 and got is not None and out == "[" + ", ".join(map(str, got)) + "]\n", "-f FILE = -p TEXT")
    finally:
        os.unlink(path)

    # an independent reference: `tokenizers`' byte-level BPE from the file, on plain English
    try:
        tk = common.gguf_bpe_tokenizer(model)
    except Exception as e:  # noqa: BLE001 - tokenizers or gguf missing: that part is skipped
        tk = None
        t.skip(f"tokenizers reference unavailable ({e})")
    if tk is not None:
        for s in STRINGS[:2]:
            got, _ = ids_of(s, "--no-bos")
            want = tk.encode(s, add_special_tokens=False).ids
            t.check(got == want, f"{s!r}: {got} vs tokenizers {want}")

    # bad input
    for extra, want in [([], "needs the text: -p TEXT or -f FILE"),
                        (["-p", "a", "-f", "x"], "needs the text: -p TEXT or -f FILE"),
                        (["-f", "/nonexistent/x.txt"], "cannot read /nonexistent/x.txt"),
                        (["-p", "a", "--ids", "--pieces"], "choose one"),
                        (["-p", "a", "--frob"], "unknown option '--frob'")]:
        rc, _, err = run(base + extra)
        t.check(rc == 1 and want in err, f"slm tokenize {' '.join(extra)}: exit {rc} (want 1), {err.strip()!r}")
    rc, _, err = run([slm, "tokenize", "-p", "a"])
    t.check(rc == 1 and "no model given" in err, f"no -m: exit {rc}, {err.strip()!r}")
    rc, out, err = run([slm, "tokenize", "--help"])
    t.check(rc == 0 and out.startswith("usage: slm tokenize") and not err, f"--help: exit {rc}")
    t.finish()


if __name__ == "__main__":
    main()
