// Core pieces: sgt::Error context, dtype conversions, tensor views, the thread pool, the SIMD shim.
#include <doctest/doctest.h>

#include "support/enum_table_check.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <sgt/sgt.hpp>

#if defined(__F16C__)
#include <immintrin.h>
#endif

TEST_CASE("Error carries its context in fields and in what()") {
  sgt::Error e("shape mismatch");
  e.at_tensor("embed_tokens.weight").at_file("model.safetensors").at_position(7);
  CHECK(e.message() == "shape mismatch");
  CHECK(e.file() == "model.safetensors");
  CHECK(e.tensor() == "embed_tokens.weight");
  CHECK(e.position() == 7);
  CHECK(std::string(e.what()) ==
        "model.safetensors: tensor 'embed_tokens.weight': position 7: shape mismatch");
  e.at_file("outer.safetensors");  // the innermost context wins
  CHECK(e.file() == "model.safetensors");
  e.at_key("hidden_size");
  CHECK(std::string(e.what()).find("key 'hidden_size'") != std::string::npos);
}

TEST_CASE("f16 and bf16 widen exactly and narrow back to the same bits") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto h = sgt::float16{static_cast<std::uint16_t>(b)};
    const float f = sgt::to_float(h);
    if (std::isnan(f)) {
      CHECK(std::isnan(sgt::to_float(sgt::to_float16(f))));
    } else {
      REQUIRE(sgt::to_float16(f).bits == b);
    }
    const auto bf = sgt::bfloat16{static_cast<std::uint16_t>(b)};
    const float g = sgt::to_float(bf);
    std::uint32_t gb;
    std::memcpy(&gb, &g, 4);
    REQUIRE(gb == (b << 16));
    if (!std::isnan(g)) REQUIRE(sgt::to_bfloat16(g).bits == b);
  }
  CHECK(sgt::to_float(sgt::float16{0x3c00}) == 1.0f);
  CHECK(sgt::to_float(sgt::float16{0x0001}) == std::ldexp(1.0f, -24));
  CHECK(sgt::to_float(sgt::float16{0x7bff}) == 65504.0f);
  CHECK(std::isinf(sgt::to_float(sgt::float16{0xfc00})));
}

TEST_CASE("narrowing rounds to nearest, ties to even") {
  // bf16: 1 + 2^-8 is halfway between 1 and 1 + 2^-7; the tie goes to the even mantissa (1).
  CHECK(sgt::to_bfloat16(1.0f + std::ldexp(1.0f, -8)).bits == 0x3f80);
  CHECK(sgt::to_bfloat16(1.0f + 3 * std::ldexp(1.0f, -8)).bits == 0x3f82);
  CHECK(sgt::to_bfloat16(std::ldexp(1.0f, 128 - 1) * 1.9999999f).bits == 0x7f80);  // overflow
  // f16: 65520 is the first value that rounds to inf; 65519 rounds to the max finite value.
  CHECK(sgt::to_float16(65519.0f).bits == 0x7bff);
  CHECK(sgt::to_float16(65520.0f).bits == 0x7c00);
  CHECK(sgt::to_float16(std::ldexp(1.0f, -25)).bits == 0x0000);   // tie to even: 0
  CHECK(sgt::to_float16(std::ldexp(1.5f, -25)).bits == 0x0001);   // above the tie
  CHECK(sgt::to_float16(std::ldexp(3.0f, -25)).bits == 0x0002);   // tie 1.5 ulp -> 2
  CHECK(sgt::to_float16(-std::ldexp(1.0f, -14)).bits == 0x8400);  // smallest normal
}

#if defined(__F16C__)
TEST_CASE("to_float16 agrees with the F16C instruction on random and edge values") {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<std::uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    std::uint32_t u = bits(rng);
    if (i % 2) u = (u & 0x80ffffffu) | ((100u + u % 50u) << 23);  // concentrate near f16's range
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) continue;
    const auto hw = static_cast<std::uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
    REQUIRE_MESSAGE(sgt::to_float16(f).bits == hw, "input bits " << u);
  }
}
#endif

namespace {
std::uint32_t bits_of(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace

TEST_CASE("bf16_round_bits: nearest even, quiet NaNs, denormals read as zero") {
  using sgt::simd::bf16_round_bits;
  CHECK(bf16_round_bits(1.0f) == 0x3f80);
  CHECK(bf16_round_bits(float_of(0x3f808000u)) == 0x3f80);  // tie, even mantissa stays
  CHECK(bf16_round_bits(float_of(0x3f818000u)) == 0x3f82);  // tie, odd mantissa rounds up
  CHECK(bf16_round_bits(float_of(0x3f808001u)) == 0x3f81);  // above the tie
  CHECK(bf16_round_bits(float_of(0x7f7fffffu)) == 0x7f80);  // rounds past the largest: inf
  CHECK(bf16_round_bits(-std::numeric_limits<float>::infinity()) == 0xff80);
  CHECK(bf16_round_bits(float_of(0x7f800001u)) == 0x7fc0);  // signaling NaN made quiet
  CHECK(bf16_round_bits(float_of(0xffc12345u)) == 0xffc1);  // NaN keeps its sign and top bits
  CHECK(bf16_round_bits(float_of(0x00000001u)) == 0x0000);  // denormals: zero of their sign
  CHECK(bf16_round_bits(float_of(0x807fffffu)) == 0x8000);
  CHECK(bf16_round_bits(float_of(0x00800000u)) == 0x0080);  // smallest normal stays
  // On normal values it is the library's to_bfloat16 (round to nearest even).
  std::mt19937 rng(99);
  std::uniform_int_distribution<std::uint32_t> any;
  for (int i = 0; i < 100000; ++i) {
    const std::uint32_t u = (any(rng) & 0x807fffffu) | ((1u + any(rng) % 253u) << 23);
    REQUIRE(bf16_round_bits(float_of(u)) == sgt::to_bfloat16(float_of(u)).bits);
  }
}

TEST_CASE("dot_bf16_pairs: odd then even product, each one fused multiply-add") {
  // The emulation against scalar std::fma lane by lane, and (on CPUs with AVX512-BF16) the
  // instruction against the emulation, bit for bit, on random normal data with cancellation.
  using sgt::simd::FloatBatch;
  using sgt::simd::PairBatch;
  constexpr std::size_t L = sgt::simd::kFloatLanes;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::size_t compared = 0;
  for (int it = 0; it < 20000; ++it) {
    alignas(64) std::uint32_t pairs[L];
    alignas(64) float acc[L], emulated[L], expected[L], hardware[L];
    const float scale = it % 3 == 0 ? 1e-3f : 1.0f;
    for (std::size_t i = 0; i < L; ++i) {
      pairs[i] = sgt::simd::bf16_round_pair(nd(rng), nd(rng) * scale);
      acc[i] = it % 5 == 0 ? nd(rng) * 1e-6f : nd(rng);
    }
    const std::uint32_t w = sgt::simd::bf16_round_pair(nd(rng), nd(rng));
    const PairBatch x = PairBatch::load_aligned(pairs);
    const FloatBatch a = FloatBatch::load_aligned(acc);
    sgt::simd::dot_bf16_pairs_emulated(a, x, w).store_aligned(emulated);
    sgt::simd::dot_bf16_pairs(a, x, w).store_aligned(hardware);
    for (std::size_t i = 0; i < L; ++i) {
      const float step =
          std::fma(float_of(pairs[i] & 0xffff0000u), float_of(w & 0xffff0000u), acc[i]);
      expected[i] = std::fma(float_of(pairs[i] << 16), float_of(w << 16), step);
      REQUIRE(bits_of(emulated[i]) == bits_of(expected[i]));
      REQUIRE(bits_of(hardware[i]) == bits_of(expected[i]));
      ++compared;
    }
  }
  CHECK(compared == 20000 * L);
  MESSAGE(
      "dot_bf16_pairs runs " << (sgt::simd::kHasBf16DotProduct ? "vdpbf16ps" : "the emulation"));
}

TEST_CASE("dot_bf16_weight_pairs equals dot_bf16_pairs with the roles swapped, denormals too") {
  // The narrow matmul path broadcasts the activation pair and holds one weight pair per lane; it
  // must give the bits the tile (weight broadcast) gives, on the instruction and the emulation,
  // including denormal weights, which both read as zero.
  using sgt::simd::FloatBatch;
  using sgt::simd::PairBatch;
  constexpr std::size_t L = sgt::simd::kFloatLanes;
  std::mt19937 rng(17);
  std::normal_distribution<float> nd;
  std::size_t denormal_weights = 0;
  for (int it = 0; it < 5000; ++it) {
    alignas(64) std::uint32_t w_pairs[L];
    alignas(64) float acc[L], swapped[L], swapped_emulated[L];
    for (std::size_t i = 0; i < L; ++i) {
      // Every 7th weight half a denormal (exponent bits zero, mantissa not), of either sign.
      const auto half = [&](std::size_t j) -> std::uint32_t {
        if ((it * L + i + j) % 7 == 0) {
          ++denormal_weights;
          return ((it + j) % 2 ? 0x8000u : 0u) | (1u + (rng() % 0x7fu));
        }
        return sgt::simd::bf16_round_bits(nd(rng));
      };
      w_pairs[i] = half(0) | (half(1) << 16);
      acc[i] = it % 5 == 0 ? nd(rng) * 1e-6f : nd(rng);
    }
    const std::uint32_t x = sgt::simd::bf16_round_pair(nd(rng), nd(rng) * (it % 3 ? 1.0f : 1e-3f));
    const FloatBatch a = FloatBatch::load_aligned(acc);
    const PairBatch w = PairBatch::load_aligned(w_pairs);
    sgt::simd::dot_bf16_weight_pairs(a, w, x).store_aligned(swapped);
    sgt::simd::dot_bf16_weight_pairs_emulated(a, w, x).store_aligned(swapped_emulated);
    for (std::size_t i = 0; i < L; ++i) {
      alignas(64) float tile[L];
      sgt::simd::dot_bf16_pairs(a, PairBatch(x), w_pairs[i]).store_aligned(tile);
      alignas(64) float tile_emulated[L];
      sgt::simd::dot_bf16_pairs_emulated(a, PairBatch(x), w_pairs[i]).store_aligned(tile_emulated);
      REQUIRE(bits_of(swapped[i]) == bits_of(tile[i]));
      REQUIRE(bits_of(swapped_emulated[i]) == bits_of(tile_emulated[i]));
    }
  }
  CHECK(denormal_weights > 1000);
}

TEST_CASE("load_transposed_words reads kFloatLanes rows at any alignment and transposes them") {
  using sgt::simd::PairBatch;
  constexpr std::size_t L = sgt::simd::kFloatLanes;
  std::vector<unsigned char> bytes(L * 1000 + 64);
  std::mt19937 rng(23);
  for (auto& b : bytes) b = static_cast<unsigned char>(rng());
  for (std::size_t misalign : {0, 1, 2, 3, 6}) {
    const void* rows[L];
    for (std::size_t j = 0; j < L; ++j) rows[j] = bytes.data() + misalign + j * 997;
    for (std::size_t offset : {std::size_t{0}, std::size_t{4}, std::size_t{64}, std::size_t{130}}) {
      PairBatch out[L];
      sgt::simd::load_transposed_words(rows, offset, out);
      for (std::size_t i = 0; i < L; ++i) {
        alignas(64) std::uint32_t lanes[L];
        out[i].store_aligned(lanes);
        for (std::size_t j = 0; j < L; ++j) {
          std::uint32_t expected;
          std::memcpy(&expected, static_cast<const unsigned char*>(rows[j]) + offset + 4 * i, 4);
          REQUIRE(lanes[j] == expected);
        }
      }
    }
  }
}

TEST_CASE("bf16_round_pairs equals bf16_round_pair on every class of value") {
  constexpr std::size_t L = sgt::simd::kFloatLanes;
  std::mt19937 rng(11);
  std::uniform_int_distribution<std::uint32_t> any;
  for (int it = 0; it < 50000; ++it) {
    float in[2 * L];
    for (std::size_t i = 0; i < 2 * L; ++i) {
      std::uint32_t u = any(rng);
      if (i % 4 == 1) u &= 0x807fffffu;                 // denormal or zero
      if (i % 8 == 3) u |= 0x7f800000u;                 // infinity or NaN
      if (i % 8 == 5) u = (u & 0xffff0000u) | 0x8000u;  // a tie
      in[i] = float_of(u);
    }
    std::uint32_t out[L];
    sgt::simd::bf16_round_pairs(in, out);
    for (std::size_t i = 0; i < L; ++i)
      REQUIRE(out[i] == sgt::simd::bf16_round_pair(in[2 * i], in[2 * i + 1]));
  }
}

TEST_CASE("the name tables of Precision, DType, AttentionAlgorithm and NoiseSource") {
  const auto check_table = [](const auto& t, int n) { sgt_test::check_enum_table(t, n); };
  check_table(sgt::kPrecisionNames, 3);
  check_table(sgt::kDTypeNames, 3);
  check_table(sgt::kAttentionAlgorithmNames, 3);
  check_table(sgt::kNoiseSourceNames, 3);
  // The spellings flags, safetensors headers and reports use.
  CHECK(sgt::enum_names_list(sgt::kPrecisionNames, "or") == "auto, f32 or bf16");
  CHECK(sgt::enum_names_list(sgt::kDTypeNames) == "F32, BF16 and F16");
  CHECK(sgt::enum_names_list(sgt::kAttentionAlgorithmNames, "or") == "auto, sdpa or flash");
  CHECK(sgt::enum_names_list(sgt::kNoiseSourceNames) == "secure, torch and injected");
  CHECK(std::string(sgt::precision_name(sgt::Precision::Bf16)) == "bf16");
  CHECK(std::string(sgt::dtype_name(sgt::DType::BF16)) == "BF16");
  static_assert(sgt::dtype_name(sgt::DType::F16)[1] == '1', "dtype_name stays constexpr");
  CHECK(sgt::parse_dtype("F16") == sgt::DType::F16);
  CHECK_FALSE(sgt::parse_dtype("f16").has_value());  // safetensors spells dtypes in capitals
  CHECK_FALSE(sgt::enum_from_name(sgt::kPrecisionNames, "BF16").has_value());
}

TEST_CASE("TensorView shape helpers and AnyTensorView dtype checks") {
  std::vector<float> data(2 * 3 * 4);
  sgt::TensorView<float> v(data.data(), {2, 3, 4});
  CHECK(v.rank() == 3);
  CHECK(v.size() == 24);
  CHECK(v.rows() == 6);
  CHECK(v.cols() == 4);
  CHECK(v.row(2) == data.data() + 8);
  CHECK(v.shape_string() == "[2, 3, 4]");
  sgt::TensorView<const float> cv = v;
  sgt::AnyTensorView any(cv);
  CHECK(any.dtype() == sgt::DType::F32);
  CHECK(any.byte_size() == 96);
  CHECK(any.as<float>().data() == data.data());
  CHECK_THROWS_AS(any.as<sgt::bfloat16>(), sgt::Error);
  CHECK_THROWS_AS(sgt::TensorView<float>(data.data(), {1, 1, 1, 1, 1}), sgt::Error);
}

TEST_CASE("parallel_for visits every chunk once, with boundaries independent of thread count") {
  for (std::size_t threads : {1u, 2u, 3u, 5u}) {
    sgt::ThreadPool pool(threads);
    CHECK(pool.num_threads() == threads);
    for (std::size_t n : {0u, 1u, 7u, 64u, 1000u}) {
      std::vector<std::atomic<int>> hits(n);
      std::vector<std::size_t> begins(n, SIZE_MAX);
      pool.parallel_for(n, 7, [&](std::size_t b, std::size_t e) {
        CHECK(b % 7 == 0);
        CHECK(e == std::min(n, b + 7));
        for (std::size_t i = b; i < e; ++i) hits[i]++;
      });
      for (std::size_t i = 0; i < n; ++i) REQUIRE(hits[i] == 1);
    }
  }
}

TEST_CASE("parallel_for rethrows a chunk's exception and the pool stays usable") {
  sgt::ThreadPool pool(3);
  CHECK_THROWS_AS(pool.parallel_for(100, 1,
                                    [](std::size_t b, std::size_t) {
                                      if (b == 42) throw sgt::Error("chunk 42");
                                    }),
                  sgt::Error);
  std::atomic<int> count{0};
  pool.parallel_for(100, 1, [&](std::size_t, std::size_t) { count++; });
  CHECK(count == 100);
  // Nested calls run serially inside the outer chunk instead of deadlocking.
  std::atomic<int> inner{0};
  pool.parallel_for(4, 1, [&](std::size_t, std::size_t) {
    pool.parallel_for(10, 1, [&](std::size_t, std::size_t) { inner++; });
  });
  CHECK(inner == 40);
  // A null pool runs serially.
  int serial = 0;
  sgt::parallel_for(nullptr, 10, 3, [&](std::size_t b, std::size_t e) { serial += int(e - b); });
  CHECK(serial == 10);
}

// Runs `body` in a child process under a 20 s alarm and returns its wait status: a regression
// that aborts (std::terminate) or hangs then fails one test instead of the whole program.
template <class Body>
int in_child_process(Body&& body) {
  const pid_t child = ::fork();
  if (child == 0) {
    std::signal(SIGABRT, SIG_DFL);  // the test runner's crash report belongs to the parent
    ::alarm(20);
    int code = 99;
    try {
      code = body();
    } catch (...) {
    }
    std::_Exit(code);
  }
  int status = -1;
  if (child > 0) ::waitpid(child, &status, 0);
  return status;
}

void check_exit_code(int status, int code) {
  REQUIRE_MESSAGE(WIFEXITED(status),
                  "killed by signal " << WTERMSIG(status) << " (6: terminate, 14: a hang)");
  CHECK(WEXITSTATUS(status) == code);
}

TEST_CASE("a pool that cannot start a worker joins those it started and throws sgt::Error") {
  // The third start fails as pthread_create does when the system is out of threads. The exit
  // code says what went wrong: 1 no error, 2 the message, 3 a worker not joined, 4 another type.
  check_exit_code(in_child_process([] {
                    std::atomic<int> started{0}, finished{0};
                    try {
                      sgt::ThreadPool pool(5, [&](std::function<void()> body) {
                        if (started == 2)
                          throw std::system_error(EAGAIN, std::generic_category(), "no thread");
                        ++started;
                        return std::thread([&finished, body = std::move(body)] {
                          body();
                          ++finished;
                        });
                      });
                      return 1;
                    } catch (const sgt::Error& e) {
                      const std::string m = e.what();
                      if (m.find("worker thread 3 of 4") == std::string::npos ||
                          m.find("no thread") == std::string::npos)
                        return 2;
                      return finished == 2 ? 0 : 3;
                    } catch (...) {
                      return 4;
                    }
                  }),
                  0);
  // A starter that hands back no thread is a failure too, not a pool short of a worker.
  check_exit_code(in_child_process([] {
                    int calls = 0;
                    try {
                      sgt::ThreadPool pool(3, [&](std::function<void()> body) {
                        return ++calls == 1 ? std::thread(std::move(body)) : std::thread();
                      });
                      return 1;
                    } catch (const sgt::Error&) {
                      return 0;
                    }
                  }),
                  0);
  // The starter is used for every worker, and a pool built with it works.
  std::atomic<int> started{0};
  sgt::ThreadPool pool(4, [&](std::function<void()> body) {
    ++started;
    return std::thread(std::move(body));
  });
  CHECK(started == 3);
  std::atomic<int> count{0};
  pool.parallel_for(100, 1, [&](std::size_t, std::size_t) { count++; });
  CHECK(count == 100);
}

TEST_CASE("SIMD shim: reduce_add, fma and widening loads") {
  constexpr std::size_t n = sgt::simd::kFloatLanes;
  std::vector<float> a(n), b(n), c(n);
  std::vector<sgt::bfloat16> abf(n);
  std::vector<sgt::float16> ah(n);
  float sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    a[i] = 0.25f * float(i) - 1.0f;
    b[i] = 1.5f + float(i);
    c[i] = -0.5f * float(i);
    abf[i] = sgt::to_bfloat16(a[i]);
    ah[i] = sgt::to_float16(a[i]);
    sum += a[i];
  }
  const auto va = sgt::simd::load_as_float(a.data());
  CHECK(sgt::simd::reduce_add(va) == doctest::Approx(sum));
  const auto vf =
      sgt::simd::fma(va, sgt::simd::load_as_float(b.data()), sgt::simd::load_as_float(c.data()));
  alignas(64) float out[n];
  vf.store_aligned(out);
  for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == std::fma(a[i], b[i], c[i]));
  sgt::simd::load_as_float(abf.data()).store_aligned(out);
  for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == sgt::to_float(abf[i]));
  sgt::simd::load_as_float(ah.data()).store_aligned(out);
  for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == sgt::to_float(ah[i]));
}

TEST_CASE(
    "SIMD shim: fma rounds once on every build; multiply_add is fused only with hardware FMA") {
  // x * y = (1 + 2^-23)(1 - 2^-23) = 1 - 2^-46 exactly, which rounds to 1 in f32. Adding -1 leaves
  // -2^-46 when the product is not rounded first (fused) and 0 when it is. So a two-rounding fma
  // (xsimd 8.1 on SSE2) gives 0 here and a fused one -2^-46, in every lane.
  constexpr std::size_t n = sgt::simd::kFloatLanes;
  const float x = 1.0f + std::ldexp(1.0f, -23);
  const float y = 1.0f - std::ldexp(1.0f, -23);
  const float z = -1.0f;
  const float fused = std::fma(x, y, z);
  volatile float rounded_product = x * y;  // volatile: the compiler may not contract it into z
  const float two_roundings = rounded_product + z;
  REQUIRE(fused == -std::ldexp(1.0f, -46));
  REQUIRE(two_roundings == 0.0f);  // the answers differ, so the checks below can fail
  using sgt::simd::FloatBatch;
  alignas(64) float out[n];
  sgt::simd::fma(FloatBatch(x), FloatBatch(y), FloatBatch(z)).store_aligned(out);
  for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == fused);
  sgt::simd::multiply_add(FloatBatch(x), FloatBatch(y), FloatBatch(z)).store_aligned(out);
  const float expected_multiply_add = sgt::simd::kHasHardwareFma ? fused : two_roundings;
  for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == expected_multiply_add);
  MESSAGE("instruction set " << std::string(sgt::simd::arch_name()) << ", hardware FMA "
                             << sgt::simd::kHasHardwareFma);
}

namespace {

// Every count from 0 to a full register, against the scalar widening; the values past `count`
// are NaN, so a lane that read one would show it.
template <class T>
void check_partial_loads(const char* dtype) {
  constexpr std::size_t n = sgt::simd::kFloatLanes;
  std::vector<T> src(n);
  for (std::size_t count = 0; count <= n; ++count) {
    for (std::size_t i = 0; i < n; ++i) {
      const float v = i < count ? 0.375f * float(i) - 2.5f : NAN;
      if constexpr (std::is_same_v<T, float>) src[i] = v;
      if constexpr (std::is_same_v<T, sgt::bfloat16>) src[i] = sgt::to_bfloat16(v);
      if constexpr (std::is_same_v<T, sgt::float16>) src[i] = sgt::to_float16(v);
    }
    alignas(64) float out[n];
    sgt::simd::load_partial_as_float(src.data(), count).store_aligned(out);
    for (std::size_t i = 0; i < n; ++i) {
      const float want = i < count ? sgt::to_float(src[i]) : 0.0f;
      INFO(dtype, " count ", count, " lane ", i);
      CHECK(std::memcmp(&out[i], &want, sizeof(float)) == 0);
    }
  }
}

// reduce_accumulators<Count> against exact scalar sums (small integers add exactly in any
// order), and, on random values, each sum bit-identical to the same accumulator reduced alone:
// the sum of one output must not depend on how many are reduced together.
template <std::size_t Count>
void check_reduce_accumulators(std::mt19937& rng) {
  constexpr std::size_t n = sgt::simd::kFloatLanes;
  using sgt::simd::FloatBatch;
  std::uniform_int_distribution<int> small(-64, 64);
  std::uniform_real_distribution<float> real(-1.0f, 1.0f);
  for (int pass = 0; pass < 2; ++pass) {
    FloatBatch acc[Count];
    float want[Count];
    alignas(64) float lanes[n];
    for (std::size_t a = 0; a < Count; ++a) {
      want[a] = 0.0f;
      for (std::size_t i = 0; i < n; ++i) {
        lanes[i] = pass == 0 ? float(small(rng)) : real(rng);
        want[a] += lanes[i];
      }
      acc[a] = FloatBatch::load_aligned(lanes);
    }
    float got[Count];
    sgt::simd::reduce_accumulators<Count>(acc, got);
    for (std::size_t a = 0; a < Count; ++a) {
      INFO("Count ", Count, " accumulator ", a);
      float alone = 0.0f;
      sgt::simd::reduce_accumulators<1>(&acc[a], &alone);
      CHECK(std::memcmp(&got[a], &alone, sizeof(float)) == 0);
      if (pass == 0) CHECK(got[a] == want[a]);
      if (pass == 1) CHECK(got[a] == doctest::Approx(want[a]).epsilon(1e-5));
    }
  }
}

template <std::size_t... C>
void check_reduce_accumulators_all(std::mt19937& rng, std::index_sequence<C...>) {
  (check_reduce_accumulators<C + 1>(rng), ...);
}

// Distance in representable floats between two finite floats of the same sign.
std::int64_t ulp_distance(float a, float b) {
  std::int32_t ia, ib;
  std::memcpy(&ia, &a, sizeof ia);
  std::memcpy(&ib, &b, sizeof ib);
  return std::llabs(std::int64_t(ia) - std::int64_t(ib));
}

}  // namespace

TEST_CASE("SIMD shim: partial loads read exactly the first count values of every dtype") {
  check_partial_loads<float>("f32");
  check_partial_loads<sgt::bfloat16>("bf16");
  check_partial_loads<sgt::float16>("f16");
}

TEST_CASE("SIMD shim: reduce_accumulators sums every accumulator the same way for every Count") {
  std::mt19937 rng(11);
  // The matmul micro-kernel reduces MR x NR = 1..4 x 1..6 accumulators at once; 1..24 covers
  // them, and one more than 16 (a full and a partial group on AVX-512).
  check_reduce_accumulators_all(rng, std::make_index_sequence<24>{});
  check_reduce_accumulators<33>(rng);
}

TEST_CASE("SIMD shim: max, select, exp and keep_in_register") {
  constexpr std::size_t n = sgt::simd::kFloatLanes;
  using sgt::simd::FloatBatch;
  alignas(64) float a[n], b[n], out[n];
  for (std::size_t i = 0; i < n; ++i) {
    a[i] = float(i % 3) - 1.0f;
    b[i] = 0.5f * float(n - i) - 2.0f;
  }
  const FloatBatch va = FloatBatch::load_aligned(a), vb = FloatBatch::load_aligned(b);
  sgt::simd::max(va, vb).store_aligned(out);
  for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == std::max(a[i], b[i]));
  sgt::simd::select(va < vb, va, vb).store_aligned(out);
  for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == (a[i] < b[i] ? a[i] : b[i]));
  sgt::simd::select(va == FloatBatch(0.0f), FloatBatch(7.0f), vb).store_aligned(out);
  for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == (a[i] == 0.0f ? 7.0f : b[i]));

  FloatBatch kept = vb;
  sgt::simd::keep_in_register(kept);
  kept.store_aligned(out);
  CHECK(std::memcmp(out, b, sizeof out) == 0);

  // exp: within a few ulp of std::exp over the range the softmax uses (s - max <= 0) and beyond,
  // and exactly 0 at -inf (masked scores) and 1 at 0.
  std::int64_t worst = 0;
  for (float x0 = -87.0f; x0 + 0.37f * float(n) < 88.0f; x0 += 0.37f * float(n)) {
    for (std::size_t i = 0; i < n; ++i) a[i] = x0 + 0.37f * float(i);
    sgt::simd::exp(FloatBatch::load_aligned(a)).store_aligned(out);
    for (std::size_t i = 0; i < n; ++i) {
      const std::int64_t d = ulp_distance(out[i], std::exp(a[i]));
      worst = std::max(worst, d);
      INFO("exp(", a[i], ")");
      CHECK(d <= 4);
    }
  }
  MESSAGE("simd::exp: worst error ", worst, " ulp");
  sgt::simd::exp(FloatBatch(-INFINITY)).store_aligned(out);
  for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == 0.0f);
  sgt::simd::exp(FloatBatch(0.0f)).store_aligned(out);
  for (std::size_t i = 0; i < n; ++i) CHECK(out[i] == 1.0f);
}

TEST_CASE("SIMD shim: tanh within 2 ulp of tanh in double; map_in_place's tail is position-free") {
  constexpr std::size_t n = sgt::simd::kFloatLanes;
  using sgt::simd::FloatBatch;
  alignas(64) float a[n], out[n];
  std::int64_t worst = 0;
  // Both sides of the |x| = 0.625 switch between xsimd's polynomial and its exp formula, tiny
  // values (tanh x = x) and the saturated range.
  for (float x0 = -20.0f; x0 < 20.0f; x0 += 0.0137f * float(n)) {
    for (std::size_t i = 0; i < n; ++i) a[i] = x0 + 0.0137f * float(i);
    sgt::simd::tanh(FloatBatch::load_aligned(a)).store_aligned(out);
    for (std::size_t i = 0; i < n; ++i) {
      const std::int64_t d = ulp_distance(out[i], static_cast<float>(std::tanh(double(a[i]))));
      worst = std::max(worst, d);
      INFO("tanh(", a[i], ")");
      CHECK(d <= 2);
    }
  }
  MESSAGE("simd::tanh: worst error ", worst, " ulp");
  for (float x : {1e-30f, -3e-8f, 0.6249f, 0.6251f, -0.625f}) {
    sgt::simd::tanh(FloatBatch(x)).store_aligned(out);
    INFO("tanh(", x, ")");
    CHECK(ulp_distance(out[0], static_cast<float>(std::tanh(double(x)))) <= 2);
  }
  sgt::simd::tanh(FloatBatch(INFINITY)).store_aligned(out);
  CHECK(out[0] == 1.0f);
  sgt::simd::tanh(FloatBatch(-INFINITY)).store_aligned(out);
  CHECK(out[0] == -1.0f);
  sgt::simd::tanh(FloatBatch(NAN)).store_aligned(out);
  CHECK(std::isnan(out[0]));

  // map_in_place over 3 registers and a bit: every prefix length gives the same bits per element
  // (from 1: an empty vector's data() may be null, which memcmp must not be given).
  std::vector<float> whole(3 * n + 3);
  for (std::size_t i = 0; i < whole.size(); ++i) whole[i] = 0.3f * float(i) - 4.0f;
  const auto f = [](FloatBatch x) { return sgt::simd::tanh(x) * FloatBatch(3.0f) + x; };
  std::vector<float> all = whole;
  sgt::simd::map_in_place(all.data(), all.size(), f);
  for (std::size_t len = 1; len <= whole.size(); ++len) {
    std::vector<float> part(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(len));
    sgt::simd::map_in_place(part.data(), len, f);
    INFO("length ", len);
    CHECK(std::memcmp(part.data(), all.data(), len * sizeof(float)) == 0);
  }
  // The two-operand form: the same per element, and p[i] depends on p[i] and q[i] only.
  std::vector<float> other(whole.size());
  for (std::size_t i = 0; i < other.size(); ++i) other[i] = 1.5f - 0.2f * float(i);
  const auto g = [](FloatBatch x, FloatBatch y) { return sgt::simd::tanh(x) * y + x; };
  std::vector<float> both = whole;
  sgt::simd::map_in_place(both.data(), other.data(), both.size(), g);
  for (std::size_t i = 0; i < whole.size(); ++i) {
    INFO("element ", i);
    const double x = whole[i], y = other[i], expected = std::tanh(x) * y + x;
    CHECK(std::fabs(both[i] - expected) <= 4e-7 * (std::fabs(x) + std::fabs(y) + 1.0));
  }
  for (std::size_t len = 1; len <= whole.size(); ++len) {
    std::vector<float> part(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(len));
    sgt::simd::map_in_place(part.data(), other.data(), len, g);
    INFO("length ", len);
    CHECK(std::memcmp(part.data(), both.data(), len * sizeof(float)) == 0);
  }
}

TEST_CASE("parallel_for accepts named lambdas, const lambdas and function objects") {
  sgt::ThreadPool pool(2);
  std::atomic<int> n{0};
  auto body = [&](std::size_t b, std::size_t e) { n += int(e - b); };
  pool.parallel_for(10, 3, body);
  const auto const_body = body;
  pool.parallel_for(10, 3, const_body);
  CHECK(n == 20);
}

TEST_CASE("an error's message never carries invalid UTF-8: such bytes are written \\xNN") {
  const sgt::Error e = sgt::Error("bad \xff byte, cut \xe2\x82 and good \xe2\x82\xac")
                           .at_key("k\xc0\xaf");  // an overlong '/'
  CHECK(std::string(e.what()) == "key 'k\\xc0\\xaf': bad \\xff byte, cut \\xe2\\x82 and good \xe2\x82\xac");
  CHECK(e.message() == "bad \xff byte, cut \xe2\x82 and good \xe2\x82\xac");  // the field is kept as given
  CHECK(std::string(sgt::Error("surrogate \xed\xa0\x80").what()) == "surrogate \\xed\\xa0\\x80");
}

TEST_CASE("an error is one line: control characters in what it quotes are written \\xNN") {
  // A chat's key with a newline in it (found by replaying fuzz_text_chat_json's corpus through
  // the sgt tool: its error came out as three lines).
  const sgt::Error e = sgt::Error("unknown key").at_key("a\nb\r\tc\x7f").at_file("chat.json");
  CHECK(std::string(e.what()) == "chat.json: key 'a\\x0ab\\x0d\\x09c\\x7f': unknown key");
  CHECK(std::string(sgt::Error(std::string("nul \0 byte", 10)).what()) == "nul \\x00 byte");
}
