#!/usr/bin/env python3
"""Relative Frobenius error ‖τ − ΔW‖/‖τ‖ of a PEFT LoRA adapter against the fine-tune it approximates.

Usage: lora_error.py BASE_DIR FT_DIR ADAPTER_DIR [--json OUT]

τ = θ_ft − θ₀ in float32 (norms in float64) for every weight the adapter targets; ΔW = (alpha/r)·B·A as PEFT merges it
(rank_pattern / alpha_pattern looked up by exact module name or PEFT's suffix rule, fan_in_fan_out and
lora_embedding_A/B transposed, use_rslora honoured). Reads tensor by tensor (safetensors safe_open), so
memory stays at a few tensors. Prints the mean and max error and the captured energy 1 − error².
Used by Benchmarks/extract_lora.sh to measure merge-cli's and mergekit's adapters the same way.
"""
import json
import math
import re
import sys
from pathlib import Path

import torch
from safetensors import safe_open


def open_dir(path: Path):
    handles = {}
    for f in sorted(path.glob("*.safetensors")):
        h = safe_open(str(f), framework="pt")
        for k in h.keys():
            handles[k] = h
    return handles


def pattern(patterns: dict, module: str, default):
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def main() -> int:
    base, ft, adapter = (Path(p) for p in sys.argv[1:4])
    out = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--json" else None
    config = json.loads((adapter / "adapter_config.json").read_text())
    factors = safe_open(str(adapter / "adapter_model.safetensors"), framework="pt")
    base_h, ft_h = open_dir(base), open_dir(ft)
    results = {}
    for key in sorted(factors.keys()):
        for a_suffix, b_suffix, embedding in ((".lora_A.weight", ".lora_B.weight", False),
                                              (".lora_embedding_A", ".lora_embedding_B", True)):
            if not key.endswith(a_suffix):
                continue
            module = key[: -len(a_suffix)].removeprefix("base_model.model.")
            a = factors.get_tensor(key).float()
            b = factors.get_tensor(key[: -len(a_suffix)] + b_suffix).float()
            r = pattern(config.get("rank_pattern") or {}, module, config["r"])
            alpha = pattern(config.get("alpha_pattern") or {}, module, config["lora_alpha"])
            scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
            delta = scale * (b @ a)
            if embedding or config.get("fan_in_fan_out"):
                delta = delta.T
            name = module + ".weight"
            tau = ft_h[name].get_tensor(name).float() - base_h[name].get_tensor(name).float()
            # Norms accumulated in float64 (float32 reductions over 10⁷ elements are off by ~1e-4).
            norm = torch.linalg.norm(tau.double()).item()
            results[name] = torch.linalg.norm((tau - delta).double()).item() / norm if norm > 0 else 0.0
    errors = list(results.values())
    mean = sum(errors) / len(errors)
    energy = sum(1 - e * e for e in errors) / len(errors)
    print(f"{adapter}: {len(errors)} weights, mean relative error {mean:.6f}, max {max(errors):.6f}, "
          f"mean captured energy {energy:.6f}")
    if out:
        Path(out).write_text(json.dumps({"weights": len(errors), "mean_relative_error": mean, "max_relative_error": max(errors),
                                         "mean_captured_energy": energy, "errors": results}, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
