// Normalizers of tokenizer.json: NFC, Prepend, Replace, Sequence (and null). Each rewrites a
// NormalizedText in place, moving the original spans the way `tokenizers` does.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <utf8proc.h>

#include "sgt/text/tokenizer/component_json.hpp"
#include "sgt/text/tokenizer/limits.hpp"
#include "sgt/text/tokenizer/normalized_text.hpp"
#include "sgt/text/tokenizer/pattern.hpp"
#include "sgt/text/tokenizer/unicode.hpp"

namespace sgt::text::detail {

// NFC through utf8proc. NFC only ever rewrites a run that starts at a character NFC cannot merge
// with what precedes it (canonical class 0, not a Hangul vowel/trailing jamo, not one of the few
// class-0 characters that compose as a second element); runs are normalized one at a time so
// that the rewritten characters can be given source spans like tokenizers gives them: a composed
// character takes the span of the run's first character and absorbs the characters it replaced;
// characters NFC adds (rare decompositions) share the span before them.
inline bool nfc_run_starts_at(char32_t c) {
  const utf8proc_property_t* p = utf8proc_get_property(static_cast<utf8proc_int32_t>(c));
  if (p->combining_class != 0) return false;
  if ((c >= 0x1161 && c <= 0x1175) || (c >= 0x11A8 && c <= 0x11C2)) return false;
  switch (c) {  // class-0 characters that are the second element of a canonical composition
    case 0x09BE:
    case 0x09D7:
    case 0x0B3E:
    case 0x0B56:
    case 0x0B57:
    case 0x0BBE:
    case 0x0BD7:
    case 0x0C56:
    case 0x0CC2:
    case 0x0CD5:
    case 0x0CD6:
    case 0x0D3E:
    case 0x0D57:
    case 0x0DCF:
    case 0x0DDF:
    case 0x102E:
    case 0x1B35:
    case 0x0D4E:
      return false;
    default:
      return true;
  }
}

inline std::string utf8proc_nfc(std::string_view s) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(
      reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
      &out, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw Error(std::string("NFC failed: ") + utf8proc_errmsg(n));
  std::string result(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
  std::free(out);
  return result;
}

inline std::size_t count_chars(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char b : s) n += !unicode::is_continuation(b);
  return n;
}

// The growth is charged to `budget` (for `component`) before the rewrite is built.
inline void apply_nfc(NormalizedText& t, WorkBudget& budget, const std::string& component) {
  {
    const std::string whole = utf8proc_nfc(t.text());
    if (whole == t.text()) return;  // the usual case: nothing to move
    budget.charge_growth(t.text().size(), whole.size(), component, t.input_position(0));
  }
  // Run boundaries, then one pass that copies unchanged runs and rewrites the others.
  std::vector<std::size_t> starts;
  const std::string& s = t.text();
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = 0;
    const char32_t c = unicode::decode(s, i, &n);
    if (i == 0 || nfc_run_starts_at(c)) starts.push_back(i);
    i += n;
  }
  starts.push_back(s.size());
  std::string new_text;
  std::vector<Span> new_align;
  new_text.reserve(s.size());
  new_align.reserve(s.size());
  for (std::size_t r = 0; r + 1 < starts.size(); ++r) {
    const std::size_t begin = starts[r], end = starts[r + 1];
    const std::string_view run = std::string_view(s).substr(begin, end - begin);
    const std::string out = utf8proc_nfc(run);
    if (out == run) {
      t.append_unchanged(begin, end, new_text, new_align);
      continue;
    }
    const long n_in = static_cast<long>(count_chars(run)),
               n_out = static_cast<long>(count_chars(out));
    std::vector<CharChange> changes;
    long k = 0;
    for (std::size_t i = 0; i < out.size(); ++k) {
      std::size_t n = 0;
      const char32_t c = unicode::decode(out, i, &n);
      i += n;
      long change = 0;
      if (n_out <= n_in)
        change = k == 0 ? -(n_in - n_out) : 0;
      else
        change = k < n_in ? 0 : 1;
      changes.push_back({c, change});
    }
    t.append_transformed(begin, end, changes, 0, new_text, new_align);
  }
  t.assign(std::move(new_text), std::move(new_align));
}

class Normalizer {
 public:
  enum class Kind { kNfc, kPrepend, kReplace, kSequence };

  static Normalizer from_json(const Json& j, const std::string& path) {
    const std::string type = component_type(j, path);
    Normalizer n;
    n.path_ = path;
    if (type == "NFC") {
      n.kind_ = Kind::kNfc;
    } else if (type == "Prepend") {
      n.kind_ = Kind::kPrepend;
      n.content_ = string_member(j, "prepend", path);
    } else if (type == "Replace") {
      n.kind_ = Kind::kReplace;
      n.pattern_ =
          Pattern::from_json(member(j, "pattern", path), sgt::detail::key_path(path, "pattern"));
      n.content_ = string_member(j, "content", path);
    } else if (type == "Sequence") {
      n.kind_ = Kind::kSequence;
      const std::string list_path = sgt::detail::key_path(path, "normalizers");
      const Json& list = require_array(member(j, "normalizers", path), list_path);
      for (std::size_t i = 0; i < list.size(); ++i)
        n.steps_.push_back(from_json(list[i], index_path(list_path, i)));
    } else {
      unsupported_type(path, type);
    }
    return n;
  }

  // Rewrites `t`; every rewrite that lengthens it is charged to `budget` before it is built, and
  // Replace's regex runs on the budget's retries.
  void normalize(NormalizedText& t, WorkBudget& budget) const {
    switch (kind_) {
      case Kind::kNfc:
        apply_nfc(t, budget, path_);
        break;
      case Kind::kPrepend:
        if (t.empty()) break;
        budget.charge_growth(t.text().size(), t.text().size() + content_.size(), path_,
                             t.input_position(0));
        t.prepend(content_);
        break;
      case Kind::kReplace: {
        const std::vector<PatternPiece> pieces = pattern_.pieces(t, budget);
        std::size_t size = t.text().size();
        for (const PatternPiece& p : pieces)
          if (p.is_match) size = size - (p.end - p.begin) + content_.size();
        budget.charge_growth(t.text().size(), size, path_, t.input_position(0));
        t.replace(pieces, content_);
        break;
      }
      case Kind::kSequence:
        for (const Normalizer& step : steps_) step.normalize(t, budget);
        break;
    }
  }

 private:
  Kind kind_ = Kind::kSequence;
  std::string path_;  // in tokenizer.json, for messages
  std::string content_;
  Pattern pattern_;
  std::vector<Normalizer> steps_;
};

}  // namespace sgt::text::detail
