// GGUF import against transformers' own GGUF loader (tools/fixtures/gguf_fixtures.py):
//   - tests/data/gguf/tiny_llama.gguf (every ggml type we read): each imported tensor equals the
//     state dict transformers loads from the same file, bit for bit in f32 and rounded to nearest
//     even in bf16; the rebuilt tokenizer gives its ids on a multilingual corpus and on chat
//     renderings; CausalLM's last logits match its forward;
//   - tests/data/gguf/tiny_spm.gguf (a SentencePiece vocabulary cut from Llama 2's, no merges):
//     the merges transformers derives, the ids and decoded text of a corpus, chat renderings and
//     logits; spm_vocab_options.gguf (the vocabulary alone): stored merges and the other flags;
//   - SmolLM2-135M-Instruct (only when SGT_SMOLLM2_GGUF names the file, since it is 98 MB): rows
//     of tensors, tokens, and the greedy answers of five chats (f32, 32 tokens) equal
//     tests/data/gguf/smollm2_expected.json.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sgt/convert/gguf_import.hpp>
#include <sgt/io/safetensors.hpp>
#include <sgt/lm/causal_lm.hpp>
#include <sgt/pipeline/prompt_source.hpp>
#include <sgt/pipeline/protected_generation.hpp>
#include <sgt/text/tokenizer/tokenizer.hpp>

#include "support/scratch_dir.hpp"
#include "support/fixture_json.hpp"

// Everything in this file is in its own namespace: tests/CMakeLists.txt compiles it in one
// translation unit with other test files (sgt_test_groups).
namespace test_text_gguf_import {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kData = std::string(SGT_TEST_DATA_DIR) + "/gguf";

// Each test's own folder.
struct ScratchDir : sgt_test::ScratchDir {
  ScratchDir() : sgt_test::ScratchDir("test_gguf_import") {}
};

std::string import_to(const ScratchDir& dir, const std::string& gguf, const std::string& name,
                      sgt::DType dtype) {
  sgt::GgufImportOptions options;
  options.dtype = dtype;
  sgt::import_gguf(gguf, dir.file(name), options);
  return dir.file(name);
}

std::vector<std::int32_t> ids_of(const json& j) {
  return j.get<std::vector<std::int32_t>>();
}

// The chat's ids through the imported directory's tokenizer and template.
std::vector<std::int64_t> chat_ids(const sgt::ProtectedGeneration& session, const ScratchDir& dir,
                                   const json& messages, std::string* rendered) {
  const std::string path = dir.file("chat.json");
  std::ofstream(path) << json{{"messages", messages}}.dump();
  sgt::PromptSource source;
  source.chat_path = path;
  source.add_generation_prompt = true;
  const auto e = session.encode(source);
  if (rendered) *rendered = e.text;
  return e.input.input_ids;
}

std::vector<std::int64_t> widen(const std::vector<std::int32_t>& v) {
  return {v.begin(), v.end()};
}

}  // namespace

// Each chat rendered by the imported directory's template and tokenized: transformers' text and ids.
void check_chats(const std::string& out, ScratchDir& dir, const json& chats) {
  const sgt::ProtectedGeneration session(out);
  for (const json& c : chats) {
    std::string rendered;
    CHECK(chat_ids(session, dir, c.at("messages"), &rendered) == widen(ids_of(c.at("ids"))));
    CHECK(rendered == c.at("rendered").get<std::string>());
  }
}

// The f32 logits of the last position of `ids`, against transformers' (to 1e-5 of their scale).
void check_last_logits(const sgt::CausalLM& lm, const std::vector<std::int64_t>& ids,
                       const std::vector<float>& want) {
  sgt::LmRunOptions run;
  run.precision = sgt::Precision::F32;
  sgt::LmInput in;
  in.seq_len = ids.size();
  in.input_ids = ids;
  for (std::size_t t = 0; t < ids.size(); ++t) in.cache_position.push_back(std::int64_t(t));
  in.logits = sgt::LogitsFor::Last;
  sgt::KvCache cache = lm.make_cache(1, ids.size());
  const sgt::LmLogits logits = lm.forward(in, cache, run);
  const std::vector<float> got(logits.row(0, 0), logits.row(0, 0) + logits.vocab);
  REQUIRE(got.size() == want.size());
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::abs(double(got[i]) - want[i]));
    scale = std::max(scale, std::abs(double(want[i])));
  }
  CHECK(worst <= 1e-5 * std::max(1.0, scale));
}

TEST_CASE("gguf import: every tensor equals transformers' GGUF loader, in f32 and bf16") {
  ScratchDir dir;
  const std::string gguf = kData + "/tiny_llama.gguf";
  const std::string f32 = import_to(dir, gguf, "f32", sgt::DType::F32);
  const std::string bf16 = import_to(dir, gguf, "bf16", sgt::DType::BF16);
  const sgt::SafetensorsFile expected(kData + "/tiny_llama_expected.safetensors");
  const sgt::SafetensorsFile a(f32 + "/model.safetensors"), b(bf16 + "/model.safetensors");
  CHECK(a.names() == expected.names());
  for (const std::string& name : expected.names()) {
    INFO(name);
    REQUIRE(a.info(name).shape == expected.info(name).shape);
    const auto want = expected.tensor(name).as<float>();
    const auto got = a.tensor(name).as<float>();
    const auto got_bf16 = b.tensor(name).as<sgt::bfloat16>();
    std::size_t differ = 0, differ_bf16 = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      differ += std::memcmp(&want.data()[i], &got.data()[i], 4) != 0;
      differ_bf16 += sgt::to_bfloat16(want.data()[i]).bits != got_bf16.data()[i].bits;
    }
    CHECK(differ == 0);
    CHECK(differ_bf16 == 0);
  }
}

TEST_CASE("gguf import: the rebuilt tokenizer and template give transformers' ids; logits match") {
  ScratchDir dir;
  const std::string out = import_to(dir, kData + "/tiny_llama.gguf", "m", sgt::DType::F32);
  const json fixture = sgt_test::read_fixture_json("gguf/tiny_llama_expected.json");
  const auto tokenizer = sgt::text::Tokenizer::load(out + "/tokenizer.json");
  for (const json& c : fixture.at("texts")) {
    INFO(c.at("text").get<std::string>());
    CHECK(tokenizer.encode(c.at("text").get<std::string>(), true).ids == ids_of(c.at("ids")));
  }
  check_chats(out, dir, fixture.at("chats"));
  const sgt::CausalLM lm = sgt::CausalLM::load(out);
  for (const json& c : fixture.at("logits")) {
    const std::vector<std::int64_t> ids = widen(ids_of(c.at("ids")));
    check_last_logits(lm, ids, c.at("last_logits").get<std::vector<float>>());
  }
}

TEST_CASE("gguf import: a SentencePiece vocabulary: transformers' merges, ids, text and chats") {
  ScratchDir dir;
  const std::string out = import_to(dir, kData + "/tiny_spm.gguf", "m", sgt::DType::F32);
  const json fixture = sgt_test::read_fixture_json("gguf/tiny_spm_expected.json");
  std::ifstream tf(out + "/tokenizer.json");
  const json tok = json::parse(tf);
  // The merges transformers derives from the scores (generate_merges), in its order.
  std::vector<std::string> merges;
  for (const json& m : tok.at("model").at("merges"))
    merges.push_back(m.at(0).get<std::string>() + " " + m.at(1).get<std::string>());
  CHECK(merges == fixture.at("merges").get<std::vector<std::string>>());
  CHECK(tok.at("added_tokens") == fixture.at("added_tokens"));
  const auto tokenizer = sgt::text::Tokenizer::load(out + "/tokenizer.json");
  for (const json& c : fixture.at("texts")) {
    INFO(c.at("text").get<std::string>());
    const std::vector<std::int32_t> ids =
        tokenizer.encode(c.at("text").get<std::string>(), true).ids;
    CHECK(ids == ids_of(c.at("ids")));
    CHECK(tokenizer.decode(ids_of(c.at("ids")), false) == c.at("decoded").get<std::string>());
    CHECK(tokenizer.decode(ids_of(c.at("ids")), true) == c.at("decoded_skip").get<std::string>());
  }
  check_chats(out, dir, fixture.at("chats"));
  const sgt::CausalLM lm = sgt::CausalLM::load(out);
  for (const json& c : fixture.at("logits")) {
    const std::vector<std::int64_t> ids = widen(ids_of(c.at("ids")));
    CHECK(widen(tokenizer.encode(c.at("text").get<std::string>(), true).ids) == ids);
    check_last_logits(lm, ids, c.at("last_logits").get<std::vector<float>>());
  }
}

// A vocabulary-only file (no tensors): the tokenizer files alone, from stored merges, with
// add_space_prefix false, no BOS and an EOS. The reference is transformers' tokenizer with the key
// honoured (tools/fixtures/gguf_fixtures.py).
TEST_CASE("gguf tokenizer: stored merges, add_space_prefix false, EOS and no BOS") {
  const sgt::GgufFile file(kData + "/spm_vocab_options.gguf");
  const json fixture = sgt_test::read_fixture_json("gguf/spm_vocab_options_expected.json");
  const sgt::GgufTokenizerFiles files =
      sgt::gguf_tokenizer_files(file, fixture.at("vocab_size").get<std::uint64_t>(), 128);
  CHECK(files.tokenizer_config.at("add_bos_token") == false);
  CHECK(files.tokenizer_config.at("add_eos_token") == true);
  const auto tokenizer =
      sgt::text::Tokenizer::from_json_text(files.tokenizer.dump(), "tokenizer.json");
  for (const json& c : fixture.at("texts")) {
    INFO(c.at("text").get<std::string>());
    const std::vector<std::int32_t> ids =
        tokenizer.encode(c.at("text").get<std::string>(), true).ids;
    CHECK(ids == ids_of(c.at("ids")));
    CHECK(tokenizer.decode(ids_of(c.at("ids")), false) == c.at("decoded").get<std::string>());
    CHECK(tokenizer.decode(ids_of(c.at("ids")), true) == c.at("decoded_skip").get<std::string>());
  }
}

TEST_CASE("gguf import: SmolLM2-135M-Instruct equals transformers (set SGT_SMOLLM2_GGUF to run)") {
  const char* gguf = std::getenv("SGT_SMOLLM2_GGUF");
  if (!gguf || !*gguf) {
    MESSAGE("SGT_SMOLLM2_GGUF is not set: the SmolLM2 comparison did not run");
    return;
  }
  ScratchDir dir;
  const std::string out = import_to(dir, gguf, "smollm2", sgt::DType::F32);
  const json fixture = sgt_test::read_fixture_json("gguf/smollm2_expected.json");
  const sgt::SafetensorsFile st(out + "/model.safetensors");
  // Items, not structured bindings: INFO's lambda cannot capture a binding in C++17 (clang).
  for (const auto& item : fixture.at("tensors").items()) {
    const std::string name = item.key();
    const auto& t = item.value();
    INFO(name);
    const auto v = st.tensor(name).as<float>();
    const std::size_t cols = st.info(name).shape.size() == 2 ? st.info(name).shape[1] : v.size();
    const json& values = t.at("values");
    const std::vector<std::size_t> rows = t.at("rows").is_null()
                                              ? std::vector<std::size_t>{0}
                                              : t.at("rows").get<std::vector<std::size_t>>();
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const std::vector<float> want =
          (t.at("rows").is_null() ? values : values[r]).get<std::vector<float>>();
      REQUIRE(want.size() == cols);
      std::size_t differ = 0;
      for (std::size_t c = 0; c < cols; ++c) differ += v.data()[rows[r] * cols + c] != want[c];
      CHECK(differ == 0);
    }
  }
  const auto tokenizer = sgt::text::Tokenizer::load(out + "/tokenizer.json");
  for (const json& c : fixture.at("texts")) {
    INFO(c.at("text").get<std::string>());
    CHECK(tokenizer.encode(c.at("text").get<std::string>(), true).ids == ids_of(c.at("ids")));
  }
  const sgt::ProtectedGeneration session(out);
  sgt::ThreadPool pool(0);
  for (const json& c : fixture.at("chats")) {
    const std::vector<std::int64_t> ids = chat_ids(session, dir, c.at("messages"), nullptr);
    CHECK(ids == widen(ids_of(c.at("ids"))));
    sgt::PromptSource source;
    source.chat_path = dir.file("chat.json");
    source.add_generation_prompt = true;
    sgt::ProtectedGenerationOptions o;
    o.pool = &pool;
    o.precision = sgt::Precision::F32;
    o.max_new_tokens = 32;
    const auto r = session.generate(session.encode(source), o);
    INFO(c.at("greedy_text").get<std::string>());
    CHECK(r.ids == ids_of(c.at("greedy_new_ids")));
  }
}

}  // namespace test_text_gguf_import
