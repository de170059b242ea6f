// The estimator's last step (docs/format.md section 1.2): maps the raw head output to the mean or
// the std.
//
//   identity       raw
//   bounded_tanh   bound * tanh((raw + init_shift) / bound)
//   cloak          min + (max - min) * 0.5 * (1 + tanh(raw / shallow))
//   cloak_sigmoid  min + (max - min) * sigmoid(raw / shallow)
//   direct         clamp(raw, min, max)
//
// Elementwise over [tokens, hidden] and cheap next to the matmuls of the estimator, so the fast
// path is the reference's loop split over the pool (tanh and exp are libm's; a SIMD tanh would
// move results by an ulp and buy nothing measurable). Computed in f32, parameters rounded to f32
// once, as PyTorch does with Python-float scalars.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "sgt/core/isa.hpp"
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

// Applies one parameterization to v[begin, end). The switch sits outside the loops so that each
// loop is a plain elementwise one.
inline void parameterize_range(ParameterizationType type, const ParameterizationF32& c, float* v,
                               std::size_t begin, std::size_t end) noexcept {
  switch (type) {
    case ParameterizationType::Identity:
      break;
    case ParameterizationType::BoundedTanh:
      for (std::size_t i = begin; i < end; ++i)
        v[i] = c.bound * std::tanh((v[i] + c.shift) / c.bound);
      break;
    case ParameterizationType::Cloak:
      for (std::size_t i = begin; i < end; ++i)
        v[i] = c.lo + c.half_span * (1.0f + std::tanh(v[i] / c.shallow));
      break;
    case ParameterizationType::CloakSigmoid:
      for (std::size_t i = begin; i < end; ++i)
        v[i] = c.lo + c.span * (1.0f / (1.0f + std::exp(-(v[i] / c.shallow))));
      break;
    case ParameterizationType::Direct:
      for (std::size_t i = begin; i < end; ++i) v[i] = std::min(std::max(v[i], c.lo), c.hi);
      break;
  }
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// In place over `values` (any shape). One element per value of the reference's formula, computed
// the same way: the result is bit-identical to the reference for every thread count.
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
