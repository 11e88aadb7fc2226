#!/usr/bin/env python3
"""Per-function difference of two callgrind dumps (not a test), per operation: which
functions explain a change in `bench/kms_instr.py`'s ir_per_op.

  python3 bench/callgrind_diff.py OLD_DUMP NEW_DUMP OPS [--self] [--top 60] [--grep strongroom_kms]

Columns: old and new instructions per op (inclusive, or exclusive with --self), new - old,
the function. Functions are matched by name (without file and binary), so renamed or
inlined functions show as one side 0; read them together with `callgrind_annotate
--tree=calling`.
"""
import argparse
import re
import subprocess


def per_function(path, inclusive, ops):
    out = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
         "--threshold=100", "--auto=no", path],
        capture_output=True, text=True, check=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m or (not inclusive and "(100.0%)" in line):
            continue
        v = int(m.group(1).replace(",", "")) / ops
        fn = re.sub(r" \[[^\]]*\]$", "", m.group(2))
        # drop the source file ("path/file.rs:", "???:")
        fn = re.sub(r"^(?:\?\?\?|[^ <:]*\.[A-Za-z]+):", "", fn)
        # inclusive: the largest entry of a name (inlined copies overlap); self: their sum
        d[fn] = max(d.get(fn, 0), v) if inclusive else d.get(fn, 0) + v
    return d


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("ops", type=int)
    ap.add_argument("--self", action="store_true", help="exclusive cost instead of inclusive")
    ap.add_argument("--top", type=int, default=60)
    ap.add_argument("--grep", default="", help="only functions whose name contains this")
    a = ap.parse_args()
    old = per_function(a.old, not a.self, a.ops)
    new = per_function(a.new, not a.self, a.ops)
    names = [k for k in set(old) | set(new) if a.grep in k]
    names.sort(key=lambda k: -abs(new.get(k, 0) - old.get(k, 0)))
    for k in names[:a.top]:
        o, n = old.get(k, 0), new.get(k, 0)
        print(f"{o:10.0f} {n:10.0f} {n - o:+10.0f}  {k[:200]}")


if __name__ == "__main__":
    main()
