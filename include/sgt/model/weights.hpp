// The model's tensors (docs/format.md section 4): one list, for_each_model_tensor(), states every
// name and shape a config implies, and is used both to check a tensor store against the config
// (check_model_tensors, on check_tensor_store, which the causal LM's loader shares) and to load the
// views the model computes with (load_model_weights). A new
// tensor is one line here; the check and the loader cannot disagree.
//
// Weights are views only: the data stays in the memory-mapped safetensors files. A fused tensor
// (Phi-3's qkv_proj [q + 2 kv, H] and gate_up_proj [2 I, H]) is split at load into the q/k/v and
// gate/up views the layer reads: rows of a row-major [out, in] matrix are contiguous, so each part
// is a row range of the stored tensor, no copy. Running them split costs nothing over a fused
// matmul: the layer's Ops::matmuls packs the normed input once for q, k and v (and the SwiGLU
// kernel once for gate and up), and every output lands in its own buffer without a copy-out. A
// tensor the config does not ask for (a bias it lacks, Qwen3's q/k norms elsewhere) is an empty
// AnyTensorView, which every kernel reads as "none". Shapes follow PyTorch's nn.Linear: a
// projection from n to m features is stored [m, n].
#pragma once

#include <cstdint>
#include <iterator>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/log.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/kernels/swiglu.hpp"
#include "sgt/model/config.hpp"

namespace sgt {
SGT_ISA_BEGIN

// hd = head_dim, nh = num_attention_heads, nkv = num_key_value_heads, H = hidden_size.
struct AttentionWeights {
  AnyTensorView q_proj, k_proj, v_proj;  // [nh * hd, H], [nkv * hd, H], [nkv * hd, H]
  AnyTensorView qkv_proj;                // [(nh + 2 nkv) * hd, H] with fused_projections
  AnyTensorView o_proj;                  // [H, nh * hd]
  AnyTensorView q_bias, k_bias, v_bias;  // [nh * hd], [nkv * hd], [nkv * hd] with attention_bias
  AnyTensorView o_bias;                  // [H] with o_proj_bias
  AnyTensorView q_norm, k_norm;          // [hd] with qk_norm
};

struct DecoderLayerWeights {
  AnyTensorView input_norm;  // [H]
  AttentionWeights attention;
  AnyTensorView attention_output_norm;  // [H] with sandwich_norms: o_proj's output, before the add
  AnyTensorView mlp_norm;               // [H]: the MLP's input
  kernels::SwiGluWeights mlp;           // gate, up [I, H]; down [H, I]; biases with mlp_bias
  AnyTensorView gate_up_proj;           // [2 I, H] with fused_projections: gate rows, then up
  AnyTensorView mlp_output_norm;        // [H] with sandwich_norms: the MLP's output, before the add
};

// Rows [first, first + count) of a loaded [rows, cols] matrix, as a view of its storage; an empty
// view stays empty (a tensor list walked only for names and shapes loads nothing).
inline AnyTensorView matrix_rows(const AnyTensorView& m, std::size_t first, std::size_t count) {
  if (m.data() == nullptr) return AnyTensorView();
  const std::size_t cols = m.dim(1);
  if (m.rank() != 2 || first + count > m.dim(0))
    throw Error("rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                ") of a " + m.shape_string() + " matrix");
  Shape shape{};
  shape[0] = count;
  shape[1] = cols;
  const auto* bytes = static_cast<const unsigned char*>(m.data());
  return AnyTensorView(bytes + first * cols * dtype_size(m.dtype()), m.dtype(), shape, 2);
}

// A stack of decoder layers with its optional final norm and head: an estimator of the transform,
// or the decoder of a causal LM (lm/weights.hpp: final norm, no head).
struct DecoderStackWeights {
  std::vector<DecoderLayerWeights> layers;
  AnyTensorView final_norm;  // [H] with final_norm
  AnyTensorView head;        // [H, H] with a head
  AnyTensorView head_bias;   // [H] with a head that has a bias
};

struct ModelWeights {
  AnyTensorView embed_tokens;  // [vocab_size, H]
  DecoderStackWeights mean_estimator, std_estimator;
};

// The names the model format owns: a stored tensor under one of these prefixes must be one the
// config implies.
inline constexpr const char* kModelTensorPrefixes[] = {"embed_tokens.", "mean_estimator.",
                                                       "std_estimator."};

using TensorShape = std::vector<std::uint64_t>;

// Calls visit(name, shape, slot) for every tensor the estimator's config implies, in the order of
// docs/format.md section 4; `slot` is where the loaded view goes. Resizes w.layers.
template <class Visit>
void for_each_estimator_tensor(const EstimatorConfig& e, const std::string& prefix,
                               DecoderStackWeights& w, Visit&& visit) {
  const DecoderConfig& d = e.decoder;
  const std::uint64_t hidden = d.hidden_size, inter = d.intermediate_size, hd = d.head_dim;
  const std::uint64_t q_dim = d.num_attention_heads * hd, kv_dim = d.num_key_value_heads * hd;
  auto linear = [&](const std::string& name, std::uint64_t rows, std::uint64_t cols, bool bias,
                    AnyTensorView& weight, AnyTensorView& bias_slot) {
    visit(name + ".weight", TensorShape{rows, cols}, weight);
    if (bias) visit(name + ".bias", TensorShape{rows}, bias_slot);
  };
  w.layers.resize(d.num_hidden_layers);
  for (std::size_t i = 0; i < d.num_hidden_layers; ++i) {
    const std::string p = prefix + ".layers." + std::to_string(i) + ".";
    DecoderLayerWeights& l = w.layers[i];
    AttentionWeights& a = l.attention;
    visit(p + "input_layernorm.weight", TensorShape{hidden}, l.input_norm);
    if (d.fused_projections) {  // no biases (the family's rule); split where loaded
      visit(p + "self_attn.qkv_proj.weight", TensorShape{q_dim + 2 * kv_dim, hidden}, a.qkv_proj);
      a.q_proj = matrix_rows(a.qkv_proj, 0, q_dim);
      a.k_proj = matrix_rows(a.qkv_proj, q_dim, kv_dim);
      a.v_proj = matrix_rows(a.qkv_proj, q_dim + kv_dim, kv_dim);
    } else {
      linear(p + "self_attn.q_proj", q_dim, hidden, d.attention_bias, a.q_proj, a.q_bias);
      linear(p + "self_attn.k_proj", kv_dim, hidden, d.attention_bias, a.k_proj, a.k_bias);
      linear(p + "self_attn.v_proj", kv_dim, hidden, d.attention_bias, a.v_proj, a.v_bias);
    }
    linear(p + "self_attn.o_proj", hidden, q_dim, d.o_proj_bias, a.o_proj, a.o_bias);
    if (d.qk_norm) {
      visit(p + "self_attn.q_norm.weight", TensorShape{hd}, a.q_norm);
      visit(p + "self_attn.k_norm.weight", TensorShape{hd}, a.k_norm);
    }
    // Llama's post_attention_layernorm is the MLP's input norm; with sandwich norms (Gemma 2, 3)
    // it norms the attention's output, and pre_feedforward_layernorm is the MLP's input norm.
    if (d.sandwich_norms) {
      visit(p + "post_attention_layernorm.weight", TensorShape{hidden}, l.attention_output_norm);
      visit(p + "pre_feedforward_layernorm.weight", TensorShape{hidden}, l.mlp_norm);
      visit(p + "post_feedforward_layernorm.weight", TensorShape{hidden}, l.mlp_output_norm);
    } else {
      visit(p + "post_attention_layernorm.weight", TensorShape{hidden}, l.mlp_norm);
    }
    if (d.fused_projections) {  // Phi3MLP: gate, up = gate_up_proj(x).chunk(2)
      visit(p + "mlp.gate_up_proj.weight", TensorShape{2 * inter, hidden}, l.gate_up_proj);
      l.mlp.gate = matrix_rows(l.gate_up_proj, 0, inter);
      l.mlp.up = matrix_rows(l.gate_up_proj, inter, inter);
    } else {
      linear(p + "mlp.gate_proj", inter, hidden, d.mlp_bias, l.mlp.gate, l.mlp.gate_bias);
      linear(p + "mlp.up_proj", inter, hidden, d.mlp_bias, l.mlp.up, l.mlp.up_bias);
    }
    linear(p + "mlp.down_proj", hidden, inter, d.mlp_bias, l.mlp.down, l.mlp.down_bias);
  }
  if (e.final_norm) visit(prefix + ".norm.weight", TensorShape{hidden}, w.final_norm);
  if (e.has_head) linear(prefix + ".head", hidden, hidden, e.head_bias, w.head, w.head_bias);
}

// Every tensor of the model: the embedding table, then the mean and the std estimator.
template <class Visit>
void for_each_model_tensor(const ModelConfig& config, ModelWeights& w, Visit&& visit) {
  visit(std::string("embed_tokens.weight"), TensorShape{config.vocab_size, config.hidden_size},
        w.embed_tokens);
  for_each_estimator_tensor(config.mean_estimator, "mean_estimator", w.mean_estimator, visit);
  for_each_estimator_tensor(config.std_estimator, "std_estimator", w.std_estimator, visit);
}

struct ExpectedTensor {
  std::string name;
  TensorShape shape;
};

// The tensors a config implies, in the order of for_each_model_tensor.
inline std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config) {
  std::vector<ExpectedTensor> out;
  ModelWeights unused;
  for_each_model_tensor(config, unused,
                        [&](const std::string& name, const TensorShape& shape, AnyTensorView&) {
                          out.push_back({name, shape});
                        });
  return out;
}

// The one check of a tensor store against the tensors a config implies, for both formats
// (check_model_tensors below, load_causal_lm_weights in lm/weights.hpp). for_each_tensor(visit)
// calls visit(name, shape, slot) for every tensor of the list (a for_each_*_tensor). Every listed
// tensor must be stored with its listed shape; a stored tensor the list does not name is an error
// under one of `owned_prefixes` (names the format owns) and otherwise ignored, with one warning for
// all of them, as transformers ignores unexpected keys. Errors name the tensor, and the file when
// `where` is not empty. `Store` needs contains(name), names() and info(name).shape (a sequence of
// integers): sgt::SafetensorsFile and sgt::TensorStore have them.
template <class Store, class ForEachTensor>
void check_tensor_store(const Store& store, ForEachTensor&& for_each_tensor,
                        const std::vector<std::string>& owned_prefixes, const std::string& where) {
  auto fail = [&](const std::string& message, const std::string& name) {
    Error e(message);
    e.at_tensor(name);
    if (!where.empty()) e.at_file(where);
    throw e;
  };
  std::set<std::string> listed;
  for_each_tensor([&](const std::string& name, const TensorShape& shape, AnyTensorView&) {
    listed.insert(name);
    if (!store.contains(name))
      fail("missing; config.json implies shape " + shape_to_string(shape), name);
    const auto& stored = store.info(name).shape;
    const TensorShape actual(stored.begin(), stored.end());
    if (actual != shape)
      fail("shape " + shape_to_string(actual) + " in the file, but config.json implies " +
               shape_to_string(shape),
           name);
  });
  std::vector<std::string> ignored;
  for (const std::string& name : store.names()) {
    if (listed.count(name)) continue;
    for (const std::string& prefix : owned_prefixes)
      if (name.compare(0, prefix.size(), prefix) == 0)
        fail("unexpected tensor: the config implies no tensor of this name", name);
    ignored.push_back(name);
  }
  if (!ignored.empty()) {
    std::string list;
    for (std::size_t i = 0; i < ignored.size() && i < 5; ++i) list += (i ? ", " : "") + ignored[i];
    if (ignored.size() > 5) list += ", ...";
    log_warning((where.empty() ? "" : where + ": ") + std::to_string(ignored.size()) +
                " tensor(s) the config does not use, ignored: " + list);
  }
}

// check_tensor_store for the model format: nothing else under kModelTensorPrefixes.
template <class Store>
void check_model_tensors(const ModelConfig& config, const Store& store) {
  check_tensor_store(
      store,
      [&](auto&& visit) {
        ModelWeights unused;
        for_each_model_tensor(config, unused, visit);
      },
      std::vector<std::string>(std::begin(kModelTensorPrefixes), std::end(kModelTensorPrefixes)),
      std::string());
}

// Checks the store against the config (check_model_tensors), then takes a view of every tensor.
template <class Store>
ModelWeights load_model_weights(const ModelConfig& config, const Store& store) {
  check_model_tensors(config, store);
  ModelWeights w;
  for_each_model_tensor(config, w,
                        [&](const std::string& name, const TensorShape&, AnyTensorView& slot) {
                          slot = store.tensor(name);
                        });
  return w;
}

SGT_ISA_END
}  // namespace sgt
