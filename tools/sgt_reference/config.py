"""config.json of an sgt4t model directory (spec 2.1) and the Hugging Face configs behind it.

The estimator `config` object holds Hugging Face config keys in the transformers-4 spelling
(`rope_theta` + `rope_scaling`), so a base model's config.json can be pasted in. transformers 5
keeps both in one `rope_parameters` dict; `rope_keys_to_v4` / `rope_parameters_from_v4` convert
between the two and `build_hf_config` checks that the module it builds uses the written values.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import struct
import warnings
from typing import Any

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3", "smollm3", "gemma", "gemma2",
                         "gemma3_text", "phi3")
PARAMETERIZATION_TYPES = ("identity", "bounded_tanh", "cloak", "cloak_sigmoid", "direct")
ROPE_TYPES = ("default", "linear", "llama3", "longrope")
FORMAT = "sgt4t"
FORMAT_VERSION = 1

# Keys of a base model's config.json that say nothing about an estimator trunk. They are dropped
# before a transformers config object is built (the trunk has no embedding table and no LM head).
_NON_TRUNK_KEYS = (
    "vocab_size",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "tie_word_embeddings",
    "dtype",
    "torch_dtype",
    "architectures",
    "transformers_version",
    "model_type",
    "auto_map",
    "use_cache",
    "attn_implementation",
    "_attn_implementation",
    "_name_or_path",
)
_ROPE_KEYS = ("rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor",
              "rope_local_base_freq")
# Gemma 3's local layers rotate with a RoPE of their own: rope_local_base_freq, default scaling.
_LOCAL_ROPE_THETA = {"gemma3_text": 10000.0}


def hf_classes(model_type: str):
    """(ConfigClass, ModelClass) of transformers for an estimator `model_type`."""
    import transformers as tf

    table = {
        "llama": (tf.LlamaConfig, tf.LlamaModel),
        "mistral": (tf.MistralConfig, tf.MistralModel),
        "qwen2": (tf.Qwen2Config, tf.Qwen2Model),
        "qwen3": (tf.Qwen3Config, tf.Qwen3Model),
        "smollm3": (tf.SmolLM3Config, tf.SmolLM3Model),
        "gemma": (tf.GemmaConfig, tf.GemmaModel),
        "gemma2": (tf.Gemma2Config, tf.Gemma2Model),
        "gemma3_text": (tf.Gemma3TextConfig, tf.Gemma3TextModel),
        "phi3": (tf.Phi3Config, tf.Phi3Model),
    }
    if model_type not in table:
        raise ValueError(
            f"model_type: unknown '{model_type}' (supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    return table[model_type]


# --------------------------------------------------------------------------------------------
# rope keys: transformers 4 spelling (what config.json holds) <-> transformers 5 rope_parameters
# --------------------------------------------------------------------------------------------


def rope_keys_to_v4(cfg: dict) -> dict:
    """Returns a copy of an HF config dict with `rope_parameters` (v5) rewritten as v4 keys.

    `{"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8, ...}}` becomes
    `{"rope_theta": 5e5, "rope_scaling": {"rope_type": "llama3", "factor": 8, ...}}`; a default
    rope becomes `"rope_scaling": null`. Explicit v4 keys already present win.
    """
    cfg = copy.deepcopy(cfg)
    params = cfg.pop("rope_parameters", None)
    if params is None:
        if "rope_scaling" in cfg:
            cfg["rope_scaling"] = _normalize_rope_scaling(cfg["rope_scaling"])
        return cfg
    if (isinstance(params, dict) and ("full_attention" in params or "sliding_attention" in params)
            and cfg.get("model_type") in _LOCAL_ROPE_THETA):
        return _per_layer_type_rope_to_v4(cfg, params)
    if not isinstance(params, dict) or (params and "rope_type" not in params and
                                        "rope_theta" not in params):
        raise ValueError("rope_parameters: per-layer-type rope parameters are not supported")
    params = dict(params)
    theta = params.pop("rope_theta", None)
    if theta is not None:
        cfg.setdefault("rope_theta", float(theta))
    prf = params.pop("partial_rotary_factor", None)
    if prf is not None:
        cfg.setdefault("partial_rotary_factor", prf)
    if "rope_scaling" not in cfg:
        cfg["rope_scaling"] = _normalize_rope_scaling(params)
    return cfg


def _per_layer_type_rope_to_v4(cfg: dict, params: dict) -> dict:
    """Gemma 3's `{"full_attention": {...}, "sliding_attention": {...}}` (transformers 5) as v4
    keys: rope_theta + rope_scaling for the global layers, rope_local_base_freq for the local ones.

    As Gemma3TextConfig reads it: the entries' own rope_theta win over rope_theta and
    rope_local_base_freq, and a rope_scaling updates the full_attention entry. The v4 spelling
    gives the local layers a default RoPE only, so any other local RoPE is refused."""
    unknown = sorted(set(params) - {"full_attention", "sliding_attention"})
    if unknown:
        raise ValueError(f"rope_parameters.{unknown[0]}: unknown layer type "
                         "(full_attention and sliding_attention are)")
    entries = {}
    for name in ("full_attention", "sliding_attention"):
        entry = params.get(name)
        if entry is not None and not isinstance(entry, dict):
            raise ValueError(f"rope_parameters.{name}: expected an object or null, got {entry!r}")
        entries[name] = dict(entry or {})
    full, sliding = entries["full_attention"], entries["sliding_attention"]
    if isinstance(cfg.get("rope_scaling"), dict):
        full.update(cfg["rope_scaling"])
    if "type" in sliding and "rope_type" not in sliding:
        sliding["rope_type"] = sliding.pop("type")
    if (sliding.get("rope_type", "default") != "default" or
            set(sliding) - {"rope_type", "rope_theta"}):
        raise ValueError("rope_parameters.sliding_attention: the local layers' RoPE must be the "
                         "default one (rope_type and rope_theta only), got " + json.dumps(sliding))
    theta = full.pop("rope_theta", None)
    if theta is not None:
        cfg["rope_theta"] = float(theta)
    if sliding.get("rope_theta") is not None:
        cfg["rope_local_base_freq"] = float(sliding["rope_theta"])
    prf = full.pop("partial_rotary_factor", None)
    if prf is not None:
        cfg["partial_rotary_factor"] = prf
    cfg["rope_scaling"] = _normalize_rope_scaling(full)
    return cfg


def _normalize_rope_scaling(scaling: Any) -> dict | None:
    """v4 `rope_scaling` -> dict with `rope_type`, or None for the default rope."""
    if scaling is None:
        return None
    if not isinstance(scaling, dict):
        raise ValueError(f"rope_scaling: expected an object or null, got {scaling!r}")
    scaling = dict(scaling)
    if "type" in scaling and "rope_type" not in scaling:  # the oldest spelling
        scaling["rope_type"] = scaling.pop("type")
    if scaling.get("rope_type", "default") == "default":
        return None
    return scaling


def rope_parameters_from_v4(cfg: dict, model_type: str | None = None) -> dict:
    """transformers 5 `rope_parameters` for an HF config dict in the v4 spelling."""
    cfg = rope_keys_to_v4(cfg)
    scaling = _normalize_rope_scaling(cfg.get("rope_scaling"))
    params: dict = {"rope_type": "default"} if scaling is None else dict(scaling)
    # Phi3Config's names from before longrope, which it renames (transformers 5.25).
    if model_type == "phi3" and params["rope_type"] in ("su", "yarn"):
        params["rope_type"] = "longrope"
    rope_type = params["rope_type"]
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"rope_scaling.rope_type: unsupported '{rope_type}' "
                         f"(supported: {', '.join(ROPE_TYPES)})")
    params["rope_theta"] = float(cfg.get("rope_theta", 10000.0))
    if cfg.get("partial_rotary_factor") is not None:
        params["partial_rotary_factor"] = float(cfg["partial_rotary_factor"])
    return params


def build_hf_config(model_type: str, cfg: dict):
    """A transformers config for an estimator trunk: eager attention, no embedding, no cache.

    `cfg` is the estimator's `config` object of config.json (HF keys, v4 rope spelling). Keys it
    does not set take the defaults of `model_type`'s transformers config class.
    """
    config_cls, _ = hf_classes(model_type)
    rope_parameters = rope_parameters_from_v4(cfg, model_type)
    if model_type in _LOCAL_ROPE_THETA:  # one rope per layer type
        rope_parameters = {
            "full_attention": rope_parameters,
            "sliding_attention": {"rope_type": "default", "rope_theta": float(
                cfg.get("rope_local_base_freq", _LOCAL_ROPE_THETA[model_type]))},
        }
    kwargs = {k: v for k, v in cfg.items() if k not in _NON_TRUNK_KEYS and k not in _ROPE_KEYS}
    n_layers = kwargs.get("num_hidden_layers")
    for per_layer in ("layer_types", "no_rope_layers"):
        if isinstance(kwargs.get(per_layer), list) and n_layers is not None:
            kwargs[per_layer] = kwargs[per_layer][:n_layers]
    hf = config_cls(
        **kwargs,
        rope_parameters=rope_parameters,
        # The trunk never embeds ids: the estimators take the base model's embeddings as
        # `inputs_embeds`. vocab_size 1 keeps transformers from allocating a table we drop.
        vocab_size=1,
        # Phi3Config's pad_token_id (32000) must index the table; 0 does for every vocab_size.
        pad_token_id=0 if model_type == "phi3" else None,
        bos_token_id=None,
        eos_token_id=None,
        tie_word_embeddings=False,
        use_cache=False,
        attn_implementation="eager",
    )
    # transformers 5 may rewrite rope parameters while standardizing; the module must use what
    # config.json says, nothing else.
    got = dict(hf.rope_parameters)
    for key, want in rope_parameters.items():
        have = got.get(key)
        if isinstance(want, dict):  # per layer type
            have = {k: v for k, v in (have or {}).items() if k in want}
        if have != want:
            raise AssertionError(
                f"transformers changed rope parameter {key}: wrote {want!r}, module uses {have!r}")
    if hf._attn_implementation != "eager":
        raise AssertionError(f"attention implementation is {hf._attn_implementation}, not eager")
    return hf


def hf_config_head_dim(hf) -> int:
    return getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads


# --------------------------------------------------------------------------------------------
# writing config.json
# --------------------------------------------------------------------------------------------


def estimator_hf_config(
    model_type: str,
    *,
    hidden_size: int,
    intermediate_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    head_dim: int,
    rms_norm_eps: float = 1e-5,
    rope_theta: float = 10000.0,
    rope_scaling: dict | None = None,
    max_position_embeddings: int = 4096,
    sliding_window: int | None = None,
    attention_bias: bool = False,
) -> dict:
    """The estimator `config` object written by our tools: every key the C++ reads, explicit.

    Writing every key (rather than leaning on per-architecture defaults, e.g. Mistral's
    sliding_window 4096 or Qwen3's head_dim 128) keeps the file unambiguous to any reader.
    """
    hidden_size, num_attention_heads = int(hidden_size), int(num_attention_heads)
    cfg: dict = {
        "hidden_size": hidden_size,
        "intermediate_size": int(intermediate_size),
        "num_hidden_layers": int(num_hidden_layers),
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": int(num_key_value_heads),
        "head_dim": int(head_dim),
        "rms_norm_eps": float(rms_norm_eps),
        "rope_theta": float(rope_theta),
        "rope_scaling": rope_scaling,
        "max_position_embeddings": int(max_position_embeddings),
        "hidden_act": "silu",
    }
    if model_type.startswith("gemma"):
        # GeGLU; Gemma 2 and 3 name the key hidden_activation.
        del cfg["hidden_act"]
        cfg["hidden_act" if model_type == "gemma" else "hidden_activation"] = "gelu_pytorch_tanh"
        cfg["attention_bias"] = bool(attention_bias)
        if model_type in ("gemma2", "gemma3_text"):
            if sliding_window is None:
                raise ValueError(f"sliding_window: {model_type} needs one (its local layers)")
            cfg["sliding_window"] = int(sliding_window)
            cfg["query_pre_attn_scalar"] = int(head_dim)
        return cfg
    if model_type == "smollm3":
        cfg["attention_bias"] = bool(attention_bias)
        cfg["mlp_bias"] = False
        cfg["use_sliding_window"] = sliding_window is not None
        cfg["sliding_window"] = sliding_window
        return cfg
    if model_type == "llama":
        cfg["attention_bias"] = bool(attention_bias)
        cfg["mlp_bias"] = False
    elif model_type in ("mistral", "phi3"):
        cfg["sliding_window"] = sliding_window  # every layer; null = full causal attention
    elif model_type in ("qwen2", "qwen3"):
        if model_type == "qwen3":
            cfg["attention_bias"] = bool(attention_bias)
        # qwen2 always has q/k/v biases and no o bias; it has no attention_bias key. A window
        # applies to the layers from max_window_layers on (the config may override it).
        cfg["use_sliding_window"] = sliding_window is not None
        cfg["sliding_window"] = sliding_window
        if sliding_window is not None:
            cfg["max_window_layers"] = 1
    else:
        hf_classes(model_type)  # raises the "unknown model_type" error
    return cfg


def make_sgt_config(
    *,
    vocab_size: int,
    hidden_size: int,
    mean_estimator: dict,
    std_estimator: dict,
    value_range: list | None = None,
    pad_token_id: int | None = None,
    embedding_scale: float | None = None,
) -> dict:
    """The whole config.json (spec 2.1) from two estimator objects; `embedding_scale` only when
    given (a base that scales its embeddings: Gemma)."""
    out = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vocab_size": int(vocab_size),
        "hidden_size": int(hidden_size),
    }
    if embedding_scale is not None:
        out["embedding_scale"] = float(embedding_scale)
    out.update({
        "pad_token_id": pad_token_id,
        "value_range": value_range,
        "percent_to_mask": None,
        "mean_estimator": mean_estimator,
        "std_estimator": std_estimator,
    })
    return out


# model_type values whose transformers embedding module multiplies E[ids] by
# torch.tensor(hidden_size ** 0.5) (an f32 tensor), and not inputs_embeds.
SCALED_EMBEDDING_TYPES = ("gemma", "gemma2", "gemma3_text")


def base_embedding_scale(model_type: str, hidden_size: int) -> float | None:
    """What a base of `model_type` multiplies E[ids] by, rounded to f32 as transformers does;
    None when it does not scale them."""
    if model_type not in SCALED_EMBEDDING_TYPES:
        return None
    return struct.unpack("<f", struct.pack("<f", hidden_size ** 0.5))[0]  # nearest f32


# --------------------------------------------------------------------------------------------
# validation (the C++ loader is the strict one; this catches mistakes in our own writers)
# --------------------------------------------------------------------------------------------


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def validate_parameterization(p: Any, where: str, *, is_std: bool) -> None:
    if not isinstance(p, dict) or "type" not in p:
        raise ValueError(f"{where}: expected an object with a 'type'")
    t = p["type"]
    if t not in PARAMETERIZATION_TYPES:
        raise ValueError(f"{where}.type: unknown '{t}' "
                         f"(supported: {', '.join(PARAMETERIZATION_TYPES)})")
    if is_std and t in ("identity", "bounded_tanh"):
        # Allowed by the spec (only direct with min <= 0 is refused), but sigma may go <= 0.
        warnings.warn(f"{where}.type: {t} does not keep the std positive")
    if t == "bounded_tanh":
        if not _is_number(p.get("bound")) or p["bound"] <= 0:
            raise ValueError(f"{where}.bound: must be a number > 0")
        if "init_shift" in p and not _is_number(p["init_shift"]):
            raise ValueError(f"{where}.init_shift: must be a number")
    if t in ("cloak", "cloak_sigmoid", "direct"):
        scale = p.get("scale")
        if (not isinstance(scale, list) or len(scale) != 2 or not all(_is_number(v) for v in scale)
                or not scale[0] < scale[1]):
            raise ValueError(f"{where}.scale: must be [min, max] with min < max")
        if t != "direct" and scale[0] < 0:
            raise ValueError(f"{where}.scale: min must be >= 0 for {t}")
        if is_std and t == "direct" and scale[0] <= 0:
            raise ValueError(f"{where}.scale: min must be > 0 for a direct std")
        if t != "direct" and "shallow" in p and (not _is_number(p["shallow"]) or p["shallow"] <= 0):
            raise ValueError(f"{where}.shallow: must be a number > 0")


def validate_sgt_config(cfg: dict) -> None:
    """Raises ValueError naming the key when config.json breaks spec 2.1."""
    if cfg.get("format") != FORMAT:
        raise ValueError(f"format: expected '{FORMAT}', got {cfg.get('format')!r}")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"format_version: expected {FORMAT_VERSION}, "
                         f"got {cfg.get('format_version')!r}")
    for key in ("vocab_size", "hidden_size"):
        if not isinstance(cfg.get(key), int) or isinstance(cfg.get(key), bool) or cfg[key] <= 0:
            raise ValueError(f"{key}: must be a positive integer")
    if cfg.get("percent_to_mask") is not None:
        raise ValueError("percent_to_mask: only null is supported")
    scale = cfg.get("embedding_scale")
    if scale is not None and (not _is_number(scale) or not 2.0 ** -16 <= scale <= 65536):
        raise ValueError("embedding_scale: must be a number in [2^-16, 65536]")
    vr = cfg.get("value_range")
    if vr is not None:
        if (not isinstance(vr, list) or len(vr) != 2 or
                not all(v is None or _is_number(v) for v in vr)):
            raise ValueError("value_range: must be null or [min|null, max|null]")
        if vr[0] is not None and vr[1] is not None and not vr[0] <= vr[1]:
            raise ValueError("value_range: min must be <= max")
    for name in ("mean_estimator", "std_estimator"):
        est = cfg.get(name)
        if not isinstance(est, dict):
            raise ValueError(f"{name}: missing or not an object")
        hf_classes(est.get("model_type"))
        if not isinstance(est.get("config"), dict):
            raise ValueError(f"{name}.config: missing or not an object")
        if est["config"].get("hidden_size", cfg["hidden_size"]) != cfg["hidden_size"]:
            raise ValueError(f"{name}.config.hidden_size: differs from hidden_size")
        if not isinstance(est.get("final_norm"), bool):
            raise ValueError(f"{name}.final_norm: must be true or false")
        head = est.get("head")
        if head is not None and (not isinstance(head, dict) or
                                 not isinstance(head.get("bias"), bool)):
            raise ValueError(f"{name}.head: must be null or {{\"bias\": bool}}")
        validate_parameterization(est.get("parameterization"), f"{name}.parameterization",
                                  is_std=(name == "std_estimator"))


def deep_merge(base: dict, extra: dict) -> dict:
    """`extra` merged into a copy of `base`: objects merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
