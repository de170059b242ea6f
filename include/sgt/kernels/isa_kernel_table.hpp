// The KernelTable of the instruction set this translation unit is compiled for (kernel_table()),
// and the table the model layer uses by default (default_kernel_table()): that one, or, in a
// program built with sgt::dispatch (SGT_DISPATCH defined), the table the dispatcher chose for this
// CPU.
//
// Each entry picks the fast kernel or its plain reference on KernelContext::reference, and flash
// attention or SDPA on its attention_algorithm, so that the model layer's one switch reaches every
// kernel in every instruction set.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sgt/core/isa.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/kernels/attention.hpp"
#include "sgt/kernels/cached_attention.hpp"
#include "sgt/kernels/embedding.hpp"
#include "sgt/kernels/flash_attention.hpp"
#include "sgt/kernels/kernel_table.hpp"
#include "sgt/kernels/matmul.hpp"
#include "sgt/kernels/noise_formula.hpp"
#include "sgt/kernels/packed_activations.hpp"
#include "sgt/kernels/parameterization.hpp"
#include "sgt/kernels/residual.hpp"
#include "sgt/kernels/rms_norm.hpp"
#include "sgt/kernels/rope.hpp"
#include "sgt/kernels/rope_positions.hpp"
#include "sgt/kernels/sdpa.hpp"
#include "sgt/kernels/swiglu.hpp"

#if defined(SGT_DISPATCH)
namespace sgt::dispatch {
// Defined by the sgt::dispatch library (dispatch/dispatch.hpp).
const kernels::KernelTable& kernel_table();
}  // namespace sgt::dispatch
#endif

namespace sgt::kernels::detail {
SGT_ISA_BEGIN

// Activations travel as [B, S, width]; the projections see them as [B * S, width] matrices.
template <class T>
TensorView<T> as_matrix(TensorView<T> v) {
  return TensorView<T>(v.data(), {v.rows(), v.cols()});
}

inline void table_embedding(const KernelContext& c, const AnyTensorView& table,
                            const std::int64_t* ids, std::size_t count, TensorView<float> out) {
  if (c.reference)
    embedding_lookup_reference(table, ids, count, out, c.pool);
  else
    embedding_lookup(table, ids, count, out, c.pool);
}

inline void table_rms_norm(const KernelContext& c, TensorView<const float> x,
                           const AnyTensorView& w, float eps, RmsNormStyle style,
                           TensorView<float> out) {
  if (c.reference)
    rms_norm_reference(x, w, eps, out, style, c.pool);
  else
    rms_norm(x, w, eps, out, style, c.pool);
}

inline void table_matmul(const KernelContext& c, TensorView<const float> x, const AnyTensorView& w,
                         const AnyTensorView& bias, TensorView<float> y, float* pack) {
  if (c.reference)
    matmul_reference(as_matrix(x), w, bias, as_matrix(y), c.pool, c.precision);
  else
    matmul(as_matrix(x), w, bias, as_matrix(y), c.pool, c.precision, pack);
}

// x is packed once and shared by every Linear, unless their weights' dtypes ask for different
// packings.
inline void table_matmuls(const KernelContext& c, TensorView<const float> x, float* pack,
                          const LinearTarget* linears, std::size_t count) {
  if (c.reference) {
    for (std::size_t i = 0; i < count; ++i)
      table_matmul(c, x, *linears[i].w, *linears[i].bias, linears[i].y, pack);
    return;
  }
  const TensorView<const float> xm = as_matrix(x);
  PackedActivations packed;
  bool have = false;
  bool narrow = true;  // the narrow layout only if every Linear can take it
  for (std::size_t i = 0; i < count; ++i)
    narrow = narrow && narrow_path_applies(xm.dim(0), linears[i].w->dtype(),
                                           packing_for(c.precision, linears[i].w->dtype()));
  for (std::size_t i = 0; i < count; ++i) {
    const LinearTarget& l = linears[i];
    check_linear("matmul", xm, *l.w, *l.bias, as_matrix(l.y));
    const ActivationPacking packing = packing_for(c.precision, l.w->dtype());
    if (!have || packed.packing != packing) {
      packed = narrow ? pack_activations_narrow(xm, packing, pack)
                      : pack_activations(xm, packing, pack, c.pool);
      have = true;
    }
    matmul_packed(packed, *l.w, *l.bias, as_matrix(l.y), c.pool);
  }
}

inline void table_apply_rope(const KernelContext& c, TensorView<float> x, std::size_t heads,
                             std::size_t head_dim, const RopeTable& table) {
  if (c.reference)
    apply_rope_reference(x, heads, head_dim, table, c.pool);
  else
    apply_rope(x, heads, head_dim, table, c.pool);
}

inline void table_apply_rope_at(const KernelContext& c, TensorView<float> x, std::size_t heads,
                                std::size_t head_dim, const RopeTable& table,
                                const std::size_t* positions) {
  if (c.reference)
    apply_rope_at_reference(x, heads, head_dim, table, positions, c.pool);
  else
    apply_rope_at(x, heads, head_dim, table, positions, c.pool);
}

// The reference is sdpa, which materializes every score row; it is itself vectorized (dot
// products) but shares no code with flash attention.
inline void table_attention(const KernelContext& c, const AttentionShape& shape,
                            const AttentionOptions& options, TensorView<const float> q,
                            TensorView<const float> k, TensorView<const float> v,
                            const std::uint8_t* attention_mask, TensorView<float> out) {
  if (c.reference || c.attention_algorithm == AttentionAlgorithm::Sdpa)
    sdpa(shape, options, q, k, v, attention_mask, out, c.pool);
  else
    flash_attention(shape, options, q, k, v, attention_mask, out, c.pool);
}

inline void table_cached_attention(const KernelContext& c, const CachedAttentionShape& shape,
                                   const AttentionOptions& options, TensorView<const float> q,
                                   TensorView<const float> k_cache, TensorView<const float> v_cache,
                                   const std::size_t* positions, TensorView<float> out) {
  if (c.reference)
    cached_attention_reference(shape, options, q, k_cache, v_cache, positions, out, c.pool);
  else
    cached_attention(shape, options, q, k_cache, v_cache, positions, out, c.pool);
}

inline void table_swiglu(const KernelContext& c, TensorView<const float> x, const SwiGluWeights& w,
                         GatedActivation act, TensorView<float> out, float* scratch) {
  if (c.reference)
    swiglu_mlp_reference(as_matrix(x), w, as_matrix(out), scratch, c.pool, c.precision, act);
  else
    swiglu_mlp(as_matrix(x), w, as_matrix(out), scratch, c.pool, c.precision, act);
}

inline void table_add(const KernelContext& c, TensorView<float> acc,
                      TensorView<const float> delta) {
  if (c.reference)
    add_in_place_reference(acc, delta, c.pool);
  else
    add_in_place(acc, delta, c.pool);
}

inline void table_parameterization(const KernelContext& c, const Parameterization& p,
                                   TensorView<float> values) {
  if (c.reference)
    apply_parameterization_reference(p, values, c.pool);
  else
    apply_parameterization(p, values, c.pool);
}

inline void table_apply_noise(const KernelContext& c, TensorView<const float> x,
                              TensorView<const float> mu, TensorView<const float> sigma,
                              TensorView<const float> eps, const std::uint8_t* protect,
                              const ValueRange& range, TensorView<float> out) {
  if (c.reference)
    apply_noise_reference(x, mu, sigma, eps, protect, range, out, c.pool);
  else
    apply_noise(x, mu, sigma, eps, protect, range, out, c.pool);
}

SGT_ISA_END
}  // namespace sgt::kernels::detail

namespace sgt::kernels {
SGT_ISA_BEGIN

// The kernels of this translation unit's instruction set.
inline const KernelTable& kernel_table() noexcept {
  static constexpr KernelTable table{
      SGT_ISA_LEVEL_NAME,
      simd::kFloatLanes,
      simd::kHasBf16DotProduct,
      &packed_activation_floats,
      &swiglu_scratch_floats,
      &narrow_path_applies,
      &detail::table_embedding,
      &detail::table_rms_norm,
      &detail::table_matmul,
      &detail::table_matmuls,
      &detail::table_apply_rope,
      &detail::table_apply_rope_at,
      &detail::table_attention,
      &detail::table_cached_attention,
      &detail::table_swiglu,
      &detail::table_add,
      &detail::table_parameterization,
      &detail::table_apply_noise,
  };
  return table;
}

// The table the model layer runs on unless told otherwise: the dispatcher's choice in a program
// built with sgt::dispatch, else this translation unit's own. Throws sgt::Error when SGT_ISA names
// an instruction set this CPU lacks (dispatch/dispatch.hpp).
inline const KernelTable& default_kernel_table() {
#if defined(SGT_DISPATCH)
  return dispatch::kernel_table();
#else
  return kernel_table();
#endif
}

SGT_ISA_END
}  // namespace sgt::kernels
