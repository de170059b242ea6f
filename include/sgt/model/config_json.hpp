// Loading config.json (docs/format.md section 3) into the structs of model/config.hpp: the
// validating parser. Every problem is an sgt::Error whose key() is the dotted path of the offending
// key ("std_estimator.parameterization.scale"); unknown keys are logged and ignored.
//
// `config` inside each estimator holds Hugging Face keys, so that a base model's config.json can be
// pasted in. Absent keys take the defaults of that family's transformers config class, and the
// family's switches are read as its description says (model/families.hpp): this file holds no
// per-family code. Keys transformers knows but that do not change the estimator (bos_token_id,
// torch_dtype, use_cache, ...) are accepted silently.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>
#include <utility>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/log.hpp"
#include "sgt/io/json.hpp"
#include "sgt/model/config.hpp"
#include "sgt/model/families.hpp"

namespace sgt {
SGT_ISA_BEGIN

inline constexpr std::size_t kMaxConfigFileBytes = 16u * 1024 * 1024;
// Far deeper than any real config (4 levels); a limit keeps a hostile one from exhausting the
// stack of the DOM parser.
inline constexpr std::size_t kMaxConfigJsonDepth = 32;

SGT_ISA_END
namespace detail {
SGT_ISA_BEGIN

// Keys every transformers config may carry that do not change an estimator's computation:
// bookkeeping, generation settings, token ids, the LM head's tying, training-only settings.
inline void accept_generic_hf_keys(JsonObjectReader& c) {
  // clang-format off
  c.accept({"architectures", "auto_map", "transformers_version", "_name_or_path", "dtype",
            "torch_dtype", "use_bfloat16", "vocab_size", "pad_token_id", "bos_token_id",
            "eos_token_id", "sep_token_id", "decoder_start_token_id", "initializer_range",
            "use_cache", "tie_word_embeddings", "attention_dropout", "output_hidden_states",
            "output_attentions", "return_dict", "chunk_size_feed_forward", "is_encoder_decoder",
            "is_decoder", "id2label", "label2id", "problem_type", "torchscript", "pruned_heads",
            "tf_legacy_loss", "cross_attention_hidden_size", "add_cross_attention",
            "tie_encoder_decoder", "finetuning_task", "tokenizer_class", "prefix",
            "task_specific_params",
            // generation settings of transformers v4 configs
            "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
            "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
            "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
            "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
            "output_scores", "return_dict_in_generate", "forced_bos_token_id",
            "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
            "suppress_tokens", "begin_suppress_tokens"});
  // clang-format on
}

// longrope's short_factor / long_factor: a list of positive numbers, rounded to f32 as
// torch.tensor(factors, dtype=float32) rounds them. The length is checked against the rotary
// dimension by the caller, once that is known.
inline std::vector<float> read_rope_factors(JsonObjectReader& r, const char* key) {
  const nlohmann::json* v = r.find(key);
  if (!v) r.fail(key, "required key is missing (longrope needs short_factor and long_factor)");
  if (!v->is_array()) r.fail(key, "must be a list of numbers, got " + detail::json_excerpt(*v));
  std::vector<float> out;
  out.reserve(v->size());
  for (const nlohmann::json& x : *v) {
    const double f = r.check_number(key, x);
    if (!(f > 0) || !(std::fabs(f) <= FLT_MAX))
      r.fail(key, "values must be > 0 and finite in f32, got " + x.dump());
    out.push_back(static_cast<float>(f));
  }
  return out;
}

// One RoPE dict (rope_scaling, rope_parameters, or one layer type's entry of rope_parameters) into
// `rope`, whose theta and partial_rotary_factor hold the top-level values on entry: the dict's own
// win. Returns the key of partial_rotary_factor relative to c when the dict gave it, else "".
inline std::string parse_rope_dict(JsonObjectReader& c, const nlohmann::json& dict,
                                   const std::string& dict_key,
                                   std::optional<std::uint64_t> top_original,
                                   std::size_t max_position_embeddings,
                                   kernels::RopeParameters& rope,
                                   bool legacy_longrope_names = false) {
  JsonObjectReader r(dict, c.path_of(dict_key));
  std::string type_key = dict.contains("rope_type") ? "rope_type" : "type";
  std::string type = r.string(type_key, std::string("default"));
  // Phi3Config renames these to longrope before anything reads them (transformers 5.25).
  if (legacy_longrope_names && (type == "su" || type == "yarn")) type = "longrope";
  if (type_key == "rope_type") r.string("type", std::string());  // legacy spelling, checked only
  const std::optional<RopeType> rope_type = enum_from_name(kRopeTypeNames, type);
  if (!rope_type)
    r.fail(type_key, "rope type '" + type + "' is not supported (" +
                         enum_names_list(kRopeTypeNames) + " are)");
  rope.type = *rope_type;
  rope.theta = r.positive_number("rope_theta", rope.theta);
  std::string partial_key;
  if (dict.contains("partial_rotary_factor")) {
    rope.partial_rotary_factor = r.number("partial_rotary_factor", std::nullopt);
    partial_key = dict_key + ".partial_rotary_factor";
  }
  if (rope.type == RopeType::Linear || rope.type == RopeType::Llama3)
    rope.factor = r.positive_number("factor", std::nullopt);
  if (rope.type == RopeType::Llama3) {
    rope.low_freq_factor = r.positive_number("low_freq_factor", std::nullopt);
    rope.high_freq_factor = r.number("high_freq_factor", std::nullopt);
    // The smoothing factor divides by (high - low); equal factors would divide by zero.
    if (!(rope.high_freq_factor > rope.low_freq_factor))
      r.fail("high_freq_factor", "must be greater than low_freq_factor (" +
                                     std::to_string(rope.low_freq_factor) + "), got " +
                                     std::to_string(rope.high_freq_factor));
    const std::uint64_t original =
        r.integer("original_max_position_embeddings", max_position_embeddings, 1,
                  std::numeric_limits<std::int64_t>::max());
    rope.original_max_position_embeddings =
        static_cast<std::size_t>(top_original ? *top_original : original);
  }
  if (rope.type == RopeType::LongRope) {
    const std::uint64_t original =
        r.integer("original_max_position_embeddings", max_position_embeddings, 1,
                  std::numeric_limits<std::int64_t>::max());
    rope.original_max_position_embeddings =
        static_cast<std::size_t>(top_original ? *top_original : original);
    const auto original_f = static_cast<double>(rope.original_max_position_embeddings);
    rope.factor = r.positive_number(
        "factor", static_cast<double>(max_position_embeddings) / original_f);
    const bool scaled = rope.factor > 1.0;
    if (scaled && rope.original_max_position_embeddings == 1 && !dict.contains("attention_factor"))
      r.fail("original_max_position_embeddings",
             "must be > 1 to derive attention_factor (ln(original) divides), or give "
             "attention_factor");
    rope.attention_factor = r.positive_number(
        "attention_factor",
        scaled ? std::sqrt(1.0 + std::log(rope.factor) / std::log(original_f)) : 1.0);
    rope.short_factor = read_rope_factors(r, "short_factor");
    rope.long_factor = read_rope_factors(r, "long_factor");
    // Each list has rotary_dim / 2 numbers; an invalid rotary dimension is check_rope's to report.
    const auto rotary_dim = static_cast<std::size_t>(static_cast<double>(rope.head_dim) *
                                                     rope.partial_rotary_factor);
    if (rotary_dim >= 2 && rotary_dim % 2 == 0)
      for (const auto& [key, factors] : {std::pair<const char*, const std::vector<float>&>{
                                             "short_factor", rope.short_factor},
                                         {"long_factor", rope.long_factor}}) {
        const std::size_t n = factors.size();
        if (n != rotary_dim / 2)
          r.fail(key, "has " + std::to_string(n) + " values, but the rotary dimension " +
                          std::to_string(rotary_dim) + " needs " + std::to_string(rotary_dim / 2));
      }
  }
  r.warn_unknown_keys();
  return partial_key;
}

// The checks of a parsed rope that name the key to fix: partial_rotary_factor in (0, 1], and an
// even rotary dimension of at least 2.
inline void check_rope(JsonObjectReader& c, const DecoderConfig& d,
                       const kernels::RopeParameters& rope, const std::string& partial_key) {
  if (!(rope.partial_rotary_factor > 0 && rope.partial_rotary_factor <= 1))
    throw Error("must be in (0, 1], got " + std::to_string(rope.partial_rotary_factor))
        .at_key(c.path_of(partial_key));
  // Python's int(head_dim * partial_rotary_factor): a double product, truncated. The kernel
  // computes the same (kernels::RopeTable); checking it here names the key to fix.
  const auto rotary_dim =
      static_cast<std::size_t>(static_cast<double>(d.head_dim) * rope.partial_rotary_factor);
  if (rotary_dim < 2 || rotary_dim % 2 != 0)
    throw Error("RoPE needs an even rotary dimension of at least 2, but head_dim " +
                std::to_string(d.head_dim) + " x partial_rotary_factor " +
                std::to_string(rope.partial_rotary_factor) + " gives " + std::to_string(rotary_dim))
        .at_key(
            c.path_of(rope.partial_rotary_factor == 1.0 ? std::string("head_dim") : partial_key));
}

// RoPE, spelled either way transformers writes it:
//   v4: "rope_theta": x, "rope_scaling": {"rope_type" (or legacy "type"): ..., "factor": ...}
//   v5: "rope_parameters": {"rope_type": ..., "rope_theta": x, "factor": ...}
// with transformers' precedence: a non-empty rope_scaling replaces rope_parameters; inside the
// chosen dict its own rope_theta / partial_rotary_factor win over the top-level keys; rope_type
// wins over type; llama3's and longrope's original_max_position_embeddings defaults to
// max_position_embeddings, and a top-level original_max_position_embeddings takes priority, as
// transformers gives it -- including the config class's own default (Phi3Config's 4096), which the
// class has even when the key is absent.
// longrope (HF `_compute_longrope_parameters`): short_factor and long_factor, rotary_dim / 2
// numbers each; factor defaults to max_position_embeddings / original_max_position_embeddings;
// attention_factor defaults to 1 when factor <= 1, else sqrt(1 + ln(factor) / ln(original)).
//
// A family with a local RoPE (RopeRule::LocalOnSlidingLayers, Gemma 3) has one per layer type:
//   v5: "rope_parameters": {"full_attention": {...}, "sliding_attention": {...}}
//   v4: the above for the global layers, "rope_local_base_freq" (default rope) for the local ones
// with the family's two default thetas.
inline void parse_rope(const ModelFamily& family, JsonObjectReader& c, DecoderConfig& d) {
  const HfDecoderDefaults& def = family.defaults;
  const bool two_ropes = family.rope == RopeRule::LocalOnSlidingLayers;
  const nlohmann::json* scaling = c.find("rope_scaling");
  const nlohmann::json* parameters = c.find("rope_parameters");
  if (scaling && !scaling->is_null() && !scaling->is_object())
    c.fail("rope_scaling", "must be a JSON object or null, got " + detail::json_excerpt(*scaling));
  if (parameters && !parameters->is_null() && !parameters->is_object())
    c.fail("rope_parameters",
           "must be a JSON object or null, got " + detail::json_excerpt(*parameters));
  auto non_empty = [](const nlohmann::json* v) { return v && v->is_object() && !v->empty(); };
  const bool per_layer_type = non_empty(parameters) && (parameters->contains("full_attention") ||
                                                        parameters->contains("sliding_attention"));
  if (per_layer_type && !two_ropes)
    c.fail("rope_parameters",
           "per-layer-type RoPE parameters are not supported for " + std::string(family.name));

  const double top_theta = c.positive_number("rope_theta", def.rope_theta);
  const double top_partial = c.number("partial_rotary_factor", 1.0);
  const std::optional<std::uint64_t> top_original =
      c.nullable_integer("original_max_position_embeddings", def.original_max_position_embeddings, 1,
                         std::numeric_limits<std::int64_t>::max());
  d.rope.head_dim = d.head_dim;
  d.rope.theta = top_theta;
  d.rope.partial_rotary_factor = top_partial;
  std::string partial_key = "partial_rotary_factor";  // relative to c: where the value came from
  if (two_ropes) {
    d.local_rope.head_dim = d.head_dim;
    d.local_rope.theta = c.positive_number("rope_local_base_freq", def.local_rope_theta);
  }

  if (per_layer_type) {
    JsonObjectReader p(*parameters, c.path_of("rope_parameters"));
    for (const char* type : {"full_attention", "sliding_attention"}) {
      const bool local = std::string(type) == "sliding_attention";
      kernels::RopeParameters& rope = local ? d.local_rope : d.rope;
      if (const nlohmann::json* entry = p.find_value(type)) {
        if (!entry->is_object())
          p.fail(type, "must be a JSON object or null, got " + detail::json_excerpt(*entry));
        const std::string key =
            parse_rope_dict(c, *entry, std::string("rope_parameters.") + type, top_original,
                            d.max_position_embeddings, rope, family.legacy_longrope_names);
        check_rope(c, d, rope, key.empty() ? partial_key : key);
      }
    }
    p.warn_unknown_keys();
    return;
  }
  const char* dict_key = non_empty(scaling) ? "rope_scaling" : "rope_parameters";
  const nlohmann::json* dict = non_empty(scaling)      ? scaling
                               : non_empty(parameters) ? parameters
                                                       : nullptr;
  if (non_empty(scaling) && non_empty(parameters) && *scaling != *parameters)
    log_warning(c.path_of("rope_parameters") +
                ": ignored, rope_scaling is given too and takes precedence (as in transformers)");
  if (dict) {
    const std::string key =
        parse_rope_dict(c, *dict, dict_key, top_original, d.max_position_embeddings, d.rope,
                        family.legacy_longrope_names);
    if (!key.empty()) partial_key = key;
  }
  check_rope(c, d, d.rope, partial_key);
}

// The sizes of a decoder: positive, at most kMaxConfigDimension.
inline std::uint64_t config_size(JsonObjectReader& c, const char* key,
                                 std::optional<std::uint64_t> fallback) {
  return c.integer(key, fallback, 1, kMaxConfigDimension);
}

// Whether a group of projections has biases, by the family's rule.
inline bool read_bias(JsonObjectReader& c, BiasRule rule) {
  switch (rule) {
    case BiasRule::Never:
      return false;
    case BiasRule::Always:
      return true;
    case BiasRule::AttentionBiasKey:
      return c.boolean("attention_bias", false);
    case BiasRule::MlpBiasKey:
      return c.boolean("mlp_bias", false);
  }
  return false;
}

// The per-layer switches: which layers have RoPE (and which one), which see a sliding window.
inline void parse_layers(const ModelFamily& family, JsonObjectReader& c, DecoderConfig& d) {
  constexpr std::uint64_t kMaxPositions = std::numeric_limits<std::int64_t>::max();
  const HfDecoderDefaults& def = family.defaults;
  const std::size_t n = d.num_hidden_layers;
  d.layers.assign(n, LayerAttention{});

  if (family.rope == RopeRule::NoRopeLayers) {
    // no_rope_layers[i] == 1: layer i has RoPE (SmolLM3Config: default every interval-th has none)
    const std::uint64_t interval =
        c.integer("no_rope_layer_interval", 4, 1, std::numeric_limits<std::int64_t>::max());
    const nlohmann::json* list = c.find_value("no_rope_layers");
    if (list && (!list->is_array() || list->size() != n))
      c.fail("no_rope_layers", "must be a list of " + std::to_string(n) +
                                   " flags (num_hidden_layers), got " +
                                   detail::json_excerpt(*list));
    for (std::size_t i = 0; i < n; ++i) {
      bool has_rope = (i + 1) % interval != 0;
      if (list) {
        const nlohmann::json& v = (*list)[i];
        if (!v.is_number_integer() || (v.get<std::int64_t>() != 0 && v.get<std::int64_t>() != 1))
          c.fail("no_rope_layers",
                 "entry " + std::to_string(i) + " must be 0 or 1, got " + detail::json_excerpt(v));
        has_rope = v.get<std::int64_t>() == 1;
      }
      if (!has_rope) d.layers[i].rope = LayerRope::None;
    }
  }

  // The window, and which layers the family's rule gives it when layer_types does not say.
  std::size_t window = 0;
  std::vector<bool> sliding(n, false);
  switch (family.window) {
    case WindowRule::None:
      break;
    case WindowRule::EveryLayer:
      // null means full causal attention
      window = static_cast<std::size_t>(
          c.nullable_integer("sliding_window", def.sliding_window, 1, kMaxPositions).value_or(0));
      sliding.assign(n, true);
      break;
    case WindowRule::FromMaxWindowLayers:
    case WindowRule::NoRopeLayers: {
      // Without use_sliding_window, transformers sets sliding_window to None: no layer slides.
      const bool use = c.boolean("use_sliding_window", false);
      const std::optional<std::uint64_t> w =
          c.nullable_integer("sliding_window", def.sliding_window, 1, kMaxPositions);
      if (use && w) window = static_cast<std::size_t>(*w);
      if (family.window == WindowRule::FromMaxWindowLayers) {
        // 28: the default of Qwen2Config and Qwen3Config, the families of this rule.
        const std::uint64_t first = c.integer("max_window_layers", 28, 0, kMaxConfigLayers);
        for (std::size_t i = 0; i < n; ++i) sliding[i] = i >= first;
      } else {
        for (std::size_t i = 0; i < n; ++i) sliding[i] = d.layers[i].rope == LayerRope::None;
      }
      break;
    }
    case WindowRule::Periodic: {
      window = static_cast<std::size_t>(
          c.nullable_integer("sliding_window", def.sliding_window, 1, kMaxPositions).value_or(0));
      const std::uint64_t period =
          c.integer("sliding_window_pattern", def.window_period, 1, kMaxConfigLayers);
      for (std::size_t i = 0; i < n; ++i) sliding[i] = (i + 1) % period != 0;
      break;
    }
  }
  if (family.window != WindowRule::None && family.window != WindowRule::EveryLayer) {
    if (const nlohmann::json* types = c.find_value("layer_types")) {
      if (!types->is_array() || types->size() != n)
        c.fail("layer_types", "must be a list of " + std::to_string(n) +
                                  " layer types (num_hidden_layers), got " +
                                  detail::json_excerpt(*types));
      for (std::size_t i = 0; i < n; ++i) {
        const nlohmann::json& t = (*types)[i];
        if (t == "sliding_attention")
          sliding[i] = true;
        else if (t == "full_attention")
          sliding[i] = false;
        else
          c.fail("layer_types", "entry " + std::to_string(i) +
                                    " must be \"sliding_attention\" or "
                                    "\"full_attention\", got " +
                                    detail::json_excerpt(t));
      }
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (sliding[i]) d.layers[i].sliding_window = window;
    if (family.rope == RopeRule::LocalOnSlidingLayers && sliding[i])
      d.layers[i].rope = LayerRope::Local;
  }
}

inline DecoderConfig parse_decoder_config(const ModelFamily& family, JsonObjectReader& c) {
  const HfDecoderDefaults& def = family.defaults;
  constexpr std::uint64_t kMaxPositions = std::numeric_limits<std::int64_t>::max();
  DecoderConfig d;
  d.model_type = family.type;
  accept_generic_hf_keys(c);

  // A pasted Hugging Face config names its model_type too: it must agree.
  const std::string pasted_type = c.string("model_type", std::string(family.name));
  if (pasted_type != family.name)
    c.fail("model_type",
           "'" + pasted_type + "' contradicts the estimator's model_type '" + family.name + "'");

  d.hidden_size = config_size(c, "hidden_size", def.hidden_size);
  d.intermediate_size = config_size(c, "intermediate_size", def.intermediate_size);
  d.num_hidden_layers = c.integer("num_hidden_layers", def.num_hidden_layers, 1, kMaxConfigLayers);
  d.num_attention_heads = config_size(c, "num_attention_heads", def.num_attention_heads);
  d.num_key_value_heads = static_cast<std::size_t>(
      c.nullable_integer("num_key_value_heads", def.num_key_value_heads, 1, kMaxConfigDimension)
          .value_or(d.num_attention_heads));
  if (d.num_key_value_heads > d.num_attention_heads ||
      d.num_attention_heads % d.num_key_value_heads != 0)
    c.fail("num_key_value_heads", "must divide num_attention_heads (" +
                                      std::to_string(d.num_attention_heads) + "), got " +
                                      std::to_string(d.num_key_value_heads));
  // transformers (all four): head_dim null or absent -> hidden_size // num_attention_heads, except
  // that Qwen3Config's own default is 128. We refuse the floor division's silent remainder.
  const std::optional<std::uint64_t> head_dim =
      c.nullable_integer("head_dim", def.head_dim, 1, kMaxConfigDimension);
  if (head_dim) {
    d.head_dim = static_cast<std::size_t>(*head_dim);
  } else {
    if (d.hidden_size % d.num_attention_heads != 0)
      c.fail("num_attention_heads", "hidden_size " + std::to_string(d.hidden_size) +
                                        " is not a multiple of num_attention_heads " +
                                        std::to_string(d.num_attention_heads) +
                                        " (give head_dim explicitly)");
    d.head_dim = d.hidden_size / d.num_attention_heads;
  }
  d.attention_scale = std::pow(static_cast<double>(d.head_dim), -0.5);
  if (def.query_pre_attn_scalar)
    d.attention_scale =
        std::pow(c.positive_number("query_pre_attn_scalar", *def.query_pre_attn_scalar), -0.5);

  const std::string act =
      c.string(family.act_key, std::string(hidden_act_name(family.act_default)));
  const std::optional<kernels::GatedActivation> parsed_act = enum_from_name(
      kHiddenActNames, family.gelu_means_tanh && act == "gelu" ? "gelu_pytorch_tanh" : act);
  if (!parsed_act)
    c.fail(family.act_key, "activation '" + act + "' is not supported (" +
                               enum_names_list(kHiddenActNames) + " are)");
  d.hidden_act = *parsed_act;
  d.max_position_embeddings = static_cast<std::size_t>(
      c.integer("max_position_embeddings", def.max_position_embeddings, 1, kMaxPositions));
  d.rms_norm_eps = c.positive_number("rms_norm_eps", def.rms_norm_eps);
  parse_rope(family, c, d);

  // The family's switches, as its description states them.
  d.attention_bias = read_bias(c, family.qkv_bias);
  d.o_proj_bias = read_bias(c, family.o_bias);
  d.mlp_bias = read_bias(c, family.mlp_bias);
  d.qk_norm = family.qk_norm;
  d.fused_projections = family.fused_projections;
  d.norm_style = family.norm_style;
  d.sandwich_norms = family.sandwich_norms;
  auto softcap = [&](const char* key, std::optional<double> fallback) {
    const nlohmann::json* v = c.find(key);
    const std::optional<double> cap = !v ? fallback
                                      : v->is_null()
                                          ? std::nullopt
                                          : std::optional<double>(c.check_number(key, *v));
    if (cap && !(*cap > 0 && *cap <= FLT_MAX))
      c.fail(key, "must be null or a number > 0, got " + std::to_string(*cap));
    return cap ? static_cast<float>(*cap) : 0.0f;
  };
  if (family.attn_softcap)
    d.attn_logit_softcapping = softcap("attn_logit_softcapping", def.attn_logit_softcapping);
  if (family.final_softcap)
    d.final_logit_softcapping = softcap("final_logit_softcapping", def.final_logit_softcapping);
  // Gemma's configs carry it (null or false by default): only causal attention is supported.
  if (c.find_value("use_bidirectional_attention") &&
      c.boolean("use_bidirectional_attention", false))
    c.fail("use_bidirectional_attention", "bidirectional attention is not supported");
  parse_layers(family, c, d);
  for (const char* key : family.inert_keys)
    if (key) c.accept(key);
  c.warn_unknown_keys();
  return d;
}

inline ParameterizationConfig parse_parameterization(JsonObjectReader& p, bool for_std) {
  ParameterizationConfig out;
  const std::string type = p.string("type", std::nullopt);
  const std::optional<ParameterizationType> parsed =
      enum_from_name(kParameterizationTypeNames, type);
  if (!parsed)
    p.fail("type", "unknown parameterization type '" + type + "' (" +
                       enum_names_list(kParameterizationTypeNames) + " are known)");
  out.type = *parsed;
  // sigma multiplies the noise and must be > 0: identity and bounded_tanh can be anything <= 0.
  if (for_std &&
      (out.type == ParameterizationType::Identity || out.type == ParameterizationType::BoundedTanh))
    p.fail("type", "'" + type +
                       "' can produce values <= 0, but the std estimator must be strictly "
                       "positive (use cloak, cloak_sigmoid, or direct with min > 0)");

  switch (out.type) {
    case ParameterizationType::Identity:
      break;
    case ParameterizationType::BoundedTanh:
      out.bound = p.positive_number("bound", std::nullopt);
      out.init_shift = p.number("init_shift", 0.0);
      break;
    case ParameterizationType::Cloak:
    case ParameterizationType::CloakSigmoid:
    case ParameterizationType::Direct: {
      const nlohmann::json* scale = p.find("scale");
      if (!scale) p.fail("scale", "required key is missing");
      if (!scale->is_array() || scale->size() != 2)
        p.fail("scale",
               "must be a [min, max] pair of numbers, got " + detail::json_excerpt(*scale));
      out.min = p.check_number("scale", (*scale)[0]);
      out.max = p.check_number("scale", (*scale)[1]);
      if (!(out.min < out.max))
        p.fail("scale", "min must be less than max, got " + detail::json_excerpt(*scale));
      if (out.type == ParameterizationType::Direct) {
        if (for_std && !(out.min > 0))
          p.fail("scale",
                 "the std estimator must be strictly positive, so direct's min must be "
                 "> 0, got " +
                     detail::json_excerpt(*scale));
      } else {
        if (out.min < 0) p.fail("scale", "min must be >= 0, got " + detail::json_excerpt(*scale));
        out.shallow = p.positive_number("shallow", 1.0);
      }
      break;
    }
  }
  p.warn_unknown_keys();
  return out;
}

inline EstimatorConfig parse_estimator(const nlohmann::json& j, const std::string& path,
                                       std::size_t hidden_size, bool for_std) {
  JsonObjectReader e(j, path);
  EstimatorConfig out;
  const std::string type_name = e.string("model_type", std::nullopt);
  const ModelFamily* family = find_model_family(type_name);
  if (!family) e.fail("model_type", unsupported_model_type_message(type_name));
  {
    JsonObjectReader c(e.object("config"), e.path_of("config"));
    out.decoder = parse_decoder_config(*family, c);
    if (out.decoder.hidden_size != hidden_size)
      c.fail("hidden_size", "is " + std::to_string(out.decoder.hidden_size) +
                                " but the model's hidden_size is " + std::to_string(hidden_size) +
                                " (the estimator reads the embeddings directly)");
  }
  out.final_norm = e.boolean("final_norm", true);
  if (const nlohmann::json* head = e.find_value("head")) {
    JsonObjectReader h(*head, e.path_of("head"));
    out.has_head = true;
    out.head_bias = h.boolean("bias", std::nullopt);
    h.warn_unknown_keys();
  }
  JsonObjectReader p(e.object("parameterization"), e.path_of("parameterization"));
  out.parameterization = parse_parameterization(p, for_std);
  e.warn_unknown_keys();
  return out;
}

// A config-style JSON file (config.json, generation_config.json): read with the config limits,
// handed to `parse`; every error gets the file.
template <class Parse>
auto parse_config_file(const std::string& path, const char* what, Parse&& parse) {
  try {
    JsonReadOptions options;
    options.what = what;
    options.max_depth = kMaxConfigJsonDepth;
    return parse(parse_json_checked(read_text_file(path, kMaxConfigFileBytes), options));
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// Parses and validates a config.json document. Throws sgt::Error whose key() is the dotted path of
// the offending key; unknown keys are logged (sgt::log_warning) and ignored.
inline ModelConfig parse_model_config(const nlohmann::json& j) {
  JsonObjectReader root(j, "");
  ModelConfig m;
  const std::string format = root.string("format", std::nullopt);
  if (format != "sgt4t") root.fail("format", "must be \"sgt4t\", got \"" + format + "\"");
  const std::uint64_t version = root.integer("format_version", std::nullopt, 1, UINT64_MAX);
  if (version > 1)
    root.fail("format_version", "unsupported format_version " + std::to_string(version) +
                                    " (this reader supports 1)");
  m.format_version = static_cast<int>(version);
  m.vocab_size =
      static_cast<std::size_t>(root.integer("vocab_size", std::nullopt, 1, kMaxConfigDimension));
  m.hidden_size =
      static_cast<std::size_t>(root.integer("hidden_size", std::nullopt, 1, kMaxConfigDimension));

  if (auto pad = root.nullable_integer("pad_token_id", std::nullopt, 0, m.vocab_size - 1))
    m.pad_token_id = static_cast<std::int64_t>(*pad);

  if (const nlohmann::json* range = root.find_value("value_range")) {
    if (!range->is_array() || range->size() != 2)
      root.fail("value_range", "must be null or [min, max] (either may be null), got " +
                                   detail::json_excerpt(*range));
    std::optional<float> bounds[2];
    for (std::size_t i = 0; i < 2; ++i) {
      const nlohmann::json& v = (*range)[i];
      if (v.is_null()) continue;
      const std::string key = "value_range[" + std::to_string(i) + "]";
      const double x = root.check_number(key, v);
      // The clamp happens in f32: the bound must be a finite f32.
      if (std::fabs(x) > FLT_MAX) root.fail(key, "is out of the f32 range: " + v.dump());
      bounds[i] = static_cast<float>(x);
    }
    if (bounds[0] && bounds[1] && !(*bounds[0] < *bounds[1]))
      root.fail("value_range", "min must be less than max (as f32), got " + range->dump());
    m.value_min = bounds[0];
    m.value_max = bounds[1];
  }
  // Untrusted like every key: a scale of 0, a huge one or a NaN would hand the estimators and the
  // base model embeddings of no meaning.
  if (const nlohmann::json* scale = root.find_value("embedding_scale")) {
    const double x = root.check_number("embedding_scale", *scale);
    if (!(x >= kMinEmbeddingScale && x <= kMaxEmbeddingScale))
      root.fail("embedding_scale", "must be in [2^-16, 65536], got " + scale->dump());
    m.embedding_scale = static_cast<float>(x);
  }
  if (const nlohmann::json* p = root.find_value("percent_to_mask"))
    root.fail("percent_to_mask",
              "must be null: random masking is not supported (the caller "
              "chooses the protected tokens with noise_mask), got " +
                  detail::json_excerpt(*p));

  m.mean_estimator = detail::parse_estimator(root.object("mean_estimator"), "mean_estimator",
                                             m.hidden_size, /*for_std=*/false);
  m.std_estimator = detail::parse_estimator(root.object("std_estimator"), "std_estimator",
                                            m.hidden_size, /*for_std=*/true);
  root.warn_unknown_keys();
  return m;
}

// Reads and parses MODEL_DIR/config.json (or any path); errors carry the file.
inline ModelConfig load_model_config(const std::string& config_json_path) {
  return detail::parse_config_file(config_json_path, "config.json",
                                   [](const nlohmann::json& j) { return parse_model_config(j); });
}

SGT_ISA_END
}  // namespace sgt
