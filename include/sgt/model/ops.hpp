// The kernels as the model layer sees them: one object that carries the thread pool and the
// choice between optimized and reference kernels (and between SDPA and flash attention), so the
// model code calls ops by name and reads as the formula. Every kernel the model runs goes through
// here: with `reference` set, every one of them runs its plain reference implementation (as
// ggml's use_ref switch does), which is how the end-to-end tests isolate a kernel bug.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "sgt/core/precision.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/attention.hpp"
#include "sgt/kernels/embedding.hpp"
#include "sgt/kernels/flash_attention.hpp"
#include "sgt/kernels/matmul.hpp"
#include "sgt/kernels/noise_formula.hpp"
#include "sgt/kernels/parameterization.hpp"
#include "sgt/kernels/residual.hpp"
#include "sgt/kernels/rms_norm.hpp"
#include "sgt/kernels/rope.hpp"
#include "sgt/kernels/sdpa.hpp"
#include "sgt/kernels/swiglu.hpp"

namespace sgt {

enum class AttentionAlgorithm {
  Auto,  // today always flash attention: O(tile) memory, and the faster at every size we measured
  Sdpa,  // explicit scores
  Flash,
};

namespace detail {
// Activations travel as [B, S, width]; the projections see them as [B * S, width] matrices.
template <class T>
TensorView<T> as_matrix(TensorView<T> v) {
  return TensorView<T>(v.data(), {v.rows(), v.cols()});
}
}  // namespace detail

struct Ops {
  ThreadPool* pool = nullptr;
  bool reference = false;  // every kernel on its plain reference implementation
  AttentionAlgorithm attention_algorithm = AttentionAlgorithm::Auto;
  Precision precision = Precision::F32;  // resolved: F32 or Bf16, never Auto

  // out[t] = table[ids[t]] for t < count.
  void embedding(const AnyTensorView& table, const std::int64_t* ids, std::size_t count,
                 TensorView<float> out) const {
    if (reference)
      kernels::embedding_lookup_reference(table, ids, count, out, pool);
    else
      kernels::embedding_lookup(table, ids, count, out, pool);
  }
  void rms_norm(TensorView<const float> x, const AnyTensorView& w, float eps,
                kernels::RmsNormStyle style, TensorView<float> out) const {
    if (reference)
      kernels::rms_norm_reference(x, w, eps, out, style, pool);
    else
      kernels::rms_norm(x, w, eps, out, style, pool);
  }
  // y = x W^T + b at `precision`. `pack` holds kernels::packed_activation_floats(tokens, K) floats
  // and overlaps neither x nor y (the Workspace's pack buffer).
  void matmul(TensorView<const float> x, const AnyTensorView& w, const AnyTensorView& bias,
              TensorView<float> y, float* pack) const {
    if (reference)
      kernels::matmul_reference(detail::as_matrix(x), w, bias, detail::as_matrix(y), pool,
                                precision);
    else
      kernels::matmul(detail::as_matrix(x), w, bias, detail::as_matrix(y), pool, precision, pack);
  }
  struct Linear {
    const AnyTensorView& w;
    const AnyTensorView& bias;
    TensorView<float> y;
  };
  // Several Linears of one input (q, k and v): x is packed once into `pack` and shared, unless
  // their weights' dtypes ask for different packings.
  void matmuls(TensorView<const float> x, float* pack,
               std::initializer_list<Linear> linears) const {
    if (reference) {
      for (const Linear& l : linears) matmul(x, l.w, l.bias, l.y, pack);
      return;
    }
    const TensorView<const float> xm = detail::as_matrix(x);
    kernels::PackedActivations packed;
    bool have = false;
    for (const Linear& l : linears) {
      kernels::detail::check_linear("matmul", xm, l.w, l.bias, detail::as_matrix(l.y));
      const kernels::ActivationPacking packing = kernels::packing_for(precision, l.w.dtype());
      if (!have || packed.packing != packing) {
        packed = kernels::pack_activations(xm, packing, pack, pool);
        have = true;
      }
      kernels::matmul_packed(packed, l.w, l.bias, detail::as_matrix(l.y), pool);
    }
  }
  void apply_rope(TensorView<float> x, std::size_t heads, std::size_t head_dim,
                  const kernels::RopeTable& table) const {
    if (reference)
      kernels::apply_rope_reference(x, heads, head_dim, table, pool);
    else
      kernels::apply_rope(x, heads, head_dim, table, pool);
  }
  // The reference is sdpa, which materializes every score row; it is itself vectorized (dot
  // products) but shares no code with flash attention.
  void attention(const kernels::AttentionShape& shape, const kernels::AttentionOptions& options,
                 TensorView<const float> q, TensorView<const float> k, TensorView<const float> v,
                 const std::uint8_t* attention_mask, TensorView<float> out) const {
    if (reference || attention_algorithm == AttentionAlgorithm::Sdpa)
      kernels::sdpa(shape, options, q, k, v, attention_mask, out, pool);
    else
      kernels::flash_attention(shape, options, q, k, v, attention_mask, out, pool);
  }
  void swiglu(TensorView<const float> x, const kernels::SwiGluWeights& w, TensorView<float> out,
              float* scratch) const {
    if (reference)
      kernels::swiglu_mlp_reference(detail::as_matrix(x), w, detail::as_matrix(out), scratch, pool,
                                    precision);
    else
      kernels::swiglu_mlp(detail::as_matrix(x), w, detail::as_matrix(out), scratch, pool,
                          precision);
  }
  void add(TensorView<float> acc, TensorView<const float> delta) const {
    if (reference)
      kernels::add_in_place_reference(acc, delta, pool);
    else
      kernels::add_in_place(acc, delta, pool);
  }
  void parameterization(const kernels::Parameterization& p, TensorView<float> values) const {
    if (reference)
      kernels::apply_parameterization_reference(p, values, pool);
    else
      kernels::apply_parameterization(p, values, pool);
  }
  // out = clamp(select(protect, x + mu + sigma * eps, x)), per [tokens, hidden] row.
  void apply_noise(TensorView<const float> x, TensorView<const float> mu,
                   TensorView<const float> sigma, TensorView<const float> eps,
                   const std::uint8_t* protect, const kernels::ValueRange& range,
                   TensorView<float> out) const {
    if (reference)
      kernels::apply_noise_reference(x, mu, sigma, eps, protect, range, out, pool);
    else
      kernels::apply_noise(x, mu, sigma, eps, protect, range, out, pool);
  }
};

}  // namespace sgt
