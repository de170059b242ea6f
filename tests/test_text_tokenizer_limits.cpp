// The limits of sgt::text::Tokenizer (sgt/text/tokenizer/limits.hpp): what a hostile tokenizer.json
// or input can cost. Each case is small enough that the code without the limit fails it quickly
// (a wrong answer, or a bound on the work or memory it measures) rather than running for minutes;
// docs/reliability.md ("Tokenizer limits") has the figures at full size.
//
// Every global operator new of this program is counted (live and peak bytes, with
// malloc_usable_size), so that memory is measured, not guessed.
#include <doctest/doctest.h>

#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <new>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <sgt/text/tokenizer/tokenizer.hpp>

namespace {

std::atomic<bool> g_counting{false};
std::atomic<long long> g_live{0}, g_peak{0}, g_total{0};

[[maybe_unused]] void count_new(void* p) {
  if (!p || !g_counting.load(std::memory_order_relaxed)) return;
  const auto n = static_cast<long long>(malloc_usable_size(p));
  g_total += n;
  const long long live = g_live += n;
  long long peak = g_peak.load();
  while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
  }
}
[[maybe_unused]] void count_delete(void* p) {
  if (p && g_counting.load(std::memory_order_relaxed))
    g_live -= static_cast<long long>(malloc_usable_size(p));
}

struct Memory {
  long long peak = 0;   // most bytes live at once (beyond what was live before)
  long long total = 0;  // bytes allocated in all
};
template <class F>
Memory memory_during(F f) {
  g_live = 0;
  g_peak = 0;
  g_total = 0;
  g_counting = true;
  f();
  g_counting = false;
  return {g_peak.load(), g_total.load()};
}

}  // namespace

// A sanitizer's runtime brings its own operator new and checks that each block is freed the way it
// was allocated, which a malloc-backed replacement defeats: under ASan or TSan nothing is replaced,
// the counts stay 0, and the memory bounds below check nothing (plain builds measure them).
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
// GCC cannot see that these replacements pair malloc with free on purpose.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  count_new(p);
  return p;
}
void* operator new[](std::size_t n) {
  return operator new(n);
}
void operator delete(void* p) noexcept {
  count_delete(p);
  std::free(p);
}
void operator delete[](void* p) noexcept {
  operator delete(p);
}
void operator delete(void* p, std::size_t) noexcept {
  operator delete(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  operator delete(p);
}
#pragma GCC diagnostic pop
#endif

using nlohmann::json;
using sgt::text::Tokenizer;
using sgt::text::TokenizerLimits;

namespace {

const std::string kFixtures = std::string(SGT_TEST_DATA_DIR) + "/text/tokenizers";

json fixture_json(const std::string& name) {
  std::ifstream in(kFixtures + "/" + name + "/tokenizer.json", std::ios::binary);
  return json::parse(std::string(std::istreambuf_iterator<char>(in), {}));
}

Tokenizer from(const json& j, const TokenizerLimits& limits = TokenizerLimits()) {
  return Tokenizer::from_json_text(j.dump(), "tokenizer.json", limits);
}

// The error encoding `text` gives, or "" when it encodes.
std::string encode_error(const Tokenizer& tok, const std::string& text) {
  try {
    tok.encode(text, false);
  } catch (const sgt::Error& e) {
    return e.what();
  }
  return "";
}

std::string load_error(const json& j) {
  try {
    from(j);
  } catch (const sgt::Error& e) {
    return e.what();
  }
  return "";
}

json added_token(const std::string& content, bool lstrip, bool rstrip, bool normalized) {
  return {{"id", 0},          {"content", content}, {"single_word", false},
          {"lstrip", lstrip}, {"rstrip", rstrip},   {"normalized", normalized},
          {"special", false}};
}

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool valid_utf8(const std::string& s) {
  return sgt::text::unicode::first_invalid_byte(s) == std::string::npos;
}

}  // namespace

TEST_CASE("limits: a catastrophic Split regex is stopped by the retry budget, naming it") {
  // (?:a|a){0,22}[^a] backtracks 2^22 ways at every 'a': about 86 ms per character unbounded.
  json j = fixture_json("llama3");
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(?:a|a){0,22}[^a]"}};
  const Tokenizer tok = from(j);
  std::string error;
  const double seconds =
      seconds_of([&] { error = encode_error(tok, "xy " + std::string(40, 'a')); });
  CHECK(error.find("tokenizer.json: key 'pre_tokenizer.pretokenizers[0].pattern': position 3: "
                   "regex /(?:a|a){0,22}[^a]/ ran out of its backtracking budget") == 0);
  // 15 ms here; unbounded, 2.9 s. Emulated and sanitized builds only check the error.
#if !defined(SGT_TEST_EMULATED) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
  CHECK(seconds < 2.0);
#else
  (void)seconds;
#endif
  CHECK(encode_error(tok, "xy ab") == "");  // a short input is within the base allowance
}

TEST_CASE("limits: the retry budget is per input, not per search") {
  // Every position costs 2^14 retries before the second alternative matches one 'a': no single
  // search comes near Oniguruma's own per-search limits, but the input as a whole exceeds its
  // budget (about 16k retries per byte against 250).
  json j = fixture_json("llama3");
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "(?:a|a){0,14}[^a]|a"}};
  const Tokenizer tok = from(j);
  const std::string error = encode_error(tok, std::string(4000, 'a'));
  CHECK(error.find("key 'pre_tokenizer.pretokenizers[0].pattern'") != std::string::npos);
  CHECK(error.find("backtracking budget") != std::string::npos);
  // A caller may allow more: the same input then encodes.
  TokenizerLimits generous;
  generous.regex_retries_per_byte = 100000;
  CHECK(tok.encode(std::string(4000, 'a'), false, generous).ids.size() == 4000);
}

TEST_CASE("limits: real tokenizers encode well inside the regex budget") {
  // Text that makes a match of every byte costs the most per byte: 2.5x under the default.
  std::string mixed;
  while (mixed.size() < 100000) mixed += "a\n \t1.\xC3\xA9?";
  TokenizerLimits tight;
  tight.regex_retries_per_byte = 100;
  tight.regex_retries_base = 0;
  for (const char* name : {"llama3", "qwen2", "tekken", "llama2_legacy", "mistral_metaspace",
                           "byte_level_trim", "affixes", "unk_no_fallback"}) {
    CAPTURE(name);
    const Tokenizer tok = Tokenizer::load(kFixtures + "/" + name + "/tokenizer.json", tight);
    CHECK_NOTHROW(tok.encode(mixed, true));
  }
  TokenizerLimits none;
  none.regex_retries_per_byte = 0;
  none.regex_retries_base = 10;
  const Tokenizer llama3 = Tokenizer::load(kFixtures + "/llama3/tokenizer.json");
  CHECK_THROWS_WITH_AS(llama3.encode(mixed, false, none), doctest::Contains("backtracking budget"),
                       sgt::Error);
}

TEST_CASE("limits: normalizers cannot grow the text without bound, at encode or at load") {
  // An empty regex matches at every position: replacing it by 100 bytes grows the text 101x.
  json j = fixture_json("llama3");
  j["normalizer"] = {
      {"type", "Replace"}, {"pattern", {{"Regex", ""}}}, {"content", std::string(100, 'z')}};
  CHECK(encode_error(from(j), "hello " + std::string(2000, 'x'))
            .find("tokenizer.json: key 'normalizer': position 0: the text grows past "
                  "TokenizerLimits::text_growth_factor") == 0);

  // Each Replace of "x" by "xx" doubles a run of x: 2^k unbounded.
  json steps = json::array();
  for (int k = 0; k < 12; ++k)
    steps.push_back({{"type", "Replace"}, {"pattern", {{"String", "x"}}}, {"content", "xx"}});
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", steps}};
  const Tokenizer tok = from(j);
  const std::string error = encode_error(tok, "hello " + std::string(2000, 'x'));
  CHECK(error.find("tokenizer.json: key 'normalizer.normalizers[3]': position 0: the text grows "
                   "past TokenizerLimits::text_growth_factor") == 0);
  CHECK(encode_error(tok, "hello x") == "");  // 4096 x: inside the constant allowance

  // Added tokens with normalized=true are normalized at load: the same growth is stopped there.
  j["added_tokens"].push_back(added_token(std::string(2000, 'x'), false, false, true));
  const std::string at_load = load_error(j);
  CHECK(at_load.find("key 'normalizer.normalizers[") != std::string::npos);
  CHECK(at_load.find("grows past") != std::string::npos);

  // A Sequence of ByteLevel pre-tokenizers doubles every non-ASCII byte at each step.
  json b = fixture_json("llama3");
  json byte_levels = json::array();
  for (int k = 0; k < 10; ++k)
    byte_levels.push_back({{"type", "ByteLevel"},
                           {"add_prefix_space", false},
                           {"trim_offsets", false},
                           {"use_regex", false}});
  b["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", byte_levels}};
  std::string text;
  while (text.size() < 3000) text += "\xC3\xA9";
  CHECK(encode_error(from(b), text).find("key 'pre_tokenizer.pretokenizers[") != std::string::npos);

  // What real tokenizers do stays inside: Replace " " by U+2581 on all spaces (3x).
  const Tokenizer llama2 = Tokenizer::load(kFixtures + "/llama2_legacy/tokenizer.json");
  CHECK(llama2.encode(std::string(100000, ' '), true).ids.size() > 0);
}

TEST_CASE("limits: added tokens sharing a long prefix match in linear time") {
  // 4000 tokens sharing a 200-byte prefix, on text that agrees with the prefix everywhere:
  // walking the candidates from every position costs 200 steps per byte (and more with longer
  // prefixes); the automaton costs one.
  json j = fixture_json("llama3");
  const std::string prefix(200, 'x');
  for (int i = 0; i < 4000; ++i)
    j["added_tokens"].push_back(added_token(prefix + std::to_string(i) + "!", false, false, false));
  const Tokenizer tok = from(j);
  const std::string text = std::string(300000, 'x') + "7!";
  std::vector<std::int32_t> ids;
  // Against the same text without those tokens (a ratio, so that sanitizers and emulation, which
  // slow both, do not matter): unbounded matching made it over 20x slower.
  const Tokenizer plain = from(fixture_json("llama3"));
  const double seconds = seconds_of([&] { ids = tok.encode(text, false).ids; });
  const double plain_seconds = seconds_of([&] { plain.encode(text, false); });
  CHECK(seconds < 4 * plain_seconds + 0.05);
  REQUIRE(!ids.empty());
  CHECK(ids.back() == *tok.token_to_id(prefix + "7!"));
  // leftmost-longest: the longer of two tokens starting at one place wins
  CHECK(tok.encode(prefix + "12!", false).ids ==
        std::vector<std::int32_t>{*tok.token_to_id(prefix + "12!")});
}

TEST_CASE("limits: the added tokens' total size is checked before the matcher is built") {
  json j = fixture_json("llama3");
  j["added_tokens"].push_back(added_token(std::string(5000, 'q'), false, false, false));
  TokenizerLimits small;
  small.max_added_tokens_bytes = 4096;
  CHECK_THROWS_WITH_AS(from(j, small), doctest::Contains("max_added_tokens_bytes"), sgt::Error);
  CHECK_NOTHROW(from(j));
}

TEST_CASE("limits: an rstrip token in a long run of white space costs linear memory") {
  // tokenizers emits one overlapping piece per match (each reaching the end of the run): their
  // total length is quadratic, so they must not be copies.
  json j = fixture_json("llama3");
  j["added_tokens"].push_back(added_token(" ", false, true, false));
  const Tokenizer tok = from(j);
  const std::size_t n = 4000;
  sgt::text::Encoding e;
  const Memory m = memory_during([&] { e = tok.encode(std::string(n, ' '), false); });
  REQUIRE(e.ids.size() == n);
  CHECK(e.offsets[1].begin == 1);
  CHECK(e.offsets[1].end == n);                       // the overlapping spans of the reference
  CHECK(m.total < static_cast<long long>(2000 * n));  // copies: n^2/2 bytes and 16x as much
}

TEST_CASE("limits: memory per input byte") {
  // The peak of live heap bytes while encoding 1 MiB of the fixture corpus (docs/reliability.md
  // has the figures per tokenizer): pieces are cut, tokenized and released one by one.
  std::ifstream in(kFixtures + "/corpus.txt", std::ios::binary);
  const std::string corpus(std::istreambuf_iterator<char>(in), {});
  std::string text;
  while (text.size() < (std::size_t{1} << 20)) text += corpus;
  text.resize(text.rfind('\n', std::size_t{1} << 20) + 1);
  // Llama 2's legacy file has no pre-tokenizer: its BPE merges the whole input as one piece.
  // Without a pre-tokenizer that splits, the peak is the BPE's per-character symbols and queue
  // (about 60 bytes per byte) plus the normalized text and its alignments (17 per byte): a copy
  // more of either, or the Metaspace pieces held past the model, passes 90.
  for (const auto& item : {std::pair<std::string, double>{"llama3", 70},
                           std::pair<std::string, double>{"llama2_legacy", 88},
                           std::pair<std::string, double>{"mistral_metaspace", 88}}) {
    const std::string& name = item.first;
    const double bound = item.second;
    CAPTURE(name);
    const Tokenizer tok = Tokenizer::load(kFixtures + "/" + name + "/tokenizer.json");
    tok.encode(text, false);  // the word cache filled
    const Memory m = memory_during([&] { tok.encode(text, false); });
    const double per_byte = static_cast<double>(m.peak) / static_cast<double>(text.size());
    MESSAGE(name << ": " << per_byte << " bytes of heap per input byte at the peak");
    CHECK(per_byte < bound);
  }
}

TEST_CASE("limits: the input size limit, and errors quote bytes printably") {
  const Tokenizer tok = Tokenizer::load(kFixtures + "/llama3/tokenizer.json");
  TokenizerLimits small;
  small.max_input_bytes = 10;
  CHECK_THROWS_WITH_AS(tok.encode(std::string(11, 'a'), false, small),
                       doctest::Contains("max_input_bytes"), sgt::Error);
  CHECK_NOTHROW(tok.encode(std::string(10, 'a'), false, small));

  // The JSON reader quotes the byte it stopped at: never raw.
  for (const std::string& text :
       {std::string("{\"model\": \"\xFF\xFE\"}"), std::string("{\"a\xFF\": 1}"),
        std::string("{\"m\": \"x\x01\"}")}) {
    std::string what;
    try {
      Tokenizer::from_json_text(text, "tokenizer.json");
    } catch (const sgt::Error& e) {
      what = e.what();
    }
    CAPTURE(what);
    CHECK(what.find("tokenizer.json") == 0);
    CHECK(valid_utf8(what));
    CHECK(what.find('\x01') == std::string::npos);
  }
  // A long regex is cut at a character boundary, and its controls escaped.
  json j = fixture_json("llama3");
  std::string pattern = "(\n";
  for (int k = 0; k < 100; ++k) pattern += "\xC3\xA9";
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", pattern}};
  const std::string error = load_error(j);
  CAPTURE(error);
  CHECK(error.find("key 'pre_tokenizer.pretokenizers[0].pattern.Regex'") != std::string::npos);
  CHECK(valid_utf8(error));
  CHECK(error.find("(\\x0a\xC3\xA9") != std::string::npos);
}
