// One decoder layer, exactly the formula of spec section 1.1:
//
//   h = h + Attention(RMSNorm_in(h))      causal + padding mask, RoPE on q and k, GQA
//   h = h + MLP(RMSNorm_post(h))          SwiGLU
//
// Nothing else happens here: kernels are called by name, in the order of the formula. The
// architecture's traits switch the two optional steps (Qwen3's q/k norms, Mistral's window).
#pragma once

#include <cmath>
#include <cstdint>

#include "sgt/core/tensor_view.hpp"
#include "sgt/io/config.hpp"
#include "sgt/model/ops.hpp"
#include "sgt/model/weights.hpp"

namespace sgt {

// The batch being transformed: B rows of S tokens, with the padding mask (null = no padding).
struct SequenceBatch {
  std::size_t batch = 0;
  std::size_t seq_len = 0;
  const std::uint8_t* attention_mask = nullptr;  // [B * S], 1 = real token
  std::size_t tokens() const noexcept { return batch * seq_len; }
};

// Activations one layer writes, planned by the caller for the actual B and S (model/workspace.hpp).
struct LayerBuffers {
  TensorView<float> normed;  // [B, S, hidden]
  TensorView<float> q;       // [B, S, heads * head_dim]
  TensorView<float> k;       // [B, S, kv_heads * head_dim]
  TensorView<float> v;       // [B, S, kv_heads * head_dim]
  TensorView<float> attn;    // [B, S, heads * head_dim]
  TensorView<float> delta;   // [B, S, hidden]: the branch output added to the residual stream
  float* mlp_scratch = nullptr;
};

template <class Architecture>
struct DecoderLayer {
  static void forward(const DecoderConfig& c, const DecoderLayerWeights& w,
                      const kernels::RopeTable& rope, const SequenceBatch& seq, TensorView<float> h,
                      const LayerBuffers& buf, const Ops& ops) {
    const float eps = static_cast<float>(c.rms_norm_eps);

    // h = h + Attention(RMSNorm_in(h))
    ops.rms_norm(h, w.input_norm, eps, buf.normed);
    attention(c, w.attention, rope, seq, buf, ops);
    ops.add(h, buf.delta);

    // h = h + MLP(RMSNorm_post(h))
    ops.rms_norm(h, w.post_attention_norm, eps, buf.normed);
    ops.swiglu(buf.normed, w.mlp, buf.delta, buf.mlp_scratch);
    ops.add(h, buf.delta);
  }

 private:
  // delta = o_proj(softmax(rope(q) rope(k)^T * scale + mask) v), q, k, v projections of `normed`.
  static void attention(const DecoderConfig& c, const AttentionWeights& w,
                        const kernels::RopeTable& rope, const SequenceBatch& seq,
                        const LayerBuffers& buf, const Ops& ops) {
    const std::size_t hd = c.head_dim, nh = c.num_attention_heads, nkv = c.num_key_value_heads;
    ops.matmul(buf.normed, w.q_proj, w.q_bias, buf.q);
    ops.matmul(buf.normed, w.k_proj, w.k_bias, buf.k);
    ops.matmul(buf.normed, w.v_proj, w.v_bias, buf.v);
    if constexpr (Architecture::kQkNorm) {
      const float eps = static_cast<float>(c.rms_norm_eps);
      TensorView<float> q_heads(buf.q.data(), {seq.tokens() * nh, hd});
      TensorView<float> k_heads(buf.k.data(), {seq.tokens() * nkv, hd});
      ops.rms_norm(q_heads, w.q_norm, eps, q_heads);
      ops.rms_norm(k_heads, w.k_norm, eps, k_heads);
    }
    ops.apply_rope(buf.q, nh, hd, rope);
    ops.apply_rope(buf.k, nkv, hd, rope);

    kernels::AttentionShape shape{seq.batch, seq.seq_len, nh, nkv, hd};
    kernels::AttentionOptions options;
    options.scale = static_cast<float>(c.attention_scale);
    options.causal = true;
    if constexpr (Architecture::kSlidingWindow) options.sliding_window = c.sliding_window;
    ops.attention(shape, options, buf.q, buf.k, buf.v, seq.attention_mask, buf.attn);
    ops.matmul(buf.attn, w.o_proj, w.o_bias, buf.delta);
  }
};

}  // namespace sgt
