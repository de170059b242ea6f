"""safetensors I/O for model directories (spec 2.2): one file or Hugging Face shards.

Weights may be stored in F32, BF16 or F16. The reference always computes in f32 on the *stored*
values upcast, which is what the C++ does, so a bf16 model is compared on its rounded weights.
"""

from __future__ import annotations

import json
import os
from typing import Dict

import torch
from safetensors import safe_open
from safetensors.torch import save_file

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
_INDEX = "model.safetensors.index.json"
_SINGLE = "model.safetensors"


def safetensors_files(model_dir: str) -> list[str]:
    """The weight files of a directory: model.safetensors, or the shards its index names."""
    index = os.path.join(model_dir, _INDEX)
    single = os.path.join(model_dir, _SINGLE)
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        return [os.path.join(model_dir, name) for name in sorted(set(weight_map.values()))]
    if os.path.exists(single):
        return [single]
    raise FileNotFoundError(f"{model_dir}: neither {_SINGLE} nor {_INDEX}")


def load_model_tensors(model_dir: str) -> Dict[str, torch.Tensor]:
    """All tensors of a model directory, in their stored dtype, by name."""
    out: Dict[str, torch.Tensor] = {}
    for path in safetensors_files(model_dir):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                if name in out:
                    raise ValueError(f"{path}: tensor {name} appears in two shards")
                out[name] = f.get_tensor(name)
    return out


def save_model_tensors(tensors: Dict[str, torch.Tensor], path: str, dtype: str | torch.dtype | None,
                       metadata: Dict[str, str] | None = None) -> None:
    """Writes `tensors` to one safetensors file, cast to `dtype` (f32/bf16/f16; None keeps)."""
    if isinstance(dtype, str):
        dtype = DTYPES[dtype]
    out = {}
    seen = set()
    for name, t in tensors.items():
        t = t.detach().cpu()
        if dtype is not None:
            t = t.to(dtype)
        t = t.contiguous()
        if t.data_ptr() in seen:  # both trunks may share a base tensor; safetensors wants copies
            t = t.clone()
        seen.add(t.data_ptr())
        out[name] = t
    save_file(out, path, metadata=metadata)


def round_to(t: torch.Tensor, dtype: str | torch.dtype | None) -> torch.Tensor:
    """`t` rounded through the storage dtype and back to f32: what a reader of the file sees."""
    if isinstance(dtype, str):
        dtype = DTYPES[dtype]
    if dtype is None:
        return t.float()
    return t.to(dtype).float()


def dtype_name(dtype: torch.dtype) -> str:
    for name, d in DTYPES.items():
        if d == dtype:
            return name
    raise ValueError(f"unsupported tensor dtype {dtype} (spec: F32, BF16, F16)")
