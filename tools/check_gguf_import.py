#!/usr/bin/env python3
"""Compares an `sgt import-gguf` directory with transformers' own GGUF loader, by hand (the model
is not in the repository).

  sgt import-gguf MODEL.gguf IMPORTED_DIR --dtype f32
  VENV/bin/python tools/check_gguf_import.py MODEL.gguf IMPORTED_DIR [--sgt build/release/tools/sgt]
      [--corpus FILE]... [--no-tensors]

A vocabulary-only file (llama.cpp's models/ggml-vocab-*.gguf) is checked inside a tiny random model:
  VENV/bin/python tools/fixtures/gguf_fixtures.py --wrap-spm-vocab ggml-vocab-llama-spm.gguf M.gguf

Checks, each printed with its count of differences:
  1. every tensor of transformers' state dict (`from_pretrained(dir, gguf_file=..., dtype=float32)`)
     equals the imported model.safetensors bit for bit (f32), or rounded to nearest even (bf16);
     the imported file holds no other tensor;
  2. the imported tokenizer.json, loaded by Hugging Face `tokenizers`, gives the ids of
     transformers' GGUF tokenizer on a multilingual corpus (and on the texts of each --corpus
     FILE: llama.cpp's *.inp test files, split at its `__ggml_vocab_test__` lines, or any text
     file, taken line by line and whole), and on chat renderings; the ids decode to the same text
     (for `smollm`, with SmolLM2's Digits step; for a SentencePiece vocabulary with
     add_space_prefix false, with that honoured: see tools/fixtures/gguf_fixtures.py);
  3. with --sgt: `sgt tokenize DIR --text T` (our C++ tokenizer) gives the same ids on the corpus
     (at most --sgt-texts texts of it: the whole files, then lines spread evenly; one process
     each), and
     `sgt generate DIR --chat ... --precision f32 --max-new-tokens 32 --json` gives the new ids of
     transformers' greedy `generate` on the chats (when the file has a chat template).
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


def corpus_texts(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if "__ggml_vocab_test__" in text:
        return [t for t in text.split("\n__ggml_vocab_test__\n")]
    return [line for line in text.split("\n") if line] + [text]


def check_tokens(gguf_path: str, imported: str, extra: list[str]) -> tuple[int, list[list[int]]]:
    _, ref = tokenizer_from_gguf(gguf_path)
    ours = Tokenizer.from_file(os.path.join(imported, "tokenizer.json"))
    bad = bad_text = 0
    tokens = 0
    texts = CORPUS + extra
    for text in texts:
        a, b = ours.encode(text, add_special_tokens=True).ids, ref(text)["input_ids"]
        tokens += len(b)
        if a != b:
            print(f"  {text[:60]!r}: ours {a[:12]}... transformers {b[:12]}...")
            bad += 1
        if ours.decode(b, skip_special_tokens=False) != ref.decode(b, skip_special_tokens=False):
            print(f"  {text[:60]!r}: decoded text differs")
            bad_text += 1
    chat_ids = []
    chats = CHATS if ref.chat_template else []
    for chat in chats:
        rendered = ref.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        a, b = ours.encode(rendered, add_special_tokens=False).ids, ref(rendered, add_special_tokens=False)["input_ids"]
        chat_ids.append(b)
        if a != b:
            print(f"  chat {chat[-1]['content']!r}: ids differ")
            bad += 1
    print(f"tokens: {len(texts)} texts ({tokens} tokens) and {len(chats)} chats, {bad} differ; "
          f"decoded text: {bad_text} differ")
    return bad + bad_text, chat_ids


def check_sgt_tokenize(gguf_path: str, sgt: str, imported: str, extra: list[str], limit: int) -> int:
    _, ref = tokenizer_from_gguf(gguf_path)
    texts = [t for t in CORPUS + extra if "\0" not in t]
    long = [t for t in texts if len(t) > 1000][:limit]  # whole files first
    short = [t for t in texts if len(t) <= 1000]
    n = min(len(short), limit - len(long))
    texts = long + [short[i * len(short) // n] for i in range(n)]
    bad = tokens = 0
    for text in texts:
        r = subprocess.run([sgt, "tokenize", imported, "--text", text], capture_output=True, text=True)
        want = ref(text)["input_ids"]
        tokens += len(want)
        if r.returncode != 0 or json.loads(r.stdout)["input_ids"] != want:
            print(f"  sgt tokenize {text[:60]!r}: {r.stderr.strip() or 'ids differ'}")
            bad += 1
    print(f"sgt tokenize: {len(texts)} texts ({tokens} tokens), {bad} differ")
    return bad


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
    print(f"generate: {len(chat_ids)} chats, {bad} differ")
    return bad


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("gguf")
    p.add_argument("imported")
    p.add_argument("--sgt", help="the sgt tool, to compare `sgt generate` with transformers' generate")
    p.add_argument("--corpus", action="append", default=[], help="more texts to tokenize (repeatable)")
    p.add_argument("--no-tensors", action="store_true", help="check the tokenizer alone")
    p.add_argument("--sgt-texts", type=int, default=300, help="texts for `sgt tokenize` (default 300)")
    args = p.parse_args()
    extra = [t for path in args.corpus for t in corpus_texts(path)]
    model = None if args.no_tensors else load_model(args.gguf)
    bad = 0 if args.no_tensors else check_tensors(model, args.imported)
    tbad, chat_ids = check_tokens(args.gguf, args.imported, extra)
    bad += tbad
    if args.sgt:
        bad += check_sgt_tokenize(args.gguf, args.sgt, args.imported, extra, args.sgt_texts)
    if args.sgt and model is not None:
        bad += check_generate(model, args.sgt, args.imported, chat_ids)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
