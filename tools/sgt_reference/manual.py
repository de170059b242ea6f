"""An independent implementation of the transform: plain torch math, float64, no transformers.

It reads config.json and the tensors itself and follows the spec's formulas, written out from
the papers / Meta's llama3 rope code rather than from transformers' source, so that a mistake in
how `model.py` drives transformers (a wrong rope key, a dropped bias, a mask convention) shows up
as a disagreement. Shapes (heads, kv heads, head_dim) come from the tensors, not config defaults.

Differences from the HF path that are allowed by the spec: a query row that sees no key outputs 0
here (transformers averages every key); both only happen at padding positions, which the
transform zeroes.
"""

from __future__ import annotations

import json
import math
import os
from typing import Dict

import torch

from .config import rope_keys_to_v4
from .tensors import load_model_tensors

F64 = torch.float64


GEMMA = ("gemma", "gemma2", "gemma3_text")


def _rms_norm(x: torch.Tensor, w: torch.Tensor, eps: float, one_plus: bool = False) -> torch.Tensor:
    """Gemma stores the norm's weight with the 1 taken out: the factor is 1 + w."""
    return (1.0 + w if one_plus else w) * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def _layer_plan(cfg: dict, model_type: str, n_layers: int):
    """Per layer: (sliding window or None, which rope: "global", "local" or None).

    From the families' documented rules: Mistral (and Phi-3, when set) slides everywhere; Qwen2/3 from
    max_window_layers on and SmolLM3 on its NoPE layers, both only with use_sliding_window;
    Gemma 2 on every other layer from the first; Gemma 3 on all but every
    sliding_window_pattern-th; an explicit layer_types list names the sliding layers instead.
    """
    window, sliding = None, [False] * n_layers
    has_rope = [True] * n_layers
    if model_type == "smollm3":
        interval = int(cfg.get("no_rope_layer_interval", 4))
        flags = cfg.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(n_layers)]
        has_rope = [bool(f) for f in flags[:n_layers]]
    if model_type == "mistral":
        window, sliding = cfg.get("sliding_window", 4096), [True] * n_layers
    elif model_type == "phi3":  # every layer, when set
        window, sliding = cfg.get("sliding_window"), [True] * n_layers
    elif model_type in ("qwen2", "qwen3", "smollm3"):
        if cfg.get("use_sliding_window"):
            window = cfg.get("sliding_window", 4096 if model_type != "smollm3" else None)
        if model_type == "smollm3":
            sliding = [not r for r in has_rope]
        else:
            sliding = [i >= int(cfg.get("max_window_layers", 28)) for i in range(n_layers)]
    elif model_type == "gemma2":
        window, sliding = cfg.get("sliding_window", 4096), [i % 2 == 0 for i in range(n_layers)]
    elif model_type == "gemma3_text":
        period = int(cfg.get("sliding_window_pattern", 6))
        window = cfg.get("sliding_window", 4096)
        sliding = [(i + 1) % period != 0 for i in range(n_layers)]
    if model_type not in ("llama", "mistral", "gemma", "phi3") and cfg.get("layer_types"):
        sliding = [t == "sliding_attention" for t in cfg["layer_types"][:n_layers]]
    plan = []
    for i in range(n_layers):
        rope = "global" if has_rope[i] else None
        if model_type == "gemma3_text" and sliding[i]:
            rope = "local"
        plan.append((window if sliding[i] else None, rope))
    return plan


def _inv_freq(head_dim: int, cfg: dict, seq_len: int) -> torch.Tensor:
    """RoPE inverse frequencies, with default / linear / llama3 / longrope scaling (spec 1.1),
    for a forward over positions 0..seq_len-1."""
    cfg = rope_keys_to_v4(cfg)
    theta = float(cfg.get("rope_theta", 10000.0))
    rotary_dim = int(head_dim * float(cfg.get("partial_rotary_factor") or 1.0))
    inv = torch.tensor([theta ** (-(2.0 * i) / rotary_dim) for i in range(rotary_dim // 2)],
                       dtype=F64)
    scaling = cfg.get("rope_scaling")
    if scaling is None:
        return inv
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / float(scaling["factor"])
    if kind == "llama3":
        # Meta's apply_scaling (llama-models): long wavelengths slowed by `factor`, short ones
        # kept, a linear blend in between.
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_ctx = float(scaling["original_max_position_embeddings"])
        low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
        out = []
        for f in inv.tolist():
            wavelen = 2 * math.pi / f
            if wavelen < high_wavelen:
                out.append(f)
            elif wavelen > low_wavelen:
                out.append(f / factor)
            else:
                smooth = (old_ctx / wavelen - low) / (high - low)
                out.append((1 - smooth) * f / factor + smooth * f)
        return torch.tensor(out, dtype=F64)
    if kind == "longrope":
        # LongRoPE (Phi-3): each frequency slowed by its own factor, the long list once the
        # sequence is longer than the pretraining context, the short one otherwise.
        original = int(cfg.get("original_max_position_embeddings",
                               scaling.get("original_max_position_embeddings")))
        ext = scaling["long_factor"] if seq_len > original else scaling["short_factor"]
        return inv / torch.tensor(ext, dtype=F64)
    raise ValueError(f"rope type {kind} not implemented in the manual reference")


def _rope_magnitude(cfg: dict) -> float:
    """LongRoPE's scaling of cos and sin: sqrt(1 + ln(s) / ln(L)) for the context extension
    s = max_position_embeddings / L of a pretraining context L (1 without extension)."""
    cfg = rope_keys_to_v4(cfg)
    scaling = cfg.get("rope_scaling") or {}
    if scaling.get("rope_type", scaling.get("type")) != "longrope":
        return 1.0
    if scaling.get("attention_factor") is not None:
        return float(scaling["attention_factor"])
    original = int(cfg.get("original_max_position_embeddings",
                           scaling.get("original_max_position_embeddings")))
    s = float(scaling.get("factor") or cfg["max_position_embeddings"] / original)
    return 1.0 if s <= 1.0 else math.sqrt(1.0 + math.log(s) / math.log(original))


def _rope(t: torch.Tensor, inv_freq: torch.Tensor, magnitude: float = 1.0) -> torch.Tensor:
    """t [B, heads, S, D]; rotate_half pairing: element i with i + rotary_dim/2."""
    S = t.shape[2]
    r = 2 * inv_freq.numel()
    angle = torch.arange(S, dtype=F64)[:, None] * inv_freq[None, :]  # [S, r/2]
    cos, sin = magnitude * torch.cos(angle), magnitude * torch.sin(angle)
    a, b, rest = t[..., : r // 2], t[..., r // 2 : r], t[..., r:]
    return torch.cat((a * cos - b * sin, b * cos + a * sin, rest), dim=-1)


def _linear(x, W, b=None):
    y = x @ W.T
    return y + b if b is not None else y


def _split_fused(T: Dict[str, torch.Tensor], prefix: str, cfg: dict) -> None:
    """Phi-3's fused qkv_proj / gate_up_proj as the separate tensors the layer below reads:
    q, k, v are consecutive row blocks of qkv_proj, gate and up the two halves of gate_up_proj."""
    for name in [k for k in T if k.startswith(prefix + ".")]:
        w = T[name]
        if name.endswith("self_attn.qkv_proj.weight"):
            base = name[: -len("qkv_proj.weight")]
            q_rows = int(cfg["num_attention_heads"]) * int(cfg.get("head_dim") or
                                                           cfg["hidden_size"] //
                                                           cfg["num_attention_heads"])
            kv_rows = (w.shape[0] - q_rows) // 2
            T[base + "q_proj.weight"] = w[:q_rows]
            T[base + "k_proj.weight"] = w[q_rows:q_rows + kv_rows]
            T[base + "v_proj.weight"] = w[q_rows + kv_rows:]
        elif name.endswith("mlp.gate_up_proj.weight"):
            base = name[: -len("gate_up_proj.weight")]
            half = w.shape[0] // 2
            T[base + "gate_proj.weight"], T[base + "up_proj.weight"] = w[:half], w[half:]


def _layer(h, T, p, cfg, model_type, real, inv_freq, window, magnitude=1.0):
    """One layer; inv_freq None: no RoPE; window None: full causal attention."""
    B, S, H = h.shape
    eps = float(cfg.get("rms_norm_eps", 1e-6))
    gemma = model_type in GEMMA
    get = lambda name: T.get(f"{p}.{name}")  # noqa: E731
    n_heads = int(cfg["num_attention_heads"])
    head_dim = get("self_attn.q_proj.weight").shape[0] // n_heads
    n_kv = get("self_attn.k_proj.weight").shape[0] // head_dim

    a = _rms_norm(h, get("input_layernorm.weight"), eps, gemma)
    q = _linear(a, get("self_attn.q_proj.weight"), get("self_attn.q_proj.bias"))
    k = _linear(a, get("self_attn.k_proj.weight"), get("self_attn.k_proj.bias"))
    v = _linear(a, get("self_attn.v_proj.weight"), get("self_attn.v_proj.bias"))
    q = q.view(B, S, n_heads, head_dim).transpose(1, 2)
    k = k.view(B, S, n_kv, head_dim).transpose(1, 2)
    v = v.view(B, S, n_kv, head_dim).transpose(1, 2)
    if get("self_attn.q_norm.weight") is not None:  # qwen3, gemma 3: per-head RMSNorm before RoPE
        q = _rms_norm(q, get("self_attn.q_norm.weight"), eps, gemma)
        k = _rms_norm(k, get("self_attn.k_norm.weight"), eps, gemma)
    if inv_freq is not None:
        q, k = _rope(q, inv_freq, magnitude), _rope(k, inv_freq, magnitude)

    # Which keys each query sees: causal, not padding, inside a Mistral sliding window
    # (a query sees itself and the window-1 keys before it).
    qi = torch.arange(S)[:, None]
    ki = torch.arange(S)[None, :]
    allowed = (ki <= qi)[None, :, :] & real[:, None, :]  # [B, Sq, Sk]
    if window is not None:
        allowed = allowed & (ki > qi - int(window))[None, :, :]

    group = n_heads // n_kv
    out = torch.zeros(B, n_heads, S, head_dim, dtype=F64)
    scale = 1.0 / math.sqrt(head_dim)
    cap = None
    if model_type in ("gemma2", "gemma3_text"):
        scale = float(cfg.get("query_pre_attn_scalar", 256)) ** -0.5
    if model_type == "gemma2":  # Gemma 3 carries the key but transformers never applies it
        cap = cfg.get("attn_logit_softcapping", 50.0)
    for hq in range(n_heads):
        hk = hq // group  # GQA by index mapping
        scores = (q[:, hq] @ k[:, hk].transpose(-1, -2)) * scale  # [B, S, S]
        if cap is not None:
            scores = cap * torch.tanh(scores / cap)
        scores = scores.masked_fill(~allowed, float("-inf"))
        any_key = allowed.any(-1, keepdim=True)
        probs = torch.softmax(torch.where(any_key, scores, 0.0), dim=-1)
        probs = torch.where(allowed, probs, 0.0)  # a row with no key outputs 0
        out[:, hq] = probs @ v[:, hk]
    attn = out.transpose(1, 2).reshape(B, S, n_heads * head_dim)
    o = _linear(attn, get("self_attn.o_proj.weight"), get("self_attn.o_proj.bias"))
    sandwich = get("pre_feedforward_layernorm.weight") is not None  # Gemma 2, 3
    if sandwich:  # post_attention_layernorm norms the attention's output there
        o = _rms_norm(o, get("post_attention_layernorm.weight"), eps, gemma)
    h = h + o

    m = _rms_norm(h, get("pre_feedforward_layernorm.weight" if sandwich
                         else "post_attention_layernorm.weight"), eps, gemma)
    gate = _linear(m, get("mlp.gate_proj.weight"), get("mlp.gate_proj.bias"))
    up = _linear(m, get("mlp.up_proj.weight"), get("mlp.up_proj.bias"))
    if gemma:  # GELU, tanh approximation
        act = 0.5 * gate * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) *
                                             (gate + 0.044715 * gate ** 3)))
    else:
        act = gate / (1.0 + torch.exp(-gate))  # silu
    y = _linear(act * up, get("mlp.down_proj.weight"), get("mlp.down_proj.bias"))
    if sandwich:
        y = _rms_norm(y, get("post_feedforward_layernorm.weight"), eps, gemma)
    return h + y


def _parameterize(raw: torch.Tensor, spec: dict) -> torch.Tensor:
    kind = spec["type"]
    if kind == "identity":
        return raw
    if kind == "bounded_tanh":
        bound, shift = float(spec["bound"]), float(spec.get("init_shift", 0.0))
        return bound * torch.tanh((raw + shift) / bound)
    lo, hi = (float(v) for v in spec["scale"])
    shallow = float(spec.get("shallow", 1.0))
    if kind == "cloak":
        return lo + (hi - lo) * 0.5 * (1.0 + torch.tanh(raw / shallow))
    if kind == "cloak_sigmoid":
        return lo + (hi - lo) / (1.0 + torch.exp(-raw / shallow))
    if kind == "direct":
        return torch.minimum(torch.maximum(raw, torch.tensor(lo, dtype=F64)),
                             torch.tensor(hi, dtype=F64))
    raise ValueError(f"unknown parameterization {kind}")


def _estimator(x, T, prefix, spec, real):
    cfg = spec["config"]
    n_layers = int(cfg["num_hidden_layers"])
    n_heads = int(cfg["num_attention_heads"])
    _split_fused(T, prefix, cfg)
    head_dim = T[f"{prefix}.layers.0.self_attn.q_proj.weight"].shape[0] // n_heads
    model_type = spec["model_type"]
    if model_type == "gemma3_text" and "rope_theta" not in cfg:
        cfg = dict(cfg, rope_theta=1e6)  # Gemma 3's global default
    if model_type == "smollm3" and "rope_theta" not in cfg:
        cfg = dict(cfg, rope_theta=2e6)
    inv_freqs = {"global": _inv_freq(head_dim, cfg, x.shape[1]), None: None,
                 "local": _inv_freq(head_dim, {"rope_theta": cfg.get("rope_local_base_freq",
                                                                     10000.0)}, x.shape[1])}
    magnitude = _rope_magnitude(cfg)
    h = x
    for i, (window, rope) in enumerate(_layer_plan(cfg, model_type, n_layers)):
        h = _layer(h, T, f"{prefix}.layers.{i}", cfg, model_type, real, inv_freqs[rope], window,
                   magnitude if rope == "global" else 1.0)
    if spec["final_norm"]:
        h = _rms_norm(h, T[f"{prefix}.norm.weight"], float(cfg.get("rms_norm_eps", 1e-6)),
                      model_type in GEMMA)
    if spec.get("head") is not None:
        h = _linear(h, T[f"{prefix}.head.weight"], T.get(f"{prefix}.head.bias"))
    return _parameterize(h, spec["parameterization"])


@torch.no_grad()
def manual_transform(model_dir: str, input_ids: torch.Tensor, noise_mask: torch.Tensor,
                     attention_mask: torch.Tensor, noise: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The transform in float64 from the files of `model_dir`; same output names as transform()."""
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    T = {k: v.to(F64) for k, v in load_model_tensors(model_dir).items()}
    real = attention_mask.bool()
    x = T["embed_tokens.weight"][input_ids]
    mu = _estimator(x, T, "mean_estimator", config["mean_estimator"], real)
    sigma = _estimator(x, T, "std_estimator", config["std_estimator"], real)
    zero = torch.zeros((), dtype=F64)
    mu = torch.where(real[..., None], mu, zero)
    sigma = torch.where(real[..., None], sigma, zero)
    eps = torch.where(real[..., None], noise.to(F64), zero)
    y = x + mu + sigma * eps
    out = torch.where((noise_mask.bool() & real)[..., None], y, x)
    vr = config.get("value_range")
    if vr is not None:
        if vr[0] is not None:
            out = torch.maximum(out, torch.tensor(float(vr[0]), dtype=F64))
        if vr[1] is not None:
            out = torch.minimum(out, torch.tensor(float(vr[1]), dtype=F64))
    return {"transformed": out, "embeddings": x, "mean": mu, "std": sigma, "noise": eps}
