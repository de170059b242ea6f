#!/usr/bin/env python3
"""`sgt audit`'s metric, re-implemented with the reference transform and numpy.

  check_audit.py fixtures [--out DIR] [--draws N]
      Writes tests/data/audit/ for the demo model (examples/models/demo, examples/prompt.json):
        noise_draws.safetensors  F32 tensor "noise" [N, S, H]: torch.manual_seed(2026);
                                 torch.randn(N, S, H) (default N = 4), draw d scaled by
                                 SCALES[d % 4] = 1, 4, 10, 30: the demo model's own noise
                                 hides nothing (every token recovered), so larger eps make
                                 draws where some tokens are recovered and some are not
        expected.json            the audit of those draws, computed here: the reference transform
                                 (tools/sgt_reference, PyTorch + transformers) with each draw as
                                 injected noise, then the nearest-neighbour search in float64 numpy
      tests/test_audit.cpp and tests/cli/cli_test.sh compare the C++ audit with expected.json.

  check_audit.py run SGT [--data DIR]
      Runs `SGT audit examples/models/demo --input examples/prompt.json --noise-draws
      DIR/noise_draws.safetensors --json-only` and compares it with the numpy audit of the same
      draws (recomputed, not read from expected.json): nearest ids, recovery rates and L2 ranks
      must be equal, cosines and sigma within 1e-4; its --plot PNG is read with zlib and its red
      cells must be the draws of rank 0. Exit status 1 on any difference.

The metric (include/sgt/kernels/nearest_rows.hpp): for a protected embedding x and the table E,
  L2 score     ||e_v||^2 - 2 x.e_v   (smallest wins; ||x||^2 is the same for every row)
  cosine score x.e_v / |e_v|, 0 for a zero row   (largest wins)
ties go to the lowest id (numpy's argmin/argmax keep the first); the original id o's L2 rank is
#{v : s_v < s_o} + #{v < o : s_v == s_o}. Recovery = fraction of draws whose winner is o.
The C++ search scores in float32, this one in float64: a draw whose best and second-best scores
are within float32 rounding could pick different rows; the smallest relative gap is printed so
such a fixture would be noticed (and could be regenerated with another seed).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from sgt_reference.model import SgtModel  # noqa: E402
from sgt_reference.transform import load_inputs, transform  # noqa: E402

DEMO = os.path.join(ROOT, "examples", "models", "demo")
PROMPT = os.path.join(ROOT, "examples", "prompt.json")
SEED = 2026
SCALES = (1.0, 4.0, 10.0, 30.0)


def nearest(table: np.ndarray, x: np.ndarray, target: int):
    """(l2 id, cosine id, l2 rank of target, relative gap best/second L2) for one query row."""
    sq = (table * table).sum(axis=1)
    y = table @ x
    l2 = sq - 2.0 * y
    inv = np.where(sq > 0, 1.0 / np.sqrt(np.where(sq > 0, sq, 1.0)), 0.0)
    cos = y * inv
    l2_id = int(np.argmin(l2))
    cos_id = int(np.argmax(cos))
    rank = int((l2 < l2[target]).sum() + (l2[:target] == l2[target]).sum())
    two = np.partition(l2, 1)[:2]
    two_c = -np.partition(-cos, 1)[:2]
    gap = min(abs(two[1] - two[0]) / max(abs(two[0]), 1e-30),
              abs(two_c[0] - two_c[1]) / max(abs(two_c[0]), 1e-30))
    return l2_id, cos_id, rank, gap


def audit(model_dir: str, prompt: str, draws: torch.Tensor) -> dict:
    model = SgtModel.from_dir(model_dir)
    inputs = load_inputs(prompt, model.vocab_size)
    B, S = inputs.shape
    if B != 1:
        raise ValueError("this check audits one sequence")
    table = model.embed_tokens.detach().to(torch.float64).numpy()
    ids = inputs.input_ids[0].tolist()
    protect = (inputs.noise_mask & inputs.attention_mask)[0].tolist()
    N = draws.shape[0]
    tokens = [{"id": i, "protected": bool(p), "nearest_l2": [], "nearest_cosine": [],
               "rank_l2": [], "cosine": []} for i, p in zip(ids, protect)]
    sigma = None
    min_gap = float("inf")
    for d in range(N):
        with torch.no_grad():
            out = transform(model, inputs, noise=draws[d:d + 1].contiguous())
        x = out["transformed"][0].to(torch.float64).numpy()
        clean = out["embeddings"][0].to(torch.float64).numpy()
        if sigma is None:
            sigma = out["std"][0].to(torch.float64).numpy()
        for s, tok in enumerate(tokens):
            if not tok["protected"]:
                continue
            # The table is E; the embeddings live on E * embedding_scale (recovery_audit.hpp).
            query = x[s] / np.float32(model.embedding_scale or 1.0)
            l2_id, cos_id, rank, gap = nearest(table, query, tok["id"])
            min_gap = min(min_gap, gap)
            tok["nearest_l2"].append(l2_id)
            tok["nearest_cosine"].append(cos_id)
            tok["rank_l2"].append(rank)
            nc, nx = np.linalg.norm(clean[s]), np.linalg.norm(x[s])
            tok["cosine"].append(float(clean[s] @ x[s] / (nc * nx)) if nc > 0 and nx > 0 else 0.0)
    prot = [t for t in tokens if t["protected"]]
    for t in prot:
        t["recovery_l2"] = sum(i == t["id"] for i in t["nearest_l2"]) / N
        t["recovery_cosine"] = sum(i == t["id"] for i in t["nearest_cosine"]) / N
        t["mean_rank_l2"] = sum(t["rank_l2"]) / N
        t["mean_cosine"] = sum(t["cosine"]) / N
    sig = sigma[[s for s, t in enumerate(tokens) if t["protected"]]]
    n = max(len(prot), 1)
    return {
        "draws": N,
        "min_relative_gap": min_gap,
        "overall": {
            "protected_tokens": len(prot),
            "recovery_l2": sum(t["recovery_l2"] for t in prot) / n,
            "recovery_cosine": sum(t["recovery_cosine"] for t in prot) / n,
            "mean_rank_l2": sum(t["mean_rank_l2"] for t in prot) / n,
            "mean_cosine": sum(t["mean_cosine"] for t in prot) / n,
            "sigma": {"min": float(sig.min()), "mean": float(sig.mean()),
                      "max": float(sig.max())},
        },
        "tokens": tokens,
    }


def cmd_fixtures(args) -> int:
    os.makedirs(args.out, exist_ok=True)
    model = SgtModel.from_dir(DEMO)
    S = load_inputs(PROMPT, model.vocab_size).shape[1]
    torch.manual_seed(SEED)
    draws = torch.randn(args.draws, S, model.hidden_size)
    for d in range(args.draws):
        draws[d] *= SCALES[d % len(SCALES)]
    path = os.path.join(args.out, "noise_draws.safetensors")
    save_file({"noise": draws.contiguous()}, path)
    result = audit(DEMO, PROMPT, draws)
    with open(os.path.join(args.out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    o = result["overall"]
    print(f"{path}: {args.draws} draws; recovery L2 {o['recovery_l2']:.4f}, cosine "
          f"{o['recovery_cosine']:.4f}, mean rank {o['mean_rank_l2']:.3f}; smallest relative "
          f"gap {result['min_relative_gap']:.3g}")
    return 0


def check_plot(path: str, report: dict) -> list:
    """--plot's PNG read with zlib (chunk CRCs, Adler-32): red cells exactly where rank is 0."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return ["plot: no PNG signature"]
    pos, chunks = 8, {}
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 4:pos + 8 + n]
        if zlib.crc32(body) != struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]:
            return [f"plot: bad CRC in {kind!r}"]
        chunks[kind] = data[pos + 8:pos + 8 + n]
        pos += 12 + n
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [t for t in report["tokens"] if t["protected"]]
    cell = 8
    if (width, height) != (report["draws"] * cell, len(rows) * cell):
        return [f"plot: {width} x {height} pixels for {len(rows)} tokens x {report['draws']} draws"]
    errors = []
    for i, t in enumerate(rows):
        for d, rank in enumerate(t["rank_l2"]):
            y, x = i * cell, d * cell
            pixel = raw[y * (width * 3 + 1) + 1 + x * 3:][:3]
            if (tuple(pixel) == (200, 30, 30)) != (rank == 0):
                errors.append(f"plot: token {i} draw {d}: pixel {tuple(pixel)} for rank {rank}")
    return errors


def cmd_run(args) -> int:
    draws_path = os.path.join(args.data, "noise_draws.safetensors")
    draws = load_file(draws_path)["noise"]
    ours = audit(DEMO, PROMPT, draws)
    with tempfile.TemporaryDirectory() as tmp:
        plot = os.path.join(tmp, "heat.png")
        proc = subprocess.run([args.sgt, "audit", DEMO, "--input", PROMPT, "--noise-draws",
                               draws_path, "--json-only", "--plot", plot],
                              capture_output=True, text=True, check=True)
        errors = check_plot(plot, json.loads(proc.stdout))
    theirs = json.loads(proc.stdout)
    if theirs["draws"] != ours["draws"]:
        errors.append(f"draws {theirs['draws']} != {ours['draws']}")
    for s, (a, b) in enumerate(zip(theirs["tokens"], ours["tokens"])):
        if a["id"] != b["id"] or a["protected"] != b["protected"]:
            errors.append(f"token {s}: id/protected differ")
            continue
        if not b["protected"]:
            continue
        for key in ("nearest_l2", "nearest_cosine", "rank_l2", "recovery_l2",
                    "recovery_cosine", "mean_rank_l2"):
            if a[key] != b[key]:
                errors.append(f"token {s}: {key} {a[key]} != {b[key]}")
        if abs(a["mean_cosine"] - b["mean_cosine"]) > 1e-4:
            errors.append(f"token {s}: mean_cosine {a['mean_cosine']} != {b['mean_cosine']}")
    for key in ("protected_tokens", "recovery_l2", "recovery_cosine", "mean_rank_l2"):
        if theirs["overall"][key] != ours["overall"][key]:
            errors.append(f"overall {key} {theirs['overall'][key]} != {ours['overall'][key]}")
    for key in ("min", "mean", "max"):
        a, b = theirs["overall"]["sigma"][key], ours["overall"]["sigma"][key]
        if abs(a - b) > 1e-4 * max(1.0, abs(b)):
            errors.append(f"sigma {key} {a} != {b}")
    for e in errors:
        print("DIFF", e)
    o = ours["overall"]
    print(f"{len(theirs['tokens'])} tokens, {ours['draws']} draws: recovery L2 "
          f"{o['recovery_l2']:.4f}, cosine {o['recovery_cosine']:.4f}; smallest relative gap "
          f"{ours['min_relative_gap']:.3g}; {'OK' if not errors else f'{len(errors)} differences'}")
    return 1 if errors else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "audit"))
    f.add_argument("--draws", type=int, default=4)
    r = sub.add_parser("run")
    r.add_argument("sgt")
    r.add_argument("--data", default=os.path.join(ROOT, "tests", "data", "audit"))
    args = p.parse_args(argv)
    return cmd_fixtures(args) if args.command == "fixtures" else cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
