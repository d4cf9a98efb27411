#!/usr/bin/python3
"""PyTorch's side of bench/vs_torch.sh: milliseconds per training step (forward, loss and
backward; gradients zeroed before each step, outside the timing) of the same models and
shapes as `graft bench model`, full fine-tuning and with only the head trainable.

    /usr/bin/python3 bench/vs_torch.py CASE [--threads N] [--steps S] [--rounds R]

CASE is resnet18, gpt2, bert or vit (the shapes are fixed, see CASES). Prints one line per
variant, "full MS" and "frozen MS": the best round's mean step time. The models are the
references the fixtures use (torchvision for ResNet and ViT, tools/fixtures/{gpt2,bert}.py), in
train() mode with dropout 0; frozen parameters have requires_grad False and, as graft's
default freeze.bn=eval does, a batchnorm whose parameters are all frozen runs in eval()."""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))

# graft bench model's arguments for each case are in bench/vs_torch.sh; keep them in step.
CASES = {
    "resnet18": dict(batch=32, image=(3, 64, 64), classes=10, trainable="fc."),
    "gpt2": dict(batch=8, n_layer=6, n_embd=384, n_head=6, n_positions=128, seq=128,
                 vocab=8192, trainable="transformer.ln_f."),
    "bert": dict(batch=16, n_layer=4, n_embd=256, n_head=4, n_positions=128, seq=128,
                 vocab=8192, classes=10, trainable="classifier."),
    "vit": dict(batch=16, image=(3, 64, 64), patch=8, n_layer=6, n_embd=384, n_head=6,
                classes=10, trainable="heads."),
}


def build(case, c, gen):
    """The model and a step function computing the loss of one fixed random batch."""
    if case == "resnet18":
        import torchvision
        model = torchvision.models.resnet18(num_classes=c["classes"])
        x = torch.randn((c["batch"],) + c["image"], generator=gen)
        y = torch.randint(0, c["classes"], (c["batch"],), generator=gen)
        return model, lambda: F.cross_entropy(model(x), y)
    if case == "vit":
        from torchvision.models.vision_transformer import VisionTransformer
        model = VisionTransformer(image_size=c["image"][1], patch_size=c["patch"],
                                  num_layers=c["n_layer"], num_heads=c["n_head"],
                                  hidden_dim=c["n_embd"], mlp_dim=4 * c["n_embd"],
                                  num_classes=c["classes"])
        x = torch.randn((c["batch"],) + c["image"], generator=gen)
        y = torch.randint(0, c["classes"], (c["batch"],), generator=gen)
        return model, lambda: F.cross_entropy(model(x), y)
    tokens = torch.randint(0, c["vocab"], (c["batch"], c["seq"]), generator=gen)
    if case == "gpt2":
        from fixtures import gpt2
        model = gpt2.GPT2LMHeadModel(c["n_layer"], c["n_head"], c["n_embd"], c["n_positions"],
                                     c["vocab"])
        labels = torch.randint(0, c["vocab"], (c["batch"], c["seq"]), generator=gen)
        return model, lambda: F.cross_entropy(model(tokens).view(-1, c["vocab"]),
                                              labels.view(-1))
    from fixtures import bert
    model = bert.BertForSequenceClassification(bert.Config(
        vocab=c["vocab"], n_layer=c["n_layer"], n_head=c["n_head"], n_embd=c["n_embd"],
        n_positions=c["n_positions"], classes=c["classes"]))
    types = torch.zeros_like(tokens)
    mask = torch.ones_like(tokens)
    labels = torch.randint(0, c["classes"], (c["batch"],), generator=gen)
    return model, lambda: model(tokens, types, mask, labels)[1]


def set_variant(model, trainable_prefix):
    """Everything trainable (prefix None) or only the parameters under the prefix."""
    model.train()
    for name, p in model.named_parameters():
        p.requires_grad_(trainable_prefix is None or name.startswith(trainable_prefix))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def mean_step_ms(model, step, steps):
    total = 0.0
    for _ in range(steps):
        model.zero_grad(set_to_none=False)
        t0 = time.perf_counter()
        step().backward()
        total += time.perf_counter() - t0
    return total / steps * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    c = CASES[args.case]
    model, step = build(args.case, c, torch.Generator().manual_seed(7))
    for m in model.modules():  # dropout 0 (the references default to it; torchvision has none)
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    variants = [("full", None), ("frozen", c["trainable"])]
    best = {}
    for name, prefix in variants:  # warm-up: allocations, oneDNN primitives
        set_variant(model, prefix)
        mean_step_ms(model, step, 1)
    for _ in range(args.rounds):
        for name, prefix in variants:
            set_variant(model, prefix)
            ms = mean_step_ms(model, step, args.steps)
            best[name] = min(best.get(name, ms), ms)
    for name, _ in variants:
        print("%s %.2f" % (name, best[name]))


if __name__ == "__main__":
    main()
