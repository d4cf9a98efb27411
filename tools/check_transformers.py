#!/usr/bin/env python3
"""Cross-check graft's PyTorch fixtures against Hugging Face transformers itself.

    python3 tools/check_transformers.py [--fixtures tests/fixtures]

tools/fixtures/{gpt2,bert}.py rebuild GPT-2 and BERT in plain PyTorch with the Hugging
Face module tree (transformers is not packaged for Debian). Where transformers is
installed, this script loads the committed fixture weights into the real
GPT2LMHeadModel / GPT2Model / BertForSequenceClassification / BertForMaskedLM with
load_state_dict(strict=True) and compares logits, loss and every gradient with the
fixtures. Run by a developer; CI never needs it."""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fixtures.common import load_safetensors, max_rel_err  # noqa: E402

TOL = 1e-4  # float32 results of two implementations (and thread counts) differ


def report(what, err):
    print(f"  {what}: max rel err {err:.2e}")
    if err > TOL:
        raise SystemExit(f"FAIL: {what} differs from transformers ({err:.2e} > {TOL})")


def check_grads(model, expect, prefix="grad."):
    worst, name_worst = 0.0, ""
    for name, p in model.named_parameters():
        key = prefix + name
        if key not in expect or p.grad is None:
            continue
        # key biases get an exactly-zero true gradient (softmax ignores a constant
        # shift): both sides are rounding noise, hence the 1e-3 floor on the scale
        ref = expect[key].double()
        err = (p.grad.double() - ref).abs().max().item() / max(ref.abs().max().item(), 1e-3)
        if err > worst:
            worst, name_worst = err, name
    report(f"gradients (worst: {name_worst})", worst)


def gpt2(fix):
    import transformers as tf
    w = load_safetensors(os.path.join(fix, "gpt2.weights.safetensors"))
    hub = load_safetensors(os.path.join(fix, "gpt2_hub.weights.safetensors"))
    e, meta = load_safetensors(os.path.join(fix, "gpt2.expect.safetensors"), with_metadata=True)
    vocab, n_embd = w["transformer.wte.weight"].shape
    n_layer = len({k.split(".")[2] for k in w if k.startswith("transformer.h.")})
    cfg = tf.GPT2Config(vocab_size=vocab, n_positions=w["transformer.wpe.weight"].shape[0],
                        n_embd=n_embd, n_layer=n_layer, n_head=int(meta["n_head"]),
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        activation_function="gelu_new", layer_norm_epsilon=1e-5)
    model = tf.GPT2LMHeadModel(cfg)
    model.load_state_dict(w, strict=True)
    model.train()
    logits = model(e["tokens"].long()).logits.reshape(-1, vocab)
    report("gpt2 logits", max_rel_err(logits, e["logits"]))
    loss = torch.nn.functional.cross_entropy(logits, e["labels"].long().reshape(-1),
                                             ignore_index=-1)
    report("gpt2 loss", max_rel_err(loss.reshape(1), e["loss"]))
    loss.backward()
    check_grads(model, e)
    bare = tf.GPT2Model(cfg)
    missing, unexpected = bare.load_state_dict(hub, strict=False)
    extra = [k for k in unexpected if not k.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or extra:
        raise SystemExit(f"FAIL: hub layout: missing {missing}, unexpected {extra}")
    print("  gpt2 hub layout: loads into GPT2Model (only the mask buffers left over)")


def bert(fix):
    import transformers as tf
    import fixtures.bert as fb
    for case in fb.transformers_cases(fix):
        model = case["build"](tf)
        model.load_state_dict(case["weights"], strict=True)
        model.train()
        out = case["forward"](model)
        report(f"bert {case['name']} logits", max_rel_err(out["logits"], case["expect"]["logits"]))
        report(f"bert {case['name']} loss", max_rel_err(out["loss"].reshape(1),
                                                         case["expect"]["loss"]))
        out["loss"].backward()
        check_grads(model, case["expect"], case.get("grad_prefix", "grad."))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixtures", default=os.path.join(HERE, "..", "tests", "fixtures"))
    args = ap.parse_args()
    import transformers
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    gpt2(args.fixtures)
    bert(args.fixtures)
    print("fixtures agree with transformers")


if __name__ == "__main__":
    main()
