#!/usr/bin/env python3
"""Goldens for merged vocabularies (`tokenizer_source`, the `tokenizer:` block, `chat_template`)
from mergekit 0.1.5 itself.

Usage (from the repository root):

    /work/venvs/mergekit/bin/python Fixtures/mergekit_goldens/make_vocab_goldens.py \
        --mergekit /work/venvs/mergekit/bin/mergekit-yaml

(or set MERGEKIT_YAML; --only CASE,CASE re-runs those cases alone).  Needs numpy, safetensors and tokenizers in the running Python (the
mergekit environment has them); mergekit runs in its own environment (CPU, float32, offline).
Writes, under Fixtures/mergekit_goldens/vocab/:

  models/<name>/   tiny Llama-shaped checkpoints (hidden 4, one layer, float32) with small real
                   byte-level BPE tokenizers (tokenizer.json, a transformers-4-style
                   tokenizer_config.json with added_tokens_decoder, special_tokens_map.json):
      base         40 tokens (<unk> <s> </s>, the alphabet, merges of corpus A), untied head;
      chat         base's tokenizer + <|im_start|> <|im_end|> (special) and <|extra|>, but
                   config.json vocab_size 42: <|extra|> has no row (a token past the embedding);
                   a chat template;
      code         another BPE vocabulary (corpus B, specials in another order: <pad> first, so
                   every shared token has another id) + <tool> (not special); the same chat
                   template as chat;
      notok        base's rows, no tokenizer files (mergekit takes it to have the base's);
      tied_base    base's tokenizer, tie_word_embeddings, no lm_head;
      tied_chat    tied_base + <|im_start|> <|im_end|>, tied, no lm_head.
  Every fine-tuned model's row for a token the base has is the base's row plus noise; its other
  rows are its own.
  <case>.yml       the recipes (model paths relative to this folder): whole models (union, base,
                   a model, the tokenizer block, tied embeddings, no base, chat templates) and
                   the mean of two models' rows (three models, with and without a base), and
                   slices (a merged slice, a frankenmerge, tied models);
  <case>/          mergekit's output: model.safetensors, tokenizer.json, config.json (only
                   vocab_size, tie_word_embeddings), chat_template.jinja when written.

mergekit orders the tokens a union adds by hash order (they differ from run to run), so tests
compare rows token by token (each golden's tokenizer.json says which row is which token).

Self-checks: every output's vocabulary is the one mergekit's rules give, computed here from the
tokenizers (union, base, a model; tokens past a model's vocab_size left out; `tokens:` entries
added), and every chat template MergeKit names renders, under transformers' Jinja, the conversation
format it stands for.  Re-running writes byte-identical models and recipes, and outputs equal
token by token (a union's order may change).
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
from safetensors.numpy import load_file, save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = Path(__file__).resolve().parent / "vocab"
METADATA = {"format": "pt"}
HIDDEN, HEADS, HEAD_DIM, KV_HEADS, MLP = 4, 2, 2, 1, 6
CORPUS_A = ["the quick brown fox jumps over the lazy dog"] * 10
CORPUS_B = ["pack my box with five dozen liquor jugs the quick"] * 10
CHAT_TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
BASE_TEMPLATE = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"

LAYER = {
    "model.layers.0.input_layernorm.weight": [HIDDEN],
    "model.layers.0.post_attention_layernorm.weight": [HIDDEN],
    "model.layers.0.self_attn.q_proj.weight": [HEADS * HEAD_DIM, HIDDEN],
    "model.layers.0.self_attn.k_proj.weight": [KV_HEADS * HEAD_DIM, HIDDEN],
    "model.layers.0.self_attn.v_proj.weight": [KV_HEADS * HEAD_DIM, HIDDEN],
    "model.layers.0.self_attn.o_proj.weight": [HIDDEN, HEADS * HEAD_DIM],
    "model.layers.0.mlp.gate_proj.weight": [MLP, HIDDEN],
    "model.layers.0.mlp.up_proj.weight": [MLP, HIDDEN],
    "model.layers.0.mlp.down_proj.weight": [HIDDEN, MLP],
    "model.norm.weight": [HIDDEN],
}


def bpe(corpus, size: int, specials) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=size, special_tokens=specials, initial_alphabet=[],
                                                        show_progress=False))
    return tok


def tokenizers() -> dict:
    """Each model's tokenizer (None: no tokenizer files) and chat template."""
    base = bpe(CORPUS_A, 40, ["<unk>", "<s>", "</s>"])
    chat = Tokenizer.from_str(base.to_str())
    chat.add_special_tokens([AddedToken("<|im_start|>", special=True, normalized=False),
                             AddedToken("<|im_end|>", special=True, normalized=False)])
    chat.add_tokens([AddedToken("<|extra|>", special=False, normalized=True)])
    code = bpe(CORPUS_B, 46, ["<pad>", "<unk>", "<s>", "</s>"])
    code.add_tokens([AddedToken("<tool>", special=False, normalized=True)])
    tied_chat = Tokenizer.from_str(base.to_str())
    tied_chat.add_special_tokens([AddedToken("<|im_start|>", special=True, normalized=False),
                                  AddedToken("<|im_end|>", special=True, normalized=False)])
    return {
        "base": (base, BASE_TEMPLATE), "chat": (chat, CHAT_TEMPLATE), "code": (code, CHAT_TEMPLATE), "notok": (None, None),
        "tied_base": (Tokenizer.from_str(base.to_str()), None), "tied_chat": (tied_chat, CHAT_TEMPLATE),
    }


def vocab_of(tok: Tokenizer) -> dict:
    return tok.get_vocab(with_added_tokens=True)


def write_tokenizer(folder: Path, tok: Tokenizer, template) -> None:
    """tokenizer.json, and the transformers-4-style tokenizer_config.json and special_tokens_map.json."""
    (folder / "tokenizer.json").write_text(json.dumps(json.loads(tok.to_str()), indent=2, ensure_ascii=False) + "\n")
    added = json.loads(tok.to_str())["added_tokens"]
    decoder = {str(a["id"]): {k: a[k] for k in ["content", "lstrip", "normalized", "rstrip", "single_word", "special"]} for a in added}
    config = {"added_tokens_decoder": decoder, "bos_token": "<s>", "clean_up_tokenization_spaces": False, "eos_token": "</s>",
              "model_max_length": 64, "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>"}
    if template:
        config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, indent=2) + "\n")


def config(vocab_size: int, tied: bool) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "head_dim": HEAD_DIM, "hidden_act": "silu",
        "hidden_size": HIDDEN, "initializer_range": 0.02, "intermediate_size": MLP,
        "max_position_embeddings": 32, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": HEADS, "num_hidden_layers": 1, "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "tie_word_embeddings": tied,
        "torch_dtype": "float32", "vocab_size": vocab_size,
    }


def make_models() -> dict:
    toks = tokenizers()
    base_vocab = vocab_of(toks["base"][0])
    rng = np.random.default_rng(19)
    base = {name: (1.0 if name.endswith("norm.weight") else 0.0) + rng.normal(0, 0.5, shape) for name, shape in LAYER.items()}
    base_rows = {"model.embed_tokens.weight": rng.normal(0, 0.5, (40, HIDDEN)), "lm_head.weight": rng.normal(0, 0.5, (40, HIDDEN))}
    specs = {"base": (40, False, 0), "chat": (42, False, 1), "code": (47, False, 2), "notok": (40, False, 3),
             "tied_base": (40, True, 4), "tied_chat": (42, True, 5)}
    out = {}
    for key, (rows, tied, seed) in specs.items():
        r = np.random.default_rng(100 + seed)
        tok = toks[key][0] if toks[key][0] is not None else toks["base"][0]
        vocab = vocab_of(tok)
        noise = 0.0 if key in ("base", "tied_base") else 0.1
        tensors = {name: value + noise * r.normal(0, 1, value.shape) for name, value in base.items()}
        for name in ["model.embed_tokens.weight"] + ([] if tied else ["lm_head.weight"]):
            rows_out = r.normal(0, 0.5, (rows, HIDDEN))
            for token, i in sorted(vocab.items(), key=lambda kv: (kv[1], kv[0])):  # id order: deterministic draws
                if i < rows and token in base_vocab:
                    rows_out[i] = base_rows[name][base_vocab[token]] + noise * r.normal(0, 1, HIDDEN)
            tensors[name] = rows_out
        out[key] = ({n: v.astype(np.float32) for n, v in tensors.items()}, rows, tied, toks[key])
    return out


def write_models(all_models: dict) -> None:
    for key, (tensors, rows, tied, (tok, template)) in all_models.items():
        folder = ROOT / "models" / key
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        save_file(dict(sorted(tensors.items())), str(folder / "model.safetensors"), metadata=METADATA)
        os.chmod(folder / "model.safetensors", 0o644)
        (folder / "config.json").write_text(json.dumps(config(rows, tied), indent=2, sort_keys=True) + "\n")
        if tok is not None:
            write_tokenizer(folder, tok, template)


# Each case: the recipe (mergekit's vocabulary; model paths relative to ROOT).
CASES = {
    # The README's example: every model's tokens, a linear average (a model without a tokenizer).
    "union_linear": {
        "merge_method": "linear",
        "base_model": "models/base",
        "models": [
            {"model": "models/base", "parameters": {"weight": 1.0}},
            {"model": "models/chat", "parameters": {"weight": 1.0}},
            {"model": "models/code", "parameters": {"weight": 0.5}},
            {"model": "models/notok", "parameters": {"weight": 0.5}},
        ],
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    "union_task_arithmetic": {
        "merge_method": "task_arithmetic",
        "base_model": "models/base",
        "models": [
            {"model": "models/chat", "parameters": {"weight": 0.7}},
            {"model": "models/code", "parameters": {"weight": 0.4}},
        ],
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    "base_ties": {
        "merge_method": "ties",
        "base_model": "models/base",
        "models": [
            {"model": "models/chat", "parameters": {"weight": 1.0, "density": 0.7}},
            {"model": "models/code", "parameters": {"weight": 0.5, "density": 0.7}},
        ],
        "tokenizer_source": "base",
        "dtype": "float32",
    },
    "model_source": {
        "merge_method": "task_arithmetic",
        "base_model": "models/base",
        "models": [
            {"model": "models/chat", "parameters": {"weight": 0.5}},
            {"model": "models/code", "parameters": {"weight": 0.5}},
        ],
        "tokenizer_source": "models/code",
        "dtype": "float32",
    },
    "tokens_block": {
        "merge_method": "linear",
        "base_model": "models/base",
        "models": [
            {"model": "models/base", "parameters": {"weight": 1.0}},
            {"model": "models/chat", "parameters": {"weight": 1.0}},
            {"model": "models/code", "parameters": {"weight": 1.0}},
        ],
        "tokenizer": {
            "source": "union",
            "tokens": {
                "<|im_start|>": {"source": "models/chat"},
                "<|im_end|>": {"source": {"kind": "model_token", "model": "models/base", "token": "</s>"}, "force": True},
                "<tool>": {"source": {"kind": "model_token", "model": "models/code", "token_id": 4}},
                "<new>": {"source": {"kind": "zero"}},
            },
            "pad_to_multiple_of": 16,
        },
        "dtype": "float32",
    },
    "pad_base": {
        "merge_method": "task_arithmetic",
        "base_model": "models/base",
        "models": [{"model": "models/chat", "parameters": {"weight": 1.0}}],
        "tokenizer": {"source": "base", "pad_to_multiple_of": 32},
        "dtype": "float32",
    },
    "tied_union": {
        "merge_method": "task_arithmetic",
        "base_model": "models/tied_base",
        "models": [{"model": "models/tied_chat", "parameters": {"weight": 0.8}}],
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    "mixed_tied": {
        "merge_method": "linear",
        "base_model": "models/base",
        "models": [
            {"model": "models/base", "parameters": {"weight": 0.5}},
            {"model": "models/tied_chat", "parameters": {"weight": 0.5}},
        ],
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    # Tied and untied models of one vocabulary without tokenizer_source: the tied model's
    # embedding is its head. A tied base merged with a model that stores its head: mergekit
    # writes the merged head but keeps tie_word_embeddings true (transformers then ignores the
    # head); MergeKit's output says false (the test checks the tensors).
    "tied_model_plain": {
        "merge_method": "task_arithmetic",
        "base_model": "models/base",
        "models": [{"model": "models/tied_base", "parameters": {"weight": 0.6}}],
        "dtype": "float32",
    },
    "tied_base_plain": {
        "merge_method": "task_arithmetic",
        "base_model": "models/tied_base",
        "models": [{"model": "models/notok", "parameters": {"weight": 0.6}}],
        "dtype": "float32",
    },
    "tied_base_union": {
        "merge_method": "task_arithmetic",
        "base_model": "models/tied_base",
        "models": [
            {"model": "models/chat", "parameters": {"weight": 0.6}},
            {"model": "models/tied_chat", "parameters": {"weight": 0.3}},
        ],
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    "union_no_base": {
        "merge_method": "linear",
        "models": [
            {"model": "models/chat", "parameters": {"weight": 1.0}},
            {"model": "models/code", "parameters": {"weight": 2.0}},
        ],
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    # Tokens two models have but not every model (nor the base): the mean of their rows; a tied
    # model's head is its embedding.
    "union_mean": {
        "merge_method": "linear",
        "base_model": "models/base",
        "models": [
            {"model": "models/base", "parameters": {"weight": 1.0}},
            {"model": "models/chat", "parameters": {"weight": 1.0}},
            {"model": "models/tied_chat", "parameters": {"weight": 1.0}},
            {"model": "models/code", "parameters": {"weight": 1.0}},
        ],
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    "union_mean_no_base": {
        "merge_method": "linear",
        "models": [
            {"model": "models/chat", "parameters": {"weight": 1.0}},
            {"model": "models/tied_chat", "parameters": {"weight": 0.5}},
            {"model": "models/code", "parameters": {"weight": 1.0}},
        ],
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    # Layer-wise: a slice's vocabulary tensors are merged from its own sources (the base, not
    # among them, gives no rows); a frankenmerge takes the embedding from its first slice's model
    # and the head from its last's, zeros for the tokens that model lacks.
    "slices_union": {
        "slices": [{"sources": [
            {"model": "models/chat", "layer_range": [0, 1], "parameters": {"weight": 0.5}},
            {"model": "models/code", "layer_range": [0, 1], "parameters": {"weight": 0.5}},
        ]}],
        "merge_method": "linear",
        "base_model": "models/base",
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    "slices_franken": {
        "slices": [
            {"sources": [{"model": "models/chat", "layer_range": [0, 1]}]},
            {"sources": [{"model": "models/code", "layer_range": [0, 1]}]},
        ],
        "merge_method": "passthrough",
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    # Tied models in slices: one slice merging two tied models stays tied (no head); a
    # frankenmerge of a tied model then an untied one takes the head from the last (mergekit takes
    # config.json from a model chosen by set order, so its tie_word_embeddings varies: the test
    # checks the tensors).
    "slices_tied": {
        "slices": [{"sources": [
            {"model": "models/tied_base", "layer_range": [0, 1]},
            {"model": "models/tied_chat", "layer_range": [0, 1], "parameters": {"weight": 0.7}},
        ]}],
        "merge_method": "task_arithmetic",
        "base_model": "models/tied_base",
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    "slices_tied_franken": {
        "slices": [
            {"sources": [{"model": "models/tied_chat", "layer_range": [0, 1]}]},
            {"sources": [{"model": "models/chat", "layer_range": [0, 1]}]},
        ],
        "merge_method": "passthrough",
        "tokenizer_source": "union",
        "dtype": "float32",
    },
    "chat_auto": {
        "merge_method": "task_arithmetic",
        "base_model": "models/base",
        "models": [
            {"model": "models/chat", "parameters": {"weight": 0.5}},
            {"model": "models/code", "parameters": {"weight": 0.5}},
        ],
        "tokenizer_source": "union",
        "chat_template": "auto",
        "dtype": "float32",
    },
    "chat_named": {
        "merge_method": "task_arithmetic",
        "base_model": "models/base",
        "models": [{"model": "models/chat", "parameters": {"weight": 1.0}}],
        "tokenizer_source": "base",
        "chat_template": "chatml",
        "dtype": "float32",
    },
}


def yaml_dump(obj, indent: int = 0) -> str:
    """A minimal YAML writer for the recipes above (JSON scalars and flow lists of numbers; keys
    quoted when not plain)."""
    pad = "  " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = k if k.replace("_", "").isalnum() else json.dumps(k)
            if isinstance(v, list) and all(isinstance(e, (int, float)) for e in v):
                lines.append(f"{pad}{key}: {json.dumps(v)}")
            elif isinstance(v, (dict, list)):
                lines.append(f"{pad}{key}:")
                lines.append(yaml_dump(v, indent + 1))
            else:
                lines.append(f"{pad}{key}: {json.dumps(v)}")
    else:
        for v in obj:
            inner = yaml_dump(v, indent + 1).split("\n")
            lines.append(f"{pad}- {inner[0].strip()}")
            lines.extend(inner[1:])
    return "\n".join(lines)


def run_mergekit(mergekit_yaml: str, case: str, recipe_path: Path) -> Path:
    out = ROOT / case
    with tempfile.TemporaryDirectory(prefix="mk-vocab-") as tmp:
        env = dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   PYTHONHASHSEED="0")
        cmd = [mergekit_yaml, str(recipe_path), str(Path(tmp) / "out"), "--no-cuda", "--no-write-model-card", "--quiet",
               "--random-seed", "0"]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if res.returncode != 0:
            sys.stderr.write(res.stdout + res.stderr)
            raise SystemExit(f"mergekit failed for {case}")
        produced = Path(tmp) / "out"
        tensors = {}
        for f in sorted(produced.glob("*.safetensors")):
            tensors.update(load_file(str(f)))
        cfg = json.loads((produced / "config.json").read_text())
        tok = json.loads((produced / "tokenizer.json").read_text())
        template = (produced / "chat_template.jinja").read_text() if (produced / "chat_template.jinja").exists() else None
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    for name, value in tensors.items():
        assert value.dtype == np.float32, (case, name, value.dtype)
    save_file(dict(sorted(tensors.items())), str(out / "model.safetensors"), metadata=METADATA)
    os.chmod(out / "model.safetensors", 0o644)
    kept = {k: cfg[k] for k in ["vocab_size", "tie_word_embeddings"]}
    (out / "config.json").write_text(json.dumps(kept, indent=2, sort_keys=True) + "\n")
    # The vocabulary only (token → id), in id order: the rest of the file is the source's.
    vocab = dict(tok["model"]["vocab"])
    for a in tok["added_tokens"]:
        vocab[a["content"]] = a["id"]
    (out / "vocabulary.json").write_text(json.dumps(dict(sorted(vocab.items(), key=lambda kv: (kv[1], kv[0]))), indent=1,
                                                     ensure_ascii=False) + "\n")
    if template is not None:
        (out / "chat_template.jinja").write_text(template)
    return out


# ---------------------------------------------------------------------------------------------
# Self-checks.

def expected_vocabulary(case: dict, toks: dict, rows: dict) -> set:
    """The set of tokens mergekit's rules give (its order varies from run to run)."""
    block = case.get("tokenizer") or {}
    source = block.get("source", "union") if block else case.get("tokenizer_source", "base")  # none: the base's, copied
    entries = case.get("models") or [src for slice_ in case["slices"] for src in slice_["sources"]]
    names = [m["model"].split("/")[-1] for m in entries]
    base = (case.get("base_model") or entries[0]["model"]).split("/")[-1]

    def vocab(name):
        tok = toks[name][0] or toks["base"][0]
        return {t for t, i in vocab_of(tok).items() if i < rows[name]}

    if source == "base":
        out = vocab(base)
    elif source == "union":
        out = set().union(*[vocab(n) for n in [base] + names])
    else:
        out = set(vocab_of(toks[source.split("/")[-1]][0]))
    return out | set((block.get("tokens") or {}).keys())


def check_templates() -> None:
    """Every template MergeKit names renders the format it stands for."""
    from transformers.utils.chat_template_utils import render_jinja_template
    swift = (Path(__file__).resolve().parents[2] / "Sources/MergeKit/Vocabulary/ChatTemplates.swift").read_text()
    conversation = [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": " Hi "},
                    {"role": "assistant", "content": "Hello! "}, {"role": "user", "content": "Bye"}]
    formats = {
        "chatml": "<|im_start|>system\nBe brief. <|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\nHello! <|im_end|>\n"
                  "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n",
        "llama3": "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "alpaca": "Be brief.\n\n### Instruction:\nHi\n\n### Response:\nHello!\n\n### Instruction:\nBye\n\n### Response:\n",
        "mistral": "<s> [INST] Be brief. \n\n Hi  [/INST] Hello! </s> [INST] Bye [/INST]",
        "exaone": "[|system|]Be brief. [|endofturn|]\n[|user|] Hi \n[|assistant|]Hello! [|endofturn|]\n[|user|]Bye\n[|assistant|]",
    }
    import re
    for name, wanted in formats.items():
        match = re.search(r'\("' + name + r'", ((?:"(?:[^"\\]|\\.)*"\s*(?:\+\s*)?)+)\)', swift)
        assert match, f"template {name} not found in ChatTemplates.swift"
        pieces = re.findall(r'"((?:[^"\\]|\\.)*)"', match.group(1))
        template = "".join(pieces).encode().decode("unicode_escape")
        rendered, _ = render_jinja_template(conversations=[conversation], chat_template=template, add_generation_prompt=True,
                                            bos_token="<s>", eos_token="</s>")
        if rendered[0] != wanted:
            raise SystemExit(f"template {name} renders {rendered[0]!r}, not {wanted!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mergekit", default=os.environ.get("MERGEKIT_YAML"))
    parser.add_argument("--only", help="comma-separated cases to run (the models are always rewritten)")
    args = parser.parse_args()
    if not args.mergekit:
        raise SystemExit("give --mergekit PATH/TO/mergekit-yaml (or MERGEKIT_YAML)")
    check_templates()
    all_models = make_models()
    write_models(all_models)
    toks = {k: v[3] for k, v in all_models.items()}
    rows = {k: v[1] for k, v in all_models.items()}
    only = set(args.only.split(",")) if args.only else set(CASES)
    for case, recipe in CASES.items():
        if case not in only:
            continue
        path = ROOT / f"{case}.yml"
        path.write_text(yaml_dump(recipe) + "\n")
        out = run_mergekit(args.mergekit, case, path)
        vocab = json.loads((out / "vocabulary.json").read_text())
        wanted = expected_vocabulary(recipe, toks, rows)
        if set(vocab) != wanted:
            raise SystemExit(f"{case}: mergekit's vocabulary {sorted(vocab)} is not the expected {sorted(wanted)}")
        print(f"{case}: {len(vocab)} tokens, vocab_size {json.loads((out / 'config.json').read_text())['vocab_size']}")


if __name__ == "__main__":
    main()
