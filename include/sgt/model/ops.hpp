// The kernels as the model layer sees them: one object that carries the thread pool and the
// choice between optimized and reference kernels (and between SDPA and flash attention), so the
// decoder layer can call ops by name and read as the formula.
#pragma once

#include <cstdint>

#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/attention.hpp"
#include "sgt/kernels/flash_attention.hpp"
#include "sgt/kernels/matmul.hpp"
#include "sgt/kernels/residual.hpp"
#include "sgt/kernels/rms_norm.hpp"
#include "sgt/kernels/rope.hpp"
#include "sgt/kernels/sdpa.hpp"
#include "sgt/kernels/swiglu.hpp"

namespace sgt {

enum class AttentionAlgorithm {
  Auto,  // flash attention: O(tile) memory, and the faster of the two at every size we measured
  Sdpa,  // explicit scores: the reference
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

  void rms_norm(TensorView<const float> x, const AnyTensorView& w, float eps,
                TensorView<float> out) const {
    if (reference)
      kernels::rms_norm_reference(x, w, eps, out, kernels::RmsNormStyle::Weight, pool);
    else
      kernels::rms_norm(x, w, eps, out, kernels::RmsNormStyle::Weight, pool);
  }
  void matmul(TensorView<const float> x, const AnyTensorView& w, const AnyTensorView& bias,
              TensorView<float> y) const {
    if (reference)
      kernels::matmul_reference(detail::as_matrix(x), w, bias, detail::as_matrix(y), pool);
    else
      kernels::matmul(detail::as_matrix(x), w, bias, detail::as_matrix(y), pool);
  }
  void apply_rope(TensorView<float> x, std::size_t heads, std::size_t head_dim,
                  const kernels::RopeTable& table) const {
    if (reference)
      kernels::apply_rope_reference(x, heads, head_dim, table, pool);
    else
      kernels::apply_rope(x, heads, head_dim, table, pool);
  }
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
      kernels::swiglu_mlp_reference(detail::as_matrix(x), w, detail::as_matrix(out), scratch, pool);
    else
      kernels::swiglu_mlp(detail::as_matrix(x), w, detail::as_matrix(out), scratch, pool);
  }
  void add(TensorView<float> acc, TensorView<const float> delta) const {
    if (reference)
      kernels::add_in_place_reference(acc, delta, pool);
    else
      kernels::add_in_place(acc, delta, pool);
  }
};

}  // namespace sgt
