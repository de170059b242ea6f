// The model families an estimator may be, each described once, as data, in kModelFamilies.
//
// A family is a Llama-style decoder plus a few switches. Everything that differs between families
// is a field of ModelFamily: the name config.json uses, the defaults of the family's transformers
// config class, how it decides which projections carry biases, whether q and k get a per-head
// RMSNorm, how it treats a sliding window, its RMSNorm style. The config parser
// (model/config_json.hpp) reads a family's keys by these rules and resolves them into plain
// switches of DecoderConfig; the tensor list (model/weights.hpp) and the decoder layer
// (model/decoder_layer.hpp) read only those switches, never the family. So adding a family is a
// ModelType value and a row below (plus its Python reference, fixtures and docs): see
// docs/architecture.md.
//
// The rows were checked against transformers 5.25 by tests/data/config/hf_defaults.json, written
// by tools/fixtures/config_fixtures.py from each family's XConfig() and decoder layers built from
// them:
//
//                            llama        mistral   qwen2     qwen3     smollm3
//   hidden_size              4096         4096      4096      4096      2048
//   intermediate_size        11008        14336     22016     22016     11008
//   num_hidden_layers        32           32        32        32        36
//   num_attention_heads      32           32        32        32        16
//   num_key_value_heads      = heads      8         32        32        4       (null: = heads)
//   head_dim                 hidden/heads (all three)         128       hidden/heads
//   max_position_embeddings  2048         131072    32768     32768     32768
//   rms_norm_eps             1e-6 (all)
//   rope_theta               10000        10000     10000     10000     2e6
//   hidden_act               silu (all)
//   q/k/v biases             attn_bias    none      always    attn_bias attn_bias
//   o_proj bias              attn_bias    none      never     attn_bias attn_bias
//   gate/up/down biases      mlp_bias     none      none      none      mlp_bias
//   sliding_window           none         4096      4096 with use_sliding_window (default
//                                                   false), from max_window_layers (28) on;
//                                                   smollm3: on its NoPE layers
//   RoPE                     every layer; smollm3: none on no_rope_layers' 0 entries (default
//                            every 4th layer)
//   q_norm / k_norm          no           no        no        yes       no
//
//                            gemma        gemma2    gemma3_text
//   hidden_size              3072         2304      2304
//   intermediate_size        24576        9216      9216
//   num_hidden_layers        28           26        26
//   num_attention_heads      16           8         8
//   num_key_value_heads      16           4         4
//   head_dim                 256          256       256
//   max_position_embeddings  8192         8192      131072
//   rope_theta               10000        10000     1e6 global, 1e4 local (rope_local_base_freq)
//   activation               gelu_pytorch_tanh (hidden_act; gemma2/3: hidden_activation)
//   RMSNorm                  (1 + w) * normed
//   biases                   attention_bias on q/k/v/o; no MLP biases
//   sandwich norms           no           yes       yes
//   sliding_window           none         4096 on layers 0, 2, 4, ...; gemma3: all but every
//                                         sliding_window_pattern-th (6); layer_types overrides
//   attention scale          head_dim^-.5 query_pre_attn_scalar^-0.5 (256)
//   attn_logit_softcapping   --           50        (read, never applied by transformers)
//   final_logit_softcapping  --           30        null
//   q_norm / k_norm          no           no        yes
//   tie_word_embeddings      true (all three; false for llama, mistral, qwen2, qwen3)
// A Gemma causal LM multiplies E[input_ids] by sqrt(hidden_size) (its scaled embedding module);
// the estimators, which take embeddings, do not, as transformers' Gemma models do not scale
// inputs_embeds.
//
//                            phi3 (Phi-3, Phi-3.5, Phi-4-mini)
//   hidden_size              3072, intermediate 8192, 32 layers, 32 heads, kv = heads
//   max_position_embeddings  4096; rms_norm_eps 1e-5; rope_theta 10000; silu
//   biases                   none
//   fused qkv / gate_up      yes (qkv_proj, gate_up_proj: split into row views at load)
//   sliding_window           null (when set: every layer)
//   original_max_position_   4096 (always: the class has the field)
//     embeddings
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
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "sgt/core/isa.hpp"
#include "sgt/kernels/rms_norm.hpp"
#include "sgt/kernels/swiglu.hpp"

namespace sgt {
SGT_ISA_BEGIN

enum class ModelType { Llama, Mistral, Qwen2, Qwen3, SmolLM3, Gemma, Gemma2, Gemma3Text, Phi3 };

// How a family decides whether a group of projections carries biases.
enum class BiasRule {
  Never,             // no bias; the family's config has no key for it
  Always,            // always a bias (Qwen2's q/k/v)
  AttentionBiasKey,  // the config's attention_bias (default false)
  MlpBiasKey,        // the config's mlp_bias (default false)
};

// Which layers see only a sliding window of sliding_window keys. An explicit layer_types list
// ("sliding_attention" / "full_attention" per layer) names them for every rule but None and
// EveryLayer; without one, the family's transformers config derives it as follows.
enum class WindowRule {
  None,        // no window; sliding_window is not a key of the family
  EveryLayer,  // every layer (Mistral; null sliding_window: full causal attention)
  // Only with use_sliding_window (default false): the layers from max_window_layers on (Qwen2,
  // Qwen3).
  FromMaxWindowLayers,
  // Only with use_sliding_window: the layers without RoPE (SmolLM3).
  NoRopeLayers,
  // Every layer but each period-th (Gemma 2: period 2; Gemma 3: sliding_window_pattern, 6).
  Periodic,
};

// Which RoPE each layer applies.
enum class RopeRule {
  EveryLayer,            // the one rope of rope_theta / rope_scaling / rope_parameters
  NoRopeLayers,          // no_rope_layers[i] == 0: layer i has none (SmolLM3)
  LocalOnSlidingLayers,  // sliding layers rotate with rope_local_base_freq, default rope (Gemma 3)
};

// The defaults of a family's transformers config class: what an absent key means.
struct HfDecoderDefaults {
  std::uint64_t hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
  std::optional<std::uint64_t> num_key_value_heads;  // nullopt: = num_attention_heads
  std::optional<std::uint64_t> head_dim;             // nullopt: = hidden_size / heads
  std::uint64_t max_position_embeddings;
  double rms_norm_eps, rope_theta;
  std::optional<std::uint64_t> sliding_window;  // with a WindowRule other than None
  std::uint64_t window_period;                  // WindowRule::Periodic
  double local_rope_theta;                      // RopeRule::LocalOnSlidingLayers
  // The attention scale is query_pre_attn_scalar^-0.5 when the family has the key, else
  // head_dim^-0.5.
  std::optional<double> query_pre_attn_scalar;
  // attn_logit_softcapping and final_logit_softcapping, for the families that read them (null:
  // none).
  std::optional<double> attn_logit_softcapping, final_logit_softcapping;
  bool tie_word_embeddings;  // a causal LM's lm_head is its embedding table
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
  RopeRule rope;
  kernels::RmsNormStyle norm_style;  // every RMSNorm of the layer
  // The MLP's activation: the key that names it and its default.
  const char* act_key;
  kernels::GatedActivation act_default;
  bool gelu_means_tanh;    // act "gelu" is the tanh approximation (GemmaConfig's legacy value)
  bool sandwich_norms;     // norms on the attention's and the MLP's outputs (Gemma 2, 3)
  bool attn_softcap;       // reads attn_logit_softcapping
  bool final_softcap;      // reads final_logit_softcapping (the causal LM's logits)
  bool scaled_embeddings;  // E[ids] * sqrt(hidden_size) inside the model (not inputs_embeds)
  // Keys the family's transformers config may carry that change nothing here (nullptr-padded).
  std::array<const char*, 3> inert_keys;
  // The rope types "su" and "yarn" mean longrope (Phi3Config's names from before longrope).
  bool legacy_longrope_names = false;
};

// clang-format off
inline constexpr ModelFamily kModelFamilies[] = {
    // Llama 2, 3, 3.1, 3.2
    {ModelType::Llama, "llama",
     {4096, 11008, 32, 32, std::nullopt, std::nullopt, 2048, 1e-6, 10000.0, std::nullopt, 0, 0,
      std::nullopt, std::nullopt, std::nullopt, false, std::nullopt},
     BiasRule::AttentionBiasKey, BiasRule::AttentionBiasKey, BiasRule::MlpBiasKey,
     /*qk_norm=*/false, /*fused_projections=*/false,
      WindowRule::None, RopeRule::EveryLayer, kernels::RmsNormStyle::Weight,
     "hidden_act", kernels::GatedActivation::Silu, false, false, false, false, false,
     {"pretraining_tp", nullptr, nullptr}},  // transformers 5 no longer reads pretraining_tp
    // Llama + a sliding attention window on every layer
    {ModelType::Mistral, "mistral",
     {4096, 14336, 32, 32, 8, std::nullopt, 131072, 1e-6, 10000.0, 4096, 0, 0, std::nullopt,
      std::nullopt, std::nullopt, false, std::nullopt},
     BiasRule::Never, BiasRule::Never, BiasRule::Never,
     /*qk_norm=*/false, /*fused_projections=*/false,
      WindowRule::EveryLayer, RopeRule::EveryLayer,
     kernels::RmsNormStyle::Weight, "hidden_act", kernels::GatedActivation::Silu, false,
     false, false, false, false, {nullptr, nullptr, nullptr}},
    // Llama + q/k/v biases (Qwen2Attention: q/k/v with bias, o_proj without, always)
    {ModelType::Qwen2, "qwen2",
     {4096, 22016, 32, 32, 32, std::nullopt, 32768, 1e-6, 10000.0, 4096, 0, 0, std::nullopt,
      std::nullopt, std::nullopt, false, std::nullopt},
     BiasRule::Always, BiasRule::Never, BiasRule::Never,
     /*qk_norm=*/false, /*fused_projections=*/false,
      WindowRule::FromMaxWindowLayers, RopeRule::EveryLayer,
     kernels::RmsNormStyle::Weight, "hidden_act", kernels::GatedActivation::Silu, false,
     false, false, false, false, {nullptr, nullptr, nullptr}},
    // Llama + per-head RMSNorm of q and k before RoPE
    {ModelType::Qwen3, "qwen3",
     {4096, 22016, 32, 32, 32, 128, 32768, 1e-6, 10000.0, 4096, 0, 0, std::nullopt,
      std::nullopt, std::nullopt, false, std::nullopt},
     BiasRule::AttentionBiasKey, BiasRule::AttentionBiasKey, BiasRule::Never,
     /*qk_norm=*/true, /*fused_projections=*/false,
      WindowRule::FromMaxWindowLayers, RopeRule::EveryLayer,
     kernels::RmsNormStyle::Weight, "hidden_act", kernels::GatedActivation::Silu, false,
     false, false, false, false, {nullptr, nullptr, nullptr}},
    // Llama + layers without RoPE (no_rope_layers)
    {ModelType::SmolLM3, "smollm3",
     {2048, 11008, 36, 16, 4, std::nullopt, 32768, 1e-6, 2000000.0, std::nullopt, 0, 0,
      std::nullopt, std::nullopt, std::nullopt, true, std::nullopt},
     BiasRule::AttentionBiasKey, BiasRule::AttentionBiasKey, BiasRule::MlpBiasKey,
     /*qk_norm=*/false, /*fused_projections=*/false,
      WindowRule::NoRopeLayers, RopeRule::NoRopeLayers,
     kernels::RmsNormStyle::Weight, "hidden_act", kernels::GatedActivation::Silu, false,
     false, false, false, false, {nullptr, nullptr, nullptr}},
    // Llama with GeGLU, (1 + w) norms and embeddings scaled by sqrt(hidden_size)
    {ModelType::Gemma, "gemma",
     {3072, 24576, 28, 16, 16, 256, 8192, 1e-6, 10000.0, std::nullopt, 0, 0, std::nullopt,
      std::nullopt, std::nullopt, true, std::nullopt},
     BiasRule::AttentionBiasKey, BiasRule::AttentionBiasKey, BiasRule::Never,
     /*qk_norm=*/false, /*fused_projections=*/false,
      WindowRule::None, RopeRule::EveryLayer,
     kernels::RmsNormStyle::OnePlusWeight, "hidden_act", kernels::GatedActivation::GeluTanh, true,
     false, false, false, true, {"hidden_activation", nullptr, nullptr}},
    // Gemma + sandwich norms, logit soft-capping, query_pre_attn_scalar, sliding/global layers
    {ModelType::Gemma2, "gemma2",
     {2304, 9216, 26, 8, 4, 256, 8192, 1e-6, 10000.0, 4096, 2, 0, 256.0, 50.0, 30.0, true, std::nullopt},
     BiasRule::AttentionBiasKey, BiasRule::AttentionBiasKey, BiasRule::Never,
     /*qk_norm=*/false, /*fused_projections=*/false,
      WindowRule::Periodic, RopeRule::EveryLayer,
     kernels::RmsNormStyle::OnePlusWeight, "hidden_activation",
     kernels::GatedActivation::GeluTanh, false, true, true, true, true, {"hidden_act", nullptr, nullptr}},
    // Gemma 2 + q/k norms, 5 local layers to 1 global, a RoPE base for each; no attention
    // soft-capping (transformers 5 reads attn_logit_softcapping but never applies it)
    {ModelType::Gemma3Text, "gemma3_text",
     {2304, 9216, 26, 8, 4, 256, 131072, 1e-6, 1000000.0, 4096, 6, 10000.0, 256.0, std::nullopt,
      std::nullopt, true, std::nullopt},
     BiasRule::AttentionBiasKey, BiasRule::AttentionBiasKey, BiasRule::Never,
     /*qk_norm=*/true, /*fused_projections=*/false,
      WindowRule::Periodic, RopeRule::LocalOnSlidingLayers,
     kernels::RmsNormStyle::OnePlusWeight, "hidden_activation",
     kernels::GatedActivation::GeluTanh, false, true, false, true, true,
     {"hidden_act", "attn_logit_softcapping", "_sliding_window_pattern"}},
    // Phi-3, Phi-3.5, Phi-4-mini: Llama with fused qkv_proj / gate_up_proj, no biases, a window on
    // every layer (Phi3Attention passes config.sliding_window to every layer), longrope RoPE and
    // partial_rotary_factor through the common RoPE keys
    {ModelType::Phi3, "phi3",
     {3072, 8192, 32, 32, std::nullopt, std::nullopt, 4096, 1e-5, 10000.0, std::nullopt, 0, 0,
      std::nullopt, std::nullopt, std::nullopt, false, 4096},
     BiasRule::Never, BiasRule::Never, BiasRule::Never,
     /*qk_norm=*/false, /*fused_projections=*/true,
      WindowRule::EveryLayer, RopeRule::EveryLayer,
     kernels::RmsNormStyle::Weight, "hidden_act", kernels::GatedActivation::Silu, false,
     false, false, false, false, {"resid_pdrop", "embd_pdrop", nullptr},  // dropout: training only
     /*legacy_longrope_names=*/true},
};
// clang-format on

// The description of `type`. Every ModelType has a row (a test checks it).
inline const ModelFamily& model_family(ModelType type) noexcept {
  for (const ModelFamily& f : kModelFamilies)
    if (f.type == type) return f;
  return kModelFamilies[0];  // unreachable while every ModelType has a row
}

// What the family's embedding module multiplies E[ids] by: sqrt(hidden_size) rounded to f32 for
// Gemma (transformers: torch.tensor(hidden_size ** 0.5), an f32 tensor), 1 otherwise.
inline float family_embedding_scale(const ModelFamily& family, std::uint64_t hidden_size) noexcept {
  return family.scaled_embeddings
             ? static_cast<float>(std::sqrt(static_cast<double>(hidden_size)))
             : 1.0f;
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

// "llama, mistral, ... and phi3": for messages that list what is supported.
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
