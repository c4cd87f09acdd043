#!/usr/bin/env python3
"""Generate the fixtures of the merges that learn from data (`merge-cli regmean`, `merge-cli fisher`):
a tiny CLIP image encoder, three "fine-tuned" versions of it, three small tasks, and the merged
models computed by FusionBench's own implementations (RegMean, RegMean++, Fisher merging).

Usage (from the repository root; needs torch, transformers 4.x and fusion-bench, e.g. a venv
outside the repository: `python3 -m venv /work/venvs/fusionbench-regmean`, a .pth file pointing at
a site-packages with torch, then `pip install fusion-bench "transformers<5" "datasets<5" omegaconf
hydra-core lightning bidict joblib`):

    /work/venvs/fusionbench-regmean/bin/python Fixtures/datamerge/make_datamerge_fixtures.py

transformers 4.x is needed because FusionBench's RegMean++ indexes `CLIPEncoderLayer(...)[0]`,
which is the layer's output only while the layer returns a tuple (transformers 5 returns the
tensor itself, and `[0]` would take the first image); and fusion-bench 0.2.33's CLIP RegMean++ class
needs its config mapping repaired before it can be constructed (`fusionbench_harness.py`). Deterministic: fixed
seeds, one thread.

Models (`CLIPVisionModelWithProjection` directories: config.json + model.safetensors, F32)
------------------------------------------------------------------------------------------
- `base`: quick_gelu, hidden 16, MLP 32, 2 layers, 2 heads, image 16, patch 4 (16 patches + CLS
  = 17 tokens), projection 8; random weights of a scale that exercises every term, drawn as the
  CLIP engine fixtures draw them (`Fixtures/clip/make_clip_fixtures.py`'s `randomise`: LayerNorm
  scales 1 + N(0, 0.2), biases N(0, 0.1), linear weights N(0, gain²/fan_in), gain 1.5 for q, k).
- `experts/task{k}` (k = 0, 1, 2): the base with every tensor perturbed by 30 % of its RMS, so
  that every linear layer, LayerNorm, embedding and the projection differ between the experts.

Tasks
-----
- `task{k}/data.safetensors`: `pixel_values` [10, 3, 16, 16] stored as F16 (N(0, 1) noise plus a
  task pattern) and `labels` [10] I64 over 4 classes.
- `task{k}/head.safetensors`: `weight` [4, 8], unit rows × 10 (a zero-shot head with its logit
  scale folded in).

References (`golden/*.safetensors`, F32 from float64 runs; the models upcast exactly)
-------------------------------------------------------------------------------------
FusionBench's algorithms run unmodified on float64 copies of the models through
`fusionbench_harness.py`, which supplies what its CLIP mixin would build from a CLIP checkpoint: the
"vision model" whose output [1] is the image embedding is the encoder with its `visual_projection`
(so the projection is a merged nn.Linear, as in our checkpoints), the zero-shot head is the task's
head, the logit scale is 1 (the heads carry it), and the image processor passes the stored pixels
through. Every method uses all 10 images of each task (num_*_examples 256) in batches of 4.

- `regmean.safetensors`: `RegMeanAlgorithmForCLIP`, reduce_non_diagonal_ratio 0.95 (its CLIP
  config): every nn.Linear (q, k, v, out_proj, fc1, fc2, visual_projection) merged as
  (Σₜ Gₜ′)⁻¹ Σₜ Gₜ′ Wₜᵀ, everything else averaged.
- `regmean_plusplus.safetensors`: `RegMeanAlgorithmForCLIPPlusPlus`, same settings. FusionBench
  merges the embeddings and the encoder layers only and leaves `post_layernorm` (and, in its
  setting, the projection, which is not part of its model) at the pre-trained values; merge-cli
  averages `post_layernorm` and merges `visual_projection` by RegMean on the merged model's
  inputs like every other linear layer. Those two tensors are computed here with FusionBench's
  own `regmean_params_merge` on Gram matrices of post_layernorm_t(class tokens of the merged
  stream), the rule the other layers follow.
- `fisher_fusionbench.safetensors`: `FisherMergingForCLIPVisionModel` (normalize_fisher_weight,
  minimal_fisher_weight 1e-6): per batch, the squared gradient of Σ_b Σ_k √p_bk · log p_bk.
- `fisher_fusionbench_unnormalized.safetensors`: the same with normalize_fisher_weight false.
- `fisher_labels.safetensors`: Fisher merging with per-sample squared gradients of log p(y|x),
  F = mean_x (∇ log p(y_x|x))² (Matena & Raffel's estimator with the label given: here each
  image's label from the data file), merged with FusionBench's `merging_with_fisher_weights`
  (same normalisation and ε). merge-cli samples y from the model's prediction by default; the
  tests check the per-sample machinery against this file with the data's labels.
- `expected.json`: how far FusionBench's own float32 runs are from these float64 references (the
  scale of the tolerances), and the sizes.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from fusion_bench.method.fisher_merging.clip_fisher_merging import FisherMergingForCLIPVisionModel
from fusion_bench.method.fisher_merging.fisher_merging import merging_with_fisher_weights
from fusion_bench.method.regmean.clip_regmean import RegMeanAlgorithmForCLIP
from fusion_bench.method.regmean_plusplus.clip_regmean_plusplus import RegMeanAlgorithmForCLIPPlusPlus
from fusion_bench.method.regmean_plusplus.regmean_plusplus import regmean_params_merge

ROOT = Path(__file__).resolve().parent
# The CLIP engine fixtures' random weights and perturbations, and their float64 eager attention
# (importing the module installs it).
sys.path.insert(0, str(ROOT.parent / "clip"))
from make_clip_fixtures import perturb, randomise  # noqa: E402

import fusionbench_harness  # noqa: E402
from fusionbench_harness import harness  # noqa: E402

TASKS, IMAGES, CLASSES = 3, 10, 4
ALPHA, BATCH, EXAMPLES = 0.95, 4, 256
CONFIG = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_channels=3,
              image_size=16, patch_size=4, projection_dim=8, hidden_act="quick_gelu", layer_norm_eps=1e-5,
              attention_dropout=0.0)


def save_model(model: nn.Module, directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    model.save_pretrained(directory, safe_serialization=True)


def load(directory: Path, dtype: torch.dtype) -> CLIPVisionModelWithProjection:
    model = CLIPVisionModelWithProjection.from_pretrained(directory, attn_implementation="eager", torch_dtype=torch.float32)
    return model.to(dtype).eval()


def pool(base_dir: Path, expert_dirs: list[Path], datasets, dtype: torch.dtype):
    return fusionbench_harness.pool(load(base_dir, dtype), [load(d, dtype) for d in expert_dirs], datasets)


def state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.double() for k, v in fusionbench_harness.state(encoder).items()}


def regmean(base_dir, expert_dirs, datasets, heads, dtype, plusplus: bool):
    cls = RegMeanAlgorithmForCLIPPlusPlus if plusplus else RegMeanAlgorithmForCLIP
    algorithm = harness(cls(num_regmean_examples=EXAMPLES, exclude_param_names_regex=[], reduce_non_diagonal_ratio=ALPHA,
                            weight_transpose=True, dataloader_kwargs={"batch_size": BATCH, "num_workers": 0}), heads, dtype)
    models = pool(base_dir, expert_dirs, datasets, dtype)
    merged = algorithm.run(models)
    return state(merged), models


def regmean_plusplus_head(merged: dict, models, datasets, dtype) -> dict[str, torch.Tensor]:
    """post_layernorm averaged and visual_projection merged by RegMean on post_layernorm_t of the
    merged model's class tokens (see the module docstring), with FusionBench's own merge step."""
    experts = [models.load_model(f"task{k}") for k in range(TASKS)]
    out = {}
    for name in ("vision_model.post_layernorm.weight", "vision_model.post_layernorm.bias"):
        out[name] = torch.stack([dict(e.state_dict())[name] for e in experts]).mean(dim=0)
    model = copy.deepcopy(experts[0])
    model.load_state_dict({k: v.to(dtype) for k, v in merged.items()}, strict=False)
    grams = []
    with torch.no_grad():
        for k, expert in enumerate(experts):
            pixels = torch.stack([image for image, _ in datasets[k]]).to(dtype)
            hidden = model.vision_model(pixel_values=pixels).last_hidden_state[:, 0, :]
            pooled = expert.vision_model.post_layernorm(hidden)
            grams.append(pooled.T @ pooled / pooled.shape[0])
        weights = [dict(e.state_dict())["visual_projection.weight"] for e in experts]
        out["visual_projection.weight"] = regmean_params_merge(weights, grams, reduce_non_diagonal_ratio=ALPHA)
    return out


def fisher_fusionbench(base_dir, expert_dirs, datasets, heads, dtype, normalize: bool = True):
    algorithm = harness(FisherMergingForCLIPVisionModel(exclude_param_names_regex=[], normalize_fisher_weight=normalize,
                                                        minimal_fisher_weight=1e-6, num_fisher_examples=EXAMPLES,
                                                        dataloader_kwargs={"batch_size": BATCH, "num_workers": 0}), heads, dtype)
    return state(algorithm.run(pool(base_dir, expert_dirs, datasets, dtype)))


def fisher_labels(base_dir, expert_dirs, datasets, heads, dtype):
    """Per-sample squared gradients of log p(label | x), averaged over the images."""
    params, fishers = {}, []
    for k, d in enumerate(expert_dirs):
        encoder = fusionbench_harness.Encoder(load(d, dtype))
        head = heads[f"task{k}"].to(dtype)
        fisher = {n: torch.zeros_like(p) for n, p in encoder.named_parameters()}
        for image, label in datasets[k]:
            encoder.zero_grad(set_to_none=True)
            embedding = encoder(image.to(dtype)[None])[1]
            logits = (embedding / embedding.norm(dim=-1, keepdim=True)) @ head.T
            torch.log_softmax(logits, dim=-1)[0, label].backward()
            for n, p in encoder.named_parameters():
                fisher[n] += p.grad.detach() ** 2
        fishers.append({n: f / len(datasets[k]) for n, f in fisher.items()})
        for n, p in encoder.named_parameters():
            params.setdefault(n, []).append(p.detach())
    merged = merging_with_fisher_weights(params, fishers, torch.ones(TASKS) / TASKS, normalize_fisher_weight=True,
                                         minimal_fisher_weight=1e-6)
    return {n: v.detach().double() for n, v in merged.items()}


def relative(a: dict, b: dict) -> float:
    return max(float((a[n].double() - b[n].double()).abs().max() / b[n].double().abs().max()) for n in b)


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(20250920)
    torch.manual_seed(20250920)
    base = CLIPVisionModelWithProjection(CLIPVisionConfig(**CONFIG)).double()
    randomise(base, gen)
    save_model(base.float(), ROOT / "base")
    expert_dirs = []
    for k in range(TASKS):
        expert = copy.deepcopy(base)
        perturb(expert, gen, 0.3)
        expert_dirs.append(ROOT / "experts" / f"task{k}")
        save_model(expert.float(), expert_dirs[-1])

    datasets, heads = [], {}
    for k in range(TASKS):
        pattern = 1.5 * torch.randn(1, 3, 16, 16, generator=gen, dtype=torch.float64)
        pixels = (torch.randn(IMAGES, 3, 16, 16, generator=gen, dtype=torch.float64) + pattern).to(torch.float16)
        labels = torch.randint(0, CLASSES, (IMAGES,), generator=gen, dtype=torch.int64)
        head = torch.randn(CLASSES, CONFIG["projection_dim"], generator=gen, dtype=torch.float64)
        head = (10 * head / head.norm(dim=1, keepdim=True)).float()
        folder = ROOT / f"task{k}"
        folder.mkdir(exist_ok=True)
        save_file({"pixel_values": pixels.contiguous(), "labels": labels}, folder / "data.safetensors", metadata={"format": "pt"})
        save_file({"weight": head.contiguous()}, folder / "head.safetensors", metadata={"format": "pt"})
        datasets.append([(pixels[i].double(), int(labels[i])) for i in range(IMAGES)])
        heads[f"task{k}"] = head.double()

    golden = ROOT / "golden"
    golden.mkdir(exist_ok=True)
    results, errors = {}, {}
    for dtype in (torch.float64, torch.float32):
        data = [[(image.to(dtype), label) for image, label in ds] for ds in datasets]
        out = {}
        out["regmean"], _ = regmean(ROOT / "base", expert_dirs, data, heads, dtype, plusplus=False)
        plusplus, models = regmean(ROOT / "base", expert_dirs, data, heads, dtype, plusplus=True)
        plusplus.update(regmean_plusplus_head(plusplus, models, data, dtype))
        out["regmean_plusplus"] = plusplus
        out["fisher_fusionbench"] = fisher_fusionbench(ROOT / "base", expert_dirs, data, heads, dtype)
        out["fisher_fusionbench_unnormalized"] = fisher_fusionbench(ROOT / "base", expert_dirs, data, heads, dtype, normalize=False)
        out["fisher_labels"] = fisher_labels(ROOT / "base", expert_dirs, data, heads, dtype)
        if dtype == torch.float64:
            results = out
        else:
            errors = {name: relative(out[name], results[name]) for name in results}
    for name, tensors in results.items():
        save_file({k: v.float().contiguous() for k, v in tensors.items()}, golden / f"{name}.safetensors", metadata={"format": "pt"})

    for p in ROOT.rglob("*"):
        if p.is_file():
            p.chmod(0o644)
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file() and p.suffix != ".py")
    summary = {"fusionbench_float32_relative_error": errors, "images_per_task": IMAGES, "tasks": TASKS,
               "reduce_non_diagonal_ratio": ALPHA, "batch_size": BATCH}
    (ROOT / "expected.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(f"total fixture size: {total} bytes")


if __name__ == "__main__":
    main()
