#!/usr/bin/env python3
"""Goldens of the SLERP family (slerp, nuslerp, multislerp, karcher) from mergekit 0.1.5 itself.

Usage (from the repository root, with the Python of a venv holding mergekit 0.1.5, which brings
torch, numpy and safetensors):

    /path/to/mk-venv/bin/python Fixtures/mergekit_goldens/make_slerp_goldens.py
    /path/to/mk-venv/bin/python Fixtures/mergekit_goldens/make_slerp_goldens.py --check   # compare only

It writes, under Fixtures/mergekit_goldens/:

  slerp_cases.json              the manifest (below)
  slerp/<case>.safetensors      mergekit's output of each case (the 21 float tensors only)
  slerp/colinear/               a model made for the colinear fallback: Fixtures/f32/base with
                                each tensor replaced by a·θ₀ + b·n (n a fixed random direction
                                orthogonal to θ₀) at a chosen cosine with θ₀ (table below)

Nothing else under Fixtures/ is touched.  Every case is a mergekit recipe run by `mergekit-yaml`
(the script's own directory's sibling of this Python) on the fixtures, CPU, `dtype: float32`,
with `--no-cuda --no-copy-tokenizer --no-write-model-card --quiet --random-seed 0`.  The recipe
text is stored in the manifest with `{F}` for the Fixtures directory, so that the tests run the
very same recipe.

Self-check (exit status 1 if it fails): every mergekit output is compared with a float64 numpy
re-implementation of the method, written here from the method's definition (mergekit's `dtype:
float32` computes in float32, so they differ by its rounding); the differences must stay within
8 float32 ulps of the case's largest output value (BF16 outputs: 1 ulp).  For the colinear model the script also reports, per tensor,
the cosine of θ₀ and the model as stored in float32, and which side of mergekit's 0.9995
threshold it lies.

Manifest entries: name, method, recipe (YAML, `{F}` = Fixtures/), file (relative to Fixtures/),
out_dtype (F32 or BF16), tolerance (absolute, for F32 outputs: 4 float32 ulps of the largest
output value of the case, or twice mergekit's own distance from the float64 re-implementation
when that is larger, rounded to 2 digits) or ulps (BF16 outputs: at most 1 ulp, ordered bits).

Deterministic: fixed seeds, sorted JSON keys, fixed tensor order; re-running gives byte-identical
files.  mergekit is LGPL-3.0: it is only run as a subprocess; no mergekit code is included here.
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
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent
OUT = HERE / "slerp"
MANIFEST = HERE / "slerp_cases.json"
COLINEAR = OUT / "colinear"
METADATA = {"format": "pt"}
LAYERS = 2

# Cosines of the colinear model's tensors with the base's (a·θ₀ + b·n): exactly 1 (a multiple),
# −1 (antipodal), just above and just below mergekit's 0.9995 threshold, and well inside the
# spherical range.  Multiples a are chosen so that the norms differ too.
COLINEAR_PLAN = [
    ("model.embed_tokens.weight", 2.0, 1.0),
    ("lm_head.weight", -1.0, -1.0),
    ("model.norm.weight", 1.5, 0.99999),
    ("self_attn", 1.5, 0.9996),   # every attention projection: linear (|cos| > 0.9995)
    ("mlp", 0.75, 0.9994),        # every MLP projection: spherical, just
    ("layernorm", 1.25, 0.98),    # the layer norms: spherical
]


def cases():
    """(name, method, dtype_dir, out_dtype, recipe)."""
    t_filters = """
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5"""
    return [
        ("slerp_gradient", "slerp", "f32", "F32", f"""merge_method: slerp
base_model: {{F}}/f32/base
models:
  - model: {{F}}/f32/base
  - model: {{F}}/f32/ft_a{t_filters}
dtype: float32
"""),
        ("slerp_constant", "slerp", "f32", "F32", """merge_method: slerp
base_model: {F}/f32/base
models:
  - model: {F}/f32/ft_b
parameters:
  t: 0.3
dtype: float32
"""),
        ("slerp_bf16", "slerp", "bf16", "BF16", f"""merge_method: slerp
base_model: {{F}}/bf16/base
models:
  - model: {{F}}/bf16/ft_a
  - model: {{F}}/bf16/base{t_filters}
dtype: float32
out_dtype: bfloat16
"""),
        ("slerp_colinear", "slerp", "f32", "F32", """merge_method: slerp
base_model: {F}/f32/base
models:
  - model: {F}/f32/base
  - model: {F}/mergekit_goldens/slerp/colinear
parameters:
  t:
    - filter: layers.1
      value: 0.8
    - value: 0.3
dtype: float32
"""),
        ("nuslerp_flat", "nuslerp", "f32", "F32", """merge_method: nuslerp
base_model: {F}/f32/base
models:
  - model: {F}/f32/ft_a
    parameters: {weight: 0.3}
  - model: {F}/f32/ft_b
    parameters: {weight: 0.7}
dtype: float32
"""),
        ("nuslerp_rows", "nuslerp", "f32", "F32", """merge_method: nuslerp
base_model: {F}/f32/base
models:
  - model: {F}/f32/base
  - model: {F}/f32/ft_a
    parameters:
      weight: [{filter: mlp, value: [1.0, 3.0]}, {value: 0.4}]
  - model: {F}/f32/ft_c
    parameters: {weight: 0.6}
parameters:
  nuslerp_flatten: false
dtype: float32
"""),
        ("nuslerp_row_wise", "nuslerp", "f32", "F32", """merge_method: nuslerp
base_model: {F}/f32/base
models:
  - model: {F}/f32/ft_b
    parameters: {weight: 2.0}
  - model: {F}/f32/ft_c
    parameters: {weight: 1.0}
parameters:
  nuslerp_flatten: false
  nuslerp_row_wise: true
dtype: float32
"""),
        ("nuslerp_no_base", "nuslerp", "f32", "F32", """merge_method: nuslerp
models:
  - model: {F}/f32/ft_a
    parameters: {weight: 0.25}
  - model: {F}/f32/ft_b
    parameters: {weight: 0.75}
dtype: float32
"""),
        ("multislerp_base", "multislerp", "f32", "F32", """merge_method: multislerp
base_model: {F}/f32/base
models:
  - model: {F}/f32/ft_a
    parameters: {weight: 0.5}
  - model: {F}/f32/ft_b
    parameters: {weight: 0.3}
  - model: {F}/f32/ft_c
    parameters: {weight: 0.2}
dtype: float32
"""),
        ("multislerp_no_base", "multislerp", "f32", "F32", """merge_method: multislerp
models:
  - model: {F}/f32/ft_a
    parameters: {weight: 1.0}
  - model: {F}/f32/ft_b
    parameters: {weight: 2.0}
  - model: {F}/f32/ft_c
    parameters: {weight: 1.0}
parameters:
  normalize_weights: false
dtype: float32
"""),
        ("karcher_base", "karcher", "f32", "F32", """merge_method: karcher
base_model: {F}/f32/base
models:
  - model: {F}/f32/ft_a
  - model: {F}/f32/ft_b
  - model: {F}/f32/ft_c
dtype: float32
"""),
        ("karcher_no_base", "karcher", "f32", "F32", """merge_method: karcher
models:
  - model: {F}/f32/ft_a
  - model: {F}/f32/ft_b
  - model: {F}/f32/ft_c
parameters:
  max_iter: 3
  tol: 1.0e-4
dtype: float32
"""),
    ]


# ======================================================================================
# I/O
# ======================================================================================

def load_model(path: Path) -> dict:
    tensors = {}
    for f in sorted(path.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def float_names(model: dict) -> list:
    return sorted(n for n, v in model.items() if v.is_floating_point())


def as64(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float64).numpy()


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    os.chmod(path, 0o644)


def save_tensors(path: Path, tensors: dict) -> None:
    save_file({n: tensors[n].contiguous() for n in sorted(tensors)}, str(path), metadata=METADATA)
    os.chmod(path, 0o644)


# ======================================================================================
# The colinear model
# ======================================================================================

def make_colinear_model() -> None:
    """f32/base with every float tensor replaced by a·θ₀ + b·n at the planned cosine."""
    base = load_model(FIXTURES / "f32" / "base")
    rng = np.random.default_rng(20240518)
    out = {}
    for name in sorted(base):
        value = base[name]
        if not value.is_floating_point():
            out[name] = value.clone()
            continue
        plan = next(p for p in COLINEAR_PLAN if p[0] in name)
        _, a, cosine = plan
        x = as64(value).reshape(-1)
        if abs(cosine) == 1:
            y = a * x
        else:
            n = rng.standard_normal(x.size)
            n -= (n @ x) / (x @ x) * x           # orthogonal to θ₀
            n /= np.linalg.norm(n)
            # cos = a‖x‖ / √(a²‖x‖² + b²)  ⇒  b = |a|‖x‖·√(1/cos² − 1)
            b = abs(a) * np.linalg.norm(x) * np.sqrt(1 / cosine ** 2 - 1)
            y = a * x + b * n
        out[name] = torch.from_numpy(y.reshape(value.shape).astype(np.float32))
    if COLINEAR.exists():
        shutil.rmtree(COLINEAR)
    COLINEAR.mkdir(parents=True)
    for companion in ("config.json", "generation_config.json", "tokenizer_config.json"):
        shutil.copyfile(FIXTURES / "f32" / "base" / companion, COLINEAR / companion)
        os.chmod(COLINEAR / companion, 0o644)
    save_tensors(COLINEAR / "model.safetensors", out)
    print("colinear model (cosine with the base as stored in float32; mergekit's threshold 0.9995):")
    for name in float_names(out):
        x, y = as64(base[name]).reshape(-1), as64(out[name]).reshape(-1)
        c = (x @ y) / np.linalg.norm(x) / np.linalg.norm(y)
        print(f"  {name:48s} cos {c:+.7f}  {'linear' if abs(c) > 0.9995 else 'spherical'}")


# ======================================================================================
# float64 re-implementations (from the definitions; see docs/METHODS.md)
# ======================================================================================

def layer_t(name: str) -> float:
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p == "layers":
            return int(parts[i + 1]) / (LAYERS - 1)
    return 0.0


def resolve(setting, name: str, t: float):
    """A recipe value for tensor `name` at layer position t: scalar, gradient, or conditions."""
    if isinstance(setting, list) and setting and isinstance(setting[0], dict):
        for c in setting:
            if c.get("filter") in (None, "*") or c["filter"] in name:
                return resolve(c["value"], name, t)
        raise KeyError(name)
    if isinstance(setting, list):
        scaled = t * (len(setting) - 1)
        i0 = int(scaled)
        i1 = min(len(setting) - 1, i0 + 1)
        f = scaled - i0
        return (1 - f) * setting[i0] + f * setting[i1]
    return setting


def slerp64(t, v0, v1):
    a, b = v0.reshape(-1), v1.reshape(-1)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    na, nb = (na if na > 1e-8 else 1.0), (nb if nb > 1e-8 else 1.0)
    d = np.clip((a / na) @ (b / nb), -1, 1)
    if abs(d) > 0.9995:
        return (1 - t) * v0 + t * v1
    w = np.arccos(d)
    return (np.sin((1 - t) * w) * v0 + np.sin(t * w) * v1) / np.sin(w)


def nuslerp64(t, v0, v1, row_wise, flatten):
    shape = v0.shape
    if flatten:
        x, y = v0.reshape(1, -1), v1.reshape(1, -1)
    elif row_wise:
        x, y = np.moveaxis(v0, 0, -1), np.moveaxis(v1, 0, -1)   # vectors along the first axis
    else:
        x, y = v0, v1
    nx = np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-7)
    ny = np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), 1e-7)
    c = np.clip(np.sum((x / nx) * (y / ny), axis=-1, keepdims=True), -1, 1)
    colinear = (1 - c * c) <= 1e-16
    w = np.arccos(np.where(colinear, 0, c))
    s = np.where(colinear, 1, np.sin(w))
    r = np.where(colinear, (1 - t) * x + t * y, (np.sin((1 - t) * w) * x + np.sin(t * w) * y) / s)
    if not flatten and row_wise:
        r = np.moveaxis(r, -1, 0)
    return r.reshape(shape)


def multislerp64(vs, weights, normalize, eps=1e-8):
    if len(vs) == 1:
        return vs[0]
    V = np.stack([v.reshape(-1) for v in vs])
    w = np.asarray(weights, dtype=np.float64)
    if normalize:
        w = w / w.sum()
    norms = np.linalg.norm(V, axis=1, keepdims=True)
    U = V / (norms + eps)
    m = (U * w[:, None]).sum(0)
    mn = np.linalg.norm(m)
    if mn < eps:
        return (V * w[:, None]).sum(0).reshape(vs[0].shape)
    m = m / mn
    d = U @ m
    g = ((U - d[:, None] * m) * w[:, None]).sum(0)
    gn = np.linalg.norm(g) + eps
    r = (m * np.cos(gn) + g * (np.sin(gn) / gn)) * float((norms[:, 0] * w).sum())
    return r.reshape(vs[0].shape)


def karcher64(vs, max_iter=10, tol=1e-5):
    if len(vs) == 1:
        return vs[0]
    X = [v.reshape(-1) for v in vs]
    alpha = [1 / len(X)] * len(X)
    norms = [np.linalg.norm(x) for x in X]
    units = [np.zeros_like(x) if n == 0 else x / n for x, n in zip(X, norms)]
    valid = [i for i, n in enumerate(norms) if n > tol]
    if not valid:
        return np.zeros_like(vs[0])
    a = [1 / len(valid)] * len(valid)
    U = [units[i] for i in valid]
    m = sum(ai * u for ai, u in zip(a, U))
    mn = np.linalg.norm(m)
    m = U[0].copy() if mn < tol else m / mn
    for _ in range(max_iter):
        g = np.zeros_like(m)
        for ai, u in zip(a, U):
            d = np.clip(m @ u, -1, 1)
            th = np.arccos(d)
            if th < tol:
                continue
            g += ai * (th / np.sin(th)) * (u - d * m)
        gn = np.linalg.norm(g)
        if gn < tol:
            break
        m = np.cos(gn) * m + np.sin(gn) * (g / gn)
        un = np.linalg.norm(m)
        if un > tol:
            m = m / un
    return (sum(ai * n for ai, n in zip(alpha, norms)) * m).reshape(vs[0].shape)


def reference(method: str, config: dict, models: dict, names) -> dict:
    """The float64 result of a case's recipe, per tensor."""
    base_path = config.get("base_model")
    entries = config["models"]
    params = config.get("parameters", {})
    out = {}
    for name in names:
        t = layer_t(name)
        base = as64(models[base_path][name]) if base_path else None
        listed = [e for e in entries if e["model"] != base_path]     # mergekit's non-base inputs
        xs = [as64(models[e["model"]][name]) for e in listed]
        ws = [resolve(e.get("parameters", {}).get("weight", 1.0), name, t) for e in listed]
        if method == "slerp":
            out[name] = slerp64(resolve(params["t"], name, t), base, xs[0])
        elif method == "nuslerp":
            total = ws[0] + ws[1]
            tt = 0.5 if abs(total) < 1e-6 else ws[1] / total
            flat, row = params.get("nuslerp_flatten", True), params.get("nuslerp_row_wise", False)
            if base is not None:
                out[name] = base + nuslerp64(tt, xs[0] - base, xs[1] - base, row, flat)
            else:
                out[name] = nuslerp64(tt, xs[0], xs[1], row, flat)
        elif method == "multislerp":
            normalize = params.get("normalize_weights", True)
            if base is not None and len(xs) > 1:
                out[name] = base + multislerp64([x - base for x in xs], ws, normalize)
            else:
                out[name] = multislerp64(xs, ws, normalize)
        elif method == "karcher":
            points = xs + ([base] if base is not None else [])
            out[name] = karcher64(points, params.get("max_iter", 10), params.get("tol", 1e-5))
        else:
            raise ValueError(method)
    return out


# ======================================================================================
# mergekit
# ======================================================================================

def parse_recipe(text: str) -> dict:
    import yaml  # PyYAML comes with mergekit
    return yaml.safe_load(text)


def run_mergekit(recipe: str) -> dict:
    mergekit_yaml = Path(sys.executable).parent / "mergekit-yaml"
    with tempfile.TemporaryDirectory(prefix="mk-slerp-") as tmp:
        cfg = Path(tmp) / "config.yml"
        cfg.write_text(recipe)
        outdir = Path(tmp) / "out"
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
        cmd = [str(mergekit_yaml), str(cfg), str(outdir), "--no-cuda", "--no-copy-tokenizer",
               "--no-write-model-card", "--quiet", "--random-seed", "0"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode != 0:
            sys.stderr.write(res.stdout + res.stderr)
            raise SystemExit(f"mergekit failed for:\n{recipe}")
        return load_model(outdir)


def mergekit_version() -> str:
    from importlib.metadata import version
    return f"mergekit {version('mergekit')}, torch {torch.__version__}"


def bf16_ulps(a: torch.Tensor, b: torch.Tensor) -> int:
    """Largest distance in bf16 steps (ordered bits, ±0 equal)."""
    def key(t):
        bits = t.contiguous().view(torch.int16).to(torch.int64) & 0xFFFF
        return torch.where(bits >= 0x8000, 0x8000 - bits, bits)
    return int((key(a) - key(b)).abs().max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare the committed goldens, write nothing")
    args = parser.parse_args()
    print(mergekit_version())
    if not args.check:
        OUT.mkdir(parents=True, exist_ok=True)
        make_colinear_model()
    failures = []
    manifest = []
    for name, method, dtype_dir, out_dtype, recipe in cases():
        text = recipe.replace("{F}", str(FIXTURES))
        merged = run_mergekit(text)
        names = float_names(merged)
        config = parse_recipe(text)
        paths = {config.get("base_model")} | {e["model"] for e in config["models"]}
        models = {p: load_model(Path(p)) for p in paths if p}
        expected = reference(method, config, models, names)
        golden = {n: merged[n] for n in names}
        path = OUT / f"{name}.safetensors"
        entry = {"name": name, "method": method, "recipe": recipe, "file": str(path.relative_to(FIXTURES)),
                 "out_dtype": out_dtype}
        err = max(float(np.max(np.abs(as64(golden[n]) - expected[n]))) for n in names)
        if out_dtype == "F32":
            largest = max(float(golden[n].abs().max()) for n in names)
            ulp = 2.0 ** (np.floor(np.log2(largest)) - 23)
            tolerance = float(f"{max(4 * ulp, 2 * err):.2g}")
            entry["tolerance"] = tolerance
            ok = err <= 8 * ulp
            print(f"  {name:20s} mergekit vs float64: max |Δ| {err:.2e} = {err / ulp:.1f} ulp of {largest:.3g} "
                  f"(tolerance {tolerance:.2e})")
        else:
            rounded = {n: torch.from_numpy(expected[n]).to(torch.float32).to(torch.bfloat16) for n in names}
            ulps = max(bf16_ulps(golden[n], rounded[n]) for n in names)
            entry["ulps"] = 1
            ok = ulps <= 1
            print(f"  {name:20s} mergekit vs float64 rounded to bf16: at most {ulps} ulp")
        if not ok:
            failures.append(name)
        if args.check:
            committed = load_file(str(path)) if path.exists() else {}
            same = committed.keys() == golden.keys() and all(torch.equal(committed[n], golden[n]) for n in names)
            print(f"  {name:20s} committed golden {'identical' if same else 'DIFFERS'}")
            if not same:
                failures.append(name + " (committed)")
        else:
            save_tensors(path, golden)
        manifest.append(entry)
    if not args.check:
        write_json(MANIFEST, manifest)
    if failures:
        print("FAILED: " + ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
