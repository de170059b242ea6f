// Attention kernels: flash_attention vs the explicit-scores sdpa, on the attention shapes of
// Llama-3.2-1B (32 query heads, 8 kv heads, head_dim 64) and Llama-3.1-8B (32, 8, 128), one
// sequence (batch 1) of S = 128, 512, 2048 tokens, causal, on 1 and 2 threads.
//
// GFLOP/s counts the useful work of causal attention: q k^T and p v are 2 * S * S * head_dim
// flops each per head, half of which the causal mask removes:
//     flops = 4 * S * S * head_dim * num_heads / 2
// (softmax exps, the mask and the rescaling are not counted). Wall-clock time (UseRealTime), as
// threads are involved.
//
// Before timing, each benchmark runs flash_attention and sdpa on its own inputs and skips with an
// error if they disagree beyond f32 accumulation tolerance.
//
// Run: bench_attention --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <sgt/core/thread_pool.hpp>
#include <sgt/kernels/flash_attention.hpp>
#include <sgt/kernels/sdpa.hpp>

namespace {

using sgt::kernels::AttentionOptions;
using sgt::kernels::AttentionShape;

struct ModelAttention {
  const char* name;
  std::size_t num_heads, num_kv_heads, head_dim;
};
const ModelAttention kModels[] = {{"Llama-3.2-1B", 32, 8, 64}, {"Llama-3.1-8B", 32, 8, 128}};

struct Inputs {
  AttentionShape shape;
  AttentionOptions options;
  std::vector<float> q, k, v;
  bool checked = false;
  std::string check_error;  // empty = flash_attention agrees with sdpa
};

// One set of inputs per (model, S), shared by every benchmark of that shape.
Inputs& inputs_for(std::size_t model, std::size_t seq_len) {
  static std::map<std::pair<std::size_t, std::size_t>, std::unique_ptr<Inputs>> cache;
  auto& slot = cache[{model, seq_len}];
  if (!slot) {
    const ModelAttention& m = kModels[model];
    slot = std::make_unique<Inputs>();
    slot->shape = {1, seq_len, m.num_heads, m.num_kv_heads, m.head_dim};
    slot->options = {sgt::kernels::default_attention_scale(m.head_dim), true, 0};
    std::mt19937 rng(static_cast<std::uint32_t>(model * 100000 + seq_len));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    slot->q.resize(seq_len * m.num_heads * m.head_dim);
    slot->k.resize(seq_len * m.num_kv_heads * m.head_dim);
    slot->v.resize(slot->k.size());
    for (float& x : slot->q) x = normal(rng);
    for (float& x : slot->k) x = normal(rng);
    for (float& x : slot->v) x = normal(rng);
  }
  return *slot;
}

using Kernel = void (*)(const AttentionShape&, const AttentionOptions&,
                        sgt::TensorView<const float>, sgt::TensorView<const float>,
                        sgt::TensorView<const float>, const std::uint8_t*, sgt::TensorView<float>,
                        sgt::ThreadPool*);

void run(Kernel kernel, const Inputs& in, std::vector<float>& out, sgt::ThreadPool* pool) {
  const std::size_t S = in.shape.seq_len;
  const std::size_t q_cols = in.shape.num_heads * in.shape.head_dim;
  const std::size_t kv_cols = in.shape.num_kv_heads * in.shape.head_dim;
  kernel(in.shape, in.options, {in.q.data(), {S, q_cols}}, {in.k.data(), {S, kv_cols}},
         {in.v.data(), {S, kv_cols}}, nullptr, {out.data(), {S, q_cols}}, pool);
}

// flash_attention against sdpa on the benchmark's own inputs, once per shape.
const std::string& check(Inputs& in, sgt::ThreadPool* pool) {
  if (in.checked) return in.check_error;
  in.checked = true;
  std::vector<float> flash(in.q.size()), reference(in.q.size());
  run(sgt::kernels::flash_attention, in, flash, pool);
  run(sgt::kernels::sdpa, in, reference, pool);
  float err = 0.0f, v_max = 1.0f;
  for (std::size_t i = 0; i < flash.size(); ++i) {
    const float e = std::fabs(flash[i] - reference[i]);
    err = std::isnan(e) ? INFINITY : std::max(err, e);
  }
  for (float x : in.v) v_max = std::max(v_max, std::fabs(x));
  if (!(err <= 2e-5f * v_max))
    in.check_error = "flash_attention differs from sdpa by " + std::to_string(err);
  return in.check_error;
}

template <bool kFlash>
void BM_attention(benchmark::State& state) {
  const auto model = static_cast<std::size_t>(state.range(0));
  const auto seq_len = static_cast<std::size_t>(state.range(1));
  const auto threads = static_cast<std::size_t>(state.range(2));
  Inputs& in = inputs_for(model, seq_len);
  sgt::ThreadPool pool(threads);
  if (const std::string& error = check(in, &pool); !error.empty()) {
    state.SkipWithError(error.c_str());
    return;
  }
  std::vector<float> out(in.q.size());
  const Kernel kernel = kFlash ? Kernel(sgt::kernels::flash_attention) : Kernel(sgt::kernels::sdpa);
  for (auto _ : state) {
    run(kernel, in, out, &pool);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double flops = 4.0 * double(seq_len) * double(seq_len) * double(in.shape.head_dim) *
                       double(in.shape.num_heads) / 2.0;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9 * double(state.iterations()), benchmark::Counter::kIsRate);
  state.SetLabel(kModels[model].name);
}

void attention_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"model", "S", "threads"});
  for (int model : {0, 1})
    for (int seq_len : {128, 512, 2048})
      for (int threads : {1, 2}) b->Args({model, seq_len, threads});
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_attention, true)->Name("flash_attention")->Apply(attention_args);
BENCHMARK_TEMPLATE(BM_attention, false)->Name("sdpa")->Apply(attention_args);

}  // namespace

BENCHMARK_MAIN();
