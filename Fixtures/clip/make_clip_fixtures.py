#!/usr/bin/env python3
"""Generate the CLIP vision-engine fixtures: tiny random CLIP image encoders, task heads, datasets
and reference outputs computed with transformers + torch.

Usage (from the repository root; needs torch and transformers, e.g. /work/pyenv-mk):

    /work/pyenv-mk/bin/python Fixtures/clip/make_clip_fixtures.py

Deterministic: fixed torch generator seeds, no timestamps; re-running rewrites the same files.

Models (Hugging Face `CLIPVisionModelWithProjection` directories: config.json + model.safetensors)
------------------------------------------------------------------------------------------------
- `quick/base`      quick_gelu, hidden 32, MLP 64, 2 layers, 4 heads, image 32, patch 8
                    (16 patches + CLS = 17 tokens), projection 16, layer_norm_eps 1e-5, F32.
- `quick/finetuned` base + a random perturbation (5 % of each tensor's RMS), F32.
- `gelu/model`      exact-erf gelu, hidden 24, MLP 48, 2 layers, 3 heads, image 30, patch 6
                    (25 patches + CLS = 26 tokens), projection 12, layer_norm_eps 1e-6, stored
                    as BF16 (the references use the bf16 values upcast exactly).

Weights are random but deliberately *not* transformers' tiny default init: LayerNorm scales are
1 + N(0, 0.2), biases N(0, 0.1), projections N(0, gain²/fan_in) with gain 1.5 for q/k so that
attention is peaked and every term of the JVP and of the gradient is exercised.

Other inputs
------------
- `quick/tau.safetensors`        finetuned − base (F32, every parameter): the JVP direction.
- `gelu/direction.safetensors`   a random direction on a *subset* of the parameters (missing
                                 tensors mean a zero direction).
- `quick/head.safetensors`, `gelu/head.safetensors`: `weight` [classes × projection_dim] =
  normalised random class embeddings × 10 (as CLIP heads: text embeddings × exp(logit_scale)).
- `quick/data.safetensors`, `gelu/data.safetensors`: `pixel_values` [N, 3, H, W] F32 and
  `labels` [N] I64 (the dataset format `merge-cli eval` reads).

References (`*/expected.safetensors`, F32, computed in float64 from the stored weights)
---------------------------------------------------------------------------------------
- `embeddings` [N, E] (CLIPVisionModelWithProjection.image_embeds), `logits` [N, C]
  (head · image_embeds / ‖image_embeds‖).
- `jvp.embeddings`, `jvp.tangent` [N, E]: torch.func.jvp of θ ↦ image_embeds at the model's θ
  along the direction file.
- quick only: `finetuned.embeddings`, `linearized.logits` (head applied to
  f(x; θ₀) + J·(θ_ft − θ₀)).
- `ce.loss` [1], `ce.grad.pixel_values`, `ce.grad.<parameter name>`: mean cross-entropy of the
  logits against `labels` and its autograd gradients; `entropy.*` the same for the mean softmax
  entropy −Σ p log p (WEMoE's test-time adaptation loss).
- `expected.json`: accuracy and mean cross-entropy of `merge-cli eval` on the quick data (plain
  base, plain finetuned, linearized base → finetuned), plus the float32-vs-float64 errors of
  PyTorch itself for scale.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
import transformers.models.clip.modeling_clip as modeling_clip
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

ROOT = Path(__file__).resolve().parent


def eager_attention_in_input_dtype(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """transformers' eager attention, except that the softmax runs in the input dtype: the original
    upcasts it to float32 *and back*, which would round float64 references to float32 accuracy."""
    weights = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = torch.softmax(weights, dim=-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


modeling_clip.eager_attention_forward = eager_attention_in_input_dtype


def make_config(**kw) -> CLIPVisionConfig:
    return CLIPVisionConfig(num_channels=3, attention_dropout=0.0, **kw)


QUICK = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             image_size=32, patch_size=8, projection_dim=16, hidden_act="quick_gelu", layer_norm_eps=1e-5)
GELU = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=3,
            image_size=30, patch_size=6, projection_dim=12, hidden_act="gelu", layer_norm_eps=1e-6)


def randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Replaces every parameter with a random value of a scale that exercises every term."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = p.shape
            r = torch.randn(shape, generator=gen, dtype=torch.float64)
            if "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                value = 1 + 0.2 * r if name.endswith("weight") else 0.1 * r
            elif name.endswith("bias"):
                value = 0.1 * r
            elif "class_embedding" in name or "position_embedding" in name:
                value = 0.5 * r
            elif "patch_embedding" in name:
                value = r / math.sqrt(shape[1] * shape[2] * shape[3])
            else:  # linear weights [out, in]
                gain = 1.5 if ("q_proj" in name or "k_proj" in name) else 1.0
                value = gain * r / math.sqrt(shape[1])
            p.copy_(value.to(p.dtype))


def perturb(model: torch.nn.Module, gen: torch.Generator, fraction: float) -> None:
    with torch.no_grad():
        for _, p in model.named_parameters():
            rms = p.double().pow(2).mean().sqrt()
            p.add_((fraction * rms * torch.randn(p.shape, generator=gen, dtype=torch.float64)).to(p.dtype))


def head_matrix(classes: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    w = torch.randn(classes, dim, generator=gen, dtype=torch.float64)
    w = w / w.norm(dim=1, keepdim=True)
    return (10.0 * w).float()


def save_model(model: CLIPVisionModelWithProjection, directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    model.save_pretrained(directory, safe_serialization=True)


def load_f64(directory: Path) -> CLIPVisionModelWithProjection:
    """The stored model, upcast exactly to float64, with eager attention."""
    model = CLIPVisionModelWithProjection.from_pretrained(directory, attn_implementation="eager",
                                                          dtype=torch.float32)
    return model.double().eval()


def logits_of(embeddings: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    return (embeddings / embeddings.norm(dim=-1, keepdim=True)) @ head.T


def mean_entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()


def jvp(model, pixels, direction: dict[str, torch.Tensor]):
    params = {k: v.detach() for k, v in model.named_parameters()}
    tangents = {k: direction.get(k, torch.zeros_like(v)).to(v.dtype) for k, v in params.items()}

    def f(p):
        return torch.func.functional_call(model, p, (pixels,)).image_embeds

    return torch.func.jvp(f, (params,), (tangents,))


def gradients(model, pixels, labels, head, loss_name):
    model.zero_grad(set_to_none=True)
    x = pixels.clone().requires_grad_(True)
    logits = logits_of(model(pixel_values=x).image_embeds, head)
    if loss_name == "ce":
        loss = torch.nn.functional.cross_entropy(logits, labels)
    else:
        loss = mean_entropy(logits)
    loss.backward()
    out = {f"{loss_name}.loss": loss.detach().reshape(1), f"{loss_name}.grad.pixel_values": x.grad}
    for name, p in model.named_parameters():
        out[f"{loss_name}.grad.{name}"] = p.grad
    return out


def evaluation(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """What `merge-cli eval` reports: top-1 accuracy and mean cross-entropy."""
    return {"images": len(labels), "correct": int((logits.argmax(-1) == labels).sum()),
            "accuracy": float((logits.argmax(-1) == labels).double().mean()),
            "loss": float(torch.nn.functional.cross_entropy(logits, labels))}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


def f32_errors(directory, pixels, head, direction, references) -> dict[str, float]:
    """How far PyTorch's own float32 results are from the float64 references (for scale)."""
    model = CLIPVisionModelWithProjection.from_pretrained(directory, attn_implementation="eager",
                                                          dtype=torch.float32).eval()
    x = pixels.float()
    emb = model(pixel_values=x).image_embeds
    _, tangent = jvp(model, x, {k: v.float() for k, v in direction.items()})
    return {"embeddings": rel(emb.detach(), references["embeddings"]),
            "jvp.tangent": rel(tangent.detach(), references["jvp.tangent"])}


def build(name: str, cfg: dict, seed: int, n: int, classes: int, storage: torch.dtype) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    folder = ROOT / name
    folder.mkdir(exist_ok=True)
    model = CLIPVisionModelWithProjection(make_config(**cfg)).double()
    randomise(model, gen)
    stored = model.to(storage)
    model_dir = folder / ("base" if name == "quick" else "model")
    save_model(stored, model_dir)

    head = head_matrix(classes, cfg["projection_dim"], gen)
    save_file({"weight": head.contiguous()}, folder / "head.safetensors", metadata={"format": "pt"})
    size = cfg["image_size"]
    pixels = torch.randn(n, 3, size, size, generator=gen, dtype=torch.float64).float()
    labels = torch.randint(0, classes, (n,), generator=gen, dtype=torch.int64)
    save_file({"pixel_values": pixels.contiguous(), "labels": labels}, folder / "data.safetensors",
              metadata={"format": "pt"})
    return gen, folder, model_dir, head.double(), pixels.double(), labels


def main() -> None:
    torch.set_num_threads(1)
    summary = {}

    # ---------------------------------------------------------------- quick_gelu, F32, with a fine-tune
    gen, folder, base_dir, head, pixels, labels = build("quick", QUICK, 20250601, 8, 5, torch.float32)
    base = load_f64(base_dir)
    ft = CLIPVisionModelWithProjection.from_pretrained(base_dir, dtype=torch.float32)
    perturb(ft, gen, 0.05)
    save_model(ft, folder / "finetuned")
    ft = load_f64(folder / "finetuned")
    base32 = dict(CLIPVisionModelWithProjection.from_pretrained(base_dir, dtype=torch.float32).named_parameters())
    ft32 = dict(CLIPVisionModelWithProjection.from_pretrained(folder / "finetuned", dtype=torch.float32).named_parameters())
    tau = {k: (ft32[k].detach() - base32[k].detach()).contiguous() for k in base32}  # exactly as F32
    save_file(tau, folder / "tau.safetensors", metadata={"format": "pt"})

    ref = {}
    with torch.no_grad():
        emb = base(pixel_values=pixels).image_embeds
        ref["embeddings"] = emb
        ref["logits"] = logits_of(emb, head)
        ref["finetuned.embeddings"] = ft(pixel_values=pixels).image_embeds
    primal, tangent = jvp(base, pixels, {k: v.double() for k, v in tau.items()})
    ref["jvp.embeddings"], ref["jvp.tangent"] = primal.detach(), tangent.detach()
    lin = (primal + tangent).detach()
    ref["linearized.logits"] = logits_of(lin, head)
    ref.update(gradients(base, pixels, labels, head, "ce"))
    ref.update(gradients(base, pixels, labels, head, "entropy"))
    save_file({k: v.detach().float().contiguous() for k, v in ref.items()}, folder / "expected.safetensors",
              metadata={"format": "pt"})

    summary["quick"] = {
        "eval.base": evaluation(ref["logits"], labels),
        "eval.finetuned": evaluation(logits_of(ref["finetuned.embeddings"], head), labels),
        "eval.linearized": evaluation(ref["linearized.logits"], labels),
        "torch_float32_relative_error": f32_errors(base_dir, pixels, head, tau, ref),
    }

    # ---------------------------------------------------------------- gelu, BF16, partial direction
    gen, folder, model_dir, head, pixels, labels = build("gelu", GELU, 20250602, 6, 4, torch.bfloat16)
    model = load_f64(model_dir)
    names = [k for k, _ in model.named_parameters()]
    chosen = [k for k in names if ".layers.1." in k or "embeddings" in k or "visual_projection" in k]
    direction = {k: (0.1 * torch.randn(dict(model.named_parameters())[k].shape, generator=gen,
                                       dtype=torch.float64)).float().contiguous() for k in chosen}
    save_file(direction, folder / "direction.safetensors", metadata={"format": "pt"})
    ref = {}
    with torch.no_grad():
        emb = model(pixel_values=pixels).image_embeds
        ref["embeddings"] = emb
        ref["logits"] = logits_of(emb, head)
    primal, tangent = jvp(model, pixels, {k: v.double() for k, v in direction.items()})
    ref["jvp.embeddings"], ref["jvp.tangent"] = primal.detach(), tangent.detach()
    ref.update(gradients(model, pixels, labels, head, "ce"))
    ref.update(gradients(model, pixels, labels, head, "entropy"))
    save_file({k: v.detach().float().contiguous() for k, v in ref.items()}, folder / "expected.safetensors",
              metadata={"format": "pt"})
    summary["gelu"] = {
        "eval.model": evaluation(ref["logits"], labels),
        "direction_tensors": len(chosen),
        "torch_float32_relative_error": f32_errors(model_dir, pixels, head, direction, ref),
    }

    (ROOT / "expected.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    for p in ROOT.rglob("*"):
        if p.is_file():
            p.chmod(0o644)
    total = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(f"total fixture size: {total} bytes")


if __name__ == "__main__":
    main()
