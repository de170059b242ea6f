#!/usr/bin/env python3
"""The base model side by side: sgt::CausalLM against llama.cpp on the same weights.

One Hugging Face LlamaForCausalLM with random weights (default: Llama 3.2 1B's layer shape --
hidden 2048, 32/8 heads, head_dim 64, MLP 8192, llama3 RoPE -- with --layers layers and a
--vocab vocabulary, untied LM head, bf16), saved with save_pretrained and converted to a bf16 GGUF
by llama.cpp's own convert_hf_to_gguf.py. Then, interleaved round by round (one run of each
program per round, --repeat rounds, medians):

  llama.cpp   llama-bench -p S -n 0 (prefill of S tokens, the last token's logits) and
              llama-bench -p 0 -n G -d C (G decode steps after a cache of C positions), -t N
  sgt         bench_causal_lm with SGT_BENCH_LM_DIR set to the same model: BM_Prefill (S tokens
              from position 0, the last token's logits) and BM_Decode (one step at position C),
              Precision::Bf16 (and F32), sgt::ThreadPool(N); BM_Decode a second time with
              SGT_BENCH_LM_DECODE_WEIGHTS=1 (CausalLM::copy_decode_weights: the decode steps
              read a copy of the weights in feature blocks)

and, in the same run, BM_ReadBandwidth (the memory bandwidth the decode steps are bounded by), the
CPU model and the median of every cell. llama.cpp's output is not compared with ours (llama-bench
prints no logits); ours is compared with its reference kernels by bench_causal_lm before it
times, and with transformers by tests/test_causal_lm.cpp. Writes a section of bench/RESULTS.md
(--results) and prints it.

Never in CI. Needs: a venv with torch, transformers, sentencepiece and numpy; llama.cpp built as
bench/compare/README.md says (--llama-cpp is its source directory, with build/bin/llama-bench);
bench_causal_lm built (cmake --preset bench && cmake --build --preset bench --target
bench_causal_lm).

  VENV/bin/python bench/compare/compare_lm.py --llama-cpp LLAMA_DIR \
      --bench build/release/bench/bench_causal_lm --work WORK
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def make_model(work: Path, layers: int, vocab: int) -> Path:
    hf_dir = work / f"hf-llama-1b-shape-{layers}l-v{vocab}"
    if (hf_dir / "config.json").exists():
        return hf_dir
    import sentencepiece as spm
    import torch
    import transformers as tf

    hf_dir.mkdir(parents=True, exist_ok=True)
    # The converter needs a tokenizer, the benchmark does not: a 256-piece sentencepiece model,
    # which the converter pads to vocab_size with unused pieces.
    corpus = hf_dir / "corpus.txt"
    corpus.write_text("\n".join(f"w{i} x{i % 7} y{i % 13}" for i in range(3000)) + "\n")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(hf_dir / "tokenizer"),
                                   vocab_size=256, model_type="bpe", byte_fallback=False,
                                   minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(hf_dir / "tokenizer.model"))
    config = tf.LlamaConfig(
        vocab_size=vocab, hidden_size=2048, intermediate_size=8192, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        max_position_embeddings=131072, tie_word_embeddings=False,
        bos_token_id=sp.bos_id(), eos_token_id=sp.eos_id())
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(hf_dir))
    corpus.unlink()
    return hf_dir


def make_gguf(llama_cpp: Path, hf_dir: Path, work: Path) -> Path:
    out = work / (hf_dir.name + "-bf16.gguf")
    if out.exists():
        return out
    env = dict(os.environ, PYTHONPATH=str(llama_cpp / "gguf-py"))
    r = subprocess.run([sys.executable, str(llama_cpp / "convert_hf_to_gguf.py"), str(hf_dir),
                        "--outtype", "bf16", "--outfile", str(out)],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"convert_hf_to_gguf.py failed:\n{r.stderr[-3000:]}")
    return out


def llama_bench(bench: Path, gguf: Path, threads, seqs, contexts, gen: int) -> dict:
    """One run of every cell; returns {(kind, size, threads): tokens/s}."""
    out = {}
    t = ",".join(map(str, threads))
    runs = [("prefill", ["-p", ",".join(map(str, seqs)), "-n", "0"]),
            ("decode", ["-p", "0", "-n", str(gen), "-d", ",".join(map(str, contexts))])]
    for kind, args in runs:
        cmd = [str(bench), "-m", str(gguf), *args, "-t", t, "-r", "1", "-ngl", "0", "-o", "json"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        for res in json.loads(r.stdout):
            size = res["n_prompt"] if kind == "prefill" else res["n_depth"]
            out[(kind, size, res["n_threads"])] = res["avg_ts"]
    return out


def sgt_bench(bench: Path, hf_dir: Path, threads, seqs, contexts, decode_copy=False) -> dict:
    """One run of every cell (both precisions) and the read bandwidth; with decode_copy, the
    decode cells alone, on the decode copy of the weights (keys "decode-copy-...")."""
    ts = "|".join(map(str, threads))
    filt = f"BM_Decode/context:({'|'.join(map(str, contexts))})/threads:({ts})/"
    if not decode_copy:
        filt = (f"BM_ReadBandwidth/threads:({ts})/|"
                f"BM_Prefill/tokens:({'|'.join(map(str, seqs))})/threads:({ts})/|" + filt)
    env = dict(os.environ, SGT_BENCH_LM_DIR=str(hf_dir))
    env.pop("SGT_BENCH_LM_DECODE_WEIGHTS", None)
    if decode_copy:
        env["SGT_BENCH_LM_DECODE_WEIGHTS"] = "1"
    r = subprocess.run([str(bench), f"--benchmark_filter={filt}", "--benchmark_format=json",
                        "--benchmark_min_time=0.5"], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"bench_causal_lm failed:\n{r.stderr[-2000:]}")
    out = {}
    for b in json.loads(r.stdout)["benchmarks"]:
        if b.get("error_occurred"):
            raise SystemExit(f"{b['name']}: {b.get('error_message')}")
        parts = dict(p.split(":") for p in b["name"].split("/")[1:] if ":" in p)
        th = int(parts["threads"])
        if b["name"].startswith("BM_ReadBandwidth"):
            out[("bandwidth", 0, th)] = b["GB/s"]
            continue
        prec = "bf16" if parts["bf16"] == "1" else "f32"
        if b["name"].startswith("BM_Prefill"):
            out[(f"prefill-{prec}", int(parts["tokens"]), th)] = b["tokens/s"]
        else:
            kind = "decode-copy" if decode_copy else "decode"
            out[(f"{kind}-{prec}", int(parts["context"]), th)] = b["tokens/s"]
            out[(f"{kind}-{prec}-GB/s", int(parts["context"]), th)] = b["GB/s"]
    return out


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
            info = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in
                    Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines() if ":" in l)}
            return f"{name} (family {info.get('cpu family')}, model {info.get('model')})"
    return platform.processor()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--llama-cpp", type=Path, required=True)
    p.add_argument("--bench", type=Path, required=True, help="bench_causal_lm")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seq", type=int, nargs="+", default=[128, 512])
    p.add_argument("--context", type=int, nargs="+", default=[128, 512])
    p.add_argument("--gen", type=int, default=16, help="llama-bench decode steps per run")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    p.add_argument("--note", default="")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)

    hf_dir = make_model(args.work, args.layers, args.vocab)
    gguf = make_gguf(args.llama_cpp, hf_dir, args.work)
    lbench = args.llama_cpp / "build" / "bin" / "llama-bench"
    rounds = []
    for r in range(args.repeat + 1):  # round 0 is the warm-up
        order = [0, 1, 2] if r % 2 == 0 else [2, 1, 0]
        cells = {}
        for which in order:
            if which == 0:
                cells.update({("llamacpp-" + k[0], k[1], k[2]): v for k, v in
                              llama_bench(lbench, gguf, args.threads, args.seq, args.context,
                                          args.gen).items()})
            else:
                cells.update({("sgt-" + k[0], k[1], k[2]): v for k, v in
                              sgt_bench(args.bench, hf_dir, args.threads, args.seq,
                                        args.context, decode_copy=which == 2).items()})
        print(f"round {r}: {len(cells)} cells", file=sys.stderr)
        if r > 0:
            rounds.append(cells)
    med = {k: statistics.median(rd[k] for rd in rounds) for k in rounds[0]}

    lines = ["## The base model against llama.cpp (`bench/compare/compare_lm.py`)", ""]
    if args.note:
        lines += [f"*{args.note}*", ""]
    lines += [f"CPU: {cpu_model()}. Model: LlamaForCausalLM, Llama 3.2 1B's layer shape, "
              f"{args.layers} layers, vocabulary {args.vocab}, untied LM head, bf16 weights "
              f"(llama.cpp: the same weights converted to a bf16 GGUF). Medians of "
              f"{args.repeat} interleaved rounds, tokens/s. Memory read bandwidth in the same run: " +
              ", ".join(f"{med[('sgt-bandwidth', 0, t)]:.1f} GB/s ({t} thread{'s' if t > 1 else ''})"
                        for t in args.threads) + ".", "",
              "| test | threads | sgt bf16 | sgt f32 | llama.cpp bf16 | sgt bf16 / llama.cpp | "
              "sgt decode GB/s | decode copy: bf16 | f32 | bf16 / llama.cpp |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, sizes, label in (("prefill", args.seq, "prefill S={}"),
                               ("decode", args.context, "decode at context {}")):
        for s in sizes:
            for t in args.threads:
                ours = med[(f"sgt-{kind}-bf16", s, t)]
                ours32 = med[(f"sgt-{kind}-f32", s, t)]
                theirs = med[(f"llamacpp-{kind}", s, t)]
                copy = " | | |"
                gbs = ""
                if kind == "decode":
                    gbs = f"{med[('sgt-decode-bf16-GB/s', s, t)]:.1f}"
                    cb, cf = med[("sgt-decode-copy-bf16", s, t)], med[("sgt-decode-copy-f32", s, t)]
                    copy = f" {cb:.1f} | {cf:.1f} | {cb / theirs:.2f} |"
                lines.append(f"| {label.format(s)} | {t} | {ours:.1f} | {ours32:.1f} | "
                             f"{theirs:.1f} | {ours / theirs:.2f} | {gbs} |{copy}")
    lines += ["", "Reproduce: `VENV/bin/python bench/compare/compare_lm.py --llama-cpp LLAMA_DIR "
              "--bench build/release/bench/bench_causal_lm --work WORK` (llama.cpp from the "
              "llama-cpp-python sdist, bench/compare/README.md).", ""]
    section = "\n".join(lines)
    print(section)
    text = args.results.read_text() if args.results.exists() else ""
    head = lines[0]
    if head in text:
        start = text.index(head)
        nxt = text.find("\n## ", start + len(head))
        text = text[:start] + section + (text[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    args.results.write_text(text)


if __name__ == "__main__":
    main()
