// libFuzzer harness for sgt::text::Tokenizer (sgt/text/tokenizer/tokenizer.hpp).
//
// The first byte picks the mode:
//   even: the rest is a tokenizer.json text -> from_json_text; if it loads, encode a fixed text
//         (both ways) and decode the ids;
//   odd:  the rest is text for a fixed tokenizer -> encode (both ways), decode (both ways), and
//         check that every span lies inside the input. The tokenizer is the file named by
//         $SGT_FUZZ_TOKENIZER (e.g. tests/data/text/tokenizers/llama3/tokenizer.json) or, without
//         it, one of two built in here (bit 1 of the first byte): a SentencePiece-style BPE with
//         byte fallback and every normalizer, and a byte-level BPE with every pre-tokenizer.
// A thrown sgt::Error is the expected answer to bad input; anything else is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/text/tokenizer/tokenizer.hpp>

#include "fuzz_support.hpp"

namespace fuzz_text_tokenizer {

namespace {

using nlohmann::json;

json byte_level_vocab_json() {
  json vocab = json::object();
  int id = 0;
  for (int b = 0; b < 256; ++b) {
    std::string s;
    sgt::text::unicode::append_utf8(s,
                                    sgt::text::detail::byte_to_char()[static_cast<std::size_t>(b)]);
    vocab[s] = id++;
  }
  for (const char* t : {"\xC4\xA0t", "he",
                        "\xC4\xA0"
                        "the",
                        "\xC4\xA0"
                        "a",
                        "in", "\xC4\xA0th", "12"})
    vocab[t] = id++;
  return vocab;
}

std::string sentencepiece_tokenizer() {
  json vocab = json::object();
  int id = 0;
  for (const char* t : {"<unk>", "<s>", "</s>"}) vocab[t] = id++;
  char hex[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    vocab[hex] = id++;
  }
  for (const char* t : {"\xE2\x96\x81", "a", "b", "c",
                        "\xE2\x96\x81"
                        "a",
                        "ab", "abc", "1", "2"})
    vocab[t] = id++;
  json j = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", json::array({{{"id", 0},
                                     {"content", "<unk>"},
                                     {"single_word", false},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"normalized", false},
                                     {"special", true}},
                                    {{"id", 1},
                                     {"content", "<s>"},
                                     {"single_word", false},
                                     {"lstrip", true},
                                     {"rstrip", false},
                                     {"normalized", false},
                                     {"special", true}},
                                    {{"id", 2},
                                     {"content", "</s>"},
                                     {"single_word", false},
                                     {"lstrip", false},
                                     {"rstrip", true},
                                     {"normalized", false},
                                     {"special", true}},
                                    {{"id", 300},
                                     {"content", "ab c"},
                                     {"single_word", true},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"normalized", true},
                                     {"special", false}},
                                    {{"id", 301},
                                     {"content", "  "},
                                     {"single_word", false},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"normalized", false},
                                     {"special", false}}})},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         json::array(
             {{{"type", "NFC"}},
              {{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}},
              {{"type", "Replace"}, {"pattern", {{"Regex", "[0-9]{3,}"}}}, {"content", "#"}}})}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", false}},
                                       {{"type", "Split"},
                                        {"pattern", {{"Regex", "x*"}}},
                                        {"behavior", "MergedWithNext"},
                                        {"invert", true}},
                                       {{"type", "Metaspace"},
                                        {"replacement", "\xE2\x96\x81"},
                                        {"prepend_scheme", "first"},
                                        {"split", true}}})}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", "<unk>"},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", json::array({"\xE2\x96\x81 a", "a b", "ab c"})}}},
      {"post_processor",
       {{"type", "Sequence"},
        {"processors",
         json::array({{{"type", "ByteLevel"},
                       {"add_prefix_space", true},
                       {"trim_offsets", true},
                       {"use_regex", true}},
                      {{"type", "TemplateProcessing"},
                       {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                               {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                       {"pair", json::array()},
                       {"special_tokens",
                        {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}})}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         json::array(
             {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 1}}})}}}};
  return j.dump();
}

std::string byte_level_tokenizer() {
  json j = {
      {"added_tokens", json::array({{{"id", 263},
                                     {"content", "<|eot|>"},
                                     {"single_word", false},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"normalized", false},
                                     {"special", true}},
                                    {{"id", 264},
                                     {"content", "the"},
                                     {"single_word", true},
                                     {"lstrip", true},
                                     {"rstrip", true},
                                     {"normalized", true},
                                     {"special", false}}})},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Split"},
                       {"pattern",
                        {{"Regex",
                          "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                          "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
                       {"behavior", "Isolated"},
                       {"invert", false}},
                      {{"type", "Digits"}, {"individual_digits", true}},
                      {{"type", "ByteLevel"},
                       {"add_prefix_space", true},
                       {"trim_offsets", true},
                       {"use_regex", true}}})}}},
      {"model",
       {{"type", "BPE"},
        {"ignore_merges", true},
        {"vocab", byte_level_vocab_json()},
        {"merges", json::array({json::array({"\xC4\xA0", "t"}), json::array({"h", "e"}),
                                json::array({"\xC4\xA0t", "he"}), json::array({"\xC4\xA0", "a"}),
                                json::array({"i", "n"}), json::array({"\xC4\xA0t", "h"}),
                                json::array({"1", "2"})})}}},
      {"post_processor",
       {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}}},
      {"decoder", {{"type", "ByteLevel"}}}};
  return j.dump();
}

const sgt::text::Tokenizer& fixed_tokenizer(bool second) {
  static const sgt::text::Tokenizer from_env = [] {
    const char* path = std::getenv("SGT_FUZZ_TOKENIZER");
    return path ? sgt::text::Tokenizer::load(path)
                : sgt::text::Tokenizer::from_json_text(sentencepiece_tokenizer(), "embedded");
  }();
  static const sgt::text::Tokenizer byte_level =
      sgt::text::Tokenizer::from_json_text(byte_level_tokenizer(), "embedded byte-level");
  return second && !std::getenv("SGT_FUZZ_TOKENIZER") ? byte_level : from_env;
}

void exercise(const sgt::text::Tokenizer& tok, std::string_view text) {
  for (const bool add : {false, true}) {
    const sgt::text::Encoding e = tok.encode(text, add);
    if (e.ids.size() != e.offsets.size()) std::abort();
    for (const auto& span : e.offsets)
      if (span.begin > span.end || span.end > text.size()) std::abort();
    for (const bool skip : {false, true}) (void)tok.decode(e.ids, skip);
  }
}

}  // namespace

int one_input(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = data[0];
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    if ((mode & 1) == 0) {
      const auto tok = sgt::text::Tokenizer::from_json_text(rest, "fuzz input");
      exercise(tok, "Hello world 12345 <s> caf\xC3\xA9 e\xCC\x81 \xF0\x9F\x98\x80  \n\t x");
      std::vector<std::int32_t> ids;
      for (std::int32_t id = 0; id < 64 && static_cast<std::size_t>(id) < tok.vocab_size(); ++id)
        ids.push_back(id);
      (void)tok.decode(ids, false);
    } else {
      exercise(fixed_tokenizer((mode & 2) != 0), rest);
    }
  } catch (const sgt::Error&) {
    // the expected answer to bad input
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_text_tokenizer", one_input);

}  // namespace fuzz_text_tokenizer
