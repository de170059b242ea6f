#!/usr/bin/env python3
"""The transform side by side: sgt-cpp against PyTorch, ONNX Runtime, ExecuTorch and llama.cpp.

For each model directory (an sgt4t model, e.g. written by tools/make_random_model.py) it builds
the same transform

    out = x + MeanEstimator(x) + StdEstimator(x) * eps,   x = E[input_ids], every token protected

in every peer, checks each peer's `transformed` against ours at the same injected eps (a peer that
disagrees is not timed: the reason is printed and recorded), then times all of them interleaved
(round-robin, one run of each system per round in a rotating order, after a warm-up) for each
sequence length S and thread count, and writes a Markdown report, a PNG plot and the raw JSON.

Systems (--systems):
  sgt            ours, Precision::Auto (bf16 weights -> Bf16), bench/compare/sgt_time_transform
  sgt-f32        ours, Precision::F32 (only meaningful for bf16 weights: f32 activations)
  sgt-bf16       ours, Precision::Bf16 (not in the default list: sgt is that on bf16 weights)
  torch-f32      PyTorch eager, attention "sdpa", the module in f32
  torch-bf16     the same module cast to bf16 (oneDNN bf16 kernels where the CPU has them)
  ort            ONNX Runtime CPU, torch.onnx.export(dynamo=True), opset 23, dynamic length, f32
  et             ExecuTorch: torch.export -> XNNPACK partitioner -> .pte, pybindings runtime
  et-sdpa        the same with HF attention replaced by the wheel's custom op llama::custom_sdpa
  llamacpp-f32   llama.cpp's llama-bench on an equivalent 2-layer Llama GGUF (f32), compared per
  llamacpp-bf16  GFLOP/s: its time is scaled to our model's flop count (see flops_* below)

Everything heavy is imported lazily, so `--systems sgt` needs only numpy and safetensors.
Run `compare.py --help`; bench/compare/README.md has the venv recipe and the llama.cpp build.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

ALL_SYSTEMS = ["sgt", "sgt-f32", "torch-f32", "torch-bf16", "ort", "et", "et-sdpa",
               "llamacpp-f32", "llamacpp-bf16"]
# The precision class of each system: a peer is checked at its class's tolerance, and our time in
# a class is compared with the best peer of the same class.
F32_TOL, BF16_TOL = 1e-4, 5e-2


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# The model: config, flop counts, inputs
# ------------------------------------------------------------------------------------------------


def load_config(model_dir: Path) -> dict:
    return json.loads((model_dir / "config.json").read_text())


def weights_dtype(model_dir: Path) -> str:
    """'bf16' when every Linear weight of both estimators is stored BF16, else 'f32'."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    dtypes = set()
    for f in files:
        with safe_open(str(f), "np") as st:
            for name in st.keys():
                if name.endswith("proj.weight") or name.endswith("head.weight"):
                    dtypes.add(str(st.get_slice(name).get_dtype()))
    return "bf16" if dtypes == {"BF16"} else "f32"


def estimator_dims(spec: dict) -> dict:
    c = spec["config"]
    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or c["hidden_size"] // heads
    return dict(hidden=c["hidden_size"], heads=heads, kv_heads=c.get("num_key_value_heads", heads),
                head_dim=head_dim, inter=c["intermediate_size"], layers=c["num_hidden_layers"],
                head=spec.get("head") is not None, window=sliding_window(spec))


def sliding_window(spec: dict) -> int:
    """The window of a Gemma 2 estimator's local layers (0: none, or not Gemma 2). Its layers
    alternate local, global, ... from layer 0 (Gemma2Config's layer_types), which is all the flop
    count below needs."""
    c = spec["config"]
    return int(c.get("sliding_window") or 0) if spec["model_type"] == "gemma2" else 0


def layer_params(d: dict) -> int:
    H, D = d["hidden"], d["head_dim"]
    return 2 * H * d["heads"] * D + 2 * H * d["kv_heads"] * D + 3 * H * d["inter"]


def attention_flops(d: dict, S: int) -> float:
    # QK^T and PV, causal (half), per layer: as bench/bench_transform.cpp counts it. A local layer
    # (Gemma 2's even layers) counts the query-key pairs its window leaves.
    full = S * S / 2
    local = sum(min(i + 1, d["window"]) for i in range(S)) if d.get("window") else full
    pairs = sum(local if i % 2 == 0 else full for i in range(d["layers"]))
    return 4.0 * pairs * d["head_dim"] * d["heads"]


def flops_sgt(config: dict, S: int) -> float:
    """Two flops per weight and token for every projection, MLP and head, plus causal attention."""
    total = 0.0
    for key in ("mean_estimator", "std_estimator"):
        d = estimator_dims(config[key])
        params = d["layers"] * layer_params(d) + (d["hidden"] ** 2 if d["head"] else 0)
        total += 2.0 * params * S + attention_flops(d, S)
    return total


def flops_llama(d: dict, layers: int, S: int) -> float:
    """The flops llama-bench's prompt test really makes on the llama.cpp model: `layers` decoder
    layers shaped like the estimator, except that llama.cpp computes the last layer's MLP (and
    everything after its attention output) only for the tokens whose logits are asked for --
    llama-bench asks for the last one (llama_batch_get_one: no logits array, "only the last token
    is an output"; src/models/llama.cpp drops the other rows after the last layer's attention).
    Counting that MLP for all S tokens would credit llama.cpp with flops it never makes (x1.7 on
    the 2-layer 1B-shaped model). Its tiny vocab's output projection and the embedding lookup are
    left out: they are below 0.1%."""
    H, D = d["hidden"], d["head_dim"]
    attn_params = 2 * H * d["heads"] * D + 2 * H * d["kv_heads"] * D
    mlp_params = 3 * H * d["inter"]
    dd = dict(d, layers=layers)
    return (2.0 * S * ((layers - 1) * layer_params(d) + attn_params) + 2.0 * mlp_params
            + attention_flops(dd, S))


def input_ids(S: int, vocab: int) -> np.ndarray:
    """The fixed pseudo-random ids sgt_time_transform uses: (i * 7919 + 13) mod vocab."""
    return ((np.arange(S, dtype=np.int64) * 7919 + 13) % vocab).reshape(1, S)


def make_eps(S: int, H: int, seed: int = 1234) -> np.ndarray:
    return np.random.default_rng(seed + S).standard_normal((1, S, H), dtype=np.float32)


def max_rel_error(a: np.ndarray, ref: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if a.shape != ref.shape:
        return float("inf")
    if not np.isfinite(a).all():
        return float("inf")
    return float(np.max(np.abs(a - ref)) / max(np.max(np.abs(ref)), 1e-30))


# ------------------------------------------------------------------------------------------------
# Machine
# ------------------------------------------------------------------------------------------------


def cpu_info() -> dict:
    info = {"machine": platform.machine(), "cores_online": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    first = text.split("\n\n")[0]
    fields = {}
    for line in first.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip()] = v.strip()
    flags = set(fields.get("flags", "").split())
    info.update({
        "model_name": fields.get("model name"),
        "family": fields.get("cpu family"),
        "model": fields.get("model"),
        "flags": {f: f in flags for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")},
    })
    return info


def fma_peaks(binary: Path) -> dict:
    """bench_fma_peak's counters (GFLOP/s), as it reports them: whatever counters it has."""
    if not binary.exists():
        return {"error": f"{binary.name} not built (cmake --preset bench && cmake --build "
                         f"--preset bench --target bench_fma_peak)"}
    r = subprocess.run([str(binary), "--benchmark_format=json"], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": r.stderr[-2000:]}
    raw = json.loads(r.stdout)
    out = {}
    for b in raw.get("benchmarks", []):
        counters = {k: v for k, v in b.items()
                    if isinstance(v, (int, float)) and k not in (
                        "iterations", "real_time", "cpu_time", "repetitions",
                        "repetition_index", "threads", "family_index",
                        "per_family_instance_index")}
        if "label" in b:  # which instruction, e.g. "avx512bw, 16 chains, vdpbf16ps"
            counters["label"] = b["label"]
        out[b["name"]] = counters
    return {"benchmarks": out, "context": raw.get("context", {})}


class ForeignLoad:
    """CPU time spent by processes other than this one and its waited-for children while a block
    of timings ran (from /proc/stat), as a share of the machine: a shared or busy machine shows
    here, and its timings (above all the 2-thread ones) should not be trusted."""

    def __init__(self):
        self.t0, self.cpu0, self.own0 = time.perf_counter(), self._busy(), self._own()

    @staticmethod
    def _busy():
        try:
            f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in f[:8])
        hz = os.sysconf("SC_CLK_TCK")
        return (user + nice + system + irq + softirq) / hz, steal / hz

    @staticmethod
    def _own():
        import resource

        a = resource.getrusage(resource.RUSAGE_SELF)
        b = resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    def share(self) -> dict:
        """Call after the block's child processes have been waited for."""
        wall = time.perf_counter() - self.t0
        cpu1 = self._busy()
        if self.cpu0 is None or cpu1 is None or wall <= 0:
            return {}
        cap = wall * (os.cpu_count() or 1)
        foreign = (cpu1[0] - self.cpu0[0]) - (self._own() - self.own0)
        return {"foreign": max(foreign, 0.0) / cap, "steal": (cpu1[1] - self.cpu0[1]) / cap}


# ------------------------------------------------------------------------------------------------
# PyTorch module of the transform (shared by torch, ONNX and ExecuTorch)
# ------------------------------------------------------------------------------------------------

_CUSTOM_SDPA = "sgt_et_custom_sdpa"


def register_custom_sdpa() -> None:
    """HF attention through ExecuTorch's llama::custom_sdpa (extension/llm/custom_ops): a flash
    attention with GQA by index mapping and causal block skipping, [B, S, H, D] layout. Must run
    before the module is built (transformers checks the name) and before a program using the op
    is loaded (importing custom_ops loads the library with the op's kernel)."""
    import torch
    import importlib

    # Importing it registers the op (and loads the library holding its kernel).
    importlib.import_module("executorch.extension.llm.custom_ops.custom_ops")
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
        # HF hands [B, H, S, D]; the op takes [B, S, H, D] and returns that layout, which is what
        # HF expects back. No padding here, so the mask is the causal one: is_causal.
        q = query.transpose(1, 2)
        k = key.transpose(1, 2)
        v = value.transpose(1, 2)
        out = torch.ops.llama.custom_sdpa(q, k, v, 0, None, 0.0, True, scaling)
        return out, None

    AttentionInterface.register(_CUSTOM_SDPA, attention)
    AttentionMaskInterface.register(_CUSTOM_SDPA, sdpa_mask)


# Families whose transformers attention has no "sdpa" path (Gemma 2: sdpa cannot soft-cap the
# scores): their modules keep "eager", the plain formula.
EAGER_ONLY = ("gemma2",)


def build_module(model_dir: Path, attn: str = "sdpa"):
    import torch
    from torch import nn
    from sgt_reference.model import SgtModel

    model = SgtModel.from_dir(str(model_dir))
    if any(model.config[e]["model_type"] in EAGER_ONLY for e in ("mean_estimator",
                                                                 "std_estimator")):
        if attn != "sdpa":
            raise RuntimeError(f"attention {attn} cannot soft-cap the scores of this model")
        attn = "eager"
    for est in (model.mean_estimator, model.std_estimator):
        trunk = est.trunk
        if hasattr(trunk, "set_attn_implementation"):
            trunk.set_attn_implementation(attn)
        else:
            trunk.config._attn_implementation = attn
        if trunk.config._attn_implementation != attn:
            raise RuntimeError(f"attention is {trunk.config._attn_implementation}, not {attn}")

    class Transform(nn.Module):
        """ids [1, S], eps [1, S, H] -> transformed [1, S, H], every token protected."""

        def __init__(self):
            super().__init__()
            self.embed = model.embed_tokens
            self.mean = model.mean_estimator
            self.std = model.std_estimator
            self.lo, self.hi = model.value_range

        def forward(self, ids, eps):
            x = nn.functional.embedding(ids, self.embed)
            # attention_mask None: no padding, the trunk builds the causal mask itself.
            mu = self.mean(x, None)
            sigma = self.std(x, None)
            out = x + mu + sigma * eps
            if self.lo is not None or self.hi is not None:
                out = torch.clamp(out, min=self.lo, max=self.hi)
            return out

    return Transform().eval()


def export_args(S: int, vocab: int, H: int):
    import torch

    return (torch.from_numpy(input_ids(S, vocab)), torch.from_numpy(make_eps(S, H)))


def dynamic_shapes(max_seq: int):
    from torch.export import Dim

    seq = Dim("seq", min=2, max=max_seq)
    return {"ids": {1: seq}, "eps": {1: seq}}


# ------------------------------------------------------------------------------------------------
# Systems: each prepares once per model, then per (threads, S) gives a callable for one run
# ------------------------------------------------------------------------------------------------


class System:
    name = "?"
    klass = "f32"  # precision class: f32 activations or bf16
    checked = True  # output compared with ours before timing
    major_faults = None  # page faults read from disk by the last run, where the system reports it

    def set_threads(self, n: int) -> None:
        pass

    def release(self) -> None:
        """Drops what holds threads of the previous thread count (before any set_threads)."""

    def start(self, S: int, eps: np.ndarray) -> None:
        """Prepares a run at length S with this eps (kept for the check)."""

    def run(self) -> float:
        """One run; returns its milliseconds."""
        raise NotImplementedError

    def output(self) -> np.ndarray | None:
        return None

    def stop(self) -> None:
        pass


class Sgt(System):
    checked = False  # the reference the peers are checked against

    def __init__(self, binary: Path, model_dir: Path, precision: str, wdtype: str, tmp: Path):
        self.binary, self.model_dir, self.precision, self.tmp = binary, model_dir, precision, tmp
        self.name = "sgt" if precision == "auto" else f"sgt-{precision}"
        resolved = wdtype if precision == "auto" else precision
        self.klass = resolved
        self.threads, self.proc = 1, None

    def set_threads(self, n):
        self.threads = n

    def once(self, S: int, eps: np.ndarray, out: Path) -> np.ndarray:
        """A single run writing `transformed` (for the check)."""
        from safetensors.numpy import load_file, save_file

        eps_path = self.tmp / f"eps_{S}.safetensors"
        save_file({"noise": eps}, str(eps_path))
        cmd = [str(self.binary), str(self.model_dir), "--seq", str(S), "--threads",
               str(self.threads), "--precision", self.precision, "--eps", str(eps_path),
               "--output", str(out), "--warmup", "0", "--repeat", "1"]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return load_file(str(out))["transformed"]

    def start(self, S, eps):
        from safetensors.numpy import save_file

        eps_path = self.tmp / f"eps_{S}.safetensors"
        save_file({"noise": eps}, str(eps_path))
        cmd = [str(self.binary), str(self.model_dir), "--seq", str(S), "--threads",
               str(self.threads), "--precision", self.precision, "--eps", str(eps_path),
               "--warmup", "0", "--serve"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     bufsize=1)
        line = self.proc.stdout.readline()
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError(f"{self.name}: sgt_time_transform did not start ({cmd})")

    def run(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        self.major_faults = int(reply.get("major_faults", 0))
        return float(reply["ms"])

    def stop(self):
        if self.proc:
            self.proc.stdin.close()
            self.proc.stdout.read()
            self.proc.wait()
            self.proc = None


class TorchEager(System):
    def __init__(self, module, dtype: str, vocab: int):
        import torch

        self.klass = dtype
        self.name = f"torch-{dtype}"
        self.dt = torch.bfloat16 if dtype == "bf16" else torch.float32
        self.module = module.to(self.dt) if dtype == "bf16" else module
        self.vocab = vocab

    def set_threads(self, n):
        import torch

        torch.set_num_threads(n)

    def start(self, S, eps):
        import torch

        self.ids = torch.from_numpy(input_ids(S, self.vocab))
        self.eps = torch.from_numpy(eps).to(self.dt)
        self.out = None

    def run(self):
        import torch

        with torch.inference_mode():
            t0 = time.perf_counter()
            self.out = self.module(self.ids, self.eps)
            return (time.perf_counter() - t0) * 1e3

    def output(self):
        return self.out.float().numpy()


class Ort(System):
    name = "ort"

    def __init__(self, module, onnx_path: Path, vocab: int, H: int, max_seq: int):
        import torch

        self.path, self.vocab = onnx_path, vocab
        if not onnx_path.exists():
            log(f"ort: exporting {onnx_path.name} (dynamo, opset 23)")
            prog = torch.onnx.export(module, export_args(32, vocab, H), dynamo=True,
                                     opset_version=23, dynamic_shapes=dynamic_shapes(max_seq),
                                     input_names=["ids", "eps"], output_names=["transformed"])
            prog.save(str(onnx_path))
        self.session = None

    def set_threads(self, n):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = None
        self.session = ort.InferenceSession(str(self.path), so,
                                            providers=["CPUExecutionProvider"])

    def start(self, S, eps):
        self.feed = {"ids": input_ids(S, self.vocab), "eps": eps}
        self.out = None

    def run(self):
        t0 = time.perf_counter()
        self.out = self.session.run(None, self.feed)[0]
        return (time.perf_counter() - t0) * 1e3

    def output(self):
        return self.out


class ExecuTorch(System):
    def __init__(self, module, pte_path: Path, vocab: int, H: int, max_seq: int, custom_sdpa: bool):
        import torch

        self.name = "et-sdpa" if custom_sdpa else "et"
        self.path, self.vocab = pte_path, vocab
        if not pte_path.exists():
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
                XnnpackPartitioner)
            from executorch.exir import to_edge_transform_and_lower

            log(f"{self.name}: torch.export -> XNNPACK -> {pte_path.name}")
            with torch.no_grad():
                ep = torch.export.export(module, export_args(32, vocab, H),
                                         dynamic_shapes=dynamic_shapes(max_seq), strict=False)
            prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
            pte_path.write_bytes(prog.to_executorch().buffer)
        self.program = None

    def release(self):
        self.program = None

    def set_threads(self, n):
        # The XNNPACK delegate takes the shared threadpool when the program is loaded: its size
        # must be set first, and the program loaded again after every change. The reset frees
        # the old pool, so every loaded program must be released first (release() of both et
        # systems runs before either's set_threads).
        import gc

        from executorch.extension.pybindings import portable_lib as rt

        self.program = None
        gc.collect()
        if rt._threadpool_get_thread_count() != n:
            rt._unsafe_reset_threadpool(n)
        got = rt._threadpool_get_thread_count()
        if got != n:
            raise RuntimeError(f"{self.name}: threadpool has {got} threads, asked {n}")
        self.program = rt._load_for_executorch(str(self.path))

    def start(self, S, eps):
        import torch

        self.inputs = (torch.from_numpy(input_ids(S, self.vocab)), torch.from_numpy(eps))
        self.out = None

    def run(self):
        t0 = time.perf_counter()
        self.out = self.program.forward(self.inputs)[0]
        return (time.perf_counter() - t0) * 1e3

    def output(self):
        return self.out.numpy()


class LlamaCpp(System):
    """llama-bench -p S -n 0 on a GGUF of a 2-layer Llama shaped like the estimator. llama.cpp
    computes another graph (no head, no noise, two layers of one model), so it is not checked by
    output; its time is scaled to our flop count: ms_equiv = flops_sgt / (its GFLOP/s)."""

    checked = False

    def __init__(self, bench: Path, gguf: Path, dtype: str, config: dict, layers: int):
        self.name, self.klass = f"llamacpp-{dtype}", dtype
        self.bench, self.gguf, self.config, self.layers = bench, gguf, config, layers
        self.dims = estimator_dims(config["mean_estimator"])
        self.threads = 1
        self.raw = []  # (S, threads, its own ms, its GFLOP/s)

    def set_threads(self, n):
        self.threads = n

    def start(self, S, eps):
        self.S = S

    def run(self):
        cmd = [str(self.bench), "-m", str(self.gguf), "-p", str(self.S), "-n", "0", "-r", "1",
               "-t", str(self.threads), "-ngl", "0", "-o", "json"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(cmd)} failed: {r.stderr[-1500:]}")
        res = json.loads(r.stdout)[0]
        ms = res["samples_ns"][0] / 1e6
        gflops = flops_llama(self.dims, self.layers, self.S) / (ms * 1e6)
        self.raw.append({"seq": self.S, "threads": self.threads, "ms": ms, "gflops": gflops})
        return flops_sgt(self.config, self.S) / (gflops * 1e6)


# ------------------------------------------------------------------------------------------------
# llama.cpp model: an HF LM of the estimator's family shaped like it (Llama or Gemma 2), converted
# with convert_hf_to_gguf.py
# ------------------------------------------------------------------------------------------------


def make_gguf(llama_cpp: Path, config: dict, layers: int, dtype: str, work: Path) -> Path:
    import hashlib

    # Keyed by the estimator's config, so one work directory can serve several models.
    spec = json.dumps(config["mean_estimator"]["config"], sort_keys=True)
    key = hashlib.sha256(spec.encode()).hexdigest()[:10]
    family = config["mean_estimator"]["model_type"]
    if family not in ("llama", "gemma2"):
        raise RuntimeError(f"no llama.cpp model for model_type {family} (llama and gemma2 are made)")
    out = work / f"{family}-{key}-{layers}l-{dtype}.gguf"
    if out.exists():
        return out
    hf_dir = work / f"hf-{family}-{key}-{layers}l"
    if not (hf_dir / "config.json").exists():
        import sentencepiece as spm
        import torch
        import transformers as tf
        from sgt_reference.config import build_hf_config

        hf_dir.mkdir(parents=True, exist_ok=True)
        # A tiny sentencepiece vocabulary: the converter needs a tokenizer, the benchmark does not.
        corpus = hf_dir / "corpus.txt"
        words = [f"w{i} x{i % 7} y{i % 13}" for i in range(3000)]
        corpus.write_text("\n".join(words) + "\n")
        spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(hf_dir / "tokenizer"),
                                       vocab_size=256, model_type="bpe", byte_fallback=False,
                                       minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=str(hf_dir / "tokenizer.model"))
        est = build_hf_config(family, config["mean_estimator"]["config"])
        config_cls, lm_cls = ((tf.LlamaConfig, tf.LlamaForCausalLM) if family == "llama" else
                              (tf.Gemma2Config, tf.Gemma2ForCausalLM))
        hf = config_cls(**{k: v for k, v in est.to_dict().items()
                           if k not in ("architectures", "_attn_implementation")})
        hf.num_hidden_layers = layers
        hf.vocab_size = sp.get_piece_size()
        hf.tie_word_embeddings = False
        hf.bos_token_id, hf.eos_token_id = sp.bos_id(), sp.eos_id()
        torch.manual_seed(0)
        if family == "gemma2":  # one entry per layer: the pattern of the layers it now has
            hf.layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention"
                              for i in range(layers)]
        model = lm_cls(hf).float()
        model.save_pretrained(str(hf_dir), safe_serialization=True)
    conv = llama_cpp / "convert_hf_to_gguf.py"
    env = dict(os.environ, PYTHONPATH=str(llama_cpp / "gguf-py"))
    r = subprocess.run([sys.executable, str(conv), str(hf_dir), "--outtype", dtype, "--outfile",
                        str(out)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"convert_hf_to_gguf.py failed:\n{r.stderr[-3000:]}")
    return out


# ------------------------------------------------------------------------------------------------
# One model: build, check, time
# ------------------------------------------------------------------------------------------------


def run_model(model_dir: Path, args, work: Path) -> dict:
    config = load_config(model_dir)
    H, vocab = config["hidden_size"], config["vocab_size"]
    wdtype = weights_dtype(model_dir)
    # The exported graphs' bound on S (ExecuTorch plans its memory for it); at least 64 so the
    # example length 32 they are traced with lies inside it.
    max_seq = max(max(args.seq), 64)
    mwork = work / model_dir.name
    mwork.mkdir(parents=True, exist_ok=True)
    report = {"model_dir": model_dir.name, "weights": wdtype, "hidden": H, "vocab": vocab,
              "estimator": estimator_dims(config["mean_estimator"]),
              "flops": {str(S): flops_sgt(config, S) for S in args.seq},
              "skipped": {}, "check": {}, "times": {}}
    log(f"== {model_dir} ({wdtype} weights)")

    systems: list[System] = []
    skipped = report["skipped"]

    def add(name, make):
        if name not in args.systems:
            return
        try:
            systems.append(make())
        except Exception as e:  # a peer that cannot be built is reported, not fatal
            msg = f"{type(e).__name__}: {str(e).strip()[:600]}"
            log(f"{name}: not run: {msg}")
            skipped[name] = msg

    add("sgt", lambda: Sgt(args.sgt_bin, model_dir, "auto", wdtype, mwork))
    add("sgt-f32", lambda: Sgt(args.sgt_bin, model_dir, "f32", wdtype, mwork))
    add("sgt-bf16", lambda: Sgt(args.sgt_bin, model_dir, "bf16", wdtype, mwork))
    want_torch = any(s in args.systems for s in ("torch-f32", "torch-bf16", "ort", "et", "et-sdpa"))
    if want_torch:
        import torch

        import gc

        torch.set_num_threads(os.cpu_count() or 1)  # building and exporting are not timed
        # The exports first, each module freed after its export, the eager modules last, so the
        # exports' transient copies of the weights (ExecuTorch's lowering of an 8B-shaped f32
        # model, 1.9 GB of weights, peaks at 10 GB) do not stack on the eager modules.
        add("ort", lambda: Ort(build_module(model_dir), mwork / f"transform-{max_seq}.onnx", vocab,
                               H, max_seq))
        gc.collect()
        add("et", lambda: ExecuTorch(build_module(model_dir), mwork / f"transform-{max_seq}.pte",
                                     vocab, H, max_seq, False))
        gc.collect()
        add("et-sdpa", lambda: ExecuTorch(register_custom_sdpa() or
                                          build_module(model_dir, _CUSTOM_SDPA),
                                          mwork / f"transform-{max_seq}-sdpa.pte", vocab, H,
                                          max_seq, True))
        gc.collect()
        add("torch-f32", lambda: TorchEager(build_module(model_dir), "f32", vocab))
        add("torch-bf16", lambda: TorchEager(build_module(model_dir), "bf16", vocab))
    for dt in ("f32", "bf16"):
        name = f"llamacpp-{dt}"
        if name in args.systems:
            def make(dt=dt):
                if not args.llama_cpp:
                    raise RuntimeError("no --llama-cpp DIR (see README: building llama-bench)")
                bench = args.llama_cpp / "build" / "bin" / "llama-bench"
                if not bench.exists():
                    raise RuntimeError(f"{bench} not built")
                gguf = make_gguf(args.llama_cpp, config, args.llama_layers, dt, work / "gguf")
                return LlamaCpp(bench, gguf, dt, config, args.llama_layers)
            add(name, make)

    order = ALL_SYSTEMS + ["sgt-bf16"]
    systems.sort(key=lambda s: order.index(s.name))  # the reports' row order
    # --- check every peer against ours (f32 activations: the truth), same eps ---------------
    S0 = min(args.seq)
    eps0 = make_eps(S0, H)
    ref = Sgt(args.sgt_bin, model_dir, "f32", wdtype, mwork).once(S0, eps0, mwork / "ref.st")
    timed = []
    for s in systems:
        if not s.checked and not isinstance(s, Sgt):
            timed.append(s)
            report["check"][s.name] = "not compared (other graph; timed per GFLOP/s)"
            continue
        try:
            for other in systems:
                other.release()
            s.set_threads(1)
            if isinstance(s, Sgt):
                got = s.once(S0, eps0, mwork / f"{s.name}.st")
            else:
                s.start(S0, eps0)
                s.run()
                got = s.output()
                s.stop()
            err = max_rel_error(got, ref)
        except Exception as e:
            err, why = float("inf"), f"{type(e).__name__}: {str(e)[:400]}"
        else:
            why = ""
        tol = BF16_TOL if s.klass == "bf16" else F32_TOL
        report["check"][s.name] = {"max_rel_error": err, "tolerance": tol, "seq": S0}
        if err <= tol:
            log(f"check {s.name:14s} max|diff|/max|ref| = {err:.2e} <= {tol:.0e}: ok")
            timed.append(s)
        else:
            msg = (f"failed at S={S0}: {why}" if why else
                   f"disagrees with sgt f32 at S={S0}: max|diff|/max|ref| = {err:.3e} > {tol:.0e}")
            log(f"check {s.name}: NOT TIMED: {msg}")
            skipped[s.name] = msg

    reference = Sgt(args.sgt_bin, model_dir, "f32", wdtype, mwork)
    reference.set_threads(max(args.threads))
    # --- timing: threads outer (ExecuTorch reloads), S, warm-up, round-robin rounds ---------
    times = report["times"]
    for n in args.threads:
        for s in timed:
            s.release()
        for s in list(timed):
            try:
                s.set_threads(n)
            except Exception as e:
                log(f"{s.name}: cannot set {n} threads: {e}")
                skipped[s.name] = f"threads {n}: {e}"
                timed.remove(s)
        for S in args.seq:
            eps = make_eps(S, H)
            # The check again at this length: each peer's first warm-up run against ours (f32).
            ref_S = None
            if any(s.checked for s in timed):
                ref_S = reference.once(S, eps, mwork / f"ref_{S}.st")
            load = ForeignLoad()
            live = []
            for s in timed:
                try:
                    s.start(S, eps)
                    s.run()
                    if s.checked:
                        err = max_rel_error(s.output(), ref_S)
                        tol = BF16_TOL if s.klass == "bf16" else F32_TOL
                        checks = report["check"][s.name].setdefault("by_seq", {})
                        checks.setdefault(str(S), {})[str(n)] = err
                        if not err <= tol:
                            raise RuntimeError(f"disagrees with sgt f32: max|diff|/max|ref| = "
                                               f"{err:.3e} > {tol:.0e}; not timed")
                    for _ in range(args.warmup - 1):
                        s.run()
                    live.append(s)
                except Exception as e:
                    log(f"{s.name} S={S} T={n}: {e}")
                    skipped[f"{s.name} S={S} {n}T"] = str(e)[:400]
                    s.stop()
            samples = {s.name: [] for s in live}
            faults = {}  # major page faults in timed runs: weights read back from disk
            for r in range(args.repeat):
                # Rotated each round, so no system always runs right after the same other one.
                k = r % len(live) if live else 0
                for s in live[k:] + live[:k]:
                    samples[s.name].append(s.run())
                    if s.major_faults:
                        faults.setdefault(s.name, 0)
                        faults[s.name] += s.major_faults
                    time.sleep(args.pause)  # let the last system's spinning workers settle
            for s in live:
                s.stop()
                ms = samples[s.name]
                times.setdefault(s.name, {}).setdefault(str(n), {})[str(S)] = {
                    "median_ms": statistics.median(ms), "min_ms": min(ms), "ms": ms}
            share = load.share()
            report.setdefault("foreign_load", {}).setdefault(str(n), {})[str(S)] = share
            line = "  ".join(f"{k}={statistics.median(v):.2f}" for k, v in samples.items())
            log(f"S={S} T={n}: median ms: {line}")
            if faults:
                report.setdefault("major_faults", {}).setdefault(str(n), {})[str(S)] = faults
                log(f"S={S} T={n}: WARNING: timed runs read weights back from disk (major page "
                    f"faults: {faults}): memory is short for every system at once")
            # Others may use the cores we leave idle (though they still share caches and memory).
            spare = max((os.cpu_count() or 1) - n, 0) / (os.cpu_count() or 1)
            if share.get("foreign", 0) > spare + 0.05 or share.get("steal", 0) > 0.05:
                log(f"S={S} T={n}: WARNING: other processes used {share['foreign']:.0%} of the "
                    f"machine, steal {share['steal']:.0%}: these timings are not trustworthy")
    report["llamacpp_raw"] = {s.name: s.raw for s in timed if isinstance(s, LlamaCpp)}
    report["classes"] = {s.name: s.klass for s in systems}
    for s in systems:
        s.stop()
    return report


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def ratios(rep: dict, n: str, S: str) -> dict:
    """ours / best peer of the same precision class (above 1: we are slower)."""
    out = {}
    cls, times = rep["classes"], rep["times"]
    for ours in ("sgt", "sgt-f32", "sgt-bf16"):
        if ours not in times or S not in times[ours].get(n, {}):
            continue
        peers = [(times[p][n][S]["median_ms"], p) for p in times
                 if not p.startswith("sgt") and cls.get(p) == cls[ours]
                 and S in times[p].get(n, {})]
        if peers:
            best_ms, best = min(peers)
            out[ours] = (times[ours][n][S]["median_ms"] / best_ms, best)
    return out


def write_markdown(results: dict, path: Path, note: str) -> None:
    L = ["# Side-by-side benchmark (bench/compare/compare.py)", ""]
    if note:
        L += [f"**{note}**", ""]
    m = results["machine"]
    flags = ", ".join(k for k, v in m.get("flags", {}).items() if v)
    L += [f"Machine: {m.get('model_name')} (family {m.get('family')}, model {m.get('model')}), "
          f"{m.get('cores_online')} cores online; flags: {flags}.", "",
          f"Run: {results['date']}, `{results['command']}`; warm-up {results['warmup']}, "
          f"{results['repeat']} interleaved rounds, medians.", ""]
    peaks = results["fma_peak"]
    if "benchmarks" in peaks:
        other = peaks.get("foreign_load", {}).get("foreign")
        L += ["Measured peaks (bench_fma_peak, same run; counters in GFLOP/s"
              + (f"; other processes used {other:.0%} of the machine meanwhile"
                 if other is not None else "") + "):", ""]
        for name, c in peaks["benchmarks"].items():
            cs = ", ".join(f"{k} {v:.1f}" for k, v in c.items() if k != "label")
            cs += f" ({c['label']})" if "label" in c else ""
            L.append(f"- `{name}`: {cs}")
        L.append("")
    else:
        L += [f"Peaks: not measured ({peaks.get('error')})", ""]
    L += ["Versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()), ""]
    for rep in results["models"]:
        e = rep["estimator"]
        L += [f"## {rep['model_dir']}: {rep['weights']} weights",
              "", f"hidden {rep['hidden']}, heads {e['heads']}/{e['kv_heads']}, head_dim "
              f"{e['head_dim']}, MLP {e['inter']}, {e['layers']} layer(s) per estimator, vocab "
              f"{rep['vocab']}. llama.cpp rows are its time scaled to our flop count "
              "(per GFLOP/s), not its wall time.", ""]
        times = rep["times"]
        systems = list(times)
        seqs = sorted({int(S) for s in times.values() for t in s.values() for S in t})
        threads = sorted({int(n) for s in times.values() for n in s})
        for what in ("ms", "tokens/s"):
            L += [f"### {what} (median)", "",
                  "| system | " + " | ".join(f"S={S} {n}T" for S in seqs for n in threads) + " |",
                  "|---|" + "---|" * (len(seqs) * len(threads))]
            for s in systems:
                cells = []
                for S in seqs:
                    for n in threads:
                        c = times[s].get(str(n), {}).get(str(S))
                        if c is None:
                            cells.append("-")
                        elif what == "ms":
                            cells.append(f"{c['median_ms']:.2f}")
                        else:
                            cells.append(f"{S / c['median_ms'] * 1e3:.0f}")
                L.append(f"| {s} | " + " | ".join(cells) + " |")
            L.append("")
        L += ["### ours / best peer of the same precision class (above 1: we are slower)", "",
              "| ours | " + " | ".join(f"S={S} {n}T" for S in seqs for n in threads) + " |",
              "|---|" + "---|" * (len(seqs) * len(threads))]
        for ours in ("sgt", "sgt-f32", "sgt-bf16"):
            if ours not in times:
                continue
            cells = []
            for S in seqs:
                for n in threads:
                    r = ratios(rep, str(n), str(S)).get(ours)
                    cells.append(f"{r[0]:.2f} ({r[1]})" if r else "-")
            L.append(f"| {ours} ({rep['classes'][ours]}) | " + " | ".join(cells) + " |")
        L.append("")
        if rep["llamacpp_raw"]:
            L += ["llama.cpp's own figures (llama-bench, "
                  f"{results['llama_layers']} layers): " + "; ".join(
                      f"{name} S={r['seq']} {r['threads']}T {r['ms']:.2f} ms "
                      f"{r['gflops']:.1f} GFLOP/s"
                      for name, raws in rep["llamacpp_raw"].items()
                      for r in _medians_of(raws)), ""]
        fl = rep.get("foreign_load", {})
        if fl:
            L += ["CPU used by other processes during each block (share of the machine; once "
                  "they need the cores a block uses, its timings are not trustworthy): "
                  + "; ".join(
                      f"S={S} {n}T {v.get('foreign', 0):.0%}"
                      + (f" (steal {v['steal']:.0%})" if v.get("steal", 0) >= 0.01 else "")
                      for n, per in fl.items() for S, v in per.items()), ""]
        if "major_faults" in rep:
            L += ["Major page faults in timed runs (weights the OS had dropped from its page "
                  "cache, read back from disk; counted by sgt_time_transform): " + "; ".join(
                      f"S={S} {n}T " + ", ".join(f"{k} {v}" for k, v in f.items())
                      for n, per in rep["major_faults"].items() for S, f in per.items()), ""]
        elif "times" in rep and any(k.startswith("sgt") for k in rep["times"]):
            L += ["Major page faults in sgt's timed runs: none.", ""]
        L += ["Checks (max |peer - sgt f32| / max |sgt f32|):", ""]
        for name, c in rep["check"].items():
            if isinstance(c, dict):
                line = (f"- {name}: {c['max_rel_error']:.2e} at S={c['seq']} (tolerance "
                        f"{c['tolerance']:.0e})")
                by = c.get("by_seq", {})
                if by:
                    line += "; before timing at each S: " + ", ".join(
                        f"S={S} {max(v.values()):.2e}" for S, v in by.items())
                L.append(line)
            else:
                L.append(f"- {name}: {c}")
        for name, why in rep["skipped"].items():
            L.append(f"- **{name} not timed**: {why}")
        L.append("")
    for name, why in results.get("failed", {}).items():
        L += [f"## {name}: FAILED", "", why, ""]
    path.write_text("\n".join(L))


def _medians_of(raws):
    by = {}
    for r in raws:
        by.setdefault((r["seq"], r["threads"]), []).append(r)
    for (S, n), rs in sorted(by.items()):
        yield {"seq": S, "threads": n, "ms": statistics.median(r["ms"] for r in rs),
               "gflops": statistics.median(r["gflops"] for r in rs)}


def write_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    threads = sorted({int(n) for rep in models for s in rep["times"].values() for n in s})
    if not threads:
        return
    fig, axes = plt.subplots(len(models), len(threads), figsize=(5.5 * len(threads),
                             4.2 * len(models)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]  # one color per system
    order = ALL_SYSTEMS + ["sgt-bf16"]
    for i, rep in enumerate(models):
        for j, n in enumerate(threads):
            ax = axes[i][j]
            for s, per in rep["times"].items():
                pts = sorted((int(S), int(S) / c["median_ms"] * 1e3)
                             for S, c in per.get(str(n), {}).items())
                if pts:
                    style = "-o" if s.startswith("sgt") else "--."
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=s,
                            color=colors[order.index(s) % len(colors)] if s in order else None)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("sequence length S")
            ax.set_ylabel("tokens/s")
            ax.set_title(f"{rep['model_dir']} ({rep['weights']} weights), {n} thread(s)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(results["machine"].get("model_name") or "")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for p in ("torch", "transformers", "onnxruntime", "onnxscript", "executorch", "numpy"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="sgt4t model directories")
    ap.add_argument("--seq", type=int, nargs="+", default=[16, 128, 512, 2048])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--systems", nargs="+", default=None,
                    help=f"subset of {' '.join(ALL_SYSTEMS)}, or sgt-bf16 (default: all;"
                         " sgt-f32 only for bf16 weights)")
    ap.add_argument("--repeat", type=int, default=7, help="interleaved rounds (default 7)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="untimed runs per system and S (at least 1: the first is checked)")
    ap.add_argument("--pause", type=float, default=0.02, help="seconds between two systems' runs")
    ap.add_argument("--build", type=Path, default=REPO / "build" / "release")
    ap.add_argument("--llama-cpp", type=Path, default=None,
                    help="llama.cpp source dir with build/bin/llama-bench (README)")
    ap.add_argument("--llama-layers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None,
                    help="cache for exported graphs and GGUFs (default: a temp dir)")
    ap.add_argument("--out", type=Path, default=REPO / "bench",
                    help="where RESULTS.md, results.png and results.json go")
    ap.add_argument("--note", default="", help="a line at the top of RESULTS.md (e.g. smoke run)")
    args = ap.parse_args()
    args.warmup = max(args.warmup, 1)
    unknown = set(args.systems or []) - set(ALL_SYSTEMS) - {"sgt-bf16"}
    if unknown:
        ap.error(f"unknown systems: {' '.join(sorted(unknown))}")
    args.sgt_bin = args.build / "bench" / "sgt_time_transform"
    if not args.sgt_bin.exists():
        ap.error(f"{args.sgt_bin} not built: cmake --preset bench && cmake --build --preset bench "
                 "--target sgt_time_transform bench_fma_peak")
    work = args.work or Path(tempfile.mkdtemp(prefix="sgt_compare_"))
    work.mkdir(parents=True, exist_ok=True)

    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "command": "compare.py " + " ".join(
                   a if not a.startswith("/") else Path(a).name for a in sys.argv[1:]),
               "machine": cpu_info(), "versions": versions(), "warmup": args.warmup,
               "repeat": args.repeat, "llama_layers": args.llama_layers, "models": []}
    load = ForeignLoad()
    results["fma_peak"] = fma_peaks(args.build / "bench" / "bench_fma_peak")
    results["fma_peak"]["foreign_load"] = load.share()
    results["failed"] = {}
    user_systems = args.systems
    args.out.mkdir(parents=True, exist_ok=True)
    for model_dir in args.models:
        args.systems = user_systems or [s for s in ALL_SYSTEMS
                                        if s != "sgt-f32" or weights_dtype(model_dir) == "bf16"]
        try:
            results["models"].append(run_model(model_dir.resolve(), args, work))
            import gc

            gc.collect()  # the last model's modules, sessions and programs
        except Exception as e:  # the other models' results still count
            import traceback

            traceback.print_exc()
            results["failed"][model_dir.name] = f"{type(e).__name__}: {str(e)[:600]}"
        # After every model, so a long run keeps what it measured if a later model fails.
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        write_markdown(results, args.out / "RESULTS.md", args.note)
        try:
            write_plot(results, args.out / "results.png")
        except ImportError as e:
            log(f"no plot: {e}")
    log(f"wrote {args.out / 'RESULTS.md'}, results.png, results.json (work dir {work})")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
