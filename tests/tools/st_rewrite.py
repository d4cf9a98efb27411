#!/usr/bin/env python3
"""Rewrite a safetensors file for loading tests (standard library only).

usage: st_rewrite.py IN OUT gpt2-hub          the Hugging Face hub's GPT-2 layout: names
                                             without "transformer.", no lm_head.weight,
                                             plus h.N.attn.bias causal-mask buffers
       st_rewrite.py IN OUT as-i32 NAME      store tensor NAME as I32 (rounded values)"""
import json
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        out[name] = (t["dtype"], t["shape"], data[8 + n + b:8 + n + e])
    return out, meta


def save(path, tensors, meta):
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    src, dst, how = sys.argv[1:4]
    tensors, meta = load(src)
    if how == "gpt2-hub":
        out = {}
        for name, t in tensors.items():
            if name == "lm_head.weight":
                continue
            out[name[len("transformer."):] if name.startswith("transformer.") else name] = t
        n_pos = tensors["transformer.wpe.weight"][1][0]
        mask = b"".join(struct.pack("<f", 1.0 if j <= i else 0.0)
                        for i in range(n_pos) for j in range(n_pos))
        layers = {name.split(".")[2] for name in tensors if name.startswith("transformer.h.")}
        for layer in layers:
            out[f"h.{layer}.attn.bias"] = ("F32", [1, 1, n_pos, n_pos], mask)
        save(dst, out, meta)
    elif how == "as-i32":
        name = sys.argv[4]
        dtype, shape, raw = tensors[name]
        values = struct.unpack(f"<{len(raw) // 4}f", raw)
        tensors[name] = ("I32", shape, struct.pack(f"<{len(values)}i", *(round(v) for v in values)))
        save(dst, tensors, meta)
    else:
        raise SystemExit(f"unknown rewrite {how}")


if __name__ == "__main__":
    main()
