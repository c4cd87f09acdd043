#!/usr/bin/env python3
"""Generates the model set of Benchmarks/vocab_union.sh: Llama-shaped bfloat16 checkpoints whose
vocabularies differ as fine-tunes' do (added chat and tool tokens), with real fast tokenizers.

Usage (the mergekit environment has torch, safetensors, tokenizers and transformers):

    /work/venvs/mergekit/bin/python Benchmarks/vocab_union_models.py --out DIR \
        [--vocab 128256 --hidden 2048 --layers 2 --intermediate 5632 --heads 32 --kv-heads 8 --seed 0]

Writes under DIR (each a directory with model.safetensors, config.json and the files
transformers' save_pretrained writes for a fast tokenizer):

  base      a byte-level BPE tokenizer of --vocab tokens (256 byte symbols, <unk> <s> </s>, and
            merges of random pairs of earlier tokens, so tokenizer.json has --vocab − 259 merges,
            as a real one has), embedding and head of --vocab rows;
  ft_1      base + <|im_start|> <|im_end|> (special): --vocab + 2 rows;
  ft_2      base + <|im_start|> (special) and 30 plain <tool_i> tokens: --vocab + 31 rows (so
            <|im_start|> is in two fine-tunes but not the base: mergekit's mean of their rows);
  ft_3      the base's tokenizer and rows;
  plain_1, plain_2   ft_1 and ft_2 without their added tokens (the base's vocabulary): the same
            merge of models of one vocabulary, to compare with.

Every fine-tune's tensors are the base's plus N(0, 0.002²) noise; added rows N(0, 0.02²).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast


def byte_level_bpe(size: int, rng: np.random.Generator) -> Tokenizer:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    tokens = list(alphabet)
    merges = []
    while len(vocab) < size:
        a = tokens[int(rng.integers(len(tokens)))]
        b = tokens[int(rng.integers(len(tokens)))]
        new = a + b
        if new in vocab or len(new) > 16:
            continue
        vocab[new] = len(vocab)
        tokens.append(new)
        merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<unk>", special=True), AddedToken("<s>", special=True), AddedToken("</s>", special=True)])
    return tok


def config(args, vocab: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": args.hidden,
        "intermediate_size": args.intermediate, "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads, "vocab_size": vocab, "max_position_embeddings": 2048, "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "head_dim": args.hidden // args.heads,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=5632)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    h, kv = args.hidden, args.kv_heads * (args.hidden // args.heads)

    base_tok = byte_level_bpe(args.vocab, rng)
    assert base_tok.get_vocab_size(with_added_tokens=True) == args.vocab
    chat_tok = Tokenizer.from_str(base_tok.to_str())
    chat_tok.add_special_tokens([AddedToken("<|im_start|>", special=True, normalized=False),
                                 AddedToken("<|im_end|>", special=True, normalized=False)])
    tool_tok = Tokenizer.from_str(base_tok.to_str())
    tool_tok.add_special_tokens([AddedToken("<|im_start|>", special=True, normalized=False)])
    tool_tok.add_tokens([AddedToken(f"<tool_{i}>", special=False, normalized=True) for i in range(30)])

    layer = {}
    for i in range(args.layers):
        pre = f"model.layers.{i}."
        layer.update({
            pre + "input_layernorm.weight": [h], pre + "post_attention_layernorm.weight": [h],
            pre + "self_attn.q_proj.weight": [h, h], pre + "self_attn.k_proj.weight": [kv, h],
            pre + "self_attn.v_proj.weight": [kv, h], pre + "self_attn.o_proj.weight": [h, h],
            pre + "mlp.gate_proj.weight": [args.intermediate, h], pre + "mlp.up_proj.weight": [args.intermediate, h],
            pre + "mlp.down_proj.weight": [h, args.intermediate],
        })
    layer["model.norm.weight"] = [h]
    vocab_names = ["model.embed_tokens.weight", "lm_head.weight"]

    def randn(shape, std):
        return torch.randn(shape, dtype=torch.float32) * std

    base = {name: (torch.ones(shape) if name.endswith("norm.weight") else randn(shape, 0.02)) for name, shape in layer.items()}
    base.update({name: randn([args.vocab, h], 0.02) for name in vocab_names})

    def write(name: str, tok: Tokenizer, tensors: dict) -> None:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        rows = tensors["model.embed_tokens.weight"].shape[0]
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in sorted(tensors.items())}, str(folder / "model.safetensors"),
                  metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(config(args, rows), indent=2) + "\n")
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
        fast.save_pretrained(str(folder))
        print(f"{folder}: {rows} rows, {os.path.getsize(folder / 'model.safetensors') / 1e9:.2f} GB", flush=True)

    write("base", base_tok, base)
    for name, tok, extra in [("ft_1", chat_tok, 2), ("ft_2", tool_tok, 31), ("ft_3", base_tok, 0)]:
        tuned = {k: v + randn(v.shape, 0.002) for k, v in base.items()}
        write(name, tok,
              {k: (torch.cat([v, randn([extra, h], 0.02)]) if k in vocab_names and extra else v) for k, v in tuned.items()})
        if extra:
            write(name.replace("ft", "plain"), base_tok, tuned)
        del tuned


if __name__ == "__main__":
    main()
