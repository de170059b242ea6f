// One decoder layer of a causal LM with a KV cache: the formula of model/decoder_layer.hpp,
//
//   h = h + Attention(RMSNorm_in(h))      RoPE at cache_position, keys/values appended to the cache
//   h = h + MLP(RMSNorm_mlp(h))           (and the optional output norms of DecoderLayer)
//
// where the T new tokens' queries attend to every cached position up to their own. Two paths for
// the attention, one result:
//   - a prefill from position 0 (fresh): the cache holds nothing before the new tokens, so their
//     own keys are all there is -- flash attention (or SDPA) on q, k, v as the transform runs it;
//   - anything else (a decode step, T = 1; a second turn starting mid-cache): cached attention of
//     the T queries against the cache, which now holds the new keys too.
// The attention output goes on through DecoderLayer's per-token tail (o_proj, the residual adds,
// the post-attention norm, the MLP): for every new token, or, in the last layer of a call that
// wants the last position's logits only, for that token of each sequence (forward_last_tokens).
#pragma once

#include <algorithm>
#include <cstddef>

#include "sgt/core/isa.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/lm/kv_cache.hpp"
#include "sgt/model/activations.hpp"
#include "sgt/model/config.hpp"
#include "sgt/model/decoder_layer.hpp"
#include "sgt/model/ops.hpp"
#include "sgt/model/weights.hpp"

namespace sgt {
SGT_ISA_BEGIN

// The new tokens of one forward call: B rows of T tokens at positions [start, start + T).
struct CacheStep {
  std::size_t batch = 0;
  std::size_t tokens = 0;
  std::size_t start = 0;
  const std::size_t* positions = nullptr;  // [T]: start, start + 1, ...
  bool fresh() const noexcept { return start == 0 && tokens > 1; }
};

struct CachedDecoderLayer {
  static void forward(const DecoderConfig& c, const DecoderLayerWeights& w,
                      const kernels::RopeTable* rope, const CacheStep& step, KvCache& cache,
                      std::size_t layer, TensorView<float> h, const LayerBuffers& buf,
                      const Ops& ops) {
    DecoderLayer::input_norm(c, w, h, buf, ops);
    attention(c, w.attention, rope, step, cache, layer, buf, ops);
    DecoderLayer::per_token_tail(c, w, h, buf, ops);
  }

  // The same layer when only the last token of each sequence goes on (the last layer under
  // LogitsFor::Last, as llama.cpp prunes it): the attention runs on every new token, since the
  // cache needs all their keys and values, then the attention output and the residual row of
  // token T-1 of each sequence are gathered into last.attn and last_h ([B, 1, ...]), and o_proj,
  // the residual adds, the post-attention norm and the MLP run on those B rows alone. The other
  // rows' o_proj and MLP would feed nothing: not the cache (written before), not the logits.
  // Every step after the attention is per row and gives a row the bits it gets in the whole
  // batch (the matmul's guarantee, tests/test_kernels_matmul.cpp), so last_h is bit for bit the
  // rows of h that forward() would leave. `last` may share normed, delta, q and the MLP scratch
  // with `buf` (free once the heads ran), but not attn: the gather reads buf.attn.
  static void forward_last_tokens(const DecoderConfig& c, const DecoderLayerWeights& w,
                                  const kernels::RopeTable* rope, const CacheStep& step,
                                  KvCache& cache, std::size_t layer, TensorView<const float> h,
                                  const LayerBuffers& buf, TensorView<float> last_h,
                                  const LayerBuffers& last, const Ops& ops) {
    DecoderLayer::input_norm(c, w, h, buf, ops);
    attention(c, w.attention, rope, step, cache, layer, buf, ops);
    const std::size_t T = step.tokens, H = h.cols(), Q = buf.attn.cols();
    for (std::size_t b = 0; b < step.batch; ++b) {
      const std::size_t t = b * T + T - 1;
      std::copy(buf.attn.row(t), buf.attn.row(t) + Q, last.attn.row(b));
      std::copy(h.row(t), h.row(t) + H, last_h.row(b));
    }
    DecoderLayer::per_token_tail(c, w, last_h, last, ops);
  }

 private:
  // buf.attn = the attention heads' output for the T new tokens (before o_proj); their keys and
  // values are written to the cache first.
  static void attention(const DecoderConfig& c, const AttentionWeights& w,
                        const kernels::RopeTable* rope, const CacheStep& step, KvCache& cache,
                        std::size_t layer, const LayerBuffers& buf, const Ops& ops) {
    const std::size_t hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
    DecoderLayer::project_qkv(c, w, step.batch * step.tokens, buf, ops);
    if (rope) {  // null: a layer without RoPE
      ops.apply_rope_at(buf.q, nh, hd, *rope, step.positions);
      ops.apply_rope_at(buf.k, nkv, hd, *rope, step.positions);
    }
    cache.write(layer, step.start, buf.k, buf.v);

    const kernels::AttentionOptions options = DecoderLayer::attention_options(c, layer);
    if (step.fresh()) {
      kernels::AttentionShape shape{step.batch, step.tokens, nh, nkv, hd};
      ops.attention(shape, options, buf.q, buf.k, buf.v, nullptr, buf.attn);
    } else {
      kernels::CachedAttentionShape shape{step.batch, step.tokens, cache.max_len(), nh, nkv, hd};
      const KvCache& cached = cache;
      ops.cached_attention(shape, options, buf.q, cached.keys(layer), cached.values(layer),
                           step.positions, buf.attn);
    }
  }
};

SGT_ISA_END
}  // namespace sgt
