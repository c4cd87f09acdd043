#!/usr/bin/env python3
"""Writes the PyTorch checkpoint fixtures (Fixtures/pytorch/) with torch.save, and beside each the
safetensors file it must read as (the same tensors, each made contiguous and unshared, written by
safetensors.torch.save_file with {"format": "pt"}).

    /path/to/venv/bin/python Fixtures/pytorch/make_pytorch_fixtures.py

Needs torch and safetensors. Deterministic: fixed seeds; torch.save's archives carry a
serialization id, so the .pt bytes differ per run but their tensors do not.

  all_dtypes.pt          every dtype with a safetensors counterpart (F32, F16, BF16, F64, I64, I32,
                         I16, I8, U8, U16, U32, U64, BOOL, F8_E4M3, F8_E5M2), a scalar, an empty tensor
  views.pt               tied weights (one tensor twice), slices at an offset, a transpose, strided
                         and expanded views, a column, a Parameter, a tensor with Python attributes,
                         views of a BF16 storage
  protocol4.pt, protocol5.pt   views.pt's state dict pickled with protocols 4 and 5
  nested_state_dict.ckpt a training checkpoint: {"epoch", "global_step", "state_dict": ..., "optimizer_states"}
  nested_model.pth       {"model": {...}, "iteration": 7}
  sharded/               pytorch_model-0000K-of-00002.bin + pytorch_model.bin.index.json + config.json
  legacy.pt              the pre-1.6 format (_use_new_zipfile_serialization=False), which is refused
  f32_bin/, bf16_bin/    Fixtures/f32 and Fixtures/bf16 (base, ft_a, ft_b) re-saved as pytorch_model.bin
                         (bf16/base sharded as pytorch_model.bin.index.json), companions copied
  lora_bin/              Fixtures/svd_lora/lora_a loaded by PEFT onto Fixtures/f32/base and saved by
                         PEFT with safe_serialization=False: adapter_config.json + adapter_model.bin
                         (needs transformers and peft too)

and the seeds of the pickle fuzzer (Fuzz/pickle-seeds/): a few of the files above, and the bare
data.pkl of state dicts whose storages 0-3 have the sizes the fuzzer's wrapping archive gives them
(64, 16, 6 and 0 bytes), in protocols 2 and 4.
"""
import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.dirname(HERE)


def expected(state, path):
    """The safetensors a reader must produce from `state`: every tensor contiguous and unshared."""
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, path, metadata={"format": "pt"})


def all_dtypes():
    g = torch.Generator().manual_seed(19)
    f = lambda *shape: torch.randn(*shape, generator=g)
    sd = {
        "f32": f(3, 4),
        "f16": f(2, 5).half(),
        "bf16": f(4, 3).bfloat16(),
        "f64": f(2, 2).double(),
        "i64": torch.tensor([-(2**40), 0, 2**40 + 3], dtype=torch.int64),
        "i32": torch.tensor([[-7, 8], [2**30, -(2**31)]], dtype=torch.int32),
        "i16": torch.tensor([-300, 300, 7], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, 0, 5], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 17], dtype=torch.uint8),
        "u16": torch.tensor([0, 65535, 300], dtype=torch.uint16),
        "u32": torch.tensor([0, 2**32 - 1, 5], dtype=torch.uint32),
        "u64": torch.tensor([0, 2**63 - 1, 9], dtype=torch.uint64),
        "bool": torch.tensor([True, False, True]),
        "f8_e4m3": f(5).to(torch.float8_e4m3fn),
        "f8_e5m2": f(5).to(torch.float8_e5m2),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }
    torch.save(sd, os.path.join(HERE, "all_dtypes.pt"))
    expected(sd, os.path.join(HERE, "all_dtypes.safetensors"))


def views_state():
    g = torch.Generator().manual_seed(20)
    x = torch.randn(4, 6, generator=g)
    b = torch.randn(3, 5, generator=g).bfloat16()
    p = torch.nn.Parameter(torch.randn(2, 3, generator=g))
    attributed = torch.randn(3, generator=g)
    attributed.note = "an attribute"  # pickled through torch._tensor._rebuild_from_type_v2
    return {
        "embed.weight": x,
        "lm_head.weight": x,  # tied: the same tensor under two names
        "rows": x[1:3],  # a contiguous slice at an offset
        "transposed": x.t(),
        "strided": x[:, ::2],
        "column": x[:, 1],
        "inner": x[:, 2:4],
        "expanded": torch.arange(3, dtype=torch.float32).expand(4, 3),
        "bf16.whole": b,
        "bf16.transposed": b.t(),
        "bf16.tail": b[2],
        "param": p,
        "attributed": attributed,
    }


def views():
    sd = views_state()
    torch.save(sd, os.path.join(HERE, "views.pt"))
    expected(sd, os.path.join(HERE, "views.safetensors"))
    for protocol in (4, 5):
        torch.save(sd, os.path.join(HERE, f"protocol{protocol}.pt"), pickle_protocol=protocol)


def nested():
    g = torch.Generator().manual_seed(21)
    sd = {"layer.weight": torch.randn(3, 2, generator=g), "layer.bias": torch.randn(3, generator=g)}
    ckpt = {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.0.0",
        "state_dict": sd,
        "optimizer_states": [{"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(3, 2)}},
                              "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "params": [0, 1]}]}],
        "lr_schedulers": [],
    }
    torch.save(ckpt, os.path.join(HERE, "nested_state_dict.ckpt"))
    expected(sd, os.path.join(HERE, "nested_state_dict.safetensors"))
    torch.save({"model": sd, "iteration": 7}, os.path.join(HERE, "nested_model.pth"))


def sharded():
    g = torch.Generator().manual_seed(22)
    sd = {f"layers.{i}.weight": torch.randn(4, 4, generator=g) for i in range(3)}
    sd["norm.weight"] = torch.ones(4)
    directory = os.path.join(HERE, "sharded")
    os.makedirs(directory, exist_ok=True)
    names = list(sd)
    shards = {"pytorch_model-00001-of-00002.bin": names[:2], "pytorch_model-00002-of-00002.bin": names[2:]}
    weight_map = {}
    for shard, keys in shards.items():
        torch.save({k: sd[k] for k in keys}, os.path.join(directory, shard))
        weight_map.update({k: shard for k in keys})
    total = sum(t.numel() * t.element_size() for t in sd.values())
    with open(os.path.join(directory, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump({"model_type": "toy", "torch_dtype": "float32"}, f, indent=2)
    expected(sd, os.path.join(HERE, "sharded.safetensors"))


def legacy():
    g = torch.Generator().manual_seed(23)
    torch.save({"w": torch.randn(2, 2, generator=g)}, os.path.join(HERE, "legacy.pt"),
               _use_new_zipfile_serialization=False)


def models():
    """The safetensors fixture models re-saved by torch.save, to merge in both formats."""
    for dtype, sharded_base in (("f32", False), ("bf16", True)):
        for name in ("base", "ft_a", "ft_b"):
            source = os.path.join(FIXTURES, dtype, name)
            target = os.path.join(HERE, f"{dtype}_bin", name)
            os.makedirs(target, exist_ok=True)
            state = {}
            for file in sorted(os.listdir(source)):
                if file.endswith(".safetensors"):
                    state.update(load_file(os.path.join(source, file)))
                elif file.endswith(".json") and not file.endswith(".index.json"):
                    shutil.copy(os.path.join(source, file), os.path.join(target, file))
            # The base's tensor order (the safetensors files' data order is by name).
            keys = sorted(state)
            if name == "base" and sharded_base:
                half = len(keys) // 2
                shards = {"pytorch_model-00001-of-00002.bin": keys[:half], "pytorch_model-00002-of-00002.bin": keys[half:]}
                for shard, ks in shards.items():
                    torch.save({k: state[k] for k in ks}, os.path.join(target, shard))
                with open(os.path.join(target, "pytorch_model.bin.index.json"), "w") as f:
                    json.dump({"metadata": {}, "weight_map": {k: s for s, ks in shards.items() for k in ks}}, f, indent=2)
            else:
                torch.save({k: state[k] for k in keys}, os.path.join(target, "pytorch_model.bin"))


def lora_bin():
    """A PEFT adapter as PEFT writes it without safetensors (adapter_model.bin, torch.save)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(os.path.join(FIXTURES, "f32", "base"))
    model = PeftModel.from_pretrained(base, os.path.join(FIXTURES, "svd_lora", "lora_a"))
    target = os.path.join(HERE, "lora_bin")
    model.save_pretrained(target, safe_serialization=False)
    os.remove(os.path.join(target, "README.md"))  # PEFT's model card template


def fuzz_seeds():
    import io
    import zipfile
    seeds = os.path.join(FIXTURES, "..", "Fuzz", "pickle-seeds")
    os.makedirs(seeds, exist_ok=True)
    for name in ("all_dtypes.pt", "views.pt", "protocol4.pt", "nested_state_dict.ckpt", "legacy.pt"):
        shutil.copy(os.path.join(HERE, name), os.path.join(seeds, name))
    x = torch.arange(16, dtype=torch.float32)
    y = torch.arange(16, dtype=torch.uint8)
    z = torch.ones(3, dtype=torch.float16)
    e = torch.zeros(0, dtype=torch.float32)
    sd = {"x": x.view(4, 4).t(), "rows": x[4:8], "y": y, "z": z, "empty": e, "tied": x}
    for protocol in (2, 4):
        buffer = io.BytesIO()
        torch.save(sd, buffer, pickle_protocol=protocol)
        with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
            pickle = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
            with open(os.path.join(seeds, f"state-dict-protocol{protocol}.pkl"), "wb") as f:
                f.write(archive.read(pickle))
    with open(os.path.join(seeds, "nested.pkl"), "wb") as f:
        buffer = io.BytesIO()
        torch.save({"epoch": 1, "state_dict": {"w": x[:4]}, "extra": [1.5, None, True, b"bytes", (1, 2)]}, buffer)
        with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
            f.write(archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl"))))


if __name__ == "__main__":
    all_dtypes()
    views()
    nested()
    sharded()
    legacy()
    models()
    lora_bin()
    fuzz_seeds()
    print("wrote", sorted(os.listdir(HERE)))
