#!/usr/bin/env python3
"""Writes the bundled demo model and the demo prompt with its expected outputs.

  examples/models/demo/                config.json + model.safetensors (bf16, random weights),
                                       tokenizer.json + tokenizer_config.json (a small trained
                                       Llama-3-style BPE with the Llama 3.1 chat template, made
                                       by tools/make_demo_tokenizer.py)
  examples/prompt.json                 the prompt tokenized like `tokenizer(PROMPT)` (BOS first);
                                       noise_mask protects every token but BOS
  examples/chat.json                   a sample chat for `sgt transform --chat`
  examples/prompt_noise.safetensors    the injected eps (tensor "noise", F32 [1, S, 256])
  examples/prompt_expected.safetensors tools/reference.py's outputs for the two files above

The demo model has the demo tokenizer's vocabulary (vocab_size 1024), hidden 256,
one decoder layer per estimator, GQA (8 heads, 2 kv heads, head_dim 32), Llama 3.1 rope scaling,
mean `bounded_tanh`, std `cloak`. Its weights are random: it shows the pipeline, it protects
nothing.

Usage:
  python3 tools/make_demo.py            # writes into examples/ of this checkout
  python3 tools/make_demo.py --out DIR  # DIR/models/demo, DIR/prompt*.json/.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

TOOLS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import make_random_model  # noqa: E402
import reference  # noqa: E402
from sgt_reference.transform import load_inputs  # noqa: E402

VOCAB = 1024
CHAT = {
    "messages": [
        {"role": "system", "content": "You are a careful clinical assistant."},
        {"role": "user", "content": "Summarize the patient's discharge notes and list any "
                                    "medication changes."},
    ],
    "add_generation_prompt": True,
}
PROMPT = "Summarize the patient's discharge notes and list any medication changes."
MODEL_ARGS = [
    "--model-type", "llama", "--vocab", str(VOCAB), "--hidden", "256", "--layers", "1",
    "--heads", "8", "--kv-heads", "2", "--head-dim", "32", "--intermediate", "512",
    "--rope-scaling", "llama3", "--mean-param", "bounded_tanh", "--std-param", "cloak",
    "--head-bias", "--dtype", "bf16", "--seed", "20240901",
]
NOISE_SEED = 7


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(REPO, "examples"),
                   help="examples folder (default: examples/ of this checkout)")
    args = p.parse_args(argv)
    torch.set_num_threads(2)

    model_dir = os.path.join(args.out, "models", "demo")
    make_random_model.main([model_dir] + MODEL_ARGS)
    subprocess.run([sys.executable, os.path.join(TOOLS, "make_demo_tokenizer.py"), model_dir,
                    "--vocab-size", str(VOCAB)], check=True)
    from tokenizers import Tokenizer
    enc = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json")).encode(PROMPT)
    ids = enc.ids
    # BOS (added by the post-processor, empty span) keeps its clean embedding; the text's tokens
    # are protected -- the rule of `sgt transform --text`.
    prompt = {"input_ids": ids, "noise_mask": [0 if b == e else 1 for b, e in enc.offsets]}
    data = ids
    with open(os.path.join(args.out, "chat.json"), "w", encoding="utf-8") as f:
        json.dump(CHAT, f, indent=2)
        f.write("\n")
    prompt_path = os.path.join(args.out, "prompt.json")
    with open(prompt_path, "w", encoding="utf-8") as f:
        json.dump(prompt, f, separators=(",", ":"))
        f.write("\n")

    g = torch.Generator().manual_seed(NOISE_SEED)
    noise_path = os.path.join(args.out, "prompt_noise.safetensors")
    save_file({"noise": torch.randn(1, len(ids), 256, generator=g)}, noise_path)

    expected_path = os.path.join(args.out, "prompt_expected.safetensors")
    out = reference.run(model_dir, prompt_path, expected_path, noise_path=noise_path)
    inputs = load_inputs(prompt_path)
    worst = reference.check_against_manual(model_dir, inputs, out)
    std = out["std"]
    print(f"demo: {len(data)} tokens, std {float(std.min()):.3f}..{float(std.max()):.3f}, "
          f"HF vs manual {worst:.1e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
