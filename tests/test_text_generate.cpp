// Generation end to end -- text front end, SGT transform, CausalLM, sampler, decode stream -- on
// the bundled demo pair (examples/models/demo_base, the LM; examples/models/demo, its transform),
// against transformers' greedy generate (tests/data/generate/expected.json, made by
// tools/fixtures/generate_fixtures.py with the model in f32): the prompt ids (tokenizer and chat
// template), the new ids for a text prompt, the chat, and the chat protected with torch-seeded
// noise (seed 3, f32), and the answers' text, also as the decode stream's pieces.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/sgt.hpp>

#include "support/fixture_json.hpp"
#include <sgt/text/tokenizer/decode_stream.hpp>
#include <sgt/text/chat/prompt_encoder.hpp>

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_text_generate {

using nlohmann::json;

namespace {

const std::string kRepo = std::string(SGT_TEST_DATA_DIR) + "/../..";
const std::string kBase = kRepo + "/examples/models/demo_base";

json expected() { return sgt_test::read_fixture_json("generate/expected.json"); }

struct Answer {
  std::vector<std::int64_t> ids;
  std::string streamed;
};

// Greedy, f32, stopping at the demo base model's eos (<|eot_id|>) like transformers.
Answer answer(const sgt::CausalLM& lm, const sgt::text::Tokenizer& tok, const sgt::LmInput& in,
              std::size_t max_new, sgt::ThreadPool& pool) {
  sgt::GenerateOptions o;
  o.max_new_tokens = max_new;
  o.stop_tokens = {1022};  // <|eot_id|>, demo_base/generation_config.json's eos_token_id
  o.run.precision = sgt::Precision::F32;
  o.run.pool = &pool;
  sgt::KvCache cache = lm.make_cache(1, in.seq_len + max_new);
  sgt::LmWorkspace ws;
  sgt::text::DecodeStream stream(tok, true);
  Answer a;
  const auto rows = sgt::generate(lm, in, o, cache, ws, [&](std::size_t row, std::int64_t id) {
    CHECK(row == 0);
    if (auto piece = stream.step(static_cast<std::int32_t>(id))) a.streamed += *piece;
  });
  a.ids = rows.at(0);
  return a;
}

std::vector<std::int32_t> as_int32(const std::vector<std::int64_t>& v) {
  return std::vector<std::int32_t>(v.begin(), v.end());
}

}  // namespace

TEST_CASE("generate: the demo base model answers like transformers' greedy generate") {
  const json e = expected();
  const auto max_new = e.at("max_new_tokens").get<std::size_t>();
  const sgt::CausalLM lm = sgt::CausalLM::load(kBase);
  const auto tok = sgt::text::Tokenizer::load(kBase + "/tokenizer.json");
  sgt::ThreadPool pool(2);

  const json& cases = e.at("cases");
  const sgt::text::EncodedPrompt text =
      sgt::text::encode_text(tok, cases.at("text").at("text").get<std::string>(), true);
  const sgt::text::EncodedPrompt chat = sgt::text::encode_chat_file(
      kBase, tok, kRepo + "/examples/chat.json", /*add_generation_prompt=*/true);
  CHECK(text.input.input_ids == cases.at("text").at("prompt_ids").get<std::vector<std::int64_t>>());
  CHECK(chat.input.input_ids == cases.at("chat").at("prompt_ids").get<std::vector<std::int64_t>>());

  for (const char* name : {"text", "chat"}) {
    INFO(name);
    const sgt::text::EncodedPrompt& p = std::string(name) == "text" ? text : chat;
    sgt::LmInput in;
    in.seq_len = p.input.seq_len;
    in.input_ids = p.input.input_ids;
    const Answer a = answer(lm, tok, in, max_new, pool);
    const json& c = cases.at(name);
    CHECK(a.ids == c.at("new_ids").get<std::vector<std::int64_t>>());
    const std::string full = tok.decode(as_int32(a.ids), true);
    CHECK(full == c.at("answer").get<std::string>());
    // The stream holds back only a trailing incomplete character.
    CHECK(full.compare(0, a.streamed.size(), a.streamed) == 0);
    CHECK(full.size() - a.streamed.size() < 4);
  }

  SUBCASE("the chat protected by the demo transform (torch noise, seed 3)") {
    const json& c = cases.at("protected");
    const sgt::Transform transform(kRepo + "/examples/models/demo");
    sgt::RunOptions run;
    run.noise = sgt::NoiseSource::Torch;
    run.seed = c.at("seed").get<std::uint64_t>();
    run.precision = sgt::Precision::F32;
    run.pool = &pool;
    const sgt::TransformResult r = transform.run(chat.input, run);
    std::size_t protected_tokens = 0;
    for (auto m : chat.input.noise_mask) protected_tokens += m;
    CHECK(protected_tokens == c.at("protected_positions").get<std::size_t>());
    sgt::LmInput in;
    in.seq_len = chat.input.seq_len;
    in.inputs_embeds =
        sgt::TensorView<const float>(r.transformed.data(), {1, in.seq_len, lm.hidden_size()});
    const Answer a = answer(lm, tok, in, max_new, pool);
    CHECK(a.ids == c.at("new_ids").get<std::vector<std::int64_t>>());
    CHECK(tok.decode(as_int32(a.ids), true) == c.at("answer").get<std::string>());
    // The noise changed the answer (what `sgt audit --base` measures).
    CHECK(a.ids != cases.at("chat").at("new_ids").get<std::vector<std::int64_t>>());
  }
}

TEST_CASE("generate: seeded sampling repeats per seed and stops at a stop token") {
  const sgt::CausalLM lm = sgt::CausalLM::load(kBase);
  sgt::LmInput in;
  in.input_ids = {1017, 50, 492, 279};
  in.seq_len = in.input_ids.size();
  auto run = [&](std::uint64_t seed, std::size_t threads, std::vector<std::int64_t> stops) {
    sgt::ThreadPool pool(threads);
    sgt::GenerateOptions o;
    o.max_new_tokens = 12;
    o.sampling.temperature = 1.3;
    o.sampling.top_p = 0.9;
    o.sampling.seed = seed;
    o.stop_tokens = std::move(stops);
    o.run.pool = &pool;
    sgt::KvCache cache = lm.make_cache(1, in.seq_len + o.max_new_tokens);
    sgt::LmWorkspace ws;
    return sgt::generate(lm, in, o, cache, ws, [](std::size_t, std::int64_t) {}).at(0);
  };
  const auto a = run(5, 1, {}), b = run(5, 2, {}), c = run(6, 2, {});
  CHECK(a.size() == 12);
  CHECK(a == b);  // thread count changes nothing
  CHECK(a != c);
  // Stopping at the 4th token of a's answer keeps it and ends there.
  const auto stopped = run(5, 2, {a[3]});
  REQUIRE(stopped.size() <= 4);
  CHECK(std::vector<std::int64_t>(
            a.begin(), a.begin() + static_cast<std::ptrdiff_t>(stopped.size())) == stopped);
  CHECK(stopped.back() == a[3]);
}

TEST_CASE("generate: eos ids from generation_config.json, else config.json") {
  namespace fs = std::filesystem;
  CHECK(sgt::load_eos_token_ids(kBase) == std::vector<std::int64_t>{1022});
  const fs::path dir = fs::temp_directory_path() / ("sgt_eos_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const char* name, const char* text) { std::ofstream(dir / name) << text; };
  CHECK(sgt::load_eos_token_ids(dir.string()).empty());  // neither file
  write("config.json", R"({"eos_token_id": 7})");
  CHECK(sgt::load_eos_token_ids(dir.string()) == std::vector<std::int64_t>{7});
  write("generation_config.json", R"({"eos_token_id": [3, 9]})");
  CHECK(sgt::load_eos_token_ids(dir.string()) == std::vector<std::int64_t>{3, 9});
  write("generation_config.json", R"({"eos_token_id": null})");  // falls back to config.json
  CHECK(sgt::load_eos_token_ids(dir.string()) == std::vector<std::int64_t>{7});
  write("generation_config.json", R"({"eos_token_id": [3, -1]})");
  CHECK_THROWS_WITH_AS(sgt::load_eos_token_ids(dir.string()),
                       doctest::Contains("generation_config.json"), sgt::Error);
  write("generation_config.json", R"({"eos_token_id": 1, "eos_token_id": 2})");
  CHECK_THROWS_AS(sgt::load_eos_token_ids(dir.string()), sgt::Error);  // a repeated key
  fs::remove_all(dir);
}

}  // namespace test_text_generate
