#!/usr/bin/python3
"""Reference fixtures for graft's models, made with PyTorch (run by a developer, never by CI).

    /usr/bin/python3 tools/make_fixtures.py [ARCH ...]          # write tests/fixtures/
    /usr/bin/python3 tools/make_fixtures.py --check-saved DIR   # strict-load graft's saves

Each architecture lives in tools/fixtures/<arch>.py with make(outdir) and check_saved(dir).
The second form loads the files the C tests saved (build/tests/saved) into the PyTorch
reference models with load_state_dict(strict=True). "hub" (tools/fixtures/hub.py) rewrites
resnet's and bert's fixtures in the layouts of downloaded files; it saves nothing to check."""
import argparse
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHS = ["resnet", "gpt2", "bert", "vit", "hub", "lora"]  # hub reads resnet's and bert's files


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archs", nargs="*", help=f"architectures (default: {' '.join(ARCHS)})")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "fixtures"))
    ap.add_argument("--check-saved", metavar="DIR",
                    help="strict-load the safetensors files graft's tests saved in DIR")
    args = ap.parse_args()
    sys.path.insert(0, HERE)
    import torch
    torch.manual_seed(0)
    for arch in args.archs or ARCHS:
        if arch not in ARCHS:
            ap.error(f"unknown architecture '{arch}' (expected one of: {', '.join(ARCHS)})")
        module = importlib.import_module(f"fixtures.{arch}")
        if args.check_saved:
            if not hasattr(module, "check_saved"):
                continue
            module.check_saved(args.check_saved)
            print(f"{arch}: graft's saved weights load with strict=True")
        else:
            os.makedirs(args.out, exist_ok=True)
            module.make(args.out)
            print(f"{arch}: fixtures written to {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
