// sgt::text::Tokenizer (sgt/text/tokenizer/tokenizer.hpp) against Hugging Face `tokenizers`.
//
// Every expected value comes from the reference: tests/data/text/tokenizers/<name>/ holds a
// tokenizer.json trained and assembled by tokenizers 0.23 in one model family's configuration
// (Llama 3, Qwen2, Tekken, GPT-2-style ByteLevel with trimming and Digits, Llama 2 and Mistral
// SentencePiece conversions, unk without byte fallback) and expected.json with its encodings
// (ids, UTF-8 byte offsets) and decodings; both written by tools/fixtures/tokenizer_fixtures.py.
// The rest: errors at load (naming the component path), invalid UTF-8, out-of-range ids, and
// concurrent encoding.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <cstdint>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/text/tokenizer/decode_stream.hpp>
#include <sgt/text/tokenizer/tokenizer.hpp>

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_text_tokenizer {

using nlohmann::json;
using sgt::text::Tokenizer;

namespace {

const std::string kFixtures = std::string(SGT_TEST_DATA_DIR) + "/text/tokenizers";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(kFixtures))
    if (entry.is_directory()) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::vector<std::size_t>> spans_of(const sgt::text::Encoding& e) {
  std::vector<std::vector<std::size_t>> out;
  for (const auto& s : e.offsets) out.push_back({s.begin, s.end});
  return out;
}

// What from_json_text says about `text`, or "" when it loads.
std::string load_error(const std::string& text) {
  try {
    Tokenizer::from_json_text(text, "tokenizer.json");
  } catch (const sgt::Error& e) {
    return e.what();
  }
  return "";
}

json fixture_json(const std::string& name) {
  return json::parse(read_file(kFixtures + "/" + name + "/tokenizer.json"));
}

}  // namespace

TEST_CASE("tokenizer fixtures: encode and decode exactly like tokenizers") {
  const std::vector<std::string> names = fixture_names();
  REQUIRE(names.size() >= 7);
  for (const std::string& name : names) {
    CAPTURE(name);
    const Tokenizer tok = Tokenizer::load(kFixtures + "/" + name + "/tokenizer.json");
    const json expected = json::parse(read_file(kFixtures + "/" + name + "/expected.json"));
    CHECK(tok.model_type() == expected["model_type"].get<std::string>());
    CHECK(tok.vocab_size() == expected["vocab_size"].get<std::size_t>());
    CHECK(tok.special_tokens() == expected["special_tokens"].get<std::vector<std::string>>());
    for (const auto& probe : expected["token_to_id"]) {
      const std::string token = probe[0].get<std::string>();
      CAPTURE(token);
      const auto id = tok.token_to_id(token);
      if (probe[1].is_null())
        CHECK(!id);
      else
        CHECK(id == std::optional<std::int32_t>(probe[1].get<std::int32_t>()));
    }
    for (const auto& probe : expected["id_to_token"]) {
      const auto id = probe[0].get<std::int32_t>();
      CAPTURE(id);
      const auto token = tok.id_to_token(id);
      if (probe[1].is_null())
        CHECK(!token);
      else
        CHECK(token == std::optional<std::string>(probe[1].get<std::string>()));
    }
    REQUIRE(expected["cases"].size() >= 40);
    for (const auto& c : expected["cases"]) {
      const std::string text = c["text"].get<std::string>();
      CAPTURE(text);
      for (const bool add : {true, false}) {
        CAPTURE(add);
        const json& want = c[add ? "with_special" : "without_special"];
        const sgt::text::Encoding e = tok.encode(text, add);
        // Compared as JSON text, so that a mismatch prints both lists.
        CHECK(json(e.ids).dump() == want["ids"].dump());
        CHECK(json(spans_of(e)).dump() == want["offsets"].dump());
        CHECK(tok.decode(e.ids, false) == want["decode"].get<std::string>());
        CHECK(tok.decode(e.ids, true) == want["decode_skip_special"].get<std::string>());
      }
    }
    for (const auto& c : expected["decode_cases"]) {
      const auto ids = c["ids"].get<std::vector<std::int32_t>>();
      CAPTURE(c["ids"].dump());
      CHECK(tok.decode(ids, false) == c["decode"].get<std::string>());
      CHECK(tok.decode(ids, true) == c["decode_skip_special"].get<std::string>());
    }
  }
}

TEST_CASE("tokenizer: concurrent encodes on one tokenizer agree with serial encodes") {
  // Many distinct words, so that the threads also fill the BPE word cache concurrently.
  std::vector<std::string> texts;
  for (int k = 0; k < 40; ++k)
    texts.push_back("Hello world" + std::to_string(k * 7919) + " I'm caf\xC3\xA9" +
                    std::string(static_cast<std::size_t>(k % 5), 'x') + std::to_string(k) +
                    " <|eot_id|> \xF0\x9F\x98\x80 zq" + std::to_string(k * k));
  const Tokenizer serial = Tokenizer::load(kFixtures + "/llama3/tokenizer.json");
  std::vector<std::vector<std::int32_t>> reference;
  for (const auto& t : texts) reference.push_back(serial.encode(t, true).ids);
  const Tokenizer tok = Tokenizer::load(kFixtures + "/llama3/tokenizer.json");  // cold cache
  std::vector<int> ok(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      bool same = true;
      for (int round = 0; round < 5; ++round)
        for (std::size_t k = 0; k < texts.size(); ++k) {
          const std::size_t i = (k * 13 + static_cast<std::size_t>(t) * 7) % texts.size();
          same = same && tok.encode(texts[i], true).ids == reference[i];
        }
      ok[static_cast<std::size_t>(t)] = same;
    });
  for (auto& th : threads) th.join();
  CHECK(ok == std::vector<int>(4, 1));
}

TEST_CASE("tokenizer: invalid UTF-8 input names the byte position") {
  const Tokenizer tok = Tokenizer::load(kFixtures + "/qwen2/tokenizer.json");
  for (const auto& item : std::vector<std::pair<std::string, int>>{{"ab\xFF", 2},
                                                                   {"\xC3", 0},
                                                                   {"ok \xED\xA0\x80", 3},
                                                                   {"\xC0\xAF", 0},
                                                                   {"x\xF4\x90\x80\x80", 1}}) {
    const std::string& text =
        item.first;  // (not a structured binding: clang 14 cannot capture one)
    const int position = item.second;
    CAPTURE(text);
    try {
      tok.encode(text, true);
      FAIL("no error");
    } catch (const sgt::Error& e) {
      CHECK(e.position() == std::optional<std::int64_t>(position));
    }
  }
}

// tokenizers' decode skips ids it has no token for (filter_map over id_to_token): a model whose
// embedding table is padded past its vocabulary can sample such an id, and its answer and audit
// go on with nothing for it.
TEST_CASE("tokenizer: an id outside the vocabulary decodes to nothing, as in tokenizers") {
  const Tokenizer tok = Tokenizer::load(kFixtures + "/llama3/tokenizer.json");
  const auto size = static_cast<std::int32_t>(tok.vocab_size());
  CHECK(tok.decode({1, 2, size}, false) == tok.decode({1, 2}, false));
  CHECK(tok.decode({size, 1, 2, size + 1000}, true) == tok.decode({1, 2}, true));
  CHECK(tok.decode({-1}, true).empty());
  CHECK(tok.decode({}, false).empty());
  // A stream gives no piece for it, and goes on.
  sgt::text::DecodeStream stream(tok, true);
  std::string text;
  for (std::int32_t id : {1, size, 2, size + 5})
    if (auto piece = stream.step(id)) text += *piece;
  CHECK(text == tok.decode({1, 2}, true));
}

TEST_CASE("tokenizer: components and options we do not implement are refused, by path") {
  json j = fixture_json("llama3");
  j["pre_tokenizer"]["pretokenizers"][1] = {{"type", "Whitespace"}};
  CHECK(
      load_error(j.dump()) ==
      "tokenizer.json: key 'pre_tokenizer.pretokenizers[1]': type \"Whitespace\" is not supported");

  j = fixture_json("llama3");
  j["normalizer"] = {{"type", "Lowercase"}};
  CHECK(load_error(j.dump()).find("key 'normalizer': type \"Lowercase\"") != std::string::npos);

  j = fixture_json("llama2_legacy");
  j["decoder"]["decoders"][2] = {{"type", "CTC"}};
  CHECK(load_error(j.dump()).find("key 'decoder.decoders[2]': type \"CTC\"") != std::string::npos);

  j = fixture_json("llama3");
  j["post_processor"] = {{"type", "BertProcessing"}};
  CHECK(load_error(j.dump()).find("key 'post_processor': type \"BertProcessing\"") !=
        std::string::npos);

  j = fixture_json("llama3");
  j["model"]["type"] = "WordPiece";
  CHECK(load_error(j.dump()).find("key 'model': type \"WordPiece\"") != std::string::npos);

  j = fixture_json("llama3");
  j["model"]["dropout"] = 0.1;
  CHECK(load_error(j.dump()).find("key 'model.dropout'") != std::string::npos);

  j = fixture_json("llama3");
  j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Sideways";
  CHECK(load_error(j.dump()).find("key 'pre_tokenizer.pretokenizers[0].behavior'") !=
        std::string::npos);

  j = fixture_json("llama3");
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(unclosed"}};
  CHECK(load_error(j.dump()).find("key 'pre_tokenizer.pretokenizers[0].pattern.Regex'") !=
        std::string::npos);

  j = fixture_json("mistral_metaspace");
  j["pre_tokenizer"]["prepend_scheme"] = "sometimes";
  CHECK(load_error(j.dump()).find("key 'pre_tokenizer.prepend_scheme'") != std::string::npos);

  j = fixture_json("mistral_metaspace");
  j["pre_tokenizer"]["add_prefix_space"] = false;  // tokenizers refuses it with "first" too
  CHECK(load_error(j.dump()).find("key 'pre_tokenizer.add_prefix_space'") != std::string::npos);
  j["pre_tokenizer"]["prepend_scheme"] = "never";
  CHECK(load_error(j.dump()).empty());

  j = fixture_json("llama2_legacy");
  j["model"]["continuing_subword_prefix"] = "##";
  CHECK(load_error(j.dump()).find("key 'model.byte_fallback'") != std::string::npos);

  j = fixture_json("llama3");
  j["truncation"] = {{"max_length", 8}};
  CHECK(load_error(j.dump()).find("key 'truncation'") != std::string::npos);
}

TEST_CASE("tokenizer: malformed files") {
  CHECK(load_error("").find("tokenizer.json") != std::string::npos);
  CHECK(load_error("{\"model\": ").find("not valid JSON") != std::string::npos);
  CHECK(load_error("[1, 2]").find("root is not a JSON object") != std::string::npos);
  CHECK(load_error("{}").find("key 'model': required key is missing") != std::string::npos);
  CHECK(load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {}}, \"model\": {}}")
            .find("appears twice") != std::string::npos);

  json j = fixture_json("llama3");
  j["model"]["merges"][3] = json::array({"no-such-token", "x"});
  CHECK(load_error(j.dump()).find("key 'model.merges[3]'") != std::string::npos);

  j = fixture_json("llama3");
  j["model"]["vocab"]["abc"] = -4;
  CHECK(load_error(j.dump()).find("key 'model.vocab.abc'") != std::string::npos);

  j = fixture_json("llama3");
  j["added_tokens"][0]["content"] = 7;
  CHECK(load_error(j.dump()).find("key 'added_tokens[0].content'") != std::string::npos);

  CHECK_THROWS_WITH_AS(Tokenizer::load(kFixtures + "/no-such-dir/tokenizer.json"),
                       doctest::Contains("no-such-dir/tokenizer.json"), sgt::Error);
}

TEST_CASE("tokenizer: empty input and a tokenizer without a pre-tokenizer or decoder") {
  const Tokenizer tok = Tokenizer::load(kFixtures + "/llama3/tokenizer.json");
  CHECK(tok.encode("", false).ids.empty());
  CHECK(tok.encode("", true).ids ==
        std::vector<std::int32_t>{*tok.token_to_id("<|begin_of_text|>")});
}

// sgt::text::DecodeStream against tokenizers' DecodeStream (tests/data/text/decode_stream,
// tools/fixtures/decode_stream_fixtures.py): per id, the same piece or the same "nothing yet", for
// byte-level (split multi-byte characters, stray bytes), Metaspace and ByteFallback decoders, with
// and without special tokens.
TEST_CASE("decode stream: the pieces tokenizers' DecodeStream emits, id by id") {
  const json fixture =
      json::parse(read_file(std::string(SGT_TEST_DATA_DIR) + "/text/decode_stream/expected.json"));
  const std::string repo = std::string(SGT_TEST_DATA_DIR) + "/../..";
  std::size_t checked = 0, held_back = 0;
  for (const json& c : fixture.at("cases")) {
    const Tokenizer tok = Tokenizer::load(repo + "/" + c.at("tokenizer").get<std::string>());
    const bool skip = c.at("skip_special_tokens").get<bool>();
    sgt::text::DecodeStream stream(tok, skip);
    const auto ids = c.at("ids").get<std::vector<std::int32_t>>();
    std::string joined;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const json& want = c.at("pieces")[i];
      const std::optional<std::string> got = stream.step(ids[i]);
      INFO(c.at("tokenizer").get<std::string>() << " skip=" << skip << " step " << i);
      if (want.is_null()) {
        CHECK_FALSE(got.has_value());
        ++held_back;
      } else {
        REQUIRE(got.has_value());
        CHECK(*got == want.get<std::string>());
        joined += *got;
      }
      ++checked;
    }
    // What was emitted is the full decoding, up to a trailing incomplete character.
    const std::string full = c.at("full").get<std::string>();
    CHECK(full.compare(0, joined.size(), joined) == 0);
  }
  CHECK(checked > 500);
  CHECK(held_back > 0);  // the fixtures do split characters across tokens
}

}  // namespace test_text_tokenizer
