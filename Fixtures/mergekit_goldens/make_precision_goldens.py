#!/usr/bin/env python3
"""Goldens of mergekit 0.1.5 computing in a 16-bit `dtype` (float16, bfloat16): issue 18's precision cases.

Usage (from the repository root, with the Python of a venv holding mergekit 0.1.5, which brings
torch, numpy and safetensors):

    /path/to/mk-venv/bin/python Fixtures/mergekit_goldens/make_precision_goldens.py
    /path/to/mk-venv/bin/python Fixtures/mergekit_goldens/make_precision_goldens.py --check   # compare only

It writes, under Fixtures/mergekit_goldens/ only:

  precision_cases.json            the manifest (below)
  precision/<case>.safetensors    mergekit's output of each case (the 21 float tensors, in the
                                  recipe's dtype, or its out_dtype)
  precision/<case>_exact.safetensors   for the cases marked `exact`: the method computed in
                                  float64 numpy from the same inputs (re-implemented here from the
                                  method's definition, with MergeKit's tie rules and DARE mask),
                                  stored as F32: what float32 compute must come within rounding of
  precision/<case>_ties.safetensors    for top-k and rank-window cases: U8 masks of the elements
                                  whose kept/dropped state depends on how equal magnitudes are
                                  ordered (below)

Every case is a mergekit recipe run with `mergekit-yaml`'s own entry point, CPU, one thread,
`--no-cuda --no-copy-tokenizer --no-write-model-card --quiet --random-seed 0`, in a child process
of this script (`--run-mergekit`). The recipe text is stored in the manifest with `{F}` for the
Fixtures directory, so that the tests run the very same recipe.

DARE (`dare_ties`, `dare_linear`) draws its drop with `torch.bernoulli`, which cannot be
reproduced; MergeKit draws it from its counter-based stream (Fixtures/README.md). For those cases
the child process replaces `torch.bernoulli` (only the draw: mergekit's own arithmetic runs) with
that stream's keep mask for the tensor and model being sparsified (seed 0, the recipes' default),
as make_della_goldens.py does for DELLA's probabilities.

Ties in magnitude: mergekit's `ties` keeps the k largest |τ| by `torch.argsort`, and
`breadcrumbs_ties` a window of `torch.sort` ranks; neither sort is stable on CPU (PyTorch 2.x
sorts tensors of more than 16 elements with an unstable algorithm), so when several |τ| equal the
value at a boundary of the kept range, which of them mergekit keeps depends on its sort's
implementation. MergeKit keeps the earliest (top-k) or ranks equal values by position (window).
In float16 such ties are common (τ has few distinct values). `<case>_ties.safetensors` marks, per
tensor, the elements of any model whose |τ| (as mergekit forms it, in the dtype) equals a value
that straddles a boundary of its window: only those may differ from mergekit.

Self-check (exit status 1 if it fails): every `exact` case's mergekit output is compared with the
float64 reference rounded to the dtype; the differences must be small (reported: mergekit's
repeated rounding in the 16-bit type moves an element by an ulp or more, and flips votes; at
most half of the elements may differ).

Manifest entries: name, method, recipe (YAML, `{F}` = Fixtures/), file (relative to Fixtures/),
out_dtype, exact (file or null), ties (file or null), note.

Deterministic: fixed seeds, sorted JSON keys, fixed tensor order; re-running gives byte-identical
files. mergekit is LGPL-3.0: it is only run (a child process calling its command-line entry point,
with the random draw replaced); no mergekit code is included here.
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
import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent
OUT = HERE / "precision"
MANIFEST = HERE / "precision_cases.json"
METADATA = {"format": "pt"}
sys.path.insert(0, str(FIXTURES))
sys.path.insert(0, str(HERE))
from make_method_goldens import drop_mask, rank_window_mask  # noqa: E402  (MergeKit's DARE stream; stable rank windows)
from make_slerp_goldens import slerp64  # noqa: E402


def recipe(method, dtype_dir, models, parameters=None, dtype="float16", out_dtype=None, base=True):
    lines = [f"merge_method: {method}"]
    if base:
        lines.append(f"base_model: {{F}}/{dtype_dir}/base")
    lines.append("models:")
    for name, params in models:
        lines.append(f"  - model: {{F}}/{dtype_dir}/{name}")
        if params:
            lines.append("    parameters: {" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in params.items()) + "}")
    if parameters:
        lines.append("parameters: {" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in parameters.items()) + "}")
    lines.append(f"dtype: {dtype}")
    if out_dtype:
        lines.append(f"out_dtype: {out_dtype}")
    return "\n".join(lines) + "\n"


def weighted(weights, **extra):
    return [(m, dict({"weight": w}, **{k: v[i] if isinstance(v, list) else v for k, v in extra.items()}))
            for i, (m, w) in enumerate(zip(["ft_a", "ft_b", "ft_c"], weights))]


# name, method, recipe, exact reference, note
CASES = [
    ("task_arithmetic_f16", "task_arithmetic",
     recipe("task_arithmetic", "f16", weighted([0.5, 0.3, 0.2]), {"lambda": 0.8}), True,
     "float16: τ, wᵢτᵢ, Σ, λ·τ and θ₀ + τ each rounded"),
    ("task_arithmetic_bf16", "task_arithmetic",
     recipe("task_arithmetic", "bf16", weighted([1.0, 0.7, -0.4]), {"normalize": True}, dtype="bfloat16"), False,
     "bfloat16, normalised: Σ wᵢτᵢ / Σ wᵢ"),
    ("linear_f16", "linear",
     recipe("linear", "f16", weighted([0.5, 0.3, 0.2]), base=False), True,
     "linear computes in float32 from the float16 weights and rounds once"),
    ("linear_f32_to_bf16", "linear",
     recipe("linear", "f32", weighted([1.0, 2.0, 1.0]), dtype="bfloat16", out_dtype="float32", base=False), False,
     "float32 models loaded as bfloat16, written as float32"),
    ("ties_f16", "ties",
     recipe("ties", "f16", weighted([0.5, 0.3, 0.2], density=[0.5, 0.6, 0.7]), {"lambda": 0.9}), True,
     "per-tensor top-k, weighted vote, normalised"),
    ("ties_f16_dense", "ties",
     recipe("ties", "f16", weighted([1.0, 0.6, 0.8], density=1.0)), False,
     "no trim: the vote and the normalised sum alone"),
    ("ties_bf16", "ties",
     recipe("ties", "bf16", weighted([0.5, 0.3, 0.2], density=0.6), {"normalize": False}, dtype="bfloat16"), False,
     "bfloat16, sum of the agreeing entries"),
    ("dare_ties_f16", "dare_ties",
     recipe("dare_ties", "f16", weighted([0.5, 0.3, 0.2], density=[0.6, 0.5, 0.7]), {"lambda": 1.1}), True,
     "counter-stream drop (seed 0), L1 rescale in float32, vote, sum"),
    ("dare_ties_bf16", "dare_ties",
     recipe("dare_ties", "bf16", weighted([1.0, 1.0, 1.0], density=0.5), {"normalize": True}, dtype="bfloat16"), False,
     "bfloat16: the L1 norms and their quotient in bfloat16"),
    ("dare_linear_f16", "dare_linear",
     recipe("dare_linear", "f16", weighted([0.5, 0.3, 0.2], density=0.7)), False,
     "counter-stream drop, L1 rescale, weighted sum"),
    ("breadcrumbs_ties_f16", "breadcrumbs_ties",
     recipe("breadcrumbs_ties", "f16", weighted([0.5, 0.3, 0.2], density=0.5, gamma=0.05)), True,
     "rank window per tensor, weighted vote, sum"),
    ("slerp_f16", "slerp",
     recipe("slerp", "f16", [("ft_a", None)], {"t": 0.4}), True,
     "slerp works in float32 and rounds θ once"),
    ("slerp_bf16", "slerp",
     recipe("slerp", "bf16", [("ft_b", None)], {"t": 0.7}, dtype="bfloat16"), False,
     "bfloat16"),
    ("passthrough_f16", "passthrough",
     recipe("passthrough", "f16", [("ft_a", {"scale": 0.7})], base=False), False,
     "s·θ rounded once"),
]


# ======================================================================================
# I/O
# ======================================================================================

def load_model(path: Path) -> dict:
    tensors = {}
    for f in sorted(path.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return {n: t for n, t in tensors.items() if t.is_floating_point()}


def save_tensors(path: Path, tensors: dict) -> None:
    save_file({n: tensors[n].contiguous() for n in sorted(tensors)}, str(path), metadata=METADATA)
    os.chmod(path, 0o644)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    os.chmod(path, 0o644)


def parse(text: str) -> dict:
    import yaml  # PyYAML comes with mergekit
    return yaml.safe_load(text.replace("{F}", str(FIXTURES)))


TORCH_DTYPE = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


# ======================================================================================
# mergekit (child process: `--run-mergekit CONFIG OUT DENSITIES_JSON`)
# ======================================================================================

def run_mergekit_child(config: str, out: str, densities: list) -> None:
    """mergekit-yaml's entry point in this process, `torch.bernoulli` drawing MergeKit's stream."""
    import mergekit.merge_methods.generalized_task_arithmetic as gta
    from mergekit.scripts.run_yaml import main as mergekit_main

    state = {"tensor": None, "index": 0}
    original = gta.GeneralizedTaskArithmeticMerge.merge_group

    def merge_group(self, group, **parameters):
        state["tensor"], state["index"] = group.metadata.name, 0
        return original(self, group, **parameters)

    def bernoulli(p, *args, **kwargs):
        name, i = state["tensor"], state["index"]
        assert name is not None and not args and not kwargs
        state["index"] += 1
        dropped = drop_mask(0, name, i, tuple(p.shape), 1 - densities[i])
        return torch.from_numpy(~dropped).to(p.dtype)

    gta.GeneralizedTaskArithmeticMerge.merge_group = merge_group
    torch.bernoulli = bernoulli
    torch.set_num_threads(1)
    mergekit_main([config, out, "--no-cuda", "--no-copy-tokenizer", "--no-write-model-card", "--quiet",
                   "--random-seed", "0"], standalone_mode=False)


def run_mergekit(text: str, densities: list) -> dict:
    with tempfile.TemporaryDirectory(prefix="mk-precision-") as tmp:
        cfg = Path(tmp) / "config.yml"
        cfg.write_text(text.replace("{F}", str(FIXTURES)))
        out = Path(tmp) / "out"
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
        res = subprocess.run([sys.executable, __file__, "--run-mergekit", str(cfg), str(out), json.dumps(densities)],
                             capture_output=True, text=True, env=env)
        if res.returncode != 0:
            sys.stderr.write(res.stdout + res.stderr)
            raise SystemExit(f"mergekit failed for:\n{text}")
        return load_model(out)


# ======================================================================================
# float64 references (from the definitions, MergeKit's tie rules), and the tie masks
# ======================================================================================

def topk_mask(a: np.ndarray, k: int) -> np.ndarray:
    """The k largest |a|, among equals the earliest first."""
    flat = np.abs(a).reshape(-1)
    order = np.argsort(-flat, kind="stable")
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:k]] = True
    return mask.reshape(a.shape)


def window(method: str, n: int, params: dict):
    """The kept range of ascending ranks of a tensor of n elements, or None (everything)."""
    density = params.get("density", 1.0)
    if density >= 1:
        return None
    if method == "ties":
        k = max(1, int(density * n))
        return n - k, n
    if method == "breadcrumbs_ties":
        target, top = int(density * n), int(params.get("gamma", 0.01) * n)
        bottom = max(0, n - target - top)
        return bottom, bottom + target
    return None


def ambiguous(tau: np.ndarray, bounds) -> np.ndarray:
    """Elements whose |τ| equals a value found on both sides of a boundary of the ranks `bounds`."""
    flat = np.abs(tau).reshape(-1)
    s = np.sort(flat)
    mask = np.zeros(flat.size, dtype=bool)
    for b in bounds:
        if 0 < b < flat.size and s[b - 1] == s[b]:
            mask |= flat == s[b]
    return mask.reshape(tau.shape)


def reference(method: str, config: dict, models: dict, names) -> dict:
    """The float64 result from the inputs as stored (float32 compute, no rounding)."""
    params = config.get("parameters", {})
    base_path = config.get("base_model")
    entries = [e for e in config["models"] if e["model"] != base_path]
    out = {}
    for name in names:
        base = models[base_path][name].astype(np.float64) if base_path else None
        xs = [models[e["model"]][name].astype(np.float64) for e in entries]
        ps = [e.get("parameters") or {} for e in entries]
        ws = [p.get("weight", 1.0) for p in ps]
        if method == "slerp":
            out[name] = slerp64(params["t"], base, xs[0])
            continue
        if method == "linear":
            acc = sum(w * x for w, x in zip(ws, xs))
            out[name] = acc / sum(ws) if params.get("normalize", True) else acc
            continue
        taus = [x - base for x in xs]
        kept = []
        for i, (t, p) in enumerate(zip(taus, ps)):
            if method in ("dare_ties", "dare_linear") and p.get("density", 1.0) < 1:
                m = np.where(drop_mask(0, name, i, t.shape, 1 - p["density"]), 0.0, t)
                before, after = np.abs(t).sum(), np.abs(m).sum()
                kept.append(m if before < 1e-7 or after < 1e-7 else m * (before / after))
            elif (bounds := window(method, t.size, p)) is not None:
                k = bounds[1] - bounds[0]
                mask = topk_mask(t, k) if method == "ties" else rank_window_mask(t, *bounds)
                kept.append(np.where(mask, t, 0.0))
            else:
                kept.append(t)
        D = np.stack([w * k for w, k in zip(ws, kept)])
        W = np.array(ws).reshape((-1,) + (1,) * (D.ndim - 1))
        normalize = params.get("normalize", method == "ties")
        if method in ("ties", "dare_ties", "breadcrumbs_ties"):
            total = D[0].copy()
            for d in D[1:]:
                total = total + d
            s = np.where(total >= 0, 1.0, -1.0)
            agree = np.sign(D) == s
            merged = np.where(agree, D, 0.0).sum(axis=0)
            divisor = np.where(agree, W, 0.0).sum(axis=0)
            divisor[divisor == 0] = 1
        else:
            merged = D.sum(axis=0)
            divisor = np.full_like(merged, W.sum())
        if normalize:
            merged = merged / divisor
        out[name] = base + params.get("lambda", 1.0) * merged
    return out


def tie_masks(method: str, config: dict, models: dict, names, dtype) -> dict | None:
    """U8 masks of the elements whose top-k / window membership depends on the order of equals."""
    if method not in ("ties", "breadcrumbs_ties"):
        return None
    base_path = config["base_model"]
    entries = [e for e in config["models"] if e["model"] != base_path]
    out, any_tie = {}, False
    for name in names:
        base = torch.from_numpy(models[base_path][name]).to(dtype)
        mask = np.zeros(base.shape, dtype=bool)
        for e in entries:
            tau = (torch.from_numpy(models[e["model"]][name]).to(dtype) - base).to(torch.float64).numpy()
            bounds = window(method, tau.size, e.get("parameters") or {})
            if bounds is not None:
                mask |= ambiguous(tau, bounds)
        any_tie |= bool(mask.any())
        out[name] = torch.from_numpy(mask.astype(np.uint8))
    return out if any_tie else None


def as_numpy(model: dict) -> dict:
    return {n: t.to(torch.float64).numpy() if t.dtype == torch.bfloat16 else t.numpy() for n, t in model.items()}


# ======================================================================================

def mergekit_version() -> str:
    from importlib.metadata import version
    return f"mergekit {version('mergekit')}, torch {torch.__version__}, numpy {np.__version__}"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--run-mergekit":
        run_mergekit_child(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare the committed goldens, write nothing")
    args = parser.parse_args()
    print(mergekit_version())
    OUT.mkdir(parents=True, exist_ok=True)
    failures, manifest = [], []
    for name, method, text, exact, note in CASES:
        config = parse(text)
        dtype = TORCH_DTYPE[config["dtype"]]
        out_dtype = TORCH_DTYPE[config.get("out_dtype", config["dtype"])]
        base_path = config.get("base_model")
        densities = [(e.get("parameters") or {}).get("density", 1.0) for e in config["models"] if e["model"] != base_path]
        merged = run_mergekit(text, densities)
        names = sorted(merged)
        paths = {base_path} | {e["model"] for e in config["models"]}
        models = {p: as_numpy(load_model(Path(p))) for p in paths if p}
        files = {"golden": (OUT / f"{name}.safetensors", {n: merged[n] for n in names})}
        entry = {"name": name, "method": method, "recipe": text, "out_dtype": {torch.float16: "F16", torch.bfloat16: "BF16",
                 torch.float32: "F32"}[out_dtype], "note": note, "file": f"mergekit_goldens/precision/{name}.safetensors",
                 "exact": None, "ties": None}
        assert all(merged[n].dtype == out_dtype for n in names), name
        ties = tie_masks(method, config, models, names, dtype)
        if ties is not None:
            files["ties"] = (OUT / f"{name}_ties.safetensors", ties)
            entry["ties"] = f"mergekit_goldens/precision/{name}_ties.safetensors"
            count = sum(int(t.sum()) for t in ties.values())
            print(f"  {name:24s} {count} elements of {sum(t.numel() for t in ties.values())} at a tied boundary")
        if exact:
            ref = reference(method, config, models, names)
            files["exact"] = (OUT / f"{name}_exact.safetensors", {n: torch.from_numpy(ref[n]).to(torch.float32) for n in names})
            entry["exact"] = f"mergekit_goldens/precision/{name}_exact.safetensors"
            rounded = {n: torch.from_numpy(ref[n]).to(dtype) for n in names}
            differ = sum(int((rounded[n].to(out_dtype) != merged[n]).sum()) for n in names)
            total = sum(merged[n].numel() for n in names)
            worst = max(float((rounded[n].to(torch.float64) - merged[n].to(torch.float64)).abs().max()) for n in names)
            print(f"  {name:24s} mergekit vs float64 rounded to {config['dtype']}: {differ} of {total} differ, max |Δ| {worst:.3g}")
            if differ > total // 2:
                failures.append(name)
        for key, (path, tensors) in files.items():
            if args.check:
                committed = load_file(str(path)) if path.exists() else {}
                same = committed.keys() == tensors.keys() and all(torch.equal(committed[n], tensors[n]) for n in tensors)
                print(f"  {name:24s} committed {key} {'identical' if same else 'DIFFERS'}")
                if not same:
                    failures.append(f"{name} ({key})")
            else:
                save_tensors(path, tensors)
        manifest.append(entry)
    if not args.check:
        write_json(MANIFEST, manifest)
    if failures:
        print("FAILED: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
