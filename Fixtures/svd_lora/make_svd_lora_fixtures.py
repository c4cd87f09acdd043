#!/usr/bin/env python3
"""Goldens for the SVD-based merges (TSV-M, Iso-C) and PEFT LoRA adapters as task vectors.

Usage (from the repository root; needs numpy + safetensors, and torch + transformers + peft for
the LoRA part):

    /work/pyenv-mk/bin/python Fixtures/svd_lora/make_svd_lora_fixtures.py

Writes, under Fixtures/svd_lora/ (nothing else is touched):

  tsvm.safetensors, tsvm_2tasks.safetensors   TSV-M goldens (numpy, float64, rounded once to F32)
  isoc.safetensors, isoc_scale0.5.safetensors  Iso-C goldens (same)
  lora_a/, lora_b/                 PEFT LoRA adapters for the tiny Llama of f32/base
                                   (adapter_config.json + adapter_model.safetensors)
  merged_lora_a.safetensors, merged_lora_b.safetensors
                                   PEFT merge_and_unload() of each adapter onto f32/base
  merged_both.safetensors          θ0 + ΔW_a + ΔW_b (task arithmetic of both adapters, weights 1)
  gpt2_base/, lora_gpt2_fifo/, merged_lora_gpt2_fifo.safetensors
                                   a tiny GPT-2 (Conv1D weights stored [in, out]) with a
                                   fan_in_fan_out = true adapter and its merge_and_unload()
  cases.json                       manifest: CLI arguments, files, tolerances
  peft_rules/                      PEFT's module selection and orientation rules (see peft_rule_fixtures):
                                   adapters whose file holds factors the config does not target, their
                                   merge_and_unload() goldens, configs PEFT refuses, and cases.json

With --peft-rules only peft_rules/ is (re)written (nothing else changes).

TSV-M (Gargiulo et al., CVPR 2025), per 2-D float tensor, T tasks:
    τ_t = U_t Σ_t V_tᵀ (thin SVD), k = ⌊min(m, n)/T⌋, keep the top k triplets of each task;
    U = [U_1,k … U_T,k] (m×Tk), Σ = [Σ_1,k … Σ_T,k], V = [V_1,k … V_T,k] (n×Tk);
    U⊥ = P_U Q_Uᵀ from U = P_U S_U Q_Uᵀ, V⊥ likewise;  τ = U⊥ diag(Σ) V⊥ᵀ.
  Non-2-D tensors: mean of the τ_t.  θ = θ0 + α τ, α = 1.
  The authors' code (AntoAndGar/task_singular_vectors, src/utils/TSVM_utils.py,
  compute_and_sum_svd_mem_reduction) writes the kept triplets into zero-padded m×min(m,n) /
  min(m,n)×n buffers and takes the polar factors of those; the script also evaluates that form
  and checks that it gives the same τ (it must: the padded columns meet zero singular values).
Iso-C (Marczak et al. 2025), per 2-D float tensor: M = Σ_t τ_t = U Σ Vᵀ, τ = mean(σ)·U Vᵀ;
  non-2-D tensors: mean of the τ_t (authors' iso_c: `sum(tvs)/len(tvs)`, multiplied back by T
  for matrices only).  θ = θ0 + α τ.
Every 2-D float tensor is a "matrix", embeddings and lm_head included (the authors exclude only
CLIP's `text_projection`). The I64 buffer `model.rotary_emb.position_ids` is not in the goldens.

Self-checks (exit status 1 if one fails): the padded (authors') TSV-M form equals the concatenated
form; every case recomputed in float32 numpy (np.linalg.svd → LAPACK sgesdd) stays within the
tolerance written to cases.json (4× the larger difference of two float32 LAPACKs, numpy's and
torch's, at least 2e-7); PEFT's merges equal θ0 + (α/r)·B·A (transposed for
fan_in_fan_out) computed in float64 from the saved adapter weights; PEFT's two-adapter merge
agrees with merged_both.

Deterministic: numpy's default_rng with fixed seeds for every random number, sorted JSON keys;
re-running produces byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent
METADATA = {"format": "pt"}
TASKS = ["ft_a", "ft_b", "ft_c"]
FAILURES: list[str] = []


def check(condition: bool, message: str) -> None:
    if not condition:
        FAILURES.append(message)
        print("FAIL:", message, file=sys.stderr)


def save_golden(path: Path, tensors: dict) -> None:
    out = {n: np.ascontiguousarray(v, dtype=np.float32) for n, v in sorted(tensors.items())}
    save_file(out, str(path), metadata=METADATA)
    os.chmod(path, 0o644)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    os.chmod(path, 0o644)


def load_inputs():
    """base and the fine-tuned models as {name: float32 array}, float tensors only."""
    raw = {m: load_file(str(FIXTURES / "f32" / m / "model.safetensors")) for m in ["base"] + TASKS}
    names = sorted(k for k, v in raw["base"].items() if np.issubdtype(v.dtype, np.floating))
    for m in raw:
        assert sorted(k for k, v in raw[m].items() if np.issubdtype(v.dtype, np.floating)) == names, m
    return names, {n: raw["base"][n] for n in names}, [{n: raw[m][n] for n in names} for m in TASKS]


def ulp_bound(values: np.ndarray) -> float:
    return float(np.max(np.spacing(np.abs(values).astype(np.float32))))


# ======================================================================================
# TSV-M and Iso-C (dtype-generic: float64 for the goldens, float32 for the rounding check)
# ======================================================================================

def polar(m: np.ndarray) -> np.ndarray:
    p, _, qt = np.linalg.svd(m, full_matrices=False)
    return p @ qt


def tsvm_matrix(taus: list[np.ndarray]) -> np.ndarray:
    t = len(taus)
    m, n = taus[0].shape
    k = min(m, n) // t
    us, ss, vs = [], [], []
    for tau in taus:
        u, s, vt = np.linalg.svd(tau, full_matrices=False)
        us.append(u[:, :k])
        ss.append(s[:k])
        vs.append(vt[:k, :].T)
    u_cat, s_cat, v_cat = np.concatenate(us, axis=1), np.concatenate(ss), np.concatenate(vs, axis=1)
    return polar(u_cat) @ np.diag(s_cat) @ polar(v_cat).T


def tsvm_matrix_authors(taus: list[np.ndarray]) -> np.ndarray:
    """The zero-padded form of compute_and_sum_svd_mem_reduction (sv_reduction = 1/T)."""
    t = len(taus)
    sum_u = sum_s = sum_v = None
    for i, tau in enumerate(taus):
        u, s, v = np.linalg.svd(tau, full_matrices=False)
        if i == 0:
            sum_u, sum_s, sum_v = np.zeros_like(u), np.zeros_like(s), np.zeros_like(v)
        r = int(s.shape[0] * (1 / t))
        sum_u[:, i * r:(i + 1) * r] = u[:, :r]
        sum_s[i * r:(i + 1) * r] = s[:r]
        sum_v[i * r:(i + 1) * r, :] = v[:r, :]
    u_u, _, v_u = np.linalg.svd(sum_u, full_matrices=False)
    u_v, _, v_v = np.linalg.svd(sum_v, full_matrices=False)
    return u_u @ v_u @ np.diag(sum_s) @ u_v @ v_v


def isoc_matrix(taus: list[np.ndarray]) -> np.ndarray:
    u, s, vt = np.linalg.svd(sum(taus), full_matrices=False)
    return s.mean() * (u @ vt)


def merge(names, base, models, method: str, alpha: float, dtype, svd=None) -> dict:
    """θ0 + α τ over every float tensor; `svd` replaces np.linalg.svd (for the float32 check with
    another LAPACK)."""
    out = {}
    for name in names:
        b = base[name].astype(dtype)
        taus = [mdl[name].astype(dtype) - b for mdl in models] if dtype == np.float32 else \
               [mdl[name].astype(np.float64) - base[name].astype(np.float64) for mdl in models]
        if b.ndim == 2:
            saved = np.linalg.svd
            if svd is not None:
                np.linalg.svd = svd
            try:
                tau = tsvm_matrix(taus) if method == "tsv-m" else isoc_matrix(taus)
            finally:
                np.linalg.svd = saved
        else:
            tau = sum(taus) / len(taus)
        out[name] = (b + dtype(alpha) * tau).astype(np.float32)
    return out


def torch_svd(a, full_matrices=False, compute_uv=True):
    """np.linalg.svd's interface on torch.linalg.svd (torch's own LAPACK, MKL on x86 wheels), in
    the input's precision."""
    import torch
    u, s, vt = torch.linalg.svd(torch.from_numpy(np.ascontiguousarray(a)), full_matrices=full_matrices)
    return (u.numpy(), s.numpy(), vt.numpy()) if compute_uv else s.numpy()


def svd_diagnostics(names, base, models) -> dict:
    """How well-conditioned the goldens are: the smallest relative gap σ_k − σ_{k+1} at TSV-M's
    cut, and the smallest singular value of the concatenated U and V (polar factor sensitivity)
    and of the Iso-C sum."""
    worst_gap, worst_cat, worst_sum = math.inf, math.inf, math.inf
    for t in (2, 3):
        for name in names:
            if base[name].ndim != 2:
                continue
            taus = [m[name].astype(np.float64) - base[name].astype(np.float64) for m in models[:t]]
            m_, n_ = taus[0].shape
            k = min(m_, n_) // t
            us, vs = [], []
            for tau in taus:
                u, s, vt = np.linalg.svd(tau, full_matrices=False)
                if k < len(s):
                    worst_gap = min(worst_gap, (s[k - 1] - s[k]) / s[0])
                us.append(u[:, :k])
                vs.append(vt[:k].T)
            worst_cat = min(worst_cat, np.linalg.svd(np.concatenate(us, 1), compute_uv=False).min(),
                            np.linalg.svd(np.concatenate(vs, 1), compute_uv=False).min())
            if t == 3:
                s = np.linalg.svd(sum(taus), compute_uv=False)
                worst_sum = min(worst_sum, s.min() / s.max())
    return {"tsvm_min_relative_gap_at_cut": worst_gap, "tsvm_min_sigma_concatenated_UV": worst_cat,
            "isoc_min_sigma_ratio_of_sum": worst_sum}


def round_up_1_digit(x: float) -> float:
    if x <= 0:
        return 0.0
    magnitude = 10.0 ** math.floor(math.log10(x))
    return float(f"{math.ceil(x / magnitude - 1e-9) * magnitude:.1g}")


def svd_goldens() -> list[dict]:
    names, base, models = load_inputs()
    diagnostics = svd_diagnostics(names, base, models)
    print("conditioning:", {k: f"{v:.3g}" for k, v in diagnostics.items()})

    # The authors' padded TSV-M form gives the same τ.
    worst = 0.0
    for t in (2, 3):
        for name in names:
            if base[name].ndim == 2:
                taus = [m[name].astype(np.float64) - base[name].astype(np.float64) for m in models[:t]]
                a, b = tsvm_matrix(taus), tsvm_matrix_authors(taus)
                worst = max(worst, float(np.max(np.abs(a - b))))
    print(f"TSV-M concatenated vs authors' zero-padded form: max |Δτ| = {worst:.3g}")
    check(worst < 1e-15, f"TSV-M padded form differs by {worst}")

    specs = [
        ("tsvm", "tsv-m", 1.0, TASKS),
        ("tsvm_2tasks", "tsv-m", 1.0, TASKS[:2]),
        ("isoc", "iso-c", 1.0, TASKS),
        ("isoc_scale0.5", "iso-c", 0.5, TASKS),
    ]
    cases = []
    for stem, method, alpha, tasks in specs:
        chosen = [models[TASKS.index(t)] for t in tasks]
        golden = merge(names, base, chosen, method, alpha, np.float64)
        # Float32 recomputations with two LAPACKs: numpy's (OpenBLAS) and torch's (MKL). TSV-M's
        # cut (relative gaps σ_k − σ_k+1 down to ~0.03 on these tiny matrices) and polar factors
        # (σ_min of the concatenated U ~0.04) amplify float32 rounding, and by how much depends
        # on the LAPACK build: numpy's agrees to ~2e-8 where MKL's differs by ~2e-7.
        diff = 0.0
        for svd in (None, torch_svd):
            single = merge(names, base, chosen, method, alpha, np.float32, svd=svd)
            diff = max(diff, max(float(np.max(np.abs(golden[n].astype(np.float64) - single[n]))) for n in names))
        # Tolerance: 4× the larger float32 difference, at least 2e-7 (as method_goldens).
        tolerance = max(2e-7, round_up_1_digit(4 * diff))
        print(f"{stem}: float32 recomputation differs by {diff:.3g}; tolerance {tolerance:g}")
        save_golden(HERE / f"{stem}.safetensors", golden)
        inputs = ["--base", "f32/base"]
        for t in tasks:
            inputs += ["--model", f"f32/{t}"]
        cases.append({
            "name": stem, "method": method, "inputs": inputs,
            "args": ["--scale", f"{alpha:g}"],
            "file": f"svd_lora/{stem}.safetensors", "reference": "numpy", "tolerance": tolerance,
            "float32_difference": float(f"{diff:.3g}"),
        })
    return cases


# ======================================================================================
# LoRA (torch + transformers + peft)
# ======================================================================================

LORA_TARGETS = ["q_proj", "v_proj", "down_proj"]


def randomize_lora(model, seed: int, std: float = 0.1) -> None:
    """Deterministic non-zero A and B (PEFT initialises B to zero), from numpy, in name order."""
    import torch
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda item: item[0]):
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(torch.from_numpy(rng.normal(0.0, std, size=tuple(p.shape)).astype(np.float32)))


def tidy_adapter_dir(path: Path) -> None:
    # save_pretrained also writes a model-card README.md; it carries nothing PEFT needs to load.
    readme = path / "README.md"
    if readme.exists():
        readme.unlink()
    for f in path.iterdir():
        os.chmod(f, 0o644)
    config_path = path / "adapter_config.json"
    config = json.loads(config_path.read_text())
    write_json(config_path, config)


def delta_from_adapter(adapter_dir: Path) -> dict:
    """{PEFT module name: ΔW (float64)} from the saved files, the way MergeKit is to read them:
    scale = alpha/r per module (rank_pattern / alpha_pattern honoured, regex suffix match as in
    peft.utils.other.get_pattern_key), ΔW = scale·B·A, transposed when fan_in_fan_out."""
    import re
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    out = {}
    for key in sorted(tensors):
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[: -len(".lora_A.weight")]
        a = tensors[key].astype(np.float64)
        b = tensors[module + ".lora_B.weight"].astype(np.float64)
        short = module.removeprefix("base_model.model.")

        def pattern_value(patterns: dict, default):
            for pattern, value in patterns.items():
                if re.match(rf"(.*\.)?({pattern})$", short):
                    return value
            return default

        r = pattern_value(config.get("rank_pattern") or {}, config["r"])
        alpha = pattern_value(config.get("alpha_pattern") or {}, config["lora_alpha"])
        assert a.shape[0] == r and b.shape[1] == r, (module, a.shape, b.shape, r)
        scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        delta = scale * (b @ a)
        if config.get("fan_in_fan_out"):
            delta = delta.T
        out[short + ".weight"] = delta
    return out


def lora_fixtures() -> list[dict]:
    import peft
    import safetensors
    import torch
    import transformers
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoConfig, GPT2Config, GPT2LMHeadModel, LlamaForCausalLM

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                "numpy": np.__version__, "safetensors": safetensors.__version__,
                "python": sys.version.split()[0]}
    print("versions:", versions)

    base_dir = FIXTURES / "f32" / "base"
    base_raw = load_file(str(base_dir / "model.safetensors"))
    base_float = {k: v for k, v in base_raw.items() if np.issubdtype(v.dtype, np.floating)}

    def load_llama():
        config = AutoConfig.from_pretrained(str(base_dir))
        model = LlamaForCausalLM(config).to(torch.float32)
        state = {k: torch.from_numpy(v.copy()) for k, v in base_float.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        check(not missing, f"Llama: missing keys {missing}")
        check(not unexpected, f"Llama: unexpected keys {unexpected}")
        # The fixture config has no name; record where the base lives, relative to the adapter.
        model.config.name_or_path = "../../f32/base"
        model.eval()
        return model

    adapters = {
        "lora_a": dict(seed=101, config=dict(r=4, lora_alpha=8, target_modules=LORA_TARGETS, lora_dropout=0.0,
                                             bias="none", task_type="CAUSAL_LM")),
        "lora_b": dict(seed=202, config=dict(r=4, lora_alpha=8, target_modules=LORA_TARGETS, lora_dropout=0.0,
                                             bias="none", task_type="CAUSAL_LM",
                                             rank_pattern={"model.layers.1.mlp.down_proj": 2},
                                             alpha_pattern={"model.layers.1.mlp.down_proj": 3,
                                                            "layers.0.self_attn.v_proj": 16})),
    }
    cases = []
    merged_single = {}
    for stem, spec in adapters.items():
        model = load_llama()
        peft_model = get_peft_model(model, LoraConfig(**spec["config"]))
        randomize_lora(peft_model, spec["seed"])
        out_dir = HERE / stem
        if out_dir.exists():
            shutil.rmtree(out_dir)
        peft_model.save_pretrained(str(out_dir))
        tidy_adapter_dir(out_dir)

        # Reload from disk as a user would, then merge.
        reloaded = PeftModel.from_pretrained(load_llama(), str(out_dir))
        merged = reloaded.merge_and_unload()
        state = {k: v.detach().numpy().copy() for k, v in merged.state_dict().items() if k in base_float}
        check(sorted(state) == sorted(base_float), f"{stem}: merged names {sorted(set(state) ^ set(base_float))}")
        save_golden(HERE / f"merged_{stem}.safetensors", state)
        merged_single[stem] = state

        deltas = delta_from_adapter(out_dir)
        worst, changed = 0.0, sorted(deltas)
        for name, value in base_float.items():
            expected = value.astype(np.float64) + deltas.get(name, 0.0)
            worst = max(worst, float(np.max(np.abs(state[name] - expected))))
            if name not in deltas:
                check(np.array_equal(state[name], value), f"{stem}: {name} changed but is not targeted")
        print(f"{stem}: PEFT merge_and_unload vs float64 θ0 + (α/r)·B·A: max diff {worst:.3g}; "
              f"{len(changed)} tensors change")
        check(worst < 2e-7, f"{stem}: PEFT merge differs from float64 by {worst}")
        cases.append({
            "name": f"merged_{stem}", "method": "task-arithmetic",
            "inputs": ["--base", "f32/base", "--lora", f"svd_lora/{stem}"], "args": ["--scale", "1"],
            "file": f"svd_lora/merged_{stem}.safetensors", "reference": "peft merge_and_unload",
            "tolerance": 2e-7, "float32_difference": float(f"{worst:.3g}"), "changed_tensors": changed,
        })

    # Both adapters, weights 1: θ0 + ΔW_a + ΔW_b in float64, rounded once.
    da, db = delta_from_adapter(HERE / "lora_a"), delta_from_adapter(HERE / "lora_b")
    both = {n: v.astype(np.float64) + da.get(n, 0.0) + db.get(n, 0.0) for n, v in base_float.items()}
    save_golden(HERE / "merged_both.safetensors", both)
    # Cross-check with PEFT merging both adapters into one model.
    model = PeftModel.from_pretrained(load_llama(), str(HERE / "lora_a"), adapter_name="lora_a")
    model.load_adapter(str(HERE / "lora_b"), adapter_name="lora_b")
    merged = model.merge_and_unload(adapter_names=["lora_a", "lora_b"])
    peft_both = {k: v.detach().numpy() for k, v in merged.state_dict().items() if k in base_float}
    worst = max(float(np.max(np.abs(peft_both[n] - both[n].astype(np.float32)))) for n in base_float)
    print(f"merged_both: PEFT merge_and_unload(adapter_names=[a, b]) vs float64 golden: max diff {worst:.3g}")
    check(worst < 2e-7, f"merged_both differs from PEFT by {worst}")
    cases.append({
        "name": "merged_both", "method": "task-arithmetic",
        "inputs": ["--base", "f32/base", "--lora", "svd_lora/lora_a", "--lora", "svd_lora/lora_b"],
        "args": ["--weight", "1", "--weight", "1", "--scale", "1"],
        "file": "svd_lora/merged_both.safetensors", "reference": "numpy (θ0 + ΔW_a + ΔW_b, float64); "
        "PEFT merge_and_unload(adapter_names=[lora_a, lora_b]) agrees",
        "tolerance": 2e-7, "float32_difference": float(f"{worst:.3g}"),
        "changed_tensors": sorted(set(da) | set(db)),
    })

    # fan_in_fan_out = true on a Linear target: PEFT warns and forces it to False.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probe = get_peft_model(load_llama(), LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj"], fan_in_fan_out=True))
    forced = probe.peft_config["default"].fan_in_fan_out
    messages = [str(w.message) for w in caught if "fan_in_fan_out" in str(w.message)]
    print(f"fan_in_fan_out=True on nn.Linear: config afterwards {forced}; warning: {messages[:1]}")
    check(forced is False, "PEFT kept fan_in_fan_out on a Linear target")

    # A tiny GPT-2, whose Conv1D weights are stored [in, out]: there fan_in_fan_out is true.
    gpt2_dir = HERE / "gpt2_base"
    gpt2_config = GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=2, n_head=4, n_inner=32,
                             bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    torch.manual_seed(1234)
    gpt2 = GPT2LMHeadModel(gpt2_config).to(torch.float32).eval()
    # Re-draw every weight from numpy so the values do not depend on torch's initialisers.
    rng = np.random.default_rng(4321)
    with torch.no_grad():
        for name, p in sorted(gpt2.named_parameters(), key=lambda item: item[0]):
            p.copy_(torch.from_numpy(rng.normal(0.0, 0.02, size=tuple(p.shape)).astype(np.float32)))
    if gpt2_dir.exists():
        shutil.rmtree(gpt2_dir)
    gpt2.save_pretrained(str(gpt2_dir), safe_serialization=True)
    for f in gpt2_dir.iterdir():
        os.chmod(f, 0o644)
    gpt2_base = load_file(str(gpt2_dir / "model.safetensors"))

    def load_gpt2():
        m = GPT2LMHeadModel.from_pretrained(str(gpt2_dir), dtype=torch.float32).eval()
        m.config.name_or_path = "../gpt2_base"
        return m

    fifo_dir = HERE / "lora_gpt2_fifo"
    fifo = get_peft_model(load_gpt2(), LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "mlp.c_fc"],
                                                  fan_in_fan_out=True, lora_dropout=0.0, bias="none",
                                                  task_type="CAUSAL_LM"))
    randomize_lora(fifo, 303)
    if fifo_dir.exists():
        shutil.rmtree(fifo_dir)
    fifo.save_pretrained(str(fifo_dir))
    tidy_adapter_dir(fifo_dir)
    merged = PeftModel.from_pretrained(load_gpt2(), str(fifo_dir)).merge_and_unload()
    state = {k: v.detach().numpy().copy() for k, v in merged.state_dict().items() if k in gpt2_base}
    check(sorted(state) == sorted(gpt2_base), f"gpt2: merged names {sorted(set(state) ^ set(gpt2_base))}")
    save_golden(HERE / "merged_lora_gpt2_fifo.safetensors", state)
    deltas = delta_from_adapter(fifo_dir)
    worst = 0.0
    for name, value in gpt2_base.items():
        expected = value.astype(np.float64) + deltas.get(name, 0.0)
        worst = max(worst, float(np.max(np.abs(state[name] - expected))))
    print(f"lora_gpt2_fifo: PEFT vs float64 θ0 + (α/r)·(B·A)ᵀ: max diff {worst:.3g}; changed {sorted(deltas)}")
    check(worst < 2e-7, f"gpt2 fifo merge differs by {worst}")
    cases.append({
        "name": "merged_lora_gpt2_fifo", "method": "task-arithmetic",
        "inputs": ["--base", "svd_lora/gpt2_base", "--lora", "svd_lora/lora_gpt2_fifo"], "args": ["--scale", "1"],
        "file": "svd_lora/merged_lora_gpt2_fifo.safetensors", "reference": "peft merge_and_unload",
        "tolerance": 2e-7, "float32_difference": float(f"{worst:.3g}"), "changed_tensors": sorted(deltas),
    })
    return cases, versions



# ======================================================================================
# PEFT's selection and orientation rules (peft_rules/)
# ======================================================================================

RULES = HERE / "peft_rules"


def peft_rule_fixtures() -> None:
    """Adapters that exercise PEFT's check_target_module_exists and its fan_in_fan_out override.

    Each adapter's weights file is a PEFT-saved one holding more factors than the edited config
    targets (PEFT loads those as unexpected keys and ignores them); the config is edited as a user
    would. PEFT (PeftModel.from_pretrained + merge_and_unload) gives the golden (the tensors that
    change, only: every other tensor must stay the base's) and the list of them; the script checks every changed tensor against θ0 + scaling·B·A in float64,
    computed from the PEFT layer's own factors, scaling and fan_in_fan_out (transposed for Conv1D),
    and that every other tensor is the base's exactly. Configs PEFT refuses are recorded with
    PEFT's exception, for merge-cli to refuse as well.
    """
    import peft
    import torch
    import transformers
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoConfig, GPT2LMHeadModel, LlamaForCausalLM

    torch.manual_seed(0)
    base_dir = FIXTURES / "f32" / "base"
    llama_base = {k: v for k, v in load_file(str(base_dir / "model.safetensors")).items() if np.issubdtype(v.dtype, np.floating)}
    gpt2_dir = HERE / "gpt2_base"
    gpt2_base = load_file(str(gpt2_dir / "model.safetensors"))

    def load_llama():
        model = LlamaForCausalLM(AutoConfig.from_pretrained(str(base_dir))).to(torch.float32)
        missing, unexpected = model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in llama_base.items()}, strict=False)
        check(not missing and not unexpected, f"Llama: missing {missing}, unexpected {unexpected}")
        return model.eval()

    def load_gpt2():
        return GPT2LMHeadModel.from_pretrained(str(gpt2_dir), dtype=torch.float32).eval()

    if RULES.exists():
        shutil.rmtree(RULES)
    RULES.mkdir()

    # A GPT-2 adapter on all four Conv1D kinds, the square attn.c_proj included.
    gpt2_full = RULES / "_gpt2_all_conv1d"
    model = get_peft_model(load_gpt2(), LoraConfig(r=2, lora_alpha=3, target_modules=["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"],
                                                   fan_in_fan_out=True, lora_dropout=0.0, bias="none"))
    randomize_lora(model, 404)
    model.save_pretrained(str(gpt2_full))
    gpt2_weights = gpt2_full / "adapter_model.safetensors"

    llama_a = HERE / "lora_a" / "adapter_model.safetensors"          # q, v, down in layers 0 and 1 (r 4)
    llama_b = HERE / "lora_b" / "adapter_model.safetensors"          # the same with layers.1.mlp.down_proj at r 2
    embed = HERE / "extracted" / "peft_rslora_embed"                   # embed_tokens, lm_head, o_proj (use_rslora)
    llama = ("llama", "f32/base", load_llama, llama_base)
    gpt2 = ("gpt2", "svd_lora/gpt2_base", load_gpt2, gpt2_base)
    q_v_down = ["q_proj", "v_proj", "down_proj"]
    specs = [
        # name, model, weights file (or adapter dir to copy), config edits
        ("target_regex", llama, llama_a, dict(target_modules=r".*\.layers\.1\.self_attn\.(q|v)_proj")),
        ("target_suffix_list", llama, llama_a, dict(target_modules=["self_attn.q_proj", "model.layers.0.mlp.down_proj"])),
        ("exclude_list", llama, llama_a, dict(target_modules=q_v_down, exclude_modules=["model.layers.0.self_attn.q_proj", "down_proj"])),
        ("exclude_regex", llama, llama_a, dict(target_modules=q_v_down, exclude_modules=r".*\.layers\.0\..*")),
        ("layers_pattern", llama, llama_a, dict(target_modules=q_v_down, layers_to_transform=[1], layers_pattern="layers")),
        ("layers_default_pattern", llama, llama_a, dict(target_modules=q_v_down, layers_to_transform=0)),
        ("layers_pattern_list_and_exact_name", llama, llama_a,
         dict(target_modules=["q_proj", "down_proj", "model.layers.1.self_attn.v_proj"], layers_to_transform=[0],
              layers_pattern=["blocks", "layers"])),
        ("fan_in_fan_out_on_linear", llama, llama_a, dict(fan_in_fan_out=True)),
        ("fan_in_fan_out_on_square_linear", llama, llama_a, dict(fan_in_fan_out=True, target_modules=["q_proj"])),
        ("no_fan_in_fan_out_on_conv1d", gpt2, gpt2_weights, dict(fan_in_fan_out=False, target_modules=["c_attn", "mlp.c_proj"])),
        ("no_fan_in_fan_out_on_square_conv1d", gpt2, gpt2_weights, dict(fan_in_fan_out=False, target_modules=["attn.c_proj"])),
        ("pattern_regex_keys", llama, llama_b,
         dict(rank_pattern={r"layers\.1\.mlp\..*": 2}, alpha_pattern={r"(q|v)_proj": 5, r"layers\.1\..*": 16, "down_proj": 3})),
        ("all_linear", llama, embed, dict(target_modules="all-linear")),
    ]
    refused = [
        ("refused_target_string_suffix", llama, llama_a, dict(target_modules="q_proj")),
        ("refused_target_empty", llama, llama_a, dict(target_modules=[])),
        ("refused_exclude_everything", llama, llama_a, dict(exclude_modules=r".*")),
        ("refused_target_container", llama, llama_a, dict(target_modules=["self_attn"])),
        ("refused_target_norm", llama, llama_a, dict(target_modules=["q_proj", "input_layernorm"])),
        ("refused_string_with_layers", llama, llama_a, dict(target_modules=r".*q_proj", layers_to_transform=[0])),
        ("refused_layers_pattern_alone", llama, llama_a, dict(layers_pattern="layers")),
        ("refused_layers_pattern_unmatched", llama, llama_a, dict(layers_to_transform=[0], layers_pattern="blocks")),
    ]

    def make(name, source, edits, base_config_from):
        out = RULES / name
        out.mkdir()
        src_dir = source if source.is_dir() else source.parent
        shutil.copy(src_dir / "adapter_model.safetensors" if source.is_dir() else source, out / "adapter_model.safetensors")
        config = json.loads((base_config_from / "adapter_config.json").read_text())
        config.update(edits)
        config["base_model_name_or_path"] = None
        write_json(out / "adapter_config.json", config)
        os.chmod(out / "adapter_model.safetensors", 0o644)
        return out

    def config_source(model_kind, source):
        if source.is_dir():
            return source
        return gpt2_full if model_kind == "gpt2" else source.parent

    cases = []
    for name, (kind, base_arg, loader, base_state), source, edits in specs:
        out = make(name, source, edits, config_source(kind, source))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            peft_model = PeftModel.from_pretrained(loader(), str(out))
        notes = sorted({str(w.message).split(".")[0] for w in caught if "fan_in_fan_out" in str(w.message)})
        # float64 check from the PEFT layers themselves.
        expected = {}
        for mname, module in peft_model.named_modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                a = module.lora_A["default"].weight.detach().double().numpy()
                b = module.lora_B["default"].weight.detach().double().numpy()
                delta = module.scaling["default"] * (b @ a)
                key = mname.removeprefix("base_model.model.") + ".weight"
                expected[key] = delta.T if module.fan_in_fan_out else delta
            elif hasattr(module, "lora_embedding_A") and "default" in module.lora_embedding_A:
                a = module.lora_embedding_A["default"].detach().double().numpy()
                b = module.lora_embedding_B["default"].detach().double().numpy()
                expected[mname.removeprefix("base_model.model.") + ".weight"] = (module.scaling["default"] * (b @ a)).T
        merged = peft_model.merge_and_unload()
        state = {k: v.detach().numpy().copy() for k, v in merged.state_dict().items() if k in base_state}
        check(sorted(state) == sorted(base_state), f"{name}: merged names differ")
        changed = sorted(k for k in base_state if not np.array_equal(state[k], base_state[k]))
        worst = 0.0
        for k in base_state:
            reference = base_state[k].astype(np.float64) + expected.get(k, 0.0)
            worst = max(worst, float(np.max(np.abs(state[k] - reference))))
        check(worst <= 2e-7, f"{name}: PEFT merge vs float64 θ0 + scaling·B·A differs by {worst}")
        check(set(changed) <= set(expected), f"{name}: changed {changed} but PEFT adapted {sorted(expected)}")
        check(bool(changed), f"{name}: nothing changed")
        # Only the tensors PEFT changed (every other one is the base's, which the tests check).
        save_golden(RULES / f"merged_{name}.safetensors", {k: state[k] for k in changed})
        print(f"{name}: {len(changed)} tensors change; PEFT vs float64: {worst:.3g}; {notes}")
        cases.append({
            "name": f"rules_{name}", "method": "task-arithmetic",
            "inputs": ["--base", base_arg, "--lora", f"svd_lora/peft_rules/{name}"], "args": ["--scale", "1"],
            "file": f"svd_lora/peft_rules/merged_{name}.safetensors", "reference": "peft merge_and_unload",
            "tolerance": 2e-7, "float32_difference": float(f"{worst:.3g}"), "changed_tensors": changed,
            "config_edits": edits, "peft_warnings": notes,
        })
    refusals = []
    for name, (kind, base_arg, loader, _), source, edits in refused:
        out = make(name, source, edits, config_source(kind, source))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                PeftModel.from_pretrained(loader(), str(out)).merge_and_unload()
            check(False, f"{name}: PEFT accepted it")
            error = None
        except Exception as e:  # PEFT raises ValueError / NoMatchingPeftModuleError
            error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        print(f"{name}: PEFT refuses: {error}")
        refusals.append({"name": name, "base": base_arg, "adapter": f"svd_lora/peft_rules/{name}", "config_edits": edits,
                         "peft_error": error})
    shutil.rmtree(gpt2_full)
    write_json(RULES / "cases.json", {"cases": cases, "refused": refusals,
                                      "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                                   "peft": peft.__version__, "numpy": np.__version__}})
    total = sum(f.stat().st_size for f in RULES.rglob("*") if f.is_file())
    print(f"peft_rules: {len(cases)} cases, {len(refusals)} refusals, {total} bytes")


def main() -> int:
    if "--peft-rules" in sys.argv[1:]:
        peft_rule_fixtures()
        return 1 if FAILURES else 0
    cases = svd_goldens()
    lora_cases, versions = lora_fixtures()
    manifest = {"cases": cases + lora_cases, "versions": versions}
    write_json(HERE / "cases.json", manifest)
    peft_rule_fixtures()
    total = sum(f.stat().st_size for f in HERE.rglob("*") if f.is_file() and "__pycache__" not in f.parts)
    print(f"total size of Fixtures/svd_lora: {total} bytes")
    check(total < 1_500_000, f"fixtures too large: {total} bytes")
    if FAILURES:
        print(f"{len(FAILURES)} self-check(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
