#!/usr/bin/env python3
"""How far Precision::Bf16 lands from the f32 reference, next to PyTorch's own bf16 module.

For each model directory (an e2e fixture with input.json + noise.safetensors, or a model plus
--input/--noise), three runs of the same transform with the same injected eps:

  f32 reference   tools/sgt_reference in f32 (the weights upcast), as the fixtures were made
  torch bf16      the same nn.Module cast to bfloat16 (weights, activations and the noise formula
                  in bf16: what "run the module in bf16" means in PyTorch, oneDNN on the CPU)
  sgt bf16        `sgt transform --precision bf16` (bf16 activations only at matmul inputs)

and the error of the last two against the first, per output, as the C++ tests measure it: the
largest absolute difference at real positions over the largest absolute reference value.

  precision_report.py --sgt build/release/tools/sgt tests/data/e2e/llama_gqa_llama3_bf16 ...
  precision_report.py --sgt SGT MODEL_DIR --input IN.json --noise NOISE.safetensors

Needs torch, transformers and safetensors (a venv; never run in CI). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from sgt_reference.model import SgtModel  # noqa: E402
from sgt_reference.transform import load_inputs, transform  # noqa: E402

OUTPUTS = ("mean", "std", "transformed")


def relative_error(got: torch.Tensor, want: torch.Tensor, real: torch.Tensor) -> float:
    got, want = got.double()[real], want.double()[real]
    scale = float(want.abs().max())
    return float((got - want).abs().max()) / (scale if scale > 0 else 1.0)


@torch.no_grad()
def torch_bf16(model: SgtModel, inputs, noise: torch.Tensor) -> dict:
    """The transform with the whole module (and eps) in bfloat16."""
    m = copy.deepcopy(model).to(torch.bfloat16)
    real3 = inputs.attention_mask[..., None]
    x = m.embed(inputs.input_ids)
    hf_mask = inputs.attention_mask.to(torch.int64)
    mu = torch.where(real3, m.mean_estimator(x, hf_mask), 0.0)
    sigma = torch.where(real3, m.std_estimator(x, hf_mask), 0.0)
    eps = torch.where(real3, noise.to(torch.bfloat16), 0.0)
    y = x + mu + sigma * eps
    out = torch.where((inputs.noise_mask & inputs.attention_mask)[..., None], y, x)
    lo, hi = model.value_range
    if lo is not None or hi is not None:
        out = torch.clamp(out, min=lo, max=hi)
    return {"mean": mu.float(), "std": sigma.float(), "transformed": out.float()}


def sgt_bf16(sgt: str, model_dir: str, input_path: str, noise_path: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.safetensors")
        subprocess.run([sgt, "transform", model_dir, "--input", input_path, "--noise", noise_path,
                        "--output", out, "--precision", "bf16", "--dump-intermediates",
                        "--threads", "2"], check=True, stdout=subprocess.DEVNULL)
        return load_file(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model_dirs", nargs="+")
    p.add_argument("--sgt", required=True, help="the sgt binary")
    p.add_argument("--input", help="IN.json (default: MODEL_DIR/input.json)")
    p.add_argument("--noise", help="noise.safetensors (default: MODEL_DIR/noise.safetensors)")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    print("| model | run | " + " | ".join(OUTPUTS) + " |")
    print("|---|---|" + "---|" * len(OUTPUTS))
    for d in args.model_dirs:
        input_path = args.input or os.path.join(d, "input.json")
        noise_path = args.noise or os.path.join(d, "noise.safetensors")
        model = SgtModel.from_dir(d)
        inputs = load_inputs(input_path, model.vocab_size)
        noise = load_file(noise_path)["noise"]
        reference = transform(model, inputs, noise=noise)
        real = inputs.attention_mask
        name = os.path.basename(os.path.normpath(d))
        for label, outputs in (("torch bf16 module", torch_bf16(model, inputs, noise)),
                               ("sgt --precision bf16", sgt_bf16(args.sgt, d, input_path,
                                                                 noise_path))):
            errs = [relative_error(outputs[k], reference[k], real) for k in OUTPUTS]
            print(f"| {name} | {label} | " + " | ".join(f"{e:.2e}" for e in errs) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
