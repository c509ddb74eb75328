#!/bin/sh
# A CUDA build must start and run on the CPU on a machine without the CUDA libraries (issue 15): only the
# runtime is linked, statically, and cuBLAS is loaded when a CUDA device opens.
#
#   cuda_without_libraries.sh BUILD_DIR [MODEL.gguf]
#
# 1. No CUDA library is needed at load time: ldd of bin/slm names no libcublas, libcublasLt, libcudart or
#    libcuda.
# 2. With the CUDA library folders out of the loader's sight: the program is started through the dynamic
#    loader itself with an empty library path and without ld.so.cache (/etc/ld.so.conf.d may list the
#    toolkit), so only the system folders are searched. There `slm run --device cpu` and a plain `slm run`
#    generate, `slm devices` lists the CPU without crashing, and test_cuda_blas sees the clean failure
#    (NULL table, a message naming libcublas.so.N and --device cpu).
# The model: MODEL, else a tiny synthetic one written by slm-bench. Exit 77 (skip) when neither can be had.
set -u
build=${1:?usage: cuda_without_libraries.sh BUILD_DIR [MODEL.gguf]}
model=${2:-}
slm=$build/bin/slm
fail=0
bad() {
    echo "FAIL: $*" >&2
    fail=1
}

[ -x "$slm" ] || { echo "no $slm: build the slm-cli target first: skip"; exit 77; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/empty"

# 1. load-time dependencies (ldd resolves with the normal search, so a library found anywhere shows)
deps=$(ldd "$slm" 2>&1) || { bad "ldd $slm: $deps"; }
if printf '%s\n' "$deps" | grep -E 'lib(cublas|cublasLt|cudart|cuda)\.so' >/dev/null; then
    bad "bin/slm needs CUDA libraries at load time:"
    printf '%s\n' "$deps" | grep -E 'lib(cublas|cublasLt|cudart|cuda)\.so' >&2
fi

if [ -z "$model" ]; then
    model=$tmp/tiny.gguf
    if [ ! -x "$build/bin/slm-bench" ] ||
        ! "$build/bin/slm-bench" --synthetic custom:q4_0:n_layer=2:n_embd=256 --write-synthetic "$model" \
            >"$tmp/synth.log" 2>&1; then
        cat "$tmp/synth.log" 2>/dev/null
        echo "no model (slm-bench missing or failed) and none given: skip"
        exit 77
    fi
fi

# 2. the program's own interpreter, so that the check holds on any distribution
ldso=$(readelf -l "$slm" 2>/dev/null | sed -n 's/.*interpreter: \(.*\)]$/\1/p')
if [ -z "$ldso" ] || [ ! -x "$ldso" ]; then
    echo "cannot find the dynamic loader of $slm: skip"
    exit 77
fi
hidden() { env -u LD_LIBRARY_PATH -u LD_PRELOAD "$ldso" --library-path "$tmp/empty" --inhibit-cache "$@"; }

if ! hidden "$slm" run --device cpu -m "$model" -n 4 -p hi >"$tmp/run.out" 2>"$tmp/run.err"; then
    bad "slm run --device cpu without the CUDA libraries failed:"
    cat "$tmp/run.err" >&2
fi
# no --device: the default GPU is tried (a CUDA device that cannot load cuBLAS is passed over) and the CPU runs
if ! hidden "$slm" run -m "$model" -n 4 -p hi >"$tmp/run2.out" 2>"$tmp/run2.err"; then
    bad "slm run (default device) without the CUDA libraries failed:"
    cat "$tmp/run2.err" >&2
fi
if hidden "$slm" devices >"$tmp/devices.out" 2>&1; then
    grep -q '^cpu' "$tmp/devices.out" || bad "slm devices lists no CPU: $(cat "$tmp/devices.out")"
    # without a driver nothing CUDA can be listed (with one, devices are listed: cuBLAS loads only on open)
    if ! command -v nvidia-smi >/dev/null 2>&1 && grep -q '^cuda:' "$tmp/devices.out"; then
        bad "slm devices lists a CUDA device on a machine without a driver: $(cat "$tmp/devices.out")"
    fi
else
    bad "slm devices without the CUDA libraries failed: $(cat "$tmp/devices.out")"
fi
cat "$tmp/devices.out"

if [ -x "$build/bin/test_cuda_blas" ]; then
    export SLM_TEST_EXPECT_NO_CUBLAS=1
    hidden "$build/bin/test_cuda_blas"
    rc=$?
    # 77: cuBLAS lives in a system folder (a distribution's package), where no loader option hides it
    [ "$rc" = 0 ] || [ "$rc" = 77 ] || bad "test_cuda_blas with cuBLAS hidden (exit $rc)"
else
    echo "test_cuda_blas not built: its hidden run skipped"
fi

[ "$fail" = 0 ] && echo "cuda_without_libraries: ok"
exit "$fail"
