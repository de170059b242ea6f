// The model families an estimator may be, each described once, as data, in kModelFamilies.
//
// A family is a Llama-style decoder plus a few switches. Everything that differs between families
// is a field of ModelFamily: the name config.json uses, the defaults of the family's transformers
// config class, how it decides which projections carry biases, whether q and k get a per-head
// RMSNorm, whether its projections are stored fused, how it treats a sliding window, its RMSNorm
// style. The config parser
// (model/config_json.hpp) reads a family's keys by these rules and resolves them into plain
// switches of DecoderConfig; the tensor list (model/weights.hpp) and the decoder layer
// (model/decoder_layer.hpp) read only those switches, never the family. So adding a family is a
// ModelType value and a row below (plus its Python reference, fixtures and docs): see
// docs/architecture.md.
//
// The rows were checked against transformers 5.25 by tests/data/config/hf_defaults.json, written
// by tools/fixtures/config_fixtures.py from LlamaConfig(), MistralConfig(), Qwen2Config(),
// Qwen3Config(), Phi3Config() and decoder layers built from them:
//
//                            llama        mistral   qwen2     qwen3     phi3
//   hidden_size              4096         4096      4096      4096      3072
//   intermediate_size        11008        14336     22016     22016     8192
//   num_hidden_layers        32           32        32        32        32
//   num_attention_heads      32           32        32        32        32
//   num_key_value_heads      = heads      8         32        32        = heads  (null: = heads)
//   head_dim                 hidden/heads (all three)         128       hidden/heads
//   max_position_embeddings  2048         131072    32768     32768     4096
//   rms_norm_eps             1e-6         1e-6      1e-6      1e-6      1e-5
//   rope_theta               10000        10000     10000     10000     10000
//   hidden_act               silu         silu      silu      silu      silu
//   q/k/v biases             attn_bias    none      always    attn_bias none
//   o_proj bias              attn_bias    none      never     attn_bias none
//   gate/up/down biases      mlp_bias     none      none      none      none
//   sliding_window           none         4096      none (use_sliding_window must be false)
//                                                                       null (every layer)
//   q_norm / k_norm          no           no        no        yes       no
//   fused qkv / gate_up      no           no        no        no        yes
//   original_max_position_   (the key, when given)                      4096 (always: the
//     embeddings                                                        class has the field)
// (attn_bias = the attention_bias key, mlp_bias = the mlp_bias key; both default to false.)
//
// original_max_position_embeddings matters to llama3 and longrope RoPE: transformers takes the
// top-level attribute over the rope dict's value whenever the config has one, and Phi3Config
// always has one (4096 by default), so a phi3 rope dict's own value is overridden.
//
// A key that transformers does not read for a family (mlp_bias on qwen3, attention_bias on
// mistral) is not read here either, so it is reported like any unknown key: ignored with a
// warning, exactly as transformers ignores it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "sgt/core/isa.hpp"
#include "sgt/kernels/rms_norm.hpp"

namespace sgt {
SGT_ISA_BEGIN

enum class ModelType { Llama, Mistral, Qwen2, Qwen3, Phi3 };

// How a family decides whether a group of projections carries biases.
enum class BiasRule {
  Never,             // no bias; the family's config has no key for it
  Always,            // always a bias (Qwen2's q/k/v)
  AttentionBiasKey,  // the config's attention_bias (default false)
  MlpBiasKey,        // the config's mlp_bias (default false)
};

// How a family treats a sliding attention window.
enum class WindowRule {
  None,             // no window; sliding_window is not a key of the family
  EveryLayer,       // every layer sees the last sliding_window keys (null: full causal attention)
  NotYetSupported,  // per-layer windows (use_sliding_window): refused when used, else ignored
};

// The defaults of a family's transformers config class: what an absent key means.
struct HfDecoderDefaults {
  std::uint64_t hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
  std::optional<std::uint64_t> num_key_value_heads;  // nullopt: = num_attention_heads
  std::optional<std::uint64_t> head_dim;             // nullopt: = hidden_size / heads
  std::uint64_t max_position_embeddings;
  double rms_norm_eps, rope_theta;
  std::optional<std::uint64_t> sliding_window;  // WindowRule::EveryLayer only
  // The class attribute, when the class has one (it then overrides the rope dict's value).
  std::optional<std::uint64_t> original_max_position_embeddings;
};

struct ModelFamily {
  ModelType type;
  const char* name;  // config.json's model_type
  HfDecoderDefaults defaults;
  BiasRule qkv_bias;  // q_proj, k_proj, v_proj
  BiasRule o_bias;    // o_proj
  BiasRule mlp_bias;  // gate_proj, up_proj, down_proj
  bool qk_norm;       // a per-head RMSNorm of q and k after the projections, before RoPE
  bool fused_projections;  // qkv_proj and gate_up_proj instead of q/k/v_proj and gate/up_proj
  WindowRule window;
  kernels::RmsNormStyle norm_style;  // every RMSNorm of the layer
  // Keys the family's transformers config may carry that change nothing here (nullptr-padded).
  std::array<const char*, 2> inert_keys;
};

// clang-format off
inline constexpr ModelFamily kModelFamilies[] = {
    // Llama 2, 3, 3.1, 3.2
    {ModelType::Llama, "llama",
     {4096, 11008, 32, 32, std::nullopt, std::nullopt, 2048, 1e-6, 10000.0, std::nullopt,
      std::nullopt},
     BiasRule::AttentionBiasKey, BiasRule::AttentionBiasKey, BiasRule::MlpBiasKey,
     /*qk_norm=*/false, /*fused_projections=*/false, WindowRule::None,
     kernels::RmsNormStyle::Weight,
     {"pretraining_tp", nullptr}},  // transformers 5 no longer reads pretraining_tp
    // Llama + a sliding attention window on every layer
    {ModelType::Mistral, "mistral",
     {4096, 14336, 32, 32, 8, std::nullopt, 131072, 1e-6, 10000.0, 4096, std::nullopt},
     BiasRule::Never, BiasRule::Never, BiasRule::Never,
     /*qk_norm=*/false, /*fused_projections=*/false, WindowRule::EveryLayer,
     kernels::RmsNormStyle::Weight,
     {nullptr, nullptr}},
    // Llama + q/k/v biases (Qwen2Attention: q/k/v with bias, o_proj without, always)
    {ModelType::Qwen2, "qwen2",
     {4096, 22016, 32, 32, 32, std::nullopt, 32768, 1e-6, 10000.0, std::nullopt, std::nullopt},
     BiasRule::Always, BiasRule::Never, BiasRule::Never,
     /*qk_norm=*/false, /*fused_projections=*/false, WindowRule::NotYetSupported,
     kernels::RmsNormStyle::Weight,
     {"max_window_layers", "layer_types"}},
    // Llama + per-head RMSNorm of q and k before RoPE
    {ModelType::Qwen3, "qwen3",
     {4096, 22016, 32, 32, 32, 128, 32768, 1e-6, 10000.0, std::nullopt, std::nullopt},
     BiasRule::AttentionBiasKey, BiasRule::AttentionBiasKey, BiasRule::Never,
     /*qk_norm=*/true, /*fused_projections=*/false, WindowRule::NotYetSupported,
     kernels::RmsNormStyle::Weight,
     {"max_window_layers", "layer_types"}},
    // Phi-3, Phi-3.5, Phi-4-mini: Llama with fused qkv_proj / gate_up_proj, no biases, a window on
    // every layer (Phi3Attention passes config.sliding_window to every layer), longrope RoPE and
    // partial_rotary_factor through the common RoPE keys
    {ModelType::Phi3, "phi3",
     {3072, 8192, 32, 32, std::nullopt, std::nullopt, 4096, 1e-5, 10000.0, std::nullopt, 4096},
     BiasRule::Never, BiasRule::Never, BiasRule::Never,
     /*qk_norm=*/false, /*fused_projections=*/true, WindowRule::EveryLayer,
     kernels::RmsNormStyle::Weight,
     {"resid_pdrop", "embd_pdrop"}},  // dropout: training only
};
// clang-format on

// The description of `type`. Every ModelType has a row (a test checks it).
inline const ModelFamily& model_family(ModelType type) noexcept {
  for (const ModelFamily& f : kModelFamilies)
    if (f.type == type) return f;
  return kModelFamilies[0];  // unreachable while every ModelType has a row
}

inline const char* model_type_name(ModelType type) noexcept {
  return model_family(type).name;
}

// The family config.json's model_type names, or nullptr.
inline const ModelFamily* find_model_family(const std::string& name) noexcept {
  for (const ModelFamily& f : kModelFamilies)
    if (name == f.name) return &f;
  return nullptr;
}

// Families transformers has whose config.json we recognize but cannot run yet, each with the
// feature we lack: refused by name rather than as an unknown model_type.
struct UnsupportedFamily {
  const char* name;
  const char* missing;
};
// clang-format off
inline constexpr UnsupportedFamily kUnsupportedFamilies[] = {
    {"phi", "the parallel attention/MLP block of Phi-1/2 (with LayerNorm and dense projections) "
            "is not supported"},
    {"mixtral", "mixture-of-experts layers are not supported"},
    {"phimoe", "mixture-of-experts layers are not supported"},
    {"qwen2_moe", "mixture-of-experts layers are not supported"},
    {"qwen3_moe", "mixture-of-experts layers are not supported"},
    {"olmoe", "mixture-of-experts layers are not supported"},
    {"granitemoe", "mixture-of-experts layers are not supported"},
    {"deepseek_v2", "mixture-of-experts layers and multi-head latent attention are not supported"},
    {"deepseek_v3", "mixture-of-experts layers and multi-head latent attention are not supported"},
};
// clang-format on

// "llama, mistral, qwen2 and qwen3": for messages that list what is supported.
inline std::string model_family_names() {
  std::string s;
  const std::size_t n = sizeof(kModelFamilies) / sizeof(kModelFamilies[0]);
  for (std::size_t i = 0; i < n; ++i)
    s += (i == 0 ? "" : i + 1 == n ? " and " : ", ") + std::string(kModelFamilies[i].name);
  return s;
}

// The known family config.json's model_type names that we cannot run, or nullptr.
inline const UnsupportedFamily* find_unsupported_family(const std::string& name) noexcept {
  for (const UnsupportedFamily& f : kUnsupportedFamilies)
    if (name == f.name) return &f;
  return nullptr;
}

// The message for a model_type without a row: the missing feature of a family we know, else the
// list of those we run.
inline std::string unsupported_model_type_message(const std::string& name) {
  if (const UnsupportedFamily* f = find_unsupported_family(name))
    return "model_type '" + name + "': " + f->missing;
  return "unknown model_type '" + name + "' (" + model_family_names() + " are supported)";
}

SGT_ISA_END
}  // namespace sgt
