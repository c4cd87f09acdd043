#!/usr/bin/env python3
"""Goldens from mergekit 0.1.5 itself for multi-document recipes (mergekit-multi) and the
model-plus-LoRA syntax (`model: PATH+ADAPTER`).

Usage (from the repository root; needs a Python environment with mergekit 0.1.5, whose PEFT
applies the adapters):

    python Fixtures/mergekit_goldens/make_multidoc_goldens.py --mergekit-bin /work/venvs/mergekit/bin

Reads the recipes multidoc_*.yml next to this script, in which the word FIXTURES stands for the
absolute path of Fixtures/ (the tests substitute it the same way), runs each with mergekit on CPU
in a temporary directory, and writes, next to this script (nothing else is touched):

  multidoc_chain.safetensors         mergekit-multi's output of multidoc_chain.yml: three documents
                                     in reverse dependency order (the output first, unnamed; it
                                     uses "blend", which uses "pair")
  multidoc_chain_pair.safetensors    mergekit-multi's intermediates of that recipe (its
  multidoc_chain_blend.safetensors   --intermediate-dir), to compare a kept work directory with
  multidoc_lora.safetensors          mergekit-yaml's output of multidoc_lora.yml: base_model and a
                                     model written MODEL+ADAPTER (PEFT merge_and_unload inside)
  multidoc_named_lora.safetensors    mergekit-multi's output of multidoc_named_lora.yml: a
                                     document's name with an adapter (NAME+ADAPTER)
  multidoc_cases.json                the recipes, the files, the versions and, per golden, the
                                     largest difference to a float64 numpy evaluation of the same
                                     recipe (linear / task arithmetic / PEFT's θ + (α/r)·B·A), the
                                     rounding a float32 implementation may show

Every golden holds the 21 float tensors of the tiny Llama (F32, __metadata__ {"format": "pt"});
mergekit drops the I64 buffer model.rotary_emb.position_ids when PEFT reloads a model, and the
buffer is no part of any golden. TIES (in multidoc_chain.yml's output) is checked against mergekit
only. Deterministic: re-running produces byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent
METADATA = {"format": "pt"}


def substitute(path: Path, into: Path) -> Path:
    text = path.read_text().replace("FIXTURES", str(FIXTURES))
    out = into / path.name
    out.write_text(text)
    return out


def floats(directory: Path) -> dict:
    tensors = {}
    for f in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return {k: v for k, v in tensors.items() if np.issubdtype(v.dtype, np.floating)}


def save_golden(path: Path, tensors: dict) -> None:
    out = {n: np.ascontiguousarray(v, dtype=np.float32) for n, v in sorted(tensors.items())}
    assert len(out) == 21, sorted(out)
    save_file(out, str(path), metadata=METADATA)
    os.chmod(path, 0o644)


def run(cmd: list[str]) -> None:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"failed: {' '.join(cmd)}")


COMMON = ["--no-cuda", "--no-copy-tokenizer", "--no-write-model-card", "--quiet", "--random-seed", "0"]


def versions(python: Path) -> dict:
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "['mergekit', 'torch', 'transformers', 'peft']}))")
    return json.loads(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout)


# numpy evaluations (float64) of the same recipes, for the manifest's rounding figures.

def model(name: str) -> dict:
    return {k: v.astype(np.float64) for k, v in floats(FIXTURES / "f32" / name).items()}


def lora_delta(adapter: Path) -> dict:
    """θ + (α/r)·B·A as PEFT merges a Linear adapter (rank and alpha patterns by exact suffix)."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    deltas = {}
    for key, a in weights.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len("base_model.model."):-len(".lora_A.weight")]
        b = weights[key.replace("lora_A", "lora_B")].astype(np.float64)
        rank = next((v for k, v in config.get("rank_pattern", {}).items() if module == k or module.endswith("." + k)), config["r"])
        alpha = next((v for k, v in config.get("alpha_pattern", {}).items() if module == k or module.endswith("." + k)),
                     config["lora_alpha"])
        deltas[module + ".weight"] = (alpha / rank) * (b @ a.astype(np.float64))
    return deltas


def with_lora(weights: dict, adapter: str) -> dict:
    deltas = lora_delta(FIXTURES / "svd_lora" / adapter)
    return {k: v + deltas.get(k, 0.0) for k, v in weights.items()}


def linear(models: list, weights: list) -> dict:
    total = sum(weights)
    return {k: sum(w * m[k] for m, w in zip(models, weights)) / total for k in models[0]}


def task_arithmetic(base: dict, models: list, weights: list) -> dict:
    return {k: base[k] + sum(w * (m[k] - base[k]) for m, w in zip(models, weights)) for k in base}


def f32(tensors: dict) -> dict:
    return {k: v.astype(np.float32).astype(np.float64) for k, v in tensors.items()}


def worst(golden: dict, reference: dict) -> float:
    return max(float(np.max(np.abs(golden[k].astype(np.float64) - reference[k]))) for k in golden)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mergekit-bin", required=True, help="the bin/ directory of an environment with mergekit 0.1.5")
    args = parser.parse_args()
    bin_dir = Path(args.mergekit_bin)
    cases = {"versions": versions(bin_dir / "python"), "cases": []}
    print("versions:", cases["versions"])
    base, a, b, c = model("base"), model("ft_a"), model("ft_b"), model("ft_c")

    with tempfile.TemporaryDirectory(prefix="mk-multidoc-") as tmp:
        tmp = Path(tmp)

        # Three documents in reverse dependency order; intermediates kept by mergekit-multi.
        recipe = substitute(HERE / "multidoc_chain.yml", tmp)
        run([str(bin_dir / "mergekit-multi"), str(recipe), "--intermediate-dir", str(tmp / "chain_work"),
             "--out-path", str(tmp / "chain_out"), "--lora-merge-cache", str(tmp / "cache")] + COMMON)
        pair, blend, out = floats(tmp / "chain_work" / "pair"), floats(tmp / "chain_work" / "blend"), floats(tmp / "chain_out")
        save_golden(HERE / "multidoc_chain_pair.safetensors", pair)
        save_golden(HERE / "multidoc_chain_blend.safetensors", blend)
        save_golden(HERE / "multidoc_chain.safetensors", out)
        # numpy from the stored (float32) intermediates, as each stage reads its inputs.
        np_pair = linear([a, b], [0.5, 0.5])
        np_blend = task_arithmetic(base, [f32(np_pair), b], [0.6, 0.3])
        cases["cases"].append({"name": "multidoc_chain", "recipe": "multidoc_chain.yml", "tool": "mergekit-multi",
                               "files": {"pair": "multidoc_chain_pair.safetensors", "blend": "multidoc_chain_blend.safetensors",
                                         "output": "multidoc_chain.safetensors"},
                               "float64_difference": {"pair": worst(pair, np_pair), "blend": worst(blend, np_blend)}})

        # MODEL+ADAPTER for a model and for the base.
        recipe = substitute(HERE / "multidoc_lora.yml", tmp)
        run([str(bin_dir / "mergekit-yaml"), str(recipe), str(tmp / "lora_out"), "--lora-merge-cache", str(tmp / "cache")] + COMMON)
        out = floats(tmp / "lora_out")
        save_golden(HERE / "multidoc_lora.safetensors", out)
        lora_base = f32(with_lora(base, "lora_b"))
        reference = task_arithmetic(lora_base, [f32(with_lora(a, "lora_a")), c], [0.7, 0.5])
        cases["cases"].append({"name": "multidoc_lora", "recipe": "multidoc_lora.yml", "tool": "mergekit-yaml",
                               "files": {"output": "multidoc_lora.safetensors"}, "float64_difference": {"output": worst(out, reference)}})

        # A document's name with an adapter.
        recipe = substitute(HERE / "multidoc_named_lora.yml", tmp)
        run([str(bin_dir / "mergekit-multi"), str(recipe), "--intermediate-dir", str(tmp / "named_work"),
             "--out-path", str(tmp / "named_out"), "--lora-merge-cache", str(tmp / "cache2")] + COMMON)
        out = floats(tmp / "named_out")
        save_golden(HERE / "multidoc_named_lora.safetensors", out)
        pair = f32(linear([a, b], [0.5, 0.5]))
        reference = task_arithmetic(base, [f32(with_lora(pair, "lora_a")), c], [0.8, 0.4])
        cases["cases"].append({"name": "multidoc_named_lora", "recipe": "multidoc_named_lora.yml", "tool": "mergekit-multi",
                               "files": {"output": "multidoc_named_lora.safetensors"},
                               "float64_difference": {"output": worst(out, reference)}})

    for case in cases["cases"]:
        for key, value in case["float64_difference"].items():
            case["float64_difference"][key] = float(f"{value:.3g}")
            print(f"{case['name']} {key}: mergekit vs float64 numpy {value:.3g}")
            if value > 1e-6:
                raise SystemExit(f"{case['name']} {key}: mergekit differs from numpy by {value}")
    (HERE / "multidoc_cases.json").write_text(json.dumps(cases, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
