"""The transform (spec section 1) and its inputs/outputs (spec section 3).

    x     = E[input_ids]                  (f32 upcast of the stored table)
    mu    = MeanEstimator(x, attention_mask)
    sigma = StdEstimator(x, attention_mask)
    eps   = the given noise, or torch.manual_seed(seed); torch.randn(B, S, H)
    y     = x + mu + sigma * eps
    out   = where(noise_mask & attention_mask, y, x), then clamp to value_range

At padding positions (attention_mask 0) mu, sigma and eps are 0 and out = x.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict

import torch
from safetensors.torch import save_file

from .model import SgtModel

OUTPUT_NAMES = ("transformed", "embeddings", "mean", "std", "noise")


@dataclass
class TransformInputs:
    input_ids: torch.Tensor  # int64 [B, S]
    noise_mask: torch.Tensor  # bool  [B, S]
    attention_mask: torch.Tensor  # bool  [B, S]

    @property
    def shape(self):
        return tuple(self.input_ids.shape)


def _as_rows(value, key: str, flat: bool):
    if not isinstance(value, list):
        raise ValueError(f"{key}: expected a list")
    if flat:
        if any(isinstance(v, list) for v in value):
            raise ValueError(f"{key}: input_ids is a single sequence, so {key} must be one too")
        return [value]
    if not all(isinstance(row, list) for row in value):
        raise ValueError(f"{key}: expected a list of lists (one per sequence)")
    return value


def _mask(rows, key: str, shape) -> torch.Tensor:
    if len(rows) != shape[0] or any(len(r) != shape[1] for r in rows):
        raise ValueError(f"{key}: shape differs from input_ids {list(shape)}")
    for b, row in enumerate(rows):
        for s, v in enumerate(row):
            if v not in (0, 1) or isinstance(v, float):
                raise ValueError(f"{key}[{b}][{s}]: expected 0/1 or true/false, got {v!r}")
    return torch.tensor([[bool(v) for v in row] for row in rows], dtype=torch.bool).reshape(shape)


def parse_inputs(obj: dict, vocab_size: int | None = None) -> TransformInputs:
    """IN.json (spec 3) -> tensors. A single sequence may omit the outer list."""
    if not isinstance(obj, dict) or "input_ids" not in obj or "noise_mask" not in obj:
        raise ValueError("input: expected an object with input_ids and noise_mask")
    ids = obj["input_ids"]
    if not isinstance(ids, list) or not ids:
        raise ValueError("input_ids: expected a non-empty list")
    flat = not isinstance(ids[0], list)
    ids = _as_rows(ids, "input_ids", flat)
    seq = len(ids[0])
    if seq == 0 or any(len(r) != seq for r in ids):
        raise ValueError("input_ids: rows must be non-empty and of equal length")
    for b, row in enumerate(ids):
        for s, v in enumerate(row):
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"input_ids[{b}][{s}]: expected an integer, got {v!r}")
            if v < 0 or (vocab_size is not None and v >= vocab_size):
                raise ValueError(f"input_ids[{b}][{s}]: token id {v} outside [0, {vocab_size})")
    input_ids = torch.tensor(ids, dtype=torch.int64)
    shape = tuple(input_ids.shape)
    noise_mask = _mask(_as_rows(obj["noise_mask"], "noise_mask", flat), "noise_mask", shape)
    if obj.get("attention_mask") is None:
        attention_mask = torch.ones(shape, dtype=torch.bool)
    else:
        attention_mask = _mask(_as_rows(obj["attention_mask"], "attention_mask", flat),
                               "attention_mask", shape)
    return TransformInputs(input_ids, noise_mask, attention_mask)


def load_inputs(path: str, vocab_size: int | None = None) -> TransformInputs:
    with open(path, encoding="utf-8") as f:
        return parse_inputs(json.load(f), vocab_size)


def torch_noise(seed: int, shape) -> torch.Tensor:
    """Spec 1.3 `--seed N --rng torch`: exactly torch.manual_seed(seed); torch.randn(B, S, H)."""
    torch.manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float32)


@torch.no_grad()
def transform(model: SgtModel, inputs: TransformInputs, noise: torch.Tensor | None = None,
              seed: int | None = None) -> Dict[str, torch.Tensor]:
    """Runs the transform; returns `transformed`, `embeddings`, `mean`, `std`, `noise` (f32)."""
    B, S = inputs.shape
    H = model.hidden_size
    if (noise is None) == (seed is None):
        raise ValueError("give exactly one of noise or seed")
    if noise is None:
        noise = torch_noise(seed, (B, S, H))  # first, so nothing else can touch the generator
    if tuple(noise.shape) != (B, S, H) or noise.dtype != torch.float32:
        raise ValueError(f"noise: expected F32 {[B, S, H]}, got {noise.dtype} {list(noise.shape)}")
    if int(inputs.input_ids.max()) >= model.vocab_size:
        raise ValueError(f"input_ids: token id {int(inputs.input_ids.max())} >= vocab_size")

    real = inputs.attention_mask  # [B, S] bool
    real3 = real[..., None]
    x = model.embed(inputs.input_ids)  # f32, with the embedding scale
    hf_mask = real.to(torch.int64)  # what a tokenizer hands a HF model
    mu = model.mean_estimator(x, hf_mask)
    sigma = model.std_estimator(x, hf_mask)
    # Padding rows/positions: transformers outputs something there (a fully masked query row
    # averages every key); the spec says 0.
    mu = torch.where(real3, mu, 0.0)
    sigma = torch.where(real3, sigma, 0.0)
    eps = torch.where(real3, noise, 0.0)
    if not torch.isfinite(mu).all() or not torch.isfinite(sigma).all():
        raise FloatingPointError("non-finite mean or std at a real position")
    if bool((sigma[real] <= 0).any()):
        raise FloatingPointError("std <= 0 at a real position (check the std parameterization)")

    y = x + mu + sigma * eps
    protect = (inputs.noise_mask & real)[..., None]
    out = torch.where(protect, y, x)  # select, so a NaN in y never leaks into a clean position
    lo, hi = model.value_range
    if lo is not None or hi is not None:
        out = torch.clamp(out, min=lo, max=hi)
    return {
        "transformed": out.contiguous(),
        "embeddings": x.contiguous(),
        "mean": mu.contiguous(),
        "std": sigma.contiguous(),
        "noise": eps.contiguous(),
    }


def write_outputs(path: str, outputs: Dict[str, torch.Tensor], intermediates: bool = True) -> None:
    names = OUTPUT_NAMES if intermediates else ("transformed",)
    save_file({n: outputs[n].to(torch.float32).contiguous() for n in names}, path)
