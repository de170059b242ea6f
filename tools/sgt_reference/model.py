"""Estimators built from real transformers modules, and the whole sgt4t model (spec 1.1, 1.2, 2).

An estimator is

    h   = HFModel(inputs_embeds=x, attention_mask=attention_mask).last_hidden_state
          # LlamaModel / MistralModel / Qwen2Model / Qwen3Model / Phi3Model, eager attention,
          # fp32, no position_ids (transformers then uses 0..S-1 for every row), its `norm`
          # replaced by an identity when final_norm is false, its embed_tokens dropped
    raw = head(h) if head else h          # nn.Linear(H, H, bias=head.bias)
    out = parameterization(raw)

Tensor names are the HF module's own state_dict names under `mean_estimator.` / `std_estimator.`,
plus `{P}.head.weight` / `{P}.head.bias` and the shared `embed_tokens.weight`.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Dict

import torch
from torch import nn

from .config import build_hf_config, hf_classes, validate_sgt_config
from .tensors import load_model_tensors, save_model_tensors

ESTIMATORS = ("mean_estimator", "std_estimator")
EMBED = "embed_tokens.weight"


class Parameterization(nn.Module):
    """Spec 1.2. Constants are Python floats, so torch applies them in the tensor's f32."""

    def __init__(self, spec: dict):
        super().__init__()
        self.kind = spec["type"]
        self.bound = float(spec.get("bound", 1.0))
        self.init_shift = float(spec.get("init_shift", 0.0))
        scale = spec.get("scale", [0.0, 1.0])
        self.lo, self.hi = float(scale[0]), float(scale[1])
        self.shallow = float(spec.get("shallow", 1.0))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        if self.kind == "identity":
            return raw
        if self.kind == "bounded_tanh":
            return self.bound * torch.tanh((raw + self.init_shift) / self.bound)
        if self.kind == "cloak":
            return self.lo + (self.hi - self.lo) * 0.5 * (1.0 + torch.tanh(raw / self.shallow))
        if self.kind == "cloak_sigmoid":
            return self.lo + (self.hi - self.lo) * torch.sigmoid(raw / self.shallow)
        if self.kind == "direct":
            return torch.clamp(raw, self.lo, self.hi)
        raise ValueError(f"parameterization.type: unknown '{self.kind}'")

    def inverse(self, value: float) -> float:
        """The raw value that maps to `value` (used to initialize a head bias)."""
        import math

        if self.kind in ("identity", "direct"):
            if self.kind == "direct" and not self.lo <= value <= self.hi:
                raise ValueError(f"{value} is outside the direct scale [{self.lo}, {self.hi}]")
            return value
        if self.kind == "bounded_tanh":
            if not abs(value) < self.bound:
                raise ValueError(f"{value} is outside (-bound, bound) = +-{self.bound}")
            return self.bound * math.atanh(value / self.bound) - self.init_shift
        u = (value - self.lo) / (self.hi - self.lo)
        if not 0.0 < u < 1.0:
            raise ValueError(f"{value} is outside the open scale ({self.lo}, {self.hi})")
        if self.kind == "cloak":
            return self.shallow * math.atanh(2.0 * u - 1.0)
        if self.kind == "cloak_sigmoid":
            return self.shallow * math.log(u / (1.0 - u))
        raise ValueError(f"parameterization.type: unknown '{self.kind}'")


class Estimator(nn.Module):
    """One estimator (spec 1.1) around a real transformers decoder."""

    def __init__(self, spec: dict, hidden_size: int):
        super().__init__()
        self.model_type = spec["model_type"]
        self.hf_config = build_hf_config(self.model_type, spec["config"])
        if self.hf_config.hidden_size != hidden_size:
            raise ValueError(f"config.hidden_size {self.hf_config.hidden_size} != {hidden_size}")
        _, model_cls = hf_classes(self.model_type)
        trunk = model_cls(self.hf_config)
        trunk.embed_tokens = None  # the estimators take embeddings, never ids
        if not spec["final_norm"]:
            trunk.norm = nn.Identity()
        self.trunk = trunk
        head = spec.get("head")
        self.head = nn.Linear(hidden_size, hidden_size, bias=bool(head["bias"])) if head else None
        self.parameterization = Parameterization(spec["parameterization"])
        self.float().eval()

    def sgt_tensors(self, prefix: str) -> Dict[str, torch.Tensor]:
        """The module's parameters under their model-file names (`{prefix}.layers.0...`)."""
        out = {f"{prefix}.{k}": v for k, v in self.trunk.state_dict(keep_vars=True).items()}
        if self.head is not None:
            out[f"{prefix}.head.weight"] = self.head.weight
            if self.head.bias is not None:
                out[f"{prefix}.head.bias"] = self.head.bias
        return out

    def raw(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Head output before the parameterization (what a trainer would regularize)."""
        h = self.trunk(inputs_embeds=x, attention_mask=attention_mask, use_cache=False)
        h = h.last_hidden_state
        return self.head(h) if self.head is not None else h

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.parameterization(self.raw(x, attention_mask))


class SgtModel(nn.Module):
    """config.json + embedding table + both estimators, with spec-2.2 name and shape checks."""

    def __init__(self, config: dict):
        super().__init__()
        validate_sgt_config(config)
        self.config = config
        self.vocab_size = config["vocab_size"]
        self.hidden_size = config["hidden_size"]
        self.embed_tokens = nn.Parameter(torch.zeros(self.vocab_size, self.hidden_size),
                                         requires_grad=False)
        self.mean_estimator = Estimator(config["mean_estimator"], self.hidden_size)
        self.std_estimator = Estimator(config["std_estimator"], self.hidden_size)
        # x = E[ids] * embedding_scale, rounded to the stored table's dtype (embed()).
        self.embedding_scale = config.get("embedding_scale")
        vr = config.get("value_range")
        self.value_range = (None, None) if vr is None else (vr[0], vr[1])
        self.stored_dtypes: Dict[str, torch.dtype] = {}
        self.eval()

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """x = E[input_ids] * embedding_scale as f32, computed as transformers' scaled embedding
        module computes it on the stored table: E[ids] * torch.tensor(scale).to(E.dtype)."""
        x = self.embed_tokens[input_ids]  # f32 upcast of the stored table
        if self.embedding_scale is None:
            return x
        dtype = self.stored_dtypes.get(EMBED, torch.float32)
        scale = torch.tensor(float(self.embedding_scale), dtype=torch.float32).to(dtype)
        return (x.to(dtype) * scale).to(torch.float32)

    def sgt_tensors(self) -> Dict[str, torch.Tensor]:
        out = {EMBED: self.embed_tokens}
        out.update(self.mean_estimator.sgt_tensors("mean_estimator"))
        out.update(self.std_estimator.sgt_tensors("std_estimator"))
        return out

    @torch.no_grad()
    def load_tensors(self, tensors: Dict[str, torch.Tensor], source: str = "model") -> None:
        """Copies stored tensors (any of f32/bf16/f16) in, upcast to f32. Spec 2.2 errors."""
        expected = self.sgt_tensors()
        for name, param in expected.items():
            if name not in tensors:
                raise ValueError(f"{source}: missing tensor {name} {list(param.shape)}")
            t = tensors[name]
            if list(t.shape) != list(param.shape):
                raise ValueError(f"{source}: tensor {name} has shape {list(t.shape)}, "
                                 f"expected {list(param.shape)}")
            if t.dtype not in (torch.float32, torch.bfloat16, torch.float16):
                raise ValueError(f"{source}: tensor {name} has dtype {t.dtype} (F32/BF16/F16 only)")
            param.copy_(t.to(torch.float32))
            self.stored_dtypes[name] = t.dtype
        for name in tensors:
            if name in expected:
                continue
            if name == EMBED or name.split(".", 1)[0] in ESTIMATORS:
                raise ValueError(f"{source}: unexpected tensor {name} {list(tensors[name].shape)}")
            warnings.warn(f"{source}: ignoring tensor {name} outside the sgt4t prefixes")

    @classmethod
    def from_dir(cls, model_dir: str) -> "SgtModel":
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        model = cls(config)
        model.load_tensors(load_model_tensors(model_dir), source=model_dir)
        return model

    def save(self, model_dir: str, dtype: str | torch.dtype | None = "f32",
             dtypes: Dict[str, torch.dtype] | None = None) -> None:
        """Writes config.json and model.safetensors: every tensor in `dtype`, or per name."""
        os.makedirs(model_dir, exist_ok=True)
        write_config(os.path.join(model_dir, "config.json"), self.config)
        tensors = self.sgt_tensors()
        if dtypes is not None:
            tensors = {n: t.detach().to(dtypes[n]) for n, t in tensors.items()}
        save_model_tensors(tensors, os.path.join(model_dir, "model.safetensors"), dtype,
                           metadata={"format": "pt"})


def write_config(path: str, config: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
