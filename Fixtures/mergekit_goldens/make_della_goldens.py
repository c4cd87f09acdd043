#!/usr/bin/env python3
"""Goldens for della, della_linear, sce, breadcrumbs_ties, nearswap, arcee_fusion, passthrough and
model_stock with filter_wise.

Run with the Python of a mergekit 0.1.5 environment (it has torch, numpy and safetensors):

    /path/to/mergekit-venv/bin/python Fixtures/mergekit_goldens/make_della_goldens.py

Inputs are the tiny Llama-shaped fixtures Fixtures/f32/{base,ft_a,ft_b,ft_c}.  Writes, in
Fixtures/mergekit_goldens/ only:

  della_recipes/<case>.yml      the recipes (paths relative to the recipe, so that merge-cli's
                                tests can plan them as they are)
  della_<case>.safetensors      one golden per case (float tensors only, F32)
  della_cases.json              the manifest: name, recipe, reference, file, tolerance, note
  della_probabilities.safetensors  mergekit's DELLA keep probabilities (see below)

References:

  * "mergekit": the output of `mergekit-yaml` (run as a subprocess, CPU, `dtype: float32`) on
    the recipe.  Used for every deterministic case: sce, nearswap, arcee_fusion, passthrough,
    breadcrumbs_ties, model_stock filter_wise, and della / della_linear at density 1 (no random
    drop).
  * "numpy": della / della_linear with density < 1.  mergekit draws the drop with PyTorch's
    generator, which cannot be reproduced; merge-cli draws it from its counter-based stream
    (Sources/MergeKit/Kernels/CounterRandom.swift, documented in Fixtures/README.md), so these
    goldens re-implement DELLA in float64 numpy with that stream: per row of |τ| (stable
    ascending ranks r), keep probability p = (d − ε) + 2ε·r/(L − 1); element j of input i is kept
    iff u_j < ⌊p·2³²⌋ with u from the stream of (seed, tensor, i); rescale (l1: ×Σ|τ|/Σ|τ̃|,
    skipped below 1e-7; inverse: ÷ p; none), then mergekit's combination (della: s = + where
    Σ wᵢτ̃ᵢ ≥ 0, agreeing wᵢτ̃ᵢ summed and divided by the agreeing weights; della_linear: Σ wᵢτ̃ᵢ),
    × λ, + θ₀.  The same numpy probabilities are checked here against mergekit's own
    `della_magprune`.
  * "mergekit-probabilities": `della_probabilities.safetensors` holds, for every float tensor
    of τ = ft_a − base, mergekit's `della_magprune(τ, density=0.5, epsilon=0.2)` with
    `torch.bernoulli` replaced by the identity, i.e. τ·p: mergekit's probability assignment
    itself, without the random draw.

mergekit is LGPL-3.0: it is only run (a subprocess, and its function called with a patched
random draw); none of its code is copied.  Re-running writes byte-identical files.
"""

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
sys.path.insert(0, str(FIXTURES))
from make_method_goldens import drop_threshold, uniform_bits  # noqa: E402  (the counter stream)

RECIPES = HERE / "della_recipes"
MODELS = ["ft_a", "ft_b", "ft_c"]
METADATA = {"format": "pt"}
TOL_MERGEKIT = 4e-7
TOL_NUMPY = 2e-7


def load(model):
    raw = load_file(str(FIXTURES / "f32" / model / "model.safetensors"))
    return {k: v for k, v in raw.items() if v.dtype == np.float32}


def recipe_text(method, models, parameters=None, base=True):
    lines = [f"merge_method: {method}"]
    if base:
        lines.append("base_model: ../../f32/base")
    lines.append("models:")
    for name, params in models:
        lines.append(f"  - model: ../../f32/{name}")
        if params:
            lines.append("    parameters:")
            for k, v in params.items():
                lines.append(f"      {k}: {json.dumps(v)}")
    if parameters:
        lines.append("parameters:")
        for k, v in parameters.items():
            if isinstance(v, list) and v and isinstance(v[0], dict):
                lines.append(f"  {k}:")
                for cond in v:
                    items = list(cond.items())
                    lines.append(f"    - {items[0][0]}: {json.dumps(items[0][1])}")
                    for kk, vv in items[1:]:
                        lines.append(f"      {kk}: {json.dumps(vv)}")
            else:
                lines.append(f"  {k}: {json.dumps(v)}")
    lines.append("dtype: float32")
    return "\n".join(lines) + "\n"


WEIGHTED = [("ft_a", {"weight": 0.5}), ("ft_b", {"weight": 0.3}), ("ft_c", {"weight": 0.2})]


def with_params(extra):
    return [(m, dict(p, **extra)) for m, p in WEIGHTED]


# name, reference, recipe text, note; numpy cases also carry their parameters.
CASES = [
    ("della_density1", "mergekit",
     recipe_text("della", with_params({"density": 1.0, "epsilon": 0.1}), {"lambda": 0.9, "int8_mask": True}),
     "della with density 1: no drop; weighted sign vote, normalised by the agreeing weights, λ 0.9"),
    ("della_linear_density1", "mergekit",
     recipe_text("della_linear", with_params({"density": 1.0}), {"normalize": True, "lambda": 1.2}),
     "della_linear with density 1 and normalize: Σwτ/Σw, λ 1.2"),
    ("sce_all", "mergekit",
     recipe_text("sce", [(m, None) for m in MODELS], {"select_topk": 1.0}),
     "sce without selection: mean-square weights, sign erase"),
    ("sce_half", "mergekit",
     recipe_text("sce", [(m, None) for m in MODELS], {"select_topk": 0.5, "int8_mask": True}),
     "sce keeping the half of largest variance"),
    ("sce_tenth", "mergekit",
     recipe_text("sce", [(m, None) for m in MODELS], {"select_topk": 0.1}),
     "sce keeping a tenth"),
    ("breadcrumbs_ties", "mergekit",
     recipe_text("breadcrumbs_ties", with_params({"density": 0.3, "gamma": 0.05}), {"lambda": 0.9}),
     "breadcrumbs_ties: rank window per tensor, weighted vote, sum of agreeing (normalize false)"),
    ("breadcrumbs_ties_normalized", "mergekit",
     recipe_text("breadcrumbs_ties", with_params({"density": 0.4, "gamma": 0.02}), {"normalize": True}),
     "breadcrumbs_ties with normalize: divided by the agreeing weights"),
    ("nearswap", "mergekit",
     recipe_text("nearswap", [("ft_a", None)], {"t": [{"filter": "mlp", "value": 0.005}, {"value": [0.001, 0.02]}]}),
     "nearswap with a filtered t and a layer gradient"),
    ("arcee_fusion", "mergekit",
     recipe_text("arcee_fusion", [("ft_b", None)]),
     "arcee_fusion of ft_b into the base"),
    ("passthrough_scale", "mergekit",
     recipe_text("passthrough", [("ft_a", None)],
                 {"scale": [{"filter": "o_proj", "value": 0.0}, {"filter": "down_proj", "value": 0.5}, {"value": 1.0}]},
                 base=False),
     "passthrough of ft_a, o_proj zeroed and down_proj halved by scale filters"),
    ("model_stock_filter_wise", "mergekit",
     recipe_text("model_stock", [(m, None) for m in MODELS], {"filter_wise": True}),
     "model_stock with filter_wise: t per row of the last dimension (a vector is one filter)"),
]

NUMPY_CASES = [
    # name, method, per-model density/epsilon, weights, rescale, normalize, lambda, seed
    ("della_random_l1", "della", [0.5, 0.6, 0.4], [0.2, 0.15, 0.1], [0.5, 0.3, 0.2], True, True, 1.0, 7),
    ("della_random_inverse", "della", [0.5] * 3, [0.2] * 3, [1.0, 1.0, 1.0], "inverse", False, 0.8, 11),
    ("della_linear_random", "della_linear", [0.7] * 3, [0.1] * 3, [0.5, 0.3, 0.2], True, False, 1.0, 3),
    ("della_linear_norescale", "della_linear", [0.5] * 3, [0.25] * 3, [1.0, 1.0, 1.0], False, True, 1.0, 5),
]


def numpy_recipe(method, densities, epsilons, weights, rescale, normalize, lam, seed):
    models = [(m, {"weight": w, "density": d, "epsilon": e}) for m, w, d, e in zip(MODELS, weights, densities, epsilons)]
    return recipe_text(method, models, {"rescale": rescale, "normalize": normalize, "lambda": lam, "seed": seed})


# --------------------------------------------------------------------------------------
# DELLA in numpy with the counter stream


def keep_probabilities(tau, density, epsilon):
    """mergekit's assignment: ranks along dimension 1 of the tensor seen as ≥ 2-D."""
    t = np.abs(tau.astype(np.float32).reshape(1, -1) if tau.ndim < 2 else tau.astype(np.float32))
    assert t.ndim == 2
    ranks = np.argsort(np.argsort(t, axis=1, kind="stable"), axis=1, kind="stable").astype(np.float64)
    length = t.shape[1]
    norm = ranks / (length - 1) if length > 1 else np.full_like(ranks, 0.5)
    p = (density - epsilon) + norm * 2 * epsilon
    return p.reshape(tau.shape)


def della_numpy(base, taus, names, method, densities, epsilons, weights, rescale, normalize, lam, seed):
    out = {}
    for name in names:
        kept = []
        for i, tau in enumerate(taus):
            t = tau[name]
            if densities[i] >= 1:  # mergekit: density 1 keeps the tensor as it is
                kept.append(t.astype(np.float64))
                continue
            p = keep_probabilities(t, densities[i], epsilons[i])
            u = uniform_bits(seed, name, i, t.size).reshape(t.shape)
            limit = np.vectorize(drop_threshold)(p.ravel()).reshape(t.shape).astype(np.uint64)
            mask = u.astype(np.uint64) < limit
            t64 = t.astype(np.float64)
            masked = np.where(mask, t64, 0.0)
            if rescale is True or rescale == "l1":
                before, after = np.abs(t64).sum(), np.abs(masked).sum()
                if not (before < 1e-7 or after < 1e-7):
                    masked = masked * (before / after)
            elif rescale == "inverse":
                masked = np.where(mask, t64 / p, 0.0)
            kept.append(masked)
        D = np.stack([w * k for w, k in zip(weights, kept)])
        W = np.array(weights, dtype=np.float64).reshape((-1,) + (1,) * (D.ndim - 1))
        if method == "della":
            s = np.where(D.sum(axis=0) >= 0, 1.0, -1.0)
            agree = np.sign(D) == s
            merged = (D * agree).sum(axis=0)
            divisor = (W * agree).sum(axis=0)
            divisor[divisor == 0] = 1
        else:
            merged = D.sum(axis=0)
            divisor = np.full_like(merged, W.sum())
            divisor[np.abs(divisor) < 1e-8] = 1
        if normalize:
            merged = merged / divisor
        out[name] = (base[name].astype(np.float64) + lam * merged).astype(np.float32)
    return out


def arcee_fusion_numpy(base, model, names):
    """mergekit's arcee_fusion formula in float64 (mergekit computes the KL in the compute dtype)."""
    out = {}
    for name in names:
        b = base[name].astype(np.float64)
        m = model[name].astype(np.float64)
        tau = (model[name] - base[name]).astype(np.float64)  # τ as formed in float32

        def softmax(x):
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True) + 1e-8

        p, q = softmax(m), softmax(b)
        kl = (p * np.log(p / q)).sum(axis=-1, keepdims=True)
        importance = np.abs(tau) * kl
        s = np.sort(importance.ravel())
        n = s.size
        q1, q2, q3 = (s[int(f * (n - 1))] for f in (0.25, 0.5, 0.75))
        threshold = q2 + 1.5 * (q3 - q1)
        out[name] = (b + tau * (importance >= threshold)).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------
# mergekit


def run_mergekit(text):
    mergekit_yaml = Path(sys.executable).parent / "mergekit-yaml"
    with tempfile.TemporaryDirectory(prefix="mk-della-") as tmp:
        config = Path(tmp) / "config.yml"
        config.write_text(text.replace("../../f32/", str(FIXTURES / "f32") + "/"))
        out = Path(tmp) / "out"
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
        res = subprocess.run([str(mergekit_yaml), str(config), str(out), "--no-cuda", "--no-copy-tokenizer",
                              "--no-write-model-card", "--quiet", "--random-seed", "0"], capture_output=True, text=True, env=env)
        if res.returncode != 0:
            sys.stderr.write(res.stdout + res.stderr)
            raise SystemExit(f"mergekit failed on:\n{text}")
        tensors = {}
        for f in sorted(out.glob("*.safetensors")):
            tensors.update(load_file(str(f)))
    return {k: v for k, v in tensors.items() if v.dtype == np.float32}


def mergekit_probabilities(tau):
    """τ·p from mergekit's della_magprune with the random draw replaced by the identity."""
    import torch
    from mergekit import sparsify

    original = torch.bernoulli
    torch.bernoulli = lambda p, *args, **kwargs: p.clone()
    try:
        out = {}
        for name, t in tau.items():
            out[name] = sparsify.della_magprune(torch.from_numpy(t.copy()), density=0.5, epsilon=0.2, rescale_norm=None).numpy()
        return out
    finally:
        torch.bernoulli = original


def save(path, tensors):
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(tensors.items())}, str(path), metadata=METADATA)
    os.chmod(path, 0o644)


def main():
    import importlib.metadata as md
    print("mergekit", md.version("mergekit"), "torch", md.version("torch"), "numpy", np.__version__)
    base = load("base")
    names = sorted(base)
    taus = [{n: load(m)[n] - base[n] for n in names} for m in MODELS]
    RECIPES.mkdir(exist_ok=True)
    manifest = []
    ok = True

    for name, reference, text, note in CASES:
        (RECIPES / f"{name}.yml").write_text(text)
        tensors = run_mergekit(text)
        assert sorted(tensors) == names, (name, sorted(set(names) ^ set(tensors)))
        save(HERE / f"della_{name}.safetensors", tensors)
        manifest.append({"name": name, "recipe": f"della_recipes/{name}.yml", "reference": reference,
                         "file": f"della_{name}.safetensors", "tolerance": TOL_MERGEKIT, "note": note})

    for name, method, densities, epsilons, weights, rescale, normalize, lam, seed in NUMPY_CASES:
        text = numpy_recipe(method, densities, epsilons, weights, rescale, normalize, lam, seed)
        (RECIPES / f"{name}.yml").write_text(text)
        tensors = della_numpy(base, taus, names, method, densities, epsilons, weights, rescale, normalize, lam, seed)
        save(HERE / f"della_{name}.safetensors", tensors)
        manifest.append({"name": name, "recipe": f"della_recipes/{name}.yml", "reference": "numpy",
                         "file": f"della_{name}.safetensors", "tolerance": TOL_NUMPY,
                         "note": f"{method}, counter-stream mask (seed {seed}), rescale {rescale}, normalize {normalize}, λ {lam}"})
        # The deterministic limit: numpy at density 1 equals mergekit.
    # arcee_fusion: mergekit's float32 KL divergences carry rounding noise (up to a few % for rows
    # that barely changed), so an entry next to the threshold can fall on the other side of it
    # than with exact arithmetic.  The float64 formula is the second reference; the mergekit
    # golden records how many entries may differ (each is then θ₀ in one and θ₁ in the other).
    model_b = load("ft_b")
    exact = arcee_fusion_numpy(base, model_b, names)
    save(HERE / "della_arcee_fusion_exact.safetensors", exact)
    mk = load_file(str(HERE / "della_arcee_fusion.safetensors"))
    differing = sum(int((np.abs(exact[n].astype(np.float64) - mk[n]) > TOL_MERGEKIT).sum()) for n in names)
    print(f"check: arcee_fusion in float64 vs mergekit (float32 KL): {differing} entries on the other side of the threshold")
    ok &= differing <= 1
    for entry in manifest:
        if entry["name"] == "arcee_fusion":
            entry["mismatches"] = differing
    manifest.append({"name": "arcee_fusion_exact", "recipe": "della_recipes/arcee_fusion.yml", "reference": "numpy",
                     "file": "della_arcee_fusion_exact.safetensors", "tolerance": TOL_NUMPY,
                     "note": "arcee_fusion's formula in float64 (exact KL divergences and quantiles)"})

    limit = della_numpy(base, taus, names, "della", [1.0] * 3, [0.1] * 3, [0.5, 0.3, 0.2], True, True, 0.9, 0)
    mk = load_file(str(HERE / "della_della_density1.safetensors"))
    worst = max(float(np.abs(limit[n].astype(np.float64) - mk[n]).max()) for n in names)
    print(f"check: numpy della at density 1 vs mergekit: max |Δ| = {worst:.3g}")
    ok &= worst <= TOL_MERGEKIT

    # mergekit's probability assignment, and the numpy one against it.
    probabilities = mergekit_probabilities(taus[0])
    save(HERE / "della_probabilities.safetensors", probabilities)
    worst = max(float(np.abs(keep_probabilities(taus[0][n], 0.5, 0.2) * taus[0][n] - probabilities[n]).max()) for n in names)
    print(f"check: numpy keep probabilities vs mergekit's della_magprune (τ·p): max |Δ| = {worst:.3g}")
    ok &= worst <= 1e-8
    manifest.append({"name": "probabilities", "recipe": "", "reference": "mergekit-probabilities",
                     "file": "della_probabilities.safetensors", "tolerance": 1e-8,
                     "note": "τ·p for τ = ft_a − base, density 0.5, epsilon 0.2 (mergekit della_magprune, identity draw)"})

    path = HERE / "della_cases.json"
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.chmod(path, 0o644)
    print(f"wrote {len(manifest)} cases")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
