#!/usr/bin/env python3
"""Independent check of a safetensors file written by graft, using only the standard
library (json + struct), so the test needs neither numpy nor the safetensors package.

    check_safetensors.py FILE [--tensor NAME DTYPE SHAPE]... [--value NAME INDEX VALUE]...
                              [--meta KEY VALUE]...

Checks the layout (8-byte little-endian header length, header padded with spaces to a
multiple of 8 bytes as graft writes it, UTF-8 JSON object without duplicate keys, known
dtypes, offsets that tile the data region exactly with sizes matching the shapes, every
tensor aligned to its element size), prints one line per tensor, then checks the
expectations given:
  --tensor NAME DTYPE SHAPE   dtype and shape ("2,3"; "" for a scalar) of a tensor
  --value NAME INDEX VALUE    element INDEX (flat, row-major) equals VALUE exactly
                              (floats: "inf", "-inf", "nan", "-0.0" allowed)
  --meta KEY VALUE            __metadata__[KEY] == VALUE
Exit status 0 when everything holds, 1 otherwise (with the reason on stderr).
"""
import argparse
import json
import math
import os
import struct
import sys

DTYPES = {  # name -> (element size, struct format or None for bf16)
    "F32": (4, "<f"),
    "F16": (2, "<e"),
    "BF16": (2, None),
    "I64": (8, "<q"),
    "I32": (4, "<i"),
    "U8": (1, "<B"),
    "U16": (2, "<H"),
}


class CheckError(Exception):
    pass


def reject_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise CheckError(f"duplicate key {key!r} in header")
        obj[key] = value
    return obj


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def load(path):
    with open(path, "rb") as fh:
        blob = fh.read()
    if len(blob) < 8:
        raise CheckError(f"file is {len(blob)} bytes, shorter than the header length")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > len(blob) - 8:
        raise CheckError(f"header length {header_len} runs past the end of the file")
    if header_len % 8 != 0:
        raise CheckError(f"header length {header_len} is not a multiple of 8")
    raw = blob[8 : 8 + header_len]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckError(f"header is not UTF-8: {exc}")
    if text[text.rfind("}") + 1 :].strip(" "):
        raise CheckError("header padding after the JSON object is not all spaces")
    try:
        header = json.loads(text, object_pairs_hook=reject_duplicates)
    except json.JSONDecodeError as exc:
        raise CheckError(f"header is not JSON: {exc}")
    if not isinstance(header, dict):
        raise CheckError("header is not a JSON object")
    data = blob[8 + header_len :]
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckError("__metadata__ is not an object of strings")
    tensors = {}
    for name, info in header.items():
        if not isinstance(info, dict):
            raise CheckError(f"{name}: entry is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPES:
            raise CheckError(f"{name}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
            raise CheckError(f"{name}: bad shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(is_int(o) and o >= 0 for o in offsets)):
            raise CheckError(f"{name}: bad data_offsets {offsets!r}")
        begin, end = offsets
        size = DTYPES[dtype][0]
        numel = math.prod(shape)
        if not begin <= end <= len(data):
            raise CheckError(f"{name}: data_offsets {offsets} outside data region of {len(data)}")
        if end - begin != numel * size:
            raise CheckError(f"{name}: {end - begin} bytes for shape {shape} {dtype}")
        if begin % size != 0:
            raise CheckError(f"{name}: offset {begin} not aligned to {size}")
        tensors[name] = (dtype, shape, begin, end)
    position = 0
    for name, (dtype, shape, begin, end) in sorted(tensors.items(), key=lambda kv: kv[1][2:]):
        if begin != position:
            raise CheckError(f"{name}: starts at {begin}, expected {position} (gap or overlap)")
        position = end
    if position != len(data):
        raise CheckError(f"{len(data) - position} unused bytes at the end of the data region")
    return meta, tensors, data


def element(dtype, data, begin, index):
    size, fmt = DTYPES[dtype]
    at = begin + index * size
    if fmt is None:  # bf16: the top half of an fp32
        (bits,) = struct.unpack("<H", data[at : at + 2])
        return struct.unpack("<f", struct.pack("<I", bits << 16))[0]
    return struct.unpack(fmt, data[at : at + size])[0]


def same_value(got, want_text, dtype):
    if dtype in ("F32", "F16", "BF16"):
        want = float(want_text)
        if math.isnan(want):
            return math.isnan(got)
        return got == want and math.copysign(1.0, got) == math.copysign(1.0, want)
    return got == int(want_text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--tensor", nargs=3, action="append", default=[])
    parser.add_argument("--value", nargs=3, action="append", default=[])
    parser.add_argument("--meta", nargs=2, action="append", default=[])
    args = parser.parse_args()
    try:
        meta, tensors, data = load(args.file)
        for name, (dtype, shape, begin, end) in sorted(tensors.items()):
            print(f"{name} {dtype} {shape} [{begin}, {end}]")
        for name, dtype, shape_text in args.tensor:
            if name not in tensors:
                raise CheckError(f"{name}: missing")
            want_shape = [int(d) for d in shape_text.split(",")] if shape_text else []
            if tensors[name][:2] != (dtype, want_shape):
                raise CheckError(f"{name}: is {tensors[name][:2]}, expected {(dtype, want_shape)}")
        for name, index_text, want_text in args.value:
            if name not in tensors:
                raise CheckError(f"{name}: missing")
            dtype, shape, begin, _ = tensors[name]
            index = int(index_text)
            if not 0 <= index < math.prod(shape):
                raise CheckError(f"{name}: index {index} out of range")
            got = element(dtype, data, begin, index)
            if not same_value(got, want_text, dtype):
                raise CheckError(f"{name}[{index}] is {got!r}, expected {want_text}")
        for key, want in args.meta:
            if meta.get(key) != want:
                raise CheckError(f"metadata {key!r} is {meta.get(key)!r}, expected {want!r}")
    except (CheckError, OSError) as exc:
        print(f"check_safetensors: {os.path.basename(args.file)}: FAIL: {exc}", file=sys.stderr)
        return 1
    print(f"check_safetensors: OK ({len(tensors)} tensors, {len(meta)} metadata keys)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
