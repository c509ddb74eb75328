#!/usr/bin/env python3
"""End to end: slm's logits and greedy generation against the independent numpy forward pass
(reference_forward.py) on every llama/qwen2/qwen3/phi3/gemma3 GGUF in $SLM_TEST_MODELS.

  python tests/reference/test_e2e_logits.py --build BUILD_DIR [--device cpu|vulkan:0|cuda:0 ...]

For each model a fixed prompt of 48 token ids (BOS where the model adds one, ids spread over the whole
vocabulary, then an English sentence to continue) goes through

  BUILD/bin/slm logits -m MODEL --tokens a,b,... --out FILE -n 32 [--f32-act]

which writes float32 logits [48][n_vocab] and prints 32 greedy ids. slm's CPU mat-muls round activations
to 8-bit blocks by default (as the quantized formats are meant to be used); --f32-act keeps them f32, which
is what the reference computes. Small models are sensitive to that rounding (SmolLM2-135M moves by up to
cosine 0.997 from it alone, in numpy as much as in slm), so the exact checks run with --f32-act and the
default path is checked against a numpy model of the same rounding. Per model and device:
  1. (--f32-act -b 7: the prompt in 7 batches) cosine similarity of slm's and the reference's logits >= 0.999 at every prompt position;
  2. (--f32-act) the same argmax at >= 99% of the positions;
  3. (--f32-act) the 32 greedy ids equal the reference's own greedy continuation. Where they part, the
     test reports the first divergent step; it is a failure unless the two tokens are a near-tie in the
     reference's logits at that step (within GREEDY_TIE_TOL);
  4. (default path) the mean over positions of 1 - cosine against the f32 reference, and its median
     over positions, are each at most Q8_NOISE_FACTOR times the largest of the same statistic over
     Q8_ORDERS runs of the reference's own 8-bit-activation model (ReferenceModel act_q8): one as numpy
     sums, the others with every mat-mul result moved by one f32 rounding step at random (sum_jitter),
     as other summation orders move it. The mean catches faults at a few positions (a batch tail), the
     median faults at all of them (RoPE pairing, biases, norms) without the few ill-conditioned positions
     that dominate the mean; a lost Q or K bias moves the qwen2 variant's logits less than 8-bit rounding
     does, and is left to checks 1 and 2.

Every llama model is also tested as a qwen2 model (reference_forward.write_qwen2_variant: the same
weights with Wq/Wk rows reordered for NeoX RoPE, plus random Q/K/V biases), since no small Qwen2 GGUF
is available as a package. Likewise as a phi3 model (write_phi3_variant: Wq/Wk reordered for NeoX RoPE,
q/k/v fused into attn_qkv and gate/up into ffn_up, as converted Phi-3/Phi-4 files are): the same 4 checks,
plus its logits against the llama original's (the same function: reference against reference, and slm
against slm, cosine >= SAME_FUNCTION_COSINE at every position). And as a long-context phi3 model
(longrope: random rope_factors_short/long and original context LONGROPE_ORIG_CTX): checks 1 and 2 at a
context of LONGROPE_ORIG_CTX (short factors) and of twice that (long factors). And as a qwen3 model
(write_qwen3_variant: Wq/Wk reordered for NeoX RoPE, no biases, random per-head q/k norm weights): checks 1
and 2 against the reference (the norms make it another function than the llama original). What qwen3 adds
is the per-head norm, the same op on the f32 and default paths and at every batch width; the 8-bit
statistics and the greedy run of checks 3 and 4 would triple its time and test only the mat-muls again.

Every gemma3 model (Gemma 3 270M Q4_K_M is one of the test models) gets the 4 checks as it is; its sliding
window (512) is longer than the prompt, so it is also tested with the window cut to GEMMA3_VARIANT_WINDOW
positions (write_gemma3_window_variant: the same weights), which the prompt and the greedy run pass: checks
1, 2 and 3, so the prompt batches of 7 tokens and the single-token decode steps both attend over windows
that end inside the cache.

Every llama model is also run with a quantized KV cache (-ctk/-ctv q8_0 and q4_0, f32 activations):
checks 1 and 2 against the reference with the same cache, and against the f16-cache reference, within the
bounds KV_SAME_BOUNDS and KV_BOUNDS document; on a GPU, which has no quantized KV kernel yet, slm must refuse
the flag naming it (two more slm runs per device). --only-kv-types runs just the base checks and these.

Exit codes: 0 pass, 1 fail, 77 skip (numpy/gguf or a model missing).
"""
import copy
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

np, _ = common.require_modules("numpy", "gguf")
from reference_forward import (SUPPORTED_ARCHS, ReferenceModel, write_gemma3_window_variant,  # noqa: E402
                               write_phi3_variant, write_qwen2_variant, write_qwen3_variant)

N_PROMPT = 48
N_GEN = 32
MIN_COSINE = 0.999
MIN_ARGMAX_AGREEMENT = 0.99
# Two candidates closer than this in the reference's logits are a tie. Summation order alone moves
# logits this much: the reference run on the same SmolLM2 weights with Wq/Wk rows reordered (a
# mathematically identical model) differs by up to 0.006, as K values land on the other side of an f16
# rounding step; the faults this test exists for (RoPE pairing, biases, norms) move them by 0.5 and more.
GREEDY_TIE_TOL = 0.05
SEED = 20240601
PROMPT_TEXT = "\nThe history of the city of Rome begins with"
SLM_TIMEOUT_S = 600
# The strict runs feed the prompt in batches of this many tokens, so logits kept across batches are checked.
STRICT_BATCH = 7
# Rounding activations to 8 bits flips individual roundings with any change of summation order, so two
# equally valid 8-bit paths (numpy's and slm's) scatter around each other: allow this factor.
Q8_NOISE_FACTOR = 4.0
# How far 8-bit activations move the logits depends on the summation order too, and one run is not a
# measure of it: at a few ill-conditioned positions of the qwen2 variant (41..46 of the SmolLM2 prompt,
# where 8-bit rounding alone moves the logits to cosine 0.75..0.98) the reference's own mean 1 - cosine
# takes any value from 0.0003 to 0.01 with the mat-mul results moved by one rounding step, and 0.00098
# or 0.0030 with numpy's BLAS kernels for Haswell or Skylake-X. The noise level is the largest of
# Q8_ORDERS runs: numpy's own, and Q8_ORDERS - 1 with each mat-mul result multiplied by
# 1 + Q8_SUM_JITTER * N(0, 1) (seeds SEED + i).
Q8_ORDERS = 16
Q8_SUM_JITTER = 2.0 ** -23
# Standard deviation of the Q/K/V biases of the qwen2 variant made from each llama model.
QWEN2_VARIANT_BIAS = 0.1
# The qwen3 variant's per-head q/k norm weights are uniform in 1 +- this.
QWEN3_VARIANT_NORM_SPREAD = 0.3
# A model and its phi3 rewrite compute the same function: only summation order and f16 roundings of K
# differ, far below what a wrong row split (q/k/v or gate/up swapped) or RoPE pairing does.
SAME_FUNCTION_COSINE = 0.9999
# The sliding window of the gemma3 variant: shorter than the prompt's 48 tokens, not a multiple of the batch
# (7) nor of any kernel's key tile.
GEMMA3_VARIANT_WINDOW = 13
# Original context of the longrope variant (SmolLM2 is trained for 8192: the magnitude factor is
# sqrt(1 + ln 4 / ln 2048)).
LONGROPE_ORIG_CTX = 2048
# Quantized KV caches (-ctk/-ctv), two bounds per type, each (least cosine per position, least argmax
# agreement). KV_SAME_BOUNDS: against the reference run with the same cache (K and V quantized as slm's
# reference quantizer does). q8_0 keeps the strict bounds (measured on SmolLM2-135M: min cosine 0.9998).
# q4_0 cannot: with 16 levels per block, a K element that slm's and numpy's projections put on either side
# of a rounding boundary (they differ in the last bits, by summation order) moves by a whole step, and this
# small model (3 KV heads of 64) amplifies that at its ill-conditioned positions 41..47: min cosine 0.980,
# argmax agreement 81% measured (the kernels themselves are checked exactly against the reference in the op
# tests). KV_BOUNDS: what the type costs, against the f16-cache reference: q8_0 moves the logits about as
# much as 8-bit activations do (min cosine 0.9985 at position 42, mean 0.99994, argmax 100%); q4_0 min
# cosine 0.920, argmax 54%. Each bound leaves a margin over its measurement; a wrong block layout or scale
# gives cosines below 0.5.
KV_SAME_BOUNDS = {"q8_0": (MIN_COSINE, MIN_ARGMAX_AGREEMENT), "q4_0": (0.95, 0.7)}
KV_BOUNDS = {"q8_0": (0.997, 0.95), "q4_0": (0.85, 0.4)}


def spread_ids(ref, n, rng):
    """n ids spread over the vocabulary: one drawn from each of n equal slices of the normal tokens
    (so high ids, far from the embedding's first rows, are exercised too), shuffled."""
    ids = np.arange(ref.n_vocab)
    types = np.asarray(ref.token_types[:ref.n_vocab])
    if len(types) == ref.n_vocab and (types == 1).sum() >= n:
        ids = ids[types == 1]
    return [int(t) for t in rng.permutation([rng.choice(s) for s in np.array_split(ids, n)])]


def text_ids(ref, text):
    """Ids for English text by greedy longest match over the vocabulary strings: not the model's own
    tokenization, but real words, so the greedy continuation is text and not a loop of junk tokens.
    Byte-level BPE vocabularies spell space and newline as U+0120 and U+010A, SentencePiece ones as
    U+2581 and <0x0A>."""
    vocab = {t: i for i, t in enumerate(ref.tokens)}
    if ref.tokenizer_model == "gpt2":
        s, nl = text.replace(" ", "\u0120"), "\u010a"
    else:
        s, nl = text.replace(" ", "\u2581"), "<0x0A>"
    out, i = [], 0
    while i < len(s):
        if s[i] == "\n":
            if nl in vocab:
                out.append(vocab[nl])
            i += 1
            continue
        for j in range(min(len(s), i + 24), i, -1):
            if s[i:j] in vocab:
                out.append(vocab[s[i:j]])
                i = j
                break
        else:
            i += 1  # a character the vocabulary cannot spell whole: dropped
    return out


def prompt_ids(ref):
    """BOS (where the model adds one), ids spread over the vocabulary, then a sentence to continue."""
    rng = np.random.default_rng(SEED)
    bos = [int(ref.bos_id)] if ref.add_bos else []
    tail = text_ids(ref, PROMPT_TEXT)
    return bos + spread_ids(ref, max(8, N_PROMPT - len(bos) - len(tail)), rng) + tail


def run_slm(slm, model, ids, device, out_path, f32_act, n_ctx=None, extra=()):
    cmd = [slm, "logits", "-m", model, "--tokens", ",".join(map(str, ids)), "--out", out_path,
           "-n", str(N_GEN)] + (["--f32-act", "-b", str(STRICT_BATCH)] if f32_act else []) + list(extra)
    if n_ctx:
        cmd += ["-c", str(n_ctx)]
    if device:
        cmd += ["--device", device]
    t0 = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=SLM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"slm did not finish in {SLM_TIMEOUT_S}s: {' '.join(cmd[:4])} ...", SLM_TIMEOUT_S
    dt = time.time() - t0
    if p.returncode != 0:
        return None, f"slm exited {p.returncode}: {p.stderr.strip()[-2000:]}", dt
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    try:
        gen = [int(t) for t in lines[-1].split()]
    except (IndexError, ValueError):
        return None, f"cannot read the greedy ids from slm's output {p.stdout[-500:]!r}", dt
    return gen, None, dt


def compare_greedy(ref, ref_gen, ref_step_logits, slm_gen):
    """(ok, message): equal sequences, or the first divergence and whether it is a near-tie."""
    if len(slm_gen) != len(ref_gen):
        return False, f"slm printed {len(slm_gen)} greedy ids, expected {len(ref_gen)}"
    for j, (a, b) in enumerate(zip(ref_gen, slm_gen)):
        if a == b:
            continue
        lg = ref_step_logits[j]
        if not 0 <= b < len(lg):
            return False, f"step {j}: slm chose id {b}, outside the vocabulary"
        margin = float(lg[a] - lg[b])
        where = (f"first divergence at generated step {j}: reference {a} {ref.token_str(a)!r} "
                 f"(logit {lg[a]:.4f}), slm {b} {ref.token_str(b)!r} (reference logit {lg[b]:.4f}, "
                 f"margin {margin:.4f}); agreed on {j} ids before")
        if margin <= GREEDY_TIE_TOL:
            return True, where + f" - a near-tie (<= {GREEDY_TIE_TOL}), later steps not compared"
        return False, where
    return True, f"all {len(ref_gen)} greedy ids equal"


def cosines(got, want):
    return (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1) + 1e-30)


def slm_logits(tally, slm, path, ids, ref, dev, tag, f32_act, n_ctx=None, extra=()):
    """(logits [T, n_vocab] float64, greedy ids) from one slm run, or None after recording the failure."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.f32")
        gen, err, dt = run_slm(slm, path, ids, dev, out, f32_act, n_ctx, extra)
        if err:
            tally.check(False, f"{tag}: {err}")
            return None
        raw = np.fromfile(out, dtype="<f4")
    if raw.size != len(ids) * ref.n_vocab:
        tally.check(False, f"{tag}: logits file holds {raw.size} floats, expected {len(ids)} x {ref.n_vocab}")
        return None
    got = raw.reshape(len(ids), ref.n_vocab).astype(np.float64)
    print(f"{tag}: slm took {dt:.1f}s; greedy: {' '.join(map(str, gen))}")
    tally.check(bool(np.isfinite(got).all()), f"{tag}: all logits finite")
    return got, gen


def check_model(tally, slm, path, devices, name=None, n_ctx=None, strict_logits_only=False, ref=None,
                greedy=None):
    """Checks 1-4 (only 1 and 2 when strict_logits_only, plus 3 when greedy) of one model on every device,
    slm run with context n_ctx (default its own). Returns {"ref": reference logits, "slm": {device: slm's f32-activation
    logits}} for comparisons between models."""
    name = name or os.path.basename(path)
    t0 = time.time()
    ref = ref or ReferenceModel(path, n_ctx=n_ctx)
    ids = prompt_ids(ref)
    greedy = not strict_logits_only if greedy is None else greedy
    if not greedy:
        ref_logits = ref.forward(ids)
    else:
        ref_logits, ref_gen, ref_step_logits = ref.greedy(ids, N_GEN)
    want = ref_logits.astype(np.float64)
    if not strict_logits_only:
        q8_devs = []  # 1 - cosine per position, one row per summation order
        ref.act_q8 = True
        for i in range(Q8_ORDERS):
            ref.sum_jitter = Q8_SUM_JITTER if i else 0.0
            ref.jitter_rng = np.random.default_rng(SEED + i)
            q8_devs.append(1 - cosines(ref.forward(ids).astype(np.float64), want))
        ref.act_q8, ref.sum_jitter = False, 0.0
        q8_means, q8_medians = np.mean(q8_devs, axis=1), np.median(q8_devs, axis=1)
    result = {"ref": want, "slm": {}}
    print(f"{name}: {ref.arch}, {ref.n_layer} layers, n_vocab {ref.n_vocab}; reference "
          f"{time.time() - t0:.1f}s; prompt {','.join(map(str, ids))}")
    if greedy:
        print(f"{name}: reference greedy: {' '.join(map(str, ref_gen))}")
    if not strict_logits_only:
        for what, v in (("mean", q8_means), ("median", q8_medians)):
            print(f"{name}: reference with 8-bit activations: {what} over positions of 1 - cosine {v[0]:.3g}; "
                  f"over {Q8_ORDERS} summation orders {v.min():.3g} (least) {np.median(v):.3g} (median) "
                  f"{v.max():.3g} (most)")
    for dev in devices:
        tag = f"{name} [{dev or 'default device'}, f32 activations]"
        res = slm_logits(tally, slm, path, ids, ref, dev, tag, True, n_ctx)
        if res:
            got, gen = res
            result["slm"][dev] = got
            cos = cosines(got, want)
            worst = int(np.argmin(cos))
            tally.check(bool(cos.min() >= MIN_COSINE),
                        f"{tag}: cosine per position min {cos.min():.6f} (position {worst}) mean "
                        f"{cos.mean():.6f} >= {MIN_COSINE}; max |diff| {np.abs(got - want).max():.4g}")
            am_got, am_want = got.argmax(1), want.argmax(1)
            agree = float((am_got == am_want).mean())
            bad = [int(i) for i in np.flatnonzero(am_got != am_want)]
            tally.check(agree >= MIN_ARGMAX_AGREEMENT,
                        f"{tag}: argmax agrees at {agree * 100:.1f}% of positions >= "
                        f"{MIN_ARGMAX_AGREEMENT * 100:.0f}%" + (f" (differs at {bad[:10]})" if bad else ""))
            if greedy:
                ok, msg = compare_greedy(ref, ref_gen, ref_step_logits, gen)
                tally.check(ok, f"{tag}: greedy continuation: {msg}")
        if strict_logits_only:
            continue
        tag = f"{name} [{dev or 'default device'}, default path]"
        res = slm_logits(tally, slm, path, ids, ref, dev, tag, False, n_ctx)
        if res:
            cos = cosines(res[0], want)
            for what, stat, ref_stat in (("mean", np.mean, q8_means), ("median", np.median, q8_medians)):
                dev_slm, q8_dev = float(stat(1 - cos)), float(ref_stat.max())
                tally.check(dev_slm <= Q8_NOISE_FACTOR * q8_dev + 1e-6,
                            f"{tag}: {what} over positions of 1 - cosine {dev_slm:.3g} <= "
                            f"{Q8_NOISE_FACTOR:g} x the 8-bit reference's most over {Q8_ORDERS} summation "
                            f"orders, {q8_dev:.3g} (min cosine {cos.min():.6f}, argmax agrees at "
                            f"{float((res[0].argmax(1) == want.argmax(1)).mean()) * 100:.1f}%)")
    return result


def check_kv_types(tally, slm, path, devices, ref, want):
    """Quantized KV caches (-ctk/-ctv), f32 activations: on the CPU, checks 1 and 2 against the reference run
    with the same cache (K and V quantized to those blocks and back) within KV_SAME_BOUNDS, and against the
    f16-cache reference `want` (what the type costs) within KV_BOUNDS; a GPU, which has no quantized KV
    kernel yet, must refuse the flag with a message that names it."""
    name = os.path.basename(path)
    ids = prompt_ids(ref)
    ref_kv = {}
    for kv in KV_BOUNDS:
        if any(not dev or dev.startswith("cpu") for dev in devices):
            ref.kv_quant = {"k": kv, "v": kv}
            ref_kv[kv] = ref.forward(ids).astype(np.float64)
    ref.kv_quant = {}
    for dev in devices:
        for kv, (min_cos, min_agree) in KV_BOUNDS.items():
            tag = f"{name} [{dev or 'default device'}, f32 activations, -ctk {kv} -ctv {kv}]"
            extra = ["-ctk", kv, "-ctv", kv]
            if dev and not dev.startswith("cpu"):
                with tempfile.TemporaryDirectory() as tmp:
                    _, err, _ = run_slm(slm, path, ids, dev, os.path.join(tmp, "l.f32"), True, None, extra)
                tally.check(bool(err) and f"-ctk {kv} is not supported on" in err,
                            f"{tag}: refused with a clear message: {err!r}")
                continue
            res = slm_logits(tally, slm, path, ids, ref, dev, tag, True, None, extra)
            if not res:
                continue
            got = res[0]
            for against, w, mc, ma in (("the reference with the same cache", ref_kv[kv], *KV_SAME_BOUNDS[kv]),
                                       ("the f16-cache reference", want, min_cos, min_agree)):
                cos = cosines(got, w)
                agree = float((got.argmax(1) == w.argmax(1)).mean())
                tally.check(bool(cos.min() >= mc),
                            f"{tag}: against {against}: cosine per position min {cos.min():.6f} (position "
                            f"{int(np.argmin(cos))}) mean {cos.mean():.6f} >= {mc}")
                tally.check(agree >= ma, f"{tag}: against {against}: argmax agrees at {agree * 100:.1f}% of "
                                         f"positions >= {ma * 100:.0f}%")


def check_same_function(tally, name, a, b):
    """The phi3 rewrite against its llama original: reference vs reference and slm vs slm per device."""
    pairs = [("reference", a["ref"], b["ref"])] + [
        (f"slm [{dev or 'default device'}, f32 activations]", a["slm"][dev], b["slm"][dev])
        for dev in a["slm"] if dev in b["slm"]]
    for what, x, y in pairs:
        cos = cosines(x, y)
        tally.check(bool(cos.min() >= SAME_FUNCTION_COSINE),
                    f"{name}: {what} logits against the llama original's: cosine per position min "
                    f"{cos.min():.7f} >= {SAME_FUNCTION_COSINE}; max |diff| {np.abs(x - y).max():.4g}")


def present_devices(slm):
    """Device specs `slm devices` lists as present (first column: cpu:0, vulkan:0, ...)."""
    p = subprocess.run([slm, "devices"], capture_output=True, text=True, timeout=120)
    return [ln.split()[0] for ln in p.stdout.splitlines() if ln.split() and ":" in ln.split()[0]]


def main():
    ap = common.build_arg_parser(__doc__)
    ap.add_argument("--device", action="append", default=None,
                    help="run slm with --device SPEC (repeatable); default: slm's own choice. The "
                         "environment variable SLM_E2E_DEVICES (comma-separated) does the same.")
    ap.add_argument("--model", action="append", help="a GGUF to test instead of $SLM_TEST_MODELS/*.gguf")
    ap.add_argument("--no-qwen2-variant", action="store_true",
                    help="skip the qwen2 models derived from the llama ones")
    ap.add_argument("--no-qwen3-variant", action="store_true",
                    help="skip the qwen3 models derived from the llama ones")
    ap.add_argument("--no-gemma3-variant", action="store_true",
                    help="skip the gemma3 models with a short sliding window derived from the gemma3 ones")
    ap.add_argument("--no-phi3-variant", action="store_true",
                    help="skip the phi3 models (plain and longrope) derived from the llama ones")
    ap.add_argument("--no-kv-types", action="store_true",
                    help="skip the quantized KV cache checks (-ctk/-ctv q8_0, q4_0) of the llama models")
    ap.add_argument("--only-kv-types", action="store_true",
                    help="only the llama models' base checks and quantized KV cache checks (no variants)")
    a = ap.parse_args()
    if a.only_kv_types:
        a.no_qwen2_variant = a.no_qwen3_variant = a.no_gemma3_variant = a.no_phi3_variant = True
    devices = a.device or [d for d in os.environ.get("SLM_E2E_DEVICES", "").split(",") if d] or [None]

    slm = common.build_binary(a.build, "slm")
    if not slm:
        print(f"FAIL: {a.build}/bin/slm not built")
        sys.exit(1)
    present = present_devices(slm)
    missing = [d for d in devices if d and d.split(":")[0] != "cpu" and d not in present]
    if missing:
        common.skip(f"device {', '.join(missing)} not present (slm devices lists {', '.join(present)})")
    models = a.model or common.find_test_models()
    if not models:
        common.skip("no *.gguf in $SLM_TEST_MODELS (scripts/setup fetches them into .cache/models)")
    tally = common.Tally()
    for path in models:
        arch = common.gguf_architecture(path)
        if arch not in SUPPORTED_ARCHS:
            tally.skip(f"{os.path.basename(path)}: architecture {arch} has no numpy reference")
            continue
        base_ref = ReferenceModel(path)
        base = check_model(tally, slm, path, devices, ref=base_ref)
        if arch == "llama" and not a.no_kv_types:
            check_kv_types(tally, slm, path, devices, base_ref, base["ref"])
        if arch == "gemma3" and not a.no_gemma3_variant:
            # The window past the prompt: the same weights and reference, the window cut short.
            with tempfile.TemporaryDirectory() as tmp:
                g3 = os.path.join(tmp, "gemma3-window-variant.gguf")
                write_gemma3_window_variant(path, g3, GEMMA3_VARIANT_WINDOW)
                ref = copy.copy(base_ref)
                ref.sliding_window = GEMMA3_VARIANT_WINDOW
                check_model(tally, slm, g3, devices, ref=ref, strict_logits_only=True, greedy=True,
                            name=f"{os.path.basename(path)} with sliding window {GEMMA3_VARIANT_WINDOW}")
        if arch == "llama" and not a.no_phi3_variant:
            # No small phi3 GGUF ships on PyPI either: the same weights in phi3's fused layout.
            with tempfile.TemporaryDirectory() as tmp:
                p3 = os.path.join(tmp, "phi3-variant.gguf")
                write_phi3_variant(path, p3)
                name = os.path.basename(path) + " as phi3"
                check_same_function(tally, name, base, check_model(tally, slm, p3, devices, name=name))
                lr = os.path.join(tmp, "phi3-longrope-variant.gguf")
                write_phi3_variant(path, lr, longrope_orig_ctx=LONGROPE_ORIG_CTX, seed=SEED)
                ref = ReferenceModel(lr)
                for n_ctx in (LONGROPE_ORIG_CTX, 2 * LONGROPE_ORIG_CTX):
                    ref.set_context(n_ctx)
                    check_model(tally, slm, lr, devices, ref=ref, n_ctx=n_ctx, strict_logits_only=True,
                                name=f"{os.path.basename(path)} as phi3 longrope, context {n_ctx}")
        if arch == "llama" and not a.no_qwen2_variant:
            # No small Qwen2 GGUF ships on PyPI: the same weights as qwen2 (NeoX RoPE, Q/K/V biases).
            with tempfile.TemporaryDirectory() as tmp:
                q2 = os.path.join(tmp, "qwen2-variant.gguf")
                write_qwen2_variant(path, q2, QWEN2_VARIANT_BIAS, seed=SEED)
                check_model(tally, slm, q2, devices, name=os.path.basename(path) + " as qwen2")
        if arch == "llama" and not a.no_qwen3_variant:
            # Nor a small Qwen 3 one: the same weights as qwen3 (NeoX RoPE, per-head q/k norms, no biases).
            with tempfile.TemporaryDirectory() as tmp:
                q3 = os.path.join(tmp, "qwen3-variant.gguf")
                write_qwen3_variant(path, q3, QWEN3_VARIANT_NORM_SPREAD, seed=SEED)
                check_model(tally, slm, q3, devices, name=os.path.basename(path) + " as qwen3",
                            strict_logits_only=True)
    tally.finish()


if __name__ == "__main__":
    main()
