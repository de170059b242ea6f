// sdpa: the reference attention kernel -- scaled dot-product attention with an explicit row of
// scores, exactly as the formula reads (see attention.hpp for layouts and the masking rule):
//
//     for each (batch row b, query head h, position i):
//         s[j]  = cap(scale * q_i . k_j)  for the keys j that i sees, -inf for the others
//                 (cap: the optional logit soft-capping, attention.hpp)
//         p[j]  = exp(s[j] - max_j s[j])                     (max-subtracted: exp never overflows)
//         out_i = sum_j p[j] v_j / sum_j p[j]                 (0 when i sees no key)
//
// f32 throughout. It allocates one row of seq_len scores per task, O(S) memory, and reads every
// key of the row's span, O(S^2) work per head -- simple to trust, and the baseline that
// flash_attention.hpp is tested and benchmarked against. It is also a usable kernel (the command
// line's `--attention sdpa`): dot products and the p * v accumulation go through SIMD, and work
// is split over (batch, head) tasks, each output row computed by one thread in a fixed order, so
// results are bit-identical for any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "sgt/core/isa.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/core/thread_pool.hpp"
#include "sgt/kernels/attention.hpp"

namespace sgt::kernels {
SGT_ISA_BEGIN

inline void sdpa(const AttentionShape& shape, const AttentionOptions& options,
                 TensorView<const float> q, TensorView<const float> k, TensorView<const float> v,
                 const std::uint8_t* attention_mask, TensorView<float> out,
                 ThreadPool* pool = nullptr) {
  detail::check_attention_args("sdpa", shape, options, q, k, v, out);
  const std::size_t B = shape.batch, S = shape.seq_len, H = shape.num_heads;
  const std::size_t KV = shape.num_kv_heads, D = shape.head_dim;
  if (B == 0 || S == 0) return;
  const std::size_t group = H / KV;
  const std::size_t q_row = H * D;    // floats between consecutive positions of q and out
  const std::size_t kv_row = KV * D;  // ... of k and v
  constexpr float kMasked = -std::numeric_limits<float>::infinity();

  parallel_for(pool, B * H, 1, [&](std::size_t task_begin, std::size_t task_end) {
    std::vector<float> scores(S);
    for (std::size_t task = task_begin; task < task_end; ++task) {
      const std::size_t b = task / H, h = task % H, kv_head = h / group;
      const float* k_head = k.data() + b * S * kv_row + kv_head * D;
      const float* v_head = v.data() + b * S * kv_row + kv_head * D;
      const std::uint8_t* mask_row = attention_mask ? attention_mask + b * S : nullptr;
      for (std::size_t i = 0; i < S; ++i) {
        const float* q_i = q.data() + (b * S + i) * q_row + h * D;
        float* out_i = out.data() + (b * S + i) * q_row + h * D;
        const detail::KeySpan span = detail::visible_key_span(options, S, i);

        float max_score = kMasked;
        for (std::size_t j = span.begin; j < span.end; ++j) {
          if (mask_row && mask_row[j] == 0) {
            scores[j] = kMasked;
            continue;
          }
          scores[j] = detail::softcap_score(
              options.scale * detail::dot(q_i, k_head + j * kv_row, D), options.logit_softcap);
          max_score = std::max(max_score, scores[j]);
        }
        std::fill(out_i, out_i + D, 0.0f);
        if (max_score == kMasked) continue;  // sees no key: 0 by contract

        float sum = 0.0f;
        for (std::size_t j = span.begin; j < span.end; ++j) {
          if (scores[j] == kMasked) continue;  // padded key: contributes nothing, not even 0 * v
          const float p = std::exp(scores[j] - max_score);
          sum += p;
          detail::axpy(p, v_head + j * kv_row, out_i, D);
        }
        // sum >= 1: the maximum's own term is exp(0).
        const float inv_sum = 1.0f / sum;
        for (std::size_t d = 0; d < D; ++d) out_i[d] *= inv_sum;
      }
    }
  });
}

SGT_ISA_END
}  // namespace sgt::kernels
