"""slm's SentencePiece tokenizer against the `sentencepiece` library itself, on the same vocabulary.

transformers' GGUF converter mis-builds some SentencePiece vocabularies (Gemma 3 comes out letter by letter,
Phi-3 misses the fixture's own ids), so test_tokenizer_hf.py has no reference for them. Here the reference is
Google's sentencepiece: a ModelProto (its protobuf model format, sentencepiece_model_pb2) is built from the
GGUF's tokens, scores and token types and configured from the GGUF metadata, then loaded with
SentencePieceProcessor. Nothing of slm is used to build it.

For every tokenizer.ggml.model == "llama" file among the test models ($SLM_TEST_MODELS/*.gguf: Gemma 3) and
the vocabulary fixtures (../shared/fixtures/vocab or $SLM_SHARED/fixtures/vocab: Llama 2 SPM, Phi-3):
- the ids of every string of test_tokenizer_hf.corpus() (>= 200) must equal SentencePiece's
  (EncodeAsIds; no BOS/EOS, control-token text is ordinary text on both sides, user-defined tokens match);
- decode(encode(s)) == s wherever SentencePiece itself is lossless on s (its own DecodeIds gives s back:
  byte fallback makes every string lossless except text holding U+2581, which stands for a space);
- where the file has NAME.gguf.inp/.out (the family's own ids), the reference must reproduce them first,
  so a mis-configured reference fails loudly instead of agreeing with a wrong slm;
- the Llama 2 vocabulary once more with its 256 byte pieces renamed (written with gguf.GGUFWriter), where
  unknown characters become <unk> and SentencePiece gives one <unk> per run of them.
The corpus gets EXTRA strings below (special-token text at the edges, whitespace runs, unknown runs). With
add_space_prefix, slm prefixes every stretch between special tokens (as llama.cpp and transformers'
Llama tokenizers do), SentencePiece only the start of its input: see reference_encoder().

How the GGUF becomes a ModelProto (each choice is the documented meaning of the GGUF key):
- model_type BPE: GGUF's "llama" tokenizer is SentencePiece BPE (merge the adjacent pair whose merged piece
  has the highest score);
- token types map one to one (GGUF reuses SentencePiece's enum: 1 normal ... 6 byte). SentencePiece wants
  exactly one UNKNOWN piece: tokenizer.ggml.unknown_token_id is made the UNKNOWN one and any other
  UNKNOWN-typed entry (Phi-3's [PAD...] fillers) becomes CONTROL, which behaves the same in encoding
  (neither is ever matched in text nor produced by merges);
- user-defined pieces get their spaces back as U+2581: GGUF converters store them with plain spaces
  (Gemma 3's "▁▁" whitespace pieces are "  " in the file) because a GGUF user-defined token is matched
  in the raw text, while SentencePiece matches user-defined pieces in the normalized text, where every
  space is already U+2581;
- byte_fallback when the vocabulary has the 256 <0xNN> byte pieces;
- normalizer "identity" (no NFKC table: these models ship none), add_dummy_prefix =
  tokenizer.ggml.add_space_prefix (default true), remove_extra_whitespaces off, escape_whitespaces on.

    python tests/reference/test_tokenizer_spm.py --build BUILD_DIR [--verbose]

Exit: 0 pass, 1 fail, 77 skip (sentencepiece/protobuf missing, the tool missing, or no SPM file).
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from test_tokenizer_hf import corpus, fixture_cases, fixture_files  # noqa: E402

T_NORMAL, T_UNKNOWN, T_CONTROL, T_USER, T_UNUSED, T_BYTE = 1, 2, 3, 4, 5, 6


def gguf_metadata(path):
    """The key/value section of a GGUF v2/v3 file as a dict (strings decoded, arrays as lists).

    Read here from the GGUF specification rather than with gguf.GGUFReader, which builds a numpy view per
    array element and takes half a minute over Gemma 3's 262k-token vocabulary."""
    import mmap
    import struct

    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    magic, version, _n_tensors, n_kv = struct.unpack_from("<4sIQQ", buf, 0)
    if magic != b"GGUF" or version not in (2, 3):
        raise ValueError(f"{path}: not a GGUF v2/v3 file")
    pos = 24

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        n = take("<Q")
        pos += n
        return buf[pos - n:pos].decode("utf-8", "surrogateescape")

    def value(t):
        nonlocal pos
        if t in scalar:
            return take(scalar[t])
        if t == 8:
            return string()
        if t == 9:
            et, n = take("<I"), take("<Q")
            if et in scalar:  # a fixed-size element type: the whole array in one unpack
                fmt = f"<{n}{scalar[et][1]}"
                vals = list(struct.unpack_from(fmt, buf, pos))
                pos += struct.calcsize(fmt)
                return vals
            return [value(et) for _ in range(n)]
        raise ValueError(f"{path}: unknown GGUF value type {t}")

    kv = {}
    for _ in range(n_kv):
        key = string()
        kv[key] = value(take("<I"))
    buf.close()
    return kv


def gguf_vocab(path):
    """Tokens, scores, types and the scalar tokenizer keys of a GGUF file."""
    f = gguf_metadata(path)

    def get(key, default=None):
        return f.get(key, default)

    tokens = get("tokenizer.ggml.tokens", [])
    n = len(tokens)
    return {
        "model": get("tokenizer.ggml.model"),
        "tokens": tokens,
        "scores": get("tokenizer.ggml.scores", [0.0] * n),
        "types": get("tokenizer.ggml.token_type", [T_NORMAL] * n),
        "unk": get("tokenizer.ggml.unknown_token_id"),
        "bos": get("tokenizer.ggml.bos_token_id", -1),
        "eos": get("tokenizer.ggml.eos_token_id", -1),
        "pad": get("tokenizer.ggml.padding_token_id", -1),
        "add_space_prefix": get("tokenizer.ggml.add_space_prefix", True),
    }


def spm_processor(v):
    """A SentencePieceProcessor over the GGUF vocabulary v (see the module doc for the mapping)."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    types = list(v["types"])
    unk = v["unk"]
    if unk is None:  # SentencePiece numbers <unk> 0 unless told otherwise; GGUF files say which
        unk = next((i for i, t in enumerate(types) if t == T_UNKNOWN), 0)
    P = pb.ModelProto.SentencePiece
    m = pb.ModelProto()
    for i, (tok, score, ty) in enumerate(zip(v["tokens"], v["scores"], types)):
        if i == unk:
            ty = T_UNKNOWN
        elif ty == T_UNKNOWN or ty == 0:
            ty = T_CONTROL if ty == T_UNKNOWN else T_NORMAL
        if ty == T_USER:
            tok = tok.replace(" ", "\u2581")  # back to the model's own spelling (see the module doc)
        m.pieces.append(P(piece=tok, score=score, type=ty))
    byte_pieces = {tok for tok, ty in zip(v["tokens"], types) if ty == T_BYTE}
    ts = m.trainer_spec
    ts.model_type = pb.TrainerSpec.BPE
    ts.vocab_size = len(v["tokens"])
    ts.byte_fallback = len(byte_pieces) == 256
    ts.unk_id = unk
    for key in ("bos", "eos", "pad"):
        setattr(ts, key + "_id", v[key] if v[key] is not None and 0 <= v[key] < len(types) and v[key] != unk else -1)
    ns = m.normalizer_spec
    ns.name = "identity"
    ns.add_dummy_prefix = bool(v["add_space_prefix"])
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    return sp


def slm_tokenize(tool, path, strings):
    """(ids, decoded bytes) per string from BUILD/bin/tokenize, without special-token parsing."""
    inp = "".join(s.encode("utf-8").hex() + "\n" for s in strings)
    r = subprocess.run([tool, path], input=inp.encode(), capture_output=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"tokenize {path} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    res = []
    for ln in r.stdout.decode().split("\n")[: len(strings)]:
        ids, dec = ln.split("|")
        res.append(([int(x) for x in ids.split()], bytes.fromhex(dec)))
    return res


# Strings where SentencePiece's rules are easy to get wrong, besides the shared corpus: user-defined and
# control-token text at the edges, whitespace runs (Gemma's whitespace pieces), and characters no
# vocabulary here holds whole (a run of them is one <unk> without byte fallback).
EXTRA = [
    "</s>", "</s>x", "x</s>", "a</s>b</s>", " </s> ", "<s>", "<unk>x", "<start_of_turn>user\nHi<end_of_turn>\n",
    "\n", "\n\nx", "x\n\n\n", "\t\t", "  x  ", "x" + " " * 40 + "y", "<table><caption>t</caption></table>",
    "zz", "\U0001f999\U0001f999 \U0001f999", "\u1780\u1781\u1782 \u1783", "a\u1780b\u1781\u1782c",
    "\u0e01\u0e02", "\U00010000\U0010fffd",
]


def reference_encoder(sp, v):
    """The reference ids of a string. SentencePiece adds its dummy prefix once per call; slm, like llama.cpp
    and transformers' Llama tokenizers, gives every stretch of text between special tokens its own prefix
    (so text after a special token starts a word). With add_space_prefix the reference therefore cuts the
    text at user-defined tokens (leftmost, longest first) and encodes each stretch with its own call; without
    it the two rules agree and the whole string goes to SentencePiece in one call."""
    if not v["add_space_prefix"]:
        return sp.EncodeAsIds
    user = {}
    for i, (tok, ty) in enumerate(zip(v["tokens"], v["types"])):
        if ty == T_USER and tok:
            user.setdefault(tok, i)
    by_first = {}
    for tok in sorted(user, key=len, reverse=True):
        by_first.setdefault(tok[0], []).append(tok)

    def encode(text):
        ids, seg, pos = [], 0, 0
        while pos < len(text):
            hit = next((t for t in by_first.get(text[pos], []) if text.startswith(t, pos)), None)
            if hit is None:
                pos += 1
                continue
            if pos > seg:
                ids += sp.EncodeAsIds(text[seg:pos])
            ids.append(user[hit])
            pos = seg = pos + len(hit)
        if seg < len(text):
            ids += sp.EncodeAsIds(text[seg:])
        return ids

    return encode


def compare(tally, tool, path, name, v, strings, verbose):
    """slm against SentencePiece on strings: equal ids, and decode(encode(s)) == s where SentencePiece
    round-trips s itself."""
    sp = spm_processor(v)
    ref = reference_encoder(sp, v)
    ours = slm_tokenize(tool, path, strings)
    bad = []
    for s, (ids, _) in zip(strings, ours):
        want = ref(s)
        if ids != want:
            bad.append((s, want, ids))
    for s, want, ids in bad[: len(bad) if verbose else 10]:
        print(f"  {name}: {s!r}\n    sentencepiece {want}\n    slm           {ids}")
    tally.check(not bad, f"{name}: ids equal SentencePiece's on {len(strings)} strings ({len(bad)} differ)")
    lossy, compared = [], 0
    for s, (ids, dec) in zip(strings, ours):
        if sp.DecodeIds(sp.EncodeAsIds(s)) != s:
            continue  # SentencePiece itself does not give s back (U+2581 in s, or an <unk>)
        compared += 1
        if dec != s.encode("utf-8"):
            lossy.append((s, dec))
    for s, dec in lossy[:10]:
        print(f"  {name}: decode(encode({s!r})) = {dec!r}")
    tally.check(not lossy and compared >= 100,
                f"{name}: decode(encode(s)) == s on the {compared} strings SentencePiece round-trips "
                f"({len(lossy)} differ)")
    return sp


def without_byte_fallback(v, path):
    """A copy of vocabulary v whose 256 byte pieces are renamed control tokens, written as a vocabulary-only
    GGUF at path: neither slm nor SentencePiece can fall back to bytes, so unknown characters become <unk>."""
    import gguf

    tokens = list(v["tokens"])
    types = list(v["types"])
    for i, ty in enumerate(types):
        if ty == T_BYTE:
            tokens[i] = f"<nobyte{i}>"
            types[i] = T_CONTROL
    w = gguf.GGUFWriter(path, "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(v["scores"])
    w.add_token_types(types)
    if v["unk"] is not None:
        w.add_unk_token_id(v["unk"])
    w.add_add_space_prefix(bool(v["add_space_prefix"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dict(v, tokens=tokens, types=types)


def main():
    ap = common.build_arg_parser(__doc__)
    ap.add_argument("--models-only", action="store_true", help="leave out the vocabulary fixtures")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    common.require_modules("gguf", "sentencepiece", "google.protobuf")
    try:
        from sentencepiece import sentencepiece_model_pb2  # noqa: F401
    except Exception as e:  # noqa: BLE001 - a protobuf runtime too old for the shipped gencode
        common.skip(f"sentencepiece_model_pb2 not importable ({e}); run scripts/setup")
    tool = common.build_binary(args.build, "tokenize")
    if not tool:
        common.skip(f"{args.build}/bin/tokenize not built (tests/tools/tokenize.c)")
    strings = corpus()
    assert len(strings) >= 200, len(strings)
    strings += [s for s in EXTRA if s not in strings]
    tally = common.Tally()
    n_spm = 0
    for path in common.find_test_models() + fixture_files(args):
        name = os.path.basename(path)
        v = gguf_vocab(path)
        if v["model"] != "llama":
            continue
        n_spm += 1
        fx = fixture_cases(path)
        if fx:
            sp = spm_processor(v)
            wrong = [(s, ids, sp.EncodeAsIds(s)) for s, ids in zip(*fx) if sp.EncodeAsIds(s) != ids]
            for s, want, got in wrong[:5]:
                print(f"  {name}: {s!r}\n    fixture       {want}\n    sentencepiece {got}")
            if not tally.check(not wrong, f"{name}: the SentencePiece reference reproduces the fixture's "
                                          f"{len(fx[0])} expected ids ({len(wrong)} differ)"):
                continue
        compare(tally, tool, path, name, v, strings, args.verbose)
        if name == "ggml-vocab-llama-spm.gguf":
            import tempfile

            with tempfile.TemporaryDirectory() as tmp:
                nb_path = os.path.join(tmp, "llama-spm-no-bytes.gguf")
                nb = without_byte_fallback(v, nb_path)
                sp = compare(tally, tool, nb_path, "llama-spm without byte pieces", nb, strings, args.verbose)
                n_unk = sum(sp.EncodeAsIds(s).count(nb["unk"]) for s in strings)
                tally.check(n_unk >= 20, f"llama-spm without byte pieces: the strings hold {n_unk} <unk> runs")
    if not n_spm:
        common.skip("no SentencePiece vocabulary among the test models and fixtures")
    tally.finish()


if __name__ == "__main__":
    main()
