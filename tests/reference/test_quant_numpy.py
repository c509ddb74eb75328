#!/usr/bin/env python3
"""Checks kernels/ref (through BUILD/bin/quant_tool) against the numpy dequantizers of the `gguf` package,
an implementation of the GGUF block formats written independently of ours.

  python tests/reference/test_quant_numpy.py --build BUILD_DIR

1. Random blocks of every type (valid f16 scales, random codes): our dequantization must equal gguf's
   bit for bit, or within 1e-6 relative where the float order of operations could differ.
2. Blocks cut from real GGUF files in $SLM_TEST_MODELS (SmolLM2 Q4_1 holds Q4_1, Q8_0 and F32 tensors;
   any other *.gguf there adds its types, e.g. k-quants): the same comparison.
3. Our quantizer's output read back by gguf's dequantizer: must give the values our dequantizer gives,
   with no NaN/Inf and an error against the input within a per-type bound (and, where gguf has its own
   quantizer, no worse than 1.25x its error).
4. slm_ref_dot_row (quant_tool dot) against a float64 dot product of gguf's dequantization of the row.

Exit codes: 0 pass, 1 fail, 77 skip (numpy/gguf or the tool missing).
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile

SKIP = 77

try:
    import numpy as np
    from gguf import GGMLQuantizationType as T
    from gguf import GGUFReader
    from gguf import quants as gq
except Exception as e:  # noqa: BLE001 - any import failure means the reference is unavailable
    print(f"SKIP: numpy/gguf not importable: {e}")
    sys.exit(SKIP)

# type -> (elements per block, bytes per block, byte offsets of the f16 scales in a block)
TYPES = {
    T.F32: (1, 4, ()),
    T.F16: (1, 2, (0,)),
    T.BF16: (1, 2, ()),
    T.Q4_0: (32, 18, (0,)),
    T.Q4_1: (32, 20, (0, 2)),
    T.Q5_0: (32, 22, (0,)),
    T.Q5_1: (32, 24, (0, 2)),
    T.Q8_0: (32, 34, (0,)),
    T.Q4_K: (256, 144, (0, 2)),
    T.Q5_K: (256, 176, (0, 2)),
    T.Q6_K: (256, 210, (208,)),
}

# Upper bounds of the normalised mean squared error of quantize -> dequantize on uniform random data
# (about 1.5-2x what a plain scheme reaches, so a wrong layout or scale fails by orders of magnitude).
NMSE_BOUND = {
    T.F32: 0.0, T.F16: 1e-7, T.BF16: 1e-5,
    T.Q4_0: 8e-3, T.Q4_1: 6e-3, T.Q5_0: 2e-3, T.Q5_1: 1.5e-3, T.Q8_0: 3e-5,
    T.Q4_K: 7e-3, T.Q5_K: 2e-3, T.Q6_K: 5e-4,
}

# Blocks taken from one real tensor: enough to cover several rows without dequantizing whole models.
MAX_BYTES_PER_TENSOR = 1 << 16

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


class Tool:
    def __init__(self, path, tmp):
        self.path = path
        self.tmp = tmp
        self.n = 0

    def _paths(self):
        self.n += 1
        return (os.path.join(self.tmp, f"in{self.n}"), os.path.join(self.tmp, f"out{self.n}"))

    def run(self, cmd, qtype, data):
        src, dst = self._paths()
        with open(src, "wb") as f:
            f.write(data)
        r = subprocess.run([self.path, cmd, str(int(qtype)), src, dst], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"quant_tool {cmd} {qtype.name} failed: {r.stderr.strip()}")
        with open(dst, "rb") as f:
            out = f.read()
        os.remove(src)
        os.remove(dst)
        return out

    def dequant(self, qtype, raw):
        return np.frombuffer(self.run("dequant", qtype, bytes(raw)), dtype="<f4")

    def dot(self, qtype, raw, x):
        w_path, x_path = self._paths()
        with open(w_path, "wb") as f:
            f.write(bytes(raw))
        with open(x_path, "wb") as f:
            f.write(np.asarray(x, dtype="<f4").tobytes())
        r = subprocess.run([self.path, "dot", str(int(qtype)), w_path, x_path], capture_output=True, text=True)
        os.remove(w_path)
        os.remove(x_path)
        if r.returncode != 0:
            raise RuntimeError(f"quant_tool dot {qtype.name} failed: {r.stderr.strip()}")
        return float(r.stdout)

    def quantize(self, qtype, x):
        return np.frombuffer(self.run("quantize", qtype, np.asarray(x, dtype="<f4").tobytes()), dtype=np.uint8)


def gguf_dequant(qtype, raw):
    raw = np.frombuffer(bytes(raw), dtype=np.uint8)
    if qtype == T.F32:
        return raw.view("<f4").copy()
    if qtype == T.F16:
        return raw.view("<f2").astype(np.float32)
    block_elems, block_bytes, _ = TYPES[qtype]
    return gq.dequantize(raw.reshape(-1, block_bytes), qtype).reshape(-1).astype(np.float32)


def compare(label, ours, ref):
    """Bit-exact, or within 1e-6 relative; NaN only where the reference has NaN. Returns bit-exact count."""
    if ours.shape != ref.shape:
        fail(f"{label}: {ours.size} values, reference has {ref.size}")
        return 0
    exact = (ours.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(ours) & np.isnan(ref))
    with np.errstate(invalid="ignore", over="ignore"):
        close = np.abs(ours.astype(np.float64) - ref) <= 1e-6 * np.abs(ref.astype(np.float64))
    # -0.0 vs +0.0 are equal values; inf == inf is covered by the bitwise test.
    ok = exact | close | ((ours == 0) & (ref == 0))
    if not ok.all():
        bad = np.flatnonzero(~ok)
        i = bad[0]
        fail(f"{label}: {bad.size}/{ref.size} values differ, first at {i}: ours {ours[i]!r} gguf {ref[i]!r}")
    return int(exact.sum())


def random_f16_scales(rng, n):
    """Finite halves of mixed sign and magnitude (1e-4 .. 2), the range real scales occupy."""
    mag = np.exp(rng.uniform(np.log(1e-4), np.log(2.0), n))
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return (mag * sign).astype(np.float16)


def random_blocks(rng, qtype, n_blocks):
    block_elems, block_bytes, scale_offs = TYPES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    if qtype in (T.F32, T.BF16):
        # Finite values only would hide NaN handling; keep every bit pattern but a few exact specials.
        return raw
    for off in scale_offs:
        raw[:, off:off + 2] = random_f16_scales(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    if qtype == T.F16:
        # Add specials and subnormals explicitly.
        specials = np.array([0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x3c00],
                            dtype="<u2").view(np.uint8).reshape(-1, 2)
        raw[:specials.shape[0]] = specials
    return raw


def check_random(tool, rng):
    for qtype in TYPES:
        n_blocks = 4096 if TYPES[qtype][0] == 1 else 512
        raw = random_blocks(rng, qtype, n_blocks)
        ours = tool.dequant(qtype, raw.tobytes())
        ref = gguf_dequant(qtype, raw.tobytes())
        exact = compare(f"random {qtype.name}", ours, ref)
        print(f"random {qtype.name:5s}: {n_blocks} blocks, {exact}/{ref.size} bit-exact")


def tensor_sample(t):
    """Raw bytes of up to MAX_BYTES_PER_TENSOR from the start and the end of a tensor."""
    raw = np.ascontiguousarray(t.data).view(np.uint8).reshape(-1)
    _, block_bytes, _ = TYPES[T(t.tensor_type)]
    if raw.size <= MAX_BYTES_PER_TENSOR:
        return raw
    half = (MAX_BYTES_PER_TENSOR // 2) // block_bytes * block_bytes
    tail_start = (raw.size - half) // block_bytes * block_bytes
    return np.concatenate([raw[:half], raw[tail_start:tail_start + half]])


def check_real_files(tool, model_dir):
    """Returns {type name: number of blocks compared} over every *.gguf in model_dir."""
    verified = {}
    files = sorted(glob.glob(os.path.join(model_dir, "*.gguf")))
    if not files:
        print(f"NOTE: no *.gguf in {model_dir}: real-file checks not run")
    real_values = []
    for path in files:
        try:
            reader = GGUFReader(path)
        except Exception as e:  # noqa: BLE001 - a file gguf cannot read is reported, not fatal
            print(f"NOTE: gguf cannot read {os.path.basename(path)}: {e}")
            continue
        per_type = {}
        unknown = set()
        for t in reader.tensors:
            try:
                qtype = T(t.tensor_type)
            except ValueError:
                qtype = None
            if qtype not in TYPES:
                unknown.add(str(t.tensor_type))
                continue
            per_type.setdefault(qtype, []).append(tensor_sample(t))
        for qtype, chunks in per_type.items():
            raw = np.concatenate(chunks).tobytes()
            ours = tool.dequant(qtype, raw)
            ref = gguf_dequant(qtype, raw)
            exact = compare(f"{os.path.basename(path)} {qtype.name}", ours, ref)
            n_blocks = len(raw) // TYPES[qtype][1]
            verified[qtype.name] = verified.get(qtype.name, 0) + n_blocks
            print(f"real  {qtype.name:5s}: {os.path.basename(path)}: {n_blocks} blocks from {len(chunks)} tensors, "
                  f"{exact}/{ref.size} bit-exact")
            if qtype != T.F32 and len(real_values) < 4:
                real_values.append(ref[: 1 << 14])
        if unknown:
            print(f"NOTE: {os.path.basename(path)}: types not covered here: {sorted(unknown)}")
    return verified, real_values


def nmse(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    den = float((b * b).sum())
    return float(((a - b) ** 2).sum()) / den if den > 0 else float(((a - b) ** 2).sum())


def check_quantizer(tool, rng, real_values):
    inputs = []
    x = rng.uniform(-1, 1, 1 << 14).astype(np.float32)
    inputs.append(("uniform", x, True))
    g = (rng.standard_normal(1 << 14) * 0.02).astype(np.float32)
    g[::997] *= 30  # a few outliers, as weight matrices have
    inputs.append(("gaussian+outliers", g, False))
    edge = rng.uniform(-1, 1, 1 << 12).astype(np.float32)
    edge[:256] = 0  # all-zero blocks must give d = 0, not NaN
    edge[256:512] = 0.5  # constant blocks
    edge[512:768] = np.abs(edge[512:768]) + 1  # all-positive blocks
    edge[768:1024] = -np.abs(edge[768:1024]) - 1  # all-negative blocks
    inputs.append(("edge blocks", edge, False))
    for i, v in enumerate(real_values):
        n = v.size // 256 * 256
        inputs.append((f"real weights {i}", v[:n].astype(np.float32), False))
    for qtype in TYPES:
        for name, x, bound in inputs:
            blocks = tool.quantize(qtype, x)
            ours = tool.dequant(qtype, blocks.tobytes())
            ref = gguf_dequant(qtype, blocks.tobytes())
            compare(f"quantize {qtype.name} {name}: gguf reading our blocks", ours, ref)
            if not np.isfinite(ref).all():
                fail(f"quantize {qtype.name} {name}: NaN/Inf after round trip")
                continue
            e = nmse(ref, x)
            line = f"quant {qtype.name:5s} {name:18s}: nmse {e:.3g}"
            if bound and e > NMSE_BOUND[qtype]:
                fail(f"quantize {qtype.name} {name}: nmse {e:.3g} above {NMSE_BOUND[qtype]:.3g}")
            if qtype not in (T.F32, T.F16) and hasattr(gq, qtype.name):
                try:
                    theirs = gq.dequantize(gq.quantize(x.reshape(1, -1), qtype), qtype).reshape(-1)
                    e_ref = nmse(theirs, x)
                    line += f" (gguf's quantizer {e_ref:.3g})"
                    if e > 1.25 * e_ref + 1e-12:
                        fail(f"quantize {qtype.name} {name}: nmse {e:.3g} worse than gguf's {e_ref:.3g}")
                except NotImplementedError:
                    pass
            print(line)


def check_dot(tool, rng):
    """slm_ref_dot_row against a float64 dot of gguf's dequantization of the same row."""
    for qtype in TYPES:
        n = 8 * 256
        w = tool.quantize(qtype, rng.standard_normal(n).astype(np.float32))
        x = rng.standard_normal(n).astype(np.float32)
        want = float(np.dot(gguf_dequant(qtype, w.tobytes()).astype(np.float64), x.astype(np.float64)))
        got = tool.dot(qtype, w.tobytes(), x)
        # One float rounding of the result, printed with 9 significant digits.
        if abs(got - want) > 1e-6 * abs(want) + 1e-5:
            fail(f"dot {qtype.name}: ours {got!r}, gguf-dequantized dot {want!r}")
        print(f"dot   {qtype.name:5s}: {got:.9g} vs {want:.9g}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    args = ap.parse_args()
    tool_path = os.path.join(args.build, "bin", "quant_tool")
    if not os.access(tool_path, os.X_OK):
        print(f"SKIP: {tool_path} not built")
        return SKIP
    rng = np.random.default_rng(20240607)
    with tempfile.TemporaryDirectory(prefix="slm_quant_") as tmp:
        tool = Tool(tool_path, tmp)
        check_random(tool, rng)
        check_dot(tool, rng)
        model_dir = os.environ.get("SLM_TEST_MODELS")
        verified, real_values = ({}, [])
        if model_dir and os.path.isdir(model_dir):
            verified, real_values = check_real_files(tool, model_dir)
        else:
            print("NOTE: SLM_TEST_MODELS not set: real-file checks not run")
        check_quantizer(tool, rng, real_values)
    random_only = [q.name for q in TYPES if q.name not in verified]
    print("verified on real-file blocks:", ", ".join(f"{k} ({v} blocks)" for k, v in sorted(verified.items())) or "none")
    print("verified on random blocks only:", ", ".join(random_only) or "none")
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("test_quant_numpy: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
