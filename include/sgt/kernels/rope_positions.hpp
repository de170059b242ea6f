// RoPE at explicit positions: the rotation of kernels/rope.hpp, but token t of every batch row is
// rotated by the table row of positions[t] instead of t. A causal LM with a KV cache needs it: the
// new tokens of a decode step sit at cache_position, not at 0 (model/causal_lm.hpp).
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
  const std::size_t seq = x.dim(1);
  const std::size_t tokens = x.dim(0) * seq;
  if (tokens == 0) return;
  const std::size_t width = num_heads * head_dim;
  const std::size_t half = table.rotary_dim() / 2;
  // Elementwise work: any split gives the same bits.
  const std::size_t grain = std::max<std::size_t>(1, 16384 / width);
  parallel_for(pool, tokens, grain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t t = begin; t < end; ++t) {
      const std::size_t pos = positions[t % seq];
      const float* c = table.cos(pos);
      const float* s = table.sin(pos);
      float* row = x.data() + t * width;
      for (std::size_t h = 0; h < num_heads; ++h)
        detail::rope_rotate_head(row + h * head_dim, c, s, half);
    }
  });
}

// The plain version, HF's `x * cos + rotate_half(x) * sin` over full table rows, scalar.
inline void apply_rope_at_reference(TensorView<float> x, std::size_t num_heads,
                                    std::size_t head_dim, const RopeTable& table,
                                    const std::size_t* positions, ThreadPool* pool = nullptr) {
  (void)pool;
  detail::check_apply_rope_at_args(x, num_heads, head_dim, table, positions);
  const std::size_t batch = x.dim(0), seq = x.dim(1);
  const std::size_t rotary_dim = table.rotary_dim(), half = rotary_dim / 2;
  std::vector<float> head(head_dim);
  for (std::size_t b = 0; b < batch; ++b)
    for (std::size_t s = 0; s < seq; ++s) {
      const float* cos = table.cos(positions[s]);
      const float* sin = table.sin(positions[s]);
      for (std::size_t h = 0; h < num_heads; ++h) {
        float* v = x.data() + ((b * seq + s) * num_heads + h) * head_dim;
        std::copy(v, v + head_dim, head.begin());
        for (std::size_t d = 0; d < rotary_dim; ++d) {
          const float rotated = d < half ? -head[d + half] : head[d - half];
          v[d] = std::fma(head[d], cos[d], rotated * sin[d]);
        }
      }
    }
}

SGT_ISA_END
}  // namespace sgt::kernels
