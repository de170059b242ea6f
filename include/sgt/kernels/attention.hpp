// Attention: the types shared by every attention kernel, the one rule that says which key a query
// sees, and the argument checks. The kernels themselves live in sdpa.hpp (the reference) and
// flash_attention.hpp (the tiled, online-softmax one); both compute, for every batch row b, query
// head h and position i,
//
//     s[j]            = cap(scale * q[b, i, h, :] . k[b, j, g(h), :]) + mask(b, i, j)
//     out[b, i, h, :] = sum_j softmax_j(s) v[b, j, g(h), :]
//
// where cap(x) = x without logit soft-capping, and logit_softcap * tanh(x / logit_softcap) with
// it (Gemma 2's attn_logit_softcapping: the scores are squashed into (-cap, cap) before the mask
// and the softmax, as transformers' eager attention does).
//
// with g(h) = h / (num_heads / num_kv_heads) (grouped-query attention: consecutive query heads
// share one kv head, as Hugging Face's repeat_kv lays them out) and mask = 0 where key_visible()
// holds, -inf elsewhere.
//
// Layouts, all f32 row-major and contiguous (the activations of a decoder layer as they come out
// of the q/k/v projections, no transpose to [B, heads, S, head_dim] needed):
//   q, out: [batch, seq_len, num_heads * head_dim]
//   k, v:   [batch, seq_len, num_kv_heads * head_dim]
// A view may have any rank as long as its element count matches and its last dimension is
// heads * head_dim ([B*S, heads*hd] and [B, S, heads*hd] are both fine). out must not alias q, k
// or v.
//
// The visibility rule (query i, key j, same batch row b):
//
//     attention_mask[b*S + j] != 0            padding: a padded key is seen by nobody
//     && (!causal || j <= i)                   causal: no key from the future
//     && (sliding_window == 0 || i - j < W)    window: only the W most recent keys (i - j signed)
//
// The window term is Hugging Face Mistral's `kv_idx > q_idx - sliding_window`. A query row that
// sees no key at all (a padded position under left padding, say) outputs 0, never NaN -- PyTorch
// gives NaN there; Hugging Face never reads those rows, and neither should anyone, but a NaN that
// escapes into a residual stream poisons every later position of a batched matmul.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>

#include "sgt/core/checked_math.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/simd.hpp"
#include "sgt/core/tensor_view.hpp"

namespace sgt::kernels {

struct AttentionShape {
  std::size_t batch = 0;
  std::size_t seq_len = 0;
  std::size_t num_heads = 0;
  std::size_t num_kv_heads = 0;
  std::size_t head_dim = 0;
};

struct AttentionOptions {
  float scale = 1.0f;  // usually 1 / sqrt(head_dim); the config may say otherwise
  bool causal = true;
  std::size_t sliding_window = 0;  // 0 = no window
  float logit_softcap = 0.0f;      // 0 = none; else scores become cap * tanh(score / cap)
};

// The scale Hugging Face uses when the config names none.
inline float default_attention_scale(std::size_t head_dim) {
  return 1.0f / std::sqrt(static_cast<float>(head_dim));
}

// The visibility rule above, for one (query i, key j) pair of batch row b. `attention_mask` is
// [batch, seq_len] (nonzero = real token) or null (every key is real).
//
// The test oracle: no kernel calls it. sdpa uses visible_key_span plus its own padding check,
// flash_attention its per-block lo/hi bounds (flash_mask_block). The tests check
// visible_key_span against this function pair by pair, and the two kernels against each other.
inline bool key_visible(const AttentionOptions& options, const std::uint8_t* attention_mask,
                        std::size_t b, std::size_t seq_len, std::size_t i, std::size_t j) noexcept {
  if (attention_mask != nullptr && attention_mask[b * seq_len + j] == 0) return false;
  if (options.causal && j > i) return false;
  if (options.sliding_window != 0 && i >= j && i - j >= options.sliding_window) return false;
  return true;
}

namespace detail {
SGT_ISA_BEGIN

// Keys [begin, end) that causality and the window leave to query i (padding not applied). Every
// key outside that span is invisible to i; every key inside is visible unless padded.
struct KeySpan {
  std::size_t begin = 0;
  std::size_t end = 0;
};

inline KeySpan visible_key_span(const AttentionOptions& options, std::size_t seq_len,
                                std::size_t i) noexcept {
  KeySpan span{0, options.causal ? i + 1 : seq_len};
  // i - j < W  <=>  j > i - W  <=>  j >= i - W + 1.
  if (options.sliding_window != 0 && i + 1 > options.sliding_window)
    span.begin = i + 1 - options.sliding_window;
  return span;
}

inline void check_score_options(const char* op, const AttentionOptions& options) {
  if (!std::isfinite(options.scale))
    throw Error(std::string(op) + ": scale " + std::to_string(options.scale) + " is not finite");
  if (!(options.logit_softcap >= 0.0f) || !std::isfinite(options.logit_softcap))
    throw Error(std::string(op) + ": logit_softcap " + std::to_string(options.logit_softcap) +
                " must be finite and >= 0 (0: none)");
}

// One score through the soft cap (the scalar kernels' path; flash attention caps a tile at once).
inline float softcap_score(float score, float cap) noexcept {
  return cap == 0.0f ? score : cap * std::tanh(score / cap);
}

inline std::size_t checked_product(std::initializer_list<std::size_t> factors, const char* what) {
  std::size_t n = 1;
  for (std::size_t f : factors)
    if (!checked_mul(n, f, n))
      throw Error(std::string(what) + ": attention shape overflows size_t");
  return n;
}

inline void check_attention_view(const char* op, const char* name, std::size_t rows,
                                 std::size_t heads, std::size_t head_dim, std::size_t size,
                                 std::size_t cols, bool null_data) {
  const std::size_t want_cols = heads * head_dim;
  const std::size_t want_size = checked_product({rows, want_cols}, op);
  if (size != want_size || (want_size != 0 && cols != want_cols))
    throw Error(std::string(op) + ": expected " + std::to_string(rows) + " rows of " +
                std::to_string(heads) + " heads x " + std::to_string(head_dim) + " = " +
                std::to_string(want_cols) + " floats (" + std::to_string(want_size) +
                " elements), got " + std::to_string(size) + " elements with last dimension " +
                std::to_string(cols))
        .at_tensor(name);
  if (want_size != 0 && null_data)
    throw Error(std::string(op) + ": null data pointer").at_tensor(name);
}

// Every check a kernel needs before it touches memory; `op` names the kernel in the message.
inline void check_attention_args(const char* op, const AttentionShape& shape,
                                 const AttentionOptions& options, TensorView<const float> q,
                                 TensorView<const float> k, TensorView<const float> v,
                                 TensorView<float> out) {
  if (shape.num_heads == 0 || shape.num_kv_heads == 0 || shape.head_dim == 0)
    throw Error(std::string(op) + ": num_heads (" + std::to_string(shape.num_heads) +
                "), num_kv_heads (" + std::to_string(shape.num_kv_heads) + ") and head_dim (" +
                std::to_string(shape.head_dim) + ") must be positive");
  if (shape.num_heads % shape.num_kv_heads != 0)
    throw Error(std::string(op) + ": num_heads (" + std::to_string(shape.num_heads) +
                ") is not a multiple of num_kv_heads (" + std::to_string(shape.num_kv_heads) + ")");
  check_score_options(op, options);
  // Position arithmetic in the kernels is done in size_t and, for the window, as i + 1 - W.
  const std::size_t rows = checked_product({shape.batch, shape.seq_len}, op);
  checked_product({rows, shape.num_heads, shape.head_dim}, op);
  check_attention_view(op, "q", rows, shape.num_heads, shape.head_dim, q.size(), q.cols(),
                       q.data() == nullptr);
  check_attention_view(op, "k", rows, shape.num_kv_heads, shape.head_dim, k.size(), k.cols(),
                       k.data() == nullptr);
  check_attention_view(op, "v", rows, shape.num_kv_heads, shape.head_dim, v.size(), v.cols(),
                       v.data() == nullptr);
  check_attention_view(op, "out", rows, shape.num_heads, shape.head_dim, out.size(), out.cols(),
                       out.data() == nullptr);
}

// sum_d a[d] * b[d]: kFloatLanes partial sums, then one horizontal add; scalar tail.
inline float dot(const float* a, const float* b, std::size_t n) noexcept {
  using simd::FloatBatch;
  constexpr std::size_t L = simd::kFloatLanes;
  std::size_t d = 0;
  float sum = 0.0f;
  if (n >= L) {
    // Two accumulators: back-to-back FMAs into one register would wait on each other's latency.
    FloatBatch acc0(0.0f), acc1(0.0f);
    for (; d + 2 * L <= n; d += 2 * L) {
      acc0 = simd::multiply_add(FloatBatch::load_unaligned(a + d),
                                FloatBatch::load_unaligned(b + d), acc0);
      acc1 = simd::multiply_add(FloatBatch::load_unaligned(a + d + L),
                                FloatBatch::load_unaligned(b + d + L), acc1);
    }
    if (d + L <= n) {
      acc0 = simd::multiply_add(FloatBatch::load_unaligned(a + d),
                                FloatBatch::load_unaligned(b + d), acc0);
      d += L;
    }
    sum = simd::reduce_add(acc0 + acc1);
  }
  for (; d < n; ++d) sum += a[d] * b[d];
  return sum;
}

// y[d] += alpha * x[d].
inline void axpy(float alpha, const float* x, float* y, std::size_t n) noexcept {
  using simd::FloatBatch;
  constexpr std::size_t L = simd::kFloatLanes;
  const FloatBatch a(alpha);
  std::size_t d = 0;
  for (; d + L <= n; d += L)
    simd::multiply_add(a, FloatBatch::load_unaligned(x + d), FloatBatch::load_unaligned(y + d))
        .store_unaligned(y + d);
  for (; d < n; ++d) y[d] += alpha * x[d];
}

SGT_ISA_END
}  // namespace detail
}  // namespace sgt::kernels
