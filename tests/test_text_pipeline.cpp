// The pipelines front ends call (include/sgt/pipeline/): a protected-generation session on the
// demo pair against transformers' greedy generate (tests/data/generate/expected.json, made by
// tools/fixtures/generate_fixtures.py), prompts from every source, and the chat mask policy's
// protective default at every public entry point.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/convert/make_transform.hpp>
#include <sgt/io/safetensors.hpp>
#include <sgt/io/stored_tensors.hpp>
#include <sgt/io/transform_output.hpp>
#include <sgt/pipeline/prompt_source.hpp>
#include <sgt/pipeline/protected_generation.hpp>
#include <sgt/text/chat/chat_template.hpp>
#include <sgt/text/chat/prompt_encoder.hpp>

#include "support/fixture_json.hpp"
#include "support/scratch_dir.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_text_pipeline {

using nlohmann::json;

namespace {

const std::string kRepo = std::string(SGT_TEST_DATA_DIR) + "/../..";
const std::string kBase = kRepo + "/examples/models/demo_base";
const std::string kDemo = kRepo + "/examples/models/demo";
const json kCases = sgt_test::read_fixture_json("generate/expected.json").at("cases");

std::vector<std::int32_t> expected_new_ids(const char* name) {
  return kCases.at(name).at("new_ids").get<std::vector<std::int32_t>>();
}

sgt::ProtectedGenerationOptions greedy_f32(sgt::ThreadPool& pool) {
  sgt::ProtectedGenerationOptions o;
  o.pool = &pool;
  o.precision = sgt::Precision::F32;
  o.max_new_tokens = 16;
  return o;
}

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / "sgt_test_text_pipeline";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

}  // namespace

TEST_CASE("ProtectedGeneration: clean and protected answers equal transformers' greedy tokens") {
  sgt::ThreadPool pool(2);
  SUBCASE("text, clean") {
    const sgt::ProtectedGeneration session(kBase);
    CHECK(session.transform() == nullptr);
    sgt::PromptSource source;
    source.text = kCases.at("text").at("text").get<std::string>();
    const auto prompt = session.encode(source);
    CHECK(prompt.input.input_ids ==
          kCases.at("text").at("prompt_ids").get<std::vector<std::int64_t>>());
    std::string streamed;
    const auto r = session.generate(prompt, greedy_f32(pool),
                                    [&](std::string_view piece) { streamed += piece; });
    CHECK(r.ids == expected_new_ids("text"));
    CHECK(r.text == kCases.at("text").at("answer").get<std::string>());
    // The stream holds back a trailing incomplete UTF-8 sequence, as tokenizers' DecodeStream.
    CHECK(r.text.compare(0, streamed.size(), streamed) == 0);
    CHECK(streamed.size() + 3 >= r.text.size());
    CHECK(r.prompt_tokens == 31);
    CHECK_FALSE(r.protected_tokens.has_value());
    CHECK(r.stop_reason == sgt::StopReason::MaxNewTokens);
    CHECK(r.precision == sgt::Precision::F32);
  }
  SUBCASE(
      "a chat protected by the demo transform (torch noise, seed 3), then its stored embeddings") {
    const sgt::ProtectedGeneration session(kBase, kDemo);
    REQUIRE(session.transform() != nullptr);
    sgt::PromptSource source;
    source.chat_path = kRepo + "/examples/chat.json";  // answered: the generation prompt is added
    const auto prompt = session.encode(source);
    CHECK(prompt.input.input_ids ==
          kCases.at("protected").at("prompt_ids").get<std::vector<std::int64_t>>());
    auto options = greedy_f32(pool);
    options.noise_seed = kCases.at("protected").at("seed").get<std::uint64_t>();
    const auto r = session.generate(prompt, options);
    CHECK(r.ids == expected_new_ids("protected"));
    CHECK(r.protected_tokens == std::size_t{52});

    // The same protected prompt written by a front end and read back: the same answer.
    sgt::RunOptions run;
    run.precision = sgt::Precision::F32;
    run.noise = sgt::NoiseSource::Torch;
    run.seed = *options.noise_seed;
    const sgt::TransformResult t = session.transform()->run(prompt.input, run);
    sgt::TransformOutputArrays a;
    a.batch = t.batch;
    a.seq_len = t.seq_len;
    a.hidden = t.hidden;
    a.transformed = t.transformed.data();
    const std::string path = temp_path("protected.safetensors");
    sgt::write_transform_output(path, {}, a);
    const auto stored =
        sgt::read_stored_embeddings(path, "transformed", session.lm().hidden_size());
    options.noise_seed.reset();
    CHECK(session.generate(stored, options).ids == expected_new_ids("protected"));
  }
  SUBCASE("sampling: a seed gives one answer; without one the seed drawn is reported") {
    const sgt::ProtectedGeneration session(kBase);
    sgt::PromptSource source;
    source.text = "hello";
    const auto prompt = session.encode(source);
    auto o = greedy_f32(pool);
    o.sampling.temperature = 1.5;
    o.sampling_seed = 11;
    const auto a = session.generate(prompt, o), b = session.generate(prompt, o);
    CHECK(a.ids == b.ids);
    CHECK(a.sampling.seed == 11);
    o.sampling_seed.reset();
    const auto c = session.generate(prompt, o);
    CHECK(c.sampling.temperature == 1.5);
  }
}

TEST_CASE(
    "ProtectedGeneration refuses a transform made for another base model, and empty prompts") {
  CHECK_THROWS_WITH(sgt::ProtectedGeneration(kBase, kRepo + "/tests/data/e2e/llama_mha"),
                    doctest::Contains("was not made for this base model"));
  const sgt::ProtectedGeneration session(kBase);
  // Prompt + new tokens past max_position_embeddings (131072 for the demo base): refused before a
  // cache is made for them.
  sgt::PromptSource source;
  source.text = "hello";
  sgt::ProtectedGenerationOptions too_long;
  too_long.max_new_tokens = 131072;
  CHECK_THROWS_WITH(session.generate(session.encode(source), too_long),
                    doctest::Contains("more than max_position_embeddings 131072"));
  sgt::text::EncodedPrompt empty;
  CHECK_THROWS_WITH(session.generate(empty, {}), doctest::Contains("the prompt has no tokens"));
}

// A chat with a tool whose schema names the user's systems: with default options, every public
// entry point protects the schema's text.
TEST_CASE("the chat mask policy protects tool schemas by default at every entry point") {
  const std::string secret = "Look up a patient record by name";
  const json tools = json::parse(R"([{"type": "function", "function": {"name": "lookup",
      "description": ")" + secret +
                                 R"(", "parameters": {"type": "object"}}}])");
  const json messages = json::parse(R"([{"role": "user", "content": "hi"}])");
  const auto config = sgt::text::read_tokenizer_config(kDemo);
  const sgt::text::ChatTemplate chat_template(*config.chat_template, "demo");
  const auto tokenizer = sgt::text::Tokenizer::load(kDemo + "/tokenizer.json");

  // ChatTemplate::render: the description's bytes lie in a protected span.
  const sgt::text::RenderedChat rendered =
      chat_template.render(messages, tools, config.specials, sgt::text::ChatTemplateOptions{});
  const std::size_t at = rendered.text.find(secret);
  REQUIRE(at != std::string::npos);
  auto covered = [&](const std::vector<sgt::text::ByteSpan>& spans) {
    return std::any_of(spans.begin(), spans.end(),
                       [&](auto s) { return s.begin <= at && at + secret.size() <= s.end; });
  };
  CHECK(covered(rendered.protected_spans));
  sgt::text::ChatTemplateOptions clean_tools;
  clean_tools.policy.protect_tool_schemas = false;
  CHECK_FALSE(
      covered(chat_template.render(messages, tools, config.specials, clean_tools).protected_spans));

  // The token-level entry points: every token inside the description is protected.
  auto description_protected = [&](const sgt::text::EncodedPrompt& p) {
    const std::size_t begin = p.text.find(secret);
    REQUIRE(begin != std::string::npos);
    std::size_t inside = 0;
    for (std::size_t t = 0; t < p.offsets.size(); ++t) {
      if (p.offsets[t].begin < begin || p.offsets[t].end > begin + secret.size()) continue;
      ++inside;
      if (!p.input.noise_mask[t]) return false;
    }
    return inside > 0;
  };
  sgt::text::ChatInput chat;
  chat.messages = messages;
  chat.tools = tools;
  CHECK(description_protected(
      sgt::text::encode_chat(tokenizer, chat_template, config.specials, chat, true)));
  const std::string chat_path = temp_path("chat_with_tools.json");
  std::ofstream(chat_path) << json{{"messages", messages}, {"tools", tools}}.dump();
  CHECK(description_protected(sgt::text::encode_chat_file(kDemo, tokenizer, chat_path, true)));
  sgt::PromptSource source;
  source.chat_path = chat_path;
  CHECK(description_protected(sgt::encode_prompt(kDemo, source)));
  source.policy.protect_tool_schemas = false;
  CHECK_FALSE(description_protected(sgt::encode_prompt(kDemo, source)));
}

// The instruction form of CHAT.json (docs/format.md, "CHAT.json") through the demo model's
// tokenizer and Llama 3.1 template, by the file entry point the CLI and PromptSource use: the same
// text, ids and noise mask as the messages it maps to, and every token of the context protected
// (it is the user message's own text), whichever roles the policy protects.
TEST_CASE("the instruction form encodes as its messages, with the context protected") {
  const auto tokenizer = sgt::text::Tokenizer::load(kDemo + "/tokenizer.json");
  struct Case {
    json instruction, messages;
  };
  const std::string context = "Discharge notes for Jane Doe, born 1970-01-01: metformin stopped.";
  const std::vector<Case> cases = {
      {{{"instruction", "What is the capital of France?"},
        {"system_prompt", ""},
        {"context", ""},
        {"response", ""}},
       json::array({{{"role", "user"}, {"content", "What is the capital of France?"}}})},
      {{{"instruction", "List the medication changes."},
        {"system_prompt", "You are a careful clinical assistant."},
        {"context", context},
        {"response", "Metformin was stopped."}},
       json::array({{{"role", "system"}, {"content", "You are a careful clinical assistant."}},
                    {{"role", "user"}, {"content", context + "\n\nList the medication changes."}},
                    {{"role", "assistant"}, {"content", "Metformin was stopped."}}})},
  };
  for (const Case& c : cases)
    for (const bool generation_prompt : {false, true}) {
      CAPTURE(c.instruction.dump());
      CAPTURE(generation_prompt);
      const std::string instruction_path = temp_path("instruction.json");
      const std::string messages_path = temp_path("messages.json");
      std::ofstream(instruction_path) << c.instruction.dump();
      std::ofstream(messages_path) << json{{"messages", c.messages}}.dump();
      const auto a =
          sgt::text::encode_chat_file(kDemo, tokenizer, instruction_path, generation_prompt);
      const auto b =
          sgt::text::encode_chat_file(kDemo, tokenizer, messages_path, generation_prompt);
      CHECK(a.text == b.text);
      CHECK(a.input.input_ids == b.input.input_ids);
      CHECK(a.input.noise_mask == b.input.noise_mask);
    }

  // The context's tokens are protected, under the default policy and when only the user's
  // contents are; the template's scaffolding (the BOS first) is not.
  const std::string path = temp_path("instruction_context.json");
  std::ofstream(path) << json{
      {"instruction", "List the medication changes."},
      {"system_prompt", "Be brief."},
      {"context", context}}.dump();
  sgt::text::ChatMaskPolicy user_only;
  user_only.protected_roles = {"user"};
  for (const auto& policy : {sgt::text::ChatMaskPolicy{}, user_only}) {
    const auto p = sgt::text::encode_chat_file(kDemo, tokenizer, path, true, policy);
    const std::size_t begin = p.text.find(context);
    REQUIRE(begin != std::string::npos);
    std::size_t in_context = 0;
    for (std::size_t t = 0; t < p.offsets.size(); ++t) {
      if (p.offsets[t].end <= begin || p.offsets[t].begin >= begin + context.size()) continue;
      ++in_context;
      CHECK(p.input.noise_mask[t] == 1);
    }
    CHECK(in_context >= 10);
    CHECK(p.input.noise_mask[0] == 0);
  }
}

// A Gemma base takes inputs_embeds unscaled and scales only E[ids] by sqrt(hidden_size): a
// transform made for it carries that scale (embedding_scale), so with nothing protected the base
// answers the protected prompt as it answers the ids (transformers' greedy generate,
// tools/fixtures/causal_lm_fixtures.py); a transform without the scale is refused.
TEST_CASE("ProtectedGeneration on a Gemma base: the transform's embedding scale is the base's") {
  sgt_test::ScratchDir base("gemma_base");
  const std::string gemma = std::string(SGT_TEST_DATA_DIR) + "/causal_lm/gemma_bf16";
  for (const char* f : {"config.json", "model.safetensors", "generation_config.json"})
    std::filesystem::copy_file(gemma + "/" + f, base.file(f));
  // Any tokenizer: the prompt below is given as ids.
  std::filesystem::copy_file(kRepo + "/examples/models/demo_base/tokenizer.json",
                             base.file("tokenizer.json"));
  sgt::MakeTransformOptions make;
  make.layers = 1;
  sgt::make_transform(base.path(), base.file("sgt"), make);

  const sgt::ProtectedGeneration session(base.path(), base.file("sgt"));
  const sgt::SafetensorsFile expected(gemma + "/expected.safetensors");
  const sgt::AnyTensorView prompt = expected.tensor("prompt_ids");  // [B, P], ids as f32
  const sgt::AnyTensorView greedy = expected.tensor("greedy_ids");  // [B, G]
  const std::size_t P = prompt.dim(1), G = greedy.dim(1);
  sgt::text::EncodedPrompt p;  // row 0, nothing protected
  for (std::size_t s = 0; s < P; ++s)
    p.input.input_ids.push_back(static_cast<std::int64_t>(prompt.as<float>().data()[s]));
  p.input.batch = 1;
  p.input.seq_len = P;
  p.input.noise_mask.assign(P, 0);
  sgt::ProtectedGenerationOptions options;
  options.max_new_tokens = G;
  options.precision = sgt::Precision::F32;  // transformers' reference: f32 on the bf16 weights
  const sgt::ProtectedGenerationResult r = session.generate(p, options);
  REQUIRE(r.protected_tokens == std::size_t{0});
  std::vector<std::int32_t> want;
  for (std::size_t t = 0; t < G; ++t) {
    want.push_back(static_cast<std::int32_t>(greedy.as<float>().data()[t]));
    if (want.back() == 2) break;  // generation_config.json's eos_token_id
  }
  CHECK(r.ids == want);

  // The same transform without its scale would hand the base embeddings 8 times too small.
  json c = json::parse(std::ifstream(base.file("sgt/config.json")));
  c.erase("embedding_scale");
  std::ofstream(base.file("sgt/config.json")) << c.dump();
  std::string error;
  try {
    sgt::ProtectedGeneration refused(base.path(), base.file("sgt"));
  } catch (const sgt::Error& e) {
    error = e.what();
  }
  CHECK(error == base.file("sgt/config.json") +
                     ": key 'embedding_scale': the SGT model's embedding_scale 1.000000 is not "
                     "the one the base model gives its embeddings (8.000000): its protected "
                     "embeddings would reach the base at the wrong size");
}

}  // namespace test_text_pipeline
