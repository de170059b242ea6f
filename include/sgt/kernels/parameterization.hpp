// The estimator's last step (docs/format.md section 1.2): maps the raw head output to the mean or
// the std.
//
//   identity       raw
//   bounded_tanh   bound * tanh((raw + init_shift) / bound)
//   cloak          min + (max - min) * 0.5 * (1 + tanh(raw / shallow))
//   cloak_sigmoid  min + (max - min) * sigmoid(raw / shallow)
//   direct         clamp(raw, min, max)
//
// Elementwise over [tokens, hidden], split over the pool. The fast path evaluates tanh and exp with
// simd's vector versions: glibc's scalar tanhf took 5% of a 512-token transform with bf16 weights
// (two estimators, each with a tanh per output), the vector one a few tenths of a percent. The
// reference is the formula with libm's functions; the two agree to 1-2 ulp of the function (the
// tests allow 8 ulp of the result's scale). Computed in f32, parameters rounded to f32 once, as
// PyTorch does with Python-float scalars.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "sgt/core/isa.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"

namespace sgt::kernels {

enum class ParameterizationType { Identity, BoundedTanh, Cloak, CloakSigmoid, Direct };

struct Parameterization {
  ParameterizationType type = ParameterizationType::Identity;
  double bound = 1;       // bounded_tanh
  double init_shift = 0;  // bounded_tanh
  double min = 0;         // cloak, cloak_sigmoid, direct: scale[0]
  double max = 1;         // cloak, cloak_sigmoid, direct: scale[1]
  double shallow = 1;     // cloak, cloak_sigmoid
};

namespace detail {
SGT_ISA_BEGIN

// The parameters as the f32 formula uses them, each rounded once.
struct ParameterizationF32 {
  explicit ParameterizationF32(const Parameterization& p)
      : bound(static_cast<float>(p.bound)),
        shift(static_cast<float>(p.init_shift)),
        lo(static_cast<float>(p.min)),
        hi(static_cast<float>(p.max)),
        span(static_cast<float>(p.max - p.min)),
        half_span(static_cast<float>((p.max - p.min) * 0.5)),
        shallow(static_cast<float>(p.shallow)) {}
  float bound, shift, lo, hi, span, half_span, shallow;
};

// Applies one parameterization to v[begin, end), a register at a time (simd::map_in_place: an
// element's bits do not depend on the range it is in). tanh and exp are simd's vector versions
// (within 1-2 ulp of the exact function, like glibc's scalar ones, and about 30 times faster:
// scalar tanhf took 5% of a 512-token transform); the formula around them is the reference's.
inline void parameterize_range(ParameterizationType type, const ParameterizationF32& c, float* v,
                               std::size_t begin, std::size_t end) noexcept {
  using simd::FloatBatch;
  float* p = v + begin;
  const std::size_t n = end - begin;
  switch (type) {
    case ParameterizationType::Identity:
      break;
    case ParameterizationType::BoundedTanh: {
      const FloatBatch bound(c.bound), shift(c.shift);
      simd::map_in_place(p, n, [&](FloatBatch x) { return bound * simd::tanh((x + shift) / bound); });
      break;
    }
    case ParameterizationType::Cloak: {
      const FloatBatch lo(c.lo), half_span(c.half_span), shallow(c.shallow), one(1.0f);
      simd::map_in_place(
          p, n, [&](FloatBatch x) { return lo + half_span * (one + simd::tanh(x / shallow)); });
      break;
    }
    case ParameterizationType::CloakSigmoid: {
      const FloatBatch lo(c.lo), span(c.span), shallow(c.shallow), one(1.0f);
      simd::map_in_place(p, n, [&](FloatBatch x) {
        return lo + span * (one / (one + simd::exp(-(x / shallow))));
      });
      break;
    }
    case ParameterizationType::Direct:
      for (std::size_t i = begin; i < end; ++i) v[i] = std::min(std::max(v[i], c.lo), c.hi);
      break;
  }
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// In place over `values` (any shape). Each element's bits depend on its value alone (not on the
// chunk it falls in), so the result is bit-identical for every thread count.
inline void apply_parameterization(const Parameterization& p, TensorView<float> values,
                                   ThreadPool* pool = nullptr) {
  const detail::ParameterizationF32 c(p);
  float* v = values.data();
  parallel_for(pool, values.size(), 1 << 14, [&](std::size_t b, std::size_t e) {
    detail::parameterize_range(p.type, c, v, b, e);
  });
}

// The formula written out per element, one thread.
inline void apply_parameterization_reference(const Parameterization& p, TensorView<float> values,
                                             ThreadPool* pool = nullptr) {
  (void)pool;
  const float bound = static_cast<float>(p.bound), shift = static_cast<float>(p.init_shift);
  const float lo = static_cast<float>(p.min), hi = static_cast<float>(p.max);
  const float shallow = static_cast<float>(p.shallow);
  float* v = values.data();
  for (std::size_t i = 0; i < values.size(); ++i) {
    const float raw = v[i];
    switch (p.type) {
      case ParameterizationType::Identity:
        break;
      case ParameterizationType::BoundedTanh:
        v[i] = bound * std::tanh((raw + shift) / bound);
        break;
      case ParameterizationType::Cloak:
        v[i] = lo + static_cast<float>((p.max - p.min) * 0.5) * (1.0f + std::tanh(raw / shallow));
        break;
      case ParameterizationType::CloakSigmoid:
        v[i] =
            lo + static_cast<float>(p.max - p.min) * (1.0f / (1.0f + std::exp(-(raw / shallow))));
        break;
      case ParameterizationType::Direct:
        v[i] = std::min(std::max(raw, lo), hi);
        break;
    }
  }
}

SGT_ISA_END
}  // namespace sgt::kernels
