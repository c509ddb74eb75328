#!/usr/bin/env python3
"""The layout rules of docs/ARCHITECTURE.md, checked on the source tree (no build needed):

1. core/ has no cycle between its modules (a module is NAME.c with NAME.h, and NAME_impl.h, the private
   header of a module in several files; A uses B when a file of A includes a header of B), so every module
   can be read and tested after the ones it uses.
2. Nothing under kernels/ includes a header from backends/: kernels are pure functions on memory.
3. tools/ and examples/ include only the public headers (include/) and their own; bench/ only those, its own,
   the support library's (support/) and tools/cli_number.h, cli_io.h (what both command lines share):
   they are built on the API, as any application would be.

Exit 0 when all hold, 1 with one line per violation otherwise.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return [os.path.basename(i) for i in INCLUDE.findall(f.read())]


def files(folder, exts=(".c", ".h", ".cu", ".cuh")):
    out = []
    for base, _, names in os.walk(os.path.join(ROOT, folder)):
        out += [os.path.join(base, n) for n in names if n.endswith(exts)]
    return sorted(out)


def headers_in(*folders):
    return {os.path.basename(p) for f in folders for p in files(f, (".h", ".cuh"))}


def module(filename):
    name = os.path.splitext(os.path.basename(filename))[0]
    return name[:-len("_impl")] if name.endswith("_impl") else name


def core_cycles():
    mods = {}
    for p in files("core", (".c", ".h")):
        mods.setdefault(module(p), set()).update(
            module(h) for h in includes(p) if os.path.exists(os.path.join(ROOT, "core", h)))
    for name in mods:
        mods[name].discard(name)
    cycles, state = [], {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for d in sorted(mods.get(n, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(mods):
        if n not in state:
            visit(n, [])
    return [" -> ".join(c) for c in cycles]


def main():
    bad = [f"core/ cycle: {c}" for c in core_cycles()]
    backend_headers = headers_in("backends")
    for p in files("kernels"):
        bad += [f"{os.path.relpath(p, ROOT)} includes {h} from backends/" for h in includes(p) if h in backend_headers]
    public = headers_in("include")
    allowed = {"tools": public | headers_in("tools"), "examples": public | headers_in("examples"),
               # slm and slm-bench share the number parser and the checked output (one copy of the rules)
               "bench": public | headers_in("bench") | headers_in("support") | {"cli_number.h", "cli_io.h"}}
    for folder, ok in allowed.items():
        for p in files(folder):
            bad += [f"{os.path.relpath(p, ROOT)} includes internal header {h}" for h in includes(p) if h not in ok]
    for line in bad:
        print(line)
    print(f"layout: {len(bad)} violation(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
