// Every activation buffer a transform call needs, in one place (as gemma.cpp's activations.h):
// the batch being transformed (SequenceBatch), the views one decoder layer writes (LayerBuffers),
// the buffers behind them (DecoderBuffers, shared with the causal LM's workspace), and the
// Workspace that owns them.
//
// Buffers are planned from the call's actual B and S (never from max_position_embeddings) and
// reused: a Workspace kept across calls of the same or smaller size allocates nothing after the
// first, and no call allocates per layer. One Workspace per concurrent caller; the model itself is
// read-only during a call.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "sgt/core/isa.hpp"
#include "sgt/core/secure_memory.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/kernels/isa_kernel_table.hpp"
#include "sgt/kernels/kernel_table.hpp"
#include "sgt/kernels/rope.hpp"
#include "sgt/kernels/swiglu.hpp"
#include "sgt/model/config.hpp"

namespace sgt {
SGT_ISA_BEGIN

// The batch being transformed: B rows of S tokens, with the padding mask (null = no padding).
struct SequenceBatch {
  std::size_t batch = 0;
  std::size_t seq_len = 0;
  const std::uint8_t* attention_mask = nullptr;  // [B * S], 1 = real token
  std::size_t tokens() const noexcept { return batch * seq_len; }
  bool is_padding(std::size_t token) const noexcept {
    return attention_mask && !attention_mask[token];
  }
};

// The rule "padding positions carry 0" (docs/format.md section 1), applied to a [B, S, width]
// activation: used for the estimators' outputs and the noise, so padding rows never depend on
// what the kernels computed there.
inline void zero_padding_rows(const SequenceBatch& seq, TensorView<float> x) {
  if (!seq.attention_mask) return;
  for (std::size_t t = 0; t < seq.tokens(); ++t)
    if (seq.is_padding(t)) std::fill(x.row(t), x.row(t) + x.cols(), 0.0f);
}

// Activations one layer writes, planned by the Workspace for the actual B and S.
struct LayerBuffers {
  TensorView<float> normed;      // [B, S, hidden]
  TensorView<float> q;           // [B, S, heads * head_dim]
  TensorView<float> k;           // [B, S, kv_heads * head_dim]
  TensorView<float> v;           // [B, S, kv_heads * head_dim]
  TensorView<float> attn;        // [B, S, heads * head_dim]
  TensorView<float> delta;       // [B, S, hidden]: the branch output added to the residual stream
  float* mlp_scratch = nullptr;  // KernelTable::swiglu_scratch_floats(B * S, hidden, intermediate)
  // Packed matmul inputs (kernels/packed_activations.hpp) live in buffers that are free at that
  // moment, so they cost no memory of their own: q, k and v pack `normed` into `delta` (written
  // only by o_proj, later), o_proj packs `attn` into `q` (consumed by the attention before), and
  // a head after the last layer (the estimator's, the LM's) packs its input into `normed`. Those
  // three buffers are planned with the packed size: the token count rounded up to whole tiles.
  float* qkv_pack() const { return delta.data(); }
  float* o_proj_pack() const { return q.data(); }
  float* head_pack() const { return normed.data(); }
};

// The buffers a decoder stack's layers write (LayerBuffers) and its residual stream, planned for
// B x S tokens and the widest layer: owned by the transform's Workspace (both estimators share
// them) and by the causal LM's LmWorkspace (lm/workspace.hpp), so the rule that lets packed matmul
// inputs live in them is applied in one place.
class DecoderBuffers {
 public:
  // Grows (never shrinks) every buffer for `batch` x `seq_len` tokens of `hidden` features, q and
  // attn of q_width, k and v of kv_width, and mlp_scratch_floats of SwiGLU scratch. normed, delta
  // and q double as pack buffers (LayerBuffers): they hold whole tiles of tokens, of the size the
  // kernels that will run use.
  void plan(std::size_t batch, std::size_t seq_len, std::size_t hidden, std::size_t q_width,
            std::size_t kv_width, std::size_t mlp_scratch_floats,
            const kernels::KernelTable& kernels) {
    const std::size_t t = batch * seq_len;  // the caller checked the product
    grow(h_, t * hidden);
    grow(normed_, kernels.packed_activation_floats(t, hidden));
    grow(delta_, kernels.packed_activation_floats(t, hidden));
    grow(q_, kernels.packed_activation_floats(t, q_width));
    grow(attn_, t * q_width);
    grow(k_, t * kv_width);
    grow(v_, t * kv_width);
    grow(mlp_, mlp_scratch_floats);
    batch_ = batch;
    seq_len_ = seq_len;
    hidden_ = hidden;
  }

  // Views for the planned B x S tokens, of a layer with these widths (at most the planned ones).
  LayerBuffers layer_buffers(std::size_t q_width, std::size_t kv_width) {
    return layer_buffers(batch_, seq_len_, q_width, kv_width);
  }
  // The same for `batch` x `seq_len` tokens, at most the planned count: a subset of the rows (the
  // last token of each sequence) on the same buffers.
  LayerBuffers layer_buffers(std::size_t batch, std::size_t seq_len, std::size_t q_width,
                             std::size_t kv_width) {
    const std::size_t b = batch, s = seq_len;
    LayerBuffers buf;
    buf.normed = TensorView<float>(normed_.data(), {b, s, hidden_});
    buf.q = TensorView<float>(q_.data(), {b, s, q_width});
    buf.k = TensorView<float>(k_.data(), {b, s, kv_width});
    buf.v = TensorView<float>(v_.data(), {b, s, kv_width});
    buf.attn = TensorView<float>(attn_.data(), {b, s, q_width});
    buf.delta = TensorView<float>(delta_.data(), {b, s, hidden_});
    buf.mlp_scratch = mlp_.data();
    return buf;
  }

  // The residual stream [B, S, hidden].
  TensorView<float> residual() { return TensorView<float>(h_.data(), {batch_, seq_len_, hidden_}); }
  // `normed` as [B, S, hidden], for a value needed once the layers are done.
  TensorView<float> normed() {
    return TensorView<float>(normed_.data(), {batch_, seq_len_, hidden_});
  }
  // The packed input of a head after the last layer (normed is free then): at most B x S rows.
  float* head_pack() { return normed_.data(); }

  // Grows v to n floats, never shrinks it: how every workspace buffer is planned.
  static void grow(WipedVector<float>& v, std::size_t n) {
    if (v.size() < n) v.resize(n);
  }

 private:
  // Every buffer holds the clean prompt or values computed from it: wiped when released.
  WipedVector<float> h_, normed_, delta_, q_, attn_, k_, v_, mlp_;
  std::size_t batch_ = 0, seq_len_ = 0, hidden_ = 0;
};

// The RoPE tables of one decoder stack for a number of positions: the global table, and the local
// one when some layer rotates with DecoderConfig::local_rope (Gemma 3). Rebuilt only when they
// must grow or their parameters change.
class RopeTables {
 public:
  // Tables for `positions` positions, for a call whose last position is context_end - 1:
  // longrope's factor set follows it (RopeTable::serves). An estimator runs positions 0..S-1.
  void plan(const DecoderConfig& d, std::size_t positions, std::size_t context_end) {
    bool local = false;
    for (const LayerAttention& l : d.layers) local = local || l.rope == LayerRope::Local;
    plan_one(global_, d.rope, positions, context_end);
    if (local) plan_one(local_, d.local_rope, positions, context_end);
  }
  void plan(const DecoderConfig& d, std::size_t positions) { plan(d, positions, positions); }

  // The table layer i rotates q and k with: null for a layer without RoPE.
  const kernels::RopeTable* for_layer(const DecoderConfig& d, std::size_t i) const {
    switch (d.layers[i].rope) {
      case LayerRope::Global:
        return &*global_;
      case LayerRope::Local:
        return &*local_;
      case LayerRope::None:
        return nullptr;
    }
    return nullptr;
  }

 private:
  static void plan_one(std::optional<kernels::RopeTable>& table, const kernels::RopeParameters& p,
                       std::size_t positions, std::size_t context_end) {
    if (!table || table->num_positions() < positions || !table->serves(p, context_end))
      table.emplace(p, positions, kernels::rope_uses_long_factors(p, context_end));
  }
  std::optional<kernels::RopeTable> global_, local_;
};

class Workspace {
 public:
  // Sizes every buffer for `batch` x `seq_len` tokens of `model` (growing only), and the RoPE
  // tables of both estimators for seq_len positions (rebuilt only when they must grow). The layers'
  // buffers are planned for the wider estimator (DecoderBuffers).
  void plan(const ModelConfig& model, std::size_t batch, std::size_t seq_len,
            const kernels::KernelTable& kernels = kernels::default_kernel_table()) {
    const std::size_t t = batch * seq_len;  // the caller checked the product (Transform::validate)
    const std::size_t hidden = model.hidden_size;
    std::size_t q = 0, kv = 0, mlp = 0;
    for (const EstimatorConfig* e : {&model.mean_estimator, &model.std_estimator}) {
      const DecoderConfig& d = e->decoder;
      q = std::max(q, d.num_attention_heads * d.head_dim);
      kv = std::max(kv, d.num_key_value_heads * d.head_dim);
      mlp = std::max(mlp, kernels.swiglu_scratch_floats(t, hidden, d.intermediate_size));
    }
    layers_.plan(batch, seq_len, hidden, q, kv, mlp, kernels);
    DecoderBuffers::grow(embeddings_, t * hidden);
    DecoderBuffers::grow(mean_, t * hidden);
    DecoderBuffers::grow(sigma_, t * hidden);
    // noise_ grows on demand (noise()): without intermediates eps lives in normed (eps_scratch).
    protect_.resize(std::max(protect_.size(), t));
    mask_.resize(std::max(mask_.size(), t));
    mean_rope_.plan(model.mean_estimator.decoder, seq_len);
    std_rope_.plan(model.std_estimator.decoder, seq_len);
    batch_ = batch;
    seq_len_ = seq_len;
    hidden_ = hidden;
  }

  // Views for one estimator's layers (its own q/kv widths; buffers are sized for the widest).
  LayerBuffers layer_buffers(const DecoderConfig& d) {
    return layers_.layer_buffers(d.num_attention_heads * d.head_dim,
                                 d.num_key_value_heads * d.head_dim);
  }

  TensorView<float> residual() { return layers_.residual(); }
  TensorView<float> embeddings() { return view(embeddings_); }
  TensorView<float> mean() { return view(mean_); }
  TensorView<float> sigma() { return view(sigma_); }
  // eps kept for the caller (keep_intermediates): its own buffer, grown on first use.
  TensorView<float> noise() {
    DecoderBuffers::grow(noise_, batch_ * seq_len_ * hidden_);
    return view(noise_);
  }
  // eps needed only until the noise formula ran: `normed`, free once both estimators are done.
  TensorView<float> eps_scratch() { return layers_.normed(); }
  std::uint8_t* protect() { return protect_.data(); }
  std::uint8_t* attention_mask() { return mask_.data(); }
  const RopeTables& mean_rope() const { return mean_rope_; }
  const RopeTables& std_rope() const { return std_rope_; }

 private:
  TensorView<float> view(WipedVector<float>& v) {
    return TensorView<float>(v.data(), {batch_, seq_len_, hidden_});
  }

  DecoderBuffers layers_;
  // Every buffer holds the clean prompt or values computed from it: wiped when released.
  WipedVector<float> embeddings_, mean_, sigma_, noise_;
  WipedVector<std::uint8_t> protect_, mask_;
  RopeTables mean_rope_, std_rope_;
  std::size_t batch_ = 0, seq_len_ = 0, hidden_ = 0;
};

SGT_ISA_END
}  // namespace sgt
