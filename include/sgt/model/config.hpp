// What a model directory's config.json says, as typed structs (docs/format.md section 3), with no
// JSON in sight: model headers include this one, and only the loader (model/config_json.hpp)
// pulls the JSON parser.
//
// A parsed config can be trusted: sizes are positive and consistent, the rope type is one we
// compute, the std estimator's parameterization is strictly positive, and every architecture
// switch of DecoderConfig is resolved from the family's description (model/families.hpp) and the
// config's keys. The model code reads these switches, never the family.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sgt/core/enum_names.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/kernels/parameterization.hpp"
#include "sgt/kernels/rms_norm.hpp"
#include "sgt/kernels/rope.hpp"
#include "sgt/kernels/swiglu.hpp"
#include "sgt/model/families.hpp"

namespace sgt {
SGT_ISA_BEGIN

// One enum per concept, shared with the kernels that compute it.
using RopeType = kernels::RopeType;
using ParameterizationType = kernels::ParameterizationType;
using ParameterizationConfig = kernels::Parameterization;

// The spellings config.json uses.
inline constexpr EnumName<RopeType> kRopeTypeNames[] = {
    {RopeType::Default, "default"},
    {RopeType::Linear, "linear"},
    {RopeType::Llama3, "llama3"},
    {RopeType::LongRope, "longrope"}};
inline constexpr EnumName<ParameterizationType> kParameterizationTypeNames[] = {
    {ParameterizationType::Identity, "identity"},
    {ParameterizationType::BoundedTanh, "bounded_tanh"},
    {ParameterizationType::Cloak, "cloak"},
    {ParameterizationType::CloakSigmoid, "cloak_sigmoid"},
    {ParameterizationType::Direct, "direct"}};

inline constexpr EnumName<kernels::GatedActivation> kHiddenActNames[] = {
    {kernels::GatedActivation::Silu, "silu"},
    {kernels::GatedActivation::GeluTanh, "gelu_pytorch_tanh"}};

inline const char* hidden_act_name(kernels::GatedActivation a) noexcept {
  return enum_name(kHiddenActNames, a);
}
inline const char* rope_type_name(RopeType t) noexcept {
  return enum_name(kRopeTypeNames, t);
}
inline const char* parameterization_type_name(ParameterizationType t) noexcept {
  return enum_name(kParameterizationTypeNames, t);
}

// Upper bounds on sizes. Far above any real model, low enough that products of two sizes fit in 64
// bits and that a hostile config cannot make the tensor list hold billions of names.
inline constexpr std::uint64_t kMaxConfigDimension = 2147483647;  // 2^31 - 1
inline constexpr std::uint64_t kMaxConfigLayers = 4096;

// Which RoPE a layer applies to q and k.
enum class LayerRope {
  Global,  // DecoderConfig::rope
  Local,   // DecoderConfig::local_rope (Gemma 3's sliding layers: rope_local_base_freq)
  None,    // none at all (SmolLM3's no_rope_layers)
};

// How one layer attends: the keys it sees and the rotation it applies.
struct LayerAttention {
  std::size_t sliding_window = 0;  // 0: every earlier key; else the last sliding_window keys
  LayerRope rope = LayerRope::Global;
};

struct DecoderConfig {
  ModelType model_type = ModelType::Llama;
  std::size_t hidden_size = 0;
  std::size_t intermediate_size = 0;
  std::size_t num_hidden_layers = 0;
  std::size_t num_attention_heads = 0;
  std::size_t num_key_value_heads = 0;  // divides num_attention_heads (GQA)
  std::size_t head_dim = 0;
  double rms_norm_eps = 0;
  // RoPE as the kernel takes it (rope.head_dim == head_dim). It rotates the first
  // int(head_dim * partial_rotary_factor) dimensions of each head; the loader checks that this is
  // even and >= 2.
  kernels::RopeParameters rope;
  std::size_t max_position_embeddings = 0;
  kernels::RopeParameters local_rope;  // the layers with LayerRope::Local
  // head_dim^-0.5, or query_pre_attn_scalar^-0.5 (Gemma 2, 3): computed as transformers does (pow,
  // in double).
  double attention_scale = 0;
  kernels::GatedActivation hidden_act = kernels::GatedActivation::Silu;  // the MLP's gate

  // Architecture switches, resolved by the loader from the family's description and the keys.
  bool attention_bias = false;         // q_proj, k_proj, v_proj have biases
  bool o_proj_bias = false;            // o_proj has a bias
  bool mlp_bias = false;               // gate/up/down have biases
  bool qk_norm = false;                // per-head RMSNorm on q and k after the projections
  // q/k/v stored as one qkv_proj [q + 2 kv, H] and gate/up as one gate_up_proj [2 I, H] (Phi-3);
  // the loader splits them into the row ranges the layer reads, without a copy.
  bool fused_projections = false;
  std::vector<LayerAttention> layers;  // [num_hidden_layers]: each layer's window and RoPE
  float attn_logit_softcapping = 0;    // 0 = none; else scores -> cap * tanh(score / cap)
  float final_logit_softcapping = 0;   // the same on a causal LM's logits (an estimator has none)
  // Gemma 2, 3: the attention's and the MLP's outputs are normed before their residual adds.
  bool sandwich_norms = false;
  kernels::RmsNormStyle norm_style = kernels::RmsNormStyle::Weight;
};

struct EstimatorConfig {
  DecoderConfig decoder;
  bool final_norm = true;
  bool has_head = false;
  bool head_bias = false;
  ParameterizationConfig parameterization;
};

struct ModelConfig {
  int format_version = 1;
  std::size_t vocab_size = 0;
  std::size_t hidden_size = 0;
  std::optional<std::int64_t> pad_token_id;   // in [0, vocab_size) when set
  std::optional<float> value_min, value_max;  // value_range; min < max when both are set
  // x = E[input_ids] * embedding_scale (docs/format.md 1 and 3.1): what the base model takes as
  // inputs_embeds for those ids (Gemma: sqrt(hidden_size) as an f32). 1 for most families.
  float embedding_scale = 1.0f;
  EstimatorConfig mean_estimator, std_estimator;
};

// embedding_scale's range: every family's value fits (sqrt(hidden_size) <= 46341), and the scale
// stays a normal number after the bf16 / f16 rounding the lookup gives it.
inline constexpr double kMinEmbeddingScale = 1.0 / 65536;
inline constexpr double kMaxEmbeddingScale = 65536;

SGT_ISA_END
}  // namespace sgt
