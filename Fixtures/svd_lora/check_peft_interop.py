#!/usr/bin/env python3
"""PEFT interop of adapters written by `merge-cli extract-lora`, and the goldens the Swift tests use.

Usage (from the repository root, after `swift build`; needs numpy, safetensors, torch,
transformers and peft — /work/pyenv-mk/bin/python has them):

    /work/pyenv-mk/bin/python Fixtures/svd_lora/check_peft_interop.py [--merge-cli .build/debug/merge-cli]

For each case in CASES it

 1. runs `merge-cli extract-lora` on the fixtures, writing the adapter to Fixtures/svd_lora/extracted/<name>/
    (committed: the Swift tests merge these files without Python);
 2. checks the adapter against numpy (float64): every weight's B·A (as stored; (B·A)ᵀ for fan_in_fan_out
    and embeddings) has relative Frobenius error ‖τ − B·A‖/‖τ‖ equal to the optimal rank-k truncation
    error of τ = θ_ft − θ₀ (Eckart–Young) within `OPTIMALITY` for the exact SVD and `RANDOMIZED_SLACK`
    for the randomized one, and equal to the error merge-cli reported (--json) within 1e-5;
 3. loads the adapter with `PeftModel.from_pretrained` on the matching transformers model (no missing or
    unexpected keys allowed), runs `merge_and_unload()`, and saves the merged float tensors as
    Fixtures/svd_lora/extracted/peft_merged_<name>.safetensors (the golden);
 4. runs `merge-cli task-arithmetic --base BASE --lora ADAPTER` and checks that it equals PEFT's merge within
    TOLERANCE, and that PEFT's merge equals θ₀ + B·A computed in float64 from the stored factors;
 5. records how far a fresh extraction may be from the committed one on another CPU or LAPACK
    (`reextraction_tolerance`, see reextraction_tolerance()).

It also saves a PEFT-made adapter (use_rslora, an Embedding target saved as lora_embedding_A/B, lm_head
and o_proj; factors from numpy's default_rng(909)) as extracted/peft_rslora_embed/ with its
merge_and_unload() golden, and checks that merge-cli --lora reproduces it. It writes Fixtures/svd_lora/gpt2_ft/ (a fine-tune of the tiny GPT-2 in gpt2_base/: every float tensor
plus N(0, 0.01²) noise from numpy's default_rng(5150), deterministic) when it is missing, and
Fixtures/svd_lora/extracted/cases.json (arguments, tolerances, reported and optimal errors, versions).
Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent
ROOT = FIXTURES.parent
OUT = HERE / "extracted"
TOLERANCE = 2e-7          # merge-cli's merge vs PEFT's merge_and_unload (float32 tensors of size ~0.1)
# A fresh extraction vs the committed adapter (both merged) differs by more: the rank-k subspace of these
# noise-like deltas (small gaps σ_k − σ_k+1) amplifies float32 rounding, and by how much depends on the
# LAPACK and BLAS kernels (OpenBLAS picks them per CPU). Per case, as make_svd_lora_fixtures.py does for
# the SVD methods: 4× the larger difference between float64 and two float32 LAPACKs (numpy's OpenBLAS,
# torch's MKL) of θ₀ + the rank-k truncation, at least TOLERANCE (`reextraction_tolerance`).
OPTIMALITY = 1e-5         # exact SVD: relative error / optimal − 1 (float32 factors)
# Randomized SVD: within 3 % of the optimal error. The case uses p = 2 (so that ℓ = 8 < min(m, n) and the
# range finder really runs on these 16×24 matrices) on flat noise spectra, the hardest case for it; 2 %
# was measured. At model sizes with p = 10, q = 2 it is within 1 % (see LAPACK.swift).
RANDOMIZED_SLACK = 0.03

CASES = [
    # name, base, model, extract-lora arguments, transformers model kind
    ("llama_ft_a_r4", "f32/base", "f32/ft_a", ["--rank", "4"], "llama"),
    ("llama_ft_b_r6_randomized", "f32/base", "f32/ft_b", ["--rank", "6", "--randomized", "--oversampling", "2", "--seed", "7"], "llama"),
    ("llama_ft_c_r8_embeddings", "f32/base", "f32/ft_c", ["--rank", "8", "--embeddings"], "llama"),
    ("gpt2_fifo_r4", "svd_lora/gpt2_base", "svd_lora/gpt2_ft", ["--rank", "4", "--fan-in-fan-out"], "gpt2"),
]
FAILURES: list[str] = []


def check(condition: bool, message: str) -> None:
    if not condition:
        FAILURES.append(message)
        print("FAIL:", message, file=sys.stderr)


def load_float(path: Path) -> dict:
    files = [path] if path.suffix == ".safetensors" else sorted(path.glob("*.safetensors"))
    out = {}
    for f in files:
        out.update({k: v for k, v in load_file(str(f)).items() if np.issubdtype(v.dtype, np.floating)})
    return out


def make_gpt2_ft() -> None:
    target = HERE / "gpt2_ft"
    if (target / "model.safetensors").exists():
        return
    target.mkdir(exist_ok=True)
    base = load_file(str(HERE / "gpt2_base" / "model.safetensors"))
    rng = np.random.default_rng(5150)
    ft = {k: (v + rng.normal(0.0, 0.01, size=v.shape)).astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v
          for k, v in sorted(base.items())}
    save_file(ft, str(target / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(HERE / "gpt2_base" / "config.json", target / "config.json")
    for f in target.iterdir():
        os.chmod(f, 0o644)


def delta_from_adapter(adapter: Path) -> dict:
    """{base tensor: ΔW} in float64 from the stored factors, as PEFT defines it."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    out = {}
    for key in sorted(tensors):
        for a_suffix, b_suffix, embedding in ((".lora_A.weight", ".lora_B.weight", False),
                                              (".lora_embedding_A", ".lora_embedding_B", True)):
            if not key.endswith(a_suffix):
                continue
            module = key[: -len(a_suffix)].removeprefix("base_model.model.")
            a = tensors[key].astype(np.float64)
            b = tensors[key[: -len(a_suffix)] + b_suffix].astype(np.float64)
            r = pattern_value(config.get("rank_pattern") or {}, module, config["r"])
            alpha = pattern_value(config.get("alpha_pattern") or {}, module, config["lora_alpha"])
            check(a.shape[0] == r, f"{adapter.name}: {module} rank {a.shape[0]} != config {r}")
            scale = alpha / np.sqrt(r) if config.get("use_rslora") else alpha / r
            delta = scale * (b @ a)
            out[module + ".weight"] = delta.T if embedding or config["fan_in_fan_out"] else delta
    return out


def round_up_1_digit(x: float) -> float:
    if x <= 0:
        return 0.0
    magnitude = 10.0 ** math.floor(math.log10(x))
    return float(f"{math.ceil(x / magnitude - 1e-9) * magnitude:.1g}")


def reextraction_tolerance(theta0: dict, theta: dict, tensors: list, rank: int) -> tuple:
    """(float32 LAPACK spread, tolerance) of θ₀ + truncation_k(τ) over `tensors`: the largest |Δ| between
    the float64 truncation and float32 ones by numpy's and torch's SVD (factors split √s as extract-lora
    stores them, product and sum in float32), of τ and of τᵀ (extract-lora factorises τᵀ for embeddings
    and fan_in_fan_out)."""
    import torch
    diff = 0.0
    for t in tensors:
        w0 = theta0[t]
        tau32 = (theta[t] - w0).astype(np.float32)
        tau64 = theta[t].astype(np.float64) - w0.astype(np.float64)
        for transposed in (False, True):
            m32, m64 = (tau32.T, tau64.T) if transposed else (tau32, tau64)
            u, s, vt = np.linalg.svd(m64, full_matrices=False)
            k = min(rank, len(s))
            exact = (u[:, :k] * s[:k]) @ vt[:k]
            golden = w0.astype(np.float64) + (exact.T if transposed else exact)
            for u, s, vt in (np.linalg.svd(m32, full_matrices=False),
                             tuple(x.numpy() for x in torch.linalg.svd(torch.from_numpy(np.ascontiguousarray(m32)), full_matrices=False))):
                root = np.sqrt(s[:k]).astype(np.float32)
                product = (u[:, :k] * root) @ (root[:, None] * vt[:k])
                single = w0 + (product.T if transposed else product)
                diff = max(diff, float(np.max(np.abs(single.astype(np.float64) - golden))))
    return diff, max(TOLERANCE, round_up_1_digit(4 * diff))


def pattern_value(patterns: dict, module: str, default):
    """PEFT's get_pattern_key: the first key k with the module name matching (.*\\.)?(k)$."""
    import re
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def peft_made_adapter(cli: str) -> dict:
    """A PEFT-made adapter with use_rslora on an Embedding (lora_embedding_A/B), lm_head and o_proj of the
    tiny Llama: merge-cli --lora must give PEFT's merge_and_unload()."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    name = "peft_rslora_embed"
    adapter = OUT / name
    model = get_peft_model(load_model("llama", FIXTURES / "f32" / "base"),
                           LoraConfig(r=4, lora_alpha=6, use_rslora=True, target_modules=["embed_tokens", "lm_head", "o_proj"],
                                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM"))
    rng = np.random.default_rng(909)
    with torch.no_grad():
        for pname, p in sorted(model.named_parameters(), key=lambda item: item[0]):
            if "lora_" in pname:
                p.copy_(torch.from_numpy(rng.normal(0.0, 0.1, size=tuple(p.shape)).astype(np.float32)))
    if adapter.exists():
        shutil.rmtree(adapter)
    model.save_pretrained(str(adapter))
    (adapter / "README.md").unlink(missing_ok=True)
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "f32/base"
    (adapter / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for f in adapter.iterdir():
        os.chmod(f, 0o644)
    keys = sorted(load_file(str(adapter / "adapter_model.safetensors")))
    print(f"{name}: PEFT saved {keys[:2]} ...")
    theta0 = load_float(FIXTURES / "f32" / "base")
    merged = PeftModel.from_pretrained(load_model("llama", FIXTURES / "f32" / "base"), str(adapter)).merge_and_unload()
    state = {k: v.detach().numpy().copy() for k, v in merged.state_dict().items() if k in theta0}
    golden = OUT / f"peft_merged_{name}.safetensors"
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(state.items())}, str(golden), metadata={"format": "pt"})
    os.chmod(golden, 0o644)
    deltas = delta_from_adapter(adapter)
    check(sorted(deltas) == ["lm_head.weight", "model.embed_tokens.weight", "model.layers.0.self_attn.o_proj.weight",
                             "model.layers.1.self_attn.o_proj.weight"], f"{name}: targets {sorted(deltas)}")
    worst64 = max(float(np.max(np.abs(state[n] - (theta0[n].astype(np.float64) + deltas.get(n, 0.0))))) for n in theta0)
    check(worst64 <= TOLERANCE, f"{name}: PEFT merge vs float64 θ0 + (α/√r)·B·A differs by {worst64}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "merged.safetensors"
        run = subprocess.run([cli, "task-arithmetic", "--base", "f32/base", "--lora", str(adapter.relative_to(FIXTURES)),
                              "-o", str(out), "--quiet"], cwd=FIXTURES, capture_output=True, text=True)
        check(run.returncode == 0, f"{name}: merge failed: {run.stderr}")
        mine = load_float(out) if run.returncode == 0 else {}
    diff = max(float(np.max(np.abs(mine[n].astype(np.float64) - state[n]))) for n in state) if mine else float("inf")
    print(f"{name}: PEFT merge_and_unload vs merge-cli --lora: max |Δ| = {diff:.3g}; vs float64: {worst64:.3g}")
    check(diff <= TOLERANCE, f"{name}: merge-cli differs from PEFT by {diff}")
    return {"name": name, "base": "f32/base", "adapter": f"svd_lora/extracted/{name}", "tolerance": TOLERANCE,
            "peft_merged": f"svd_lora/extracted/peft_merged_{name}.safetensors", "merge_cli_vs_peft": float(f"{diff:.3g}"),
            "changed_tensors": sorted(deltas)}


def load_model(kind: str, base_dir: Path):
    import torch
    from transformers import AutoConfig, GPT2LMHeadModel, LlamaForCausalLM
    if kind == "gpt2":
        return GPT2LMHeadModel.from_pretrained(str(base_dir), dtype=torch.float32).eval()
    config = AutoConfig.from_pretrained(str(base_dir))
    model = LlamaForCausalLM(config).to(torch.float32)
    state = {k: torch.from_numpy(v.copy()) for k, v in load_float(base_dir).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    check(not missing and not unexpected, f"{base_dir}: missing {missing}, unexpected {unexpected}")
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merge-cli", default=str(ROOT / ".build" / "debug" / "merge-cli"))
    args = parser.parse_args()
    cli = str(Path(args.merge_cli).resolve())

    import peft
    import torch
    import transformers
    from peft import PeftModel
    torch.manual_seed(0)

    make_gpt2_ft()
    OUT.mkdir(exist_ok=True)
    manifest = {"cases": [], "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                          "peft": peft.__version__, "numpy": np.__version__}}
    for name, base, model, extract_args, kind in CASES:
        adapter = OUT / name
        if adapter.exists():
            shutil.rmtree(adapter)
        run = subprocess.run([cli, "extract-lora", "--base", base, "--model", model, *extract_args,
                              "-o", str(adapter.relative_to(FIXTURES)), "--json", "--threads", "2"],
                             cwd=FIXTURES, capture_output=True, text=True)
        check(run.returncode == 0, f"{name}: extract-lora failed: {run.stderr}")
        if run.returncode != 0:
            continue
        report = json.loads(run.stdout)
        for f in adapter.iterdir():
            os.chmod(f, 0o644)

        # 2. numpy: optimality of the stored factors, and the reported errors.
        theta0, theta = load_float(FIXTURES / base), load_float(FIXTURES / model)
        deltas = delta_from_adapter(adapter)
        randomized = "--randomized" in extract_args
        errors = {}
        for entry in report["tensors"]:
            t = entry["tensor"]
            tau = theta[t].astype(np.float64) - theta0[t].astype(np.float64)
            s = np.linalg.svd(tau, compute_uv=False)
            k = entry["rank"]
            optimal = float(np.sqrt(np.sum(s[k:] ** 2)) / np.linalg.norm(tau))
            actual = float(np.linalg.norm(tau - deltas[t]) / np.linalg.norm(tau))
            errors[t] = {"optimal": optimal, "actual": actual, "reported": entry["relative_error"]}
            slack = RANDOMIZED_SLACK if randomized else OPTIMALITY
            check(actual <= optimal * (1 + slack) + 1e-6, f"{name}: {t}: error {actual} vs optimal {optimal}")
            check(abs(actual - entry["relative_error"]) <= 1e-5 * max(1.0, actual), f"{name}: {t}: reported {entry['relative_error']} vs {actual}")
        worst = max(e["actual"] / e["optimal"] if e["optimal"] > 0 else 1.0 for e in errors.values())
        print(f"{name}: {len(errors)} weights, worst error / optimal = {worst:.6f}")
        spread, reextraction = reextraction_tolerance(theta0, theta, sorted(errors), int(extract_args[extract_args.index("--rank") + 1]))
        print(f"{name}: float32 LAPACKs differ from float64 by {spread:.3g}; re-extraction tolerance {reextraction:g}")

        # 3. PEFT loads it and merges.
        base_dir = FIXTURES / base
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            peft_model = PeftModel.from_pretrained(load_model(kind, base_dir), str(adapter))
        key_warnings = [str(w.message) for w in caught if "key" in str(w.message).lower()]
        check(not key_warnings, f"{name}: PEFT warned about keys: {key_warnings}")
        loaded = {k for k, _ in peft_model.named_parameters() if "lora_" in k}
        check(len(loaded) == 2 * len(errors), f"{name}: PEFT made {len(loaded)} LoRA parameters for {len(errors)} weights")
        merged = peft_model.merge_and_unload()
        state = {k: v.detach().numpy().copy() for k, v in merged.state_dict().items() if k in theta0}
        check(sorted(state) == sorted(theta0), f"{name}: merged names differ: {sorted(set(state) ^ set(theta0))}")
        golden = OUT / f"peft_merged_{name}.safetensors"
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(state.items())}, str(golden),
                  metadata={"format": "pt"})
        os.chmod(golden, 0o644)
        worst64 = max(float(np.max(np.abs(state[n] - (theta0[n].astype(np.float64) + deltas.get(n, 0.0))))) for n in theta0)
        check(worst64 <= TOLERANCE, f"{name}: PEFT merge vs float64 θ0 + B·A differs by {worst64}")

        # 4. merge-cli predicts PEFT's merge.
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "merged.safetensors"
            run = subprocess.run([cli, "task-arithmetic", "--base", base, "--lora", str(adapter.relative_to(FIXTURES)),
                                  "-o", str(out), "--quiet"], cwd=FIXTURES, capture_output=True, text=True)
            check(run.returncode == 0, f"{name}: merge failed: {run.stderr}")
            mine = load_float(out) if run.returncode == 0 else {}
        diff = max(float(np.max(np.abs(mine[n].astype(np.float64) - state[n]))) for n in state) if mine else float("inf")
        print(f"{name}: PEFT merge_and_unload vs merge-cli --lora: max |Δ| = {diff:.3g}; vs float64: {worst64:.3g}")
        check(diff <= TOLERANCE, f"{name}: merge-cli differs from PEFT by {diff}")
        manifest["cases"].append({
            "name": name, "base": base, "model": model, "args": extract_args, "adapter": f"svd_lora/extracted/{name}",
            "peft_merged": f"svd_lora/extracted/peft_merged_{name}.safetensors", "tolerance": TOLERANCE,
            "merge_cli_vs_peft": float(f"{diff:.3g}"), "randomized": randomized,
            "float32_lapack_difference": float(f"{spread:.3g}"), "reextraction_tolerance": reextraction,
            "errors": {t: {k: float(f"{v:.9g}") for k, v in e.items()} for t, e in sorted(errors.items())},
        })
    manifest["peft_made"] = [peft_made_adapter(cli)]
    (OUT / "cases.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.chmod(OUT / "cases.json", 0o644)
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
