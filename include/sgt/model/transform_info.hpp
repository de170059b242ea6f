// What `sgt info` prints about an SGT model: its config, its tensors by dtype, and what runs it
// here (the kernels' instruction set, the precision Auto picks, how bf16 products are made).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "sgt/core/isa.hpp"
#include "sgt/kernels/isa_kernel_table.hpp"
#include "sgt/kernels/kernel_table.hpp"
#include "sgt/model/config.hpp"
#include "sgt/model/transform.hpp"

namespace sgt {
SGT_ISA_BEGIN

inline nlohmann::ordered_json estimator_info(const EstimatorConfig& e) {
  const DecoderConfig& d = e.decoder;
  nlohmann::ordered_json j;
  j["model_type"] = model_type_name(d.model_type);
  j["layers"] = d.num_hidden_layers;
  j["hidden_size"] = d.hidden_size;
  j["intermediate_size"] = d.intermediate_size;
  j["num_attention_heads"] = d.num_attention_heads;
  j["num_key_value_heads"] = d.num_key_value_heads;
  j["head_dim"] = d.head_dim;
  j["final_norm"] = e.final_norm;
  j["head"] =
      e.has_head ? nlohmann::ordered_json{{"bias", e.head_bias}} : nlohmann::ordered_json(nullptr);
  j["parameterization"] = parameterization_type_name(e.parameterization.type);
  return j;
}

// `dispatch`: the instruction sets the program was built with and can run (null for a program
// without sgt::dispatch); `tokenizer`: what the model directory's tokenizer says (null: none).
inline nlohmann::ordered_json transform_info(const Transform& model,
                                             nlohmann::ordered_json dispatch,
                                             nlohmann::ordered_json tokenizer) {
  const ModelConfig& c = model.config();
  std::map<std::string, std::size_t> dtypes;
  std::uint64_t params = 0, bytes = 0;
  for (const auto& name : model.tensors().names()) {
    const auto& info = model.tensors().info(name);
    dtypes[dtype_name(info.dtype)]++;
    std::uint64_t n = 1;
    for (auto d : info.shape) n *= d;
    params += n;
    bytes += info.byte_size();
  }
  nlohmann::ordered_json j;
  j["format"] = "sgt4t";
  j["format_version"] = c.format_version;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["embedding_scale"] = c.embedding_scale;
  j["value_range"] = {
      c.value_min ? nlohmann::ordered_json(*c.value_min) : nlohmann::ordered_json(nullptr),
      c.value_max ? nlohmann::ordered_json(*c.value_max) : nlohmann::ordered_json(nullptr)};
  j["mean_estimator"] = estimator_info(c.mean_estimator);
  j["std_estimator"] = estimator_info(c.std_estimator);
  j["tensors"] = model.tensors().size();
  j["dtypes"] = dtypes;
  j["params"] = params;
  j["bytes"] = bytes;
  const kernels::KernelTable& kernels = kernels::default_kernel_table();
  j["kernels"] = kernels.isa;
  j["dispatch"] = std::move(dispatch);
  j["precision"] = precision_name(model.resolve_precision(Precision::Auto));
  j["bf16_dot_product"] = kernels.bf16_dot_product ? "avx512_bf16" : "emulated with f32 fma";
  j["tokenizer"] = std::move(tokenizer);
  return j;
}

SGT_ISA_END
}  // namespace sgt
