#!/usr/bin/env python3
"""Reference runs of `merge-cli finetune` (ordinary and linearized) on the tiny quick CLIP model.

Usage (from the repository root, after make_clip_fixtures.py; needs torch and transformers):

    /work/pyenv-mk/bin/python Fixtures/clip/make_finetune_fixtures.py

Writes `quick/finetune.safetensors` (F32) and `quick/finetune.json`, deterministically.

The recipe is the reference code's (gortizji/tangent_task_arithmetic, src/finetune.py): the
head is frozen, loss = cross-entropy of logits = head · e/‖e‖, torch.optim.AdamW(lr, weight_decay),
torch.nn.utils.clip_grad_norm_(params, c) before every step, and the wise-ft `cosine_lr` schedule

    lr_t = lr·(t + 1)/warmup                                 t < warmup
         = lr·½(1 + cos(π (t − warmup)/(steps − warmup)))    otherwise

set before step t. Each step uses the whole quick dataset (8 images) as its batch, so the order in
which `finetune` draws images does not matter. Linearized mode trains θ in
f_lin(x; θ) = f(x; θ₀) + J f(x; θ₀)·(θ − θ₀) (torch.func.jvp, differentiated by autograd as the
reference LinearizedModel is), starting from θ = θ₀. Everything runs in float64 from the stored
float32 weights.

Outputs: `<mode>.delta.<name>` = θ_final − θ₀ for every parameter, `<mode>.loss` [steps] (the loss
of each step before its update) and `<mode>.grad_norm` [steps] (‖g‖₂ before clipping).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from make_clip_fixtures import ROOT, load_f64, logits_of

SETTINGS = {"steps": 4, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.1, "warmup_steps": 2, "clip_norm": 0.5,
            "betas": [0.9, 0.999], "eps": 1e-8}


def cosine_lr(step: int, s: dict) -> float:
    if step < s["warmup_steps"]:
        return s["lr"] * (step + 1) / s["warmup_steps"]
    e, es = step - s["warmup_steps"], s["steps"] - s["warmup_steps"]
    return 0.5 * (1 + math.cos(math.pi * e / es)) * s["lr"]


def run(mode: str, s: dict) -> dict[str, torch.Tensor]:
    model = load_f64(ROOT / "quick/base")
    data = load_file(ROOT / "quick/data.safetensors")
    pixels, labels = data["pixel_values"].double(), data["labels"]
    head = load_file(ROOT / "quick/head.safetensors")["weight"].double()
    theta0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    params = {k: torch.nn.Parameter(v.clone()) for k, v in theta0.items()}

    def embeddings():
        if mode == "standard":
            return torch.func.functional_call(model, params, (pixels,)).image_embeds

        def f(p):
            return torch.func.functional_call(model, p, (pixels,)).image_embeds

        tangents = {k: params[k] - theta0[k] for k in theta0}
        primal, tangent = torch.func.jvp(f, (theta0,), (tangents,))
        return primal + tangent

    plist = list(params.values())
    optimizer = torch.optim.AdamW(plist, lr=s["lr"], weight_decay=s["weight_decay"], betas=tuple(s["betas"]), eps=s["eps"])
    losses, norms = [], []
    for step in range(s["steps"]):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, s)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_of(embeddings(), head), labels)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(plist, s["clip_norm"])))
        losses.append(float(loss))
        optimizer.step()
    out = {f"{mode}.delta.{k}": (params[k].detach() - theta0[k]).float().contiguous() for k in theta0}
    out[f"{mode}.loss"] = torch.tensor(losses, dtype=torch.float32)
    out[f"{mode}.grad_norm"] = torch.tensor(norms, dtype=torch.float32)
    print(mode, "losses", losses, "grad norms", norms)
    return out


def main() -> None:
    torch.set_num_threads(1)
    tensors = {}
    for mode in ["standard", "linear"]:
        tensors.update(run(mode, SETTINGS))
    save_file(tensors, ROOT / "quick/finetune.safetensors", metadata={"format": "pt"})
    (ROOT / "quick/finetune.json").write_text(json.dumps(SETTINGS, indent=2) + "\n")


if __name__ == "__main__":
    main()
