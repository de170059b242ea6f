// Noise generators: normals/s and GB/s of f32 output, single thread.
//   ChaCha20Keystream           the SIMD keystream kernel (and its one-block reference)
//   SecureNormalFill            SecureNormalGenerator::fill (keystream + polar method)
//   SecureNormalConstruct       a fresh generator: getrandom(2) for the key (one per transform)
//   TorchNormalFill/<path>      TorchNormalGenerator::fill: MT19937 + ATen's Box-Muller
// Before timing, each benchmark checks its output against the reference on its own inputs and
// skips with an error if they disagree.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <vector>

#include <sgt/random/chacha20.hpp>
#include <sgt/random/secure_normal.hpp>
#include <sgt/random/torch_normal.hpp>

namespace {

sgt::ChaCha20Key bench_key() {
  sgt::ChaCha20Key key;
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(31 * i + 7);
  return key;
}

void set_rates(benchmark::State& state, std::size_t values_per_iteration, std::size_t bytes) {
  const double iterations = static_cast<double>(state.iterations());
  state.counters["normals/s"] = benchmark::Counter(
      iterations * static_cast<double>(values_per_iteration), benchmark::Counter::kIsRate);
  state.counters["GB/s"] = benchmark::Counter(iterations * static_cast<double>(bytes) * 1e-9,
                                              benchmark::Counter::kIsRate);
}

template <bool kReference>
void BM_ChaCha20Keystream(benchmark::State& state) {
  const auto blocks = static_cast<std::size_t>(state.range(0));
  const auto key = bench_key();
  std::vector<std::uint8_t> out(blocks * 64), ref(blocks * 64);
  sgt::chacha20_keystream(key, 3, 1, blocks, out.data());
  sgt::chacha20_keystream_reference(key, 3, 1, blocks, ref.data());
  if (out != ref) {
    state.SkipWithError("chacha20_keystream disagrees with chacha20_keystream_reference");
    return;
  }
  std::uint64_t counter = 0;
  for (auto _ : state) {
    if (kReference) {
      sgt::chacha20_keystream_reference(key, 3, counter, blocks, out.data());
    } else {
      sgt::chacha20_keystream(key, 3, counter, blocks, out.data());
    }
    counter += blocks;
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double iterations = static_cast<double>(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(iterations * static_cast<double>(blocks * 64) * 1e-9,
                                              benchmark::Counter::kIsRate);
}
BENCHMARK_TEMPLATE(BM_ChaCha20Keystream, false)->Arg(16)->Arg(1024)->Name("ChaCha20Keystream");
BENCHMARK_TEMPLATE(BM_ChaCha20Keystream, true)
    ->Arg(16)
    ->Arg(1024)
    ->Name("ChaCha20KeystreamReference");

void BM_SecureNormalFill(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<float> out(n), ref(n);
  {
    auto check = sgt::SecureNormalGenerator::with_key_for_testing(bench_key());
    check.fill(out.data(), n);
    sgt::secure_normal_fill_reference(bench_key(), ref.data(), n);
    if (std::memcmp(out.data(), ref.data(), n * sizeof(float)) != 0) {
      state.SkipWithError(
          "SecureNormalGenerator::fill disagrees with secure_normal_fill_reference");
      return;
    }
  }
  sgt::SecureNormalGenerator gen;
  for (auto _ : state) {
    gen.fill(out.data(), n);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, n, n * sizeof(float));
}
BENCHMARK(BM_SecureNormalFill)->Arg(4096)->Arg(1 << 20)->Name("SecureNormalFill");

// The per-call price of "a fresh generator for every call": one getrandom of 32 bytes.
void BM_SecureNormalConstruct(benchmark::State& state) {
  for (auto _ : state) {
    sgt::SecureNormalGenerator gen;
    benchmark::DoNotOptimize(&gen);
  }
}
BENCHMARK(BM_SecureNormalConstruct)->Name("SecureNormalConstruct");

void BM_TorchNormalFill(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  const auto path = state.range(1) == 0 ? sgt::TorchBoxMuller::kAvx2 : sgt::TorchBoxMuller::kScalar;
  std::vector<float> out(n), other(n);
  {
    // The two Box-Muller paths are independent computations of the same math: they must agree to
    // a few e-6 (see the test), on the very values timed here.
    sgt::TorchNormalGenerator a(7, path);
    sgt::TorchNormalGenerator b(7, path == sgt::TorchBoxMuller::kAvx2 ? sgt::TorchBoxMuller::kScalar
                                                                      : sgt::TorchBoxMuller::kAvx2);
    a.fill(out.data(), n);
    b.fill(other.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      if (!(std::fabs(out[i] - other[i]) < 4e-6f)) {
        state.SkipWithError("the AVX2 and scalar Box-Muller paths disagree");
        return;
      }
    }
  }
  sgt::TorchNormalGenerator gen(7, path);
  for (auto _ : state) {
    gen.fill(out.data(), n);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_rates(state, n, n * sizeof(float));
  state.SetLabel(path == sgt::TorchBoxMuller::kAvx2 ? "avx2" : "scalar");
}
BENCHMARK(BM_TorchNormalFill)
    ->ArgsProduct({{8, 4096, 1 << 20}, {0, 1}})
    ->ArgNames({"n", "scalar"})
    ->Name("TorchNormalFill");

}  // namespace

BENCHMARK_MAIN();
