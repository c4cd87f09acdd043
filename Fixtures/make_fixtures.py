#!/usr/bin/env python3
"""Generate the MergeKit test fixtures (tiny Llama-shaped checkpoints + expected merges).

Usage (from the repository root, any venv with `pip install numpy safetensors`):

    /path/to/venv/bin/python Fixtures/make_fixtures.py

The script is deterministic: fixed numpy.random.default_rng seeds, sorted JSON keys,
no timestamps.  Re-running it rewrites Fixtures/{f32,f16,bf16,expected} with
byte-identical files.  torch is NOT required: BF16 is produced with bit arithmetic
in numpy and files are written with the low-level safetensors serialize API.

Pipeline
--------
1. Master weights in float64: base ~ N(0, 0.02) (RMSNorm weights 1 + N(0, 0.02));
   ft_x = base + tau_x with tau_x ~ N(0, 0.01), one seed per task, and a few
   tau entries forced to exactly 0.
2. For each storage dtype D in (f32, f16, bf16) every model is the float64 master
   rounded once to D (round-to-nearest-even) and written as a HF-style directory.
3. The stored files are read back from disk; task vectors are computed from the
   ROUNDED stored values (ft_D - base_D, in float64), the merges are evaluated in
   float64 and rounded once (RNE) to the output dtype.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import safetensors

ROOT = Path(__file__).resolve().parent

# --------------------------------------------------------------------------------------
# Model shape
# --------------------------------------------------------------------------------------
HIDDEN = 16
INTERMEDIATE = 24
LAYERS = 2
HEADS = 4
KV_HEADS = 2
VOCAB = 32
HEAD_DIM = HIDDEN // HEADS
KV_DIM = KV_HEADS * HEAD_DIM
POSITIONS = 8
MAX_POSITIONS = 64

SEED_BASE = 20240501
SEED_TASKS = {"ft_a": 1001, "ft_b": 2002, "ft_c": 3003}
MODELS = ["base", "ft_a", "ft_b", "ft_c"]
BASE_STD = 0.02
TAU_STD = 0.01
ZERO_FRACTION = 0.01  # fraction of tau entries per tensor forced to exactly 0 (at least 1)

DTYPE_DIRS = ["f32", "f16", "bf16"]
DIR_TO_CODE = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
TORCH_DTYPE = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}

# (dtype_dir, model) -> number of shards (transformers-style sharded checkpoint)
SHARDED = {("bf16", "base"): 3, ("f16", "ft_c"): 2}

METADATA = {"format": "pt"}
TRANSFORMERS_VERSION = "4.46.0"


def tensor_layout():
    """(name, shape, kind) in transformers state_dict order.

    kind: "embed" | "linear" | "norm" (RMSNorm weight, centred on 1) | "int" (I64 buffer).
    """
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN), "embed")]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", (HIDDEN, HIDDEN), "linear"),
            (p + "self_attn.k_proj.weight", (KV_DIM, HIDDEN), "linear"),
            (p + "self_attn.v_proj.weight", (KV_DIM, HIDDEN), "linear"),
            (p + "self_attn.o_proj.weight", (HIDDEN, HIDDEN), "linear"),
            (p + "mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN), "linear"),
            (p + "mlp.up_proj.weight", (INTERMEDIATE, HIDDEN), "linear"),
            (p + "mlp.down_proj.weight", (HIDDEN, INTERMEDIATE), "linear"),
            (p + "input_layernorm.weight", (HIDDEN,), "norm"),
            (p + "post_attention_layernorm.weight", (HIDDEN,), "norm"),
        ]
    out += [
        ("model.norm.weight", (HIDDEN,), "norm"),
        ("model.rotary_emb.position_ids", (1, POSITIONS), "int"),
        ("lm_head.weight", (VOCAB, HIDDEN), "linear"),
    ]
    return out


LAYOUT = tensor_layout()
FLOAT_NAMES = [n for n, _, k in LAYOUT if k != "int"]
INT_NAMES = [n for n, _, k in LAYOUT if k == "int"]

# --------------------------------------------------------------------------------------
# Rounding (all round-to-nearest-even)
# --------------------------------------------------------------------------------------


def f32_to_bf16_bits(x32: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bits exactly like PyTorch's c10::BFloat16 round_to_nearest_even."""
    x32 = np.ascontiguousarray(x32, dtype=np.float32)
    u = x32.view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x32), np.uint16(0x7FC0), rounded).astype(np.uint16)


def f64_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float64 -> bf16 bits with a SINGLE correct RNE rounding.

    Goes through float32 and then applies the PyTorch f32->bf16 formula, except in the
    (rare) double-rounding case where the float32 rounding landed exactly on a bf16
    midpoint: then the direction is decided by the exact float64 value.
    """
    x = np.asarray(x, dtype=np.float64)
    f = x.astype(np.float32)
    bits = f32_to_bf16_bits(f)
    u = f.view(np.uint32)
    tie = ((u & 0xFFFF) == 0x8000) & (f.astype(np.float64) != x) & np.isfinite(x)
    if np.any(tie):
        trunc = (u >> 16).astype(np.uint16)
        away = np.abs(x) > np.abs(f.astype(np.float64))
        fixed = np.where(away, trunc + np.uint16(1), trunc).astype(np.uint16)
        bits = np.where(tie, fixed, bits).astype(np.uint16)
    return bits


def bf16_double_rounding_diffs(x: np.ndarray) -> int:
    """How many elements PyTorch-style f64->f32->bf16 would round differently."""
    x = np.asarray(x, dtype=np.float64)
    return int(np.count_nonzero(f32_to_bf16_bits(x.astype(np.float32)) != f64_to_bf16_bits(x)))


def f16_double_rounding_diffs(x: np.ndarray) -> int:
    x = np.asarray(x, dtype=np.float64)
    a = x.astype(np.float16).view(np.uint16)
    b = x.astype(np.float32).astype(np.float16).view(np.uint16)
    return int(np.count_nonzero(a != b))


def bf16_bits_to_f64(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def round_to(x: np.ndarray, code: str) -> np.ndarray:
    """float64 -> storage array for dtype code (BF16 is returned as uint16 bits)."""
    x = np.asarray(x, dtype=np.float64)
    if code == "F32":
        return x.astype(np.float32)
    if code == "F16":
        return x.astype(np.float16)  # numpy converts double->half directly (single RNE)
    if code == "BF16":
        return f64_to_bf16_bits(x)
    raise ValueError(code)


def to_f64(code: str, arr: np.ndarray) -> np.ndarray:
    if code == "BF16":
        return bf16_bits_to_f64(arr)
    return arr.astype(np.float64)


# --------------------------------------------------------------------------------------
# safetensors I/O without torch
# --------------------------------------------------------------------------------------
CODE_TO_NAME = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64"}
CODE_TO_NP = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64}
NP_TO_CODE = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int64): "I64"}


def save_safetensors(path: Path, tensors: dict, metadata=METADATA) -> None:
    """tensors: name -> (code, ndarray). BF16 arrays are uint16 bit patterns."""
    keep = {}
    for name, (code, arr) in tensors.items():
        arr = np.ascontiguousarray(arr, dtype=CODE_TO_NP[code])
        if arr.dtype.byteorder == ">":
            raise ValueError("big-endian arrays are not supported")
        keep[name] = (code, arr)
    if hasattr(safetensors, "TensorSpec"):
        # safetensors >= 0.8: keyword-only TensorSpec with a raw pointer; `keep` holds the
        # buffers alive for the duration of the call.
        specs = {
            name: safetensors.TensorSpec(
                dtype=CODE_TO_NAME[code],
                shape=list(arr.shape),
                data_ptr=arr.ctypes.data,
                data_len=arr.nbytes,
            )
            for name, (code, arr) in keep.items()
        }
    else:
        # older safetensors: plain dicts {"dtype", "shape", "data"}
        specs = {
            name: {"dtype": CODE_TO_NAME[code], "shape": list(arr.shape), "data": arr.tobytes()}
            for name, (code, arr) in keep.items()
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.serialize_file(specs, str(path), metadata)
    del keep
    path.chmod(0o644)  # safetensors creates files 0600


def load_safetensors_file(path: Path) -> dict:
    """name -> (code, ndarray) (BF16 as uint16 bits), via safetensors.deserialize."""
    out = {}
    for name, info in safetensors.deserialize(path.read_bytes()):
        code = info["dtype"]
        arr = np.frombuffer(bytes(info["data"]), dtype=np.dtype(CODE_TO_NP[code]).newbyteorder("<"))
        out[name] = (code, arr.reshape(info["shape"]).astype(CODE_TO_NP[code]))
    return out


def load_model_dir(d: Path) -> dict:
    index = d / "model.safetensors.index.json"
    if index.exists():
        wm = json.loads(index.read_text())["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            part = load_safetensors_file(d / shard)
            for name in part:
                assert wm[name] == shard, (name, shard)
            out.update(part)
        assert set(out) == set(wm)
        return out
    return load_safetensors_file(d / "model.safetensors")


# --------------------------------------------------------------------------------------
# Master weights
# --------------------------------------------------------------------------------------


def make_masters():
    masters = {}
    rng = np.random.default_rng(SEED_BASE)
    base = {}
    for name, shape, kind in LAYOUT:
        if kind == "int":
            base[name] = np.arange(POSITIONS, dtype=np.int64).reshape(shape)
            continue
        w = rng.normal(0.0, BASE_STD, size=shape)
        if kind == "norm":
            w = 1.0 + w
        base[name] = w
    masters["base"] = base

    for task, seed in SEED_TASKS.items():
        rng = np.random.default_rng(seed)
        m = {}
        for name, shape, kind in LAYOUT:
            if kind == "int":
                m[name] = base[name].copy()
                continue
            tau = rng.normal(0.0, TAU_STD, size=shape)
            n = tau.size
            k = max(1, int(round(n * ZERO_FRACTION)))
            idx = rng.choice(n, size=k, replace=False)
            tau.reshape(-1)[idx] = 0.0
            m[name] = base[name] + tau
        masters[task] = m
    return masters


# --------------------------------------------------------------------------------------
# HF directory writing
# --------------------------------------------------------------------------------------


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def llama_config(ddir: str) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": MAX_POSITIONS,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": TORCH_DTYPE[ddir],
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": VOCAB,
    }


GENERATION_CONFIG = {
    "_from_model_config": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "transformers_version": TRANSFORMERS_VERSION,
}

TOKENIZER_CONFIG = {
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": "<s>",
    "clean_up_tokenization_spaces": False,
    "eos_token": "</s>",
    "legacy": False,
    "model_max_length": MAX_POSITIONS,
    "pad_token": None,
    "padding_side": "left",
    "tokenizer_class": "LlamaTokenizer",
    "unk_token": "<unk>",
}


def split_shards(names, nbytes, n):
    """Contiguous split of the state_dict order into n shards of roughly equal bytes."""
    total = sum(nbytes[x] for x in names)
    shards = [[] for _ in range(n)]
    cum = 0
    for name in names:
        mid = cum + nbytes[name] / 2.0
        shards[min(n - 1, int(mid * n // total))].append(name)
        cum += nbytes[name]
    assert all(shards), "empty shard"
    return shards


def write_model_dir(d: Path, ddir: str, tensors: dict, nshards: int | None) -> None:
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / "config.json", llama_config(ddir))
    write_json(d / "generation_config.json", GENERATION_CONFIG)
    write_json(d / "tokenizer_config.json", TOKENIZER_CONFIG)
    if not nshards:
        save_safetensors(d / "model.safetensors", tensors)
        return
    order = [n for n, _, _ in LAYOUT]
    nbytes = {k: tensors[k][1].nbytes for k in order}
    weight_map = {}
    for i, names in enumerate(split_shards(order, nbytes, nshards), start=1):
        fname = f"model-{i:05d}-of-{nshards:05d}.safetensors"
        save_safetensors(d / fname, {k: tensors[k] for k in names})
        for k in names:
            weight_map[k] = fname
    index = {"metadata": {"total_size": sum(nbytes.values())}, "weight_map": weight_map}
    write_json(d / "model.safetensors.index.json", index)


# --------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------


def case(name, ddir, kind, models, weights, scale, out_code):
    return {
        "name": name,
        "dtype_dir": ddir,
        "kind": kind,
        "models": list(models),
        "weights": [float(w) for w in weights],
        "scale": float(scale),
        "out_dtype": out_code,
        "file": f"expected/{ddir}/{name}.safetensors",
    }


def all_cases():
    cases = []
    abc = ["ft_a", "ft_b", "ft_c"]
    for ddir in DTYPE_DIRS:
        code = DIR_TO_CODE[ddir]
        cases.append(case("tv_a", ddir, "task_vector", ["ft_a"], [1.0], 1.0, "F32"))
        cases.append(case("sum", ddir, "merge", abc, [1.0, 1.0, 1.0], 0.5, code))
        cases.append(case("negate_a", ddir, "merge", ["ft_a"], [-1.0], 1.0, code))
        cases.append(case("analogy", ddir, "merge", abc, [-1.0, 1.0, 1.0], 1.0, code))
    cases.append(case("weighted", "f32", "merge", abc, [0.3, 0.5, -0.2], 0.8, "F32"))
    cases.append(case("sum_f32out", "bf16", "merge", abc, [1.0, 1.0, 1.0], 0.5, "F32"))
    return cases


def evaluate_case(c, stored):
    """stored: model -> name -> (code, arr) as read back from disk for c['dtype_dir']."""
    base = stored["base"]
    out = {}
    stats = {"double_rounding_diffs": 0}
    for name in [n for n, _, _ in LAYOUT]:
        code, arr = base[name]
        if code == "I64":
            if c["kind"] == "merge":
                out[name] = (code, arr.copy())
            continue
        theta0 = to_f64(code, arr)
        acc = np.zeros_like(theta0)
        for m, w in zip(c["models"], c["weights"]):
            mc, ma = stored[m][name]
            acc = acc + w * (to_f64(mc, ma) - theta0)
        if c["kind"] == "task_vector":
            val = c["scale"] * acc
        else:
            val = theta0 + c["scale"] * acc
        oc = c["out_dtype"]
        out[name] = (oc, round_to(val, oc))
        if oc == "BF16":
            stats["double_rounding_diffs"] += bf16_double_rounding_diffs(val)
        elif oc == "F16":
            stats["double_rounding_diffs"] += f16_double_rounding_diffs(val)
    return out, stats


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def main() -> int:
    for sub in DTYPE_DIRS + ["expected"]:
        p = ROOT / sub
        if p.exists():
            shutil.rmtree(p)

    masters = make_masters()
    report = {}

    for ddir in DTYPE_DIRS:
        code = DIR_TO_CODE[ddir]
        dr = 0
        for model in MODELS:
            tensors = {}
            for name, _, kind in LAYOUT:
                v = masters[model][name]
                if kind == "int":
                    tensors[name] = ("I64", v)
                else:
                    tensors[name] = (code, round_to(v, code))
                    if code == "BF16":
                        dr += bf16_double_rounding_diffs(v)
                    elif code == "F16":
                        dr += f16_double_rounding_diffs(v)
            write_model_dir(ROOT / ddir / model, ddir, tensors, SHARDED.get((ddir, model)))

        # Read back what was written; everything below uses the ROUNDED stored values.
        stored = {m: load_model_dir(ROOT / ddir / m) for m in MODELS}
        base = stored["base"]
        taus = {
            t: np.concatenate([
                (to_f64(*stored[t][n]) - to_f64(*base[n])).ravel() for n in FLOAT_NAMES
            ])
            for t in SEED_TASKS
        }
        base_all = np.concatenate([to_f64(*base[n]).ravel() for n in FLOAT_NAMES])
        ta, tb, tc = taus["ft_a"], taus["ft_b"], taus["ft_c"]
        report[ddir] = {
            "inputs_double_rounding_diffs": dr,
            "tau_zeros": {t: int(np.count_nonzero(v == 0)) for t, v in taus.items()},
            "sign_conflicts_ab": int(np.count_nonzero(ta * tb < 0)),
            "sign_conflicts_abc": int(np.count_nonzero(~((np.sign(ta) >= 0) & (np.sign(tb) >= 0) & (np.sign(tc) >= 0))
                                                       & ~((np.sign(ta) <= 0) & (np.sign(tb) <= 0) & (np.sign(tc) <= 0)))),
            "base_subnormals": int(np.count_nonzero((base_all != 0) & (np.abs(base_all) < {"F32": 2.0**-126, "F16": 2.0**-14, "BF16": 2.0**-126}[code]))),
        }
        assert all(v > 0 for v in report[ddir]["tau_zeros"].values()), "expected exact-zero tau entries"
        assert report[ddir]["sign_conflicts_ab"] > 0, "expected sign conflicts"
        for n in INT_NAMES:
            for m in MODELS:
                assert np.array_equal(stored[m][n][1], base[n][1])

    cases = all_cases()
    for c in cases:
        stored = {m: load_model_dir(ROOT / c["dtype_dir"] / m) for m in MODELS}
        out, stats = evaluate_case(c, stored)
        save_safetensors(ROOT / c["file"], out)
        report.setdefault("cases", {})[c["file"]] = stats
    write_json(ROOT / "expected" / "cases.json", cases)

    print(f"numpy {np.__version__}, safetensors {safetensors.__version__}")
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
