#!/usr/bin/env python3
"""Writes the bundled demo *base* model: the tiny causal LM the demo transform protects prompts for.

  examples/models/demo_base/   config.json + generation_config.json + model.safetensors
                               (LlamaForCausalLM as transformers' save_pretrained writes it, bf16,
                               random weights), tokenizer.json + tokenizer_config.json copied from
                               examples/models/demo

An sgt4t model is trained for one base model: its `embed_tokens` is the base model's input
embedding table, and its output is fed to that model as `inputs_embeds`. So the demo base model
takes the demo transform's embedding table as its own, and the demo tokenizer; its LM head is its
own (a head tied to this table mostly predicts the token it was given).
`sgt generate examples/models/demo_base --chat examples/chat.json --protect examples/models/demo`
then runs the whole pipeline. Shape: vocab 1024, hidden 256, 2 Llama layers
(8 heads, 2 kv heads, head_dim 32, MLP 512), the demo's Llama 3.1 rope scaling. Random weights:
its answers are not language, they show the pipeline.

Usage:
  python3 tools/make_demo_base.py             # writes examples/models/demo_base of this checkout
  python3 tools/make_demo_base.py --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

import torch
from safetensors.torch import load_file
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "examples", "models", "demo")


def make_config(demo_config: dict, tokenizer_config: dict, vocab: dict) -> LlamaConfig:
    est = demo_config["mean_estimator"]["config"]
    return LlamaConfig(
        vocab_size=demo_config["vocab_size"],
        hidden_size=demo_config["hidden_size"],
        intermediate_size=est["intermediate_size"],
        num_hidden_layers=2,
        num_attention_heads=est["num_attention_heads"],
        num_key_value_heads=est["num_key_value_heads"],
        head_dim=est["head_dim"],
        rms_norm_eps=est["rms_norm_eps"],
        rope_theta=est["rope_theta"],
        rope_scaling=dict(est["rope_scaling"]),
        max_position_embeddings=est["max_position_embeddings"],
        hidden_act="silu",
        tie_word_embeddings=False,
        bos_token_id=vocab[tokenizer_config["bos_token"]],
        eos_token_id=vocab[tokenizer_config["eos_token"]],
        # Larger than transformers' 0.02 so that a 2-layer random model has decisive (not
        # near-tied) next-token logits: greedy tokens are then a stable reference.
        initializer_range=0.08,
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default=os.path.join(REPO, "examples", "models", "demo_base"))
    p.add_argument("--seed", type=int, default=20261204)
    args = p.parse_args(argv)

    with open(os.path.join(DEMO, "config.json")) as f:
        demo_config = json.load(f)
    with open(os.path.join(DEMO, "tokenizer_config.json")) as f:
        tokenizer_config = json.load(f)
    with open(os.path.join(DEMO, "tokenizer.json")) as f:
        tokenizer_json = json.load(f)
    vocab = dict(tokenizer_json["model"]["vocab"])
    for t in tokenizer_json.get("added_tokens", []):
        vocab[t["content"]] = t["id"]

    config = make_config(demo_config, tokenizer_config, vocab)
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    embed = load_file(os.path.join(DEMO, "model.safetensors"))["embed_tokens.weight"]
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(embed.float())
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, do_sample=False)

    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(DEMO, name), os.path.join(args.out, name))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
