#!/usr/bin/env python3
"""Writes an sgt4t model directory (config.json + model.safetensors) with random weights.

The estimators are real transformers decoders (see sgt_reference/model.py); the weights are
drawn so that activations stay O(1) through the stack: linear weights N(0, 1/fan_in) (std ~0.06-0.13
for the tiny sizes used in tests), norm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2), embeddings
N(0, 1). With a final norm and a head the std estimator's raw output is then about N(0, 1), so a
cloak std varies across its range instead of saturating.

Everything is a function of --seed (a torch.Generator, tensors drawn in name order), so the same
command line writes the same bytes.

Examples:
  make_random_model.py out/tiny --model-type llama --hidden 64 --layers 1 --heads 4 --kv-heads 1
  make_random_model.py out/demo --hidden 256 --heads 8 --kv-heads 2 --intermediate 512 \\
      --rope-scaling llama3 --mean-param bounded_tanh --std-param cloak --dtype bf16 --seed 7
  make_random_model.py out/m --model-type mistral --sliding-window 8 \\
      --config-json extra.json   # deep-merged into config.json, e.g.
      # {"value_range": [-3, null], "std_estimator": {"config": {"num_hidden_layers": 2}}}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from sgt_reference.cli import argument_parser  # noqa: E402
from sgt_reference.config import (  # noqa: E402
    PARAMETERIZATION_TYPES,
    SUPPORTED_MODEL_TYPES,
    deep_merge,
    estimator_hf_config,
    make_sgt_config,
)
from sgt_reference.model import SgtModel  # noqa: E402

# Parameterization settings used unless --config-json overrides them.
DEFAULT_PARAMS = {
    "identity": {},
    "bounded_tanh": {"bound": 1.0, "init_shift": 0.0},
    "cloak": {"scale": [0.01, 1.0], "shallow": 1.0},
    "cloak_sigmoid": {"scale": [0.01, 1.0], "shallow": 1.0},
    "direct": {"scale": [0.05, 1.5]},
}

LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


def _optional_float(text: str):
    return None if text.lower() in ("null", "none") else float(text)


def parse_args(argv=None) -> argparse.Namespace:
    p = argument_parser(__doc__)
    p.add_argument("out_dir", help="model directory to write (created if missing)")
    p.add_argument("--model-type", default="llama", choices=SUPPORTED_MODEL_TYPES)
    p.add_argument("--hidden", type=int, default=64, help="hidden_size (default 64)")
    p.add_argument("--layers", type=int, default=1, help="decoder layers per estimator (default 1)")
    p.add_argument("--heads", type=int, default=4, help="num_attention_heads (default 4)")
    p.add_argument("--kv-heads", type=int, default=None,
                   help="num_key_value_heads (default: heads)")
    p.add_argument("--head-dim", type=int, default=None, help="head_dim (default: hidden/heads)")
    p.add_argument("--intermediate", type=int, default=None, help="MLP size (default: 2*hidden)")
    p.add_argument("--vocab", type=int, default=256, help="vocab_size (default 256)")
    p.add_argument("--rms-norm-eps", type=float, default=1e-5)
    p.add_argument("--rope-theta", type=float, default=None,
                   help="default 500000 with --rope-scaling llama3, else 10000")
    p.add_argument("--rope-scaling", default="none", choices=("none", "linear", "llama3"),
                   help="llama3: low/high freq factors 1/4 (Llama 3.1's), see --rope-factor and "
                        "--rope-original-max")
    p.add_argument("--rope-factor", type=float, default=8.0, help="scaling factor (default 8)")
    p.add_argument("--rope-original-max", type=int, default=8192,
                   help="llama3 original_max_position_embeddings (default 8192); small values "
                        "make the scaling matter at short test lengths")
    p.add_argument("--max-position-embeddings", type=int, default=None,
                   help="default 131072 with llama3 scaling, else 4096")
    p.add_argument("--sliding-window", type=int, default=None,
                   help="sliding window: Mistral's every layer, Qwen2/3's from max_window_layers, "
                   "SmolLM3's NoPE layers, Gemma 2/3's local layers")
    p.add_argument("--attention-bias", action="store_true",
                   help="q/k/v/o biases (llama, qwen3; qwen2 always has q/k/v biases)")
    p.add_argument("--mean-param", default="identity", choices=PARAMETERIZATION_TYPES)
    p.add_argument("--std-param", default="cloak", choices=PARAMETERIZATION_TYPES)
    p.add_argument("--dtype", default="f32", choices=("f32", "bf16", "f16", "mixed"),
                   help="storage dtype of every tensor (default f32); mixed: embed_tokens bf16, "
                        "mean_estimator f16, std_estimator f32 except bf16 linear weights")
    p.add_argument("--no-final-norm", action="store_true",
                   help="final_norm false (both estimators)")
    p.add_argument("--no-head", action="store_true", help="head null (both estimators)")
    p.add_argument("--head-bias", action="store_true", help="heads with a bias")
    p.add_argument("--value-range", nargs=2, type=_optional_float, metavar=("MIN", "MAX"),
                   default=None, help="clamp range of the output; either may be 'null'")
    p.add_argument("--pad-token-id", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="seed of the weights (default 0)")
    p.add_argument("--config-json", default=None,
                   help="JSON file deep-merged into config.json before the weights are drawn")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> dict:
    kv_heads = args.kv_heads or args.heads
    head_dim = args.head_dim or args.hidden // args.heads
    scaling = None
    if args.rope_scaling == "llama3":
        scaling = dict(LLAMA3_SCALING, factor=args.rope_factor,
                       original_max_position_embeddings=args.rope_original_max)
    elif args.rope_scaling == "linear":
        scaling = {"rope_type": "linear", "factor": args.rope_factor}
    theta = args.rope_theta or (500000.0 if args.rope_scaling == "llama3" else 10000.0)
    max_pos = args.max_position_embeddings or (131072 if args.rope_scaling == "llama3" else 4096)
    hf = estimator_hf_config(
        args.model_type,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate or 2 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=args.rms_norm_eps,
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=max_pos,
        sliding_window=args.sliding_window,
        attention_bias=args.attention_bias,
    )

    def estimator(param: str, is_std: bool) -> dict:
        spec = {"type": param, **DEFAULT_PARAMS[param]}
        if param == "direct" and not is_std:
            spec["scale"] = [-1.0, 1.0]
        return {
            "model_type": args.model_type,
            "config": json.loads(json.dumps(hf)),
            "final_norm": not args.no_final_norm,
            "head": None if args.no_head else {"bias": bool(args.head_bias)},
            "parameterization": spec,
        }

    config = make_sgt_config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        mean_estimator=estimator(args.mean_param, False),
        std_estimator=estimator(args.std_param, True),
        value_range=None if args.value_range is None else list(args.value_range),
        pad_token_id=args.pad_token_id,
    )
    if args.config_json:
        with open(args.config_json, encoding="utf-8") as f:
            config = deep_merge(config, json.load(f))
    return config


@torch.no_grad()
def randomize(model: SgtModel, seed: int) -> None:
    """Deterministic O(1)-activation weights (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    for name, t in sorted(model.sgt_tensors().items()):
        noise = torch.randn(t.shape, generator=g, dtype=torch.float32)
        if name == "embed_tokens.weight":
            t.copy_(noise)
        elif name.endswith("norm.weight"):  # every RMSNorm: layer, final, q_norm, k_norm
            t.copy_(1.0 + 0.1 * noise)
        elif name.endswith(".bias"):
            t.copy_(0.1 * noise)
        elif name.endswith(".weight") and t.dim() == 2:
            t.copy_(noise / math.sqrt(t.shape[1]))
        else:
            raise ValueError(f"no init rule for tensor {name}")


def mixed_dtypes(model: SgtModel) -> dict:
    """Per-tensor storage dtypes for --dtype mixed (spec 2.2: dtypes may be mixed freely)."""
    out = {}
    for name, t in model.sgt_tensors().items():
        if name == "embed_tokens.weight":
            out[name] = torch.bfloat16
        elif name.startswith("mean_estimator."):
            out[name] = torch.float16
        else:
            out[name] = torch.bfloat16 if t.dim() == 2 else torch.float32
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(2)
    config = build_config(args)
    model = SgtModel(config)
    randomize(model, args.seed)
    if args.dtype == "mixed":
        model.save(args.out_dir, None, dtypes=mixed_dtypes(model))
    else:
        model.save(args.out_dir, args.dtype)
    n = sum(t.numel() for t in model.sgt_tensors().values())
    print(f"wrote {args.out_dir}: {n} parameters, {args.dtype}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
