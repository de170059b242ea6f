#!/usr/bin/env python3
"""Output formats of `sgt transform` (docs/output_formats.md) against the real readers.

  check_outputs.py fixtures [--out DIR]
      Writes tests/data/outputs/: what torch itself writes, so the C++ tests compare bytes
      without Python.
        values.safetensors   F32 input tensors, one per case (awkward sizes; bf16 and f16
                             rounding ties and their neighbours; -0.0, +-inf; f32 and f16
                             subnormals; values beyond f16's range and near bf16's overflow;
                             random normals). Case `nan` holds NaNs and is saved as f32 and f16
                             only (torch's bf16 NaN bits depend on its CPU kernel).
        <case>_<dtype>.pt    torch.save(values[case].to(dtype), "<case>_<dtype>.pt") for dtype
                             f32, bf16, f16: the archive name is the file's base name, as for
                             `sgt transform --format torch --output <case>_<dtype>.pt`.
        list_<dtype>.pt      torch.save of a list of three tensors (2 x 5, 1 x 5, 0 x 5).
        list40_bf16.pt       torch.save of a list of 40 tensors (the pickle memo passes 256).
        payload_<dtype>.pt   torch.save(values["normal"].to(dtype), io.BytesIO()) (archive name
                             "archive"), and payload_<dtype>.b64: Python's base64 of it, what a
                             vllm-completions body carries.
      Run with a torch that has the x86 AVX2/AVX-512 kernels (any x86-64 Linux wheel).

  check_outputs.py run SGT
      Runs the built `sgt` binary on the demo model (B = 1, examples/prompt.json) and on
      tests/data/e2e/llama_mha (B = 2, left and right padding, injected noise) in every format
      and dtype, then reads every output with the real readers: safetensors, torch.load(
      weights_only=True, map_location="cpu"), and vLLM's own decode of prompt_embeds
      (vllm.renderers.embed_utils.safe_load_prompt_embeds: base64 validate=True, torch.load,
      hidden-size check). Every tensor must equal the f32 safetensors output rounded by torch
      (bit for bit), padding rows removed; the .pt files and payloads are also compared with
      torch.save's bytes for the same tensors. Exit status 1 on any difference.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
INT_VIEW = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def f32_from_bits(bits) -> torch.Tensor:
    return torch.from_numpy(np.array(bits, dtype=np.uint32).view(np.float32).copy())


def fixture_values() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(10)
    ldexp = np.ldexp
    ties = [
        0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001,  # bf16: tie to even (down / up), neighbours
        0xBF808000, 0xBF818000, 0x7F7F8000, 0x7F7FFFFF,  # negative ties; the last two overflow bf16
        0x3F801000, 0x3F803000, 0x3F800FFF, 0x3F801001,  # f16: ties at 1 + 2^-11 and 1 + 3 * 2^-11
        0x00000001, 0x00400000, 0x807FFFFF, 0x00008000,  # f32 subnormals (bf16 keeps them)
    ]
    special = [0.0, -0.0, float("inf"), float("-inf"), 65504.0, 65519.0, 65520.0, -1e5,
               1e-5, ldexp(1.0, -24), ldexp(1.0, -25), ldexp(3.0, -25), ldexp(1.5, -25),
               -ldexp(1.0, -14), 3.0e38, -1e-40, 1.0 / 3.0, -2.5]
    return {
        # 3 x 5 and 7 x 3 are deliberately not multiples of any vector width.
        "normal": torch.randn(3, 5, generator=g),
        "ties": f32_from_bits(ties).reshape(4, 4),
        "special": torch.tensor(special, dtype=torch.float32).reshape(2, 9),
        "wide": (torch.randn(7, 3, generator=g) * 1e3),
        "row": torch.randn(1, 13, generator=g),
        "nan": f32_from_bits([0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0x3F800000,
                              0xFF812345]).reshape(2, 3),
    }


def cmd_fixtures(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith((".pt", ".b64", ".safetensors")):
            os.remove(os.path.join(out, f))
    values = fixture_values()
    save_file({k: v.contiguous() for k, v in values.items()}, os.path.join(out, "values.safetensors"))
    for case, v in values.items():
        for name, dt in DTYPES.items():
            if case == "nan" and dt == torch.bfloat16:
                continue
            torch.save(v.to(dt), os.path.join(out, f"{case}_{name}.pt"))
    g = torch.Generator().manual_seed(11)
    base = torch.randn(3, 5, generator=g)
    save_file({"list_0": base[:2].contiguous(), "list_1": base[2:].contiguous()},
              os.path.join(out, "list_values.safetensors"))
    for name, dt in DTYPES.items():
        # clone: separate storages (f32 views of one tensor would share theirs)
        torch.save([base[:2].to(dt).clone(), base[2:].to(dt).clone(), torch.zeros(0, 5, dtype=dt)],
                   os.path.join(out, f"list_{name}.pt"))
    # 40 (1, 2) tensors valued k and -k / 8.
    torch.save([torch.tensor([[k, -k / 8]], dtype=torch.bfloat16) for k in range(40)],
               os.path.join(out, "list40_bf16.pt"))
    for name, dt in DTYPES.items():
        buf = io.BytesIO()
        torch.save(values["normal"].to(dt), buf)
        with open(os.path.join(out, f"payload_{name}.pt"), "wb") as f:
            f.write(buf.getvalue())
        with open(os.path.join(out, f"payload_{name}.b64"), "w") as f:
            f.write(base64.b64encode(buf.getvalue()).decode("ascii"))
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"wrote {len(os.listdir(out))} files, {total} bytes, to {out} "
          f"(torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()})")


# ------------------------------------------------------------------------------------------------
# run


class _ModelConfig:
    """What vLLM's safe_load_prompt_embeds reads of its ModelConfig."""

    def __init__(self, hidden: int, dtype: torch.dtype):
        self.enable_prompt_embeds = True
        self.dtype = dtype
        self._hidden = hidden

    def get_hidden_size(self) -> int:
        return self._hidden


def bits_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.contiguous().view(INT_VIEW[a.dtype]), b.contiguous().view(INT_VIEW[b.dtype]))


def torch_save_bytes(obj, name: str | None) -> bytes:
    if name is None:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, name)
        torch.save(obj, path)
        with open(path, "rb") as f:
            return f.read()


def cmd_run(sgt: str) -> int:
    from vllm.renderers.embed_utils import safe_load_prompt_embeds

    cases = [
        ("demo", os.path.join(REPO, "examples/models/demo"), os.path.join(REPO, "examples/prompt.json"),
         ["--noise", os.path.join(REPO, "examples/prompt_noise.safetensors")]),
        ("llama_mha", os.path.join(REPO, "tests/data/e2e/llama_mha"),
         os.path.join(REPO, "tests/data/e2e/llama_mha/input.json"),
         ["--noise", os.path.join(REPO, "tests/data/e2e/llama_mha/noise.safetensors")]),
    ]
    failures = 0
    checks = 0
    identical = 0

    def check(ok: bool, what: str) -> None:
        nonlocal failures, checks
        checks += 1
        if not ok:
            failures += 1
            print("FAIL:", what)

    with tempfile.TemporaryDirectory() as work:
        for case, model, inp, extra in cases:
            run = lambda out, *args: subprocess.run(  # noqa: E731
                [sgt, "transform", model, "--input", inp, "--output", out, *extra, *args],
                check=True, capture_output=True)
            ref_path = os.path.join(work, f"{case}_ref.safetensors")
            run(ref_path)
            ref = load_file(ref_path)["transformed"]  # f32 [B, S, H]
            with open(inp) as f:
                request = json.load(f)
            B, S, H = ref.shape
            mask = request.get("attention_mask")
            if mask is None:
                mask = [[1] * S] * B
            elif not isinstance(mask[0], list):
                mask = [mask]
            mask = torch.tensor([[int(bool(m)) for m in row] for row in mask], dtype=torch.bool)
            sequences = [ref[b][mask[b]] for b in range(B)]
            check(not torch.isnan(ref).any().item(), f"{case}: NaN in the output")
            for dname, dt in DTYPES.items():
                want = [s.to(dt) for s in sequences]
                # safetensors in dtype
                out = os.path.join(work, f"{case}_{dname}.safetensors")
                run(out, "--output-dtype", dname)
                got = load_file(out)
                check(list(got) == ["transformed"], f"{case} {dname}: safetensors names {list(got)}")
                check(bits_equal(got["transformed"], ref.to(dt)), f"{case} {dname}: safetensors values")
                # dump-intermediates in dtype: the same names, each rounded by torch
                out = os.path.join(work, f"{case}_{dname}_dump.safetensors")
                run(out, "--output-dtype", dname, "--dump-intermediates")
                got = load_file(out)
                full = load_file(os.path.join(work, f"{case}_ref_dump.safetensors")) if dname != "f32" else None
                if dname == "f32":
                    os.replace(out, os.path.join(work, f"{case}_ref_dump.safetensors"))
                    check(sorted(got) == ["embeddings", "mean", "noise", "std", "transformed"],
                          f"{case}: dump names {sorted(got)}")
                else:
                    for k in full:
                        check(bits_equal(got[k], full[k].to(dt)), f"{case} {dname}: dump tensor {k}")
                # torch
                out = os.path.join(work, f"{case}_{dname}.pt")
                run(out, "--format", "torch", "--output-dtype", dname)
                loaded = torch.load(out, weights_only=True, map_location="cpu")
                if B == 1:
                    check(isinstance(loaded, torch.Tensor) and bits_equal(loaded, want[0]),
                          f"{case} {dname}: torch tensor")
                    expect_bytes = torch_save_bytes(want[0], os.path.basename(out))
                else:
                    check(isinstance(loaded, list) and len(loaded) == B and
                          all(bits_equal(a, b) for a, b in zip(loaded, want)),
                          f"{case} {dname}: torch list")
                    expect_bytes = torch_save_bytes(want, os.path.basename(out))
                with open(out, "rb") as f:
                    same = f.read() == expect_bytes
                identical += same
                check(same, f"{case} {dname}: .pt bytes differ from torch.save's")
                # vllm-completions
                out = os.path.join(work, f"{case}_{dname}.json")
                run(out, "--format", "vllm-completions", "--output-dtype", dname,
                    "--model-name", "served-model", "--max-tokens", "5")
                with open(out) as f:
                    body = json.load(f)
                check(list(body) == ["model", "prompt_embeds", "max_tokens"] and
                      body["model"] == "served-model" and body["max_tokens"] == 5,
                      f"{case} {dname}: body keys {list(body)}")
                embeds = body["prompt_embeds"]
                embeds = [embeds] if B == 1 else embeds
                check(isinstance(embeds, list) and len(embeds) == B, f"{case} {dname}: prompt_embeds count")
                for b, s in enumerate(embeds):
                    t = safe_load_prompt_embeds(_ModelConfig(H, dt), s.encode())
                    check(bits_equal(t, want[b]), f"{case} {dname}: vLLM decode of sequence {b}")
                    raw = base64.b64decode(s, validate=True)
                    t2 = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
                    check(bits_equal(t2, want[b]), f"{case} {dname}: torch.load of sequence {b}")
                    same = raw == torch_save_bytes(want[b], None)
                    identical += same
                    check(same, f"{case} {dname}: payload {b} bytes differ from torch.save's")
                # a bf16 payload cast by vLLM to an f32 server model equals torch's cast
                if dname == "bf16":
                    t = safe_load_prompt_embeds(_ModelConfig(H, torch.float32), embeds[0].encode())
                    check(bits_equal(t, want[0].float()), f"{case}: vLLM cast bf16 -> f32")
            print(f"{case}: B={B} S={S} H={H}, real tokens per sequence "
                  f"{[int(m.sum()) for m in mask]}: checked")
    print(f"{checks} checks, {failures} failures; {identical} files/payloads byte-identical to "
          f"torch.save (torch {torch.__version__})")
    return 1 if failures else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures")
    f.add_argument("--out", default=os.path.join(REPO, "tests/data/outputs"))
    r = sub.add_parser("run")
    r.add_argument("sgt", help="the built sgt binary")
    a = p.parse_args()
    if a.cmd == "fixtures":
        cmd_fixtures(a.out)
        return 0
    return cmd_run(os.path.abspath(a.sgt))


if __name__ == "__main__":
    sys.exit(main())
