// sgt::text::Regex: an Oniguruma regex, the engine Hugging Face `tokenizers` runs (through the
// `onig` crate) for Split patterns, Replace patterns and the ByteLevel split. Same engine, same
// syntax (ONIG_SYNTAX_ONIGURUMA, UTF-8), same iteration rule for empty matches, so \p{L},
// (?i:...) and \s+(?!\S) mean what they mean to the reference.
//
// A compiled regex is immutable and searched from many threads at once: each search brings its
// own region and match parameters (Oniguruma keeps no per-search state in regex_t).
//
// Backtracking is bounded by a budget of retries the caller passes (TokenizerLimits): Oniguruma
// counts retries but does not report how many a search took, only whether it exceeded the limit
// it was given. So each search first runs with a small limit and, when that is exceeded, again
// with twice the limit, and so on: the budget is charged every limit tried, which is at most 4x
// what the search took plus the first limit, and the work repeated is at most as much again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <oniguruma.h>

#include "sgt/core/error.hpp"
#include "sgt/text/tokenizer/unicode.hpp"

namespace sgt::text {

namespace detail {

inline void onig_initialize_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[1] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
}

// `s` for an error message: at most max_bytes of it (cut at a character boundary, "..." after),
// with bytes that are not valid UTF-8 and ASCII controls written as \xNN, so that a message is
// one line of valid UTF-8 whatever the file or the input held.
inline std::string printable(std::string_view s, std::size_t max_bytes) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  std::size_t i = 0;
  while (i < s.size() && out.size() < max_bytes) {
    std::size_t bad = 0;
    const std::size_t n = unicode::sequence_length(s, i, &bad);
    const auto b = static_cast<unsigned char>(s[i]);
    if (n == 0 || b < 0x20 || b == 0x7F) {
      out += "\\x";
      out += hex[b >> 4];
      out += hex[b & 15];
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  if (i < s.size()) out += "...";
  return out;
}

inline std::string onig_message(int code, OnigErrorInfo* info) {
  OnigUChar buffer[ONIG_MAX_ERROR_MESSAGE_LEN];
  const int n =
      info ? onig_error_code_to_str(buffer, code, info) : onig_error_code_to_str(buffer, code);
  return std::string(reinterpret_cast<const char*>(buffer),
                     n > 0 ? static_cast<std::size_t>(n) : 0);
}

struct RegexDeleter {
  void operator()(regex_t* r) const { onig_free(r); }
};
struct RegionDeleter {
  void operator()(OnigRegion* r) const { onig_region_free(r, 1); }
};
struct MatchParamDeleter {
  void operator()(OnigMatchParam* p) const { onig_free_match_param(p); }
};

}  // namespace detail

// A search that could not finish: its retry budget ran out, or Oniguruma failed. `offset` is the
// byte of the searched text where the search started; the caller turns it into a position of the
// input and names the component (Pattern::pieces).
class RegexSearchError : public Error {
 public:
  RegexSearchError(const std::string& message, std::size_t offset)
      : Error(message), offset_(offset) {}
  std::size_t offset() const noexcept { return offset_; }

 private:
  std::size_t offset_;
};

namespace detail {

// The first retry limit of each search. Real patterns take a few retries per match, so almost
// every search ends within it; a smaller first limit charges the budget less for each match (the
// charge is the limit) but repeats more searches.
constexpr unsigned long kFirstRetryLimit = 64;

}  // namespace detail

class Regex {
 public:
  // Compiles `pattern`; a pattern Oniguruma refuses throws sgt::Error with its message.
  explicit Regex(const std::string& pattern) : pattern_(pattern) {
    detail::onig_initialize_once();
    regex_t* raw = nullptr;
    OnigErrorInfo info{};
    const auto* p = reinterpret_cast<const OnigUChar*>(pattern.data());
    const int rc = onig_new(&raw, p, p + pattern.size(), ONIG_OPTION_NONE, ONIG_ENCODING_UTF8,
                            ONIG_SYNTAX_ONIGURUMA, &info);
    if (rc != ONIG_NORMAL) {
      if (raw) onig_free(raw);
      throw Error("invalid regex \"" + detail::printable(pattern, 80) +
                  "\": " + detail::printable(detail::onig_message(rc, &info), 200));
    }
    regex_.reset(raw, detail::RegexDeleter());
  }

  const std::string& pattern() const noexcept { return pattern_; }

  // Every match [begin, end) in `text`, left to right, as the onig crate's find_iter yields them:
  // an empty match right where the previous match ended is skipped (advance one character).
  // `retries_left` is the backtracking budget, charged as described above; when it runs out the
  // search throws RegexSearchError (never a shorter list of matches).
  std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view text,
                                                            std::uint64_t& retries_left) const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    std::unique_ptr<OnigRegion, detail::RegionDeleter> region(onig_region_new());
    std::unique_ptr<OnigMatchParam, detail::MatchParamDeleter> param(onig_new_match_param());
    if (!region || !param) throw Error("out of memory for a regex search");
    onig_initialize_match_param(param.get());
    const auto* begin = reinterpret_cast<const OnigUChar*>(text.data());
    const auto* end = begin + text.size();
    std::size_t last_end = 0;
    bool have_last_match = false;
    std::size_t last_match_end = 0;
    while (last_end <= text.size()) {
      const int rc = search(begin, end, last_end, region.get(), param.get(), retries_left);
      if (rc == ONIG_MISMATCH) break;
      const auto s = static_cast<std::size_t>(region->beg[0]);
      const auto e = static_cast<std::size_t>(region->end[0]);
      if (s == e && have_last_match && last_match_end == e) {
        last_end += last_end < text.size() ? char_length_at(text, last_end) : 1;
        continue;
      }
      last_end = e;
      have_last_match = true;
      last_match_end = e;
      out.emplace_back(s, e);
    }
    return out;
  }

 private:
  // One onig_search from `start`, retried with doubling limits as the budget allows.
  int search(const OnigUChar* begin, const OnigUChar* end, std::size_t start, OnigRegion* region,
             OnigMatchParam* param, std::uint64_t& retries_left) const {
    unsigned long limit = detail::kFirstRetryLimit;
    for (;;) {
      if (retries_left == 0)
        throw RegexSearchError("regex /" + printable_pattern() +
                                   "/ ran out of its backtracking budget "
                                   "(TokenizerLimits::regex_retries_per_byte, regex_retries_base)",
                               start);
      if (limit > retries_left) limit = static_cast<unsigned long>(retries_left);
      onig_set_retry_limit_in_match_of_match_param(param, limit);
      onig_set_retry_limit_in_search_of_match_param(param, limit);
      const int rc = onig_search_with_param(regex_.get(), begin, end, begin + start, end, region,
                                            ONIG_OPTION_NONE, param);
      retries_left -= limit;
      if (rc >= 0 || rc == ONIG_MISMATCH) return rc;
      if (rc != ONIGERR_RETRY_LIMIT_IN_MATCH_OVER && rc != ONIGERR_RETRY_LIMIT_IN_SEARCH_OVER)
        throw RegexSearchError(
            "regex /" + printable_pattern() + "/ failed: " + detail::onig_message(rc, nullptr),
            start);
      limit = limit > ~0UL / 2 ? ~0UL : limit * 2;
    }
  }

  // The pattern for a message: its first 80 bytes, invalid bytes and controls escaped.
  std::string printable_pattern() const { return detail::printable(pattern_, 80); }

  static std::size_t char_length_at(std::string_view text, std::size_t i) {
    const auto b = static_cast<unsigned char>(text[i]);
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
  }

  std::string pattern_;
  std::shared_ptr<regex_t> regex_;
};

}  // namespace sgt::text
