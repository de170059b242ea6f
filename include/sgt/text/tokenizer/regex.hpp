// sgt::text::Regex: an Oniguruma regex, the engine Hugging Face `tokenizers` runs (through the
// `onig` crate) for Split patterns, Replace patterns and the ByteLevel split. Same engine, same
// syntax (ONIG_SYNTAX_ONIGURUMA, UTF-8), same iteration rule for empty matches, so \p{L},
// (?i:...) and \s+(?!\S) mean what they mean to the reference.
//
// A compiled regex is immutable and searched from many threads at once: each search brings its
// own region (Oniguruma keeps no per-search state in regex_t).
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <oniguruma.h>

#include "sgt/core/error.hpp"

namespace sgt::text {

namespace detail {

inline void onig_initialize_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    OnigEncoding encodings[1] = {ONIG_ENCODING_UTF8};
    onig_initialize(encodings, 1);
  });
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
      throw Error("invalid regex \"" + pattern.substr(0, 80) +
                  "\": " + detail::onig_message(rc, &info));
    }
    regex_.reset(raw, detail::RegexDeleter());
  }

  const std::string& pattern() const noexcept { return pattern_; }

  // Every match [begin, end) in `text`, left to right, as the onig crate's find_iter yields them:
  // an empty match right where the previous match ended is skipped (advance one character).
  std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view text) const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    std::unique_ptr<OnigRegion, detail::RegionDeleter> region(onig_region_new());
    if (!region) throw Error("out of memory for a regex search");
    const auto* begin = reinterpret_cast<const OnigUChar*>(text.data());
    const auto* end = begin + text.size();
    std::size_t last_end = 0;
    bool have_last_match = false;
    std::size_t last_match_end = 0;
    while (last_end <= text.size()) {
      const int rc = onig_search(regex_.get(), begin, end, begin + last_end, end, region.get(),
                                 ONIG_OPTION_NONE);
      if (rc == ONIG_MISMATCH) break;
      if (rc < 0) throw Error("regex search failed: " + detail::onig_message(rc, nullptr));
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
  static std::size_t char_length_at(std::string_view text, std::size_t i) {
    const auto b = static_cast<unsigned char>(text[i]);
    return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
  }

  std::string pattern_;
  std::shared_ptr<regex_t> regex_;
};

}  // namespace sgt::text
