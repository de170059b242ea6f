// libFuzzer harness for the limits of sgt::text::Tokenizer (sgt/text/tokenizer/limits.hpp): the
// input rewrites the parts of a real tokenizer.json (tests/data/text/tokenizers/llama3) that cost
// work and memory -- the Split regex, a Sequence of Replace normalizers, a chain of ByteLevel
// pre-tokenizers, added tokens with lstrip/rstrip -- and the text encoded with it.
//
// Input: fields separated by NUL bytes, every one optional:
//   [0] one byte of shape: bits 0-2 the number of Replace normalizers (0-7), bits 3-4 the number of
//       ByteLevel pre-tokenizers after the Split (0-3), bit 5 lstrip, bit 6 rstrip, bit 7
//       normalized, of the added tokens below;
//   [1] the Split regex;  [2] the Replace pattern (a regex);  [3] the Replace content;
//   [4] an added token's content;  [5] the text to encode.
// A thrown sgt::Error (a refused file, or a limit reached) is the correct answer. A crash, another
// exception, or an input that runs longer than libFuzzer's -timeout (run_fuzzers.sh: 10 s) or
// past -rss_limit_mb (2 GB) is a finding: the limits must stop every input well before. The
// limits here are the defaults, except a smaller regex_retries_base, so that a slow input shows
// as slow on a short text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/text/tokenizer/tokenizer.hpp>

#include "fuzz_support.hpp"

namespace fuzz_text_tokenizer_json {

namespace {

using nlohmann::json;

const json& base_tokenizer() {
  static const json j = [] {
    std::ifstream in(std::string(SGT_TEST_DATA_DIR) + "/text/tokenizers/llama3/tokenizer.json",
                     std::ios::binary);
    return json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
  }();
  return j;
}

std::vector<std::string_view> fields_of(std::string_view data) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= data.size(); ++i)
    if (i == data.size() || data[i] == '\0') {
      out.push_back(data.substr(start, i - start));
      start = i + 1;
    }
  return out;
}

bool valid(std::string_view s) {
  return sgt::text::unicode::first_invalid_byte(s) == std::string_view::npos;
}

}  // namespace

int one_input(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::string_view> f =
      fields_of(std::string_view(reinterpret_cast<const char*>(data), size));
  auto field = [&](std::size_t i) { return i < f.size() ? std::string(f[i]) : std::string(); };
  const unsigned shape = f.empty() || f[0].empty() ? 0 : static_cast<unsigned char>(f[0][0]);
  // JSON strings hold valid UTF-8 only: the fields that are not are dropped (the text is passed
  // as is, since encode checks it).
  for (std::size_t i = 1; i < 5; ++i)
    if (!valid(field(i))) return 0;

  json j = base_tokenizer();
  if (!field(1).empty()) j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", field(1)}};
  for (unsigned k = 0; k < ((shape >> 3) & 3); ++k)
    j["pre_tokenizer"]["pretokenizers"].push_back({{"type", "ByteLevel"},
                                                   {"add_prefix_space", k % 2 == 0},
                                                   {"trim_offsets", true},
                                                   {"use_regex", k == 0}});
  json steps = json::array();
  for (unsigned k = 0; k < (shape & 7); ++k) {
    if (k % 3 == 2)
      steps.push_back({{"type", "Prepend"}, {"prepend", field(3)}});
    else
      steps.push_back(
          {{"type", "Replace"}, {"pattern", {{"Regex", field(2)}}}, {"content", field(3)}});
  }
  if (!steps.empty()) j["normalizer"] = {{"type", "Sequence"}, {"normalizers", steps}};
  if (!field(4).empty())
    j["added_tokens"].push_back({{"id", 0},
                                 {"content", field(4)},
                                 {"single_word", false},
                                 {"lstrip", (shape & 32) != 0},
                                 {"rstrip", (shape & 64) != 0},
                                 {"normalized", (shape & 128) != 0},
                                 {"special", false}});
  sgt::text::TokenizerLimits limits;
  limits.regex_retries_base = 100000;
  try {
    const auto tok = sgt::text::Tokenizer::from_json_text(j.dump(), "tokenizer.json", limits);
    const std::string text = field(5);
    for (const bool add : {false, true}) {
      const sgt::text::Encoding e = tok.encode(text, add);
      if (e.ids.size() != e.offsets.size()) std::abort();
      for (const auto& span : e.offsets)
        if (span.begin > span.end || span.end > text.size()) std::abort();
      (void)tok.decode(e.ids, false);
    }
  } catch (const sgt::Error& e) {
    // the expected answer to a refused file or a limit reached; never raw invalid bytes
    if (!valid(e.what())) std::abort();
  }
  return 0;
}

const sgt_fuzz::Register registered("fuzz_text_tokenizer_json", one_input);

}  // namespace fuzz_text_tokenizer_json
