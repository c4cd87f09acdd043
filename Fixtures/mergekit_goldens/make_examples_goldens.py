#!/usr/bin/env python3
"""mergekit's own `examples/` recipes on tiny local stand-ins, with mergekit 0.1.5's outputs.

Usage (from the repository root, with the Python of a venv holding mergekit 0.1.5, which brings
torch, numpy, safetensors and PyYAML):

    /work/venvs/mergekit/bin/python Fixtures/mergekit_goldens/make_examples_goldens.py
    /work/venvs/mergekit/bin/python Fixtures/mergekit_goldens/make_examples_goldens.py --check

The first writes, under Fixtures/mergekit_goldens/examples/ (nothing else is touched):

  models/<hub id>/      a tiny stand-in for every model the examples name, at the path
                        `models/` + the hub id (`models/psmathur/orca_mini_v3_13b`, …):
                        Llama-2-13B-shaped models with 40 layers, Mistral-7B-shaped ones with 8,
                        and `models/model_a`, `models/model_b` with 4; hidden 8, 2 attention
                        heads of 4, MLP 16, vocabulary 32; config.json a valid Llama/Mistral
                        config.  The Llama-2 family is stored in float16 (as the published 13B
                        checkpoints), the Mistral family in bfloat16 (as Mistral's), model_a/b
                        in bfloat16 (arcee_fusion.yml's dtype).  Fine-tunes are the base plus
                        noise of 10 % of its spread (1 % for the layer norms, so that slerp
                        meets both its spherical and its colinear branch).
  <example>.yml         mergekit's example, text as published (EXAMPLES below: examples/*.yml
                        of arcee-ai/mergekit, unchanged from v0.1.0 to the 2026 snapshot), with every
                        model name replaced by its stand-in's path (relative to this folder, as
                        merge-cli resolves it beside the recipe) and a first comment line naming
                        the original file; every other key, value and comment is unchanged.
  <example>/model.safetensors   mergekit's output, tensors as written (float16; arcee_fusion's in
                                float32: its float32 mask promotes the result, and mergekit writes
                                the method's dtype when the recipe has no out_dtype)
  <example>/config.json         architectures, model_type and num_hidden_layers of mergekit's
                                output config (what the tests compare)
  reference/<example>.safetensors   the "float64" reference below, rounded once to the
                                recipe's dtype: the recipe's formula without intermediate rounding
                                (equal |τ| at a top-k cut taken in index order)

and the same for two variants of bio-merge.yml (VARIANTS; the published bio-merge is mergekit's
`ties`, with no random drop): `bio-merge.dare_ties` (merge_method dare_ties, density 0.5 as
published: random drops from torch's generator, so no reference, only statistics: the share of
elements left at θ₀, expected (1 − density)², and Σ|θ − θ₀| against the density-1 variant's) and
`bio-merge.dare_ties-density1` (density 1: nothing dropped, ties without a trim).

mergekit runs as `mergekit-yaml RECIPE OUT --no-cuda --no-copy-tokenizer --no-write-model-card
--quiet --random-seed 0` (CPU, one thread) with this folder as the working directory.

`--check` writes nothing: it regenerates the stand-ins in memory and compares them with the
committed ones byte for byte, re-runs mergekit on every committed recipe and compares its output
with the committed golden tensor for tensor (exit status 1 on any difference).

Self-checks (both modes; exit status 1 if one fails), per example, against references written
here from the methods' definitions:

  * "float64": the recipe evaluated in float64 from the stored inputs, rounded once to the
    output dtype: what a computation without intermediate rounding gives.  Reported as the
    largest distance from mergekit in output-dtype ulps and the fraction of elements that differ.
  * "rounded" (ties, bio-merge, arcee_fusion): the same formula with each intermediate rounded to
    the recipe's `dtype` where mergekit rounds it (the inputs cast to `dtype`, τ, the weights,
    the weighted τ, sums, quotients; arcee_fusion's softmaxes, KL divergences, importances and
    threshold), equal |τ| at a top-k cut taken in index order.
  * "rounded, torch's order" (ties, bio-merge): the same, equal |τ| at the cut taken in the
    order torch.argsort gives them (not stable above 16 elements: the order mergekit's trim sees).

The checks: passthrough equals the float64 reference (copies) byte for byte; linear and slerp,
which mergekit computes in float32 and rounds once, are within 1 ulp of it on under 1 % of the
elements; ties, bio-merge (and its density-1 dare_ties variant) and arcee_fusion equal their
rounded reference ("torch's order" for the ties ones) exactly; the random dare_ties variant leaves
(1 − density)² of the elements at θ₀ within 4 σ.  So every difference between mergekit and the float64 reference is explained
by rounding to `dtype` and, for ties, by the order of equal |τ|; the script prints how large each
is.

mergekit is LGPL-3.0: it is only run as a subprocess; no mergekit code is included here.
Deterministic: fixed seeds, sorted tensors; re-running writes byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# A recipe value for a tensor at a layer position (scalar, gradient, or filtered conditions).
from make_slices_goldens import evaluate  # noqa: E402
ROOT = HERE / "examples"
METADATA = {"format": "pt"}
HIDDEN, HEADS, HEAD_DIM, MLP, VOCAB = 8, 2, 4, 16, 32

# ---------------------------------------------------------------------------------------------
# mergekit's examples/, as published (arcee-ai/mergekit, examples/*.yml).
# ---------------------------------------------------------------------------------------------

EXAMPLES = {
    "arcee_fusion": """models:
  - model: model_a
  - model: model_b
merge_method: arcee_fusion
base_model: model_a
dtype: bfloat16
""",
    "bio-merge": """models:
  - model: mistralai/Mistral-7B-Instruct-v0.2
    parameters:
      density: 0.5
      weight: 0.5
  - model: BioMistral/BioMistral-7B
    parameters:
      density: 0.5
      weight: 0.5
merge_method: ties
base_model: mistralai/Mistral-7B-v0.1
parameters:
  normalize: false
  int8_mask: true
dtype: float16
""",
    "gradient-slerp": """slices:
  - sources:
      - model: psmathur/orca_mini_v3_13b
        layer_range: [0, 40]
      - model: garage-bAInd/Platypus2-13B
        layer_range: [0, 40]
# or, the equivalent models: syntax:
# models:
#   - model: psmathur/orca_mini_v3_13b
#   - model: garage-bAInd/Platypus2-13B
merge_method: slerp
base_model: psmathur/orca_mini_v3_13b
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5 # fallback for rest of tensors
dtype: float16
""",
    "linear": """models:
  - model: psmathur/orca_mini_v3_13b
    parameters:
      weight: 1.0
  - model: WizardLM/WizardLM-13B-V1.2
    parameters:
      weight: 0.3
  - model: garage-bAInd/Platypus2-13B
    parameters:
      weight: 0.5
merge_method: linear
dtype: float16
""",
    "orcamini-platy-44layer": """slices:
  - sources:
    - model: psmathur/orca_mini_v3_13b
      layer_range: [0, 24]
  - sources:
    - model: garage-bAInd/Platypus2-13B
      layer_range: [20, 40]
merge_method: passthrough
dtype: float16
""",
    "ties": """models:
  - model: psmathur/orca_mini_v3_13b
    parameters:
      density: [1, 0.7, 0.1] # density gradient
      weight: 1.0
  - model: garage-bAInd/Platypus2-13B
    parameters:
      density: 0.5
      weight: [0, 0.3, 0.7, 1] # weight gradient
  - model: WizardLM/WizardMath-13B-V1.0
    parameters:
      density: 0.33
      weight:
        - filter: mlp
          value: 0.5
        - value: 0
merge_method: ties
base_model: TheBloke/Llama-2-13B-fp16
parameters:
  normalize: true
  int8_mask: true
dtype: float16
""",
}

# ---------------------------------------------------------------------------------------------
# The stand-ins: hub id → (family, role, seed).  A family shares its base's tensors.
# ---------------------------------------------------------------------------------------------

FAMILIES = {
    # name: (architecture, model_type, layers, key-value heads, torch dtype, base hub id)
    "llama2": ("LlamaForCausalLM", "llama", 40, 2, torch.float16, "TheBloke/Llama-2-13B-fp16"),
    "mistral": ("MistralForCausalLM", "mistral", 8, 1, torch.bfloat16, "mistralai/Mistral-7B-v0.1"),
    "fusion": ("LlamaForCausalLM", "llama", 4, 2, torch.bfloat16, "model_a"),
}
STAND_INS = {
    "TheBloke/Llama-2-13B-fp16": ("llama2", 1300),
    "psmathur/orca_mini_v3_13b": ("llama2", 1301),
    "garage-bAInd/Platypus2-13B": ("llama2", 1302),
    "WizardLM/WizardLM-13B-V1.2": ("llama2", 1303),
    "WizardLM/WizardMath-13B-V1.0": ("llama2", 1304),
    "mistralai/Mistral-7B-v0.1": ("mistral", 700),
    "mistralai/Mistral-7B-Instruct-v0.2": ("mistral", 701),
    "BioMistral/BioMistral-7B": ("mistral", 702),
    "model_a": ("fusion", 1),
    "model_b": ("fusion", 2),
}


def layer_shapes(kv_heads: int) -> dict:
    return {
        "input_layernorm.weight": [HIDDEN],
        "self_attn.q_proj.weight": [HEADS * HEAD_DIM, HIDDEN],
        "self_attn.k_proj.weight": [kv_heads * HEAD_DIM, HIDDEN],
        "self_attn.v_proj.weight": [kv_heads * HEAD_DIM, HIDDEN],
        "self_attn.o_proj.weight": [HIDDEN, HEADS * HEAD_DIM],
        "post_attention_layernorm.weight": [HIDDEN],
        "mlp.gate_proj.weight": [MLP, HIDDEN],
        "mlp.up_proj.weight": [MLP, HIDDEN],
        "mlp.down_proj.weight": [HIDDEN, MLP],
    }


def config(family: str) -> dict:
    arch, model_type, layers, kv_heads, dtype, _ = FAMILIES[family]
    return {
        "architectures": [arch], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "head_dim": HEAD_DIM, "hidden_act": "silu",
        "hidden_size": HIDDEN, "initializer_range": 0.02, "intermediate_size": MLP,
        "max_position_embeddings": 64, "model_type": model_type,
        "num_attention_heads": HEADS, "num_hidden_layers": layers, "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "torch_dtype": str(dtype).removeprefix("torch."), "vocab_size": VOCAB,
    }


def is_norm(name: str) -> bool:
    return name.endswith("norm.weight")


def base_tensors(family: str) -> dict:
    """float64 tensors of a family's base: N(0, 0.5) matrices, 1 + N(0, 0.05) norms."""
    _, _, layers, kv_heads, _, base_id = FAMILIES[family]
    rng = np.random.default_rng(STAND_INS[base_id][1])
    out = {"model.embed_tokens.weight": rng.normal(0, 0.5, [VOCAB, HIDDEN])}
    for i in range(layers):
        for suffix, shape in layer_shapes(kv_heads).items():
            name = f"model.layers.{i}.{suffix}"
            out[name] = 1 + rng.normal(0, 0.05, shape) if is_norm(name) else rng.normal(0, 0.5, shape)
    out["model.norm.weight"] = 1 + rng.normal(0, 0.05, [HIDDEN])
    out["lm_head.weight"] = rng.normal(0, 0.5, [VOCAB, HIDDEN])
    return out


def make_models() -> dict:
    """hub id → {tensor name: torch tensor in the family's dtype}."""
    models = {}
    for hub_id, (family, seed) in STAND_INS.items():
        dtype = FAMILIES[family][4]
        base = base_tensors(family)
        if hub_id == FAMILIES[family][5]:
            values = base
        else:
            rng = np.random.default_rng(seed)
            # 10 % of the base's spread (1 % of the norms' 0.05) as each fine-tune's own change.
            values = {n: v + rng.normal(0, 0.0005 if is_norm(n) else 0.05, v.shape) for n, v in base.items()}
        models[hub_id] = {n: torch.from_numpy(v).to(torch.float32).to(dtype) for n, v in sorted(values.items())}
    return models


def model_dir(hub_id: str) -> Path:
    return ROOT / "models" / hub_id


def save_tensors(path: Path, tensors: dict) -> None:
    save_file({n: tensors[n].contiguous() for n in sorted(tensors)}, str(path), metadata=METADATA)
    os.chmod(path, 0o644)


def write_models(models: dict) -> None:
    for hub_id, tensors in models.items():
        folder = model_dir(hub_id)
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors(folder / "model.safetensors", tensors)
        (folder / "config.json").write_text(json.dumps(config(STAND_INS[hub_id][0]), indent=2, sort_keys=True) + "\n")
        os.chmod(folder / "config.json", 0o644)


# Variants of a published example (not published themselves): name → (example, replacements,
# what they change).  bio-merge.yml is mergekit's `ties`; these run it as `dare_ties`, the method
# with random drops, at density 1 (no drop) and as published (density 0.5).
VARIANTS = {
    "bio-merge.dare_ties-density1": ("bio-merge", [("merge_method: ties\n", "merge_method: dare_ties\n"),
                                                   ("density: 0.5\n", "density: 1.0\n")],
                                     "merge_method dare_ties instead of ties, density 1.0 instead of 0.5"),
    "bio-merge.dare_ties": ("bio-merge", [("merge_method: ties\n", "merge_method: dare_ties\n")],
                            "merge_method dare_ties instead of ties"),
}
CASES = list(EXAMPLES) + list(VARIANTS)


def recipe_text(case: str) -> str:
    """The published text with each hub id replaced by `models/` + the hub id (a variant: with
    its replacements too)."""
    example, replacements, change = VARIANTS.get(case, (case, [], None))
    text = EXAMPLES[example]
    for old, new in replacements:
        assert old in text, (case, old)
        text = text.replace(old, new)
    for hub_id in sorted(STAND_INS, key=len, reverse=True):
        text = text.replace(f"model: {hub_id}\n", f"model: models/{hub_id}\n")
    if change:
        return (f"# A variant of mergekit's examples/{example}.yml (arcee-ai/mergekit): {change}; model names\n"
                f"# replaced by the local stand-ins of make_examples_goldens.py; mergekit 0.1.5's output is in {case}/\n" + text)
    return (f"# mergekit's examples/{example}.yml (arcee-ai/mergekit), model names replaced by the local\n"
            f"# stand-ins of make_examples_goldens.py; mergekit 0.1.5's output is in {example}/\n" + text)


# ---------------------------------------------------------------------------------------------
# mergekit
# ---------------------------------------------------------------------------------------------

def load_model(path: Path) -> dict:
    tensors = {}
    for f in sorted(path.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def run_mergekit(recipe_path: Path) -> tuple[dict, dict]:
    mergekit_yaml = Path(sys.executable).parent / "mergekit-yaml"
    with tempfile.TemporaryDirectory(prefix="mk-examples-") as tmp:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
        cmd = [str(mergekit_yaml), str(recipe_path), str(Path(tmp) / "out"), "--no-cuda", "--no-copy-tokenizer",
               "--no-write-model-card", "--quiet", "--random-seed", "0"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if res.returncode != 0:
            sys.stderr.write(res.stdout + res.stderr)
            raise SystemExit(f"mergekit failed for {recipe_path.name}")
        produced = json.loads((Path(tmp) / "out" / "config.json").read_text())
        kept = {k: produced[k] for k in ["architectures", "model_type", "num_hidden_layers"]}
        return load_model(Path(tmp) / "out"), kept


def mergekit_version() -> str:
    from importlib.metadata import version
    return f"mergekit {version('mergekit')}, torch {torch.__version__}"


# ---------------------------------------------------------------------------------------------
# References (written from the methods' definitions)
# ---------------------------------------------------------------------------------------------

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def layer_t(name: str, layers: int) -> float:
    parts = name.split(".")
    if len(parts) > 2 and parts[1] == "layers":
        return int(parts[2]) / (layers - 1)
    return 0.0


class Arithmetic:
    """float64 throughout (`exact`), or each step rounded to `dtype` as mergekit rounds it."""

    def __init__(self, dtype: torch.dtype | None):
        self.dtype = dtype

    def r(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.dtype is None else x.to(self.dtype).to(torch.float64)


def ties_reference(recipe: dict, models: dict, ar: Arithmetic, layers: int, torch_order: bool = False,
                   kept: dict | None = None) -> dict:
    """mergekit's ties: per tensor keep max(1, ⌊density·n⌋) largest |τ|, weighted vote with a zero
    sum counting as +, sum of the agreeing wτ̃, ÷ the agreeing weights (1 where that is 0) if
    normalize, × λ, + θ₀.  Equal |τ| at the cut are taken in index order, or (`torch_order`) in
    the order `torch.argsort(|τ| as float32, descending=True)` gives them, which above 16
    elements is not stable (the order mergekit's trim sees).  `kept` receives, per tensor, which
    elements each model's trim keeps."""
    base = {n: v.to(torch.float64) for n, v in models[recipe["base_model"]].items()}
    params = recipe.get("parameters") or {}
    out = {}
    for name, theta0 in base.items():
        t = layer_t(name, layers)
        theta0 = ar.r(theta0)
        deltas, weights, masks = [], [], []
        for entry in recipe["models"]:
            p = entry.get("parameters") or {}
            tau = ar.r(ar.r(models[entry["model"]][name].to(torch.float64)) - theta0)
            density = evaluate(p.get("density", params.get("density", 1.0)), name, t)
            if density < 1:
                k = max(1, int(density * tau.numel()))
                w = tau.abs().reshape(-1)
                if torch_order:
                    order = torch.argsort(w.to(torch.float32), descending=True)[:k]
                else:
                    order = torch.sort(w, descending=True, stable=True).indices[:k]
                mask = torch.zeros(tau.numel(), dtype=torch.float64)
                mask[order] = 1
                tau = tau * mask.reshape(tau.shape)
                masks.append(mask.reshape(tau.shape))
            else:
                masks.append(torch.ones_like(tau))
            w = ar.r(torch.tensor(float(evaluate(p.get("weight", params.get("weight")), name, t)), dtype=torch.float64))
            deltas.append(ar.r(tau * w))
            weights.append(w)
        if kept is not None:
            kept[name] = torch.stack(masks)
        d = torch.stack(deltas)
        majority = torch.where(ar.r(d.sum(0)) >= 0, 1.0, -1.0).to(torch.float64)
        agree = (torch.sign(d) == majority).to(torch.float64)
        mixed = ar.r((d * agree).sum(0))
        if params.get("normalize", True):
            w = torch.stack([w.expand_as(theta0) for w in weights])
            divisor = ar.r((w * agree).sum(0))
            divisor = torch.where(divisor == 0, 1.0, divisor)
            mixed = ar.r(mixed / divisor)
        lam = params.get("lambda", 1.0)
        if lam != 1:
            mixed = ar.r(mixed * lam)
        out[name] = theta0 + mixed
    return out


def linear_reference(recipe: dict, models: dict, layers: int) -> dict:
    params = recipe.get("parameters") or {}
    first = models[recipe["models"][0]["model"]]
    out = {}
    for name in first:
        t = layer_t(name, layers)
        ws = [float(evaluate(e["parameters"]["weight"], name, t)) for e in recipe["models"]]
        acc = sum(w * models[e["model"]][name].to(torch.float64) for w, e in zip(ws, recipe["models"]))
        out[name] = acc / sum(ws) if params.get("normalize", True) else acc
    return out


def slerp64(t: float, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    a, b = v0.reshape(-1), v1.reshape(-1)
    na, nb = a.norm(), b.norm()
    na = na if na > 1e-8 else torch.tensor(1.0, dtype=torch.float64)
    nb = nb if nb > 1e-8 else torch.tensor(1.0, dtype=torch.float64)
    d = float(torch.clamp((a / na) @ (b / nb), -1, 1))
    if abs(d) > 0.9995:
        return (1 - t) * v0 + t * v1
    w = np.arccos(d)
    return (np.sin((1 - t) * w) * v0 + np.sin(t * w) * v1) / np.sin(w)


def slerp_reference(recipe: dict, models: dict, layers: int) -> dict:
    sources = recipe["slices"][0]["sources"]
    base_id = recipe["base_model"]
    other = next(s["model"] for s in sources if s["model"] != base_id)
    out = {}
    for name in models[base_id]:
        t = float(evaluate(recipe["parameters"]["t"], name, layer_t(name, layers)))
        out[name] = slerp64(t, models[base_id][name].to(torch.float64), models[other][name].to(torch.float64))
    return out


def passthrough_reference(recipe: dict, models: dict) -> dict:
    slices = recipe["slices"]
    out = {}
    first, last = slices[0]["sources"][0]["model"], slices[-1]["sources"][0]["model"]
    out["model.embed_tokens.weight"] = models[first]["model.embed_tokens.weight"]
    index = 0
    for s in slices:
        source = s["sources"][0]
        start, end = source["layer_range"]
        for i in range(start, end):
            for name, value in models[source["model"]].items():
                prefix = f"model.layers.{i}."
                if name.startswith(prefix):
                    out[f"model.layers.{index}." + name[len(prefix):]] = value
            index += 1
    for name in ["model.norm.weight", "lm_head.weight"]:
        out[name] = models[last][name]
    return {n: v.to(torch.float64) for n, v in out.items()}


def arcee_fusion_reference(recipe: dict, models: dict, ar: Arithmetic) -> dict:
    """θ₀ + τ·[importance ≥ q₂ + 1.5(q₃ − q₁)], importance = |τ|·KL(softmax θ₁ ‖ softmax θ₀) per row,
    quantiles the sorted importances at ⌊q(n − 1)⌋."""
    base = models[recipe["base_model"]]
    other = models[next(e["model"] for e in recipe["models"] if e["model"] != recipe["base_model"])]
    out = {}
    for name in base:
        b, m = base[name].to(torch.float64), other[name].to(torch.float64)
        diff = ar.r(ar.r(m - b).abs())

        def softmax(x):
            if ar.dtype is None:
                e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
                return e / e.sum(dim=-1, keepdim=True) + 1e-8
            return ar.r(ar.r(torch.softmax(x.to(ar.dtype), dim=-1).to(torch.float64)) + 1e-8)

        p, q = softmax(m), softmax(b)
        kl = (p * torch.log(p / q)).sum(dim=-1, keepdim=True) if ar.dtype is None else \
            ar.r(ar.r(p * ar.r(torch.log(ar.r(p / q)))).to(ar.dtype).sum(dim=-1, keepdim=True).to(torch.float64))
        importance = ar.r(diff * kl)
        s = torch.sort(importance.reshape(-1)).values
        n = s.numel()
        q1, q2, q3 = (s[int(f * (n - 1))] for f in (0.25, 0.5, 0.75))
        threshold = ar.r(q2 + ar.r(1.5 * ar.r(q3 - q1))) if ar.dtype is not None else q2 + 1.5 * (q3 - q1)
        mask = (importance >= threshold).to(torch.float64)
        out[name] = b + ar.r(ar.r(m - b) * mask)
    return out


def references(example: str, recipe: dict, models: dict) -> dict:
    """name → {tensor: float64 tensor}, the float64 reference and (where mergekit rounds
    intermediates) the one rounded as mergekit rounds."""
    method = recipe["merge_method"]
    compute = DTYPES[recipe["dtype"]]
    first = recipe.get("base_model") or (recipe.get("models") or recipe["slices"][0]["sources"])[0]["model"]
    family = STAND_INS[first.removeprefix("models/")][0]
    layers = FAMILIES[family][2]
    if method == "dare_ties" and all((e.get("parameters") or {}).get("density", 1.0) >= 1 for e in recipe["models"]):
        method = "ties"  # nothing dropped, nothing rescaled: ties without a trim
    if method == "dare_ties":
        return {}  # random drops (torch's generator): compared by statistics (dare_statistics)
    if method == "ties":
        return {"float64": ties_reference(recipe, models, Arithmetic(None), layers),
                "rounded": ties_reference(recipe, models, Arithmetic(compute), layers),
                "rounded, torch's order": ties_reference(recipe, models, Arithmetic(compute), layers, torch_order=True)}
    if method == "arcee_fusion":
        return {"float64": arcee_fusion_reference(recipe, models, Arithmetic(None)),
                "rounded": arcee_fusion_reference(recipe, models, Arithmetic(compute))}
    if method == "linear":
        return {"float64": linear_reference(recipe, models, layers)}
    if method == "slerp":
        return {"float64": slerp_reference(recipe, models, layers)}
    assert method == "passthrough"
    return {"float64": passthrough_reference(recipe, models)}


def ties_breakdown(recipe: dict, models: dict, golden: dict) -> str:
    """Where mergekit's ties output differs from the float64 reference: on the elements whose
    top-k membership differs (float64 with index order against float16 with torch's order), and
    elsewhere by at most how many float16 ulps of the largest input at the element."""
    family = STAND_INS[recipe["base_model"].removeprefix("models/")][0]
    layers = FAMILIES[family][2]
    exact_kept, rounded_kept = {}, {}
    exact = ties_reference(recipe, models, Arithmetic(None), layers, kept=exact_kept)
    ties_reference(recipe, models, Arithmetic(DTYPES[recipe["dtype"]]), layers, torch_order=True, kept=rounded_kept)
    paths = [recipe["base_model"]] + [e["model"] for e in recipe["models"]]
    flips, flips_differing, worst = 0, 0, 0.0
    for name, value in golden.items():
        flipped = (exact_kept[name] != rounded_kept[name]).any(0)
        scale = torch.stack([models[p][name].to(torch.float64).abs() for p in paths]).max(0).values
        ulp = torch.exp2(torch.floor(torch.log2(scale.clamp(min=2.0 ** -14))) - 10)
        error = (value.to(torch.float64) - exact[name].to(value.dtype).to(torch.float64)).abs() / ulp
        flips += int(flipped.sum())
        flips_differing += int((flipped & (error > 0)).sum())
        if (~flipped).any():
            worst = max(worst, float(error[~flipped].max()))
    return (f"top-k sets differ on {flips} elements ({flips_differing} of them differ in the output); elsewhere "
            f"mergekit is within {worst:g} float16 ulps of the largest input of the float64 reference")


def dare_statistics(recipe: dict, models: dict, merged: dict) -> dict:
    """What a random dare_ties output shows of its drops, with two models and normalize false:
    the fraction of elements left at θ₀ (both models' entries dropped: (1 − density)² expected,
    counting elements where some τ is 0 apart), and Σ|θ − θ₀| (the l1 rescale keeps it near the
    undropped merge's)."""
    base = models[recipe["base_model"]]
    densities = [e["parameters"]["density"] for e in recipe["models"]]
    at_base = counted = 0
    change = 0.0
    for name, value in merged.items():
        b = base[name].to(value.dtype)
        nonzero = torch.stack([(models[e["model"]][name].to(value.dtype) != b) for e in recipe["models"]]).all(0)
        at_base += int(((value == b) & nonzero).sum())
        counted += int(nonzero.sum())
        change += float((value.to(torch.float64) - b.to(torch.float64)).abs().sum())
    expected = float(np.prod([1 - d for d in densities]))
    return {"left_at_base": at_base / counted, "expected": expected, "sigma": (expected * (1 - expected) / counted) ** 0.5,
            "elements": counted, "l1_change": change}


def ordered(t: torch.Tensor) -> torch.Tensor:
    """Bits of a float tensor as integers ordered like the values (±0 equal)."""
    if t.dtype == torch.float32:
        bits = t.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
        return torch.where(bits >= 0x80000000, 0x80000000 - bits, bits)
    bits = t.contiguous().view(torch.int16).to(torch.int64) & 0xFFFF
    return torch.where(bits >= 0x8000, 0x8000 - bits, bits)


def distance(golden: dict, reference: dict) -> tuple[int, int, int]:
    """(largest distance in ulps of the golden's dtype, elements differing, elements)."""
    worst, differing, total = 0, 0, 0
    for name, value in golden.items():
        rounded = reference[name].to(value.dtype)
        d = (ordered(value) - ordered(rounded)).abs()
        worst = max(worst, int(d.max()))
        differing += int((d > 0).sum())
        total += d.numel()
    return worst, differing, total


# mergekit writes each tensor in the dtype its method returns when the recipe has no out_dtype:
# arcee_fusion multiplies τ by a float32 mask, so its bfloat16 recipe is written in float32.
OUTPUT_DTYPE = {"arcee_fusion": torch.float32}

# What each example's golden must satisfy against its references: (reference, largest ulp
# distance, largest fraction of elements differing).  mergekit's linear and slerp compute in
# float32 and round once, passthrough copies; ties and arcee_fusion round every step to `dtype`.
SELF_CHECKS = {
    "orcamini-platy-44layer": [("float64", 0, 0.0)],
    "linear": [("float64", 1, 0.01)],
    "gradient-slerp": [("float64", 1, 0.01)],
    "ties": [("rounded, torch's order", 0, 0.0)],
    "bio-merge": [("rounded, torch's order", 0, 0.0)],
    "arcee_fusion": [("rounded", 0, 0.0)],
    "bio-merge.dare_ties-density1": [("rounded, torch's order", 0, 0.0)],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args()
    print(mergekit_version())
    models = make_models()
    failures = []
    if args.check:
        for hub_id, tensors in models.items():
            committed = load_model(model_dir(hub_id))
            same = committed.keys() == tensors.keys() and all(torch.equal(committed[n].view(torch.int16), tensors[n].view(torch.int16)) for n in tensors)
            same &= json.loads((model_dir(hub_id) / "config.json").read_text()) == config(STAND_INS[hub_id][0])
            if not same:
                failures.append(f"stand-in {hub_id} differs from the committed one")
    else:
        if ROOT.exists():
            shutil.rmtree(ROOT)
        ROOT.mkdir(parents=True)
        write_models(models)
    for example in CASES:
        path = ROOT / f"{example}.yml"
        text = recipe_text(example)
        if args.check:
            if path.read_text() != text:
                failures.append(f"{example}.yml differs from the committed one")
        else:
            path.write_text(text)
            os.chmod(path, 0o644)
        merged, produced = run_mergekit(path)
        recipe = yaml.safe_load(text)
        out_dtype = OUTPUT_DTYPE.get(example, DTYPES[recipe.get("out_dtype", recipe["dtype"])])
        for name, value in merged.items():
            assert value.dtype == out_dtype, (example, name, value.dtype)
        folder = ROOT / example
        if args.check:
            committed = load_model(folder)
            same = committed.keys() == merged.keys() and all(torch.equal(committed[n].view(torch.int16), merged[n].view(torch.int16)) for n in merged)
            same &= json.loads((folder / "config.json").read_text()) == produced
            print(f"  {example:24s} committed golden {'identical' if same else 'DIFFERS'}")
            if not same:
                failures.append(f"{example}: mergekit's output differs from the committed golden")
        else:
            folder.mkdir()
            save_tensors(folder / "model.safetensors", merged)
            (folder / "config.json").write_text(json.dumps(produced, indent=2, sort_keys=True) + "\n")
            os.chmod(folder / "config.json", 0o644)
        refs = references(example, recipe, {f"models/{k}": v for k, v in models.items()})
        if not refs:
            stats = dare_statistics(recipe, {f"models/{k}": v for k, v in models.items()}, merged)
            undropped = load_model(ROOT / f"{example}-density1") if (ROOT / f"{example}-density1").exists() else None
            ratio = stats["l1_change"] / dare_statistics(recipe, {f"models/{k}": v for k, v in models.items()}, undropped)["l1_change"] if undropped else float("nan")
            print(f"  {example:24s} left at θ₀: {100 * stats['left_at_base']:.2f} % of {stats['elements']} "
                  f"(expected {100 * stats['expected']:.0f} % ± {100 * stats['sigma']:.2f}); Σ|θ − θ₀| / density 1's: {ratio:.3f}")
            if abs(stats["left_at_base"] - stats["expected"]) > 4 * stats["sigma"]:
                failures.append(f"{example}: {stats}")
            continue
        recipe_dtype = DTYPES[recipe.get("out_dtype", recipe["dtype"])]
        exact = {n: v.to(recipe_dtype) for n, v in refs["float64"].items()}
        if args.check:
            committed = load_file(str(ROOT / "reference" / f"{example}.safetensors"))
            if committed.keys() != exact.keys() or not all(torch.equal(committed[n], exact[n]) for n in exact):
                failures.append(f"{example}: the float64 reference differs from the committed one")
        else:
            (ROOT / "reference").mkdir(exist_ok=True)
            save_tensors(ROOT / "reference" / f"{example}.safetensors", exact)
        if sorted(refs["float64"]) != sorted(merged):
            failures.append(f"{example}: tensor names {sorted(set(refs['float64']) ^ set(merged))}")
            continue
        for label, reference in refs.items():
            worst, differing, total = distance(merged, reference)
            print(f"  {example:24s} mergekit vs {label:22s}: at most {worst} ulp, {differing}/{total} elements differ "
                  f"({100 * differing / total:.2f} %), {produced['num_hidden_layers']} layers")
        if recipe["merge_method"] == "ties":  # (the density-1 dare_ties variant has no trim)
            print(f"  {example:24s} {ties_breakdown(recipe, {f'models/{k}': v for k, v in models.items()}, merged)}")
        for label, ulps, fraction in SELF_CHECKS[example]:
            worst, differing, total = distance(merged, refs[label])
            if worst > ulps or differing > fraction * total:
                failures.append(f"{example}: mergekit vs {label}: {worst} ulp, {differing}/{total} differ")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
