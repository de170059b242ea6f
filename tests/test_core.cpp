// Core pieces: sgt::Error context, dtype conversions, tensor views, the thread pool, the SIMD shim.
#include <doctest/doctest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

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

TEST_CASE("SIMD shim: reduce_add, reduce_max, fma and widening loads") {
  constexpr std::size_t n = sgt::simd::kFloatLanes;
  std::vector<float> a(n), b(n), c(n);
  std::vector<sgt::bfloat16> abf(n);
  std::vector<sgt::float16> ah(n);
  float sum = 0, mx = -1e30f;
  for (std::size_t i = 0; i < n; ++i) {
    a[i] = 0.25f * float(i) - 1.0f;
    b[i] = 1.5f + float(i);
    c[i] = -0.5f * float(i);
    abf[i] = sgt::to_bfloat16(a[i]);
    ah[i] = sgt::to_float16(a[i]);
    sum += a[i];
    mx = std::max(mx, a[i]);
  }
  const auto va = sgt::simd::load_as_float(a.data());
  CHECK(sgt::simd::reduce_add(va) == doctest::Approx(sum));
  CHECK(sgt::simd::reduce_max(va) == mx);
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

TEST_CASE("parallel_for accepts named lambdas, const lambdas and function objects") {
  sgt::ThreadPool pool(2);
  std::atomic<int> n{0};
  auto body = [&](std::size_t b, std::size_t e) { n += int(e - b); };
  pool.parallel_for(10, 3, body);
  const auto const_body = body;
  pool.parallel_for(10, 3, const_body);
  CHECK(n == 20);
}
