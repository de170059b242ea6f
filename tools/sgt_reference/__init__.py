"""Reference implementation of the Stained Glass Transform for Text (spec sections 1-3).

This package defines what "exactly" means for sgt-cpp: the estimators are *real* Hugging Face
`transformers` decoders (`LlamaModel`, `MistralModel`, `Qwen2Model`, `Qwen3Model`, `Phi3Model`,
eager attention, fp32), so the C++ library is checked against the same code a user trains with.

Modules:
  config     -- config.json (spec 2.1): writing, light validation, v4 <-> v5 rope keys, HF configs
  tensors    -- safetensors I/O for model dirs (single file or sharded), dtype rounding
  model      -- `Estimator` / `SgtModel`: HF modules + final norm + head + parameterization
  transform  -- the transform itself, IN.json parsing, outputs as written by `sgt transform`
  manual     -- an independent hand-written torch implementation (no HF modules), float64,
                used to cross-check the HF-based reference

The command-line tools (`make_random_model.py`, `reference.py`, `convert_hf.py`, fixtures) live
one folder up and import this package from there.
"""

from .config import (
    SUPPORTED_MODEL_TYPES,
    PARAMETERIZATION_TYPES,
    build_hf_config,
    make_sgt_config,
    rope_keys_to_v4,
    validate_sgt_config,
)
from .model import Estimator, Parameterization, SgtModel
from .tensors import load_model_tensors, save_model_tensors, DTYPES
from .transform import TransformInputs, load_inputs, parse_inputs, transform, write_outputs
from .manual import manual_transform

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "PARAMETERIZATION_TYPES",
    "build_hf_config",
    "make_sgt_config",
    "rope_keys_to_v4",
    "validate_sgt_config",
    "Estimator",
    "Parameterization",
    "SgtModel",
    "load_model_tensors",
    "save_model_tensors",
    "DTYPES",
    "TransformInputs",
    "load_inputs",
    "parse_inputs",
    "transform",
    "write_outputs",
    "manual_transform",
]
