// The affine SGT formula (docs/format.md section 1):
//   y   = x + mu + sigma * eps
//   out = select(protect, y, x)          protect = noise_mask & attention_mask, per token
//   out = clamp(out, lo, hi)             either bound optional
//
// `select`, never `mask * y + (1 - mask) * x`: a NaN or inf in y at an unprotected position must
// not leak into the output, and an unprotected position must stay bit-identical to x (before the
// clamp). y is evaluated as (x + mu) + (sigma * eps), the order PyTorch evaluates the Python
// expression in, so that the reference tools agree to the last rounding where the compiler does
// not contract the multiply-add.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"

namespace sgt::kernels {

struct ValueRange {
  std::optional<float> min;
  std::optional<float> max;
};

namespace detail {
SGT_ISA_BEGIN
inline void check_noise_shapes(TensorView<const float> x, TensorView<const float> mu,
                               TensorView<const float> sigma, TensorView<const float> eps,
                               TensorView<float> out) {
  if (mu.size() != x.size() || sigma.size() != x.size() || eps.size() != x.size() ||
      out.size() != x.size())
    throw Error("apply_noise: x " + x.shape_string() + ", mu " + mu.shape_string() + ", sigma " +
                sigma.shape_string() + ", eps " + eps.shape_string() + ", out " +
                out.shape_string() + " must have the same size (expected " +
                std::to_string(x.size()) + " elements each)");
}
inline float clamp_value(float v, const ValueRange& r) noexcept {
  // NaN stays NaN, like torch.clamp.
  if (r.min && v < *r.min) v = *r.min;
  if (r.max && v > *r.max) v = *r.max;
  return v;
}
SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// x, mu, sigma, eps, out: [tokens, hidden]; protect: [tokens] (non-zero = protect).
inline void apply_noise_reference(TensorView<const float> x, TensorView<const float> mu,
                                  TensorView<const float> sigma, TensorView<const float> eps,
                                  const std::uint8_t* protect, const ValueRange& range,
                                  TensorView<float> out, ThreadPool* pool = nullptr) {
  (void)pool;
  detail::check_noise_shapes(x, mu, sigma, eps, out);
  const std::size_t tokens = x.rows(), hidden = x.cols();
  for (std::size_t t = 0; t < tokens; ++t) {
    for (std::size_t i = 0; i < hidden; ++i) {
      const std::size_t k = t * hidden + i;
      const float xmu = x[k] + mu[k];
      const float noise = sigma[k] * eps[k];
      const float y = xmu + noise;
      out[k] = detail::clamp_value(protect[t] ? y : x[k], range);
    }
  }
}

inline void apply_noise(TensorView<const float> x, TensorView<const float> mu,
                        TensorView<const float> sigma, TensorView<const float> eps,
                        const std::uint8_t* protect, const ValueRange& range, TensorView<float> out,
                        ThreadPool* pool = nullptr) {
  detail::check_noise_shapes(x, mu, sigma, eps, out);
  using simd::FloatBatch;
  constexpr std::size_t L = simd::kFloatLanes;
  const std::size_t hidden = x.cols();
  const FloatBatch lo(range.min.value_or(-INFINITY));
  const FloatBatch hi(range.max.value_or(INFINITY));
  // Elementwise and memory-bound: 16 tokens per chunk (tens of thousands of elements at real
  // widths) keep the pool's per-chunk cost negligible.
  parallel_for(pool, x.rows(), 16, [&](std::size_t t0, std::size_t t1) {
    for (std::size_t t = t0; t < t1; ++t) {
      const float* xr = x.row(t);
      float* o = out.row(t);
      std::size_t i = 0;
      if (protect[t]) {
        const float* m = mu.row(t);
        const float* s = sigma.row(t);
        const float* e = eps.row(t);
        for (; i + L <= hidden; i += L) {
          const FloatBatch xmu =
              FloatBatch::load_unaligned(xr + i) + FloatBatch::load_unaligned(m + i);
          const FloatBatch noise =
              FloatBatch::load_unaligned(s + i) * FloatBatch::load_unaligned(e + i);
          FloatBatch y = xmu + noise;
          if (range.min) y = simd::select(y < lo, lo, y);
          if (range.max) y = simd::select(y > hi, hi, y);
          y.store_unaligned(o + i);
        }
        for (; i < hidden; ++i) {
          const float xmu = xr[i] + m[i];
          const float noise = s[i] * e[i];
          o[i] = detail::clamp_value(xmu + noise, range);
        }
      } else {
        for (; i < hidden; ++i) o[i] = detail::clamp_value(xr[i], range);
      }
    }
  });
}

SGT_ISA_END
}  // namespace sgt::kernels
