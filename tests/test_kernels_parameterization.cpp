// The parameterization kernel (kernels/parameterization.hpp): the parallel path is bit-identical
// for every thread count, and it and its reference agree with the formula of docs/format.md
// section 1.2 evaluated in double, for every type and size. (Agreement with PyTorch for every type is
// checked end to end by test_transform on the e2e fixtures, which use all five.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <sgt/core/thread_pool.hpp>
#include <sgt/kernels/parameterization.hpp>

#include "support/kernel_harness.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_kernels_parameterization {

namespace {

namespace k = sgt::kernels;
using Type = k::ParameterizationType;

// The formula in double, from the parameters as the kernel rounds them.
double formula(const k::Parameterization& p, float raw) {
  const double x = raw;
  switch (p.type) {
    case Type::Identity:
      return x;
    case Type::BoundedTanh:
      return p.bound * std::tanh((x + p.init_shift) / p.bound);
    case Type::Cloak:
      return p.min + (p.max - p.min) * 0.5 * (1 + std::tanh(x / p.shallow));
    case Type::CloakSigmoid:
      return p.min + (p.max - p.min) / (1 + std::exp(-x / p.shallow));
    case Type::Direct:
      return std::min(std::max(x, p.min), p.max);
  }
  return 0;
}

std::vector<k::Parameterization> all_types() {
  std::vector<k::Parameterization> out(5);
  out[0].type = Type::Identity;
  out[1].type = Type::BoundedTanh;
  out[1].bound = 2.5;
  out[1].init_shift = -0.75;
  out[2].type = Type::Cloak;
  out[2].min = 0.001;
  out[2].max = 3.0;
  out[2].shallow = 0.8;
  out[3].type = Type::CloakSigmoid;
  out[3].min = 0.01;
  out[3].max = 1.5;
  out[3].shallow = 1.7;
  out[4].type = Type::Direct;
  out[4].min = -0.5;
  out[4].max = 0.25;
  return out;
}

std::vector<float> random_values(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

}  // namespace

TEST_CASE("apply_parameterization agrees with its reference and the formula, any size and thread count") {
  // Sizes around the 2^14 grain, so that several chunks with a ragged tail occur.
  for (std::size_t n : {std::size_t{1}, std::size_t{17}, std::size_t{16384}, std::size_t{40001}}) {
    const std::vector<float> raw = random_values(n, static_cast<unsigned>(n));
    for (const k::Parameterization& p : all_types()) {
      auto describe = [&] {
        return "n " + std::to_string(n) + ", type " + std::to_string(int(p.type));
      };
      std::vector<float> want = raw;
      k::apply_parameterization_reference(p, sgt::TensorView<float>(want.data(), {n}));
      auto run = [&](sgt::ThreadPool* pool) {
        std::vector<float> got = raw;
        k::apply_parameterization(p, sgt::TensorView<float>(got.data(), {n}), pool);
        return got;
      };
      sgt_test::expect_thread_invariant(run, {1, 2, 3}, describe);
      // An element's bits do not depend on where it sits: the values one by one (each its own
      // partial register) give the bits of the whole run.
      const std::vector<float> got = run(nullptr);
      std::vector<float> one_by_one = raw;
      for (std::size_t i = 0; i < n; i += n / 7 + 1)
        k::apply_parameterization(p, sgt::TensorView<float>(one_by_one.data() + i, {1}));
      for (std::size_t i = 0; i < n; i += n / 7 + 1) {
        CAPTURE(i);
        CHECK(std::memcmp(&one_by_one[i], &got[i], 4) == 0);
      }
      // Both agree with the formula in double to a few f32 ulps of the result's scale (the fast
      // path's vector tanh and exp are not libm's, so the two are not bit-identical).
      const double scale = p.type == Type::Identity || p.type == Type::Direct ? 1.0
                           : p.type == Type::BoundedTanh                      ? p.bound
                                                                              : p.max;
      std::vector<float> exact(n);
      for (std::size_t i = 0; i < n; ++i) exact[i] = static_cast<float>(formula(p, raw[i]));
      sgt_test::expect_matches(want, exact, 8 * 0x1p-24 * scale, describe);
      sgt_test::expect_matches(got, exact, 8 * 0x1p-24 * scale, describe);
      if (p.type == Type::Identity || p.type == Type::Direct)
        sgt_test::expect_bit_identical(got, want, describe);
    }
  }
}

TEST_CASE("parameterization edge values: saturation, clamping and non-finite inputs") {
  const std::vector<float> raw = {-1e30f, -20.0f, 0.0f, 20.0f, 1e30f, INFINITY, -INFINITY};
  for (const k::Parameterization& p : all_types()) {
    CAPTURE(int(p.type));
    std::vector<float> v = raw;
    k::apply_parameterization(p, sgt::TensorView<float>(v.data(), {v.size()}));
    for (std::size_t i = 0; i < raw.size(); ++i) {
      CAPTURE(raw[i]);
      if (p.type == Type::Identity) {
        CHECK(std::memcmp(&v[i], &raw[i], 4) == 0);
        continue;
      }
      // Every bounded parameterization maps into its range, even from +-inf.
      CHECK(std::isfinite(v[i]));
      const double lo = p.type == Type::BoundedTanh ? -p.bound : p.min;
      const double hi = p.type == Type::BoundedTanh ? p.bound : p.max;
      CHECK(v[i] >= static_cast<float>(lo));
      CHECK(v[i] <= static_cast<float>(hi));
    }
  }
  // NaN stays NaN, as in torch (clamp included).
  for (const k::Parameterization& p : all_types()) {
    std::vector<float> v = {NAN};
    k::apply_parameterization(p, sgt::TensorView<float>(v.data(), {1}));
    CHECK(std::isnan(v[0]));
  }
}

}  // namespace test_kernels_parameterization
