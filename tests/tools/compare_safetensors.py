#!/usr/bin/env python3
"""Compare the F32 tensors of two safetensors files (standard library only).

usage: compare_safetensors.py A B [--tol REL] [--identical] [--names GLOB]
--names compares only the tensors whose names match the glob (fnmatch). Prints the largest absolute difference and the largest difference relative to the
tensor's largest magnitude; exits 1 when a tensor differs by more than --tol (or at
all with --identical), or when the files hold different names or shapes."""
import fnmatch
import json
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, t in header.items():
        if t["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {t['dtype']}, only F32 is compared")
        b, e = t["data_offsets"]
        count = (e - b) // 4
        out[name] = (t["shape"], struct.unpack(f"<{count}f", data[base + b:base + e]))
    return out


def main():
    args = sys.argv[1:]
    tol = 0.0
    identical = "--identical" in args
    if "--tol" in args:
        tol = float(args[args.index("--tol") + 1])
    a, b = load(args[0]), load(args[1])
    if "--names" in args:
        glob = args[args.index("--names") + 1]
        a = {k: v for k, v in a.items() if fnmatch.fnmatchcase(k, glob)}
        b = {k: v for k, v in b.items() if fnmatch.fnmatchcase(k, glob)}
        if not a:
            print(f"no tensor matches {glob}")
            return 1
    if sorted(a) != sorted(b):
        print("different tensor names:", sorted(set(a) ^ set(b)))
        return 1
    worst_abs = worst_rel = 0.0
    worst_name = ""
    for name in sorted(a):
        (sa, va), (sb, vb) = a[name], b[name]
        if sa != sb:
            print(f"{name}: shape {sa} vs {sb}")
            return 1
        scale = max(max(abs(x) for x in va), 1e-12)
        d = max(abs(x - y) for x, y in zip(va, vb))
        if d / scale > worst_rel:
            worst_rel, worst_name = d / scale, name
        worst_abs = max(worst_abs, d)
    print(f"max abs diff {worst_abs:.3e}, max rel diff {worst_rel:.3e} ({worst_name or '-'})")
    if identical:
        return 0 if worst_abs == 0 else 1
    return 0 if worst_rel <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
