// The estimator's last step (spec section 1.2): maps the raw head output to the mean or the std.
//
//   identity       raw
//   bounded_tanh   bound * tanh((raw + init_shift) / bound)
//   cloak          min + (max - min) * 0.5 * (1 + tanh(raw / shallow))
//   cloak_sigmoid  min + (max - min) * sigmoid(raw / shallow)
//   direct         clamp(raw, min, max)
//
// Elementwise over [tokens, hidden] and cheap next to the matmuls of the estimator, so it stays a
// plain loop (the compiler vectorizes what it can; tanh is libm's). Computed in f32, parameters
// rounded to f32 once, like PyTorch does with Python-float scalars.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/io/config.hpp"

namespace sgt {

inline void apply_parameterization(const ParameterizationConfig& p, TensorView<float> values,
                                   ThreadPool* pool = nullptr) {
  const float bound = static_cast<float>(p.bound);
  const float shift = static_cast<float>(p.init_shift);
  const float lo = static_cast<float>(p.min);
  const float hi = static_cast<float>(p.max);
  const float span = static_cast<float>(p.max - p.min);
  const float half_span = static_cast<float>((p.max - p.min) * 0.5);
  const float shallow = static_cast<float>(p.shallow);
  float* v = values.data();
  parallel_for(pool, values.size(), 1 << 14, [&](std::size_t b, std::size_t e) {
    switch (p.type) {
      case ParameterizationType::Identity:
        break;
      case ParameterizationType::BoundedTanh:
        for (std::size_t i = b; i < e; ++i) v[i] = bound * std::tanh((v[i] + shift) / bound);
        break;
      case ParameterizationType::Cloak:
        for (std::size_t i = b; i < e; ++i)
          v[i] = lo + half_span * (1.0f + std::tanh(v[i] / shallow));
        break;
      case ParameterizationType::CloakSigmoid:
        for (std::size_t i = b; i < e; ++i)
          v[i] = lo + span * (1.0f / (1.0f + std::exp(-(v[i] / shallow))));
        break;
      case ParameterizationType::Direct:
        for (std::size_t i = b; i < e; ++i) v[i] = std::min(std::max(v[i], lo), hi);
        break;
    }
  });
}

}  // namespace sgt
