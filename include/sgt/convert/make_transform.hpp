// A Stained Glass Transform for a Hugging Face base model, before any training: what
// tools/convert_hf.py writes with its defaults, in C++ (`sgt make-transform`).
//
//   sgt::MakeTransformOptions o;
//   o.layers = 2;       // K: the base model's first K decoder layers make each estimator's trunk
//   o.init_std = 0.05;  // sigma everywhere, before training
//   sgt::make_transform("models/SmolLM2-135M-Instruct", "models/sgt-smollm2", o);
//
// The directory (docs/format.md sections 2-3):
//   - model.safetensors: `embed_tokens.weight` (the base model's table), and for each estimator
//     (`mean_estimator.`, `std_estimator.`) the base model's `layers.0 .. layers.K-1` and final
//     `norm.weight`, then a zero `head.weight` [hidden, hidden] and a constant `head.bias`:
//     0 for the mean (so with `identity` the mean starts at exactly 0), and for the std the raw
//     value that the `cloak` parameterization (scale [1e-4, 2], shallow 1) maps to init_std:
//     bias = shallow * atanh(2 (S - min) / (max - min) - 1). The head starts at zero, so every
//     token gets sigma = cloak(bias) = S whatever the trunk computes;
//   - config.json: `embedding_scale` for a base that scales its embeddings (Gemma:
//     sqrt(hidden_size) as an f32, what transformers multiplies E[ids] by); the estimators'
//     `config` is the base config.json with num_hidden_layers cut to K (and the per-layer lists
//     layer_types and no_rope_layers with it), rope keys in the transformers-4 spelling
//     (rope_theta, rope_scaling; Gemma 3's per-layer-type rope_parameters as rope_theta,
//     rope_scaling and rope_local_base_freq), head_dim explicit (the family's transformers
//     default when absent), and the keys that describe the LM around the trunk (vocabulary,
//     token ids, dtype, ...) dropped; keys keep the base file's order;
//   - tokenizer.json, tokenizer_config.json, chat_template.jinja: the base model's, copied as
//     they are (those present), so `--text` and `--chat` work on the transform.
//
// Storage: each tensor in its stored dtype and the heads in the embedding table's (`Keep`), or
// everything cast to one dtype (rounded to nearest even, as torch's `.to()`); the std bias is
// rounded from the double through f32, as torch.full does. The written tensors are bit-equal to
// convert_hf.py's for the same arguments (tests/test_make_transform.cpp).
//
// Before anything is written, the config is parsed by the model loader's own parser and the
// tensor list checked against the one it implies (names and shapes), as convert_hf.py loads its
// result into the reference first. Then the directory is written beside OUT_DIR and renamed into
// place (convert/new_directory.hpp): OUT_DIR must not exist, or be an empty directory.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "sgt/convert/new_directory.hpp"
#include "sgt/core/dtype.hpp"
#include "sgt/core/enum_names.hpp"
#include "sgt/core/error.hpp"
#include "sgt/core/isa.hpp"
#include "sgt/core/tensor_view.hpp"
#include "sgt/io/atomic_file.hpp"
#include "sgt/io/json.hpp"
#include "sgt/io/ordered_json.hpp"
#include "sgt/io/safetensors_writer.hpp"
#include "sgt/io/tensor_store.hpp"
#include "sgt/model/config_json.hpp"
#include "sgt/model/families.hpp"
#include "sgt/model/weights.hpp"

namespace sgt {

// How model.safetensors stores the tensors: as the base model does, or all in one dtype.
enum class TransformStorage : std::uint8_t { Keep, F32, BF16, F16 };

inline constexpr EnumName<TransformStorage> kTransformStorageNames[] = {
    {TransformStorage::Keep, "keep"},
    {TransformStorage::F32, "f32"},
    {TransformStorage::BF16, "bf16"},
    {TransformStorage::F16, "f16"}};

// The std estimator's parameterization: convert_hf.py's defaults (--std-param cloak --std-scale
// 1e-4 2 --shallow 1). init_std must lie strictly inside the scale: cloak reaches its ends only at
// an infinite bias.
inline constexpr double kMakeTransformStdMin = 1e-4;
inline constexpr double kMakeTransformStdMax = 2.0;
inline constexpr double kMakeTransformStdShallow = 1.0;

// The files of the base model copied as they are (convert_hf.py's TOKENIZER_FILES).
inline constexpr const char* kMakeTransformCopiedFiles[] = {
    "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"};

struct MakeTransformOptions {
  std::uint64_t layers = 0;  // K, required: 1 .. the base model's num_hidden_layers
  double init_std = 0.1;  // sigma before training, in (kMakeTransformStdMin, kMakeTransformStdMax)
  TransformStorage dtype = TransformStorage::Keep;
};

// What make_transform wrote.
struct MakeTransformSummary {
  std::string model_type;
  std::uint64_t layers = 0, base_layers = 0, vocab_size = 0, hidden_size = 0;
  std::size_t tensors = 0;
  std::uint64_t parameters = 0;
  double std_bias = 0;     // the std head's bias, as stored
  double initial_std = 0;  // sigma that stored bias gives: cloak(std_bias)
  std::vector<std::string> copied_files;
};

namespace detail {

using OrderedJson = nlohmann::ordered_json;

// The largest hidden size whose heads are always allowed (2 x 8192^2 values); past it, a head may
// hold no more values than the embedding table, as in every language model (vocab >= hidden).
inline constexpr std::uint64_t kMakeTransformFreeHidden = 8192;

// Keys of a base config.json that describe the LM around the trunk, not the trunk
// (convert_hf.py's DROP_KEYS).
inline constexpr const char* kBaseConfigDroppedKeys[] = {
    "architectures",        "vocab_size",          "pad_token_id",      "bos_token_id",
    "eos_token_id",         "tie_word_embeddings", "torch_dtype",       "dtype",
    "transformers_version", "use_cache",           "auto_map",          "_name_or_path",
    "initializer_range",    "model_type",          "attention_dropout", "pretraining_tp"};

// Keys of a base config.json that list one value per decoder layer (layer_types: Qwen2/3,
// SmolLM3, Gemma 2/3; no_rope_layers: SmolLM3).
inline constexpr const char* kPerLayerListKeys[] = {"layer_types", "no_rope_layers"};

SGT_ISA_BEGIN

inline std::string format_number(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

// The raw value cloak maps to `sigma` (tools/sgt_reference/model.py, Parameterization.inverse).
inline double cloak_inverse(double sigma) {
  const double u = (sigma - kMakeTransformStdMin) / (kMakeTransformStdMax - kMakeTransformStdMin);
  return kMakeTransformStdShallow * std::atanh(2.0 * u - 1.0);
}

inline double cloak(double raw) {
  return kMakeTransformStdMin + (kMakeTransformStdMax - kMakeTransformStdMin) * 0.5 *
                                    (1.0 + std::tanh(raw / kMakeTransformStdShallow));
}

// A positive integer under `key` of the base config.
inline std::uint64_t base_config_count(const OrderedJson& c, const char* key) {
  auto it = c.find(key);
  if (it == c.end()) throw Error("required key is missing").at_key(key);
  if (!it->is_number_unsigned() || it->get<std::uint64_t>() == 0)
    throw Error("must be a positive integer, got " + abbreviate(it->dump())).at_key(key);
  return it->get<std::uint64_t>();
}

// v4 `rope_scaling` -> an object with `rope_type`, or null for the default rope.
inline OrderedJson normalize_rope_scaling(const OrderedJson& scaling, const char* key) {
  if (scaling.is_null()) return nullptr;
  if (!scaling.is_object())
    throw Error("expected an object or null, got " + abbreviate(scaling.dump())).at_key(key);
  OrderedJson s = scaling;
  if (s.contains("type") && !s.contains("rope_type")) {  // the oldest spelling
    OrderedJson type = s["type"];
    s.erase("type");
    s["rope_type"] = std::move(type);
  }
  if (!s.contains("rope_type") || s["rope_type"] == "default") return nullptr;
  return s;
}

// A rope object's number under `key` (a theta), or null when absent or null.
inline OrderedJson rope_number(const OrderedJson& entry, const std::string& where,
                               const char* key) {
  if (!entry.contains(key) || entry[key].is_null()) return nullptr;
  if (!entry[key].is_number())
    throw Error("must be a number, got " + abbreviate(entry[key].dump()))
        .at_key(where + "." + key);
  return entry[key].get<double>();
}

// Gemma 3's per-layer-type `rope_parameters` ({"full_attention": {...}, "sliding_attention":
// {...}}, transformers 5) as the v4 keys the estimators' config holds: rope_theta + rope_scaling
// for the global layers, rope_local_base_freq for the local ones (convert_hf.py's
// _per_layer_type_rope_to_v4). As Gemma3TextConfig reads it, the entries' own rope_theta win over
// rope_theta and rope_local_base_freq, and a rope_scaling updates the full_attention entry. The
// v4 spelling gives the local layers a default RoPE only, so any other local RoPE is refused.
inline OrderedJson per_layer_type_rope_to_v4(OrderedJson c, const OrderedJson& params) {
  for (auto it = params.begin(); it != params.end(); ++it)
    if (it.key() != "full_attention" && it.key() != "sliding_attention")
      throw Error("unknown layer type (full_attention and sliding_attention are)")
          .at_key("rope_parameters." + it.key());
  OrderedJson entries[2];
  const char* names[2] = {"full_attention", "sliding_attention"};
  for (int i = 0; i < 2; ++i) {
    const OrderedJson entry = params.contains(names[i]) ? params[names[i]] : OrderedJson();
    if (!entry.is_null() && !entry.is_object())
      throw Error("expected an object or null, got " + abbreviate(entry.dump()))
          .at_key(std::string("rope_parameters.") + names[i]);
    entries[i] = entry.is_null() ? OrderedJson::object() : entry;
  }
  OrderedJson& full = entries[0];
  OrderedJson& sliding = entries[1];
  if (c.contains("rope_scaling") && c["rope_scaling"].is_object())
    for (auto it = c["rope_scaling"].begin(); it != c["rope_scaling"].end(); ++it)
      full[it.key()] = it.value();
  if (sliding.contains("type") && !sliding.contains("rope_type")) {
    OrderedJson type = sliding["type"];
    sliding.erase("type");
    sliding["rope_type"] = std::move(type);
  }
  bool default_local = !sliding.contains("rope_type") || sliding["rope_type"] == "default";
  for (auto it = sliding.begin(); it != sliding.end(); ++it)
    default_local = default_local && (it.key() == "rope_type" || it.key() == "rope_theta");
  if (!default_local)
    throw Error("the local layers' RoPE must be the default one (rope_type and rope_theta only), "
                "got " + abbreviate(sliding.dump()))
        .at_key("rope_parameters.sliding_attention");
  const OrderedJson theta = rope_number(full, "rope_parameters.full_attention", "rope_theta");
  full.erase("rope_theta");
  if (!theta.is_null()) c["rope_theta"] = theta;
  const OrderedJson local =
      rope_number(sliding, "rope_parameters.sliding_attention", "rope_theta");
  if (!local.is_null()) c["rope_local_base_freq"] = local;
  if (full.contains("partial_rotary_factor")) {
    const OrderedJson factor = full["partial_rotary_factor"];
    full.erase("partial_rotary_factor");
    if (!factor.is_null()) c["partial_rotary_factor"] = factor;
  }
  c["rope_scaling"] = normalize_rope_scaling(full, "rope_parameters.full_attention");
  return c;
}

// The base config with `rope_parameters` (transformers 5) rewritten as rope_theta + rope_scaling
// (convert_hf.py's rope_keys_to_v4): explicit v4 keys already present win. Gemma 3's per layer
// type: per_layer_type_rope_to_v4.
inline OrderedJson rope_keys_to_v4(OrderedJson c) {
  OrderedJson params = c.contains("rope_parameters") ? c["rope_parameters"] : OrderedJson();
  c.erase("rope_parameters");
  if (params.is_null()) {
    if (c.contains("rope_scaling"))
      c["rope_scaling"] = normalize_rope_scaling(c["rope_scaling"], "rope_scaling");
    return c;
  }
  const ModelFamily* family =
      c.contains("model_type") && c["model_type"].is_string()
          ? find_model_family(c["model_type"].get<std::string>())
          : nullptr;
  if (params.is_object() && (params.contains("full_attention") ||
                             params.contains("sliding_attention")) &&
      family && family->rope == RopeRule::LocalOnSlidingLayers)
    return per_layer_type_rope_to_v4(std::move(c), params);
  if (!params.is_object() ||
      (!params.empty() && !params.contains("rope_type") && !params.contains("rope_theta")))
    throw Error("per-layer-type rope parameters are not supported").at_key("rope_parameters");
  if (params.contains("rope_theta")) {
    const OrderedJson theta = params["rope_theta"];
    params.erase("rope_theta");
    if (!theta.is_null()) {
      if (!theta.is_number())
        throw Error("must be a number, got " + abbreviate(theta.dump()))
            .at_key("rope_parameters.rope_theta");
      if (!c.contains("rope_theta")) c["rope_theta"] = theta.get<double>();
    }
  }
  if (params.contains("partial_rotary_factor")) {
    const OrderedJson factor = params["partial_rotary_factor"];
    params.erase("partial_rotary_factor");
    if (!factor.is_null() && !c.contains("partial_rotary_factor"))
      c["partial_rotary_factor"] = factor;
  }
  if (!c.contains("rope_scaling"))
    c["rope_scaling"] = normalize_rope_scaling(params, "rope_parameters");
  return c;
}

// An estimator's `config`: the base config cut to `layers` (convert_hf.py's trunk_config).
inline OrderedJson trunk_config(const OrderedJson& base, std::uint64_t layers) {
  OrderedJson c = rope_keys_to_v4(base);
  for (const char* key : kBaseConfigDroppedKeys) c.erase(key);
  c["num_hidden_layers"] = layers;
  // The lists with one entry per layer keep the first K (transformers requires layer_types and
  // we require both to have num_hidden_layers entries). The rules that derive per-layer choices
  // from a number -- Qwen's max_window_layers, Gemma's sliding_window_pattern, SmolLM3's
  // no_rope_layer_interval -- count from layer 0, so they mean the same for the first K layers
  // unchanged.
  for (const char* key : kPerLayerListKeys) {
    if (!c.contains(key) || !c[key].is_array() || c[key].size() <= layers) continue;
    OrderedJson cut = OrderedJson::array();
    for (std::uint64_t i = 0; i < layers; ++i) cut.push_back(c[key][i]);
    c[key] = std::move(cut);
  }
  // The family's transformers default, which is not always hidden / heads (Qwen3: 128, Gemma:
  // 256): the written key must mean what the base's absent one meant.
  if (!c.contains("head_dim") || c["head_dim"].is_null()) {
    const ModelFamily& family = *find_model_family(base["model_type"].get<std::string>());
    c["head_dim"] = family.defaults.head_dim
                        ? *family.defaults.head_dim
                        : base_config_count(c, "hidden_size") /
                              base_config_count(c, "num_attention_heads");
  }
  return c;
}

// The whole config.json (convert_hf.py's make_sgt_config with its default estimators).
inline OrderedJson transform_config(const OrderedJson& base, std::uint64_t layers,
                                    std::uint64_t vocab, std::uint64_t hidden) {
  const OrderedJson trunk = trunk_config(base, layers);
  auto estimator = [&](OrderedJson parameterization) {
    OrderedJson e;
    e["model_type"] = base["model_type"];
    e["config"] = trunk;
    e["final_norm"] = true;
    e["head"] = {{"bias", true}};
    e["parameterization"] = std::move(parameterization);
    return e;
  };
  OrderedJson c;
  c["format"] = "sgt4t";
  c["format_version"] = 1;
  c["vocab_size"] = vocab;
  c["hidden_size"] = hidden;
  // x must be what the base takes as inputs_embeds: a Gemma base scales E[ids] inside its
  // embedding module, so the transform does too (docs/format.md 3.1); other bases write no key.
  const float scale =
      family_embedding_scale(*find_model_family(base["model_type"].get<std::string>()), hidden);
  if (scale != 1.0f) c["embedding_scale"] = static_cast<double>(scale);
  c["pad_token_id"] = base.contains("pad_token_id") ? base["pad_token_id"] : OrderedJson();
  c["value_range"] = nullptr;
  c["percent_to_mask"] = nullptr;
  c["mean_estimator"] = estimator({{"type", "identity"}});
  c["std_estimator"] = estimator({{"type", "cloak"},
                                  {"scale", {kMakeTransformStdMin, kMakeTransformStdMax}},
                                  {"shallow", kMakeTransformStdShallow}});
  return c;
}

// The base config.json, read through the JSON front door with its keys in order, and the checks
// convert_hf.py makes before reading any tensor.
inline OrderedJson read_base_config(const std::string& base_dir, std::uint64_t layers) {
  const std::string path = base_dir + "/config.json";
  OrderedJson c;
  try {
    JsonReadOptions read;
    read.what = "config.json";
    read.max_depth = kMaxConfigJsonDepth;
    c = parse_ordered_json_checked(read_text_file(path, kMaxConfigFileBytes), read);
    if (c.contains("text_config"))
      throw Error("multimodal configs (text_config) are not supported").at_key("text_config");
    auto type = c.find("model_type");
    if (type == c.end()) throw Error("required key is missing").at_key("model_type");
    if (type->is_string() && find_unsupported_family(type->get<std::string>()))
      throw Error(unsupported_model_type_message(type->get<std::string>())).at_key("model_type");
    if (!type->is_string() || !find_model_family(type->get<std::string>()))
      throw Error(abbreviate(type->dump()) + " is not supported (" + model_family_names() + " are)")
          .at_key("model_type");
    if (c.contains("quantization_config") && !c["quantization_config"].is_null())
      throw Error("quantized checkpoints are not supported").at_key("quantization_config");
    const std::uint64_t n = base_config_count(c, "num_hidden_layers");
    if (layers < 1 || layers > n)
      throw Error("the base model has " + std::to_string(n) + " layers: " + std::to_string(layers) +
                  " cannot be taken (K must be 1 to " + std::to_string(n) + ")")
          .at_key("num_hidden_layers");
  } catch (Error& e) {
    e.at_file(path);
    throw;
  }
  return c;
}

// One tensor of the new model: a base tensor, or a head filled with one value.
struct PlannedTensor {
  std::string name;
  std::string base_name;  // empty: a head
  AnyTensorView source;   // the base tensor (when base_name is set)
  std::vector<std::uint64_t> shape;
  DType dtype = DType::F32;  // as written
  double fill = 0;           // a head's value
};

// The base tensors convert_hf.py takes, by their names in the transform's estimators
// ("layers.0.self_attn.q_proj.weight", "norm.weight"), and the embedding table.
struct BaseTensors {
  std::string embed_name;
  std::map<std::string, std::string> trunk;  // trunk name -> base name
};

inline BaseTensors select_base_tensors(const TensorStore& store, std::uint64_t layers) {
  const std::string suffix = "embed_tokens.weight";
  BaseTensors out;
  std::vector<std::string> embeds;
  for (const std::string& name : store.names())
    if (name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      embeds.push_back(name);
  if (embeds.size() != 1)
    throw Error("expected one tensor named *embed_tokens.weight, found " +
                std::to_string(embeds.size()));
  out.embed_name = embeds[0];
  // "model." for a *ForCausalLM checkpoint, "" for a bare *Model.
  const std::string prefix = out.embed_name.substr(0, out.embed_name.size() - suffix.size());
  const std::string layer_prefix = prefix + "layers.";
  for (const std::string& name : store.names()) {
    if (name == prefix + "norm.weight") {
      out.trunk["norm.weight"] = name;
      continue;
    }
    if (name.compare(0, layer_prefix.size(), layer_prefix) != 0) continue;
    const std::size_t begin = layer_prefix.size();
    const std::size_t dot = name.find('.', begin);
    if (dot == std::string::npos || dot == begin || dot + 1 == name.size()) continue;
    const std::string index = name.substr(begin, dot - begin);
    if (index.find_first_not_of("0123456789") != std::string::npos) continue;
    // More digits than any layer count: past K (and not worth parsing).
    if (index.size() > 9 || std::stoull(index) >= layers) continue;
    out.trunk[name.substr(prefix.size())] = name;
  }
  return out;
}

inline DType storage_dtype(TransformStorage s, DType stored) {
  switch (s) {
    case TransformStorage::Keep:
      return stored;
    case TransformStorage::F32:
      return DType::F32;
    case TransformStorage::BF16:
      return DType::BF16;
    case TransformStorage::F16:
      return DType::F16;
  }
  return stored;
}

// Every tensor of the new model, in writing order.
inline std::vector<PlannedTensor> plan_transform_tensors(const TensorStore& store,
                                                         const BaseTensors& base,
                                                         TransformStorage storage,
                                                         double std_bias) {
  const AnyTensorView embed = store.tensor(base.embed_name);
  if (embed.rank() != 2)
    throw Error("shape " + embed.shape_string() + " is not [vocab, hidden]")
        .at_tensor(base.embed_name);
  const std::uint64_t hidden = embed.dim(1);
  if (hidden > kMakeTransformFreeHidden && hidden > embed.dim(0))
    throw Error("hidden size " + std::to_string(hidden) + " is larger than the vocabulary (" +
                std::to_string(embed.dim(0)) + "): the heads would outgrow the embedding table")
        .at_tensor(base.embed_name);
  const DType head_dtype = storage_dtype(storage, embed.dtype());
  std::vector<PlannedTensor> out;
  auto from_base = [&](const std::string& name, const std::string& base_name) {
    const AnyTensorView v = store.tensor(base_name);
    out.push_back({name, base_name, v,
                   std::vector<std::uint64_t>(v.shape().begin(), v.shape().begin() + v.rank()),
                   storage_dtype(storage, v.dtype()), 0});
  };
  from_base("embed_tokens.weight", base.embed_name);
  for (const auto& [prefix, bias] : {std::pair<const char*, double>{"mean_estimator", 0.0},
                                     std::pair<const char*, double>{"std_estimator", std_bias}}) {
    for (const auto& [name, base_name] : base.trunk)
      from_base(std::string(prefix) + "." + name, base_name);
    out.push_back({std::string(prefix) + ".head.weight", "", {}, {hidden, hidden}, head_dtype, 0});
    out.push_back({std::string(prefix) + ".head.bias", "", {}, {hidden}, head_dtype, bias});
  }
  return out;
}

// The tensors against the config, with the model loader's parser and tensor list: every tensor
// the config implies, with its shape, and nothing else.
inline void check_planned_tensors(const OrderedJson& config,
                                  const std::vector<PlannedTensor>& planned) {
  const ModelConfig parsed = parse_model_config(nlohmann::json(config));
  std::map<std::string, const PlannedTensor*> by_name;
  for (const PlannedTensor& p : planned) by_name[p.name] = &p;
  std::set<std::string> expected;
  for (const ExpectedTensor& e : expected_tensors(parsed)) {
    expected.insert(e.name);
    auto it = by_name.find(e.name);
    if (it == by_name.end())
      throw Error("the base model has no tensor for it (config.json implies shape " +
                  shape_to_string(e.shape) + ")")
          .at_tensor(e.name);
    if (it->second->shape != e.shape)
      throw Error("shape " + shape_to_string(it->second->shape) + ", but the config implies " +
                  shape_to_string(e.shape))
          .at_tensor(it->second->base_name.empty() ? e.name : it->second->base_name);
  }
  for (const PlannedTensor& p : planned)
    if (!expected.count(p.name))
      throw Error(
          "a tensor the transform's config has no place for (the base model's layers "
          "hold more than its config.json describes)")
          .at_tensor(p.base_name.empty() ? p.name : p.base_name);
}

// Adds one planned tensor to the writer, converting from the stored dtype where it differs.
inline void add_planned_tensor(SafetensorsWriter& writer, const PlannedTensor& p) {
  if (p.base_name.empty()) {
    visit_dtype(p.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      std::uint64_t count = 1;
      for (const std::uint64_t d : p.shape) count *= d;  // the config's parser bounds each dim
      // torch.full(value) rounds the double through f32; zeros are zeros in every dtype.
      const std::vector<T> values(count, from_float<T>(static_cast<float>(p.fill)));
      writer.add(p.name, p.dtype, p.shape, values.data());
    });
    return;
  }
  if (p.source.dtype() == p.dtype) {
    writer.add(p.name, p.dtype, p.shape, p.source.data());
    return;
  }
  std::vector<float> values(p.source.size());
  visit_dtype(p.source.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* src = static_cast<const T*>(p.source.data());
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = to_float(src[i]);
  });
  writer.add_from_f32(p.name, p.dtype, p.shape, values.data());
}

inline std::string dump_config_json(const OrderedJson& config) {
  try {
    // json.dump(indent=2) as convert_hf.py writes it: non-ASCII escaped, a final newline.
    return config.dump(2, ' ', /*ensure_ascii=*/true) + "\n";
  } catch (const nlohmann::json::exception& e) {  // a string of the base config that is not UTF-8
    throw Error(std::string("cannot write config.json: ") + e.what());
  }
}

SGT_ISA_END
}  // namespace detail
SGT_ISA_BEGIN

// Writes the transform of `base_dir` into `dir` (which exists and is empty); see the file comment.
inline MakeTransformSummary write_transform_directory(const std::string& base_dir,
                                                      const std::string& dir,
                                                      const MakeTransformOptions& options) {
  namespace fs = std::filesystem;
  if (!std::isfinite(options.init_std) || !(options.init_std > kMakeTransformStdMin) ||
      !(options.init_std < kMakeTransformStdMax))
    throw Error("init_std " + detail::format_number(options.init_std) +
                " is outside the open range (0.0001, 2) of the std parameterization (cloak)");
  const detail::OrderedJson base_config = detail::read_base_config(base_dir, options.layers);
  const TensorStore store(base_dir);
  const detail::BaseTensors base = detail::select_base_tensors(store, options.layers);
  const double bias = detail::cloak_inverse(options.init_std);
  const std::vector<detail::PlannedTensor> planned =
      detail::plan_transform_tensors(store, base, options.dtype, bias);
  const detail::PlannedTensor& embed = planned.front();
  detail::OrderedJson config;
  try {  // what the rewrite refuses names a key of the base's config.json
    config = detail::transform_config(base_config, options.layers, embed.shape[0], embed.shape[1]);
  } catch (Error& e) {
    e.at_file(base_dir + "/config.json");
    throw;
  }
  try {
    detail::check_planned_tensors(config, planned);
  } catch (Error& e) {
    // The estimators' config is the base config's: name its key there.
    const std::string trunk = "mean_estimator.config.";
    if (e.key().compare(0, trunk.size(), trunk) == 0) {
      Error at_base(e.message() + " (as an estimator's config)");
      std::string key = e.key().substr(trunk.size());
      // The trunk's rope_scaling is the base's rope_parameters, respelled (rope_keys_to_v4).
      if (key.compare(0, 12, "rope_scaling") == 0 && !base_config.contains("rope_scaling") &&
          base_config.contains("rope_parameters"))
        key = "rope_parameters" + key.substr(12);
      at_base.at_key(key);
      at_base.at_file(base_dir + "/config.json");
      throw at_base;
    }
    e.at_file(base_dir);
    throw;
  }

  MakeTransformSummary summary;
  summary.model_type = base_config["model_type"].get<std::string>();
  summary.layers = options.layers;
  summary.base_layers = base_config["num_hidden_layers"].get<std::uint64_t>();
  summary.vocab_size = embed.shape[0];
  summary.hidden_size = embed.shape[1];
  SafetensorsWriter writer;
  for (const detail::PlannedTensor& p : planned) {
    detail::add_planned_tensor(writer, p);
    std::uint64_t n = 1;
    for (const std::uint64_t d : p.shape) n *= d;
    summary.parameters += n;
  }
  summary.tensors = planned.size();
  const detail::PlannedTensor& std_bias = planned.back();
  summary.std_bias = visit_dtype(std_bias.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return static_cast<double>(to_float(from_float<T>(static_cast<float>(bias))));
  });
  summary.initial_std = detail::cloak(summary.std_bias);

  writer.set_metadata("format", "pt");
  write_file_atomically(dir + "/config.json", detail::dump_config_json(config));
  writer.write(dir + "/model.safetensors");
  for (const char* name : kMakeTransformCopiedFiles) {
    const fs::path src = fs::path(base_dir) / name;
    std::error_code ec;
    if (!fs::exists(src, ec)) continue;
    if (!fs::is_regular_file(src, ec))
      throw Error("is not a regular file (the transform copies the base model's)")
          .at_file(src.string());
    if (!fs::copy_file(src, fs::path(dir) / name, ec))
      throw Error("cannot copy: " + ec.message()).at_file(src.string());
    summary.copied_files.push_back(name);
  }
  return summary;
}

// Makes the transform of BASE_DIR in a new directory OUT_DIR (see the file comment).
inline MakeTransformSummary make_transform(const std::string& base_dir, const std::string& out_dir,
                                           const MakeTransformOptions& options) {
  NewDirectoryOptions where;
  where.allow_empty = true;
  return write_new_directory(
      out_dir,
      [&](const std::string& tmp) { return write_transform_directory(base_dir, tmp, options); },
      where);
}

SGT_ISA_END
}  // namespace sgt
