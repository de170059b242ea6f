// KernelTable: every kernel the model runs, as one table of function pointers per instruction set.
//
// The model layer calls kernels only through a table (model/ops.hpp). A header-only build uses the
// table of the instruction set it is compiled for (kernels/isa_kernel_table.hpp); a program that
// links sgt::dispatch uses the table of the best instruction set the CPU has, chosen at run time
// (dispatch/dispatch.hpp). The entries take only types that are the same in every instruction set
// -- views, sizes and the kernels' parameter structs, none of which holds a SIMD register -- so a
// table built in an AVX-512 object can be called from a baseline one.
//
// An indirect call per kernel costs nothing next to a kernel: the smallest call the model makes
// (a residual add of one token row) is thousands of instructions.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sgt/core/enum_names.hpp"
#include "sgt/core/precision.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/attention.hpp"
#include "sgt/kernels/cached_attention.hpp"
#include "sgt/kernels/noise_formula.hpp"
#include "sgt/kernels/parameterization.hpp"
#include "sgt/kernels/rms_norm.hpp"
#include "sgt/kernels/rope.hpp"
#include "sgt/kernels/swiglu.hpp"

namespace sgt {

enum class AttentionAlgorithm {
  Auto,  // today always flash attention: O(tile) memory, and the faster at every size we measured
  Sdpa,  // explicit scores
  Flash,
};

// Its spellings, for options read from text (flags, requests) and for reports.
inline constexpr EnumName<AttentionAlgorithm> kAttentionAlgorithmNames[] = {
    {AttentionAlgorithm::Auto, "auto"},
    {AttentionAlgorithm::Sdpa, "sdpa"},
    {AttentionAlgorithm::Flash, "flash"}};

namespace kernels {

// How to run a kernel: where its threads come from, and which implementation and arithmetic.
struct KernelContext {
  ThreadPool* pool = nullptr;
  bool reference = false;  // every kernel on its plain reference implementation
  AttentionAlgorithm attention_algorithm = AttentionAlgorithm::Auto;
  Precision precision = Precision::F32;  // resolved: F32 or Bf16, never Auto
};

// One Linear of several that share an input (q, k and v): y = x W^T + bias.
struct LinearTarget {
  const AnyTensorView* w;
  const AnyTensorView* bias;
  TensorView<float> y;
};

struct KernelTable {
  // The instruction set the kernels were compiled for ("avx512bf16", "avx2", "sse2", "neon64", ...)
  // and what the model reports about it.
  const char* isa;
  std::size_t float_lanes;
  bool bf16_dot_product;  // Precision::Bf16 runs on the CPU's bf16 dot product (else emulated)

  // Scratch sizes, which depend on the register width (whole tiles of tokens).
  std::size_t (*packed_activation_floats)(std::size_t tokens, std::size_t k_len);
  std::size_t (*swiglu_scratch_floats)(std::size_t tokens, std::size_t hidden,
                                       std::size_t intermediate);
  // Whether a Linear of `tokens` rows runs the narrow path (kernels/matmul_narrow.hpp), where
  // weights in feature blocks pay off (sgt::CausalLM::copy_decode_weights).
  bool (*narrow_path_applies)(std::size_t tokens, DType dtype, ActivationPacking packing) noexcept;

  // The kernels, with the contracts of their headers. x/y of the Linears are [tokens, width]
  // views of any rank (flattened to matrices); `pack` holds packed_activation_floats(tokens, K).
  void (*embedding)(const KernelContext&, const AnyTensorView& table, const std::int64_t* ids,
                    std::size_t count, TensorView<float> out);
  void (*rms_norm)(const KernelContext&, TensorView<const float> x, const AnyTensorView& w,
                   float eps, RmsNormStyle style, TensorView<float> out);
  void (*matmul)(const KernelContext&, TensorView<const float> x, const AnyTensorView& w,
                 const AnyTensorView& bias, TensorView<float> y, float* pack);
  void (*matmuls)(const KernelContext&, TensorView<const float> x, float* pack,
                  const LinearTarget* linears, std::size_t count);
  void (*apply_rope)(const KernelContext&, TensorView<float> x, std::size_t heads,
                     std::size_t head_dim, const RopeTable& table);
  // RoPE with token t of every batch row at positions[t] (kernels/rope_positions.hpp).
  void (*apply_rope_at)(const KernelContext&, TensorView<float> x, std::size_t heads,
                        std::size_t head_dim, const RopeTable& table, const std::size_t* positions);
  void (*attention)(const KernelContext&, const AttentionShape& shape,
                    const AttentionOptions& options, TensorView<const float> q,
                    TensorView<const float> k, TensorView<const float> v,
                    const std::uint8_t* attention_mask, TensorView<float> out);
  // T new queries against a KV cache (kernels/cached_attention.hpp).
  void (*cached_attention)(const KernelContext&, const CachedAttentionShape& shape,
                           const AttentionOptions& options, TensorView<const float> q,
                           TensorView<const float> k_cache, TensorView<const float> v_cache,
                           const std::size_t* positions, TensorView<float> out);
  void (*swiglu)(const KernelContext&, TensorView<const float> x, const SwiGluWeights& w,
                 GatedActivation act, TensorView<float> out, float* scratch);
  void (*add)(const KernelContext&, TensorView<float> acc, TensorView<const float> delta);
  void (*parameterization)(const KernelContext&, const Parameterization& p,
                           TensorView<float> values);
  void (*apply_noise)(const KernelContext&, TensorView<const float> x, TensorView<const float> mu,
                      TensorView<const float> sigma, TensorView<const float> eps,
                      const std::uint8_t* protect, const ValueRange& range, TensorView<float> out);
};

}  // namespace kernels
}  // namespace sgt
