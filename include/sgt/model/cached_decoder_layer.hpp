// One decoder layer of a causal LM with a KV cache: the formula of model/decoder_layer.hpp,
//
//   h = h + Attention(RMSNorm_in(h))      RoPE at cache_position, keys/values appended to the cache
//   h = h + MLP(RMSNorm_post(h))          SwiGLU
//
// where the T new tokens' queries attend to every cached position up to their own. Two paths for
// the attention, one result:
//   - a prefill from position 0 (fresh): the cache holds nothing before the new tokens, so their
//     own keys are all there is -- flash attention (or SDPA) on q, k, v as the transform runs it;
//   - anything else (a decode step, T = 1; a second turn starting mid-cache): cached attention of
//     the T queries against the cache, which now holds the new keys too.
#pragma once

#include <cstddef>

#include "sgt/core/isa.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/model/activations.hpp"
#include "sgt/model/config.hpp"
#include "sgt/model/kv_cache.hpp"
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
                      const kernels::RopeTable& rope, const CacheStep& step, KvCache& cache,
                      std::size_t layer, TensorView<float> h, const LayerBuffers& buf,
                      const Ops& ops) {
    const float eps = static_cast<float>(c.rms_norm_eps);

    // h = h + Attention(RMSNorm_in(h))
    ops.rms_norm(h, w.input_norm, eps, c.norm_style, buf.normed);
    attention(c, w.attention, rope, step, cache, layer, buf, ops);
    ops.add(h, buf.delta);

    // h = h + MLP(RMSNorm_post(h))
    ops.rms_norm(h, w.post_attention_norm, eps, c.norm_style, buf.normed);
    ops.swiglu(buf.normed, w.mlp, buf.delta, buf.mlp_scratch);
    ops.add(h, buf.delta);
  }

 private:
  static void attention(const DecoderConfig& c, const AttentionWeights& w,
                        const kernels::RopeTable& rope, const CacheStep& step, KvCache& cache,
                        std::size_t layer, const LayerBuffers& buf, const Ops& ops) {
    const std::size_t hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
    ops.matmuls(
        buf.normed, buf.qkv_pack(),
        {{w.q_proj, w.q_bias, buf.q}, {w.k_proj, w.k_bias, buf.k}, {w.v_proj, w.v_bias, buf.v}});
    if (c.qk_norm) {  // per head: q and k seen as [tokens * heads, head_dim]
      const float eps = static_cast<float>(c.rms_norm_eps);
      const std::size_t tokens = step.batch * step.tokens;
      TensorView<float> q_heads(buf.q.data(), {tokens * nh, hd});
      TensorView<float> k_heads(buf.k.data(), {tokens * nkv, hd});
      ops.rms_norm(q_heads, w.q_norm, eps, c.norm_style, q_heads);
      ops.rms_norm(k_heads, w.k_norm, eps, c.norm_style, k_heads);
    }
    ops.apply_rope_at(buf.q, nh, hd, rope, step.positions);
    ops.apply_rope_at(buf.k, nkv, hd, rope, step.positions);
    cache.write(layer, step.start, buf.k, buf.v);

    kernels::AttentionOptions options;
    options.scale = static_cast<float>(c.attention_scale);
    options.causal = true;
    options.sliding_window = c.sliding_window;  // 0: none
    if (step.fresh()) {
      kernels::AttentionShape shape{step.batch, step.tokens, nh, nkv, hd};
      ops.attention(shape, options, buf.q, buf.k, buf.v, nullptr, buf.attn);
    } else {
      kernels::CachedAttentionShape shape{step.batch, step.tokens, cache.max_len(), nh, nkv, hd};
      const KvCache& cached = cache;
      ops.cached_attention(shape, options, buf.q, cached.keys(layer), cached.values(layer),
                           step.positions, buf.attn);
    }
    ops.matmul(buf.attn, w.o_proj, w.o_bias, buf.delta, buf.o_proj_pack());
  }
};

SGT_ISA_END
}  // namespace sgt
