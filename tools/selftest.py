#!/usr/bin/env python3
"""Self-test of the Python tools (run by developers after changing them; not part of CI).

Checks, in a temporary folder:
  1. make_random_model.py + the HF-based reference agree with the independent float64
     implementation for every model type, dtype and parameterization;
  2. that agreement check can fail: changing one config value behind the reference's back
     (sliding window, rope theta, llama3 factor, rms eps, cloak shallow) is detected;
  3. convert_hf.py on tiny local Hugging Face models (saved with save_pretrained, one of them
     sharded, one in bf16): the estimator trunk reproduces the base model's first K layers +
     final norm, the mean starts at 0 and the std at --init-std;
  4. IN.json parsing (single sequence, true/false, errors) and reference.py's failure path
     (exit status 1, one line on stderr, no output file);
  5. --seed N reproduces torch.manual_seed(N); torch.randn(B, S, H).

Usage:
  python3 tools/selftest.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)

import torch  # noqa: E402

import convert_hf  # noqa: E402
import make_random_model  # noqa: E402
import reference  # noqa: E402
from sgt_reference.model import SgtModel  # noqa: E402
from sgt_reference.transform import parse_inputs, transform  # noqa: E402

INPUT = {
    "input_ids": [[0, 0, 0, 5, 6, 7, 8, 9, 10, 11, 12, 13], [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0]],
    "noise_mask": [[1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1], [1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
    "attention_mask": [[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]],
}


def quiet(fn, *args, **kwargs):
    with contextlib.redirect_stderr(io.StringIO()):
        return fn(*args, **kwargs)


def check_random_models(tmp: str) -> None:
    variants = {
        "llama_f32": ["--kv-heads", "2", "--head-bias", "--mean-param", "bounded_tanh"],
        "llama_llama3_bf16": ["--kv-heads", "1", "--rope-scaling", "llama3", "--rope-theta",
                              "10000", "--rope-original-max", "64", "--dtype", "bf16",
                              "--attention-bias"],
        "llama_linear_f16": ["--rope-scaling", "linear", "--dtype", "f16", "--no-final-norm",
                             "--std-param", "cloak_sigmoid", "--mean-param", "cloak"],
        "mistral_window": ["--model-type", "mistral", "--sliding-window", "4", "--layers", "2",
                           "--no-head", "--mean-param", "direct", "--std-param", "direct"],
        "qwen2_mixed": ["--model-type", "qwen2", "--kv-heads", "2", "--dtype", "mixed",
                        "--value-range", "-1", "null"],
        "qwen3_headdim": ["--model-type", "qwen3", "--kv-heads", "2", "--head-dim", "24",
                          "--mean-param", "cloak_sigmoid", "--value-range", "null", "2"],
    }
    inputs = parse_inputs(INPUT)
    for name, args in variants.items():
        d = os.path.join(tmp, name)
        quiet(make_random_model.main, [d, "--layers", "1", "--seed", "3"] + args)
        model = SgtModel.from_dir(d)
        out = transform(model, inputs, seed=5)
        worst = reference.check_against_manual(d, inputs, out)
        print(f"  {name}: HF vs manual {worst:.1e}")


def check_mutations(tmp: str) -> None:
    """The agreement check must fail when the reference and the file disagree."""
    base = os.path.join(tmp, "mut_base")
    quiet(make_random_model.main, [base, "--model-type", "mistral", "--sliding-window", "4",
                                   "--layers", "2", "--seed", "9"])
    l3 = os.path.join(tmp, "mut_l3")
    quiet(make_random_model.main, [l3, "--rope-scaling", "llama3", "--rope-theta", "10000",
                                   "--rope-original-max", "16", "--seed", "9"])
    inputs = parse_inputs(INPUT)
    mutations = [
        (base, "sliding_window", lambda c: c["mean_estimator"]["config"].update(sliding_window=5)),
        (base, "rope_theta", lambda c: c["std_estimator"]["config"].update(rope_theta=20000.0)),
        (base, "rms_norm_eps", lambda c: c["std_estimator"]["config"].update(rms_norm_eps=1e-2)),
        (base, "shallow", lambda c: c["std_estimator"]["parameterization"].update(shallow=1.2)),
        (l3, "llama3 factor",
         lambda c: c["mean_estimator"]["config"]["rope_scaling"].update(factor=2.0)),
    ]
    for src, label, mutate in mutations:
        out = transform(SgtModel.from_dir(src), inputs, seed=1)
        dst = os.path.join(tmp, "mutated")
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        with open(os.path.join(dst, "config.json")) as f:
            cfg = json.load(f)
        mutate(cfg)
        with open(os.path.join(dst, "config.json"), "w") as f:
            json.dump(cfg, f)
        try:
            reference.check_against_manual(dst, inputs, out)
        except AssertionError:
            print(f"  mutation {label}: detected")
            continue
        raise AssertionError(f"mutation {label} was not detected by the manual check")


@torch.no_grad()
def check_convert(tmp: str) -> None:
    import transformers as tf

    common = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=120, max_position_embeddings=1024)
    bases = {
        "llama": (tf.LlamaForCausalLM, tf.LlamaConfig(
            **common, rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0,
                                       "factor": 4.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": 32}),
            torch.bfloat16, None),
        "mistral": (tf.MistralForCausalLM, tf.MistralConfig(**common, sliding_window=5),
                    torch.float32, "60KB"),
        "qwen2": (tf.Qwen2ForCausalLM, tf.Qwen2Config(**common), torch.float32, None),
        "qwen3": (tf.Qwen3ForCausalLM, tf.Qwen3Config(**common, head_dim=32), torch.float32, None),
    }
    ids = torch.tensor(INPUT["input_ids"])
    mask = torch.tensor(INPUT["attention_mask"])
    for name, (cls, config, dtype, shard) in bases.items():
        torch.manual_seed(0)
        lm = cls(config).to(dtype)
        src = os.path.join(tmp, f"hf_{name}")
        kwargs = {"max_shard_size": shard} if shard else {}
        quiet(lm.save_pretrained, src, **kwargs)
        K = 2
        out = os.path.join(tmp, f"sgt_{name}")
        rc = quiet(convert_hf.main, [src, out, "--layers", str(K), "--init-std", "0.2"])
        assert rc == 0, f"convert_hf failed for {name}"
        # trunk == base model's first K layers + final norm, on the same (rounded) weights.
        # Reloaded rather than upcast in place: .to(bf16) also rounds the rope inv_freq buffer.
        lm = quiet(cls.from_pretrained, src, dtype=torch.float32, attn_implementation="eager")
        lm = lm.eval()
        hs = lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        want = lm.model.norm(hs[K])
        model = SgtModel.from_dir(out)
        x = model.embed(ids)
        for est in (model.mean_estimator, model.std_estimator):
            got = est.trunk(inputs_embeds=x, attention_mask=mask).last_hidden_state
            real = mask.bool()
            err = float((got - want)[real].abs().max())
            assert err < 1e-5, f"{name}: trunk differs from the base model by {err}"
        res = transform(model, parse_inputs(INPUT), seed=0)
        real = mask.bool()
        assert float(res["mean"].abs().max()) == 0.0, f"{name}: initial mean not 0"
        assert float((res["std"][real] - 0.2).abs().max()) < 2e-3, f"{name}: initial std"
        print(f"  convert_hf {name} ({str(dtype)[6:]}{', sharded' if shard else ''}): trunk "
              f"matches the base model's first {K} layers, mean 0, std 0.2")


def check_inputs_and_cli(tmp: str) -> None:
    one = parse_inputs({"input_ids": [1, 2, 3], "noise_mask": [True, False, 1]})
    assert one.shape == (1, 3) and one.noise_mask.tolist() == [[True, False, True]]
    assert one.attention_mask.all()
    bad = [
        ({"input_ids": [[1, 2], [3]], "noise_mask": [[1, 1], [1]]}, "input_ids"),
        ({"input_ids": [[1, 2]], "noise_mask": [[1, 2]]}, "noise_mask[0][1]"),
        ({"input_ids": [[1, 2]], "noise_mask": [[1, 1]], "attention_mask": [[1]]},
         "attention_mask"),
        ({"input_ids": [1, 2], "noise_mask": [[1, 1]]}, "noise_mask"),
        ({"input_ids": [[1, 999]], "noise_mask": [[1, 1]]}, "input_ids[0][1]"),
        ({"input_ids": [[1, 2.5]], "noise_mask": [[1, 1]]}, "input_ids[0][1]"),
    ]
    for obj, key in bad:
        try:
            parse_inputs(obj, vocab_size=256)
        except ValueError as e:
            assert key in str(e), f"error '{e}' does not name {key}"
            continue
        raise AssertionError(f"accepted bad input {obj}")
    d = os.path.join(tmp, "cli")
    quiet(make_random_model.main, [d])
    bad_in = os.path.join(tmp, "bad.json")
    with open(bad_in, "w") as f:
        json.dump({"input_ids": [[1, 300]], "noise_mask": [[1, 1]]}, f)
    out = os.path.join(tmp, "never.safetensors")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = reference.main([d, "--input", bad_in, "--output", out, "--seed", "1"])
    assert rc == 1 and not os.path.exists(out) and "input_ids[0][1]" in err.getvalue()
    print("  IN.json parsing and reference.py failure path: ok")


def check_seed(tmp: str) -> None:
    d = os.path.join(tmp, "cli")
    inputs = parse_inputs({"input_ids": [[1, 2, 3, 4, 5]], "noise_mask": [[1, 1, 1, 1, 1]]})
    out = transform(SgtModel.from_dir(d), inputs, seed=42)
    torch.manual_seed(42)
    assert torch.equal(out["noise"], torch.randn(1, 5, 64))
    print("  --seed 42 == torch.manual_seed(42); torch.randn(B, S, H): ok")


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                            epilog=__doc__.split("\n\n", 1)[1],
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="sgt_selftest_") as tmp:
        print("random models vs the independent implementation:")
        check_random_models(tmp)
        print("the check can fail:")
        check_mutations(tmp)
        print("convert_hf.py:")
        check_convert(tmp)
        print("inputs, CLI, seed:")
        check_inputs_and_cli(tmp)
        check_seed(tmp)
    print("selftest: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
