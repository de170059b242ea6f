// LmWorkspace: every activation buffer one CausalLM::forward call needs (lm/causal_lm.hpp), as
// the Workspace of model/activations.hpp is for the transform.
//
// Planned from the call's B and T (the new tokens, not the cache length): a workspace kept across
// calls of the same or smaller size allocates nothing after the first, so a decode loop allocates
// only on its first step. The RoPE table covers the cache's max_len positions and is built once.
// One workspace per concurrent caller.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <vector>

#include "sgt/core/isa.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/kernels/isa_kernel_table.hpp"
#include "sgt/kernels/kernel_table.hpp"
#include "sgt/kernels/rope.hpp"
#include "sgt/lm/config.hpp"
#include "sgt/model/activations.hpp"

namespace sgt {
SGT_ISA_BEGIN

class LmWorkspace {
 public:
  // Sizes the buffers for `batch` x `tokens` new tokens (growing only) and the RoPE table for
  // `positions` positions (rebuilt only when it must grow, or when a longrope call ending at
  // `context_end` -- its last position + 1 -- needs the other factor set).
  void plan(const CausalLmConfig& c, std::size_t batch, std::size_t tokens, std::size_t positions,
            const kernels::KernelTable& kernels = kernels::default_kernel_table(),
            std::size_t context_end = 0) {
    const DecoderConfig& d = c.decoder;
    const std::size_t t = batch * tokens, hidden = d.hidden_size;
    const std::size_t q = d.num_attention_heads * d.head_dim, kv = c.kv_width();
    // normed, delta and q double as pack buffers (DecoderBuffers). normed is also the LM head's
    // pack buffer, for at most t rows of hidden.
    layers_.plan(batch, tokens, hidden, q, kv,
                 kernels.swiglu_scratch_floats(t, hidden, d.intermediate_size), kernels);
    DecoderBuffers::grow(last_, batch * hidden);
    DecoderBuffers::grow(last_attn_, batch * q);
    if (positions_.size() < tokens) positions_.resize(tokens);
    rope_.plan(d, positions, context_end);
    batch_ = batch;
    hidden_ = hidden;
    q_width_ = q;
    kv_width_ = kv;
  }

  LayerBuffers layer_buffers() { return layers_.layer_buffers(q_width_, kv_width_); }

  // The last layer's buffers for the last token of each sequence alone (LogitsFor::Last,
  // CachedDecoderLayer::forward_last_tokens): [B, 1, ...] views for its per-token tail. attn has
  // a buffer of its own (the gather reads layer_buffers().attn); normed, delta, the o_proj pack
  // (q) and the MLP scratch are those of layer_buffers(), free by then and sized for B x T >= B
  // rows. k and v stay empty: the tail does not read them.
  LayerBuffers last_token_buffers() {
    LayerBuffers buf = layers_.layer_buffers(batch_, 1, q_width_, kv_width_);
    buf.attn = TensorView<float>(last_attn_.data(), {batch_, 1, q_width_});
    buf.k = TensorView<float>();
    buf.v = TensorView<float>();
    return buf;
  }

  // The residual stream [B, T, H].
  TensorView<float> residual() { return layers_.residual(); }
  // The residual row of the last token of each sequence [B, 1, H]: what the last layer leaves
  // under LogitsFor::Last, and the input of the final norm and the LM head then.
  TensorView<float> last_rows() { return TensorView<float>(last_.data(), {batch_, 1, hidden_}); }
  // The LM head's packed input (normed is free once the layers are done).
  float* head_pack() { return layers_.head_pack(); }
  // cache_position as the kernels take it: T positions.
  std::size_t* positions() { return positions_.data(); }
  const RopeTables& rope() const { return rope_; }

 private:
  DecoderBuffers layers_;
  // Every buffer holds the prompt or values computed from it: wiped when released.
  WipedVector<float> last_, last_attn_;
  std::vector<std::size_t> positions_;
  RopeTables rope_;
  std::size_t batch_ = 0, hidden_ = 0, q_width_ = 0, kv_width_ = 0;
};

SGT_ISA_END
}  // namespace sgt
