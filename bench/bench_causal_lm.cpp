// sgt::CausalLM: prefill and single-token decode on a model shaped like Llama 3.2 1B's layers
// (hidden 2048, 32 heads, 8 kv heads, head_dim 64, intermediate 8192, llama3 RoPE), with fewer
// layers (kLayers) and a 32000-token vocabulary so that it builds in seconds; BF16 weights, untied
// LM head. The model is written once into a temporary directory as save_pretrained would and
// loaded with CausalLM::load.
//
// Decode (T = 1) reads every weight once per token: it is memory-bound, so it is reported as
// tokens/s and as GB/s of weights (plus the KV cache it attends to) against BM_ReadBandwidth, the
// rate at which the same threads can stream a 1 GiB buffer from memory, measured in the same run.
// Prefill is reported as tokens/s and GFLOP/s (2 flops per weight and token, plus the causal
// attention), against bench_fma_peak's figure.
//
// Before timing, every configuration is compared with the reference-kernel path (logits of a
// 9-token prefill and one decode step) and skipped with an error if they disagree.
//
// SGT_BENCH_LM_DIR=DIR times the Hugging Face causal LM in DIR instead (bench/compare/compare_lm.py
// runs it on the model it also converts for llama.cpp); the counts below follow its config.
// SGT_BENCH_LM_DECODE_WEIGHTS=1 makes the decode copy of the Linear weights first
// (CausalLM::copy_decode_weights), which decode steps then read.
//
// Run: bench_causal_lm --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sgt/sgt.hpp>

#include "bench_support.hpp"

namespace {

constexpr std::size_t kHidden = 2048, kHeads = 32, kKvHeads = 8, kHeadDim = 64, kInter = 8192,
                      kVocab = 32000, kLayers = 2, kMaxLen = 2048;

const std::string& model_dir() {
  static const std::string dir = []() -> std::string {
    if (const char* given = std::getenv("SGT_BENCH_LM_DIR")) return given;
    const auto path = std::filesystem::temp_directory_path() /
                      ("sgt_bench_causal_lm_" + std::to_string(::getpid()));
    std::filesystem::create_directories(path);
    nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                             {"model_type", "llama"},
                             {"vocab_size", kVocab},
                             {"hidden_size", kHidden},
                             {"intermediate_size", kInter},
                             {"num_hidden_layers", kLayers},
                             {"num_attention_heads", kHeads},
                             {"num_key_value_heads", kKvHeads},
                             {"head_dim", kHeadDim},
                             {"rms_norm_eps", 1e-5},
                             {"tie_word_embeddings", false}};
    config.update(sgt_bench::llama3_rope_keys());
    std::ofstream(path / "config.json") << config.dump(2);
    sgt_bench::RandomWeights w;
    sgt::CausalLmWeights slots;
    sgt::for_each_causal_lm_tensor(sgt::parse_causal_lm_config(config), slots,
                                   [&](const std::string& name, const sgt::TensorShape& shape,
                                       sgt::AnyTensorView&) { w.add_listed(name, shape); });
    w.write((path / "model.safetensors").string());
    std::atexit([] { std::filesystem::remove_all(model_dir()); });
    return path.string();
  }();
  return dir;
}

const sgt::CausalLM& lm() {
  static const sgt::CausalLM m = [] {
    sgt::CausalLM lm = sgt::CausalLM::load(model_dir());
    if (std::getenv("SGT_BENCH_LM_DECODE_WEIGHTS") != nullptr) lm.copy_decode_weights();
    return lm;
  }();
  return m;
}

// Parameters of the Linears of every layer and of the LM head: what a decoded token reads, two
// flops per parameter and token.
double layer_params() {
  const sgt::DecoderConfig& d = lm().config().decoder;
  const double h = double(d.hidden_size), q = double(d.num_attention_heads * d.head_dim),
               kv = double(d.num_key_value_heads * d.head_dim);
  return double(d.num_hidden_layers) * (2.0 * h * q + 2.0 * h * kv + 3.0 * h * d.intermediate_size);
}
double head_params() {
  return double(lm().vocab_size()) * double(lm().hidden_size());
}
double bytes_per_param() {
  return double(sgt::dtype_size(lm().weights().lm_head.dtype()));
}

sgt::LmInput ids_at(std::size_t start, std::size_t count, sgt::LogitsFor logits) {
  sgt::LmInput in;
  in.seq_len = count;
  for (std::size_t t = 0; t < count; ++t) {
    in.input_ids.push_back(static_cast<std::int64_t>(((start + t) * 7919) % lm().vocab_size()));
    in.cache_position.push_back(static_cast<std::int64_t>(start + t));
  }
  in.logits = logits;
  return in;
}

// Optimized vs reference kernels: a 9-token prefill and one decode step, all logits.
bool agrees_with_reference(sgt::Precision precision, sgt::ThreadPool* pool) {
  double err = 0, scale = 0;
  std::vector<float> fast;
  for (bool reference : {false, true}) {
    sgt::LmRunOptions o;
    o.pool = pool;
    o.precision = precision;
    o.reference_kernels = reference;
    sgt::KvCache cache = lm().make_cache(1, 16);
    auto a = lm().forward(ids_at(0, 9, sgt::LogitsFor::All), cache, o).values;
    const auto b = lm().forward(ids_at(9, 1, sgt::LogitsFor::All), cache, o).values;
    a.insert(a.end(), b.begin(), b.end());
    if (!reference) {
      fast = a;
      continue;
    }
    for (std::size_t i = 0; i < a.size(); ++i) {
      err = std::max(err, std::fabs(double(fast[i]) - a[i]));
      scale = std::max(scale, std::fabs(double(a[i])));
    }
  }
  // Bf16: a bf16 rounding of an activation may flip between the two paths (1 ulp = 2^-8).
  return err <= (precision == sgt::Precision::Bf16 ? 2e-2 : 1e-4) * scale;
}

// What both timed loops set up from (threads, bf16) = state.range(1), state.range(2): the pool, the
// options, a cache of kMaxLen and a workspace; `checked` is false (and the benchmark skipped) when
// the configuration disagrees with its reference-kernel path.
struct Run {
  explicit Run(benchmark::State& state)
      : pool(static_cast<std::size_t>(state.range(1))),
        precision(state.range(2) ? sgt::Precision::Bf16 : sgt::Precision::F32),
        cache(lm().make_cache(1, kMaxLen)) {
    o.pool = &pool;
    o.precision = precision;
    checked = agrees_with_reference(precision, &pool);
    if (!checked) state.SkipWithError("CausalLM disagrees with its reference-kernel path");
    state.SetLabel(std::string(sgt::kernels::default_kernel_table().isa) + ", precision " +
                   sgt::precision_name(precision));
  }
  sgt::ThreadPool pool;
  sgt::Precision precision;
  sgt::LmRunOptions o;
  sgt::KvCache cache;
  sgt::LmWorkspace ws;
  sgt::LmLogits logits;
  bool checked = false;
};

// One forward of `tokens` new tokens from position 0 (prefill), last logits.
void BM_Prefill(benchmark::State& state) {
  const auto tokens = static_cast<std::size_t>(state.range(0));
  Run r(state);
  if (!r.checked) return;
  const sgt::LmInput in = ids_at(0, tokens, sgt::LogitsFor::Last);
  lm().forward(in, r.cache, r.ws, r.o, r.logits);  // plan once, as a server would
  for (auto _ : state) {
    lm().forward(in, r.cache, r.ws, r.o, r.logits);
    benchmark::DoNotOptimize(r.logits.values.data());
  }
  // The LM head runs for the last token only.
  const sgt::DecoderConfig& d = lm().config().decoder;
  const double flops =
      2.0 * layer_params() * tokens + 2.0 * head_params() +
      double(d.num_hidden_layers) * 4.0 * tokens * tokens * d.head_dim * d.num_attention_heads / 2;
  state.counters["tokens/s"] =
      benchmark::Counter(double(tokens) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

// One T = 1 step at position `context` (a cache holding `context` positions), last logits.
void BM_Decode(benchmark::State& state) {
  const auto context = static_cast<std::size_t>(state.range(0));
  Run r(state);
  if (!r.checked) return;
  lm().forward(ids_at(0, context, sgt::LogitsFor::Last), r.cache, r.ws, r.o, r.logits);
  const sgt::LmInput step = ids_at(context, 1, sgt::LogitsFor::Last);
  lm().forward(step, r.cache, r.ws, r.o, r.logits);
  for (auto _ : state) {
    // (rewrites position `context`: the context stays fixed)
    lm().forward(step, r.cache, r.ws, r.o, r.logits);
    benchmark::DoNotOptimize(r.logits.values.data());
  }
  // Bytes one step reads: the weights, and the f32 keys and values of every layer.
  const sgt::DecoderConfig& d = lm().config().decoder;
  const double bytes =
      bytes_per_param() * (layer_params() + head_params()) +
      double(d.num_hidden_layers) * 2.0 * (context + 1) * d.num_key_value_heads * d.head_dim * 4.0;
  state.counters["tokens/s"] =
      benchmark::Counter(double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["GB/s"] =
      benchmark::Counter(bytes * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

// The memory bandwidth decode is bounded by: the threads sum disjoint halves of a 1 GiB buffer
// (far beyond any cache). 64 accumulators per thread (4 AVX-512 or 8 AVX2 vectors, independent):
// with 8 the loop is one vector add per 32 bytes waiting on the previous one's latency, a limit
// of about 8 GB/s that is the adder's, not the memory's.
void BM_ReadBandwidth(benchmark::State& state) {
  const auto threads = static_cast<std::size_t>(state.range(0));
  static std::vector<float> buffer(std::size_t{1} << 28, 1.0f);  // 1 GiB
  sgt::ThreadPool pool(threads);
  std::vector<double> sums(threads);
  for (auto _ : state) {
    pool.parallel_for(threads, 1, [&](std::size_t begin, std::size_t end) {
      for (std::size_t t = begin; t < end; ++t) {
        const std::size_t n = buffer.size() / threads, lo = t * n;
        float acc[64] = {};
        for (std::size_t i = lo; i + 64 <= lo + n; i += 64)
          for (int k = 0; k < 64; ++k) acc[k] += buffer[i + k];
        double s = 0;
        for (float a : acc) s += a;
        sums[t] = s;
      }
    });
    benchmark::DoNotOptimize(sums.data());
  }
  state.counters["GB/s"] = benchmark::Counter(
      double(buffer.size()) * 4.0 * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

}  // namespace

BENCHMARK(BM_ReadBandwidth)
    ->ArgNames({"threads"})
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Decode)
    ->ArgNames({"context", "threads", "bf16"})
    ->ArgsProduct({{128, 512}, {1, 2}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Prefill)
    ->ArgNames({"tokens", "threads", "bf16"})
    ->ArgsProduct({{128, 512}, {1, 2}, {1, 0}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

BENCHMARK_MAIN();
