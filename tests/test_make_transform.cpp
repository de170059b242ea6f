// make_transform (include/sgt/convert/make_transform.hpp) against tools/convert_hf.py: for each
// case of tests/data/make_transform/expected.json (tools/fixtures/make_transform_fixtures.py: the
// demo base model and the causal-LM test models, in every storage dtype), config.json is byte for
// byte the one convert_hf.py wrote and every tensor has its dtype, shape and bytes (CRC-32). The
// result loads and runs as a Transform: the mean is exactly 0 and sigma is --init-std on every
// protected token. Then every refusal: no output directory, and one error naming the problem.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sgt/convert/make_transform.hpp>
#include <sgt/io/crc32.hpp>
#include <sgt/io/safetensors.hpp>
#include <sgt/io/safetensors_writer.hpp>
#include <sgt/io/tensor_store.hpp>
#include <sgt/audit/utility_audit.hpp>
#include <sgt/lm/causal_lm.hpp>
#include <sgt/lm/config_json.hpp>
#include <sgt/lm/generate.hpp>
#include <sgt/model/transform.hpp>

#include "support/scratch_dir.hpp"
#include "support/fixture_json.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_make_transform {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kRepo = std::string(SGT_TEST_DATA_DIR) + "/../..";
const std::string kDemoBase = kRepo + "/examples/models/demo_base";

// Each test's own folder.
struct ScratchDir : sgt_test::ScratchDir {
  ScratchDir() : sgt_test::ScratchDir("test_make_transform") {}
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// convert_hf.py's arguments as options.
sgt::MakeTransformOptions options_of(const json& args) {
  sgt::MakeTransformOptions o;
  for (std::size_t i = 0; i + 1 < args.size(); i += 2) {
    const std::string flag = args[i], value = args[i + 1];
    if (flag == "--layers") o.layers = std::stoull(value);
    if (flag == "--init-std") o.init_std = std::stod(value);
    if (flag == "--dtype") o.dtype = *sgt::enum_from_name(sgt::kTransformStorageNames, value);
  }
  return o;
}

// The mean and sigma of a run on a few tokens of every row of the table (all protected).
sgt::TransformResult run_transform(const std::string& dir) {
  const sgt::Transform model(dir);
  std::vector<std::int64_t> ids;
  const std::int64_t vocab = static_cast<std::int64_t>(model.config().vocab_size);
  for (std::int64_t i = 0; i < 7; ++i) ids.push_back((i * 37) % vocab);
  sgt::RunOptions options;
  options.keep_intermediates = true;
  options.noise = sgt::NoiseSource::Torch;
  options.seed = 1;
  return model.run(sgt::TransformInput::single(ids, {}), options);
}

std::string error_of(const std::string& base, const std::string& out,
                     const sgt::MakeTransformOptions& o) {
  try {
    sgt::make_transform(base, out, o);
  } catch (const sgt::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Rewrites the config.json at `path` as `edit` (a function of an ordered_json) leaves it.
template <class Edit>
void edit_config(const std::string& path, Edit&& edit) {
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(read_bytes(path));
  edit(config);
  std::ofstream(path, std::ios::trunc) << config.dump(2);
}

// A copy of the committed base model tests/data/causal_lm/`name` in dir/base, its config.json
// edited by `edit`; returns the folder.
template <class Edit>
std::string edited_base(const ScratchDir& dir, const std::string& name, Edit&& edit) {
  fs::copy(std::string(SGT_TEST_DATA_DIR) + "/causal_lm/" + name, dir.file("base"));
  edit_config(dir.file("base/config.json"), std::forward<Edit>(edit));
  return dir.file("base");
}

}  // namespace

TEST_CASE("make_transform writes what convert_hf.py writes, and the transform runs") {
  const json fixture = sgt_test::read_fixture_json("make_transform/expected.json");
  REQUIRE(fixture.at("cases").size() == 13);
  for (const json& c : fixture.at("cases")) {
    CAPTURE(c.at("name").get<std::string>());
    ScratchDir dir;
    std::string base = kRepo + "/" + c.at("base").get<std::string>();
    if (c.contains("dropped_keys")) {  // a copy of the base without these config.json keys
      fs::copy(base, dir.file("base"));
      base = dir.file("base");
      nlohmann::ordered_json config = nlohmann::ordered_json::parse(read_bytes(base + "/config.json"));
      for (const json& key : c.at("dropped_keys")) config.erase(key.get<std::string>());
      std::ofstream(base + "/config.json", std::ios::trunc) << config.dump(2);
    }
    const std::string out = dir.file("sgt");
    const sgt::MakeTransformOptions o = options_of(c.at("args"));
    const sgt::MakeTransformSummary s = sgt::make_transform(base, out, o);

    CHECK(read_bytes(out + "/config.json") == c.at("config_json").get<std::string>());
    const sgt::SafetensorsFile file(out + "/model.safetensors");
    const json& tensors = c.at("tensors");
    CHECK(file.size() == tensors.size());
    CHECK(s.tensors == tensors.size());
    CHECK(file.metadata().at("format") == "pt");
    for (auto it = tensors.begin(); it != tensors.end(); ++it) {
      CAPTURE(it.key());
      REQUIRE(file.contains(it.key()));
      const sgt::TensorInfo& info = file.info(it.key());
      CHECK(std::string(sgt::dtype_name(info.dtype)) == it.value().at("dtype").get<std::string>());
      CHECK(info.shape == it.value().at("shape").get<std::vector<std::uint64_t>>());
      const sgt::AnyTensorView v = file.tensor(it.key());
      CHECK(sgt::crc32(v.data(), v.byte_size()) == it.value().at("crc32").get<std::uint32_t>());
    }
    std::vector<std::string> copied;
    for (const char* name : sgt::kMakeTransformCopiedFiles)
      if (fs::exists(out + "/" + name)) {
        copied.push_back(name);
        CHECK(read_bytes(out + "/" + name) == read_bytes(base + "/" + name));
      }
    CHECK(copied == c.at("copied").get<std::vector<std::string>>());
    CHECK(s.copied_files == copied);

    // The transform before training: mean exactly 0, sigma = init_std on every protected token
    // (up to the head bias's rounding to its storage dtype: convert_hf.py's smoke test bound).
    const sgt::TransformResult r = run_transform(out);
    for (const float m : r.mean) REQUIRE(m == 0.0f);
    const float first = r.sigma[0];
    for (const float sigma : r.sigma) REQUIRE(sigma == first);
    CHECK(std::fabs(first - o.init_std) <= 1e-2 * o.init_std + 1e-3);
    CHECK(std::fabs(first - s.initial_std) <= 1e-5 * s.initial_std);  // f32 arithmetic
    if (o.dtype == sgt::TransformStorage::F32)
      CHECK(std::fabs(first - o.init_std) <= 1e-5 * o.init_std);
  }
}

// A Gemma base multiplies E[ids] by sqrt(hidden_size) inside its embedding module and takes
// inputs_embeds as given, so a transform of it must start from the scaled rows
// (tools/fixtures/embedding_scale_fixtures.py: base.get_input_embeddings()(prompt_ids), from
// transformers); with nothing protected, the base answers its output as it answers the ids
// (tools/fixtures/causal_lm_fixtures.py: transformers' greedy generate).
TEST_CASE("make_transform of a Gemma base: x is the base's scaled embeddings, and it answers") {
  const sgt::SafetensorsFile scaled(std::string(SGT_TEST_DATA_DIR) +
                                    "/embedding_scale/expected.safetensors");
  for (const char* name : {"gemma_bf16", "gemma2", "gemma3_text"}) {
    CAPTURE(name);
    const std::string base = std::string(SGT_TEST_DATA_DIR) + "/causal_lm/" + name;
    ScratchDir dir;
    sgt::MakeTransformOptions o;
    o.layers = 1;
    sgt::make_transform(base, dir.file("sgt"), o);
    const sgt::Transform model(dir.file("sgt"));
    const sgt::CausalLM lm = sgt::CausalLM::load(base);
    CHECK(model.embedding_scale() == 8.0f);  // sqrt(64)
    CHECK(model.embedding_scale() == lm.config().embedding_scale);
    CHECK_NOTHROW(sgt::check_base_compatible(model, lm));

    const sgt::SafetensorsFile expected(base + "/expected.safetensors");
    const sgt::AnyTensorView prompt = expected.tensor("prompt_ids");  // [B, P], ids as f32
    const std::size_t B = prompt.dim(0), S = prompt.dim(1), H = model.hidden_size();
    sgt::TransformInput in;
    in.batch = B;
    in.seq_len = S;
    for (std::size_t i = 0; i < B * S; ++i)
      in.input_ids.push_back(static_cast<std::int64_t>(prompt.as<float>().data()[i]));
    in.noise_mask.assign(B * S, 0);  // nothing protected: out = x
    sgt::RunOptions run;
    run.keep_intermediates = true;
    const sgt::TransformResult r = model.run(in, run);
    const sgt::AnyTensorView embeds = scaled.tensor(std::string(name) + ".embeds");
    REQUIRE(embeds.size() == B * S * H);
    const float* want = embeds.as<float>().data();
    for (std::size_t i = 0; i < B * S * H; ++i) {
      REQUIRE(r.embeddings[i] == want[i]);
      REQUIRE(r.transformed[i] == want[i]);
    }

    sgt::LmInput lm_in;
    lm_in.batch = B;
    lm_in.seq_len = S;
    lm_in.inputs_embeds = sgt::TensorView<const float>(r.transformed.data(), {B, S, H});
    for (std::size_t s = 0; s < S; ++s) lm_in.cache_position.push_back(static_cast<std::int64_t>(s));
    const sgt::AnyTensorView greedy = expected.tensor("greedy_ids");  // [B, G]
    const std::size_t G = greedy.dim(1);
    sgt::GenerateOptions g;
    g.max_new_tokens = G;
    g.run.precision = sgt::Precision::F32;  // transformers' reference: f32 on the stored weights
    const auto tokens = sgt::generate(lm, lm_in, g);
    REQUIRE(tokens.size() == B);
    for (std::size_t b = 0; b < B; ++b)
      for (std::size_t t = 0; t < G; ++t)
        CHECK(tokens[b][t] == static_cast<std::int64_t>(greedy.as<float>().data()[b * G + t]));
  }
}

// The estimators' trunk is the base's first K decoder layers: its config must say for those layers
// what the base's config says -- sizes, each layer's window and RoPE, both RoPE tables -- whatever
// spelling the base used (Gemma 3's per-layer-type rope_parameters, per-layer lists cut to K).
TEST_CASE("make_transform: the trunk's config describes the base's first K layers") {
  const std::pair<const char*, std::size_t> bases[] = {
      {"gemma3_text", 2}, {"gemma3_text", 1}, {"smollm3", 2}, {"qwen2_sliding", 1},
      {"gemma2", 1}, {"phi3", 1}, {"llama", 1}};
  for (const auto& base_and_k : bases) {
    // Not a structured binding: CAPTURE's lambda may not capture one in C++17 (clang refuses it).
    const char* const name = base_and_k.first;
    const std::size_t K = base_and_k.second;
    CAPTURE(name);
    CAPTURE(K);
    const std::string base = std::string(SGT_TEST_DATA_DIR) + "/causal_lm/" + name;
    ScratchDir dir;
    sgt::MakeTransformOptions o;
    o.layers = K;
    sgt::make_transform(base, dir.file("sgt"), o);
    const sgt::DecoderConfig& want = sgt::load_causal_lm_config(base + "/config.json").decoder;
    const sgt::ModelConfig got_model = sgt::load_model_config(dir.file("sgt/config.json"));
    for (const sgt::EstimatorConfig* e : {&got_model.mean_estimator, &got_model.std_estimator}) {
      const sgt::DecoderConfig& got = e->decoder;
      REQUIRE(got.num_hidden_layers == K);
      CHECK(got.head_dim == want.head_dim);
      CHECK(got.num_attention_heads == want.num_attention_heads);
      CHECK(got.num_key_value_heads == want.num_key_value_heads);
      CHECK(got.rope == want.rope);
      CHECK(got.local_rope == want.local_rope);
      for (std::size_t i = 0; i < K; ++i) {
        CAPTURE(i);
        CHECK(got.layers[i].sliding_window == want.layers[i].sliding_window);
        CHECK(got.layers[i].rope == want.layers[i].rope);
      }
    }
  }
}

// The v4 spelling the trunk's config is written in gives Gemma 3's local layers a default RoPE of
// base rope_local_base_freq: any other local RoPE is refused, naming the key.
TEST_CASE("make_transform: Gemma 3's local layers must have a default RoPE") {
  ScratchDir dir;
  const std::string base = edited_base(dir, "gemma3_text", [](nlohmann::ordered_json& c) {
    c["rope_parameters"]["sliding_attention"]["rope_type"] = "linear";
    c["rope_parameters"]["sliding_attention"]["factor"] = 2.0;
  });
  sgt::MakeTransformOptions o;
  o.layers = 1;
  CHECK(error_of(base, dir.file("sgt"), o) ==
        dir.file("base/config.json") +
            ": key 'rope_parameters.sliding_attention': the local layers' RoPE must be the default "
            "one (rope_type and rope_theta only), got "
            "{\"rope_theta\":100.0,\"rope_type\":\"linear\",\"factor\":2.0}");
  edit_config(dir.file("base/config.json"), [](nlohmann::ordered_json& c) {
    c["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}}},
                            {"local_attention", {{"rope_type", "default"}}}};
  });
  CHECK(error_of(base, dir.file("sgt"), o) ==
        dir.file("base/config.json") +
            ": key 'rope_parameters.local_attention': unknown layer type (full_attention and "
            "sliding_attention are)");
}

// Protected embeddings reach the base as inputs_embeds, unscaled: a transform whose scale is not
// the base's is refused before any base model run.
TEST_CASE("a transform without the Gemma base's embedding scale is refused by the utility audit") {
  const std::string base = std::string(SGT_TEST_DATA_DIR) + "/causal_lm/gemma2";
  ScratchDir dir;
  sgt::MakeTransformOptions o;
  o.layers = 1;
  sgt::make_transform(base, dir.file("sgt"), o);
  json c = json::parse(read_bytes(dir.file("sgt/config.json")));
  c.erase("embedding_scale");
  std::ofstream(dir.file("sgt/config.json")) << c.dump();
  const sgt::Transform model(dir.file("sgt"));
  CHECK(model.embedding_scale() == 1.0f);
  const sgt::CausalLM lm = sgt::CausalLM::load(base);
  CHECK_THROWS_WITH(sgt::check_base_compatible(model, lm),
                    doctest::Contains("key 'embedding_scale': the SGT model's embedding_scale "
                                      "1.000000 is not the one the base model gives its "
                                      "embeddings (8.000000)"));
}

// An absent head_dim means what transformers' config class of the family makes of it: Qwen3Config
// says 128, not hidden / heads (64 / 4 = 16, what this base's tensors hold), so transformers could
// not load this base without its head_dim, and neither does make_transform.
TEST_CASE("make_transform: a base without head_dim takes the family's default, not hidden / heads") {
  ScratchDir dir;
  const std::string base =
      edited_base(dir, "qwen3_tied", [](nlohmann::ordered_json& c) { c.erase("head_dim"); });
  sgt::MakeTransformOptions o;
  o.layers = 1;
  CHECK(error_of(base, dir.file("sgt"), o) ==
        dir.file("base") +
            ": tensor 'model.layers.0.self_attn.q_proj.weight': shape [64, 64], but the config "
            "implies [512, 64]");
}

TEST_CASE("make_transform: an empty OUT_DIR is filled, anything else there is refused") {
  ScratchDir dir;
  sgt::MakeTransformOptions o;
  o.layers = 1;
  fs::create_directory(dir.file("empty"));
  const sgt::MakeTransformSummary s = sgt::make_transform(kDemoBase, dir.file("empty"), o);
  CHECK(s.model_type == "llama");
  CHECK(s.layers == 1);
  CHECK(s.base_layers == 2);
  CHECK(fs::exists(dir.file("empty/model.safetensors")));
  CHECK(dir.entries().size() == 1);
  CHECK(error_of(kDemoBase, dir.file("empty"), o) ==
        dir.file("empty") +
            ": already exists and is not an empty directory (the command writes a new directory)");
  std::ofstream(dir.file("file")) << "x";
  CHECK(error_of(kDemoBase, dir.file("file"), o) ==
        dir.file("file") +
            ": already exists and is not an empty directory (the command writes a new directory)");
  fs::create_directory_symlink(dir.file("nowhere"), dir.file("link"));
  CHECK(error_of(kDemoBase, dir.file("link"), o) ==
        dir.file("link") +
            ": already exists (a symbolic link; the command writes a new directory)");
  CHECK(dir.entries().size() == 3);  // empty/, file, link: nothing left by the refusals
}

TEST_CASE("make_transform refuses bad arguments and bad bases, leaving no directory") {
  ScratchDir dir;
  const std::string out = dir.file("out");
  auto refused = [&](const std::string& base, const sgt::MakeTransformOptions& o) {
    const std::string e = error_of(base, out, o);
    CHECK_MESSAGE(dir.entries().empty(), "left behind after: " << e);
    return e;
  };
  sgt::MakeTransformOptions o;
  o.layers = 1;
  const std::string config = kDemoBase + "/config.json";

  SUBCASE("K") {
    o.layers = 0;
    CHECK(refused(kDemoBase, o) == config +
                                       ": key 'num_hidden_layers': the base model has 2 layers: 0 "
                                       "cannot be taken (K must be 1 to 2)");
    o.layers = 3;
    CHECK(refused(kDemoBase, o) == config +
                                       ": key 'num_hidden_layers': the base model has 2 layers: 3 "
                                       "cannot be taken (K must be 1 to 2)");
  }
  SUBCASE("init_std outside cloak's open range, or not a number") {
    for (const double s : {0.0, -0.1, 1e-4, 2.0, 3.0, std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::infinity()}) {
      CAPTURE(s);
      o.init_std = s;
      CHECK(refused(kDemoBase, o)
                .find("is outside the open range (0.0001, 2) of the std "
                      "parameterization (cloak)") != std::string::npos);
    }
  }
  SUBCASE("missing base files") {
    CHECK(refused(dir.file("nonexistent"), o).find("nonexistent/config.json: cannot open") !=
          std::string::npos);
    ScratchDir base;
    fs::copy_file(config, base.file("config.json"));
    CHECK(refused(base.path(), o)
              .find("directory holds neither model.safetensors nor "
                    "model.safetensors.index.json") != std::string::npos);
  }
  SUBCASE("a base config the transform cannot take") {
    ScratchDir base;
    fs::copy_file(kDemoBase + "/model.safetensors", base.file("model.safetensors"));
    json c = sgt_test::read_fixture_json("../../examples/models/demo_base/config.json");
    auto with = [&](const json& changed) {
      std::ofstream(base.file("config.json")) << changed.dump();
      return refused(base.path(), o);
    };
    const std::string at = base.file("config.json");
    json bad = c;
    bad["model_type"] = "gpt2";
    CHECK(
        with(bad) ==
        at + ": key 'model_type': \"gpt2\" is not supported (" + sgt::model_family_names() +
            " are)");
    bad["model_type"] = "phi";
    CHECK(with(bad) == at + ": key 'model_type': model_type 'phi': the parallel attention/MLP "
                            "block of Phi-1/2 (with LayerNorm and dense projections) is not "
                            "supported");
    bad = c;
    bad["quantization_config"] = {{"quant_method", "gptq"}};
    CHECK(with(bad) == at + ": key 'quantization_config': quantized checkpoints are not supported");
    bad = c;
    bad["text_config"] = json::object();
    CHECK(with(bad) ==
          at + ": key 'text_config': multimodal configs (text_config) are not supported");
    bad = c;
    bad["rope_parameters"]["rope_type"] = "yarn";
    CHECK(with(bad) == at + ": key 'rope_parameters.rope_type': rope type 'yarn' is not supported "
                            "(default, linear, llama3 and longrope are) (as an estimator's "
                            "config)");
    bad = c;
    bad.erase("num_hidden_layers");
    CHECK(with(bad) == at + ": key 'num_hidden_layers': required key is missing");
    bad = c;
    bad["hidden_size"] = 128;  // the embedding table is 256 wide
    CHECK(with(bad).find("key 'hidden_size': is 128 but the model's hidden_size is 256") !=
          std::string::npos);
  }
  SUBCASE("base tensors the config does not describe") {
    ScratchDir base;
    fs::copy_file(config, base.file("config.json"));
    const sgt::TensorStore demo(kDemoBase);
    // The demo base without `replaced`, and with it in `shape` unless the shape is empty.
    auto write_base = [&](const std::string& replaced, const std::vector<std::uint64_t>& shape) {
      sgt::SafetensorsWriter w;
      for (const std::string& name : demo.names()) {
        const sgt::AnyTensorView v = demo.tensor(name);
        if (name != replaced)
          w.add(name, v.dtype(), {v.shape().begin(), v.shape().begin() + v.rank()}, v.data());
      }
      if (!shape.empty()) {
        std::uint64_t n = 1;
        for (const std::uint64_t d : shape) n *= d;
        const std::vector<float> zeros(n, 0.0f);
        w.add_from_f32(replaced, sgt::DType::BF16, shape, zeros.data());
      }
      fs::remove(base.file("model.safetensors"));
      w.write(base.file("model.safetensors"));
    };
    write_base("model.layers.0.self_attn.k_proj.weight", {32, 256});
    CHECK(refused(base.path(), o) ==
          base.path() +
              ": tensor 'model.layers.0.self_attn.k_proj.weight': shape [32, 256], but "
              "the config implies [64, 256]");
    write_base("model.layers.0.mlp.up_proj.weight", {});
    CHECK(refused(base.path(), o) ==
          base.path() +
              ": tensor 'mean_estimator.layers.0.mlp.up_proj.weight': the base model has "
              "no tensor for it (config.json implies shape [512, 256])");
    write_base("model.layers.0.self_attn.rotary_emb.inv_freq", {16});
    CHECK(refused(base.path(), o)
              .find("tensor 'model.layers.0.self_attn.rotary_emb.inv_freq': "
                    "a tensor the transform's config has no place for") != std::string::npos);
    // Two embedding tables: which one the estimators were trained on is not ours to guess.
    write_base("lm.embed_tokens.weight", {1024, 256});
    CHECK(refused(base.path(), o).find("expected one tensor named *embed_tokens.weight, found 2") !=
          std::string::npos);
  }
}

}  // namespace test_make_transform
