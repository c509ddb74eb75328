"""`slm run` on inputs it must refuse quickly and cleanly (non-zero exit, a message on stderr, never a hang or
a kill by the OS):

- a FIFO, a directory or /dev/zero as -m: "is not a regular file" at once (opening a FIFO used to block);
- a context whose KV cache cannot fit the machine (-c 16777216, the most -c takes: 360 GiB on SmolLM2): exit 1
  with the sizes and the largest context that fits, not exit 137;
- under a real limit (RLIMIT_AS 2 GiB, as `ulimit -v` sets it), -c 262144 (5.6 GiB of KV cache) fails the
  same way, and the context it suggests then runs (skipped for sanitized builds, which need the address
  space for their shadow memory);
- under a data limit (RLIMIT_DATA 44 MiB) that holds a synthetic Q4_0 model's context but not repacked
  copies of all of its 32 MiB of weights: the CPU keeps some weights in the file's layout, the plan note
  says how many, and the model runs.

    python tests/reference/test_load_errors_cli.py --build BUILD_DIR

Exit: 0 pass, 1 fail, 77 skip (no slm binary).
"""
import os
import re
import resource
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"
FITS = re.compile(r"the largest context that fits is (\d+) tokens \(-c (\d+)\)")


def run(slm, args, limit_as=None, timeout=60, limit_data=None):
    """(rc, stderr) of `slm ARGS`; limit_as / limit_data: RLIMIT_AS / RLIMIT_DATA in bytes for the child. A
    hang raises TimeoutExpired."""
    def limit():
        if limit_as:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))
        if limit_data:
            resource.setrlimit(resource.RLIMIT_DATA, (limit_data, limit_data))
    r = subprocess.run([slm, *args], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                       preexec_fn=limit if limit_as or limit_data else None)
    return r.returncode, r.stderr.decode(errors="replace")


def check_repack_fallback(slm, bench, tally):
    """Weights the free memory cannot hold repacked keep the file's layout, and the plan note says so."""
    if not bench:
        tally.skip("repack fallback: no slm-bench to write the synthetic model")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "q40.gguf")
        subprocess.run([bench, "--synthetic", "custom:q4_0:n_layer=6:n_embd=1536", "--write-synthetic", path],
                       check=True, capture_output=True, timeout=120)
        args = ["run", "-m", path, "-p", "hi", "-n", "4", "--greedy", "--device", "cpu", "-c", "256", "-b", "64"]
        rc, err = run(slm, args, limit_data=44 << 20)
        if "Sanitizer" in err:
            tally.skip("RLIMIT_DATA: a sanitized build cannot run under a data limit")
            return
        m = re.search(r"(\d+) of (\d+) CPU weights \(\d+ MiB, layer \d+ on\) keep the file's layout", err)
        tally.check(rc == 0 and m and 0 < int(m.group(1)) < int(m.group(2)),
                    f"repack under RLIMIT_DATA 44 MiB: exit {rc}, stderr {err.strip()!r}")
        rc, err = run(slm, args)
        tally.check(rc == 0 and "keep the file's layout" not in err,
                    f"repack without a limit: exit {rc}, stderr {err.strip()!r}")


def main():
    ap = common.build_arg_parser(__doc__)
    args = ap.parse_args()
    slm = common.build_binary(args.build, "slm")
    if not slm:
        common.skip(f"{args.build}/bin/slm not built")
    tally = common.Tally()
    check_repack_fallback(slm, common.build_binary(args.build, "slm-bench"), tally)

    # not regular files
    with tempfile.TemporaryDirectory() as tmp:
        fifo = os.path.join(tmp, "model.gguf")
        os.mkfifo(fifo)
        for path, kind in ((fifo, "a FIFO"), (tmp, "a directory"), ("/dev/zero", "a character device")):
            try:
                rc, err = run(slm, ["run", "-m", path, "-p", "hi", "-n", "1"], timeout=30)
            except subprocess.TimeoutExpired:
                tally.check(False, f"-m {kind}: still running after 30 s")
                continue
            tally.check(rc == 1 and "is not a regular file" in err and kind in err,
                        f"-m {kind}: exit {rc}, stderr {err.strip()!r}")

    d = common.models_dir()
    model = os.path.join(d, MODEL) if d else None
    if not model or not os.path.isfile(model):
        tally.skip(f"KV cache checks: no {MODEL} in $SLM_TEST_MODELS")
        tally.finish()
    # --device cpu: probing for a GPU maps a varying amount of address space (lavapipe's threads and JIT
    # memory), which would make the context that fits under RLIMIT_AS differ from one run to the next
    base = ["run", "-m", model, "-p", "Hello", "-t", "2", "--greedy", "--device", "cpu"]

    # far more than any machine: refused before allocating, with the numbers
    rc, err = run(slm, base + ["-n", "1", "-c", "16777216"])
    m = FITS.search(err)
    if rc == 0:
        tally.skip("-c 16777216: this machine has the 360 GiB it needs")
    else:
        tally.check(rc == 1 and "a 16777216-token context needs" in err and "GiB of KV cache on cpu" in err and m,
                    f"-c 16777216: exit {rc}, stderr {err.strip()!r}")

    # under a 2 GiB address-space limit
    limit = 2 << 30
    rc, err = run(slm, base + ["-n", "1", "-c", "262144"], limit_as=limit)
    if "AddressSanitizer" in err or "Sanitizer" in err:
        tally.skip("RLIMIT_AS: a sanitized build cannot run under an address-space limit")
        tally.finish()
    m = FITS.search(err)
    tally.check(rc == 1 and "a 262144-token context needs" in err and m and int(m.group(1)) < 262144,
                f"-c 262144 under RLIMIT_AS 2 GiB: exit {rc}, stderr {err.strip()!r}")
    if m:
        fits = m.group(1)
        rc, err = run(slm, base + ["-n", "4", "-c", fits], limit_as=limit, timeout=300)
        tally.check(rc == 0, f"the suggested -c {fits} runs under the same limit: exit {rc}, stderr {err.strip()!r}")
    tally.finish()


if __name__ == "__main__":
    main()
