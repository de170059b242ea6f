// Cached attention: T new queries against a KV cache (lm/kv_cache.hpp) that already holds their
// own keys and values and those of every earlier position. A causal LM's decode step (T = 1) and
// any prefill that does not start at position 0 (a second turn) run here.
//
// Layouts, f32 row-major:
//   q, out:            [batch, T, num_heads * head_dim]           (as the projections write them)
//   k_cache, v_cache:  [batch, cache_len, num_kv_heads * head_dim] (cache_len = the cache's max)
//   positions:         [T], shared by the batch rows: query t sits at position positions[t]
// For every batch row b, query head h and new token t at p = positions[t]:
//
//     s[j]            = cap(scale * q[b, t, h, :] . k_cache[b, j, g(h), :])  for the visible j
//     out[b, t, h, :] = sum_j softmax_j(s) v_cache[b, j, g(h), :]
//
// with cap the logit soft-capping and g(h) = h / (num_heads / num_kv_heads) (both as in
// attention.hpp), and j visible when j <= p and
// (sliding_window == 0 || p - j < sliding_window). Key p itself is always visible, so no row is
// empty. The caller guarantees that positions [0, p] of the cache hold real keys.
//
// The optimized kernel streams each query row's keys once, in blocks of kBlock: the block's scores
// into a stack array, then one rescale of the output row when the running maximum grows (the
// online softmax of flash attention, one query at a time), then the p * v accumulation. A decode
// step is memory-bound -- every key and value of the cache is read once per query head for
// 4 * head_dim flops per key -- so the design goal is a single pass over K and V without a score
// row the size of the cache: no allocation, O(head_dim) state. Each (b, h, t) row is one task
// computed in a fixed order, so the result does not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/attention.hpp"

namespace sgt::kernels {

struct CachedAttentionShape {
  std::size_t batch = 0;
  std::size_t new_tokens = 0;  // T
  std::size_t cache_len = 0;   // positions the cache holds per batch row (its maximum length)
  std::size_t num_heads = 0;
  std::size_t num_kv_heads = 0;
  std::size_t head_dim = 0;
};

namespace detail {
SGT_ISA_BEGIN

inline void check_cached_attention_args(const char* op, const CachedAttentionShape& s,
                                        const AttentionOptions& options, TensorView<const float> q,
                                        TensorView<const float> k_cache,
                                        TensorView<const float> v_cache,
                                        const std::size_t* positions, TensorView<float> out) {
  if (s.num_heads == 0 || s.num_kv_heads == 0 || s.head_dim == 0)
    throw Error(std::string(op) + ": num_heads, num_kv_heads and head_dim must be positive");
  if (s.num_heads % s.num_kv_heads != 0)
    throw Error(std::string(op) + ": num_heads (" + std::to_string(s.num_heads) +
                ") is not a multiple of num_kv_heads (" + std::to_string(s.num_kv_heads) + ")");
  check_score_options(op, options);
  const std::size_t rows = checked_product({s.batch, s.new_tokens}, op);
  const std::size_t cache_rows = checked_product({s.batch, s.cache_len}, op);
  check_attention_view(op, "q", rows, s.num_heads, s.head_dim, q.size(), q.cols(),
                       q.data() == nullptr);
  check_attention_view(op, "out", rows, s.num_heads, s.head_dim, out.size(), out.cols(),
                       out.data() == nullptr);
  check_attention_view(op, "k_cache", cache_rows, s.num_kv_heads, s.head_dim, k_cache.size(),
                       k_cache.cols(), k_cache.data() == nullptr);
  check_attention_view(op, "v_cache", cache_rows, s.num_kv_heads, s.head_dim, v_cache.size(),
                       v_cache.cols(), v_cache.data() == nullptr);
  if (s.new_tokens != 0 && positions == nullptr) throw Error(std::string(op) + ": no positions");
  for (std::size_t t = 0; t < s.new_tokens; ++t)
    if (positions[t] >= s.cache_len)
      throw Error(std::string(op) + ": position " + std::to_string(positions[t]) +
                  " is outside the cache's " + std::to_string(s.cache_len) + " positions")
          .at_position(static_cast<std::int64_t>(positions[t]));
}

// The keys [begin, p] that query position p sees.
inline std::size_t cached_span_begin(const AttentionOptions& options, std::size_t p) noexcept {
  return options.sliding_window != 0 && p + 1 > options.sliding_window
             ? p + 1 - options.sliding_window
             : 0;
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

inline void cached_attention(const CachedAttentionShape& shape, const AttentionOptions& options,
                             TensorView<const float> q, TensorView<const float> k_cache,
                             TensorView<const float> v_cache, const std::size_t* positions,
                             TensorView<float> out, ThreadPool* pool = nullptr) {
  detail::check_cached_attention_args("cached_attention", shape, options, q, k_cache, v_cache,
                                      positions, out);
  const std::size_t B = shape.batch, T = shape.new_tokens, H = shape.num_heads;
  const std::size_t D = shape.head_dim, L = shape.cache_len;
  const std::size_t group = H / shape.num_kv_heads;
  const std::size_t q_row = H * D, kv_row = shape.num_kv_heads * D;
  if (B == 0 || T == 0) return;
  // 64 scores on the stack (256 bytes): the rescale of the output row (head_dim multiplies) is
  // paid at most once per 64 keys.
  constexpr std::size_t kBlock = 64;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();

  // Tasks in (b, h, t) order: one output row each.
  parallel_for(pool, B * H * T, 1, [&](std::size_t begin, std::size_t end) {
    float scores[kBlock];
    for (std::size_t task = begin; task < end; ++task) {
      const std::size_t t = task % T, h = (task / T) % H, b = task / (T * H);
      const std::size_t p = positions[t];
      const float* q_i = q.data() + (b * T + t) * q_row + h * D;
      const float* k_base = k_cache.data() + b * L * kv_row + (h / group) * D;
      const float* v_base = v_cache.data() + b * L * kv_row + (h / group) * D;
      float* out_i = out.data() + (b * T + t) * q_row + h * D;
      std::fill(out_i, out_i + D, 0.0f);
      float running_max = kNegInf, sum = 0.0f;
      for (std::size_t j0 = detail::cached_span_begin(options, p); j0 <= p; j0 += kBlock) {
        const std::size_t n = std::min(kBlock, p + 1 - j0);
        float block_max = kNegInf;
        for (std::size_t jj = 0; jj < n; ++jj) {
          scores[jj] = detail::softcap_score(
              options.scale * detail::dot(q_i, k_base + (j0 + jj) * kv_row, D),
              options.logit_softcap);
          block_max = std::max(block_max, scores[jj]);
        }
        if (block_max > running_max) {
          // exp(-inf) = 0 on the first block: the empty accumulator stays 0.
          const float correction = std::exp(running_max - block_max);
          for (std::size_t d = 0; d < D; ++d) out_i[d] *= correction;
          sum *= correction;
          running_max = block_max;
        }
        for (std::size_t jj = 0; jj < n; ++jj) {
          const float w = std::exp(scores[jj] - running_max);
          sum += w;
          detail::axpy(w, v_base + (j0 + jj) * kv_row, out_i, D);
        }
      }
      const float inv_sum = 1.0f / sum;  // sum >= 1: the maximum's own term is exp(0)
      for (std::size_t d = 0; d < D; ++d) out_i[d] *= inv_sum;
    }
  });
}

// The formula as written: a full row of scores per query, max, exp, normalize; scalar loops.
inline void cached_attention_reference(const CachedAttentionShape& shape,
                                       const AttentionOptions& options, TensorView<const float> q,
                                       TensorView<const float> k_cache,
                                       TensorView<const float> v_cache,
                                       const std::size_t* positions, TensorView<float> out,
                                       ThreadPool* pool = nullptr) {
  (void)pool;
  detail::check_cached_attention_args("cached_attention_reference", shape, options, q, k_cache,
                                      v_cache, positions, out);
  const std::size_t B = shape.batch, T = shape.new_tokens, H = shape.num_heads;
  const std::size_t D = shape.head_dim, L = shape.cache_len;
  const std::size_t group = H / shape.num_kv_heads;
  const std::size_t q_row = H * D, kv_row = shape.num_kv_heads * D;
  std::vector<float> scores;
  for (std::size_t b = 0; b < B; ++b)
    for (std::size_t t = 0; t < T; ++t)
      for (std::size_t h = 0; h < H; ++h) {
        const std::size_t p = positions[t], first = detail::cached_span_begin(options, p);
        const float* q_i = q.data() + (b * T + t) * q_row + h * D;
        const float* k_base = k_cache.data() + b * L * kv_row + (h / group) * D;
        const float* v_base = v_cache.data() + b * L * kv_row + (h / group) * D;
        float* out_i = out.data() + (b * T + t) * q_row + h * D;
        scores.assign(p + 1 - first, 0.0f);
        float max_score = -std::numeric_limits<float>::infinity();
        for (std::size_t j = first; j <= p; ++j) {
          float s = 0.0f;
          for (std::size_t d = 0; d < D; ++d) s += q_i[d] * k_base[j * kv_row + d];
          scores[j - first] =
              options.logit_softcap == 0.0f
                  ? options.scale * s
                  : options.logit_softcap * std::tanh(options.scale * s / options.logit_softcap);
          max_score = std::max(max_score, scores[j - first]);
        }
        float sum = 0.0f;
        for (float& s : scores) {
          s = std::exp(s - max_score);
          sum += s;
        }
        for (std::size_t d = 0; d < D; ++d) {
          float acc = 0.0f;
          for (std::size_t j = first; j <= p; ++j)
            acc += scores[j - first] * v_base[j * kv_row + d];
          out_i[d] = acc / sum;
        }
      }
}

SGT_ISA_END
}  // namespace sgt::kernels
