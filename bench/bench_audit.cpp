// The nearest-neighbour search of `sgt audit` (kernels/nearest_rows.hpp) on a Llama-3-sized
// vocabulary: a BF16 table of 128256 x 4096 (1 GiB, random values) searched by 64 protected
// tokens x 16 draws = 1024 query rows, fed in blocks of NearestRows::block_rows() (128 at the
// default 64 MiB score budget). Reported: seconds per audit and the matmul's GFLOP/s
// (2 x rows x V x H per audit; the scan of the scores is counted in the time, not the flops).
//
//   bench_audit [--benchmark_filter=...]     threads: 1 and all cores
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include <sgt/core/dtype.hpp>
#include <sgt/core/secure_memory.hpp>
#include <sgt/core/thread_pool.hpp>
#include <sgt/kernels/nearest_rows.hpp>

namespace {

constexpr std::size_t kVocab = 128256, kHidden = 4096;
constexpr std::size_t kTokens = 64, kDraws = 16;

// One table for every run: 1 GiB is too much to make per benchmark.
const std::vector<sgt::bfloat16>& table() {
  static const std::vector<sgt::bfloat16> t = [] {
    std::vector<sgt::bfloat16> v(kVocab * kHidden);
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0.0f, 0.02f);  // Llama-like embedding scale
    for (auto& x : v) x = sgt::to_bfloat16(normal(rng));
    return v;
  }();
  return t;
}

void BM_audit_search(benchmark::State& state) {
  const auto threads = static_cast<std::size_t>(state.range(0));
  sgt::ThreadPool pool(threads);
  const auto& t = table();
  const sgt::kernels::NearestRows search(
      sgt::TensorView<const sgt::bfloat16>(t.data(), {kVocab, kHidden}), &pool);
  const std::size_t rows = kTokens * kDraws, block = search.block_rows();
  std::vector<float> queries(rows * kHidden);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  for (auto& x : queries) x = normal(rng);
  std::vector<std::int64_t> targets(rows);
  for (std::size_t r = 0; r < rows; ++r)
    targets[r] = static_cast<std::int64_t>((r * 7919) % kVocab);
  std::vector<sgt::kernels::NearestRowMatch> matches(rows);
  sgt::WipedVector<float> scores;
  for (auto _ : state) {
    for (std::size_t r = 0; r < rows; r += block) {
      const std::size_t n = std::min(block, rows - r);
      search.search(sgt::TensorView<const float>(queries.data() + r * kHidden, {n, kHidden}),
                    targets.data() + r, matches.data() + r, scores, &pool);
    }
    benchmark::DoNotOptimize(matches.data());
  }
  const double flops = 2.0 * double(rows) * double(kVocab) * double(kHidden);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["block_rows"] = double(block);
}

const int kAllCores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
BENCHMARK(BM_audit_search)
    ->ArgName("threads")
    ->Arg(1)
    ->Arg(kAllCores)
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
