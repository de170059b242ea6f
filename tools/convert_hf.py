#!/usr/bin/env python3
"""Builds an sgt4t model directory from a Hugging Face base model (the path a real user takes).

Both estimators start as the base model's first K decoder layers + its final norm (the trunk),
followed by a fresh head:
  - mean estimator: head weight 0 and bias 0, so with `identity` the mean starts at exactly 0;
  - std estimator: head weight 0 and the bias set so that the parameterization outputs
    --init-std everywhere (cloak: bias = shallow * atanh(2 (s - min) / (max - min) - 1)).
The embedding table is the base model's. The estimator `config` objects are the base config.json
with num_hidden_layers cut to K, rope keys in the transformers-4 spelling (rope_theta,
rope_scaling), and keys that say nothing about the trunk (vocab, token ids, dtype...) dropped.

Only the tensors needed are read (embeddings, layers < K, final norm); for a Hub id only the
shards holding them are downloaded.

Examples:
  convert_hf.py meta-llama/Llama-3.2-1B out/sgt-llama --layers 1 --init-std 0.1 --dtype bf16
  convert_hf.py ./my-local-qwen2 out/sgt-qwen --layers 2 --std-param cloak --std-scale 1e-4 2 \\
      --mean-param bounded_tanh --mean-bound 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402

from sgt_reference.cli import argument_parser  # noqa: E402
from sgt_reference.config import (  # noqa: E402
    PARAMETERIZATION_TYPES,
    SUPPORTED_MODEL_TYPES,
    base_embedding_scale,
    hf_classes,
    hf_config_head_dim,
    make_sgt_config,
    rope_keys_to_v4,
)
from sgt_reference.model import Parameterization, SgtModel, write_config  # noqa: E402
from sgt_reference.tensors import DTYPES, save_model_tensors  # noqa: E402
from sgt_reference.transform import parse_inputs, transform  # noqa: E402

# Base config keys that describe the LM around the trunk, not the trunk.
DROP_KEYS = ("architectures", "vocab_size", "pad_token_id", "bos_token_id", "eos_token_id",
             "tie_word_embeddings", "torch_dtype", "dtype", "transformers_version", "use_cache",
             "auto_map", "_name_or_path", "initializer_range", "model_type", "attention_dropout",
             "pretraining_tp")


def parse_args(argv=None) -> argparse.Namespace:
    p = argument_parser(__doc__)
    p.add_argument("base", help="Hugging Face model directory, or a Hub id (needs network)")
    p.add_argument("out_dir", help="sgt4t model directory to write")
    p.add_argument("--layers", type=int, required=True, help="K: decoder layers per estimator")
    p.add_argument("--revision", default=None, help="Hub revision (Hub ids only)")
    p.add_argument("--mean-param", default="identity", choices=PARAMETERIZATION_TYPES)
    p.add_argument("--mean-bound", type=float, default=1.0, help="bounded_tanh bound")
    p.add_argument("--mean-scale", type=float, nargs=2, default=[-1.0, 1.0], metavar=("MIN", "MAX"),
                   help="scale for a cloak/cloak_sigmoid/direct mean")
    p.add_argument("--mean-head", default="bias", choices=("bias", "nobias", "none"),
                   help="head of the mean estimator (default: Linear with bias, zero-initialized)")
    p.add_argument("--std-param", default="cloak", choices=("cloak", "cloak_sigmoid", "direct"))
    p.add_argument("--std-scale", type=float, nargs=2, default=[1e-4, 2.0], metavar=("MIN", "MAX"),
                   help="[min, max] of the std parameterization (default 1e-4 2)")
    p.add_argument("--shallow", type=float, default=1.0, help="cloak / cloak_sigmoid shallow")
    p.add_argument("--std-head", default="bias", choices=("bias", "nobias", "none"),
                   help="head of the std estimator (default: Linear with bias)")
    p.add_argument("--init-std", type=float, default=0.1,
                   help="std the estimator outputs before training (needs a std head with bias)")
    p.add_argument("--no-final-norm", action="store_true",
                   help="drop the base model's final norm from both trunks")
    p.add_argument("--value-range", nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="clamp range; either may be 'null'")
    p.add_argument("--dtype", default="keep", choices=("keep", "f32", "bf16", "f16"),
                   help="storage dtype (keep: as in the base model; heads follow the embeddings)")
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------
# reading the base model
# --------------------------------------------------------------------------------------------


def _resolve(base: str, revision: str | None):
    """(local dir, fetch) where fetch(name) downloads one file of a Hub repo (None: local)."""
    if os.path.isdir(base):
        return base, None
    from huggingface_hub import hf_hub_download  # network; only for Hub ids

    def fetch(name):
        return hf_hub_download(base, name, revision=revision)

    cfg_path = fetch("config.json")
    return os.path.dirname(cfg_path), fetch


def _weight_index(model_dir: str, fetch) -> dict:
    """tensor name -> safetensors file name (relative to the model dir)."""
    index = "model.safetensors.index.json"
    path = os.path.join(model_dir, index)
    if fetch is not None and not os.path.exists(path):
        try:
            path = fetch(index)
        except Exception:  # single-file model on the Hub
            path = None
    if path is not None and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)["weight_map"]
    single = "model.safetensors"
    local = os.path.join(model_dir, single)
    if fetch is not None and not os.path.exists(local):
        local = fetch(single)
    if not os.path.exists(local):
        raise FileNotFoundError(f"{model_dir}: no model.safetensors or index "
                                "(convert .bin checkpoints to safetensors first)")
    with safe_open(local, framework="pt") as f:
        return {name: single for name in f.keys()}


def read_base(base: str, layers: int, revision: str | None = None):
    """(base config dict, {our tensor name suffix: tensor}) for embeddings, layers < K, norm."""
    model_dir, fetch = _resolve(base, revision)
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    if "text_config" in config:
        raise ValueError("config.json: multimodal configs (text_config) are not supported")
    if config.get("model_type") not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model_type: '{config.get('model_type')}' is not one of "
                         f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    if config.get("quantization_config") is not None:
        raise ValueError("quantization_config: quantized checkpoints are not supported")
    n_layers = int(config["num_hidden_layers"])
    if not 1 <= layers <= n_layers:
        raise ValueError(f"--layers {layers}: the base model has {n_layers} layers")

    weight_map = _weight_index(model_dir, fetch)
    embed = [n for n in weight_map if n.endswith("embed_tokens.weight")]
    if len(embed) != 1:
        raise ValueError(f"expected one *embed_tokens.weight tensor, found {embed}")
    prefix = embed[0][: -len("embed_tokens.weight")]  # "model." for *ForCausalLM, "" for *Model
    layer_re = re.compile(re.escape(prefix) + r"layers\.(\d+)\.(.+)$")
    wanted = {}
    for name in weight_map:
        if name == prefix + "embed_tokens.weight":
            wanted[name] = "embed_tokens.weight"
        elif name == prefix + "norm.weight":
            wanted[name] = "norm.weight"
        else:
            m = layer_re.match(name)
            if m and int(m.group(1)) < layers:
                wanted[name] = f"layers.{m.group(1)}.{m.group(2)}"
    tensors = {}
    for file_name in sorted({weight_map[n] for n in wanted}):
        path = os.path.join(model_dir, file_name)
        if fetch is not None and not os.path.exists(path):
            path = fetch(file_name)
        with safe_open(path, framework="pt") as f:
            for name in wanted:
                if weight_map[name] == file_name:
                    tensors[wanted[name]] = f.get_tensor(name)
    return config, tensors


# --------------------------------------------------------------------------------------------
# building the sgt4t model
# --------------------------------------------------------------------------------------------


def trunk_config(base_config: dict, layers: int) -> dict:
    cfg = rope_keys_to_v4(base_config)
    cfg = {k: v for k, v in cfg.items() if k not in DROP_KEYS}
    cfg["num_hidden_layers"] = layers
    # One entry per layer: the first K. The rules that derive per-layer choices from a number
    # (max_window_layers, sliding_window_pattern, no_rope_layer_interval) count from layer 0 and
    # keep their meaning for the first K layers.
    for per_layer in ("layer_types", "no_rope_layers"):
        if isinstance(cfg.get(per_layer), list):
            cfg[per_layer] = cfg[per_layer][:layers]
    if cfg.get("head_dim") is None:  # explicit, so no reader depends on per-type defaults
        # What transformers' config class of the family makes of the absent key: hidden / heads
        # for most, a constant for some (Qwen3: 128, Gemma: 256).
        config_cls, _ = hf_classes(base_config["model_type"])
        cfg["head_dim"] = hf_config_head_dim(config_cls(
            hidden_size=cfg["hidden_size"], num_attention_heads=cfg["num_attention_heads"]))
    return cfg


def _param_spec(kind: str, *, bound=1.0, scale=(0.0, 1.0), shallow=1.0) -> dict:
    if kind == "identity":
        return {"type": kind}
    if kind == "bounded_tanh":
        return {"type": kind, "bound": float(bound), "init_shift": 0.0}
    if kind == "direct":
        return {"type": kind, "scale": [float(s) for s in scale]}
    return {"type": kind, "scale": [float(s) for s in scale], "shallow": float(shallow)}


def _head(kind: str):
    return None if kind == "none" else {"bias": kind == "bias"}


def _value_range(vr):
    if vr is None:
        return None
    return [None if v.lower() in ("null", "none") else float(v) for v in vr]


def convert(args: argparse.Namespace) -> dict:
    base_config, base = read_base(args.base, args.layers, args.revision)
    embed = base["embed_tokens.weight"]
    vocab, hidden = embed.shape
    trunk = trunk_config(base_config, args.layers)
    mean_spec = _param_spec(args.mean_param, bound=args.mean_bound, scale=args.mean_scale,
                            shallow=args.shallow)
    std_spec = _param_spec(args.std_param, scale=args.std_scale, shallow=args.shallow)

    def estimator(param, head):
        return {"model_type": base_config["model_type"], "config": json.loads(json.dumps(trunk)),
                "final_norm": not args.no_final_norm, "head": _head(head),
                "parameterization": param}

    config = make_sgt_config(
        vocab_size=int(vocab), hidden_size=int(hidden),
        mean_estimator=estimator(mean_spec, args.mean_head),
        std_estimator=estimator(std_spec, args.std_head),
        value_range=_value_range(args.value_range),
        pad_token_id=base_config.get("pad_token_id"),
        embedding_scale=base_embedding_scale(base_config["model_type"], int(hidden)),
    )

    head_dtype = embed.dtype if args.dtype == "keep" else DTYPES[args.dtype]
    tensors = {"embed_tokens.weight": embed}
    std_bias = Parameterization(std_spec).inverse(args.init_std)
    for prefix, head_kind, bias_value in (("mean_estimator", args.mean_head, 0.0),
                                          ("std_estimator", args.std_head, std_bias)):
        for name, t in base.items():
            if name == "embed_tokens.weight" or (name == "norm.weight" and args.no_final_norm):
                continue
            tensors[f"{prefix}.{name}"] = t
        if head_kind != "none":
            tensors[f"{prefix}.head.weight"] = torch.zeros(hidden, hidden, dtype=head_dtype)
        if head_kind == "bias":
            tensors[f"{prefix}.head.bias"] = torch.full((hidden,), bias_value, dtype=head_dtype)
    if args.std_head != "bias":
        warnings.warn(f"--std-head {args.std_head}: --init-std is ignored (no bias to set)")

    # Load through the reference first: names and shapes are checked before anything is written.
    model = SgtModel(config)
    model.load_tensors(tensors, source=args.base)
    os.makedirs(args.out_dir, exist_ok=True)
    write_config(os.path.join(args.out_dir, "config.json"), config)
    save_model_tensors(tensors, os.path.join(args.out_dir, "model.safetensors"),
                       None if args.dtype == "keep" else args.dtype, metadata={"format": "pt"})
    copy_tokenizer_files(args.base, args.revision, args.out_dir)
    return config


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def copy_tokenizer_files(base: str, revision: str | None, out_dir: str) -> None:
    """The base model's own tokenizer files, unmodified (docs/format.md section 2): the transform's
    text front end reads them. Missing ones are skipped (the transform then takes IN.json only)."""
    model_dir, fetch = _resolve(base, revision)
    for name in TOKENIZER_FILES:
        src = os.path.join(model_dir, name)
        if fetch is not None and not os.path.exists(src):
            try:
                src = fetch(name)
            except Exception:  # not in this Hub repo
                continue
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(out_dir, name))


@torch.no_grad()
def smoke_test(out_dir: str, init_std: float, std_head: str, mean_head: str) -> None:
    """Reloads the written directory and checks the initial mean / std on a few tokens."""
    model = SgtModel.from_dir(out_dir)
    n = min(model.vocab_size, 5)
    inputs = parse_inputs({"input_ids": list(range(n)), "noise_mask": [1] * n})
    out = transform(model, inputs, seed=0)
    if std_head == "bias":
        err = float((out["std"] - init_std).abs().max())
        if err > 1e-2 * init_std + 1e-3:  # bf16 rounding of the bias
            raise AssertionError(f"initial std off by {err} from --init-std {init_std}")
    mean_type = model.config["mean_estimator"]["parameterization"]["type"]
    if mean_head != "none" and mean_type == "identity":
        if float(out["mean"].abs().max()) != 0.0:
            raise AssertionError("initial mean is not 0")
    print(f"{out_dir}: initial std {float(out['std'].mean()):.4g}, "
          f"mean |mu| {float(out['mean'].abs().mean()):.4g}", file=sys.stderr)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(2)
    try:
        convert(args)
        smoke_test(args.out_dir, args.init_std, args.std_head, args.mean_head)
    except (ValueError, KeyError, FileNotFoundError, AssertionError) as e:
        print(f"convert_hf.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
