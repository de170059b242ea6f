#!/usr/bin/env python3
"""Compares an `sgt import-gguf` directory with transformers' own GGUF loader, by hand (the model
is not in the repository).

  sgt import-gguf MODEL.gguf IMPORTED_DIR --dtype f32
  VENV/bin/python tools/check_gguf_import.py MODEL.gguf IMPORTED_DIR [--sgt build/release/tools/sgt]

Checks, each printed with its count of differences:
  1. every tensor of transformers' state dict (`from_pretrained(dir, gguf_file=..., dtype=float32)`)
     equals the imported model.safetensors bit for bit (f32), or rounded to nearest even (bf16);
     the imported file holds no other tensor;
  2. the imported tokenizer.json, loaded by Hugging Face `tokenizers`, gives the ids of
     transformers' GGUF tokenizer on a multilingual corpus and on chat renderings (for `smollm`,
     with SmolLM2's Digits step: see tools/fixtures/gguf_fixtures.py);
  3. with --sgt: `sgt generate DIR --chat ... --precision f32 --max-new-tokens 32 --json` gives the
     new ids of transformers' greedy `generate` on the same chats.
Exits non-zero when any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open
from tokenizers import Tokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
from gguf_fixtures import CHATS, CORPUS, load_model, tokenizer_from_gguf  # noqa: E402


def check_tensors(model, imported: str) -> int:
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight" or not model.config.tie_word_embeddings}
    bad = 0
    with safe_open(os.path.join(imported, "model.safetensors"), "pt") as f:
        names = set(f.keys())
        if names != set(state):
            print(f"tensors: names differ: only ours {sorted(names - set(state))[:5]}, only transformers' {sorted(set(state) - names)[:5]}")
            bad += 1
        for name in sorted(names & set(state)):
            ours, theirs = f.get_tensor(name), state[name].detach()
            if ours.dtype == torch.bfloat16:
                theirs = theirs.to(torch.bfloat16)
            if ours.shape != theirs.shape:
                print(f"  {name}: shape {tuple(ours.shape)} != {tuple(theirs.shape)}")
                bad += 1
                continue
            differ = int((ours.view(torch.int16 if ours.dtype == torch.bfloat16 else torch.int32)
                          != theirs.contiguous().view(torch.int16 if ours.dtype == torch.bfloat16 else torch.int32)).sum())
            if differ:
                print(f"  {name}: {differ} of {ours.numel()} values differ")
                bad += 1
    print(f"tensors: {len(state)} compared, {bad} differ")
    return bad


def check_tokens(gguf_path: str, imported: str) -> tuple[int, list[list[int]]]:
    _, ref = tokenizer_from_gguf(gguf_path)
    ours = Tokenizer.from_file(os.path.join(imported, "tokenizer.json"))
    bad = 0
    for text in CORPUS:
        a, b = ours.encode(text, add_special_tokens=True).ids, ref(text)["input_ids"]
        if a != b:
            print(f"  {text!r}: ours {a[:12]}... transformers {b[:12]}...")
            bad += 1
    chat_ids = []
    for chat in CHATS:
        rendered = ref.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        a, b = ours.encode(rendered, add_special_tokens=False).ids, ref(rendered, add_special_tokens=False)["input_ids"]
        chat_ids.append(b)
        if a != b:
            print(f"  chat {chat[-1]['content']!r}: ids differ")
            bad += 1
    print(f"tokens: {len(CORPUS)} texts and {len(CHATS)} chats, {bad} differ")
    return bad, chat_ids


def check_generate(model, sgt: str, imported: str, chat_ids: list[list[int]]) -> int:
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for chat, ids in zip(CHATS, chat_ids):
            with torch.no_grad():
                out = model.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False, eos_token_id=2)
            want = out[0, len(ids):].tolist()
            path = os.path.join(tmp, "chat.json")
            with open(path, "w") as f:
                json.dump({"messages": chat}, f)
            r = subprocess.run([sgt, "generate", imported, "--chat", path, "--precision", "f32",
                                "--max-new-tokens", "32", "--json"], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"  sgt generate failed: {r.stderr.strip()}")
                bad += 1
                continue
            got = json.loads(r.stdout)
            same = got["new_ids"] == want
            print(f"  {chat[-1]['content']!r} -> {got['answer']!r} ({'same tokens' if same else 'DIFFERENT tokens'})")
            bad += not same
    print(f"generate: {len(CHATS)} chats, {bad} differ")
    return bad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("gguf")
    p.add_argument("imported")
    p.add_argument("--sgt", help="the sgt tool, to compare `sgt generate` with transformers' generate")
    args = p.parse_args()
    model = load_model(args.gguf)
    bad = check_tensors(model, args.imported)
    tbad, chat_ids = check_tokens(args.gguf, args.imported)
    bad += tbad
    if args.sgt:
        bad += check_generate(model, args.sgt, args.imported, chat_ids)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
