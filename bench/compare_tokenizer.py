#!/usr/bin/env python3
"""Times Hugging Face `tokenizers` on the text bench_text_tokenizer uses (1 MiB of the fixture
corpus, cut at a line end) with the same tokenizer.json files, single-threaded
(RAYON_NUM_THREADS=1, one `encode` call: the same work as one C++ iteration). Checks first that
both produce the same number of tokens as the C++ program reports.

  python3 bench/compare_tokenizer.py            (needs `tokenizers`)
"""
import os
import statistics
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from tokenizers import Tokenizer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "tests", "data", "text", "tokenizers")


def one_mebibyte() -> str:
    corpus = open(os.path.join(DATA, "corpus.txt"), "rb").read()
    out = b""
    while len(out) < 1 << 20:
        out += corpus
    return out[: out.rfind(b"\n", 0, (1 << 20) + 1) + 1].decode("utf-8")


def main():
    text = one_mebibyte()
    n = len(text.encode("utf-8"))
    for name in ("llama3", "qwen2", "llama2_legacy", "tekken"):
        tok = Tokenizer.from_file(os.path.join(DATA, name, "tokenizer.json"))
        tokens = len(tok.encode(text, add_special_tokens=False).ids)
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            tok.encode(text, add_special_tokens=False)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"{name:14s} tokenizers: {med * 1e3:8.1f} ms  {n / med / 1e6:6.2f} MB/s  {tokens} tokens")


if __name__ == "__main__":
    main()
