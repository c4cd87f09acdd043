#!/usr/bin/env python3
"""Generate the fixtures of the data-driven merges (AdaMerging, aTLAS): three tiny fine-tuned CLIP
image encoders, their linearized forms, and reference coefficient trajectories computed with
FusionBench's own AdaMerging modules (AdaMerging) and with aTLAS's formulation in PyTorch.

Usage (from the repository root; needs torch, transformers and fusion-bench, e.g. a venv outside
the repository with the torch/transformers site-packages on its path and
`pip install --no-deps fusion-bench omegaconf`):

    /work/venvs/fusionbench/bin/python Fixtures/datamerging/make_datamerging_fixtures.py

Deterministic: fixed seeds, one thread, float64 references, no timestamps.

Inputs
------
- base: `Fixtures/clip/quick/base` (quick_gelu, hidden 32, MLP 64, 2 layers, E = 16; 40 tensors
  with `visual_projection`).
- tasks: `Fixtures/wemoe/task{k}` (k = 0, 1, 2): 16 images [16, 3, 32, 32] (F16) with labels over
  4 classes, and the task's head `weight` [4, 16].
- `models/task{k}`: the base plus a random task vector on every tensor (N(0, 0.03²) per element,
  seed 100 + k), F32 HF directories with the base's config.json.
- `linearized/base.safetensors`, `linearized/task{k}.safetensors`: linearized checkpoints
  (`params0.*` = θ₀, `params.*` = θ₀ for the base and θₖ for task k; metadata mergekit.kind =
  linearized, mergekit.architecture = clip-vision, mergekit.config = config.json).

References (`expected/<case>.safetensors`, F64)
-----------------------------------------------
Every step uses all 16 images of every task (batch 16), so the batches do not depend on the
shuffle. Per case: `grad0` = ∂L/∂λ at the starting λ; `lambda` [steps, …] = λ after each step;
`loss` [steps] = the loss of each step (before its update).

- `adamerging_task_wise`, `adamerging_layer_wise`: FusionBench's `TaskWiseMergedModel` /
  `LayerWiseMergedModel` (clamp_weights = False, λ = 0.3 from `get_task_wise_weights` /
  `get_layer_wise_weights`), `entropy_loss`, `torch.optim.Adam(lr = 1e-3)`, and the loop of
  `TaskWiseAdaMergingAlgorithm.test_time_adaptation` / `LayerWiseAdaMergingAlgorithm`'s (per task:
  logits, `entropy_loss`, backward; then `optimizer.step()`, `zero_grad()`, `merge_weights()`),
  written out here because the algorithm classes need a GPU fabric or a model pool. 10 steps.
- `atlas_supervised`, `atlas_unsupervised`, `atlas_linearized`: aTLAS's `WeightedImageEncoder`
  / `WeightedLinearizedModel` blockwise formula θₗ = θ₀ₗ + Σₜ λₜₗ τₜₗ (λ = 0; the linearized
  model runs f(x; θ₀) + J·Δθ through `torch.func.jvp`), the loss summed over tasks
  (cross-entropy; unsupervised: −Σ softmax·log_softmax), `torch.optim.AdamW(lr, weight_decay =
  0.1)`, `clip_grad_norm_(λ, 1.0)` and the reference's `cosine_lr` without warm-up over the run's
  10 steps (lr 0.1 supervised, 1e-3 unsupervised), as `learn_few_shots.py` steps them.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save, save_file
from transformers import CLIPVisionModelWithProjection

from fusion_bench.method.adamerging.entropy_loss import entropy_loss
from fusion_bench.models.wrappers.layer_wise_fusion import LayerWiseMergedModel, get_layer_wise_weights
from fusion_bench.models.wrappers.task_wise_fusion import TaskWiseMergedModel, get_task_wise_weights

ROOT = Path(__file__).resolve().parent
FIXTURES = ROOT.parent
BASE = FIXTURES / "clip" / "quick" / "base"
TASKS = 3
STEPS = 10


def load_model(directory: Path) -> CLIPVisionModelWithProjection:
    model = CLIPVisionModelWithProjection.from_pretrained(directory, attn_implementation="eager", dtype=torch.float32)
    return model.double().eval()


def task_inputs(k: int):
    data = load_file(FIXTURES / "wemoe" / f"task{k}" / "data.safetensors")
    head = load_file(FIXTURES / "wemoe" / f"task{k}" / "head.safetensors")["weight"]
    return data["pixel_values"].double(), data["labels"].long(), head.double()


def logits_of(embeddings: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    return (embeddings / embeddings.norm(p=2, dim=-1, keepdim=True)) @ head.T


def save_ordered(tensors: dict, path: Path, metadata: dict):
    """`save_file` with the header's keys sorted: safetensors writes a metadata map of several
    keys in no fixed order, so the same values would give other bytes on every run."""
    data = save(tensors, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8:8 + n]), separators=(",", ":"), sort_keys=True).encode()
    assert len(header) <= n
    path.write_bytes(data[:8] + header + b" " * (n - len(header)) + data[8 + n:])


def make_models():
    base = load_file(BASE / "model.safetensors")
    config = (BASE / "config.json").read_text()
    for k in range(TASKS):
        gen = torch.Generator().manual_seed(100 + k)
        model = {name: (t.double() + 0.03 * torch.randn(t.shape, generator=gen, dtype=torch.float64)).float().contiguous()
                 for name, t in base.items()}
        out = ROOT / "models" / f"task{k}"
        out.mkdir(parents=True, exist_ok=True)
        save_file(model, out / "model.safetensors", metadata={"format": "pt"})
        shutil.copy(BASE / "config.json", out / "config.json")
    linear = ROOT / "linearized"
    linear.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", "mergekit.kind": "linearized", "mergekit.architecture": "clip-vision",
                "mergekit.config": json.dumps(json.loads(config), separators=(",", ":"))}

    def linearized(theta):
        out = {f"params0.{n}": t.contiguous() for n, t in base.items()}
        out.update({f"params.{n}": t.clone().contiguous() for n, t in theta.items()})
        return out

    save_ordered(linearized(base), linear / "base.safetensors", metadata)
    for k in range(TASKS):
        theta = load_file(ROOT / "models" / f"task{k}" / "model.safetensors")
        save_ordered(linearized(theta), linear / f"task{k}.safetensors", metadata)


def adamerging(layer_wise: bool):
    pretrained = load_model(BASE)
    finetuned = [load_model(ROOT / "models" / f"task{k}") for k in range(TASKS)]
    if layer_wise:
        layers = len(tuple(p for p in pretrained.parameters() if p.requires_grad))
        weights = get_layer_wise_weights(TASKS, layers, init_values=0.3, dtype=torch.float64)
        module = LayerWiseMergedModel(weights, pretrained, finetuned, clamp_weights=False, tie_weights=True, strict=False)
    else:
        weights = get_task_wise_weights(TASKS, init_values=0.3).double()
        module = TaskWiseMergedModel(weights, pretrained, finetuned, clamp_weights=False, tie_weights=True, strict=False)
    inputs = [task_inputs(k) for k in range(TASKS)]
    optimizer = torch.optim.Adam([module.merge_weight], lr=1e-3)
    module.train()
    module.merge_weights()
    grads, lambdas, losses = [], [], []
    for _ in range(STEPS):
        total = 0.0
        for pixels, _, head in inputs:
            logits = logits_of(module(pixel_values=pixels).image_embeds, head)
            loss = entropy_loss(logits)
            loss.backward(retain_graph=True)
            total += loss.item()
        grads.append(module.merge_weight.grad.detach().clone())
        optimizer.step()
        optimizer.zero_grad()
        module.merge_weights()
        lambdas.append(module.merge_weight.detach().clone())
        losses.append(total)
    return {"grad0": grads[0], "lambda": torch.stack(lambdas), "loss": torch.tensor(losses, dtype=torch.float64)}


def atlas(loss_kind: str, linearized: bool):
    pretrained = load_model(BASE)
    names = [n for n, _ in pretrained.named_parameters()]
    theta0 = {n: p.detach().clone() for n, p in pretrained.named_parameters()}
    vectors = []
    for k in range(TASKS):
        ft = dict(load_model(ROOT / "models" / f"task{k}").named_parameters())
        vectors.append([ft[n].detach() - theta0[n] for n in names])
    coef = torch.nn.Parameter(torch.zeros(TASKS, len(names), dtype=torch.float64))
    inputs = [task_inputs(k) for k in range(TASKS)]
    lr = 0.1 if loss_kind == "cross_entropy" else 1e-3
    optimizer = torch.optim.AdamW([coef], lr=lr, weight_decay=0.1)

    def embed(pixels):
        # WeightedImageEncoder (blockwise): dparams = Σₜ τₜₗ·coef[t, l]; θ = dparams + θ₀.
        dparams = [sum(vectors[t][i] * coef[t, i] for t in range(TASKS)) for i in range(len(names))]
        if not linearized:
            params = {n: dp + theta0[n] for n, dp in zip(names, dparams)}
            return torch.func.functional_call(pretrained, params, (pixels,)).image_embeds
        # WeightedLinearizedModel: out + dp from jvp at θ₀ along dparams.
        def f(*params):
            return torch.func.functional_call(pretrained, dict(zip(names, params)), (pixels,)).image_embeds
        out, dp = torch.func.jvp(f, tuple(theta0[n] for n in names), tuple(dparams))
        return out + dp

    grads, lambdas, losses = [], [], []
    for step in range(STEPS):
        # cosine_lr(optimizer, lr, 0, STEPS), called before the step as in learn_few_shots.py.
        for group in optimizer.param_groups:
            group["lr"] = 0.5 * (1 + math.cos(math.pi * step / STEPS)) * lr
        loss = 0.0
        for pixels, labels, head in inputs:
            logits = logits_of(embed(pixels), head)
            if loss_kind == "cross_entropy":
                loss = loss + torch.nn.functional.cross_entropy(logits, labels)
            else:
                loss = loss + (-(logits.softmax(1) * logits.log_softmax(1)).sum(1)).mean()
        loss.backward()
        grads.append(coef.grad.detach().clone())
        torch.nn.utils.clip_grad_norm_([coef], 1.0)
        optimizer.step()
        optimizer.zero_grad()
        lambdas.append(coef.detach().clone())
        losses.append(loss.item())
    return {"grad0": grads[0], "lambda": torch.stack(lambdas), "loss": torch.tensor(losses, dtype=torch.float64)}


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    make_models()
    expected = ROOT / "expected"
    expected.mkdir(parents=True, exist_ok=True)
    cases = {
        "adamerging_task_wise": lambda: adamerging(layer_wise=False),
        "adamerging_layer_wise": lambda: adamerging(layer_wise=True),
        "atlas_supervised": lambda: atlas("cross_entropy", linearized=False),
        "atlas_unsupervised": lambda: atlas("entropy", linearized=False),
        "atlas_linearized": lambda: atlas("cross_entropy", linearized=True),
    }
    for name, run in cases.items():
        result = {k: v.contiguous() for k, v in run().items()}
        save_file(result, expected / f"{name}.safetensors", metadata={"steps": str(STEPS)})
        print(name, "loss", [round(x, 6) for x in result["loss"].tolist()[:3]], "…")


if __name__ == "__main__":
    main()
