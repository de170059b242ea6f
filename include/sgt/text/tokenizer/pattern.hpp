// The pattern of a Split pre-tokenizer or a Replace normalizer/decoder: {"String": "..."} (matched
// literally) or {"Regex": "..."} (Oniguruma, as tokenizers compiles it).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sgt/text/tokenizer/component_json.hpp"
#include "sgt/text/tokenizer/normalized_text.hpp"
#include "sgt/text/tokenizer/regex.hpp"

namespace sgt::text::detail {

class Pattern {
 public:
  static Pattern from_json(const Json& j, const std::string& path) {
    require_object(j, path);
    Pattern p;
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

  // Matches and gaps over `text`, covering it.
  std::vector<PatternPiece> pieces(std::string_view text) const {
    if (regex_) return pieces_from_matches(text, regex_->find_all(text));
    return find_string_pieces(text, literal_);
  }

  bool is_regex() const noexcept { return regex_ != nullptr; }
  const std::string& literal() const noexcept { return literal_; }

 private:
  std::string literal_;
  std::shared_ptr<const Regex> regex_;
};

}  // namespace sgt::text::detail
