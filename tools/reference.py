#!/usr/bin/env python3
"""Runs the reference transform (PyTorch + Hugging Face transformers) on an sgt4t model directory.

Writes the same file as `sgt transform --dump-intermediates`: F32 tensors `transformed`,
`embeddings`, `mean`, `std`, `noise`, each [B, S, H]. At padding positions mean/std/noise are 0
and `transformed` is the clean embedding. The noise is either injected (`--noise FILE`, tensor
"noise" F32 [B, S, H]) or `torch.manual_seed(N); torch.randn(B, S, H)` (`--seed N`).

Examples:
  reference.py MODEL_DIR --input in.json --output out.safetensors --noise noise.safetensors
  reference.py MODEL_DIR --input in.json --output out.safetensors --seed 42 --check

IN.json (spec section 3): {"input_ids": [[...], ...], "noise_mask": [[...], ...],
"attention_mask": [[...], ...]}; masks hold 0/1 or true/false; attention_mask may be left out;
a single sequence may be given without the outer list.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from sgt_reference.cli import argument_parser  # noqa: E402
from sgt_reference.manual import manual_transform  # noqa: E402
from sgt_reference.model import SgtModel  # noqa: E402
from sgt_reference.transform import load_inputs, transform, write_outputs  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argument_parser(__doc__)
    p.add_argument("model_dir", help="sgt4t model directory (config.json + model.safetensors)")
    p.add_argument("--input", required=True, help="IN.json")
    p.add_argument("--output", required=True, help="OUT.safetensors to write")
    noise = p.add_mutually_exclusive_group(required=True)
    noise.add_argument("--noise", help="safetensors file with tensor 'noise' F32 [B,S,H]")
    noise.add_argument("--seed", type=int, help="torch.manual_seed(N); torch.randn(B,S,H)")
    p.add_argument("--no-intermediates", action="store_true",
                   help="write only 'transformed'")
    p.add_argument("--check", action="store_true",
                   help="also recompute with the independent float64 implementation and fail "
                        "if they disagree")
    return p.parse_args(argv)


def check_against_manual(model_dir: str, inputs, outputs, *, atol: float = 2e-5) -> float:
    """Compares the HF-based outputs with sgt_reference.manual; returns the worst scaled error."""
    manual = manual_transform(model_dir, inputs.input_ids, inputs.noise_mask,
                              inputs.attention_mask, outputs["noise"])
    worst = 0.0
    for name in ("embeddings", "mean", "std", "noise", "transformed"):
        got, want = outputs[name].double(), manual[name]
        err = float((got - want).abs().max()) / max(1.0, float(want.abs().max()))
        worst = max(worst, err)
        if not err <= atol:
            raise AssertionError(f"{model_dir}: '{name}' differs from the manual reference by "
                                 f"{err:.3g} (scaled), tolerance {atol}")
    return worst


def run(model_dir: str, input_path: str, output_path: str, *, noise_path: str | None = None,
        seed: int | None = None, intermediates: bool = True, check: bool = False):
    model = SgtModel.from_dir(model_dir)
    inputs = load_inputs(input_path, model.vocab_size)
    noise = None
    if noise_path is not None:
        noise = load_file(noise_path)["noise"]
    outputs = transform(model, inputs, noise=noise, seed=seed)
    if check:
        check_against_manual(model_dir, inputs, outputs)
    tmp = output_path + ".tmp"
    write_outputs(tmp, outputs, intermediates)
    os.replace(tmp, output_path)  # no partial output file on failure
    return outputs


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(2)
    try:
        run(args.model_dir, args.input, args.output, noise_path=args.noise, seed=args.seed,
            intermediates=not args.no_intermediates, check=args.check)
    except (ValueError, KeyError, FileNotFoundError, FloatingPointError, AssertionError) as e:
        print(f"reference.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
