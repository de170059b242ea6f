// An estimator (docs/format.md section 1.1): decoder layers, optional final norm, optional head,
// and a parameterization. It maps clean embeddings x [B, S, H] to the mean or the std [B, S, H].
#pragma once

#include <algorithm>
#include <utility>

#include "sgt/core/isa.hpp"
#include "sgt/model/activations.hpp"
#include "sgt/model/config.hpp"
#include "sgt/model/decoder_layer.hpp"
#include "sgt/model/ops.hpp"
#include "sgt/model/weights.hpp"

namespace sgt {
SGT_ISA_BEGIN

class Estimator {
 public:
  Estimator() = default;
  Estimator(EstimatorConfig config, DecoderStackWeights weights)
      : config_(std::move(config)), weights_(std::move(weights)) {}

  const EstimatorConfig& config() const noexcept { return config_; }
  const DecoderStackWeights& weights() const noexcept { return weights_; }

  // Whether every Linear weight of the estimator (projections, MLP, head) is stored as BF16.
  bool linears_are_bf16() const noexcept {
    auto bf16 = [](const AnyTensorView& w) {
      return w.data() == nullptr || w.dtype() == DType::BF16;
    };
    for (const DecoderLayerWeights& l : weights_.layers) {
      const AttentionWeights& a = l.attention;
      if (!bf16(a.q_proj) || !bf16(a.k_proj) || !bf16(a.v_proj) || !bf16(a.o_proj) ||
          !bf16(l.mlp.gate) || !bf16(l.mlp.up) || !bf16(l.mlp.down))
        return false;
    }
    return bf16(weights_.head);
  }

  // out[b, s] = parameterization(head(norm(layers(x))))[b, s] at real positions, 0 at padding.
  void forward(TensorView<const float> x, const SequenceBatch& seq, const RopeTables& rope,
               Workspace& ws, TensorView<float> out, const Ops& ops) const {
    const DecoderConfig& d = config_.decoder;
    TensorView<float> h = ws.residual();
    std::copy(x.data(), x.data() + x.size(), h.data());
    const LayerBuffers buf = ws.layer_buffers(d);
    for (std::size_t i = 0; i < weights_.layers.size(); ++i)
      DecoderLayer::forward(d, i, weights_.layers[i], rope.for_layer(d, i), seq, h, buf, ops);
    if (config_.final_norm)
      ops.rms_norm(h, weights_.final_norm, static_cast<float>(d.rms_norm_eps), d.norm_style, h);
    if (config_.has_head)
      ops.matmul(h, weights_.head, weights_.head_bias, out, buf.head_pack());
    else
      std::copy(h.data(), h.data() + h.size(), out.data());
    ops.parameterization(config_.parameterization, out);
    zero_padding_rows(seq, out);
  }

 private:
  EstimatorConfig config_;
  DecoderStackWeights weights_;
};

SGT_ISA_END
}  // namespace sgt
