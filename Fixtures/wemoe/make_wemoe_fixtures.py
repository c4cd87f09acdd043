#!/usr/bin/env python3
"""Generate the WEMoE fixtures: three tiny fine-tuned CLIP experts on synthetic tasks, WEMoE
models built by FusionBench's own `fusion_bench.models.we_moe.WeightEnsemblingMoE`, and reference
forward outputs, routing weights and router gradients computed with it in float64.

Usage (from the repository root; needs torch, transformers and fusion-bench, e.g. a venv outside
the repository: `python3 -m venv /work/pyenv-fb` with the torch/transformers site-packages on its
path and `pip install --no-deps fusion-bench` -- only `fusion_bench.models.we_moe` is imported):

    /work/pyenv-fb/bin/python Fixtures/wemoe/make_wemoe_fixtures.py

Deterministic: fixed seeds, one thread, no timestamps.

Tasks and experts
-----------------
- base: `Fixtures/clip/quick/base` (quick_gelu, hidden 32, MLP 64, 2 layers, 17 tokens, E = 16).
- `task{k}/data.safetensors` (k = 0, 1, 2): 16 images [16, 3, 32, 32] stored as F16, pixels =
  N(0, 1) noise + a task-specific pattern (so a router can tell the tasks apart), random labels
  over 4 classes; `task{k}/head.safetensors`: a random head (unit rows × 10).
- `experts/task{k}`: the base with only its MLPs fine-tuned on task k (the part WEMoE routes), by
  full-batch Adam (lr 3e-3, 100 steps, cross-entropy through the task's head) until it fits the
  task: F32 HF directories. Task arithmetic (λ 0.3) of the three then loses accuracy to
  interference (expected.json), which test-time adaptation of the routers should win back.

FusionBench WEMoE models (`fusionbench/depth{d}.safetensors`, d = 2 and 0)
--------------------------------------------------------------------------
Built as FusionBench's `CLIPWeightEnsemblingMoEAlgorithm.construct_moe_model` does: every tensor
merged by task arithmetic (λ = 0.3), then each layer's `mlp` replaced by
`WeightEnsemblingMoE(hidden_size, base_model=pre-trained mlp, expert_models=fine-tuned mlps,
init_lambda=0.3, batch_first=True, router_hidden_layers=d)` with torch's seeded initialisation.
The file is that model's `state_dict()` as is (F32), so its names are FusionBench's module paths
(`….mlp.gate.fc1.weight`, `….mlp.base_model.fc1.weight`, `….mlp.task_vectors.{t}.fc1.weight`),
with `merge_method` = `wemoe` metadata. `fusionbench/config.json` is the base's.

References (`fusionbench/expected_depth{d}.safetensors`, F32 from float64 computations)
---------------------------------------------------------------------------------------
On 6 images, the first 2 of each task's data (in task order):
- `embeddings` [6, 16]: image_embeds with per-sample routing (batch_reduce = False);
- `routing` [L, 6, T]: each layer's routing weights (gate outputs averaged over tokens);
- `entropy.loss`, `entropy.grad.<gate parameter>`: mean softmax entropy −Σ p log p of task 0's
  head on the batch and its gradients, per-sample routing;
- `reduced.entropy.loss`, `reduced.entropy.grad.<gate parameter>`: the same with
  batch_reduce = True (FusionBench's test-time adaptation).
- `expected.json`: accuracies on every task of the base, each expert, task arithmetic (λ 0.3).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionModelWithProjection

from fusion_bench.models.we_moe import WeightEnsemblingMoE

ROOT = Path(__file__).resolve().parent
BASE = ROOT.parent / "clip" / "quick" / "base"
TASKS, IMAGES, CLASSES, LAMBDA = 3, 16, 4, 0.3
LR, STEPS = 3e-3, 100  # the experts' fine-tuning


def load(directory: Path, dtype=torch.float64) -> CLIPVisionModelWithProjection:
    model = CLIPVisionModelWithProjection.from_pretrained(directory, attn_implementation="eager", dtype=torch.float32)
    return model.to(dtype).eval()


def logits_of(embeddings: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    return (embeddings / embeddings.norm(dim=-1, keepdim=True)) @ head.T


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()


def make_tasks(gen: torch.Generator):
    tasks = []
    for k in range(TASKS):
        pattern = 1.5 * torch.randn(1, 3, 32, 32, generator=gen, dtype=torch.float64)
        pixels = (torch.randn(IMAGES, 3, 32, 32, generator=gen, dtype=torch.float64) + pattern).to(torch.float16)
        labels = torch.randint(0, CLASSES, (IMAGES,), generator=gen, dtype=torch.int64)
        head = torch.randn(CLASSES, 16, generator=gen, dtype=torch.float64)
        head = (10 * head / head.norm(dim=1, keepdim=True)).float()
        folder = ROOT / f"task{k}"
        folder.mkdir(exist_ok=True)
        save_file({"pixel_values": pixels.contiguous(), "labels": labels}, folder / "data.safetensors", metadata={"format": "pt"})
        save_file({"weight": head.contiguous()}, folder / "head.safetensors", metadata={"format": "pt"})
        tasks.append((pixels.double(), labels, head.double()))
    return tasks


def fine_tune(task, k: int) -> Path:
    pixels, labels, head = task
    model = load(BASE, torch.float32).train()
    # Only the MLPs learn the task (the part WEMoE can route); everything else stays pre-trained.
    trainable = [p for n, p in model.named_parameters() if ".mlp." in n]
    for n, p in model.named_parameters():
        p.requires_grad_(".mlp." in n)
    optimizer = torch.optim.Adam(trainable, lr=LR)
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_of(model(pixel_values=pixels.float()).image_embeds, head.float()), labels)
        loss.backward()
        optimizer.step()
    folder = ROOT / "experts" / f"task{k}"
    if folder.exists():
        shutil.rmtree(folder)
    model.eval().requires_grad_(True).save_pretrained(folder, safe_serialization=True)
    return folder


def accuracy(model, task) -> float:
    pixels, labels, head = task
    with torch.no_grad():
        return float((logits_of(model(pixel_values=pixels).image_embeds, head).argmax(-1) == labels).double().mean())


def task_arithmetic(base, experts):
    merged = copy.deepcopy(base)
    with torch.no_grad():
        b = dict(base.named_parameters())
        for name, p in merged.named_parameters():
            p.add_(LAMBDA * sum(dict(e.named_parameters())[name] - b[name] for e in experts))
    return merged


def upscale(base, experts, depth: int, seed: int):
    """FusionBench's construct_moe_model on HF CLIP models (float32, then float64)."""
    torch.manual_seed(seed)
    base32 = base.float()
    experts32 = [e.float() for e in experts]
    moe = task_arithmetic(base32, experts32).requires_grad_(False)
    for i in range(len(base32.vision_model.encoder.layers)):
        moe.vision_model.encoder.layers[i].mlp = WeightEnsemblingMoE(
            hidden_size=base32.config.hidden_size,
            base_model=copy.deepcopy(base32.vision_model.encoder.layers[i].mlp),
            expert_models=[copy.deepcopy(e.vision_model.encoder.layers[i].mlp) for e in experts32],
            init_lambda=LAMBDA, batch_first=True, router_hidden_layers=depth, batch_reduce=False)
    return moe


def references(moe, pixels, head, depth: int) -> dict[str, torch.Tensor]:
    moe = moe.double()
    layers = moe.vision_model.encoder.layers
    captured = []
    hooks = [layer.mlp.gate.register_forward_hook(lambda m, i, o: captured.append(o)) for layer in layers]
    out = {}
    with torch.no_grad():
        out["embeddings"] = moe(pixel_values=pixels).image_embeds
    routing = []
    for o in captured:
        routing.append(o.expand(pixels.shape[0], -1) if o.dim() == 1 else o.mean(dim=1))
    out["routing"] = torch.stack(routing)
    for h in hooks:
        h.remove()
    gates = {n: p for n, p in moe.named_parameters() if ".gate." in n}
    for p in gates.values():
        p.requires_grad_(True)
    for reduce, prefix in ((False, "entropy"), (True, "reduced.entropy")):
        for layer in layers:
            layer.mlp.batch_reduce = reduce
        moe.zero_grad(set_to_none=True)
        loss = mean_entropy(logits_of(moe(pixel_values=pixels).image_embeds, head))
        loss.backward()
        out[f"{prefix}.loss"] = loss.detach().reshape(1)
        for n, p in gates.items():
            out[f"{prefix}.grad.{n}"] = p.grad.detach().clone()
    for layer in layers:
        layer.mlp.batch_reduce = False
    return out


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20250901)
    tasks = make_tasks(gen)
    expert_dirs = [fine_tune(task, k) for k, task in enumerate(tasks)]
    base = load(BASE)
    experts = [load(d) for d in expert_dirs]
    summary = {"base": [accuracy(base, t) for t in tasks],
               "experts": [[accuracy(e, t) for t in tasks] for e in experts],
               "task_arithmetic": [accuracy(task_arithmetic(base, experts), t) for t in tasks]}

    folder = ROOT / "fusionbench"
    folder.mkdir(exist_ok=True)
    shutil.copy(BASE / "config.json", folder / "config.json")
    pixels = torch.cat([t[0][:2] for t in tasks])  # 2 images of each task
    for depth, seed in ((2, 1), (0, 3)):
        moe = upscale(load(BASE), [load(d) for d in expert_dirs], depth, seed)
        state = {k: v.detach().float().contiguous() for k, v in moe.state_dict().items()}
        save_file(state, folder / f"depth{depth}.safetensors",
                  metadata={"format": "pt", "merge_method": "wemoe", "wemoe.num_experts": str(TASKS),
                            "wemoe.router_depth": str(depth), "wemoe.init_lambda": str(LAMBDA)})
        # Recompute from the stored (float32) values in float64.
        moe.load_state_dict({k: v.double() for k, v in load_file(folder / f"depth{depth}.safetensors").items()})
        ref = references(moe, pixels, tasks[0][2], depth)
        save_file({k: v.detach().float().contiguous() for k, v in ref.items()}, folder / f"expected_depth{depth}.safetensors",
                  metadata={"format": "pt"})

    (ROOT / "expected.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    for p in ROOT.rglob("*"):
        if p.is_file():
            p.chmod(0o644)
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(f"total fixture size: {total} bytes")


if __name__ == "__main__":
    main()
