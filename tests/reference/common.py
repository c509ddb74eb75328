"""Helpers shared by the Python reference tests (tests/reference/test_*.py).

ctest runs each test as `PYTHON tests/reference/test_X.py --build BUILD_DIR` from the repository root,
with SLM_TEST_MODELS naming the folder of test models (scripts/test sets it to .cache/models).

Exit codes follow the C tests: 0 pass, 1 fail, 77 skip (a fixture, a module or a device is missing).
A test prints one closing line `N passed, N failed, N skipped` (see Tally) so that logs read alike.
"""
import argparse
import glob
import os
import sys

SKIP = 77
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def skip(why):
    """Ends the test as skipped, saying why (ctest shows it with --output-on-failure -V)."""
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def require_modules(*names):
    """Imports each module by name or skips the test: the reference needs e.g. numpy and gguf."""
    mods = []
    for n in names:
        try:
            mods.append(__import__(n))
        except Exception as e:  # noqa: BLE001 - any import failure means the reference is unavailable
            skip(f"python module {n} not importable ({e}); run scripts/setup to create .venv")
    return mods


def build_arg_parser(description):
    """An argparse parser with the --build option every reference test takes."""
    ap = argparse.ArgumentParser(description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(REPO_ROOT, "build"),
                    help="the cmake build directory (binaries in BUILD/bin)")
    return ap


def build_binary(build_dir, name):
    """Path of BUILD/bin/NAME; None when it was not built."""
    p = os.path.join(build_dir, "bin", name)
    return p if os.path.isfile(p) and os.access(p, os.X_OK) else None


def models_dir():
    """$SLM_TEST_MODELS, else the .cache/models that scripts/setup fills; None when neither exists."""
    d = os.environ.get("SLM_TEST_MODELS") or os.path.join(REPO_ROOT, ".cache", "models")
    return d if os.path.isdir(d) else None


def find_test_models():
    """Sorted paths of the *.gguf files in the models folder (empty when there is none)."""
    d = models_dir()
    return sorted(glob.glob(os.path.join(d, "*.gguf"))) if d else []


def gguf_architecture(path):
    """general.architecture of a GGUF file (reads only the header through gguf.GGUFReader)."""
    from gguf import GGUFReader

    f = GGUFReader(path).fields.get("general.architecture")
    return f.contents() if f is not None else None


def gguf_bpe_tokenizer(path):
    """A `tokenizers` byte-level BPE tokenizer built from a GGUF's gpt2-style vocabulary and merges.

    Independent of slm's tokenizer, and good enough to turn English text into ids for sanity checks. It
    uses the GPT-2 pre-tokenizer split, which may differ from the model's own (tokenizer.ggml.pre) on
    digits and some punctuation, so it is not an exact reference for every string. Control and
    user-defined tokens (token_type 3 and 4) are matched as special tokens.
    """
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    r = GGUFReader(path)
    kind = r.fields["tokenizer.ggml.model"].contents()
    if kind != "gpt2":
        raise ValueError(f"{path}: tokenizer.ggml.model is {kind!r}, not a byte-level BPE ('gpt2')")
    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    merges = [tuple(m.split(" ", 1)) for m in r.fields["tokenizer.ggml.merges"].contents()]
    tk = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    # Control (3) and user-defined (4) tokens such as <|im_start|> match whole, never through merges.
    types = r.fields["tokenizer.ggml.token_type"].contents() if "tokenizer.ggml.token_type" in r.fields else []
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False)
                           for t, ty in zip(tokens, types) if ty in (3, 4)])
    return tk


class Tally:
    """Counts checks and prints the closing `N passed, N failed, N skipped` line."""

    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def check(self, ok, what):
        print(f"{'PASS' if ok else 'FAIL'}: {what}")
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        return ok

    def skip(self, what):
        print(f"SKIP: {what}")
        self.skipped += 1

    def finish(self):
        """Prints the closing line and exits: 1 on any failure, 77 when nothing ran, else 0."""
        print(f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped")
        if self.failed:
            sys.exit(1)
        sys.exit(SKIP if self.passed == 0 else 0)
