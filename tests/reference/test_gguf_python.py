#!/usr/bin/env python3
"""Checks core/gguf.c (through BUILD/bin/gguf_dump) against the `gguf` package, a GGUF implementation written
independently of ours.

  python tests/reference/test_gguf_python.py --build BUILD_DIR

1. Files written by gguf's GGUFWriter (every scalar type, arrays of several element types, arrays of strings,
   nested arrays; f32/f16/bf16/i32/q8_0/q4_k/q6_k tensors of 1 to 4 dims; default alignment and 64): every
   key, type and value our reader reports must equal what was written, and every tensor's name, type, shape,
   offset, size and data bytes (CRC-32) must equal what was written and what gguf's GGUFReader finds.
2. The same comparison against GGUFReader for every *.gguf under $SLM_TEST_MODELS.
3. A GGUF v1 file and a truncated file must make gguf_dump fail with a message.
4. Our writer (support/gguf_write.c through BUILD/bin/gguf_write_sample), v2 and v3, alignment 32 and 64: GGUFReader
   must read back every value and tensor it was given.

Exit codes: 0 pass, 1 fail, 77 skip (numpy/gguf or the tool missing).
"""
import argparse
import glob
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import zlib

SKIP = 77

try:
    import numpy as np
    import gguf
    from gguf import GGMLQuantizationType as T
    from gguf import GGUFValueType as V
except Exception as e:  # noqa: BLE001 - any import failure means the reference is unavailable
    print(f"SKIP: numpy/gguf not importable: {e}")
    sys.exit(SKIP)

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def run_dump(tool, path):
    p = subprocess.run([tool, path], capture_output=True)
    if p.returncode != 0:
        return None, p.stderr.decode("utf-8", "replace")
    lines = [json.loads(line) for line in p.stdout.decode("utf-8").splitlines() if line.strip()]
    header = lines[0]
    kvs = {d["kv"]: d for d in lines[1:] if "kv" in d}
    tensors = [d for d in lines[1:] if "tensor" in d]
    return (header, kvs, tensors), None


def same_value(vtype, got, want):
    """Exact comparison; float32 values compare after rounding the written value to float32."""
    if vtype == V.ARRAY:
        return isinstance(got, list) and len(got) == len(want[1]) and all(
            same_value(want[0], g, w) for g, w in zip(got, want[1]))
    if vtype == V.FLOAT32:  # gguf_dump prints 9 significant digits: exact after rounding to float32
        g, w = float(np.float32(got)), float(np.float32(want))
        return (math.isnan(g) and math.isnan(w)) if math.isnan(w) else g == w
    if vtype == V.FLOAT64:
        return (math.isnan(got) and math.isnan(want)) if math.isnan(want) else got == want
    if vtype == V.BOOL:
        return got is bool(want)
    return got == want


# key -> (value type, value); arrays: (V.ARRAY, (element type, [elements])) with nested elements alike.
def metadata():
    nested_i = (V.ARRAY, [(V.INT32, [1, -2, 3]), (V.INT32, [4])])
    nested_s = (V.ARRAY, [(V.STRING, ["a", "bc"]), (V.STRING, ["d\u00e9f"])])
    return {
        "t.u8": (V.UINT8, 250), "t.i8": (V.INT8, -120), "t.u16": (V.UINT16, 65000), "t.i16": (V.INT16, -32000),
        "t.u32": (V.UINT32, 4_000_000_000), "t.i32": (V.INT32, -2_000_000_000),
        "t.u64": (V.UINT64, 2**64 - 5), "t.i64": (V.INT64, -(2**62)),
        "t.f32": (V.FLOAT32, 0.1), "t.f32_inf": (V.FLOAT32, float("inf")), "t.f64": (V.FLOAT64, 1.0 / 3.0),
        "t.true": (V.BOOL, True), "t.false": (V.BOOL, False),
        "t.str": (V.STRING, "h\u00e9llo \"quoted\" \\ tab\t new\nline \u2581 \U0001f600"),
        "t.str_empty": (V.STRING, ""),
        "t.arr_u8": (V.ARRAY, (V.UINT8, [0, 1, 255])),
        "t.arr_i32": (V.ARRAY, (V.INT32, [-5, 0, 7])),
        "t.arr_u64": (V.ARRAY, (V.UINT64, [2**64 - 1, 0])),
        "t.arr_i64": (V.ARRAY, (V.INT64, [-(2**63), 2**63 - 1])),
        "t.arr_f32": (V.ARRAY, (V.FLOAT32, [0.5, -1e-3, 3.0e38])),
        "t.arr_f64": (V.ARRAY, (V.FLOAT64, [1e-300, -2.5])),
        "t.arr_bool": (V.ARRAY, (V.BOOL, [True, False, True])),
        "t.arr_i16": (V.ARRAY, (V.INT16, [-3, 3])),
        "t.arr_str": (V.ARRAY, (V.STRING, ["<s>", "", "\u2581the", "</s>"])),
        "t.nested_i32": (V.ARRAY, nested_i),
        "t.nested_str": (V.ARRAY, nested_s),
    }


def gguf_value(vtype, value):
    """(type, value) -> what GGUFWriter.add_key_value takes (nested arrays as plain lists)."""
    if vtype == V.ARRAY:
        et, elems = value
        if et == V.ARRAY:
            return [gguf_value(V.ARRAY, e) for e in elems]
        return list(elems)
    return value


def tensors(rng):
    out = []  # (name, gguf type, ne (innermost first), raw bytes, numpy array given to the writer)
    a = rng.standard_normal((3, 5)).astype(np.float32)
    out.append(("f32.2d", T.F32, [5, 3], a))
    a = rng.standard_normal((2, 3, 4)).astype(np.float16)
    out.append(("f16.3d", T.F16, [4, 3, 2], a))
    a = rng.integers(-2**31, 2**31, size=(2, 1, 3, 4), dtype=np.int32)
    out.append(("i32.4d", T.I32, [4, 3, 1, 2], a))
    a = rng.integers(0, 2**16, size=(7,), dtype=np.uint16)
    out.append(("bf16.1d", T.BF16, [7], a))
    q = gguf.quants.quantize(rng.standard_normal((4, 64)).astype(np.float32), T.Q8_0)
    out.append(("blk.0.q8_0", T.Q8_0, [64, 4], q))
    a = rng.integers(0, 256, size=(3, 144), dtype=np.uint8)
    out.append(("blk.0.q4_k", T.Q4_K, [256, 3], a))
    a = rng.integers(0, 256, size=(2, 2 * 210), dtype=np.uint8)
    out.append(("blk.1.q6_k", T.Q6_K, [512, 2], a))
    return out


def write_file(path, alignment, rng):
    w = gguf.GGUFWriter(path, arch="llama")
    if alignment:
        w.add_custom_alignment(alignment)
    meta = metadata()
    for key, (vtype, value) in meta.items():
        sub = value[0] if vtype == V.ARRAY else None
        w.add_key_value(key, gguf_value(vtype, value), vtype, sub_type=sub)
    ts = tensors(rng)
    for name, qt, ne, arr in ts:
        if qt in (T.F32, T.F16, T.I32):
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, arr, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    meta["general.architecture"] = (V.STRING, "llama")
    if alignment:
        meta["general.alignment"] = (V.UINT32, alignment)
    return meta, ts


TYPE_NAMES = {V.UINT8: "uint8", V.INT8: "int8", V.UINT16: "uint16", V.INT16: "int16", V.UINT32: "uint32",
              V.INT32: "int32", V.FLOAT32: "float32", V.BOOL: "bool", V.STRING: "string", V.ARRAY: "array",
              V.UINT64: "uint64", V.INT64: "int64", V.FLOAT64: "float64"}


def check_written(tool, path, alignment, meta, ts):
    dump, err = run_dump(tool, path)
    if dump is None:
        fail(f"{path}: gguf_dump failed: {err}")
        return
    header, kvs, tens = dump
    al = alignment or 32
    if header["alignment"] != al or header["version"] != 3 or header["data_offset"] % al:
        fail(f"{path}: header {header}")
    if header["n_kv"] != len(meta) or set(kvs) != set(meta):
        fail(f"{path}: keys differ: ours {sorted(kvs)} written {sorted(meta)}")
    for key, (vtype, value) in meta.items():
        d = kvs.get(key)
        if d is None:
            continue
        if d["type"] != TYPE_NAMES[vtype]:
            fail(f"{key}: type {d['type']} != {TYPE_NAMES[vtype]}")
        if vtype == V.ARRAY and d.get("elem") != TYPE_NAMES[value[0]]:
            fail(f"{key}: element type {d.get('elem')} != {TYPE_NAMES[value[0]]}")
        if not same_value(vtype, d["value"], value):
            fail(f"{key}: value {d['value']!r} != written {value!r}")
    if len(tens) != len(ts):
        fail(f"{path}: {len(tens)} tensors, wrote {len(ts)}")
    raw = open(path, "rb").read()
    for d, (name, qt, ne, arr) in zip(tens, ts):
        want_bytes = arr.tobytes()
        ok = (d["tensor"] == name and d["type_id"] == int(qt) and d["ne"] == ne and d["size"] == len(want_bytes)
              and d["offset"] % al == 0 and d["crc32"] == zlib.crc32(want_bytes))
        start = header["data_offset"] + d["offset"]
        ok = ok and raw[start:start + d["size"]] == want_bytes
        if not ok:
            fail(f"{path}: tensor {d} != written {name} {qt.name} {ne} {len(want_bytes)} bytes")
    compare_with_reader(path, dump)


def reader_value(field):
    """A GGUFReader field -> (type name, element type name or None, plain value), or None if unsupported."""
    main = field.types[0]
    if main == V.ARRAY:
        if len(field.types) > 2:
            return None  # nested: GGUFReader's contents() does not support them
        return "array", TYPE_NAMES[field.types[-1]], field.contents()
    return TYPE_NAMES[main], None, field.contents()


def same_as_reader(a, b, f32):
    """Exact equality; float32 values compare after rounding both to float32 (gguf_dump prints 9 digits)."""
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same_as_reader(x, y, f32) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        x, y = (float(np.float32(a)), float(np.float32(b))) if f32 else (float(a), float(b))
        return (math.isnan(x) and math.isnan(y)) or x == y
    return a == b


def compare_with_reader(path, dump):
    header, kvs, tens = dump
    try:
        r = gguf.GGUFReader(path)
    except Exception as e:  # noqa: BLE001
        fail(f"{path}: GGUFReader failed: {e}")
        return
    fields = {k: f for k, f in r.fields.items() if not k.startswith("GGUF.")}
    if set(fields) != set(kvs):
        fail(f"{path}: keys ours-only {set(kvs) - set(fields)} reader-only {set(fields) - set(kvs)}")
    for key, f in fields.items():
        d = kvs.get(key)
        rv = reader_value(f)
        if d is None or rv is None:
            continue
        tname, ename, value = rv
        if d["type"] != tname or d.get("elem") != ename:
            fail(f"{path}: {key}: type {d['type']}/{d.get('elem')} reader {tname}/{ename}")
        elif not same_as_reader(d["value"], value, "float32" in (tname, ename)):
            fail(f"{path}: {key}: {str(d['value'])[:200]} reader {str(value)[:200]}")
    if len(r.tensors) != len(tens):
        fail(f"{path}: {len(tens)} tensors, reader {len(r.tensors)}")
    raw = None
    for d, t in zip(tens, r.tensors):
        ok = (d["tensor"] == t.name and d["type_id"] == int(t.tensor_type) and d["ne"] == [int(x) for x in t.shape]
              and d["size"] == int(t.n_bytes) and header["data_offset"] + d["offset"] == int(t.data_offset))
        if ok:
            if raw is None:
                raw = np.memmap(path, dtype=np.uint8, mode="r")
            start = int(t.data_offset)
            ok = d["crc32"] == zlib.crc32(raw[start:start + int(t.n_bytes)].tobytes())
        if not ok:
            fail(f"{path}: tensor {d} reader {t.name} {t.tensor_type.name} {list(t.shape)} {t.n_bytes} "
                 f"@{t.data_offset}")


def check_rejected(tool, tmp):
    v1 = os.path.join(tmp, "v1.gguf")
    with open(v1, "wb") as f:
        f.write(b"GGUF" + struct.pack("<III", 1, 0, 0))
    dump, err = run_dump(tool, v1)
    if dump is not None or "version 1" not in err:
        fail(f"v1 file: expected a 'version 1' error, got {err!r}")
    good = os.path.join(tmp, "align32.gguf")
    data = open(good, "rb").read()
    cut = os.path.join(tmp, "cut.gguf")
    for n in (3, 20, len(data) // 2, len(data) - 100):
        with open(cut, "wb") as f:
            f.write(data[:n])
        dump, err = run_dump(tool, cut)
        if dump is not None or not err.strip():
            fail(f"file cut to {n} bytes: expected an error message, got {err!r}")
    dump, err = run_dump(tool, os.path.join(tmp, "missing.gguf"))
    if dump is not None or "missing.gguf" not in err:
        fail(f"missing file: {err!r}")


SAMPLE_KVS = {
    "general.architecture": (V.STRING, "llama"), "s.u32": (V.UINT32, 4_000_000_000), "s.i32": (V.INT32, -7),
    "s.f32": (V.FLOAT32, 0.375), "s.bool": (V.BOOL, True), "s.str": (V.STRING, "h\u00e9llo"),
    "s.u64": (V.UINT64, 2**40 + 3), "s.arr_str": (V.ARRAY, (V.STRING, ["<s>", "", "\u2581a"])),
    "s.arr_i32": (V.ARRAY, (V.INT32, [1, -2, 3])), "s.arr_f32": (V.ARRAY, (V.FLOAT32, [0.5, -1.5])),
}


def sample_tensors():
    f = (0.25 * np.arange(15, dtype=np.float32) - 1.0).astype(np.float32)
    q = ((7 * np.arange(2 * 2 * 34) + 3) & 255).astype(np.uint8)
    i = (1000 * np.arange(8) - 3).astype(np.int32)
    return [("w.f32", T.F32, [5, 3], f.tobytes()), ("w.q8_0", T.Q8_0, [64, 2], q.tobytes()),
            ("w.i32", T.I32, [4, 1, 2], i.tobytes())]


def check_our_writer(build, tmp):
    tool = os.path.join(build, "bin", "gguf_write_sample")
    if not os.access(tool, os.X_OK):
        fail(f"{tool} not built")
        return
    # (version, alignment): None writes no general.alignment key and leaves the version at its default, 3
    for version, alignment in ((3, None), (2, 32), (3, 64), (2, 64)):
        path = os.path.join(tmp, f"ours_v{version}_{alignment}.gguf")
        args = [tool, path] + ([str(alignment), str(version)] if alignment else [])
        p = subprocess.run(args, capture_output=True)
        if p.returncode != 0:
            fail(f"gguf_write_sample {args[2:]}: {p.stderr!r}")
            continue
        want = dict(SAMPLE_KVS)
        if alignment:
            want["general.alignment"] = (V.UINT32, alignment)
        al = alignment or 32
        raw = open(path, "rb").read()
        if struct.unpack_from("<I", raw, 4)[0] != version:
            fail(f"{path}: version field")
        try:
            r = gguf.GGUFReader(path)
        except Exception as e:  # noqa: BLE001
            fail(f"{path}: GGUFReader cannot read our file: {e}")
            continue
        fields = {k: f for k, f in r.fields.items() if not k.startswith("GGUF.")}
        if set(fields) != set(want):
            fail(f"{path}: keys {sorted(fields)} != {sorted(want)}")
        for key, (vtype, value) in want.items():
            f = fields.get(key)
            if f is None:
                continue
            rt = f.types[0]
            got = f.contents()
            if rt != vtype or (vtype == V.ARRAY and f.types[-1] != value[0]):
                fail(f"{path}: {key}: reader type {[t.name for t in f.types]}")
            elif not same_value(vtype, got, value):
                fail(f"{path}: {key}: reader value {got!r} != {value!r}")
        ts = sample_tensors()
        if len(r.tensors) != len(ts):
            fail(f"{path}: reader sees {len(r.tensors)} tensors")
        for t, (name, qt, ne, data) in zip(r.tensors, ts):
            start = int(t.data_offset)
            if (t.name != name or t.tensor_type != qt or [int(x) for x in t.shape] != ne
                    or int(t.n_bytes) != len(data) or start % al or raw[start:start + len(data)] != data):
                fail(f"{path}: tensor {t.name} {t.tensor_type.name} {list(t.shape)} @{start} != {name}")
        if len(raw) % al:
            fail(f"{path}: size {len(raw)} not padded to {al}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    args = ap.parse_args()
    tool = os.path.join(args.build, "bin", "gguf_dump")
    if not os.access(tool, os.X_OK):
        print(f"SKIP: {tool} not built")
        return SKIP
    rng = np.random.default_rng(1234)
    with tempfile.TemporaryDirectory() as tmp:
        for alignment in (0, 64):
            path = os.path.join(tmp, f"align{alignment or 32}.gguf")
            meta, ts = write_file(path, alignment, rng)
            check_written(tool, path, alignment, meta, ts)
        check_rejected(tool, tmp)
        check_our_writer(args.build, tmp)
    models = os.environ.get("SLM_TEST_MODELS")
    n_models = 0
    if models:
        for path in sorted(glob.glob(os.path.join(models, "*.gguf"))):
            dump, err = run_dump(tool, path)
            if dump is None:
                if "unsupported" in err:
                    print(f"note: {os.path.basename(path)}: {err.strip()}")
                    continue
                fail(f"{path}: gguf_dump failed: {err}")
                continue
            compare_with_reader(path, dump)
            n_models += 1
    print(f"checked 2 files written by gguf, 4 written by us, and {n_models} model file(s)")
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
