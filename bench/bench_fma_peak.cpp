// The measured FMA peak of this machine, in f32 GFLOP/s, single-threaded and on all hardware
// threads: the ceiling every GFLOP/s figure of bench_matmul (and the other kernel benchmarks)
// reads as a fraction of.
//
// What runs: kChains independent accumulator chains of sgt::simd::FloatBatch FMAs,
//     acc_c = fma(acc_c, multiplier, addend)      (2 * kFloatLanes flops each)
// with the multiplier just below 1 so the values stay normal (no denormal slow path, no
// overflow). A single chain would measure the FMA *latency*; the peak needs latency x throughput
// chains in flight at once: 4 cycles x 2 FMA/cycle = 8 on Skylake-X / Ice Lake, 4 x 1 (512-bit)
// on Zen 4; kChains = 16 covers both with margin and still fits the 32 vector registers of
// AVX-512 (16 of the 16 AVX2 registers would spill: kChains drops to 12 there). The chains are
// named variables, not an array: GCC keeps an array of more than a few vectors in memory, which
// turns every FMA into a load-FMA-store and measures the store forwarding instead. The sum of the
// chains is handed to benchmark::DoNotOptimize, so none of it can be dropped.
//
// bf16 dot products (BM_bf16_dot_peak): the same chains of sgt::simd::dot_bf16_pairs, which is one
// vdpbf16ps on CPUs with AVX512-BF16 (4 * kFloatLanes flops: two multiply-adds per lane), the
// ceiling of matmul at Precision::Bf16. Elsewhere dot_bf16_pairs is the f32 emulation (two FMAs
// plus the unpacking of the pairs), and the figure says what that costs instead of a peak; the
// label names which ran. Checked against the assembly: with -march=native on Zen 4 the loop body
// of bf16_chains is 16 `vdpbf16ps zmm, zmm, zmm` and the loop counter, nothing else.
//
// All threads: one chunk per thread of an sgt::ThreadPool (the pool the kernels use), wall-clock
// time.
//
// Run: bench_fma_peak --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <thread>

#include <sgt/core/simd.hpp>
#include <sgt/core/thread_pool.hpp>

namespace {

using sgt::simd::FloatBatch;

#if defined(__AVX512F__)
constexpr int kChains = 16;
#else
constexpr int kChains = 12;
#endif
constexpr long kStepsPerCall = 1L << 20;  // FMAs per chain per call

// Runs kChains chains of `steps` applications of `step` (acc -> step(acc)) each and returns their
// sum (keeps every chain live). `step` is inlined: the chains stay named register variables.
template <class Step>
float chains(long steps, float seed, Step step) {
  FloatBatch a0(seed), a1(seed + 1), a2(seed + 2), a3(seed + 3), a4(seed + 4), a5(seed + 5),
      a6(seed + 6), a7(seed + 7), a8(seed + 8), a9(seed + 9), a10(seed + 10), a11(seed + 11);
#if defined(__AVX512F__)
  FloatBatch a12(seed + 12), a13(seed + 13), a14(seed + 14), a15(seed + 15);
#endif
  for (long s = 0; s < steps; ++s) {
    a0 = step(a0);
    a1 = step(a1);
    a2 = step(a2);
    a3 = step(a3);
    a4 = step(a4);
    a5 = step(a5);
    a6 = step(a6);
    a7 = step(a7);
    a8 = step(a8);
    a9 = step(a9);
    a10 = step(a10);
    a11 = step(a11);
#if defined(__AVX512F__)
    a12 = step(a12);
    a13 = step(a13);
    a14 = step(a14);
    a15 = step(a15);
#endif
  }
  FloatBatch sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
#if defined(__AVX512F__)
  sum = sum + ((a12 + a13) + (a14 + a15));
#endif
  return sgt::simd::reduce_add(sum);
}

// FMAs with the multiplier just below 1, so the values stay normal.
float fma_chains(long steps, float seed) {
  const FloatBatch m(0.99999994f), c(1e-7f);
  return chains(steps, seed, [&](const FloatBatch& a) { return sgt::simd::multiply_add(a, m, c); });
}

// bf16 pair dot products (the pairs hold values near 1 and 1e-4, so the sums grow slowly and
// stay normal).
float bf16_chains(long steps, float seed) {
  const sgt::simd::PairBatch x(sgt::simd::bf16_round_pair(1e-4f, -1e-4f));
  const std::uint32_t w = sgt::simd::bf16_round_pair(0.5f, 0.25f);
  return chains(steps, seed, [&](const FloatBatch& a) { return sgt::simd::dot_bf16_pairs(a, x, w); });
}

constexpr double kFlopsPerCall = 2.0 * static_cast<double>(sgt::simd::kFloatLanes) * kChains *
                                 static_cast<double>(kStepsPerCall);

// Runs `chains` on every thread of a pool of state.range(0) threads; reports GFLOP/s at
// `flops_per_call` per thread and call.
template <class Chains>
void run_peak(benchmark::State& state, Chains chains, double flops_per_call, const std::string& what) {
  const auto threads = static_cast<std::size_t>(state.range(0));
  sgt::ThreadPool pool(threads);
  for (auto _ : state) {
    // One chunk per thread; each chunk's result is kept.
    float results[256] = {};
    sgt::parallel_for(&pool, threads, 1, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i)
        results[i % 256] = chains(kStepsPerCall, 1.0f + static_cast<float>(i));
    });
    benchmark::DoNotOptimize(results);
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      flops_per_call * static_cast<double>(threads) * 1e-9 * static_cast<double>(state.iterations()),
      benchmark::Counter::kIsRate);
  state.SetLabel(std::string(sgt::simd::arch_name()) + ", " + std::to_string(kChains) + " chains, " +
                 what);
}

void BM_fma_peak(benchmark::State& state) {
  run_peak(state, fma_chains, kFlopsPerCall, "f32 fma");
}

void BM_bf16_dot_peak(benchmark::State& state) {
  run_peak(state, bf16_chains, 2 * kFlopsPerCall,
           sgt::simd::kHasBf16DotProduct ? "vdpbf16ps" : "bf16 pairs emulated with f32 fma");
}

const int kHardwareThreads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
BENCHMARK(BM_fma_peak)->ArgName("threads")->Arg(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_bf16_dot_peak)
    ->ArgName("threads")
    ->Arg(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
// All hardware threads (registered only when that is more than one).
const bool kAllThreadsRegistered = [] {
  if (kHardwareThreads > 1)
    benchmark::RegisterBenchmark("BM_fma_peak_all_threads", BM_fma_peak)
        ->ArgName("threads")
        ->Arg(kHardwareThreads)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  if (kHardwareThreads > 1)
    benchmark::RegisterBenchmark("BM_bf16_dot_peak_all_threads", BM_bf16_dot_peak)
        ->ArgName("threads")
        ->Arg(kHardwareThreads)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
