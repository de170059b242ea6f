// Typed handles on an estimator's stored tensors (spec section 2.2). Views only: the data stays in
// the memory-mapped safetensors files. An absent optional tensor (a bias the config does not ask
// for) is an empty AnyTensorView, which every kernel reads as "none".
#pragma once

#include <string>
#include <vector>

#include "sgt/core/tensor_view.hpp"
#include "sgt/io/config.hpp"
#include "sgt/kernels/swiglu.hpp"

namespace sgt {

struct AttentionWeights {
  AnyTensorView q_proj, k_proj, v_proj, o_proj;
  AnyTensorView q_bias, k_bias, v_bias, o_bias;  // empty unless the architecture/config has them
  AnyTensorView q_norm, k_norm;                  // Qwen3 only
};

struct DecoderLayerWeights {
  AnyTensorView input_norm;
  AttentionWeights attention;
  AnyTensorView post_attention_norm;
  kernels::SwiGluWeights mlp;
};

struct EstimatorWeights {
  std::vector<DecoderLayerWeights> layers;
  AnyTensorView final_norm;  // empty when final_norm is false
  AnyTensorView head;        // empty when there is no head
  AnyTensorView head_bias;
};

namespace detail {
template <class Store>
AnyTensorView optional_tensor(const Store& store, const std::string& name) {
  return store.contains(name) ? store.tensor(name) : AnyTensorView();
}
}  // namespace detail

// Assumes check_model_tensors() has run: names and shapes are those of the config.
template <class Store>
EstimatorWeights load_estimator_weights(const Store& store, const std::string& prefix,
                                        const EstimatorConfig& config) {
  EstimatorWeights w;
  for (std::size_t i = 0; i < config.decoder.num_hidden_layers; ++i) {
    const std::string p = prefix + ".layers." + std::to_string(i) + ".";
    DecoderLayerWeights l;
    l.input_norm = store.tensor(p + "input_layernorm.weight");
    l.post_attention_norm = store.tensor(p + "post_attention_layernorm.weight");
    AttentionWeights& a = l.attention;
    a.q_proj = store.tensor(p + "self_attn.q_proj.weight");
    a.k_proj = store.tensor(p + "self_attn.k_proj.weight");
    a.v_proj = store.tensor(p + "self_attn.v_proj.weight");
    a.o_proj = store.tensor(p + "self_attn.o_proj.weight");
    a.q_bias = detail::optional_tensor(store, p + "self_attn.q_proj.bias");
    a.k_bias = detail::optional_tensor(store, p + "self_attn.k_proj.bias");
    a.v_bias = detail::optional_tensor(store, p + "self_attn.v_proj.bias");
    a.o_bias = detail::optional_tensor(store, p + "self_attn.o_proj.bias");
    a.q_norm = detail::optional_tensor(store, p + "self_attn.q_norm.weight");
    a.k_norm = detail::optional_tensor(store, p + "self_attn.k_norm.weight");
    l.mlp.gate = store.tensor(p + "mlp.gate_proj.weight");
    l.mlp.up = store.tensor(p + "mlp.up_proj.weight");
    l.mlp.down = store.tensor(p + "mlp.down_proj.weight");
    l.mlp.gate_bias = detail::optional_tensor(store, p + "mlp.gate_proj.bias");
    l.mlp.up_bias = detail::optional_tensor(store, p + "mlp.up_proj.bias");
    l.mlp.down_bias = detail::optional_tensor(store, p + "mlp.down_proj.bias");
    w.layers.push_back(l);
  }
  if (config.final_norm) w.final_norm = store.tensor(prefix + ".norm.weight");
  if (config.has_head) {
    w.head = store.tensor(prefix + ".head.weight");
    if (config.head_bias) w.head_bias = store.tensor(prefix + ".head.bias");
  }
  return w;
}

}  // namespace sgt
