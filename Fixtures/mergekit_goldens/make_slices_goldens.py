#!/usr/bin/env python3
"""Goldens for layer-wise recipes (`slices:`, `modules:`) from mergekit 0.1.5 itself.

Usage (from the repository root):

    python Fixtures/mergekit_goldens/make_slices_goldens.py --mergekit /work/venvs/mergekit/bin/mergekit-yaml

(or set MERGEKIT_YAML).  Needs numpy + safetensors in the running Python; mergekit runs in its
own environment (CPU, float32).  Writes, under Fixtures/mergekit_goldens/slices/:

  models/{base,a,b}/   tiny Llama-shaped checkpoints with 6 layers, models/c/ one with 4
                       (hidden 4, 2 heads of 2, 1 KV head, MLP 6, vocabulary 8; every tensor
                       float32; config.json a valid LlamaConfig);
  <case>.yml           the recipes, with model paths relative to this folder (merge-cli resolves
                       a relative path beside the recipe; mergekit runs with this folder as its
                       working directory);
  <case>/model.safetensors, <case>/config.json   mergekit's output for the recipe.

The cases (see CASES below): frankenmerges stacking layer ranges of two models (the shape of
mergekit's examples/orcamini-platy-44layer.yml, with passthrough and with one-source linear
slices), merged slices (linear and task_arithmetic, with per-source, per-slice and global
parameters, weight gradients and filters), `modules:` recipes, and the shape of
examples/gradient-slerp.yml.

Self-checks: every frankenmerge golden is compared with the source layers it must hold (exact
copies), and every merged-slice golden with a float64 numpy evaluation of mergekit's rules (the
layer gradient runs over the slice: t = i/(n − 1) for layer i of an n-layer slice; embeddings from
the first slice's sources and the final norm and head from the last slice's, at t = 0; a source's
parameters before the slice's, the module's and the recipe's).  The script exits non-zero if one
fails.  Deterministic: re-running writes byte-identical files.
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
from safetensors.numpy import load_file, save_file

ROOT = Path(__file__).resolve().parent / "slices"
METADATA = {"format": "pt"}
HIDDEN, HEADS, HEAD_DIM, KV_HEADS, MLP, VOCAB = 4, 2, 2, 1, 6, 8

LAYER_SHAPES = {
    "input_layernorm.weight": [HIDDEN],
    "self_attn.q_proj.weight": [HEADS * HEAD_DIM, HIDDEN],
    "self_attn.k_proj.weight": [KV_HEADS * HEAD_DIM, HIDDEN],
    "self_attn.v_proj.weight": [KV_HEADS * HEAD_DIM, HIDDEN],
    "self_attn.o_proj.weight": [HIDDEN, HEADS * HEAD_DIM],
    "post_attention_layernorm.weight": [HIDDEN],
    "mlp.gate_proj.weight": [MLP, HIDDEN],
    "mlp.up_proj.weight": [MLP, HIDDEN],
    "mlp.down_proj.weight": [HIDDEN, MLP],
}
PRE = {"model.embed_tokens.weight": [VOCAB, HIDDEN]}
POST = {"model.norm.weight": [HIDDEN], "lm_head.weight": [VOCAB, HIDDEN]}
MODELS = {"base": (6, 11), "a": (6, 22), "b": (6, 33), "c": (4, 44)}


def config(layers: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "head_dim": HEAD_DIM, "hidden_act": "silu",
        "hidden_size": HIDDEN, "initializer_range": 0.02, "intermediate_size": MLP,
        "max_position_embeddings": 32, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": HEADS, "num_hidden_layers": layers, "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "tie_word_embeddings": False,
        "torch_dtype": "float32", "vocab_size": VOCAB,
    }


def make_models() -> dict:
    """Every model: {tensor name: float32 array}; the fine-tuned ones lie near the base."""
    base_rng = np.random.default_rng(MODELS["base"][1])
    layers = MODELS["base"][0]
    base = {}
    for name, shape in PRE.items():
        base[name] = base_rng.normal(0, 0.5, shape)
    for i in range(layers):
        for name, shape in LAYER_SHAPES.items():
            scale = 0.05 if name.endswith("layernorm.weight") else 0.5
            offset = 1.0 if name.endswith("layernorm.weight") else 0.0
            base[f"model.layers.{i}.{name}"] = offset + base_rng.normal(0, scale, shape)
    for name, shape in POST.items():
        base[name] = (1.0 if name == "model.norm.weight" else 0.0) + base_rng.normal(0, 0.5 if name == "lm_head.weight" else 0.05, shape)
    models = {"base": base}
    for key in ["a", "b", "c"]:
        count, seed = MODELS[key]
        rng = np.random.default_rng(seed)
        model = {}
        for name, value in base.items():
            if name.startswith("model.layers."):
                index = int(name.split(".")[2])
                if index >= count:
                    continue
            model[name] = value + rng.normal(0, 0.1, value.shape)
        models[key] = model
    return {k: {n: v.astype(np.float32) for n, v in m.items()} for k, m in models.items()}


def write_models(models: dict) -> None:
    for key, tensors in models.items():
        folder = ROOT / "models" / key
        folder.mkdir(parents=True, exist_ok=True)
        save_file(dict(sorted(tensors.items())), str(folder / "model.safetensors"), metadata=METADATA)
        os.chmod(folder / "model.safetensors", 0o644)
        (folder / "config.json").write_text(json.dumps(config(MODELS[key][0]), indent=2, sort_keys=True) + "\n")


# Each case: the recipe (mergekit's vocabulary; model paths relative to ROOT).
CASES = {
    # The shape of examples/orcamini-platy-44layer.yml: two models' layer ranges stacked, overlapping.
    "franken_passthrough": {
        "slices": [
            {"sources": [{"model": "models/a", "layer_range": [0, 4]}]},
            {"sources": [{"model": "models/b", "layer_range": [2, 6]}]},
        ],
        "merge_method": "passthrough",
        "dtype": "float32",
    },
    # Three slices, one-source linear: a's layers 2 and 3 twice, a 4-layer model in the middle.
    "franken_linear": {
        "slices": [
            {"sources": [{"model": "models/a", "layer_range": [0, 4], "parameters": {"weight": 1.0}}]},
            {"sources": [{"model": "models/c", "layer_range": [1, 4], "parameters": {"weight": 1.0}}]},
            {"sources": [{"model": "models/a", "layer_range": [2, 6], "parameters": {"weight": 1.0}}]},
        ],
        "merge_method": "linear",
        "dtype": "float32",
    },
    # Merged slices over different ranges: per-source gradients, a filter falling through to the
    # slice's gradient, the slice's gradient for a source without parameters.
    "merged_linear": {
        "slices": [
            {"sources": [
                {"model": "models/a", "layer_range": [0, 4], "parameters": {"weight": [1.0, 0.2]}},
                {"model": "models/b", "layer_range": [0, 4], "parameters": {"weight": [0.3, 1.0]}},
            ]},
            {"sources": [
                {"model": "models/a", "layer_range": [2, 6]},
                {"model": "models/b", "layer_range": [2, 6], "parameters": {"weight": [{"filter": "mlp", "value": 2.0}]}},
            ], "parameters": {"weight": [0.5, 1.5]}},
        ],
        "merge_method": "linear",
        "parameters": {"normalize": True},
        "dtype": "float32",
    },
    # task_arithmetic against the base listed in each slice; b's second range offset by one layer.
    "merged_task_arithmetic": {
        "slices": [
            {"sources": [
                {"model": "models/base", "layer_range": [0, 3]},
                {"model": "models/a", "layer_range": [0, 3]},
                {"model": "models/b", "layer_range": [0, 3], "parameters": {"weight": 0.7}},
            ], "parameters": {"weight": [0.2, 0.8]}},
            {"sources": [
                {"model": "models/base", "layer_range": [3, 6]},
                {"model": "models/a", "layer_range": [3, 6], "parameters": {"weight": 0.5}},
                {"model": "models/b", "layer_range": [2, 5], "parameters": {"weight": [1.0, 0.0]}},
            ]},
        ],
        "merge_method": "task_arithmetic",
        "base_model": "models/base",
        "parameters": {"lambda": 0.9, "weight": 0.4},
        "dtype": "float32",
    },
    # Filters naming a layer: a source's per-model value is resolved for the source's own tensor
    # (b's layer 3 is output layer 1), a global one (lambda) for the output tensor.
    "source_filters": {
        "slices": [{"sources": [
            {"model": "models/base", "layer_range": [0, 3]},
            {"model": "models/a", "layer_range": [0, 3], "parameters": {"weight": 0.5}},
            {"model": "models/b", "layer_range": [2, 5],
             "parameters": {"weight": [{"filter": "layers.3.", "value": 2.0}, {"value": 0.25}]}},
        ]}],
        "merge_method": "task_arithmetic",
        "base_model": "models/base",
        "parameters": {"lambda": [{"filter": "layers.1.", "value": 0.5}, {"value": 1.0}]},
        "dtype": "float32",
    },
    # modules: with slices and module-level parameters under the slices'.
    "modules_task_arithmetic": {
        "modules": {"default": {
            "slices": [
                {"sources": [
                    {"model": "models/base", "layer_range": [0, 4]},
                    {"model": "models/a", "layer_range": [0, 4]},
                    {"model": "models/b", "layer_range": [0, 4], "parameters": {"weight": 0.6}},
                ]},
                {"sources": [
                    {"model": "models/base", "layer_range": [4, 6]},
                    {"model": "models/a", "layer_range": [4, 6]},
                    {"model": "models/b", "layer_range": [4, 6]},
                ], "parameters": {"weight": 0.25}},
            ],
            "parameters": {"weight": [1.0, 0.0]},
        }},
        "merge_method": "task_arithmetic",
        "base_model": "models/base",
        "dtype": "float32",
    },
    # modules: with a frankenmerge of two models (one-source linear slices).
    "modules_franken": {
        "modules": {"default": {"slices": [
            {"sources": [{"model": "models/b", "layer_range": [0, 3], "parameters": {"weight": 1.0}}]},
            {"sources": [{"model": "models/a", "layer_range": [1, 6], "parameters": {"weight": 1.0}}]},
        ]}},
        "merge_method": "linear",
        "dtype": "float32",
    },
    # modules: with models: (one slice over every layer of each model, the base added).
    "modules_models": {
        "modules": {"default": {
            "models": [
                {"model": "models/a", "parameters": {"weight": [0.0, 1.0]}},
                {"model": "models/b", "parameters": {"weight": 0.5}},
            ],
            "parameters": {"weight": 0.1},
        }},
        "merge_method": "task_arithmetic",
        "base_model": "models/base",
        "dtype": "float32",
    },
    # The shape of examples/gradient-slerp.yml.
    "gradient_slerp": {
        "slices": [{"sources": [
            {"model": "models/a", "layer_range": [0, 6]},
            {"model": "models/b", "layer_range": [0, 6]},
        ]}],
        "merge_method": "slerp",
        "base_model": "models/a",
        "parameters": {"t": [
            {"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
            {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
            {"value": 0.5},
        ]},
        "dtype": "float32",
    },
}


def yaml_dump(obj, indent: int = 0) -> str:
    """A minimal YAML writer for the recipes above (JSON scalars and flow lists of numbers)."""
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, list) and all(isinstance(e, (int, float)) for e in v):
                lines.append(f"{pad}{k}: {json.dumps(v)}")
            elif isinstance(v, (dict, list)):
                lines.append(f"{pad}{k}:")
                lines.append(yaml_dump(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {json.dumps(v)}")
    else:
        for v in obj:
            if isinstance(v, dict):
                inner = yaml_dump(v, indent + 1).split("\n")
                lines.append(f"{pad}- {inner[0].strip()}")
                lines.extend(inner[1:])
            else:
                lines.append(f"{pad}- {json.dumps(v)}")
    return "\n".join(lines)


def run_mergekit(mergekit_yaml: str, case: str, recipe_path: Path) -> Path:
    out = ROOT / case
    with tempfile.TemporaryDirectory(prefix="mk-slices-") as tmp:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
        cmd = [mergekit_yaml, str(recipe_path), str(Path(tmp) / "out"), "--no-cuda", "--no-copy-tokenizer",
               "--no-write-model-card", "--quiet", "--random-seed", "0"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if res.returncode != 0:
            sys.stderr.write(res.stdout + res.stderr)
            raise SystemExit(f"mergekit failed for {case}")
        tensors = {}
        for f in sorted((Path(tmp) / "out").glob("*.safetensors")):
            tensors.update(load_file(str(f)))
        produced = json.loads((Path(tmp) / "out" / "config.json").read_text())
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    for name, value in tensors.items():
        assert value.dtype == np.float32, (case, name, value.dtype)
    save_file(dict(sorted(tensors.items())), str(out / "model.safetensors"), metadata=METADATA)
    os.chmod(out / "model.safetensors", 0o644)
    # Only what the tests compare: the layer count and the architecture.
    kept = {k: produced[k] for k in ["architectures", "model_type", "num_hidden_layers"]}
    (out / "config.json").write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")
    return out


# ---------------------------------------------------------------------------------------------
# Self-checks: a float64 reading of mergekit's rules
# ---------------------------------------------------------------------------------------------

def evaluate(setting, tensor: str, t: float):
    """A parameter's value for `tensor` at layer position t (None when no condition matches)."""
    if isinstance(setting, list) and setting and isinstance(setting[0], dict):
        for cond in setting:
            if cond.get("filter") in (None, "*") or cond["filter"] in tensor:
                return evaluate(cond["value"], tensor, t)
        return None
    if isinstance(setting, list):
        scaled = t * (len(setting) - 1)
        i0 = int(scaled)
        i1 = min(len(setting) - 1, i0 + 1)
        frac = scaled - i0
        return (1 - frac) * setting[i0] + frac * setting[i1]
    return setting


def resolve(name: str, tensor: str, t: float, scopes) -> float | None:
    for scope in scopes:
        if scope and name in scope:
            value = evaluate(scope[name], tensor, t)
            if value is not None:
                return value
    return None


def expected(recipe: dict, models: dict) -> dict:
    """The output mergekit's planner describes, in float64 (linear and task_arithmetic)."""
    global_params = recipe.get("parameters") or {}
    if "modules" in recipe:
        module = recipe["modules"]["default"]
        module_params = module.get("parameters") or {}
        if "models" in module:
            base = recipe["base_model"]
            sources = [{"model": base, "layer_range": [0, 6]}] + [
                dict(m, layer_range=[0, 6]) for m in module["models"]]
            slices = [{"sources": sources}]
        else:
            slices = module["slices"]
    else:
        module_params, slices = {}, recipe["slices"]
    method = recipe["merge_method"]
    key = {f"models/{k}": k for k in models}

    def merge(slice_, source_names, out_name, t):
        shared = [slice_.get("parameters"), module_params, global_params]
        base_ref = slice_.get("base_model") or recipe.get("base_model")
        values = []
        for source, tensor in zip(slice_["sources"], source_names):
            scopes = [source.get("parameters")] + shared
            weight = resolve("weight", tensor, t, scopes)
            values.append((source["model"], models[key[source["model"]]][tensor].astype(np.float64), weight))
        if method == "passthrough":
            return values[0][1]
        if method == "linear":
            total = sum(w for _, _, w in values)
            normalize = resolve("normalize", out_name, t, shared)
            acc = sum(w * v for _, v, w in values)
            return acc / total if normalize in (None, True) else acc
        assert method == "task_arithmetic"
        base = next(v for m, v, _ in values if m == base_ref)
        lam = resolve("lambda", out_name, t, shared)  # a shared parameter: the output's name
        delta = sum(w * (v - base) for m, v, w in values if m != base_ref)
        return base + (1.0 if lam is None else lam) * delta

    out = {}
    first, last = slices[0], slices[-1]
    for name in PRE:
        out[name] = merge(first, [name] * len(first["sources"]), name, 0.0)
    index = 0
    for slice_ in slices:
        start = [s["layer_range"][0] for s in slice_["sources"]]
        n = slice_["sources"][0]["layer_range"][1] - slice_["sources"][0]["layer_range"][0]
        for i in range(n):
            t = i / (n - 1) if n > 1 else 1.0
            for suffix in LAYER_SHAPES:
                names = [f"model.layers.{s + i}.{suffix}" for s in start]
                out[f"model.layers.{index}.{suffix}"] = merge(slice_, names, f"model.layers.{index}.{suffix}", t)
            index += 1
    for name in POST:
        out[name] = merge(last, [name] * len(last["sources"]), name, 0.0)
    return out


FAILURES: list[str] = []


def check(cond: bool, message: str) -> None:
    if not cond:
        FAILURES.append(message)
        print("  FAIL: " + message)


def self_check(case: str, recipe: dict, models: dict) -> None:
    golden = load_file(str(ROOT / case / "model.safetensors"))
    if recipe["merge_method"] == "slerp":
        check(len([n for n in golden if ".layers." in n]) == 6 * len(LAYER_SHAPES), f"{case}: layer tensors")
        return
    reference = expected(recipe, models)
    check(sorted(golden) == sorted(reference), f"{case}: tensor names {sorted(set(golden) ^ set(reference))}")
    worst = max(float(np.max(np.abs(golden[n].astype(np.float64) - reference[n]))) for n in reference if n in golden)
    single = all(len(s["sources"]) == 1 for s in recipe.get("slices") or recipe.get("modules", {}).get("default", {}).get("slices", [{"sources": [1, 2]}]))
    check(worst == 0.0 if single else worst <= 1e-6, f"{case}: max |mergekit − numpy| = {worst}")
    layers = json.loads((ROOT / case / "config.json").read_text())["num_hidden_layers"]
    check(layers == sum(1 for n in golden if n.endswith(".input_layernorm.weight")), f"{case}: num_hidden_layers {layers}")
    print(f"  {case}: {layers} layers, max |mergekit − numpy float64| = {worst:.3g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mergekit", default=os.environ.get("MERGEKIT_YAML"),
                        help="path of mergekit-yaml (mergekit 0.1.5)")
    args = parser.parse_args()
    if not args.mergekit:
        raise SystemExit("give --mergekit PATH (or MERGEKIT_YAML): the goldens come from mergekit itself")
    models = make_models()
    write_models(models)
    for case, recipe in CASES.items():
        path = ROOT / f"{case}.yml"
        path.write_text(f"# {case}: made by make_slices_goldens.py; mergekit's output is in {case}/\n"
                        + yaml_dump(recipe) + "\n")
        run_mergekit(args.mergekit, case, path)
        self_check(case, recipe, models)
    if FAILURES:
        raise SystemExit(f"{len(FAILURES)} self-check(s) failed")
    print("all self-checks passed")


if __name__ == "__main__":
    main()
