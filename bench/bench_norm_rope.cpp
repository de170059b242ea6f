// Memory-bound kernels: rms_norm, apply_rope, embedding_lookup. Reported as GB/s of the bytes each
// call must move at least once (read + write of the activations, the weight or table rows read),
// single-threaded (pool = null). Every benchmark first checks the optimized kernel against its
// reference on its own inputs and refuses to time a kernel that disagrees.
//
//   bench_norm_rope --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <sgt/kernels/embedding.hpp>
#include <sgt/kernels/rms_norm.hpp>
#include <sgt/kernels/rope.hpp>

namespace {

namespace k = sgt::kernels;
using sgt::AnyTensorView;
using sgt::TensorView;

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

void report_bytes(benchmark::State& state, double bytes_per_call) {
  state.counters["GB/s"] = benchmark::Counter(
      bytes_per_call * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// |a - b| <= tol * (|b| + floor) everywhere.
bool close(const std::vector<float>& a, const std::vector<float>& b, float tol, float floor) {
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(a[i] - b[i]) <= tol * (std::fabs(b[i]) + floor))) return false;
  return true;
}

// ---- rms_norm: args {hidden, tokens}; bf16 weight as stored by Llama checkpoints -------------

template <bool kReference>
void BM_RmsNorm(benchmark::State& state) {
  const auto hidden = static_cast<std::size_t>(state.range(0));
  const auto tokens = static_cast<std::size_t>(state.range(1));
  const std::vector<float> x = random_floats(tokens * hidden, 1);
  const std::vector<float> wf = random_floats(hidden, 2);
  std::vector<sgt::bfloat16> w(hidden);
  for (std::size_t i = 0; i < hidden; ++i) w[i] = sgt::to_bfloat16(1.0f + 0.1f * wf[i]);
  const AnyTensorView weight(TensorView<const sgt::bfloat16>(w.data(), {hidden}));
  const TensorView<const float> xv(x.data(), {tokens, hidden});
  std::vector<float> out(x.size()), ref(x.size());
  const TensorView<float> ov(out.data(), {tokens, hidden});

  k::rms_norm(xv, weight, 1e-5f, ov);
  k::rms_norm_reference(xv, weight, 1e-5f, TensorView<float>(ref.data(), {tokens, hidden}));
  if (!close(out, ref, 2e-6f, 1e-30f)) {
    state.SkipWithError("rms_norm disagrees with rms_norm_reference");
    return;
  }
  for (auto _ : state) {
    if constexpr (kReference) {
      k::rms_norm_reference(xv, weight, 1e-5f, ov);
    } else {
      k::rms_norm(xv, weight, 1e-5f, ov);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  report_bytes(state,
               static_cast<double>(tokens * hidden) * 8.0 + static_cast<double>(hidden) * 2.0);
}
BENCHMARK_TEMPLATE(BM_RmsNorm, false)
    ->ArgNames({"hidden", "tokens"})
    ->ArgsProduct({{2048, 4096}, {128, 512, 2048}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_RmsNorm, true)
    ->Name("BM_RmsNormReference")
    ->ArgNames({"hidden", "tokens"})
    ->Args({2048, 512})
    ->Unit(benchmark::kMicrosecond);

// ---- apply_rope: args {heads, head_dim, seq}, batch 1, the query projection of a layer ---------

template <bool kReference>
void BM_ApplyRope(benchmark::State& state) {
  const auto heads = static_cast<std::size_t>(state.range(0));
  const auto head_dim = static_cast<std::size_t>(state.range(1));
  const auto seq = static_cast<std::size_t>(state.range(2));
  k::RopeParameters p;  // Llama 3.x: theta 500000, llama3 scaling
  p.head_dim = head_dim;
  p.theta = 500000.0;
  p.type = k::RopeType::Llama3;
  p.factor = head_dim == 64 ? 32.0 : 8.0;
  const k::RopeTable table(p, seq);
  const std::vector<float> input = random_floats(seq * heads * head_dim, 3);
  std::vector<float> x = input, ref = input;
  const TensorView<float> xv(x.data(), {1, seq, heads * head_dim});

  k::apply_rope(xv, heads, head_dim, table);
  k::apply_rope_reference(TensorView<float>(ref.data(), {1, seq, heads * head_dim}), heads,
                          head_dim, table);
  if (!close(x, ref, 1e-6f, 1.0f)) {
    state.SkipWithError("apply_rope disagrees with apply_rope_reference");
    return;
  }
  for (auto _ : state) {
    // In place, call after call: a rotation keeps the values' magnitude, so nothing drifts.
    if constexpr (kReference) {
      k::apply_rope_reference(xv, heads, head_dim, table);
    } else {
      k::apply_rope(xv, heads, head_dim, table);
    }
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  // x read and written; the cos/sin rows (half of each is read) per position.
  report_bytes(state, static_cast<double>(seq * heads * head_dim) * 8.0 +
                          static_cast<double>(seq * table.rotary_dim()) * 4.0);
}
BENCHMARK_TEMPLATE(BM_ApplyRope, false)
    ->ArgNames({"heads", "head_dim", "seq"})
    ->ArgsProduct({{32}, {64, 128}, {128, 512, 2048}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_ApplyRope, true)
    ->Name("BM_ApplyRopeReference")
    ->ArgNames({"heads", "head_dim", "seq"})
    ->Args({32, 128, 512})
    ->Unit(benchmark::kMicrosecond);

// ---- embedding_lookup: Llama 3 vocabulary (128256 x 2048, bf16), 512 random ids ----------------

const std::vector<sgt::bfloat16>& llama3_embedding_table() {
  // 525 MB, built once for all repetitions; random bits from a cheap generator.
  static const std::vector<sgt::bfloat16> table = [] {
    std::vector<sgt::bfloat16> t(std::size_t{128256} * 2048);
    std::uint64_t s = 0x9e3779b97f4a7c15ull;
    for (auto& v : t) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      v.bits = static_cast<std::uint16_t>(0x3c00u | (s & 0x83ffu));  // |v| in [2^-7, 2)
    }
    return t;
  }();
  return table;
}

template <bool kReference>
void BM_Embedding(benchmark::State& state) {
  const std::size_t vocab = 128256, hidden = 2048;
  const auto count = static_cast<std::size_t>(state.range(0));
  const auto& t = llama3_embedding_table();
  const AnyTensorView table(TensorView<const sgt::bfloat16>(t.data(), {vocab, hidden}));
  std::mt19937 rng(4);
  std::uniform_int_distribution<std::int64_t> pick(0, vocab - 1);
  std::vector<std::int64_t> ids(count);
  for (auto& id : ids) id = pick(rng);
  std::vector<float> out(count * hidden), ref(count * hidden);
  const TensorView<float> ov(out.data(), {count, hidden});

  k::embedding_lookup(table, ids.data(), count, ov);
  k::embedding_lookup_reference(table, ids.data(), count,
                                TensorView<float>(ref.data(), {count, hidden}));
  if (std::memcmp(out.data(), ref.data(), out.size() * sizeof(float)) != 0) {
    state.SkipWithError("embedding_lookup disagrees with embedding_lookup_reference");
    return;
  }
  for (auto _ : state) {
    if constexpr (kReference) {
      k::embedding_lookup_reference(table, ids.data(), count, ov);
    } else {
      k::embedding_lookup(table, ids.data(), count, ov);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  report_bytes(state, static_cast<double>(count * hidden) * (2.0 + 4.0));
}
BENCHMARK_TEMPLATE(BM_Embedding, false)->ArgNames({"ids"})->Arg(512)->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(BM_Embedding, true)
    ->Name("BM_EmbeddingReference")
    ->ArgNames({"ids"})
    ->Arg(512)
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
