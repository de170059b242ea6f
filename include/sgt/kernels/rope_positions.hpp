// RoPE at explicit positions: the rotation of kernels/rope.hpp, but token t of every batch row is
// rotated by the table row of positions[t] instead of t. A causal LM with a KV cache needs it: the
// new tokens of a decode step sit at cache_position, not at 0 (lm/causal_lm.hpp).
//
// Same table, same rotation (detail::rope_rotate_head, one fma per output), so a token at position
// p gets exactly the bits apply_rope gives the p-th token of a full sequence: prefill-then-decode
// and one full pass agree bit for bit in this step.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/rope.hpp"

namespace sgt::kernels {
namespace detail {
SGT_ISA_BEGIN

inline void check_apply_rope_at_args(const TensorView<float>& x, std::size_t num_heads,
                                     std::size_t head_dim, const RopeTable& table,
                                     const std::size_t* positions) {
  if (x.rank() != 3)
    throw Error("apply_rope_at: x must have rank 3 [batch, tokens, heads * head_dim], got " +
                x.shape_string());
  if (num_heads == 0 || head_dim == 0)
    throw Error("apply_rope_at: num_heads and head_dim must be > 0");
  if (x.dim(2) != num_heads * head_dim)
    throw Error("apply_rope_at: x " + x.shape_string() + " does not hold " +
                std::to_string(num_heads) + " heads of " + std::to_string(head_dim));
  if (table.parameters().head_dim != head_dim)
    throw Error("apply_rope_at: head_dim " + std::to_string(head_dim) +
                " differs from the rope table's head_dim " +
                std::to_string(table.parameters().head_dim));
  if (x.dim(1) != 0 && positions == nullptr) throw Error("apply_rope_at: no positions");
  for (std::size_t t = 0; t < x.dim(1); ++t)
    if (positions[t] >= table.num_positions())
      throw Error("apply_rope_at: position " + std::to_string(positions[t]) +
                  " is outside the rope table's " + std::to_string(table.num_positions()) +
                  " positions")
          .at_position(static_cast<std::int64_t>(positions[t]));
  if (!x.empty() && x.data() == nullptr) throw Error("apply_rope_at: x has no data");
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// x [B, T, num_heads * head_dim] rotated in place; token t of every batch row is at positions[t]
// (T positions, shared by the batch rows as cache_position is).
inline void apply_rope_at(TensorView<float> x, std::size_t num_heads, std::size_t head_dim,
                          const RopeTable& table, const std::size_t* positions,
                          ThreadPool* pool = nullptr) {
  detail::check_apply_rope_at_args(x, num_heads, head_dim, table, positions);
  detail::rotate_heads(x, num_heads, head_dim, table, pool,
                       [positions](std::size_t t) { return positions[t]; });
}

// The plain version, HF's `x * cos + rotate_half(x) * sin` over full table rows, scalar.
inline void apply_rope_at_reference(TensorView<float> x, std::size_t num_heads,
                                    std::size_t head_dim, const RopeTable& table,
                                    const std::size_t* positions, ThreadPool* pool = nullptr) {
  (void)pool;
  detail::check_apply_rope_at_args(x, num_heads, head_dim, table, positions);
  detail::rotate_heads_reference(x, num_heads, head_dim, table,
                                 [positions](std::size_t t) { return positions[t]; });
}

SGT_ISA_END
}  // namespace sgt::kernels
