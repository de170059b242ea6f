// The affine SGT formula: optimized vs reference, thread-count determinism, select semantics,
// clamping.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <sgt/kernels/noise_formula.hpp>

#include "support/kernel_harness.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_noise_formula {

namespace {
struct Case {
  std::size_t tokens, hidden;
  std::vector<float> x, mu, sigma, eps;
  std::vector<std::uint8_t> protect;
  Case(std::size_t t, std::size_t h, unsigned seed)
      : tokens(t), hidden(h), x(t * h), mu(t * h), sigma(t * h), eps(t * h), protect(t) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n;
    for (std::size_t i = 0; i < t * h; ++i) {
      x[i] = n(rng);
      mu[i] = 0.1f * n(rng);
      sigma[i] = std::exp(0.3f * n(rng));
      eps[i] = n(rng);
    }
    for (std::size_t i = 0; i < t; ++i) protect[i] = (rng() % 3) != 0;
  }
  sgt::TensorView<const float> v(const std::vector<float>& a) const {
    return {a.data(), {tokens, hidden}};
  }
};
}  // namespace

TEST_CASE("apply_noise matches its reference within 4 ulp and keeps unprotected rows clean") {
  for (std::size_t hidden : {1u, 15u, 16u, 17u, 63u, 64u, 65u, 130u}) {
    for (std::size_t tokens : {1u, 17u}) {
      Case c(tokens, hidden, unsigned(hidden * 31 + tokens));
      std::vector<float> a(tokens * hidden), b(tokens * hidden);
      for (auto range : {sgt::kernels::ValueRange{}, sgt::kernels::ValueRange{-1.5f, std::nullopt},
                         sgt::kernels::ValueRange{-2.0f, 2.0f}}) {
        sgt::ThreadPool pool(3);
        sgt::kernels::apply_noise(c.v(c.x), c.v(c.mu), c.v(c.sigma), c.v(c.eps), c.protect.data(),
                                  range, {a.data(), {tokens, hidden}}, &pool);
        sgt::kernels::apply_noise_reference(c.v(c.x), c.v(c.mu), c.v(c.sigma), c.v(c.eps),
                                            c.protect.data(), range, {b.data(), {tokens, hidden}});
        // The two may differ only by FMA contraction of sigma * eps + (x + mu): one rounding.
        const auto tol = [&](std::size_t i) {
          return 4 * std::numeric_limits<float>::epsilon() *
                 (std::fabs(b[i]) + std::fabs(c.sigma[i] * c.eps[i]));
        };
        sgt_test::require_matches(a, b, tol, [&](std::ostream& os) {
          os << "tokens " << tokens << " hidden " << hidden << " min "
             << range.min.value_or(-INFINITY) << " max " << range.max.value_or(INFINITY);
        });
        for (std::size_t t = 0; t < tokens; ++t) {
          for (std::size_t i = 0; i < hidden; ++i) {
            const std::size_t k = t * hidden + i;
            float expect = c.protect[t] ? (c.x[k] + c.mu[k]) + c.sigma[k] * c.eps[k] : c.x[k];
            if (range.min) expect = std::max(expect, *range.min);
            if (range.max) expect = std::min(expect, *range.max);
            if (!c.protect[t])
              REQUIRE(std::memcmp(&a[k], &expect, 4) == 0);
            else
              REQUIRE(a[k] == doctest::Approx(expect).epsilon(1e-6));
          }
        }
      }
    }
  }
}

TEST_CASE("apply_noise is bit-identical for 1, 2 and 3 threads") {
  Case c(300, 130, 5);
  const sgt::kernels::ValueRange range{-2.0f, 2.0f};
  sgt_test::expect_thread_invariant([&](sgt::ThreadPool* pool) {
    std::vector<float> out(c.x.size());
    sgt::kernels::apply_noise(c.v(c.x), c.v(c.mu), c.v(c.sigma), c.v(c.eps), c.protect.data(),
                              range, {out.data(), {c.tokens, c.hidden}}, pool);
    return out;
  });
}

TEST_CASE("a NaN or inf in mu, sigma or eps at an unprotected position does not leak") {
  Case c(4, 33, 7);
  c.protect = {0, 1, 0, 1};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (std::size_t i = 0; i < 33; ++i) {
    c.mu[i] = nan;                   // token 0, unprotected
    c.sigma[2 * 33 + i] = INFINITY;  // token 2, unprotected
  }
  std::vector<float> out(4 * 33);
  sgt::kernels::apply_noise(c.v(c.x), c.v(c.mu), c.v(c.sigma), c.v(c.eps), c.protect.data(), {},
                            {out.data(), {4, 33}});
  for (std::size_t i = 0; i < 33; ++i) {
    CHECK(out[i] == c.x[i]);
    CHECK(out[2 * 33 + i] == c.x[2 * 33 + i]);
  }
}

TEST_CASE("apply_noise refuses mismatched shapes") {
  Case c(2, 8, 1);
  std::vector<float> out(15);
  CHECK_THROWS_AS(sgt::kernels::apply_noise(c.v(c.x), c.v(c.mu), c.v(c.sigma), c.v(c.eps),
                                            c.protect.data(), {}, {out.data(), {15}}),
                  sgt::Error);
}

}  // namespace test_noise_formula
