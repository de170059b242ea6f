// config.json parsing and validation (sgt/model/config_json.hpp), the family table
// (sgt/model/families.hpp), and the tensor-presence/shape check (sgt/model/weights.hpp).
//
// Expected architectures come from transformers itself: tests/data/config/hf_defaults.json is
// written by tools/fixtures/config_fixtures.py (defaults of LlamaConfig() & co., parameter lists
// of models built from small configs, standardized rope parameters, pasted real configs).
#include <doctest/doctest.h>

#include "support/enum_table_check.hpp"

#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/io/safetensors.hpp>
#include <sgt/io/safetensors_writer.hpp>
#include <sgt/model/config_json.hpp>
#include <sgt/model/weights.hpp>

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_config {

using nlohmann::json;

namespace {

std::string data_path(const std::string& name) {
  return std::string(SGT_TEST_DATA_DIR) + "/config/" + name;
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return json::parse(in);
}

const json& spec_example() {
  static const json j = read_json(data_path("spec_example.json"));
  return j;
}

const json& hf() {
  static const json j = read_json(data_path("hf_defaults.json"));
  return j;
}

// Collects warnings for as long as it lives.
struct WarningCapture {
  std::vector<std::string> messages;
  sgt::LogHandler previous;
  WarningCapture() {
    previous = sgt::set_log_handler([this](const std::string& m) { messages.push_back(m); });
  }
  ~WarningCapture() { sgt::set_log_handler(previous); }
  WarningCapture(const WarningCapture&) = delete;
  WarningCapture& operator=(const WarningCapture&) = delete;
  std::string all() const {
    std::string s;
    for (const auto& m : messages) s += m + "\n";
    return s;
  }
};

// The error parse_model_config throws on `j`; fails the test when it throws none.
sgt::Error parse_error(const json& j) {
  try {
    sgt::parse_model_config(j);
  } catch (const sgt::Error& e) {
    return e;
  }
  FAIL("parse_model_config accepted the config");
  return sgt::Error("unreachable");
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A whole model around one estimator config: both estimators get `config` and `model_type`.
json model_with(const std::string& model_type, const json& config, std::uint64_t hidden,
                std::uint64_t vocab = 32) {
  json m = {
      {"format", "sgt4t"}, {"format_version", 1}, {"vocab_size", vocab}, {"hidden_size", hidden}};
  m["mean_estimator"] = {{"model_type", model_type},
                         {"config", config},
                         {"final_norm", true},
                         {"head", nullptr},
                         {"parameterization", {{"type", "identity"}}}};
  m["std_estimator"] = {{"model_type", model_type},
                        {"config", config},
                        {"final_norm", true},
                        {"head", nullptr},
                        {"parameterization", {{"type", "cloak"}, {"scale", {0.01, 1.0}}}}};
  return m;
}

// Compares a parsed decoder with an architecture dumped from transformers, key by key; every key
// of the dump must be understood here, so the fixture cannot grow a field this test ignores.
void check_against_hf(const sgt::DecoderConfig& d, const json& expected) {
  // Items, not structured bindings: CAPTURE's lambda cannot capture a binding in C++17 (clang).
  for (const auto& item : expected.items()) {
    const std::string key = item.key();
    const json& v = item.value();
    CAPTURE(key);
    if (key == "hidden_size")
      CHECK(d.hidden_size == v.get<std::size_t>());
    else if (key == "intermediate_size")
      CHECK(d.intermediate_size == v.get<std::size_t>());
    else if (key == "num_hidden_layers")
      CHECK(d.num_hidden_layers == v.get<std::size_t>());
    else if (key == "num_attention_heads")
      CHECK(d.num_attention_heads == v.get<std::size_t>());
    else if (key == "num_key_value_heads")
      CHECK(d.num_key_value_heads == v.get<std::size_t>());
    else if (key == "head_dim")
      CHECK(d.head_dim == v.get<std::size_t>());
    else if (key == "rms_norm_eps")
      CHECK(d.rms_norm_eps == v.get<double>());
    else if (key == "rope_theta")
      CHECK(d.rope.theta == v.get<double>());
    else if (key == "rope_type")
      CHECK(std::string(sgt::rope_type_name(d.rope.type)) == v.get<std::string>());
    else if (key == "partial_rotary_factor")
      CHECK(d.rope.partial_rotary_factor == v.get<double>());
    else if (key == "max_position_embeddings")
      CHECK(d.max_position_embeddings == v.get<std::size_t>());
    else if (key == "attention_bias")
      CHECK(d.attention_bias == v.get<bool>());
    else if (key == "o_proj_bias")
      CHECK(d.o_proj_bias == v.get<bool>());
    else if (key == "mlp_bias")
      CHECK(d.mlp_bias == v.get<bool>());
    else if (key == "hidden_act")
      CHECK(sgt::hidden_act_name(d.hidden_act) == v.get<std::string>());
    else if (key == "sliding_window")  // of layer 0, as the fixture reads it
      CHECK(d.layers.at(0).sliding_window == (v.is_null() ? 0 : v.get<std::size_t>()));
    else if (key == "qk_norm")
      CHECK(d.qk_norm == v.get<bool>());
    else if (key == "fused_projections")
      CHECK(d.fused_projections == v.get<bool>());
    else if (key == "attention_scale")
      CHECK(d.attention_scale == v.get<double>());  // bit-exact
    else
      FAIL("fixture field not checked: " << key);
  }
}

struct TempDir {
  std::string path;
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "sgt_test_config_XXXXXX").string();
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    REQUIRE(mkdtemp(buf.data()) != nullptr);
    path = buf.data();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

}  // namespace

TEST_CASE("the spec's example config parses into the expected structs, silently") {
  WarningCapture warnings;
  const sgt::ModelConfig m = sgt::parse_model_config(spec_example());
  CHECK(warnings.messages.empty());
  CHECK(m.format_version == 1);
  CHECK(m.vocab_size == 128256);
  CHECK(m.hidden_size == 2048);
  CHECK(!m.pad_token_id);
  CHECK(!m.value_min);
  CHECK(!m.value_max);
  for (const sgt::EstimatorConfig* e : {&m.mean_estimator, &m.std_estimator}) {
    const sgt::DecoderConfig& d = e->decoder;
    CHECK(d.model_type == sgt::ModelType::Llama);
    CHECK(d.hidden_size == 2048);
    CHECK(d.intermediate_size == 8192);
    CHECK(d.num_hidden_layers == 1);
    CHECK(d.num_attention_heads == 32);
    CHECK(d.num_key_value_heads == 8);
    CHECK(d.head_dim == 64);
    CHECK(d.rms_norm_eps == 1e-5);
    CHECK(d.rope.theta == 500000.0);
    CHECK(d.rope.type == sgt::RopeType::Llama3);
    CHECK(d.rope.factor == 32.0);
    CHECK(d.rope.low_freq_factor == 1.0);
    CHECK(d.rope.high_freq_factor == 4.0);
    CHECK(d.rope.original_max_position_embeddings == 8192);
    CHECK(d.rope.partial_rotary_factor == 1.0);
    CHECK(sgt::kernels::RopeTable(d.rope, 1).rotary_dim() == 64);
    CHECK(d.rope.head_dim == d.head_dim);
    CHECK(d.max_position_embeddings == 131072);
    CHECK(!d.attention_bias);
    CHECK(!d.o_proj_bias);
    CHECK(!d.mlp_bias);
    CHECK(d.hidden_act == sgt::kernels::GatedActivation::Silu);
    CHECK(d.layers.size() == d.num_hidden_layers);
    for (const sgt::LayerAttention& layer : d.layers) {
      CHECK(layer.sliding_window == 0);
      CHECK(layer.rope == sgt::LayerRope::Global);
    }
    CHECK(!d.qk_norm);
    CHECK(d.attention_scale == 0.125);
    CHECK(e->final_norm);
    CHECK(e->has_head);
    CHECK(e->head_bias);
  }
  CHECK(m.mean_estimator.parameterization.type == sgt::ParameterizationType::Identity);
  const sgt::ParameterizationConfig& p = m.std_estimator.parameterization;
  CHECK(p.type == sgt::ParameterizationType::Cloak);
  CHECK(p.min == 0.0001);
  CHECK(p.max == 2.0);
  CHECK(p.shallow == 1.0);

  const sgt::ModelConfig loaded = sgt::load_model_config(data_path("spec_example.json"));
  CHECK(loaded.std_estimator.parameterization.min == 0.0001);
  CHECK(loaded.mean_estimator.decoder.rope.factor == 32.0);
}

TEST_CASE("absent keys take the transformers defaults of each model_type") {
  const json& defaults = hf()["defaults"];
  REQUIRE(defaults.size() == std::size(sgt::kModelFamilies));
  for (const auto& item : defaults.items()) {
    const std::string model_type = item.key();
    const json& expected = item.value();
    CAPTURE(model_type);
    WarningCapture warnings;
    // No keys at all; hidden_size must still equal the model's, so the model uses the default.
    const auto m =
        sgt::parse_model_config(model_with(model_type, json::object(), expected["hidden_size"]));
    CHECK(warnings.messages.empty());
    CHECK(std::string(sgt::model_type_name(m.mean_estimator.decoder.model_type)) == model_type);
    check_against_hf(m.mean_estimator.decoder, expected);
    check_against_hf(m.std_estimator.decoder, expected);
    // JSON null means "the default" for the keys transformers lets be None.
    json nulls = {
        {"num_key_value_heads", nullptr}, {"rope_scaling", nullptr}, {"rope_parameters", nullptr}};
    const auto n = sgt::parse_model_config(model_with(model_type, nulls, expected["hidden_size"]));
    CHECK(n.mean_estimator.decoder.num_key_value_heads ==
          n.mean_estimator.decoder.num_attention_heads);
  }
}

TEST_CASE("expected_tensors matches the parameters transformers creates, prefixed") {
  const json& tensors = hf()["tensors"];
  REQUIRE(tensors.size() == std::size(sgt::kModelFamilies));
  for (const auto& item : tensors.items()) {
    const std::string model_type = item.key();
    const json& entry = item.value();
    CAPTURE(model_type);
    const json& cfg = entry["config"];
    WarningCapture warnings;
    const auto m =
        sgt::parse_model_config(model_with(model_type, cfg, cfg["hidden_size"], cfg["vocab_size"]));
    CHECK(warnings.messages.empty());
    const auto expected = sgt::expected_tensors(m);

    for (const std::string prefix : {"mean_estimator.", "std_estimator."}) {
      std::map<std::string, std::vector<std::uint64_t>> ours, theirs;
      for (const auto& t : expected)
        if (t.name.rfind(prefix, 0) == 0 || t.name.rfind("embed_tokens.", 0) == 0)
          ours[t.name] = t.shape;
      for (const auto& p : entry["parameters"]) {
        const std::string name = p[0].get<std::string>();
        theirs[name.rfind("embed_tokens.", 0) == 0 ? name : prefix + name] =
            p[1].get<std::vector<std::uint64_t>>();
      }
      CHECK(ours == theirs);
    }
    // Names are unique.
    std::map<std::string, int> count;
    for (const auto& t : expected) CHECK(++count[t.name] == 1);
  }
}

TEST_CASE("expected_tensors adds the head and drops the final norm as configured") {
  json m = spec_example();
  m["std_estimator"]["final_norm"] = false;
  m["std_estimator"]["head"] = {{"bias", false}};
  m["mean_estimator"]["head"] = nullptr;
  std::map<std::string, std::vector<std::uint64_t>> t;
  for (const auto& e : sgt::expected_tensors(sgt::parse_model_config(m))) t[e.name] = e.shape;
  CHECK(t.at("embed_tokens.weight") == std::vector<std::uint64_t>{128256, 2048});
  CHECK(t.at("mean_estimator.norm.weight") == std::vector<std::uint64_t>{2048});
  CHECK(t.count("mean_estimator.head.weight") == 0);
  CHECK(t.count("std_estimator.norm.weight") == 0);
  CHECK(t.at("std_estimator.head.weight") == std::vector<std::uint64_t>{2048, 2048});
  CHECK(t.count("std_estimator.head.bias") == 0);
  m["std_estimator"]["head"] = {{"bias", true}};
  t.clear();
  for (const auto& e : sgt::expected_tensors(sgt::parse_model_config(m))) t[e.name] = e.shape;
  CHECK(t.at("std_estimator.head.bias") == std::vector<std::uint64_t>{2048});
  CHECK(t.size() == 1 + 2 * 9 + 1 + 2);  // embed, 2 x one layer, mean's norm, std's head + bias
}

TEST_CASE("rope parameters in the v4 and v5 spellings standardize as transformers does") {
  const json& cases = hf()["rope"];
  REQUIRE(cases.size() >= 16);
  for (const auto& c : cases) {
    CAPTURE(c["config"].dump());
    WarningCapture warnings;
    const auto m = sgt::parse_model_config(
        model_with(c["model_type"].get<std::string>(), c["config"], c["config"]["hidden_size"]));
    CHECK(warnings.messages.empty());
    const sgt::DecoderConfig& d = m.mean_estimator.decoder;
    const json& e = c["expected"];
    CHECK(std::string(sgt::rope_type_name(d.rope.type)) == e["rope_type"].get<std::string>());
    CHECK(d.rope.theta == e["rope_theta"].get<double>());
    CHECK(d.rope.partial_rotary_factor == e["partial_rotary_factor"].get<double>());
    // The kernel computes the rotary dimension from the parameters the loader produced.
    CHECK(sgt::kernels::RopeTable(d.rope, 1).rotary_dim() == e["rotary_dim"].get<std::size_t>());
    if (e.contains("factor")) CHECK(d.rope.factor == e["factor"].get<double>());
    if (e.contains("low_freq_factor"))
      CHECK(d.rope.low_freq_factor == e["low_freq_factor"].get<double>());
    if (e.contains("high_freq_factor"))
      CHECK(d.rope.high_freq_factor == e["high_freq_factor"].get<double>());
    if (e.contains("original_max_position_embeddings"))
      CHECK(d.rope.original_max_position_embeddings ==
            e["original_max_position_embeddings"].get<std::size_t>());
    if (e.contains("attention_factor"))
      CHECK(d.rope.attention_factor == e["attention_factor"].get<double>());  // bit-exact
    // longrope: both inverse-frequency sets of _compute_longrope_parameters, each within the one
    // ulp that torch's f32 pow may differ by (kernels/rope.hpp).
    for (const bool long_factors : {false, true}) {
      const char* key = long_factors ? "long_inv_freq" : "short_inv_freq";
      if (!e.contains(key)) continue;
      CAPTURE(key);
      const sgt::kernels::RopeTable table(d.rope, 1, long_factors);
      const auto want = e[key].get<std::vector<float>>();
      REQUIRE(want.size() == table.rotary_dim() / 2);
      for (std::size_t i = 0; i < want.size(); ++i) {
        CAPTURE(i);
        CHECK(std::fabs(table.inv_freq()[i] - want[i]) <= want[i] * 1.2e-7f);
      }
    }
  }
}

TEST_CASE("real Hugging Face config.json files paste in silently and mean what transformers says") {
  const json& cases = hf()["pasted"];
  REQUIRE(cases.size() == 14);
  for (const auto& c : cases) {
    CAPTURE(c["model_type"].get<std::string>());
    CAPTURE(c["config"].dump().substr(0, 200));
    WarningCapture warnings;
    const auto m = sgt::parse_model_config(
        model_with(c["model_type"].get<std::string>(), c["config"], c["config"]["hidden_size"]));
    CHECK_MESSAGE(warnings.messages.empty(), warnings.all());
    check_against_hf(m.mean_estimator.decoder, c["expected"]);
  }
}

TEST_CASE("unknown keys are ignored with a warning that names them") {
  json m = spec_example();
  m["writer_version"] = "2.0";
  m["mean_estimator"]["dropout"] = 0.1;
  m["mean_estimator"]["config"]["fancy_new_option"] = true;
  m["mean_estimator"]["head"]["activation"] = "none";
  m["std_estimator"]["parameterization"]["bound"] = 3.0;  // bounded_tanh's key on a cloak
  m["std_estimator"]["config"]["rope_scaling"]["beta_fast"] = 32;
  WarningCapture warnings;
  const auto parsed = sgt::parse_model_config(m);
  CHECK(parsed.std_estimator.parameterization.type == sgt::ParameterizationType::Cloak);
  REQUIRE(warnings.messages.size() == 6);
  for (const char* key :
       {"writer_version", "mean_estimator.dropout", "mean_estimator.config.fancy_new_option",
        "mean_estimator.head.activation", "std_estimator.parameterization.bound",
        "std_estimator.config.rope_scaling.beta_fast"}) {
    CAPTURE(key);
    CHECK(contains(warnings.all(), std::string(key) + ": unknown key"));
  }
}

TEST_CASE("keys transformers does not read for a model_type are ignored with a warning, as there") {
  // Mistral has no attention biases and Qwen3 no MLP biases, whatever the config says.
  json mistral = {{"hidden_size", 64},
                  {"num_attention_heads", 4},
                  {"num_key_value_heads", 2},
                  {"attention_bias", true}};
  json qwen3 = {{"hidden_size", 64},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 2},
                {"head_dim", 16},
                {"mlp_bias", true}};
  WarningCapture warnings;
  const auto a = sgt::parse_model_config(model_with("mistral", mistral, 64));
  CHECK(!a.mean_estimator.decoder.attention_bias);
  CHECK(!a.mean_estimator.decoder.o_proj_bias);
  const auto b = sgt::parse_model_config(model_with("qwen3", qwen3, 64));
  CHECK(!b.mean_estimator.decoder.mlp_bias);
  CHECK(contains(warnings.all(), "mean_estimator.config.attention_bias: unknown key"));
  CHECK(contains(warnings.all(), "std_estimator.config.mlp_bias: unknown key"));

  // The default rope type takes no factor; transformers warns too.
  warnings.messages.clear();
  json rope = {{"hidden_size", 64},
               {"num_attention_heads", 4},
               {"num_key_value_heads", 2},
               {"rope_parameters", {{"rope_type", "default"}, {"factor", 2.0}}}};
  sgt::parse_model_config(model_with("llama", rope, 64));
  CHECK(contains(warnings.all(), "mean_estimator.config.rope_parameters.factor: unknown key"));

  // rope_scaling and rope_parameters both given and different: rope_scaling wins, with a warning.
  warnings.messages.clear();
  json both = {{"hidden_size", 64},
               {"num_attention_heads", 4},
               {"num_key_value_heads", 4},
               {"rope_scaling", {{"rope_type", "linear"}, {"factor", 3.0}}},
               {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 5.0}}}};
  const auto c = sgt::parse_model_config(model_with("llama", both, 64));
  CHECK(c.mean_estimator.decoder.rope.type == sgt::RopeType::Linear);
  CHECK(c.mean_estimator.decoder.rope.factor == 3.0);
  CHECK(c.mean_estimator.decoder.rope.theta == 10000.0);
  CHECK(contains(warnings.all(), "mean_estimator.config.rope_parameters: ignored"));
  // An empty rope_scaling does not hide rope_parameters (it is falsy in transformers).
  json empty = {{"hidden_size", 64},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 4},
                {"rope_scaling", json::object()},
                {"rope_parameters", {{"rope_type", "linear"}, {"factor", 5.0}}}};
  const auto e = sgt::parse_model_config(model_with("llama", empty, 64));
  CHECK(e.mean_estimator.decoder.rope.factor == 5.0);
}

TEST_CASE("accepted variants: ranges, nullable keys, sliding windows, parameterizations") {
  json m = spec_example();
  m["pad_token_id"] = 0;
  m["value_range"] = {nullptr, 5.5};
  CHECK(*sgt::parse_model_config(m).pad_token_id == 0);
  CHECK(!sgt::parse_model_config(m).value_min);
  CHECK(*sgt::parse_model_config(m).value_max == 5.5f);
  m["pad_token_id"] = 128255;
  m["value_range"] = {-2, nullptr};
  CHECK(*sgt::parse_model_config(m).pad_token_id == 128255);
  CHECK(*sgt::parse_model_config(m).value_min == -2.0f);
  CHECK(!sgt::parse_model_config(m).value_max);
  m["value_range"] = {-2.5, 3};
  CHECK(*sgt::parse_model_config(m).value_min == -2.5f);
  CHECK(*sgt::parse_model_config(m).value_max == 3.0f);
  m["value_range"] = {nullptr, nullptr};
  CHECK(!sgt::parse_model_config(m).value_min);

  // embedding_scale: 1 when absent or null; a Gemma transform's sqrt(hidden_size), kept as f32.
  CHECK(sgt::parse_model_config(m).embedding_scale == 1.0f);
  m["embedding_scale"] = nullptr;
  CHECK(sgt::parse_model_config(m).embedding_scale == 1.0f);
  m["embedding_scale"] = 6.9282031059265137;  // sqrt(48) as an f32
  CHECK(sgt::parse_model_config(m).embedding_scale == static_cast<float>(std::sqrt(48.0)));
  m["embedding_scale"] = 65536;
  CHECK(sgt::parse_model_config(m).embedding_scale == 65536.0f);
  m.erase("embedding_scale");

  // head_dim given explicitly need not divide hidden_size.
  json odd = spec_example();
  odd["mean_estimator"]["config"]["num_attention_heads"] = 30;
  odd["mean_estimator"]["config"]["num_key_value_heads"] = 10;
  CHECK(sgt::parse_model_config(odd).mean_estimator.decoder.head_dim == 64);
  // A pasted config's own model_type is fine when it agrees.
  odd["mean_estimator"]["config"]["model_type"] = "llama";
  CHECK_NOTHROW(sgt::parse_model_config(odd));

  // Mistral: null sliding_window = full attention; a value applies to every layer.
  json mistral = {{"hidden_size", 64},
                  {"num_attention_heads", 4},
                  {"num_key_value_heads", 2},
                  {"sliding_window", nullptr}};
  CHECK(sgt::parse_model_config(model_with("mistral", mistral, 64))
            .mean_estimator.decoder.layers[0]
            .sliding_window == 0);
  mistral["sliding_window"] = 100;
  CHECK(sgt::parse_model_config(model_with("mistral", mistral, 64))
            .mean_estimator.decoder.layers[0]
            .sliding_window == 100);
  // Qwen2: no window without use_sliding_window, whatever sliding_window says.
  json qwen2 = {{"hidden_size", 64},
                {"num_attention_heads", 4},
                {"num_key_value_heads", 2},
                {"sliding_window", 16},
                {"use_sliding_window", false}};
  const auto q = sgt::parse_model_config(model_with("qwen2", qwen2, 64)).mean_estimator.decoder;
  CHECK(q.layers[0].sliding_window == 0);
  CHECK(q.attention_bias);
  CHECK(!q.o_proj_bias);

  // Parameterizations: every type on the mean estimator; strictly positive ones on the std.
  json p = spec_example();
  p["mean_estimator"]["parameterization"] = {
      {"type", "bounded_tanh"}, {"bound", 2.5}, {"init_shift", -0.5}};
  p["std_estimator"]["parameterization"] = {{"type", "direct"}, {"scale", {0.001, 4}}};
  auto parsed = sgt::parse_model_config(p);
  CHECK(parsed.mean_estimator.parameterization.type == sgt::ParameterizationType::BoundedTanh);
  CHECK(parsed.mean_estimator.parameterization.bound == 2.5);
  CHECK(parsed.mean_estimator.parameterization.init_shift == -0.5);
  CHECK(parsed.std_estimator.parameterization.type == sgt::ParameterizationType::Direct);
  CHECK(parsed.std_estimator.parameterization.min == 0.001);
  CHECK(parsed.std_estimator.parameterization.max == 4.0);
  p["mean_estimator"]["parameterization"] = {{"type", "bounded_tanh"}, {"bound", 1}};
  CHECK(sgt::parse_model_config(p).mean_estimator.parameterization.init_shift == 0.0);
  p["mean_estimator"]["parameterization"] = {{"type", "direct"}, {"scale", {-1, 1}}};
  CHECK(sgt::parse_model_config(p).mean_estimator.parameterization.min == -1.0);
  p["std_estimator"]["parameterization"] = {
      {"type", "cloak_sigmoid"}, {"scale", {0, 2}}, {"shallow", 0.5}};
  parsed = sgt::parse_model_config(p);
  CHECK(parsed.std_estimator.parameterization.type == sgt::ParameterizationType::CloakSigmoid);
  CHECK(parsed.std_estimator.parameterization.min == 0.0);  // the spec allows 0 for cloak
  CHECK(parsed.std_estimator.parameterization.shallow == 0.5);
  p["mean_estimator"]["parameterization"] = {{"type", "cloak"}, {"scale", {0, 1}}};
  CHECK(sgt::parse_model_config(p).mean_estimator.parameterization.shallow == 1.0);
  // No head: absent or null.
  p["mean_estimator"].erase("head");
  p["std_estimator"]["head"] = nullptr;
  parsed = sgt::parse_model_config(p);
  CHECK(!parsed.mean_estimator.has_head);
  CHECK(!parsed.std_estimator.has_head);
}

namespace {
struct Edit {
  std::string pointer;  // JSON pointer into the spec example
  json value;           // the new value; a discarded json erases the key
};
struct ErrorCase {
  std::vector<Edit> edits;
  std::string key;      // expected e.key()
  std::string message;  // expected part of e.message()
};
const json kErase = json::value_t::discarded;

json apply(json j, const std::vector<Edit>& edits) {
  for (const Edit& e : edits) {
    const json::json_pointer ptr(e.pointer);
    if (e.value.is_discarded()) {
      j[ptr.parent_pointer()].erase(ptr.back());
    } else {
      j[ptr] = e.value;
    }
  }
  return j;
}
}  // namespace

// The per-layer switches as transformers 5 derives them (the __post_init__ of Qwen2Config,
// SmolLM3Config, Gemma2Config and Gemma3TextConfig, and Gemma3RotaryEmbedding's two tables).
TEST_CASE("per-layer windows and RoPE, soft caps and the attention scale follow transformers") {
  auto decoder = [](const std::string& type, const json& config) {
    return sgt::parse_model_config(model_with(type, config, config.at("hidden_size")))
        .mean_estimator.decoder;
  };
  auto windows = [](const sgt::DecoderConfig& d) {
    std::vector<std::size_t> w;
    for (const auto& l : d.layers) w.push_back(l.sliding_window);
    return w;
  };
  auto ropes = [](const sgt::DecoderConfig& d) {
    std::vector<sgt::LayerRope> r;
    for (const auto& l : d.layers) r.push_back(l.rope);
    return r;
  };
  using W = std::vector<std::size_t>;
  const auto G = sgt::LayerRope::Global, L = sgt::LayerRope::Local, N = sgt::LayerRope::None;
  const json base = {{"hidden_size", 64},
                     {"num_attention_heads", 4},
                     {"num_key_value_heads", 2},
                     {"num_hidden_layers", 4}};

  // Qwen2 / Qwen3: the layers from max_window_layers on, only with use_sliding_window.
  json qwen = base;
  qwen["sliding_window"] = 5;
  qwen["max_window_layers"] = 2;
  CHECK(windows(decoder("qwen2", qwen)) == W{0, 0, 0, 0});
  qwen["use_sliding_window"] = true;
  CHECK(windows(decoder("qwen2", qwen)) == W{0, 0, 5, 5});
  CHECK(windows(decoder("qwen3", qwen)) == W{0, 0, 5, 5});
  qwen["layer_types"] = {"sliding_attention", "full_attention", "full_attention",
                         "sliding_attention"};
  CHECK(windows(decoder("qwen2", qwen)) == W{5, 0, 0, 5});
  qwen["use_sliding_window"] = false;  // sliding_window is None then: no layer slides
  CHECK(windows(decoder("qwen2", qwen)) == W{0, 0, 0, 0});

  // SmolLM3: no_rope_layers[i] == 0 has no RoPE; default every 4th layer.
  json smol = base;
  CHECK(ropes(decoder("smollm3", smol)) == std::vector<sgt::LayerRope>{G, G, G, N});
  smol["no_rope_layer_interval"] = 2;
  CHECK(ropes(decoder("smollm3", smol)) == std::vector<sgt::LayerRope>{G, N, G, N});
  smol["no_rope_layers"] = {0, 1, 1, 0};
  CHECK(ropes(decoder("smollm3", smol)) == std::vector<sgt::LayerRope>{N, G, G, N});
  smol["use_sliding_window"] = true;
  smol["sliding_window"] = 3;
  CHECK(windows(decoder("smollm3", smol)) == W{3, 0, 0, 3});  // the NoPE layers slide
  CHECK(decoder("smollm3", smol).rope.theta == 2000000.0);

  // Gemma: GeGLU, (1 + w), head_dim 256 by default; the legacy "gelu" is the tanh one.
  json gemma = base;
  const auto g1 = decoder("gemma", gemma);
  CHECK(g1.hidden_act == sgt::kernels::GatedActivation::GeluTanh);
  CHECK(g1.norm_style == sgt::kernels::RmsNormStyle::OnePlusWeight);
  CHECK(g1.head_dim == 256);
  CHECK(g1.attention_scale == std::pow(256.0, -0.5));
  gemma["hidden_act"] = "gelu";
  CHECK(decoder("gemma", gemma).hidden_act == sgt::kernels::GatedActivation::GeluTanh);

  // Gemma 2: every other layer slides (the first does), soft caps 50 and 30, scale from
  // query_pre_attn_scalar, sandwich norms.
  json gemma2 = base;
  gemma2["head_dim"] = 16;
  const auto g2 = decoder("gemma2", gemma2);
  CHECK(windows(g2) == W{4096, 0, 4096, 0});
  CHECK(ropes(g2) == std::vector<sgt::LayerRope>{G, G, G, G});
  CHECK(g2.attn_logit_softcapping == 50.0f);
  CHECK(g2.final_logit_softcapping == 30.0f);
  CHECK(g2.attention_scale == std::pow(256.0, -0.5));
  CHECK(g2.sandwich_norms);
  gemma2["query_pre_attn_scalar"] = 24;
  gemma2["attn_logit_softcapping"] = nullptr;
  gemma2["sliding_window"] = 7;
  const auto g2b = decoder("gemma2", gemma2);
  CHECK(g2b.attention_scale == std::pow(24.0, -0.5));
  CHECK(g2b.attn_logit_softcapping == 0.0f);
  CHECK(windows(g2b) == W{7, 0, 7, 0});

  // Gemma 3: 5 local layers to 1 global by default (sliding_window_pattern), local layers on
  // rope_local_base_freq (10000), global ones on rope_theta (1e6) with their scaling.
  json gemma3 = base;
  gemma3["head_dim"] = 16;
  gemma3["num_hidden_layers"] = 7;
  const auto g3 = decoder("gemma3_text", gemma3);
  CHECK(windows(g3) == W{4096, 4096, 4096, 4096, 4096, 0, 4096});
  CHECK(ropes(g3) == std::vector<sgt::LayerRope>{L, L, L, L, L, G, L});
  CHECK(g3.rope.theta == 1000000.0);
  CHECK(g3.local_rope.theta == 10000.0);
  CHECK(g3.qk_norm);
  CHECK(g3.attn_logit_softcapping == 0.0f);
  CHECK(g3.final_logit_softcapping == 0.0f);
  gemma3["sliding_window_pattern"] = 2;
  gemma3["rope_local_base_freq"] = 500.0;
  gemma3["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 8.0}};
  const auto g3b = decoder("gemma3_text", gemma3);
  CHECK(ropes(g3b) == std::vector<sgt::LayerRope>{L, G, L, G, L, G, L});
  CHECK(g3b.local_rope.theta == 500.0);
  CHECK(g3b.local_rope.type == sgt::RopeType::Default);
  CHECK(g3b.rope.type == sgt::RopeType::Linear);
  CHECK(g3b.rope.factor == 8.0);
  // transformers 5's spelling: one dict per layer type.
  gemma3.erase("rope_scaling");
  gemma3.erase("rope_local_base_freq");
  gemma3["rope_parameters"] = {
      {"full_attention", {{"rope_type", "linear"}, {"factor", 4.0}, {"rope_theta", 2e5}}},
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 1234.0}}}};
  const auto g3c = decoder("gemma3_text", gemma3);
  CHECK(g3c.rope.theta == 2e5);
  CHECK(g3c.rope.factor == 4.0);
  CHECK(g3c.local_rope.theta == 1234.0);
  gemma3["use_bidirectional_attention"] = true;
  CHECK_THROWS_AS(decoder("gemma3_text", gemma3), sgt::Error);
  // Per-layer-type RoPE is refused where the family has one RoPE.
  json llama = base;
  llama["rope_parameters"] = gemma3["rope_parameters"];
  CHECK_THROWS_AS(decoder("llama", llama), sgt::Error);
}

TEST_CASE("every invalid key is a load error that names it") {
  const std::string M = "/mean_estimator", S = "/std_estimator";
  const std::string MC = M + "/config", SC = S + "/config";
  const json qwen_base = {{"hidden_size", 2048}, {"num_attention_heads", 32}, {"head_dim", 64}};
  const std::vector<ErrorCase> cases = {
      // Top level.
      {{{"/format", "sgt5"}}, "format", "sgt4t"},
      {{{"/format", kErase}}, "format", "missing"},
      {{{"/format", 1}}, "format", "string"},
      {{{"/format_version", 2}}, "format_version", "unsupported format_version 2"},
      {{{"/format_version", 0}}, "format_version", "positive"},
      {{{"/format_version", "1"}}, "format_version", "integer"},
      {{{"/format_version", 1.5}}, "format_version", "integer"},
      {{{"/format_version", kErase}}, "format_version", "missing"},
      {{{"/vocab_size", 0}}, "vocab_size", "positive"},
      {{{"/vocab_size", -5}}, "vocab_size", "positive"},
      {{{"/vocab_size", 3000000000ull}}, "vocab_size", "2147483647"},
      {{{"/hidden_size", kErase}}, "hidden_size", "missing"},
      {{{"/hidden_size", "2048"}}, "hidden_size", "integer"},
      {{{"/pad_token_id", -1}}, "pad_token_id", "negative"},
      {{{"/pad_token_id", 128256}}, "pad_token_id", "128255"},
      {{{"/pad_token_id", true}}, "pad_token_id", "integer"},
      {{{"/value_range", {1.0, 0.0}}}, "value_range", "less than"},
      {{{"/value_range", {1.0, 1.0}}}, "value_range", "less than"},
      {{{"/value_range", {1.0, 1.00000001}}}, "value_range", "as f32"},
      {{{"/value_range", {1.0}}}, "value_range", "[min, max]"},
      {{{"/value_range", "wide"}}, "value_range", "[min, max]"},
      {{{"/value_range", {nullptr, "x"}}}, "value_range[1]", "number"},
      {{{"/value_range", {1e39, nullptr}}}, "value_range[0]", "f32"},
      {{{"/embedding_scale", 0}}, "embedding_scale", "[2^-16, 65536]"},
      {{{"/embedding_scale", -8.0}}, "embedding_scale", "[2^-16, 65536]"},
      {{{"/embedding_scale", 1e-10}}, "embedding_scale", "[2^-16, 65536]"},
      {{{"/embedding_scale", 1e6}}, "embedding_scale", "[2^-16, 65536]"},
      {{{"/embedding_scale", "8"}}, "embedding_scale", "number"},
      {{{"/embedding_scale", {8.0}}}, "embedding_scale", "number"},
      {{{"/percent_to_mask", 0.15}}, "percent_to_mask", "must be null"},
      {{{"/percent_to_mask", 0}}, "percent_to_mask", "must be null"},
      {{{"/std_estimator", kErase}}, "std_estimator", "missing"},
      {{{"/mean_estimator", json::array()}}, "mean_estimator", "JSON object"},
      // Estimator.
      {{{M + "/model_type", "gpt2"}}, "mean_estimator.model_type", "unknown model_type 'gpt2'"},
      // Families we know but cannot run: refused by the feature they need.
      {{{M + "/model_type", "phi"}},
       "mean_estimator.model_type",
       "model_type 'phi': the parallel attention/MLP block of Phi-1/2"},
      {{{M + "/model_type", "mixtral"}},
       "mean_estimator.model_type",
       "model_type 'mixtral': mixture-of-experts layers are not supported"},
      {{{M + "/model_type", "qwen3_moe"}},
       "mean_estimator.model_type",
       "model_type 'qwen3_moe': mixture-of-experts layers are not supported"},
      {{{M + "/model_type", 3}}, "mean_estimator.model_type", "string"},
      {{{M + "/model_type", kErase}}, "mean_estimator.model_type", "missing"},
      {{{M + "/config", kErase}}, "mean_estimator.config", "missing"},
      {{{M + "/config", "llama"}}, "mean_estimator.config", "JSON object"},
      {{{M + "/final_norm", 1}}, "mean_estimator.final_norm", "true or false"},
      {{{M + "/head", {{"bias", 1}}}}, "mean_estimator.head.bias", "true or false"},
      {{{M + "/head", json::object()}}, "mean_estimator.head.bias", "missing"},
      {{{M + "/head", true}}, "mean_estimator.head", "JSON object"},
      {{{M + "/parameterization", kErase}}, "mean_estimator.parameterization", "missing"},
      {{{M + "/parameterization", "cloak"}}, "mean_estimator.parameterization", "JSON object"},
      // Hugging Face config.
      {{{MC + "/hidden_size", 1024}}, "mean_estimator.config.hidden_size", "2048"},
      {{{MC + "/hidden_size", kErase}},
       "mean_estimator.config.hidden_size",
       "4096"},  // the default
      {{{SC + "/num_attention_heads", 0}}, "std_estimator.config.num_attention_heads", "positive"},
      {{{MC + "/num_key_value_heads", 3}}, "mean_estimator.config.num_key_value_heads", "divide"},
      {{{MC + "/num_key_value_heads", 64}}, "mean_estimator.config.num_key_value_heads", "divide"},
      {{{MC + "/num_key_value_heads", 0}}, "mean_estimator.config.num_key_value_heads", "positive"},
      {{{MC + "/head_dim", kErase},
        {MC + "/num_attention_heads", 30},
        {MC + "/num_key_value_heads", 10}},
       "mean_estimator.config.num_attention_heads",
       "multiple"},
      {{{MC + "/head_dim", 0}}, "mean_estimator.config.head_dim", "positive"},
      {{{MC + "/head_dim", 63}}, "mean_estimator.config.head_dim", "even"},
      {{{MC + "/head_dim", 64.0}}, "mean_estimator.config.head_dim", "integer"},
      {{{MC + "/intermediate_size", 2147483648ull}},
       "mean_estimator.config.intermediate_size",
       "2147483647"},
      {{{MC + "/num_hidden_layers", 5000}}, "mean_estimator.config.num_hidden_layers", "4096"},
      {{{MC + "/num_hidden_layers", 1.0}}, "mean_estimator.config.num_hidden_layers", "integer"},
      {{{MC + "/num_hidden_layers", nullptr}},
       "mean_estimator.config.num_hidden_layers",
       "integer"},
      {{{MC + "/max_position_embeddings", 0}},
       "mean_estimator.config.max_position_embeddings",
       "positive"},
      {{{MC + "/rms_norm_eps", 0}}, "mean_estimator.config.rms_norm_eps", "> 0"},
      {{{MC + "/rms_norm_eps", -1e-5}}, "mean_estimator.config.rms_norm_eps", "> 0"},
      {{{MC + "/rms_norm_eps", "1e-5"}}, "mean_estimator.config.rms_norm_eps", "number"},
      {{{MC + "/rope_theta", -1}}, "mean_estimator.config.rope_theta", "> 0"},
      {{{MC + "/rope_theta", 0}}, "mean_estimator.config.rope_theta", "> 0"},
      {{{MC + "/rope_scaling/rope_type", "yarn"}},
       "mean_estimator.config.rope_scaling.rope_type",
       "rope type 'yarn' is not supported"},
      {{{MC + "/rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}}}},
       "mean_estimator.config.rope_scaling.type",
       "'dynamic' is not supported"},
      {{{MC + "/rope_scaling", kErase},
        {MC + "/rope_parameters",
         {{"rope_type", "longrope"}, {"short_factor", {1}}, {"long_factor", {1}}}}},
       "mean_estimator.config.rope_parameters.short_factor",
       "has 1 values, but the rotary dimension 64 needs 32"},
      {{{MC + "/rope_scaling", kErase},
        {MC + "/rope_parameters", {{"rope_type", "longrope"}, {"short_factor", {1}}}}},
       "mean_estimator.config.rope_parameters.long_factor",
       "required key is missing"},
      {{{MC + "/rope_scaling", kErase},
        {MC + "/rope_parameters",
         {{"rope_type", "longrope"}, {"short_factor", {1, 0}}, {"long_factor", {1}}}}},
       "mean_estimator.config.rope_parameters.short_factor",
       "values must be > 0"},
      {{{MC + "/rope_scaling", kErase},
        {MC + "/rope_parameters",
         {{"rope_type", "longrope"}, {"short_factor", "1"}, {"long_factor", {1}}}}},
       "mean_estimator.config.rope_parameters.short_factor",
       "must be a list of numbers"},
      {{{MC + "/rope_scaling", kErase},
        {MC + "/rope_parameters",
         {{"rope_type", "longrope"}, {"short_factor", {1}}, {"long_factor", {1}},
          {"attention_factor", -1}}}},
       "mean_estimator.config.rope_parameters.attention_factor",
       "> 0"},
      {{{MC + "/rope_scaling/rope_type", 3}},
       "mean_estimator.config.rope_scaling.rope_type",
       "string"},
      {{{MC + "/rope_scaling/factor", kErase}},
       "mean_estimator.config.rope_scaling.factor",
       "missing"},
      {{{MC + "/rope_scaling/low_freq_factor", kErase}},
       "mean_estimator.config.rope_scaling.low_freq_factor",
       "missing"},
      {{{MC + "/rope_scaling/high_freq_factor", kErase}},
       "mean_estimator.config.rope_scaling.high_freq_factor",
       "missing"},
      {{{MC + "/rope_scaling/high_freq_factor", 1.0}},
       "mean_estimator.config.rope_scaling.high_freq_factor",
       "greater"},
      {{{MC + "/rope_scaling/low_freq_factor", 0}},
       "mean_estimator.config.rope_scaling.low_freq_factor",
       "> 0"},
      {{{MC + "/rope_scaling/original_max_position_embeddings", 0}},
       "mean_estimator.config.rope_scaling.original_max_position_embeddings",
       "positive"},
      {{{MC + "/rope_scaling", "llama3"}}, "mean_estimator.config.rope_scaling", "JSON object"},
      {{{MC + "/rope_parameters", 5}}, "mean_estimator.config.rope_parameters", "JSON object"},
      {{{MC + "/rope_scaling", {{"rope_type", "linear"}}}},
       "mean_estimator.config.rope_scaling.factor",
       "missing"},
      {{{MC + "/rope_scaling", {{"rope_type", "linear"}, {"factor", 0}}}},
       "mean_estimator.config.rope_scaling.factor",
       "> 0"},
      {{{MC + "/rope_scaling", kErase},
        {MC + "/rope_parameters", {{"full_attention", {{"rope_type", "default"}}}}}},
       "mean_estimator.config.rope_parameters",
       "per-layer"},
      {{{MC + "/partial_rotary_factor", 0}},
       "mean_estimator.config.partial_rotary_factor",
       "(0, 1]"},
      {{{MC + "/partial_rotary_factor", 1.5}},
       "mean_estimator.config.partial_rotary_factor",
       "(0, 1]"},
      {{{MC + "/partial_rotary_factor", 0.3}},
       "mean_estimator.config.partial_rotary_factor",
       "even"},
      {{{MC + "/rope_scaling/partial_rotary_factor", 2}},
       "mean_estimator.config.rope_scaling.partial_rotary_factor",
       "(0, 1]"},
      {{{MC + "/hidden_act", "gelu"}},
       "mean_estimator.config.hidden_act",
       "'gelu' is not supported"},
      {{{MC + "/hidden_act", nullptr}}, "mean_estimator.config.hidden_act", "string"},
      {{{MC + "/attention_bias", "false"}},
       "mean_estimator.config.attention_bias",
       "true or false"},
      {{{MC + "/mlp_bias", 0}}, "mean_estimator.config.mlp_bias", "true or false"},
      {{{MC + "/model_type", "mistral"}}, "mean_estimator.config.model_type", "contradicts"},
      {{{M + "/model_type", "qwen2"}, {MC, qwen_base}, {MC + "/layer_types", {"full_attention"}}},
       "mean_estimator.config.layer_types",
       "must be a list of"},
      {{{S + "/model_type", "qwen3"}, {SC, qwen_base}, {SC + "/max_window_layers", -1}},
       "std_estimator.config.max_window_layers",
       "negative"},
      {{{M + "/model_type", "qwen2"}, {MC, qwen_base}, {MC + "/sliding_window", -1}},
       "mean_estimator.config.sliding_window",
       "positive"},
      {{{M + "/model_type", "mistral"}, {MC, qwen_base}, {MC + "/sliding_window", 0}},
       "mean_estimator.config.sliding_window",
       "positive"},
      {{{M + "/model_type", "mistral"}, {MC, qwen_base}, {MC + "/sliding_window", "4096"}},
       "mean_estimator.config.sliding_window",
       "integer"},
      // Parameterizations.
      {{{M + "/parameterization/type", "softplus"}},
       "mean_estimator.parameterization.type",
       "unknown parameterization type 'softplus'"},
      {{{M + "/parameterization/type", kErase}}, "mean_estimator.parameterization.type", "missing"},
      {{{S + "/parameterization", {{"type", "identity"}}}},
       "std_estimator.parameterization.type",
       "strictly positive"},
      {{{S + "/parameterization", {{"type", "bounded_tanh"}, {"bound", 1}}}},
       "std_estimator.parameterization.type",
       "strictly positive"},
      {{{S + "/parameterization", {{"type", "direct"}, {"scale", {0, 1}}}}},
       "std_estimator.parameterization.scale",
       "min must be > 0"},
      {{{S + "/parameterization", {{"type", "direct"}, {"scale", {-1, 1}}}}},
       "std_estimator.parameterization.scale",
       "min must be > 0"},
      {{{S + "/parameterization/scale", {-0.1, 1}}},
       "std_estimator.parameterization.scale",
       ">= 0"},
      {{{S + "/parameterization/scale", {1, 1}}},
       "std_estimator.parameterization.scale",
       "less than"},
      {{{S + "/parameterization/scale", {2, 1}}},
       "std_estimator.parameterization.scale",
       "less than"},
      {{{S + "/parameterization/scale", {1}}},
       "std_estimator.parameterization.scale",
       "[min, max]"},
      {{{S + "/parameterization/scale", "0.1,2"}},
       "std_estimator.parameterization.scale",
       "[min, max]"},
      {{{S + "/parameterization/scale", {0.1, "2"}}},
       "std_estimator.parameterization.scale",
       "number"},
      {{{S + "/parameterization/scale", kErase}},
       "std_estimator.parameterization.scale",
       "missing"},
      {{{S + "/parameterization/shallow", 0}}, "std_estimator.parameterization.shallow", "> 0"},
      {{{S + "/parameterization/type", "cloak_sigmoid"}, {S + "/parameterization/shallow", -1}},
       "std_estimator.parameterization.shallow",
       "> 0"},
      {{{M + "/parameterization", {{"type", "cloak"}, {"scale", {-1, 1}}}}},
       "mean_estimator.parameterization.scale",
       ">= 0"},
      {{{M + "/parameterization", {{"type", "bounded_tanh"}}}},
       "mean_estimator.parameterization.bound",
       "missing"},
      {{{M + "/parameterization", {{"type", "bounded_tanh"}, {"bound", -1}}}},
       "mean_estimator.parameterization.bound",
       "> 0"},
      {{{M + "/parameterization", {{"type", "bounded_tanh"}, {"bound", 1}, {"init_shift", "0"}}}},
       "mean_estimator.parameterization.init_shift",
       "number"},
      {{{M + "/parameterization", {{"type", "direct"}, {"scale", {1, 1}}}}},
       "mean_estimator.parameterization.scale",
       "less than"},
  };
  REQUIRE_NOTHROW(sgt::parse_model_config(spec_example()));
  WarningCapture quiet;  // some edits also leave keys unknown to the new model_type
  for (const ErrorCase& c : cases) {
    const json j = apply(spec_example(), c.edits);
    CAPTURE(c.key);
    CAPTURE(c.message);
    const sgt::Error e = parse_error(j);
    CHECK(e.key() == c.key);
    CHECK_MESSAGE(contains(e.message(), c.message), e.what());
    CHECK(contains(e.what(), "key '" + c.key + "'"));
  }
  // The root itself.
  const sgt::Error root = parse_error(json::array());
  CHECK(contains(root.message(), "JSON object"));
}

TEST_CASE("load_model_config: file errors carry the path; duplicate keys are refused") {
  TempDir dir;
  const std::string missing = dir.file("nope.json");
  try {
    sgt::load_model_config(missing);
    FAIL("no error");
  } catch (const sgt::Error& e) {
    CHECK(e.file() == missing);
    CHECK(contains(e.message(), "cannot open"));
  }

  const std::string bad = dir.file("bad.json");
  write_text(bad, "{\"format\": \"sgt4t\", ");
  try {
    sgt::load_model_config(bad);
    FAIL("no error");
  } catch (const sgt::Error& e) {
    CHECK(e.file() == bad);
    CHECK(contains(e.message(), "not valid JSON"));
  }

  // The spec example with one key written twice, deep inside.
  std::string text = spec_example().dump(1);
  const std::string needle = "\"intermediate_size\": 8192,";
  const auto at = text.find(needle);
  REQUIRE(at != std::string::npos);
  text.insert(at, "\"intermediate_size\": 4096,\n");
  const std::string dup = dir.file("dup.json");
  write_text(dup, text);
  try {
    sgt::load_model_config(dup);
    FAIL("no error");
  } catch (const sgt::Error& e) {
    CHECK(e.file() == dup);
    CHECK(e.key() == "mean_estimator.config.intermediate_size");
    CHECK(contains(e.message(), "twice"));
  }
  // The same key in sibling objects is no duplicate.
  const std::string ok = dir.file("ok.json");
  write_text(ok, spec_example().dump(1));
  CHECK_NOTHROW(sgt::load_model_config(ok));

  // Nesting is bounded; a long flat array of objects (quadratic for nlohmann's callback parser)
  // loads in linear time and its key is reported as unknown.
  std::string deep = spec_example().dump();
  deep.insert(1, "\"deep\": " + std::string(40, '[') + std::string(40, ']') + ", ");
  const std::string deep_file = dir.file("deep.json");
  write_text(deep_file, deep);
  try {
    sgt::load_model_config(deep_file);
    FAIL("no error");
  } catch (const sgt::Error& e) {
    CHECK(contains(e.message(), "deeper"));
  }
  std::string wide = spec_example().dump();
  std::string objects = "[{}";
  for (int i = 0; i < 500000; ++i) objects += ",{}";
  wide.insert(1, "\"wide\": " + objects + "], ");
  const std::string wide_file = dir.file("wide.json");
  write_text(wide_file, wide);
  {
    WarningCapture warnings;
    CHECK_NOTHROW(sgt::load_model_config(wide_file));
    CHECK(contains(warnings.all(), "wide: unknown key"));
  }

  // Validation errors from a file name the file and the key.
  json j = spec_example();
  j["format_version"] = 7;
  const std::string newer = dir.file("newer.json");
  write_text(newer, j.dump());
  try {
    sgt::load_model_config(newer);
    FAIL("no error");
  } catch (const sgt::Error& e) {
    CHECK(e.file() == newer);
    CHECK(e.key() == "format_version");
    CHECK(contains(e.what(), "unsupported format_version"));
  }
}

namespace {

// A small model with every optional tensor kind: llama mean estimator with attention and MLP biases
// and a biased head; qwen3 std estimator (q/k norms), no final norm, head without bias.
json small_model() {
  json m = {{"format", "sgt4t"}, {"format_version", 1}, {"vocab_size", 10}, {"hidden_size", 8}};
  json llama = {{"hidden_size", 8},         {"intermediate_size", 12},  {"num_hidden_layers", 2},
                {"num_attention_heads", 2}, {"num_key_value_heads", 1}, {"head_dim", 6},
                {"attention_bias", true},   {"mlp_bias", true}};
  json qwen3 = {{"hidden_size", 8},         {"intermediate_size", 12},  {"num_hidden_layers", 1},
                {"num_attention_heads", 2}, {"num_key_value_heads", 2}, {"head_dim", 4}};
  m["mean_estimator"] = {{"model_type", "llama"},
                         {"config", llama},
                         {"final_norm", true},
                         {"head", {{"bias", true}}},
                         {"parameterization", {{"type", "identity"}}}};
  m["std_estimator"] = {{"model_type", "qwen3"},
                        {"config", qwen3},
                        {"final_norm", false},
                        {"head", {{"bias", false}}},
                        {"parameterization", {{"type", "cloak"}, {"scale", {0.1, 1}}}}};
  return m;
}

// Writes the expected tensors (zeros, dtypes mixed), minus `skip`, plus `extra`, with `reshape`
// overriding one tensor's shape.
std::string write_model(const TempDir& dir, const sgt::ModelConfig& config,
                        const std::string& skip = "",
                        const std::vector<sgt::ExpectedTensor>& extra = {},
                        const sgt::ExpectedTensor* reshape = nullptr) {
  sgt::SafetensorsWriter w;
  const sgt::DType dtypes[] = {sgt::DType::F32, sgt::DType::BF16, sgt::DType::F16};
  std::size_t i = 0;
  auto add = [&](const sgt::ExpectedTensor& t) {
    std::uint64_t n = 1;
    for (auto d : t.shape) n *= d;
    std::vector<float> zeros(n);
    w.add_from_f32(t.name, dtypes[i++ % 3], t.shape, zeros.data());
  };
  for (auto t : sgt::expected_tensors(config)) {
    if (t.name == skip) continue;
    if (reshape && t.name == reshape->name) t.shape = reshape->shape;
    add(t);
  }
  for (const auto& t : extra) add(t);
  static int serial = 0;
  const std::string path = dir.file("model-" + std::to_string(serial++) + ".safetensors");
  w.write(path);
  return path;
}

}  // namespace

TEST_CASE("check_model_tensors accepts exactly the expected tensors") {
  TempDir dir;
  const sgt::ModelConfig config = sgt::parse_model_config(small_model());
  const auto expected = sgt::expected_tensors(config);
  std::map<std::string, std::vector<std::uint64_t>> t;
  for (const auto& e : expected) t[e.name] = e.shape;
  // Spot checks of the names and shapes transformers does not give us (head, prefixes, no norm).
  CHECK(t.at("mean_estimator.layers.1.self_attn.q_proj.weight") ==
        std::vector<std::uint64_t>{12, 8});
  CHECK(t.at("mean_estimator.layers.1.self_attn.k_proj.bias") == std::vector<std::uint64_t>{6});
  CHECK(t.at("mean_estimator.layers.0.self_attn.o_proj.weight") ==
        std::vector<std::uint64_t>{8, 12});
  CHECK(t.at("mean_estimator.layers.0.self_attn.o_proj.bias") == std::vector<std::uint64_t>{8});
  CHECK(t.at("mean_estimator.layers.0.mlp.down_proj.bias") == std::vector<std::uint64_t>{8});
  CHECK(t.at("mean_estimator.head.bias") == std::vector<std::uint64_t>{8});
  CHECK(t.at("std_estimator.layers.0.self_attn.q_norm.weight") == std::vector<std::uint64_t>{4});
  CHECK(t.count("std_estimator.norm.weight") == 0);
  CHECK(t.count("std_estimator.head.bias") == 0);
  CHECK(t.count("std_estimator.layers.1.input_layernorm.weight") == 0);

  {
    WarningCapture warnings;
    const sgt::SafetensorsFile file(write_model(dir, config));
    CHECK_NOTHROW(sgt::check_model_tensors(config, file));
    CHECK(warnings.messages.empty());
  }
  {
    // Tensors outside the format's prefixes are ignored, with one warning.
    WarningCapture warnings;
    const sgt::SafetensorsFile file(
        write_model(dir, config, "", {{"lm_head.weight", {10, 8}}, {"extra", {1}}}));
    CHECK_NOTHROW(sgt::check_model_tensors(config, file));
    REQUIRE(warnings.messages.size() == 1);
    CHECK(contains(warnings.messages[0], "lm_head.weight"));
    CHECK(contains(warnings.messages[0], "extra"));
  }
}

TEST_CASE("check_model_tensors: missing, misshapen and unexpected tensors are errors naming them") {
  TempDir dir;
  const sgt::ModelConfig config = sgt::parse_model_config(small_model());
  auto error_of = [&](const std::string& path) {
    const sgt::SafetensorsFile file(path);
    try {
      sgt::check_model_tensors(config, file);
    } catch (const sgt::Error& e) {
      return e;
    }
    FAIL("check_model_tensors accepted " << path);
    return sgt::Error("unreachable");
  };
  // Every expected tensor, missing in turn (a handful, to keep the test fast, covering each kind).
  for (const std::string name :
       {"embed_tokens.weight", "mean_estimator.layers.1.self_attn.v_proj.bias",
        "mean_estimator.layers.0.mlp.up_proj.bias", "mean_estimator.head.bias",
        "mean_estimator.norm.weight", "std_estimator.layers.0.self_attn.k_norm.weight",
        "std_estimator.head.weight", "std_estimator.layers.0.post_attention_layernorm.weight"}) {
    CAPTURE(name);
    const sgt::Error e = error_of(write_model(dir, config, name));
    CHECK(e.tensor() == name);
    CHECK(contains(e.message(), "missing"));
  }
  {
    const sgt::ExpectedTensor wrong{"mean_estimator.layers.0.self_attn.k_proj.weight", {8, 6}};
    const sgt::Error e = error_of(write_model(dir, config, "", {}, &wrong));
    CHECK(e.tensor() == wrong.name);
    CHECK(contains(e.message(), "[8, 6]"));  // what the file has
    CHECK(contains(e.message(), "[6, 8]"));  // what the config expects
  }
  {
    const sgt::ExpectedTensor wrong{"std_estimator.layers.0.self_attn.q_norm.weight", {4, 1}};
    const sgt::Error e = error_of(write_model(dir, config, "", {}, &wrong));
    CHECK(e.tensor() == wrong.name);
    CHECK(contains(e.message(), "[4, 1]"));
    CHECK(contains(e.message(), "[4]"));
  }
  for (const std::string name :
       {"mean_estimator.layers.2.input_layernorm.weight", "std_estimator.head.bias",
        "std_estimator.norm.weight", "embed_tokens.bias", "mean_estimator.lm_head.weight"}) {
    CAPTURE(name);
    const sgt::Error e = error_of(write_model(dir, config, "", {{name, {8}}}));
    CHECK(e.tensor() == name);
    CHECK(contains(e.message(), "unexpected"));
  }
}

TEST_CASE("one description per family: every ModelType has exactly one row, names round-trip") {
  // The families transformers' configs were dumped for (tools/fixtures/config_fixtures.py) are
  // exactly the rows of the table.
  std::set<std::string> names, fixture_names;
  for (const auto& [model_type, unused] : hf()["defaults"].items())
    fixture_names.insert(model_type);
  std::set<sgt::ModelType> types;
  for (const sgt::ModelFamily& f : sgt::kModelFamilies) {
    CAPTURE(std::string(f.name));
    CHECK(names.insert(f.name).second);
    CHECK(types.insert(f.type).second);
    CHECK(&sgt::model_family(f.type) == &f);
    REQUIRE(sgt::find_model_family(f.name) != nullptr);
    CHECK(sgt::find_model_family(f.name)->type == f.type);
    CHECK(std::string(sgt::model_type_name(f.type)) == f.name);
    // The parser reads the family by its row: model_type in config.json selects it.
    const json config = {{"hidden_size", 64},
                         {"num_attention_heads", 4},
                         {"num_key_value_heads", 4},
                         {"num_hidden_layers", 1},
                         {"head_dim", 16}};
    WarningCapture warnings;
    const sgt::ModelConfig c = sgt::parse_model_config(model_with(f.name, config, 64));
    CHECK(warnings.messages.empty());
    const sgt::DecoderConfig& d = c.mean_estimator.decoder;
    CHECK(d.model_type == f.type);
    CHECK(d.qk_norm == f.qk_norm);
    CHECK(d.norm_style == f.norm_style);
    CHECK(d.attention_bias == (f.qkv_bias == sgt::BiasRule::Always));
    CHECK(d.fused_projections == f.fused_projections);
    // One layer: the first layer slides by default in the families that slide without a switch
    // and have a default window.
    CHECK((d.layers.at(0).sliding_window != 0) ==
          ((f.window == sgt::WindowRule::EveryLayer || f.window == sgt::WindowRule::Periodic) &&
           f.defaults.sliding_window.has_value()));
  }
  CHECK(names == fixture_names);
  CHECK(sgt::find_model_family("no_such_family") == nullptr);
  for (const std::string& name : names)
    CHECK(sgt::model_family_names().find(name) != std::string::npos);
}

TEST_CASE("one name table per enum: complete, unique, and used both ways") {
  const auto check_table = [](const auto& t, int n) { sgt_test::check_enum_table(t, n); };
  check_table(sgt::kRopeTypeNames, 4);
  check_table(sgt::kHiddenActNames, 2);
  check_table(sgt::kParameterizationTypeNames, 5);
  CHECK(std::string(sgt::rope_type_name(sgt::RopeType::Llama3)) == "llama3");
  CHECK(std::string(sgt::parameterization_type_name(sgt::ParameterizationType::CloakSigmoid)) ==
        "cloak_sigmoid");
  CHECK(sgt::enum_names_list(sgt::kRopeTypeNames) == "default, linear, llama3 and longrope");
}

}  // namespace test_config
