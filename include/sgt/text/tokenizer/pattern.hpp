// The pattern of a Split pre-tokenizer or a Replace normalizer/decoder: {"String": "..."} (matched
// literally) or {"Regex": "..."} (Oniguruma, as tokenizers compiles it).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sgt/text/tokenizer/component_json.hpp"
#include "sgt/text/tokenizer/limits.hpp"
#include "sgt/text/tokenizer/normalized_text.hpp"
#include "sgt/text/tokenizer/regex.hpp"

namespace sgt::text::detail {

class Pattern {
 public:
  static Pattern from_json(const Json& j, const std::string& path) {
    require_object(j, path);
    Pattern p;
    p.path_ = path;
    if (j.size() != 1 || !(j.contains("String") || j.contains("Regex")))
      fail_at(path, "must be {\"String\": ...} or {\"Regex\": ...}");
    if (j.contains("String")) {
      p.literal_ = string_member(j, "String", path);
    } else {
      try {
        p.regex_ = std::make_shared<Regex>(string_member(j, "Regex", path));
      } catch (Error& e) {
        e.at_key(sgt::detail::key_path(path, "Regex"));
        throw;
      }
    }
    return p;
  }

  // Matches and gaps over `text`, covering it. A regex runs on the budget's retries; when they
  // run out (or Oniguruma fails) the error names this pattern's path and the input position that
  // to_position(byte of text) gives.
  template <class ToPosition>
  std::vector<PatternPiece> pieces(std::string_view text, WorkBudget& budget,
                                   ToPosition to_position) const {
    if (!regex_) return find_string_pieces(text, literal_);
    try {
      return pieces_from_matches(text, regex_->find_all(text, budget.regex_retries_left()));
    } catch (const RegexSearchError& e) {
      throw Error(e.message())
          .at_key(path_)
          .at_position(static_cast<std::int64_t>(to_position(e.offset())));
    }
  }
  std::vector<PatternPiece> pieces(const NormalizedText& t, WorkBudget& budget) const {
    return pieces(t.text(), budget, [&t](std::size_t i) { return t.input_position(i); });
  }

  bool is_regex() const noexcept { return regex_ != nullptr; }
  const std::string& literal() const noexcept { return literal_; }

 private:
  std::string path_;  // in tokenizer.json, for messages
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
};

}  // namespace sgt::text::detail
