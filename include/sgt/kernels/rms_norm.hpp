// RMSNorm over the last axis: out = w * (x / sqrt(mean(x^2) + eps)), or (1 + w) * ... (Gemma).
//
// Numerics follow Hugging Face's LlamaRMSNorm exactly in the order of operations, all in f32:
//     variance = mean(x^2);  inv_rms = 1 / sqrt(variance + eps);  y = x * inv_rms;  out = w * y
// i.e. normalize first, then scale by the weight (two separate roundings, as torch does; folding
// w * inv_rms into one factor would be a different rounding). Gemma's norm is the same with
// (1 + w), the sum 1 + w rounded to f32 first, as `1.0 + weight.float()` does.
//
// The sum of squares is the only reduction. It runs in 4 * kFloatLanes independent f32 partial
// sums (64 on AVX-512) that are combined pairwise at the end: each partial sum sees only H / 64
// terms, which keeps the rounding error near that of a pairwise sum. Four chains also cover the
// 4-cycle FMA latency well enough: 64 floats per 4 cycles is more than anything beyond L1 feeds.
// The reference sums in double. Both differ from torch's own reduction order by a few ulp of the
// variance, i.e. 1-4 ulp of the output (measured against HF: at most 2.7e-7 relative).
// One known split: a row whose sum of squares overflows f32 (|x| around 1e19 and up) normalizes
// to 0 in torch and here (1 / sqrt(inf)), but to finite values in the double-summing reference.
//
// The weight keeps its stored dtype (F32/BF16/F16) and is widened in registers. Rows are
// independent: each is reduced inside one parallel_for chunk, in a fixed order, so the result is
// bit-identical for any thread count. `out` may be `x` itself (a row's sum is complete before
// any of its elements is written); a partial overlap is refused. Qwen3's per-head q/k norm is the
// same kernel on x viewed as [tokens * heads, head_dim].
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "sgt/core/dtype.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/overlap.hpp"

namespace sgt::kernels {

enum class RmsNormStyle {
  Weight,         // Llama, Mistral, Qwen: w * normed
  OnePlusWeight,  // Gemma: (1 + w) * normed, the checkpoint stores w with the 1 taken out
};

namespace detail {
SGT_ISA_BEGIN

inline void check_rms_norm_args(const TensorView<const float>& x, const AnyTensorView& weight,
                                float eps, const TensorView<float>& out) {
  if (x.rank() == 0) throw Error("rms_norm: x must have rank >= 1 ([..., hidden]), got a scalar");
  if (weight.rank() != 1 || weight.dim(0) != x.cols())
    throw Error("rms_norm: weight " + weight.shape_string() +
                " does not match the last axis of x " + x.shape_string() + " (expected [" +
                std::to_string(x.cols()) + "])");
  if (out.rank() == 0 || out.rows() != x.rows() || out.cols() != x.cols())
    throw Error("rms_norm: out " + out.shape_string() + " does not match x " + x.shape_string() +
                " (expected " + std::to_string(x.rows()) + " rows of " + std::to_string(x.cols()) +
                ")");
  if (!(eps >= 0.0f) || !std::isfinite(eps))
    throw Error("rms_norm: eps must be finite and >= 0, got " + std::to_string(eps));
  if (x.empty()) return;
  if (x.data() == nullptr || out.data() == nullptr || weight.data() == nullptr)
    throw Error("rms_norm: x, weight and out must have data, got a null pointer");
  // In place (out == x) is fine; any other overlap would read values already overwritten.
  const std::size_t bytes = x.size() * sizeof(float);
  if (out.data() != x.data() && ranges_overlap(x.data(), bytes, out.data(), bytes))
    throw Error("rms_norm: out partially overlaps x (expected out == x or separate buffers)");
}

// Grain in rows: ~32 K elements per chunk. Depends on the shape only, never on the pool.
inline std::size_t rms_norm_grain(std::size_t hidden) {
  return std::max<std::size_t>(1, 32768 / std::max<std::size_t>(1, hidden));
}

inline float rms_weight(float w, RmsNormStyle style) noexcept {
  return style == RmsNormStyle::OnePlusWeight ? 1.0f + w : w;
}

template <class W, bool kOnePlus>
inline void rms_norm_row(const float* x, const W* w, float eps, float* out,
                         std::size_t n) noexcept {
  using simd::FloatBatch;
  constexpr std::size_t L = simd::kFloatLanes;

  // Sum of squares in four independent lane-wise accumulators.
  FloatBatch acc0(0.0f), acc1(0.0f), acc2(0.0f), acc3(0.0f);
  std::size_t j = 0;
  for (; j + 4 * L <= n; j += 4 * L) {
    const FloatBatch a = FloatBatch::load_unaligned(x + j);
    const FloatBatch b = FloatBatch::load_unaligned(x + j + L);
    const FloatBatch c = FloatBatch::load_unaligned(x + j + 2 * L);
    const FloatBatch d = FloatBatch::load_unaligned(x + j + 3 * L);
    acc0 = simd::multiply_add(a, a, acc0);
    acc1 = simd::multiply_add(b, b, acc1);
    acc2 = simd::multiply_add(c, c, acc2);
    acc3 = simd::multiply_add(d, d, acc3);
  }
  for (; j + L <= n; j += L) {
    const FloatBatch a = FloatBatch::load_unaligned(x + j);
    acc0 = simd::multiply_add(a, a, acc0);
  }
  float tail = 0.0f;
  for (; j < n; ++j) tail += x[j] * x[j];
  const float sum = simd::reduce_add((acc0 + acc1) + (acc2 + acc3)) + tail;

  const float variance = sum / static_cast<float>(n);
  const float inv_rms = 1.0f / std::sqrt(variance + eps);  // torch.rsqrt on CPU: 1 / sqrt

  const FloatBatch inv_rms_b(inv_rms);
  const FloatBatch one(1.0f);
  j = 0;
  for (; j + L <= n; j += L) {
    FloatBatch wb = simd::load_as_float(w + j);
    if constexpr (kOnePlus) wb = one + wb;
    const FloatBatch normed = FloatBatch::load_unaligned(x + j) * inv_rms_b;
    (wb * normed).store_unaligned(out + j);
  }
  for (; j < n; ++j) {
    float wj = to_float(w[j]);
    if constexpr (kOnePlus) wj = 1.0f + wj;
    out[j] = wj * (x[j] * inv_rms);
  }
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// x [rows, H] (any rank: leading axes are rows), weight [H] (F32/BF16/F16), out shaped like x.
inline void rms_norm(TensorView<const float> x, const AnyTensorView& weight, float eps,
                     TensorView<float> out, RmsNormStyle style = RmsNormStyle::Weight,
                     ThreadPool* pool = nullptr) {
  detail::check_rms_norm_args(x, weight, eps, out);
  const std::size_t rows = x.rows();
  const std::size_t hidden = x.cols();
  if (rows == 0 || hidden == 0) return;
  visit_dtype(weight.dtype(), [&](auto tag) {
    using W = typename decltype(tag)::type;
    const W* w = static_cast<const W*>(weight.data());
    const std::size_t grain = detail::rms_norm_grain(hidden);
    auto run = [&](auto one_plus) {
      constexpr bool kOnePlus = decltype(one_plus)::value;
      parallel_for(pool, rows, grain, [&](std::size_t begin, std::size_t end) {
        for (std::size_t r = begin; r < end; ++r)
          detail::rms_norm_row<W, kOnePlus>(x.row(r), w, eps, out.row(r), hidden);
      });
    };
    if (style == RmsNormStyle::OnePlusWeight) {
      run(std::true_type{});
    } else {
      run(std::false_type{});
    }
  });
}

// The plain version: the sum of squares in double, then HF's f32 steps one element at a time.
inline void rms_norm_reference(TensorView<const float> x, const AnyTensorView& weight, float eps,
                               TensorView<float> out, RmsNormStyle style = RmsNormStyle::Weight,
                               ThreadPool* pool = nullptr) {
  (void)pool;
  detail::check_rms_norm_args(x, weight, eps, out);
  const std::size_t rows = x.rows();
  const std::size_t hidden = x.cols();
  if (rows == 0 || hidden == 0) return;
  visit_dtype(weight.dtype(), [&](auto tag) {
    using W = typename decltype(tag)::type;
    const W* w = static_cast<const W*>(weight.data());
    for (std::size_t r = 0; r < rows; ++r) {
      const float* xr = x.row(r);
      double sum = 0.0;
      for (std::size_t j = 0; j < hidden; ++j) sum += static_cast<double>(xr[j]) * xr[j];
      const float variance = static_cast<float>(sum / static_cast<double>(hidden));
      const float inv_rms = 1.0f / std::sqrt(variance + eps);
      float* outr = out.row(r);
      for (std::size_t j = 0; j < hidden; ++j)
        outr[j] = detail::rms_weight(to_float(w[j]), style) * (xr[j] * inv_rms);
    }
  });
}

SGT_ISA_END
}  // namespace sgt::kernels
