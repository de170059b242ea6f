#!/usr/bin/env python3
"""The analysis half of tools/vllm_generate_compare.sh (by hand, never in CI): reads what the shell
script collected in WORK and compares the greedy tokens of vLLM, `sgt generate` and transformers.

  python3 tools/vllm_generate_compare.py WORK BASE_DIR MAX_NEW

WORK holds (names fixed by the shell script):
  prot16.safetensors       `sgt transform --output-dtype bf16` (tensor "transformed", [1, S, H])
  body.json                the same transform as `--format vllm-completions` (base64 torch.save)
  prompt_ids.json          `sgt tokenize --chat`'s output (the clean case's ids)
  vllm_protected.json      vLLM's /v1/completions response to body.json (greedy, ignore_eos)
  vllm_clean.json          vLLM's response to the prompt's token ids
  sgt_{protected,clean}_{bf16,f32}.json   `sgt generate --json`

It checks that both payloads hold the same bf16 bits, runs transformers' model (the checkpoint's
bf16 weights, computed in f32 and in bf16) greedily from the same inputs with a KV cache (prefill,
then one token per step, as both servers decode), prints the agreeing prefix of every pair of
systems, and at each first divergence between vLLM and sgt the teacher-forced top-2 logits of
transformers in f32 and bf16 from the common prefix: a divergence where the f32 top-2 gap is
within bf16 rounding is a near-tie that the two bf16 implementations break differently.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def load(work, name):
    with open(os.path.join(work, name)) as f:
        return json.load(f)


def vllm_ids(response):
    choice = response["choices"][0]
    if not choice.get("token_ids"):
        raise SystemExit("vLLM returned no token_ids (return_token_ids not honoured?)")
    return list(choice["token_ids"])


def prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@torch.no_grad()
def greedy(model, max_new, input_ids=None, inputs_embeds=None):
    """Prefill, then one token per step with the KV cache; no eos stop. Returns the ids and the
    last-position logits (f32) of every step."""
    kwargs = {"input_ids": input_ids} if input_ids is not None else {"inputs_embeds": inputs_embeds}
    out = model(**kwargs, use_cache=True)
    ids, logits = [], []
    for _ in range(max_new):
        row = out.logits[0, -1].float()
        nxt = int(torch.argmax(row))  # the first maximum: the lowest id on a tie
        ids.append(nxt)
        logits.append(row)
        out = model(input_ids=torch.tensor([[nxt]]), past_key_values=out.past_key_values,
                    use_cache=True)
    return ids, logits


@torch.no_grad()
def step_logits(model, prompt_embeds, prompt_ids, new_ids):
    """Last-position logits (f32) of one full forward over the prompt and new_ids (no cache)."""
    emb = model.get_input_embeddings()
    if prompt_embeds is not None:
        x = prompt_embeds.to(emb.weight.dtype)
    else:
        x = emb(torch.tensor([prompt_ids]))
    if new_ids:
        x = torch.cat([x, emb(torch.tensor([new_ids]))], dim=1)
    return model(inputs_embeds=x).logits[0, -1].float()


def top2(row):
    v, i = row.topk(2)
    return f"top-2 {int(i[0])} ({float(v[0]):.5f}), {int(i[1])} ({float(v[1]):.5f}), gap {float(v[0] - v[1]):.5f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("work", help="the folder the shell script filled")
    p.add_argument("base", help="the served Hugging Face model directory")
    p.add_argument("max_new", type=int, help="new tokens per answer")
    args = p.parse_args()
    work, base, max_new = args.work, args.base, args.max_new
    torch.manual_seed(0)
    torch.set_num_threads(1)  # deterministic blocking; the model is tiny

    # 1. The two payloads: safetensors and vLLM's body hold the same bf16 bits.
    st = load_file(os.path.join(work, "prot16.safetensors"))["transformed"]
    body = load(work, "body.json")
    pt = torch.load(io.BytesIO(base64.b64decode(body["prompt_embeds"], validate=True)),
                    weights_only=True)
    st2 = st.reshape(pt.shape)
    same = st2.dtype == pt.dtype == torch.bfloat16 and torch.equal(st2.view(torch.int16),
                                                                    pt.view(torch.int16))
    print(f"payloads: safetensors {tuple(st.shape)} {st.dtype}, body {tuple(pt.shape)} {pt.dtype}: "
          f"{'the same bf16 bits' if same else 'DIFFERENT'}")
    if not same:
        raise SystemExit("the two payloads differ")
    embeds = pt.unsqueeze(0)  # [1, S, H] bf16
    prompt_ids = load(work, "prompt_ids.json")["input_ids"]

    f32 = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    bf16 = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16).eval()
    models = {"hf_f32": f32, "hf_bf16": bf16}

    summary = {"transformers": __import__("transformers").__version__, "torch": torch.__version__,
               "cases": {}}
    for case in ("protected", "clean"):
        response = load(work, f"vllm_{case}.json")
        seqs = {"vllm": vllm_ids(response)[:max_new]}
        vllm_top = (response["choices"][0].get("logprobs") or {}).get("top_logprobs") or []
        stops = {}
        for prec in ("bf16", "f32"):
            g = load(work, f"sgt_{case}_{prec}.json")
            seqs[f"sgt_{prec}"] = g["new_ids"]
            stops[f"sgt_{prec}"] = g["stop"]
        hf_logits = {}
        for name, m in models.items():
            if case == "protected":
                seqs[name], hf_logits[name] = greedy(m, max_new, inputs_embeds=embeds.to(
                    m.get_input_embeddings().weight.dtype))
            else:
                seqs[name], hf_logits[name] = greedy(m, max_new, input_ids=torch.tensor([prompt_ids]))
        print(f"\n== {case} ({len(prompt_ids)} prompt positions, {max_new} new tokens)")
        for name, s in seqs.items():
            print(f"  {name:8s} {s}" + (f"  (stop: {stops[name]})" if name in stops else ""))
        names = list(seqs)
        table = {}
        print("  agreeing prefix (of %d):" % max_new)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                table[f"{a}~{b}"] = prefix(seqs[a], seqs[b])
                print(f"    {a:8s} ~ {b:8s} {table[f'{a}~{b}']}")
        gaps = [float(r.topk(2).values[0] - r.topk(2).values[1]) for r in hf_logits["hf_f32"]]
        print(f"  hf_f32 top-2 gap per step: " + " ".join(f"{g:.3f}" for g in gaps))
        divergences = {}
        for prec in ("bf16", "f32"):
            k = table[f"vllm~sgt_{prec}"]
            if k >= max_new:
                continue
            common = seqs["vllm"][:k]
            pe = embeds if case == "protected" else None
            rows = {name: step_logits(m, pe, prompt_ids, common) for name, m in models.items()}
            print(f"  vllm vs sgt_{prec}: first divergence at new token {k}: vllm picks "
                  f"{seqs['vllm'][k]}, sgt_{prec} picks {seqs[f'sgt_{prec}'][k]}")
            lp = vllm_top[k] if k < len(vllm_top) else {}
            print(f"    vllm's top logprobs there: " + ", ".join(f"{t} {v:.6f}" for t, v in lp.items()))
            pair = [seqs["vllm"][k], seqs[f"sgt_{prec}"][k]]
            for name in models:
                print(f"    {name} greedy (cached) logits of {pair} at that step: "
                      f"{hf_logits[name][k][pair].tolist()}")
            for name, r in rows.items():
                print(f"    {name} from the common prefix: {top2(r)}")
            divergences[f"sgt_{prec}"] = {
                "step": k, "vllm": seqs["vllm"][k], "sgt": seqs[f"sgt_{prec}"][k], "vllm_top_logprobs": lp,
                **{name: [[int(i), float(v)] for v, i in zip(*r.topk(2))] for name, r in rows.items()}}
        summary["cases"][case] = {"seqs": seqs, "stops": stops, "prefix": table,
                                  "hf_f32_gaps": gaps, "divergences": divergences}
    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
