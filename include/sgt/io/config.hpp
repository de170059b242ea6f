// The model's config.json (format spec section 2.1): typed structs, a validating parser, the list
// of tensors a config implies (section 2.2) and the check that a tensor store holds exactly those.
//
// Everything a model needs is decided here, once, at load time, so that the model code can trust
// its config: sizes are positive and consistent, the rope type is one we compute, the std
// estimator's parameterization is strictly positive. A bad value throws sgt::Error whose key() is
// the dotted path of the offending key ("std_estimator.parameterization.scale").
//
// `config` inside each estimator holds Hugging Face keys, so that a base model's config.json can be
// pasted in. Absent keys take the defaults of that model_type in transformers (checked against
// transformers 5.23 by tests/data/config/hf_defaults.json, written by
// tools/fixtures/config_fixtures.py from LlamaConfig(), MistralConfig(), Qwen2Config(),
// Qwen3Config() and decoder layers built from them):
//
//                            llama        mistral   qwen2     qwen3
//   hidden_size              4096         4096      4096      4096
//   intermediate_size        11008        14336     22016     22016
//   num_hidden_layers        32           32        32        32
//   num_attention_heads      32           32        32        32
//   num_key_value_heads      = heads      8         32        32      (null: = heads)
//   head_dim                 hidden/heads (all three)         128     (null: = hidden/heads)
//   max_position_embeddings  2048         131072    32768     32768
//   rms_norm_eps             1e-6         1e-6      1e-6      1e-6
//   rope_theta               10000        10000     10000     10000
//   hidden_act               silu         silu      silu      silu
//   q/k/v biases             attn_bias    none      always    attn_bias
//   o_proj bias              attn_bias    none      never     attn_bias
//   gate/up/down biases      mlp_bias     none      none      none
//   sliding_window           none         4096      none (use_sliding_window must be false)
//   q_norm / k_norm          no           no        no        yes
// (attn_bias = the attention_bias key, mlp_bias = the mlp_bias key; both default to false.)
//
// A key that transformers does not read for a model_type (mlp_bias on qwen3, attention_bias on
// mistral) is treated like any unknown key: ignored with a warning, exactly as transformers ignores
// it. Keys transformers knows but that do not change the estimator (bos_token_id, torch_dtype,
// use_cache, ...) are accepted silently.
#pragma once

#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/core/error.hpp"
#include "sgt/core/log.hpp"
#include "sgt/io/json_precheck.hpp"

namespace sgt {

enum class ModelType { Llama, Mistral, Qwen2, Qwen3 };
enum class RopeType { Default, Linear, Llama3 };
enum class ParameterizationType { Identity, BoundedTanh, Cloak, CloakSigmoid, Direct };

// The spellings used in config.json.
inline const char* model_type_name(ModelType t) noexcept {
  switch (t) {
    case ModelType::Llama:
      return "llama";
    case ModelType::Mistral:
      return "mistral";
    case ModelType::Qwen2:
      return "qwen2";
    case ModelType::Qwen3:
      return "qwen3";
  }
  return "?";
}
inline const char* rope_type_name(RopeType t) noexcept {
  switch (t) {
    case RopeType::Default:
      return "default";
    case RopeType::Linear:
      return "linear";
    case RopeType::Llama3:
      return "llama3";
  }
  return "?";
}
inline const char* parameterization_type_name(ParameterizationType t) noexcept {
  switch (t) {
    case ParameterizationType::Identity:
      return "identity";
    case ParameterizationType::BoundedTanh:
      return "bounded_tanh";
    case ParameterizationType::Cloak:
      return "cloak";
    case ParameterizationType::CloakSigmoid:
      return "cloak_sigmoid";
    case ParameterizationType::Direct:
      return "direct";
  }
  return "?";
}

// Upper bounds on sizes. Far above any real model, low enough that products of two sizes fit in 64
// bits and that a hostile config cannot make expected_tensors() build billions of names.
inline constexpr std::uint64_t kMaxConfigDimension = 2147483647;  // 2^31 - 1
inline constexpr std::uint64_t kMaxConfigLayers = 4096;
inline constexpr std::size_t kMaxConfigFileBytes = 16u * 1024 * 1024;

struct RopeScalingConfig {
  RopeType type = RopeType::Default;
  double factor = 1.0;            // linear and llama3: inv_freq divided by factor
  double low_freq_factor = 1.0;   // llama3 only
  double high_freq_factor = 4.0;  // llama3 only
  std::size_t original_max_position_embeddings = 8192;  // llama3 only
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
  double rope_theta = 0;
  RopeScalingConfig rope_scaling;
  double partial_rotary_factor = 1.0;  // in (0, 1]
  // int(head_dim * partial_rotary_factor), as transformers computes it; even and >= 2. RoPE rotates
  // the first rotary_dim dimensions of each head, pairing i with i + rotary_dim / 2.
  std::size_t rotary_dim = 0;
  std::size_t max_position_embeddings = 0;
  bool attention_bias = false;  // q_proj, k_proj, v_proj have biases
  bool o_proj_bias = false;     // o_proj has a bias (llama, qwen3: = attention_bias; qwen2: false)
  bool mlp_bias = false;        // gate/up/down have biases (llama's mlp_bias)
  std::string hidden_act = "silu";  // only "silu" is accepted for now
  std::size_t sliding_window = 0;   // 0 = none; else every layer (Mistral) sees this many keys
  bool qk_norm = false;             // Qwen3: per-head RMSNorm on q and k after the projections
  double attention_scale = 0;       // head_dim^-0.5, computed as transformers does (pow, in double)
};

struct ParameterizationConfig {
  ParameterizationType type = ParameterizationType::Identity;
  double bound = 1;       // bounded_tanh
  double init_shift = 0;  // bounded_tanh
  double min = 0;         // cloak, cloak_sigmoid, direct: scale[0]
  double max = 1;         // cloak, cloak_sigmoid, direct: scale[1]
  double shallow = 1;     // cloak, cloak_sigmoid
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
  EstimatorConfig mean_estimator, std_estimator;
};

struct ExpectedTensor {
  std::string name;
  std::vector<std::uint64_t> shape;
};

namespace detail {

inline std::string config_key_path(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

// A short rendering of a JSON value for error messages.
inline std::string json_excerpt(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// One JSON object of the config, seen from its dotted path. Every key the parser asks for (or
// declares irrelevant) is remembered, so that the keys nobody asked for can be reported.
class ConfigObject {
 public:
  ConfigObject(const nlohmann::json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j_.is_object())
      throw Error("must be a JSON object, got " + json_excerpt(j_)).at_key(path_);
  }

  const std::string& path() const noexcept { return path_; }
  std::string path_of(const std::string& key) const { return config_key_path(path_, key); }
  [[noreturn]] void fail(const std::string& key, const std::string& message) const {
    throw Error(message).at_key(path_of(key));
  }

  // The value under `key` (JSON null included), or nullptr when absent; the key counts as read.
  const nlohmann::json* find(const std::string& key) {
    read_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }
  // As find(), but JSON null reads as absent: for keys whose null means "the default".
  const nlohmann::json* find_value(const std::string& key) {
    const nlohmann::json* v = find(key);
    return v && !v->is_null() ? v : nullptr;
  }

  // Keys accepted without being used.
  void accept(std::initializer_list<const char*> keys) {
    for (const char* k : keys) read_.insert(k);
  }

  // An unsigned integer in [min, max]; `fallback` when absent (required when there is none).
  std::uint64_t integer(const std::string& key, std::optional<std::uint64_t> fallback,
                        std::uint64_t min = 1, std::uint64_t max = kMaxConfigDimension) {
    const nlohmann::json* v = find(key);
    if (!v) {
      if (!fallback) missing(key);
      return *fallback;
    }
    return check_integer(key, *v, min, max);
  }
  // As integer(), but JSON null (or absence, when absent_is_null) gives nullopt.
  std::optional<std::uint64_t> nullable_integer(const std::string& key,
                                                std::optional<std::uint64_t> absent_value,
                                                std::uint64_t min = 1,
                                                std::uint64_t max = kMaxConfigDimension) {
    const nlohmann::json* v = find(key);
    if (!v) return absent_value;
    if (v->is_null()) return std::nullopt;
    return check_integer(key, *v, min, max);
  }
  std::uint64_t check_integer(const std::string& key, const nlohmann::json& v, std::uint64_t min,
                              std::uint64_t max) const {
    // Parsed text stores non-negative integers as unsigned; JSON built in C++ may hold signed ones.
    if (!v.is_number_integer()) fail(key, "must be an integer, got " + json_excerpt(v));
    if (!v.is_number_unsigned() && v.get<std::int64_t>() < 0)
      fail(key, min == 0 ? "must not be negative, got " + v.dump()
                         : "must be a positive integer, got " + v.dump());
    const std::uint64_t x = v.get<std::uint64_t>();
    if (x < min && min == 1) fail(key, "must be a positive integer, got " + v.dump());
    if (x < min || x > max)
      fail(key, "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " +
                    v.dump());
    return x;
  }

  // A finite number (integer or not).
  double number(const std::string& key, std::optional<double> fallback) {
    const nlohmann::json* v = find(key);
    if (!v) {
      if (!fallback) missing(key);
      return *fallback;
    }
    return check_number(key, *v);
  }
  double check_number(const std::string& key, const nlohmann::json& v) const {
    if (!v.is_number()) fail(key, "must be a number, got " + json_excerpt(v));
    const double x = v.get<double>();
    if (!std::isfinite(x)) fail(key, "must be finite, got " + v.dump());
    return x;
  }
  double positive_number(const std::string& key, std::optional<double> fallback) {
    const double x = number(key, fallback);
    if (!(x > 0)) fail(key, "must be > 0, got " + std::to_string(x));
    return x;
  }

  bool boolean(const std::string& key, std::optional<bool> fallback) {
    const nlohmann::json* v = find(key);
    if (!v) {
      if (!fallback) missing(key);
      return *fallback;
    }
    if (!v->is_boolean()) fail(key, "must be true or false, got " + json_excerpt(*v));
    return v->get<bool>();
  }

  std::string string(const std::string& key, std::optional<std::string> fallback) {
    const nlohmann::json* v = find(key);
    if (!v) {
      if (!fallback) missing(key);
      return *fallback;
    }
    if (!v->is_string()) fail(key, "must be a string, got " + json_excerpt(*v));
    return v->get<std::string>();
  }

  const nlohmann::json& object(const std::string& key) {
    const nlohmann::json* v = find(key);
    if (!v) missing(key);
    if (!v->is_object()) fail(key, "must be a JSON object, got " + json_excerpt(*v));
    return *v;
  }

  // Logs one warning per key that was neither read nor accepted.
  void warn_unknown_keys() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!read_.count(it.key())) log_warning(path_of(it.key()) + ": unknown key, ignored");
  }

 private:
  [[noreturn]] void missing(const std::string& key) const { fail(key, "required key is missing"); }

  const nlohmann::json& j_;
  std::string path_;
  std::set<std::string> read_;
};

// Keys every transformers config may carry that do not change an estimator's computation:
// bookkeeping, generation settings, token ids, the LM head's tying, training-only settings.
inline void accept_generic_hf_keys(ConfigObject& c) {
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

// The defaults of each transformers config class (see the table at the top of this file).
struct HfDecoderDefaults {
  std::uint64_t hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
  std::optional<std::uint64_t> num_key_value_heads;  // nullopt: = num_attention_heads
  std::optional<std::uint64_t> head_dim;             // nullopt: = hidden_size / heads
  std::uint64_t max_position_embeddings;
  double rms_norm_eps, rope_theta;
};

inline HfDecoderDefaults hf_decoder_defaults(ModelType t) {
  switch (t) {
    case ModelType::Llama:
      return {4096, 11008, 32, 32, std::nullopt, std::nullopt, 2048, 1e-6, 10000.0};
    case ModelType::Mistral:
      return {4096, 14336, 32, 32, 8, std::nullopt, 131072, 1e-6, 10000.0};
    case ModelType::Qwen2:
      return {4096, 22016, 32, 32, 32, std::nullopt, 32768, 1e-6, 10000.0};
    case ModelType::Qwen3:
      return {4096, 22016, 32, 32, 32, 128, 32768, 1e-6, 10000.0};
  }
  return {};
}

inline std::optional<ModelType> parse_model_type_name(const std::string& s) {
  if (s == "llama") return ModelType::Llama;
  if (s == "mistral") return ModelType::Mistral;
  if (s == "qwen2") return ModelType::Qwen2;
  if (s == "qwen3") return ModelType::Qwen3;
  return std::nullopt;
}

// RoPE, spelled either way transformers writes it:
//   v4: "rope_theta": x, "rope_scaling": {"rope_type" (or legacy "type"): ..., "factor": ...}
//   v5: "rope_parameters": {"rope_type": ..., "rope_theta": x, "factor": ...}
// with transformers' precedence: a non-empty rope_scaling replaces rope_parameters; inside the
// chosen dict its own rope_theta / partial_rotary_factor win over the top-level keys; rope_type
// wins over type; llama3's original_max_position_embeddings defaults to max_position_embeddings
// (a top-level original_max_position_embeddings takes priority, as transformers gives it).
inline void parse_rope(ConfigObject& c, DecoderConfig& d) {
  const nlohmann::json* scaling = c.find("rope_scaling");
  const nlohmann::json* parameters = c.find("rope_parameters");
  if (scaling && !scaling->is_null() && !scaling->is_object())
    c.fail("rope_scaling", "must be a JSON object or null, got " + json_excerpt(*scaling));
  if (parameters && !parameters->is_null() && !parameters->is_object())
    c.fail("rope_parameters", "must be a JSON object or null, got " + json_excerpt(*parameters));
  auto non_empty = [](const nlohmann::json* v) { return v && v->is_object() && !v->empty(); };
  const char* dict_key = non_empty(scaling) ? "rope_scaling" : "rope_parameters";
  const nlohmann::json* dict = non_empty(scaling)      ? scaling
                               : non_empty(parameters) ? parameters
                                                       : nullptr;
  if (non_empty(scaling) && non_empty(parameters) && *scaling != *parameters)
    log_warning(c.path_of("rope_parameters") +
                ": ignored, rope_scaling is given too and takes precedence (as in transformers)");

  const double top_theta = c.positive_number("rope_theta", 10000.0);
  const double top_partial = c.number("partial_rotary_factor", 1.0);
  const std::optional<std::uint64_t> top_original =
      c.nullable_integer("original_max_position_embeddings", std::nullopt);
  d.rope_theta = top_theta;
  d.partial_rotary_factor = top_partial;
  std::string partial_key = "partial_rotary_factor";  // relative to c: where the value came from

  if (dict) {
    ConfigObject r(*dict, c.path_of(dict_key));
    for (const char* nested : {"full_attention", "sliding_attention"})
      if (dict->contains(nested))
        r.fail(nested, "per-layer-type RoPE parameters are not supported");
    std::string type_key = dict->contains("rope_type") ? "rope_type" : "type";
    const std::string type = r.string(type_key, std::string("default"));
    if (type_key == "rope_type") r.string("type", std::string());  // legacy spelling, checked only
    if (type == "default") {
      d.rope_scaling.type = RopeType::Default;
    } else if (type == "linear") {
      d.rope_scaling.type = RopeType::Linear;
    } else if (type == "llama3") {
      d.rope_scaling.type = RopeType::Llama3;
    } else {
      r.fail(type_key,
             "rope type '" + type + "' is not supported (default, linear and llama3 are)");
    }
    d.rope_theta = r.positive_number("rope_theta", top_theta);
    if (dict->contains("partial_rotary_factor")) {
      d.partial_rotary_factor = r.number("partial_rotary_factor", std::nullopt);
      partial_key = std::string(dict_key) + ".partial_rotary_factor";
    }
    if (d.rope_scaling.type != RopeType::Default)
      d.rope_scaling.factor = r.positive_number("factor", std::nullopt);
    if (d.rope_scaling.type == RopeType::Llama3) {
      d.rope_scaling.low_freq_factor = r.positive_number("low_freq_factor", std::nullopt);
      d.rope_scaling.high_freq_factor = r.number("high_freq_factor", std::nullopt);
      // The smoothing factor divides by (high - low); equal factors would divide by zero.
      if (!(d.rope_scaling.high_freq_factor > d.rope_scaling.low_freq_factor))
        r.fail("high_freq_factor", "must be greater than low_freq_factor (" +
                                       std::to_string(d.rope_scaling.low_freq_factor) + "), got " +
                                       std::to_string(d.rope_scaling.high_freq_factor));
      const std::uint64_t original =
          r.integer("original_max_position_embeddings", d.max_position_embeddings, 1,
                    std::numeric_limits<std::int64_t>::max());
      d.rope_scaling.original_max_position_embeddings =
          static_cast<std::size_t>(top_original ? *top_original : original);
    }
    r.warn_unknown_keys();
  }

  if (!(d.partial_rotary_factor > 0 && d.partial_rotary_factor <= 1))
    throw Error("must be in (0, 1], got " + std::to_string(d.partial_rotary_factor))
        .at_key(c.path_of(partial_key));
  // Python's int(head_dim * partial_rotary_factor): a double product, truncated.
  d.rotary_dim =
      static_cast<std::size_t>(static_cast<double>(d.head_dim) * d.partial_rotary_factor);
  if (d.rotary_dim < 2 || d.rotary_dim % 2 != 0)
    throw Error("RoPE needs an even rotary dimension of at least 2, but head_dim " +
                std::to_string(d.head_dim) + " x partial_rotary_factor " +
                std::to_string(d.partial_rotary_factor) + " gives " + std::to_string(d.rotary_dim))
        .at_key(c.path_of(d.partial_rotary_factor == 1.0 ? std::string("head_dim") : partial_key));
}

inline DecoderConfig parse_decoder_config(ModelType type, ConfigObject& c) {
  const HfDecoderDefaults def = hf_decoder_defaults(type);
  DecoderConfig d;
  d.model_type = type;
  accept_generic_hf_keys(c);

  // A pasted Hugging Face config names its model_type too: it must agree.
  const std::string pasted_type = c.string("model_type", std::string(model_type_name(type)));
  if (pasted_type != model_type_name(type))
    c.fail("model_type", "'" + pasted_type + "' contradicts the estimator's model_type '" +
                             model_type_name(type) + "'");

  d.hidden_size = c.integer("hidden_size", def.hidden_size);
  d.intermediate_size = c.integer("intermediate_size", def.intermediate_size);
  d.num_hidden_layers = c.integer("num_hidden_layers", def.num_hidden_layers, 1, kMaxConfigLayers);
  d.num_attention_heads = c.integer("num_attention_heads", def.num_attention_heads);
  d.num_key_value_heads =
      static_cast<std::size_t>(c.nullable_integer("num_key_value_heads", def.num_key_value_heads)
                                   .value_or(d.num_attention_heads));
  if (d.num_key_value_heads > d.num_attention_heads ||
      d.num_attention_heads % d.num_key_value_heads != 0)
    c.fail("num_key_value_heads", "must divide num_attention_heads (" +
                                      std::to_string(d.num_attention_heads) + "), got " +
                                      std::to_string(d.num_key_value_heads));
  // transformers (all four): head_dim null or absent -> hidden_size // num_attention_heads, except
  // that Qwen3Config's own default is 128. We refuse the floor division's silent remainder.
  const std::optional<std::uint64_t> head_dim = c.nullable_integer("head_dim", def.head_dim);
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

  d.hidden_act = c.string("hidden_act", std::string("silu"));
  if (d.hidden_act != "silu")
    c.fail("hidden_act", "activation '" + d.hidden_act + "' is not supported (silu is)");
  d.max_position_embeddings =
      static_cast<std::size_t>(c.integer("max_position_embeddings", def.max_position_embeddings, 1,
                                         std::numeric_limits<std::int64_t>::max()));
  d.rms_norm_eps = c.positive_number("rms_norm_eps", def.rms_norm_eps);
  parse_rope(c, d);

  switch (type) {
    case ModelType::Llama:
      d.attention_bias = c.boolean("attention_bias", false);
      d.o_proj_bias = d.attention_bias;
      d.mlp_bias = c.boolean("mlp_bias", false);
      c.accept({"pretraining_tp"});  // transformers 5 no longer reads it
      break;
    case ModelType::Mistral:
      // Every layer gets config.sliding_window; null means full causal attention.
      d.sliding_window = static_cast<std::size_t>(
          c.nullable_integer("sliding_window", 4096, 1, std::numeric_limits<std::int64_t>::max())
              .value_or(0));
      break;
    case ModelType::Qwen2:
    case ModelType::Qwen3:
      if (type == ModelType::Qwen2) {
        d.attention_bias = true;  // Qwen2Attention: q/k/v with bias, o_proj without, always
        d.o_proj_bias = false;
      } else {
        d.attention_bias = c.boolean("attention_bias", false);
        d.o_proj_bias = d.attention_bias;
        d.qk_norm = true;
      }
      // The window applies only to layers >= max_window_layers (or as layer_types says): not
      // supported yet. Without use_sliding_window, transformers ignores sliding_window.
      if (c.boolean("use_sliding_window", false))
        c.fail("use_sliding_window", "sliding-window layers of " +
                                         std::string(model_type_name(type)) +
                                         " are not supported yet");
      c.nullable_integer("sliding_window", std::nullopt, 1,
                         std::numeric_limits<std::int64_t>::max());
      c.accept({"max_window_layers", "layer_types"});
      break;
  }
  c.warn_unknown_keys();
  return d;
}

inline ParameterizationConfig parse_parameterization(ConfigObject& p, bool for_std) {
  ParameterizationConfig out;
  const std::string type = p.string("type", std::nullopt);
  if (type == "identity") {
    out.type = ParameterizationType::Identity;
  } else if (type == "bounded_tanh") {
    out.type = ParameterizationType::BoundedTanh;
  } else if (type == "cloak") {
    out.type = ParameterizationType::Cloak;
  } else if (type == "cloak_sigmoid") {
    out.type = ParameterizationType::CloakSigmoid;
  } else if (type == "direct") {
    out.type = ParameterizationType::Direct;
  } else {
    p.fail("type", "unknown parameterization type '" + type +
                       "' (identity, bounded_tanh, cloak, cloak_sigmoid and direct are known)");
  }
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
        p.fail("scale", "must be a [min, max] pair of numbers, got " + json_excerpt(*scale));
      out.min = p.check_number("scale", (*scale)[0]);
      out.max = p.check_number("scale", (*scale)[1]);
      if (!(out.min < out.max))
        p.fail("scale", "min must be less than max, got " + json_excerpt(*scale));
      if (out.type == ParameterizationType::Direct) {
        if (for_std && !(out.min > 0))
          p.fail("scale",
                 "the std estimator must be strictly positive, so direct's min must be "
                 "> 0, got " +
                     json_excerpt(*scale));
      } else {
        if (out.min < 0) p.fail("scale", "min must be >= 0, got " + json_excerpt(*scale));
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
  ConfigObject e(j, path);
  EstimatorConfig out;
  const std::string type_name = e.string("model_type", std::nullopt);
  const std::optional<ModelType> type = parse_model_type_name(type_name);
  if (!type)
    e.fail("model_type", "unknown model_type '" + type_name +
                             "' (llama, mistral, qwen2 and qwen3 are supported)");
  {
    ConfigObject c(e.object("config"), e.path_of("config"));
    out.decoder = parse_decoder_config(*type, c);
    if (out.decoder.hidden_size != hidden_size)
      c.fail("hidden_size", "is " + std::to_string(out.decoder.hidden_size) +
                                " but the model's hidden_size is " + std::to_string(hidden_size) +
                                " (the estimator reads the embeddings directly)");
  }
  out.final_norm = e.boolean("final_norm", true);
  if (const nlohmann::json* head = e.find_value("head")) {
    ConfigObject h(*head, e.path_of("head"));
    out.has_head = true;
    out.head_bias = h.boolean("bias", std::nullopt);
    h.warn_unknown_keys();
  }
  ConfigObject p(e.object("parameterization"), e.path_of("parameterization"));
  out.parameterization = parse_parameterization(p, for_std);
  e.warn_unknown_keys();
  return out;
}

// config.json goes through the same SAX precheck as safetensors headers (io/json_precheck.hpp):
// a repeated key is refused (nlohmann would keep the last one silently: a config that says two
// things is ambiguous), as is nesting deeper than kMaxConfigJsonDepth.
inline constexpr std::size_t kMaxConfigJsonDepth = 32;

inline nlohmann::json parse_config_json_text(const std::string& text) {
  JsonPrecheck check(kMaxConfigJsonDepth);
  nlohmann::json::sax_parse(text, &check);
  std::string path;
  for (const std::string& k : check.path()) path += (path.empty() ? "" : ".") + k;
  switch (check.fault()) {
    case JsonPrecheck::Fault::kNone:
      break;
    case JsonPrecheck::Fault::kSyntax:
      throw Error("not valid JSON: " + check.syntax_message());
    case JsonPrecheck::Fault::kRootNotObject:
      throw Error("the root of config.json is not a JSON object");
    case JsonPrecheck::Fault::kDuplicateKey:
      throw Error("key appears twice").at_key(path);
    case JsonPrecheck::Fault::kTooDeep:
      throw Error("JSON nests deeper than " + std::to_string(kMaxConfigJsonDepth) + " levels");
  }
  return nlohmann::json::parse(text);
}

inline void append_estimator_tensors(const EstimatorConfig& e, const std::string& prefix,
                                     std::vector<ExpectedTensor>& out) {
  const DecoderConfig& d = e.decoder;
  using Shape = std::vector<std::uint64_t>;
  const std::uint64_t hidden = d.hidden_size, inter = d.intermediate_size, head_dim = d.head_dim;
  const std::uint64_t q_dim = d.num_attention_heads * head_dim;
  const std::uint64_t kv_dim = d.num_key_value_heads * head_dim;
  auto add = [&](const std::string& name, Shape shape) {
    out.push_back({prefix + name, std::move(shape)});
  };
  auto linear = [&](const std::string& name, std::uint64_t rows, std::uint64_t cols, bool bias) {
    add(name + ".weight", {rows, cols});
    if (bias) add(name + ".bias", {rows});
  };
  for (std::size_t i = 0; i < d.num_hidden_layers; ++i) {
    const std::string layer = ".layers." + std::to_string(i) + ".";
    add(layer + "input_layernorm.weight", {hidden});
    linear(layer + "self_attn.q_proj", q_dim, hidden, d.attention_bias);
    linear(layer + "self_attn.k_proj", kv_dim, hidden, d.attention_bias);
    linear(layer + "self_attn.v_proj", kv_dim, hidden, d.attention_bias);
    linear(layer + "self_attn.o_proj", hidden, q_dim, d.o_proj_bias);
    if (d.qk_norm) {
      add(layer + "self_attn.q_norm.weight", {head_dim});
      add(layer + "self_attn.k_norm.weight", {head_dim});
    }
    add(layer + "post_attention_layernorm.weight", {hidden});
    linear(layer + "mlp.gate_proj", inter, hidden, d.mlp_bias);
    linear(layer + "mlp.up_proj", inter, hidden, d.mlp_bias);
    linear(layer + "mlp.down_proj", hidden, inter, d.mlp_bias);
  }
  if (e.final_norm) add(".norm.weight", {hidden});
  if (e.has_head) linear(".head", hidden, hidden, e.head_bias);
}

inline std::string shape_to_string(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace detail

// Parses and validates a config.json document. Throws sgt::Error whose key() is the dotted path of
// the offending key; unknown keys are logged (sgt::log_warning) and ignored.
inline ModelConfig parse_model_config(const nlohmann::json& j) {
  detail::ConfigObject root(j, "");
  ModelConfig m;
  const std::string format = root.string("format", std::nullopt);
  if (format != "sgt4t") root.fail("format", "must be \"sgt4t\", got \"" + format + "\"");
  const std::uint64_t version = root.integer("format_version", std::nullopt, 1, UINT64_MAX);
  if (version > 1)
    root.fail("format_version", "unsupported format_version " + std::to_string(version) +
                                    " (this reader supports 1)");
  m.format_version = static_cast<int>(version);
  m.vocab_size = static_cast<std::size_t>(root.integer("vocab_size", std::nullopt));
  m.hidden_size = static_cast<std::size_t>(root.integer("hidden_size", std::nullopt));

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
  try {
    std::ifstream in(config_json_path, std::ios::binary);
    if (!in) throw Error(std::string("cannot open: ") + std::strerror(errno));
    std::string text;
    char buffer[65536];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
      text.append(buffer, static_cast<std::size_t>(in.gcount()));
      if (text.size() > kMaxConfigFileBytes)
        throw Error("larger than " + std::to_string(kMaxConfigFileBytes) + " bytes; not a config");
    }
    if (in.bad()) throw Error(std::string("cannot read: ") + std::strerror(errno));
    return parse_model_config(detail::parse_config_json_text(text));
  } catch (Error& e) {
    e.at_file(config_json_path);
    throw;
  }
}

// The tensors a config implies (spec section 2.2), in a stable order: embed_tokens.weight, then the
// mean estimator's and the std estimator's layers, final norm and head.
inline std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config) {
  std::vector<ExpectedTensor> out;
  out.push_back({"embed_tokens.weight", {config.vocab_size, config.hidden_size}});
  detail::append_estimator_tensors(config.mean_estimator, "mean_estimator", out);
  detail::append_estimator_tensors(config.std_estimator, "std_estimator", out);
  return out;
}

// Checks that `store` holds every expected tensor with its expected shape, and nothing else under
// the prefixes the format owns ("embed_tokens.", "mean_estimator.", "std_estimator."). Tensors
// outside those prefixes are ignored with one warning. `Store` needs contains(name), names() and
// info(name).shape (a sequence of integers): sgt::SafetensorsFile and sgt::TensorStore have them.
template <class Store>
void check_model_tensors(const ModelConfig& config, const Store& store) {
  const std::vector<ExpectedTensor> expected = expected_tensors(config);
  std::set<std::string> expected_names;
  for (const ExpectedTensor& t : expected) {
    expected_names.insert(t.name);
    if (!store.contains(t.name))
      throw Error("missing; the config expects shape " + detail::shape_to_string(t.shape))
          .at_tensor(t.name);
    const auto& stored = store.info(t.name).shape;
    std::vector<std::uint64_t> actual(stored.begin(), stored.end());
    if (actual != t.shape)
      throw Error("shape " + detail::shape_to_string(actual) +
                  " in the file, but the config expects " + detail::shape_to_string(t.shape))
          .at_tensor(t.name);
  }
  std::vector<std::string> foreign;
  for (const std::string& name : store.names()) {
    if (expected_names.count(name)) continue;
    for (const char* prefix : {"embed_tokens.", "mean_estimator.", "std_estimator."})
      if (name.compare(0, std::strlen(prefix), prefix) == 0)
        throw Error("unexpected tensor: the config implies no tensor of this name").at_tensor(name);
    foreign.push_back(name);
  }
  if (!foreign.empty()) {
    std::string list;
    for (std::size_t i = 0; i < foreign.size() && i < 5; ++i) list += (i ? ", " : "") + foreign[i];
    if (foreign.size() > 5) list += ", ...";
    log_warning(std::to_string(foreign.size()) +
                " tensor(s) outside the model format ignored: " + list);
  }
}

}  // namespace sgt
