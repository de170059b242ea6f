// One decoder layer, exactly the formula of docs/format.md section 1.1:
//
//   h = h + [RMSNorm_attn_out] Attention(RMSNorm_in(h))    causal + padding mask, RoPE, GQA
//   h = h + [RMSNorm_mlp_out] MLP(RMSNorm_mlp(h))          SwiGLU or GeGLU
//
// Nothing else happens here: kernels are called by name, in the order of the formula. The
// config's switches (resolved from the family's description, model/families.hpp) turn on the
// optional steps: q/k norms, the bracketed output norms (sandwich_norms), and per layer
// (DecoderConfig::layers) the sliding window and which RoPE table, if any; biases are simply
// present or empty weights. `rope` is the table of this layer (RopeTables::for_layer): null for
// a layer without RoPE.
#pragma once

#include <cstddef>

#include "sgt/core/isa.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/model/activations.hpp"
#include "sgt/model/config.hpp"
#include "sgt/model/ops.hpp"
#include "sgt/model/weights.hpp"

namespace sgt {
SGT_ISA_BEGIN

struct DecoderLayer {
  static void forward(const DecoderConfig& c, std::size_t layer, const DecoderLayerWeights& w,
                      const kernels::RopeTable* rope, const SequenceBatch& seq, TensorView<float> h,
                      const LayerBuffers& buf, const Ops& ops) {
    input_norm(c, w, h, buf, ops);
    attention(c, layer, w.attention, rope, seq, buf, ops);
    per_token_tail(c, w, h, buf, ops);
  }

  // The layer in three steps, which the cached layer of a causal LM
  // (lm/cached_decoder_layer.hpp) runs with an attention of its own, and in its last layer on
  // fewer rows after the attention than before:
  //   input_norm       buf.normed = RMSNorm_in(h)
  //   (attention)      buf.attn from buf.normed: the only step where tokens see each other
  //   per_token_tail   o_proj, the residual adds, RMSNorm_post and the MLP, each row on its own
  static void input_norm(const DecoderConfig& c, const DecoderLayerWeights& w,
                         TensorView<const float> h, const LayerBuffers& buf, const Ops& ops) {
    ops.rms_norm(h, w.input_norm, static_cast<float>(c.rms_norm_eps), c.norm_style, buf.normed);
  }

  //   h = h + [RMSNorm_attn_out] o_proj(buf.attn)    (the end of the attention's line)
  //   h = h + [RMSNorm_mlp_out] MLP(RMSNorm_mlp(h))
  // Each row on its own (matmuls, norms and adds are per row), so it may run on any subset of the
  // rows: h and buf.attn hold just those, and the other buffers are sized for them.
  static void per_token_tail(const DecoderConfig& c, const DecoderLayerWeights& w,
                             TensorView<float> h, const LayerBuffers& buf, const Ops& ops) {
    const float eps = static_cast<float>(c.rms_norm_eps);
    ops.matmul(buf.attn, w.attention.o_proj, w.attention.o_bias, buf.delta, buf.o_proj_pack());
    if (c.sandwich_norms)
      ops.rms_norm(buf.delta, w.attention_output_norm, eps, c.norm_style, buf.delta);
    ops.add(h, buf.delta);

    ops.rms_norm(h, w.mlp_norm, eps, c.norm_style, buf.normed);
    ops.swiglu(buf.normed, w.mlp, c.hidden_act, buf.delta, buf.mlp_scratch);
    if (c.sandwich_norms) ops.rms_norm(buf.delta, w.mlp_output_norm, eps, c.norm_style, buf.delta);
    ops.add(h, buf.delta);
  }

  // q, k, v = projections of buf.normed ([tokens, H]), then the per-head q/k norms if the family
  // has them. RoPE is the caller's: at positions 0..S-1 here, at cache_position in a causal LM.
  static void project_qkv(const DecoderConfig& c, const AttentionWeights& w, std::size_t tokens,
                          const LayerBuffers& buf, const Ops& ops) {
    const std::size_t hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
    ops.matmuls(
        buf.normed, buf.qkv_pack(),
        {{w.q_proj, w.q_bias, buf.q}, {w.k_proj, w.k_bias, buf.k}, {w.v_proj, w.v_bias, buf.v}});
    if (c.qk_norm) {  // per head: q and k seen as [tokens * heads, head_dim]
      const float eps = static_cast<float>(c.rms_norm_eps);
      TensorView<float> q_heads(buf.q.data(), {tokens * nh, hd});
      TensorView<float> k_heads(buf.k.data(), {tokens * nkv, hd});
      ops.rms_norm(q_heads, w.q_norm, eps, c.norm_style, q_heads);
      ops.rms_norm(k_heads, w.k_norm, eps, c.norm_style, k_heads);
    }
  }

  // Causal, the config's scale and soft cap, and the layer's sliding window.
  static kernels::AttentionOptions attention_options(const DecoderConfig& c, std::size_t layer) {
    kernels::AttentionOptions options;
    options.scale = static_cast<float>(c.attention_scale);
    options.causal = true;
    options.sliding_window = c.layers[layer].sliding_window;  // 0: none
    options.logit_softcap = c.attn_logit_softcapping;         // 0: none
    return options;
  }

 private:
  // attn = softmax(cap(rope(q) rope(k)^T * scale) + mask) v, q, k, v projections of `normed`.
  static void attention(const DecoderConfig& c, std::size_t layer, const AttentionWeights& w,
                        const kernels::RopeTable* rope, const SequenceBatch& seq,
                        const LayerBuffers& buf, const Ops& ops) {
    const std::size_t hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
    project_qkv(c, w, seq.tokens(), buf, ops);
    if (rope) {
      ops.apply_rope(buf.q, nh, hd, *rope);
      ops.apply_rope(buf.k, nkv, hd, *rope);
    }

    kernels::AttentionShape shape{seq.batch, seq.seq_len, nh, nkv, hd};
    ops.attention(shape, attention_options(c, layer), buf.q, buf.k, buf.v, seq.attention_mask,
                  buf.attn);
  }
};

SGT_ISA_END
}  // namespace sgt
