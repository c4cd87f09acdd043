#!/usr/bin/env python3
"""Check that a safetensors checkpoint is readable by the reference Python package.

Usage:
    python Fixtures/check_interop.py FILE_OR_DIR [EXPECTED_FILE_OR_DIR]

FILE_OR_DIR is a .safetensors file or a Hugging Face model directory containing
either model.safetensors or model.safetensors.index.json plus its shards.

Without EXPECTED: loads every tensor and prints the tensor count.
With EXPECTED: additionally compares every tensor (names, shapes, dtypes, values).
Value tolerance depends on the dtype:
    BF16, F16 : at most 1 ulp (distance between the bit patterns in the ordered
                integer encoding; +0 and -0 are treated as equal)
    F32       : |a - b| <= max(1e-7, 1e-6 * |b|)
    F64       : |a - b| <= max(1e-15, 1e-12 * |b|)
    integers / BOOL : exact
NaNs must match NaNs.  Exits 0 when everything matches, 1 on any mismatch, 2 on
usage / load errors.

Only numpy and safetensors are needed (no torch).  Non-BF16 tensors are read with
safetensors.safe_open(path, framework="numpy"); BF16 tensors (which numpy cannot
represent) are read from safetensors.deserialize() and decoded as uint16 << 16.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from safetensors import deserialize, safe_open

MAX_REPORTED = 20


class LoadError(Exception):
    pass


def _decode_bf16(data: bytes, shape) -> np.ndarray:
    bits = np.frombuffer(data, dtype="<u2").astype(np.uint32)
    return (bits << 16).view(np.float32).reshape(shape)


def load_file(path: Path) -> tuple[dict, dict, dict]:
    """Returns (tensors name -> ndarray, dtypes name -> safetensors dtype code, metadata).

    BF16 tensors are returned decoded to float32 (exactly), F16 as float16, etc.
    """
    tensors, dtypes = {}, {}
    raw = None
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata() or {}
        for name in f.keys():
            sl = f.get_slice(name)
            code = sl.get_dtype()
            dtypes[name] = code
            if code == "BF16":
                if raw is None:
                    raw = {n: info for n, info in deserialize(path.read_bytes())}
                info = raw[name]
                tensors[name] = _decode_bf16(bytes(info["data"]), info["shape"])
                if list(info["shape"]) != list(sl.get_shape()):
                    raise LoadError(f"{path}: {name}: shape disagreement between APIs")
            else:
                tensors[name] = f.get_tensor(name)
    return tensors, dtypes, metadata


def load(target: Path) -> tuple[dict, dict, list[str]]:
    """Load a file or a HF directory. Returns (tensors, dtypes, description lines)."""
    notes = []
    if target.is_dir():
        index = target / "model.safetensors.index.json"
        single = target / "model.safetensors"
        if index.exists():
            idx = json.loads(index.read_text())
            if "weight_map" not in idx:
                raise LoadError(f"{index}: no weight_map")
            weight_map = idx["weight_map"]
            shards = sorted(set(weight_map.values()))
            tensors, dtypes = {}, {}
            data_bytes = 0
            for shard in shards:
                sp = target / shard
                if not sp.exists():
                    raise LoadError(f"{index}: shard {shard} does not exist")
                t, d, meta = load_file(sp)
                if meta.get("format") != "pt":
                    notes.append(f"warning: {shard}: __metadata__ format is {meta.get('format')!r}, not 'pt'")
                for name in t:
                    if name in tensors:
                        raise LoadError(f"{name} appears in more than one shard")
                    if weight_map.get(name) != shard:
                        raise LoadError(f"{shard}: tensor {name} is mapped to {weight_map.get(name)!r} in the index")
                    data_bytes += t[name].size * _itemsize(d[name])
                tensors.update(t)
                dtypes.update(d)
            missing = sorted(set(weight_map) - set(tensors))
            if missing:
                raise LoadError(f"{index}: tensors listed but not found in shards: {missing[:5]}")
            total = idx.get("metadata", {}).get("total_size")
            if total is not None and int(total) != data_bytes:
                raise LoadError(f"{index}: metadata.total_size {total} != actual tensor bytes {data_bytes}")
            notes.append(f"sharded: {len(shards)} shard(s), total_size {data_bytes}")
            return tensors, dtypes, notes
        if single.exists():
            target = single
        else:
            raise LoadError(f"{target}: neither model.safetensors nor model.safetensors.index.json")
    if not target.exists():
        raise LoadError(f"{target}: no such file")
    t, d, meta = load_file(target)
    if meta.get("format") != "pt":
        notes.append(f"warning: __metadata__ format is {meta.get('format')!r}, not 'pt'")
    return t, d, notes


_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
             "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def _itemsize(code: str) -> int:
    return _ITEMSIZE[code]


def _ordered_bits(x: np.ndarray, code: str) -> np.ndarray:
    """Map 16-bit float bit patterns to integers whose difference counts ulps."""
    if code == "BF16":
        bits = (np.ascontiguousarray(x, dtype=np.float32).view(np.uint32) >> 16).astype(np.int64)
    else:  # F16
        bits = np.ascontiguousarray(x, dtype=np.float16).view(np.uint16).astype(np.int64)
    neg = (bits & 0x8000) != 0
    mag = bits & 0x7FFF
    return np.where(neg, -mag, mag)  # +0 and -0 both map to 0


def compare_tensor(name, code, a, b) -> list[str]:
    """Returns a list of problems (empty when a matches expected b)."""
    if code in ("BF16", "F16", "F32", "F64"):
        a64 = a.astype(np.float64)
        b64 = b.astype(np.float64)
        nan_a, nan_b = np.isnan(a64), np.isnan(b64)
        bad = nan_a != nan_b
        both = ~(nan_a | nan_b)
        if code in ("BF16", "F16"):
            ulps = np.abs(_ordered_bits(a, code) - _ordered_bits(b, code))
            bad |= both & (ulps > 1)
        else:
            rel, absol = (1e-6, 1e-7) if code == "F32" else (1e-12, 1e-15)
            with np.errstate(invalid="ignore"):
                diff = np.abs(a64 - b64)
                same_inf = np.isinf(a64) & (a64 == b64)
                bad |= both & ~same_inf & ~(diff <= np.maximum(absol, rel * np.abs(b64)))
    else:
        bad = a != b
    if not np.any(bad):
        return []
    idx = np.argwhere(bad)
    first = tuple(int(i) for i in idx[0])
    msg = (f"{name}: {len(idx)} of {a.size} element(s) out of tolerance ({code}); "
           f"first at {list(first)}: got {a[first]!r}, expected {b[first]!r}")
    if a.dtype.kind == "f":
        msg += f"; max |diff| {float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64)))):.3e}"
    return [msg]


def main(argv) -> int:
    if len(argv) not in (2, 3) or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    actual_path = Path(argv[1])
    try:
        actual, adtypes, notes = load(actual_path)
    except Exception as e:  # LoadError, OSError, SafetensorError, ...
        print(f"FAIL: cannot load {actual_path}: {e}", file=sys.stderr)
        return 2
    for n in notes:
        print(n)
    counts = {}
    for code in adtypes.values():
        counts[code] = counts.get(code, 0) + 1
    print(f"{actual_path}: {len(actual)} tensors ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))})")
    if len(argv) == 2:
        return 0

    expected_path = Path(argv[2])
    try:
        expected, edtypes, _ = load(expected_path)
    except Exception as e:
        print(f"FAIL: cannot load expected {expected_path}: {e}", file=sys.stderr)
        return 2

    problems = []
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        problems.append(f"missing tensors ({len(missing)}): {missing[:10]}")
    if extra:
        problems.append(f"unexpected tensors ({len(extra)}): {extra[:10]}")
    for name in sorted(set(expected) & set(actual)):
        a, b = actual[name], expected[name]
        if adtypes[name] != edtypes[name]:
            problems.append(f"{name}: dtype {adtypes[name]} != expected {edtypes[name]}")
            continue
        if list(a.shape) != list(b.shape):
            problems.append(f"{name}: shape {list(a.shape)} != expected {list(b.shape)}")
            continue
        problems += compare_tensor(name, adtypes[name], a, b)

    if problems:
        print(f"FAIL: {actual_path} does not match {expected_path} ({len(problems)} problem(s)):", file=sys.stderr)
        for p in problems[:MAX_REPORTED]:
            print(f"  - {p}", file=sys.stderr)
        if len(problems) > MAX_REPORTED:
            print(f"  ... and {len(problems) - MAX_REPORTED} more", file=sys.stderr)
        return 1
    print(f"OK: {len(expected)} tensors match {expected_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
