// Pre-tokenizers of tokenizer.json: Split, ByteLevel, Metaspace, Digits, Sequence (and null).
// They cut the pieces that are not added tokens into smaller pieces (tokenizers'
// PreTokenizedString::split, which drops empty pieces) and may rewrite them (ByteLevel maps
// every byte to a printable character).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sgt/text/tokenizer/component_json.hpp"
#include "sgt/text/tokenizer/limits.hpp"
#include "sgt/text/tokenizer/normalized_text.hpp"
#include "sgt/text/tokenizer/pattern.hpp"
#include "sgt/text/tokenizer/regex.hpp"
#include "sgt/text/tokenizer/unicode.hpp"

namespace sgt::text::detail {

// A piece of the input on its way through the pipeline: either text still to tokenize, or an
// added token already recognized: its id, its span of the input, and the text it matched (a view
// of the input or of a normalized piece the encoding keeps: overlapping pieces, which rstrip
// makes, cost no copies).
struct Piece {
  NormalizedText text;
  std::optional<std::int32_t> added_id;
  Span added_span;
  std::string_view added_text;
};

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others get code points
// from U+0100 on, in byte order.
inline const std::array<char32_t, 256>& byte_to_char() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      t[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

// The ByteLevel pre-tokenizer's own split (GPT-2's regex).
inline const Pattern& byte_level_regex() {
  static const Pattern re = Pattern::from_json(
      Json{{"Regex",
            R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)"}},
      "ByteLevel's regex");
  return re;
}

inline SplitBehavior split_behavior_from(const std::string& name, const std::string& path) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  fail_at(path, "behavior \"" + sgt::detail::abbreviate(name) + "\" is not supported");
}

enum class PrependScheme { kFirst, kAlways, kNever };

// Metaspace's options, shared by the pre-tokenizer and the decoder.
struct MetaspaceOptions {
  char32_t replacement = 0x2581;
  std::string replacement_utf8 = "\xE2\x96\x81";
  PrependScheme scheme = PrependScheme::kAlways;
  bool split = true;

  static MetaspaceOptions from_json(const Json& j, const std::string& path) {
    MetaspaceOptions o;
    o.replacement_utf8 = string_member(j, "replacement", path);
    std::size_t n = 0;
    if (o.replacement_utf8.empty() || (o.replacement = unicode::decode(o.replacement_utf8, 0, &n),
                                       n != o.replacement_utf8.size()))
      fail_at(sgt::detail::key_path(path, "replacement"), "must be exactly one character");
    if (const Json* scheme = optional_member(j, "prepend_scheme")) {
      const std::string s = scheme->is_string() ? scheme->get<std::string>() : std::string("?");
      if (s == "first")
        o.scheme = PrependScheme::kFirst;
      else if (s == "always")
        o.scheme = PrependScheme::kAlways;
      else if (s == "never")
        o.scheme = PrependScheme::kNever;
      else
        fail_at(sgt::detail::key_path(path, "prepend_scheme"),
                "must be \"first\", \"always\" or \"never\", got " +
                    sgt::detail::json_excerpt(*scheme));
    }
    // The legacy option: tokenizers accepts add_prefix_space=false only with scheme "never".
    if (!bool_member(j, "add_prefix_space", path, true) && o.scheme != PrependScheme::kNever)
      fail_at(sgt::detail::key_path(path, "add_prefix_space"),
              "false does not match prepend_scheme (which must then be \"never\")");
    o.split = bool_member(j, "split", path, true);
    return o;
  }
};

class PreTokenizer {
 public:
  enum class Kind { kSplit, kByteLevel, kMetaspace, kDigits, kSequence };

  static PreTokenizer from_json(const Json& j, const std::string& path) {
    const std::string type = component_type(j, path);
    PreTokenizer p;
    p.path_ = path;
    if (type == "Split") {
      p.kind_ = Kind::kSplit;
      p.pattern_ =
          Pattern::from_json(member(j, "pattern", path), sgt::detail::key_path(path, "pattern"));
      p.behavior_ = split_behavior_from(string_member(j, "behavior", path),
                                        sgt::detail::key_path(path, "behavior"));
      p.flag_ = bool_member(j, "invert", path, false);
    } else if (type == "ByteLevel") {
      p.kind_ = Kind::kByteLevel;
      p.flag_ = bool_member(j, "add_prefix_space", path, true);
      p.use_regex_ = bool_member(j, "use_regex", path, true);
      bool_member(j, "trim_offsets", path, true);  // only the post-processor's copy matters
    } else if (type == "Metaspace") {
      p.kind_ = Kind::kMetaspace;
      p.metaspace_ = MetaspaceOptions::from_json(j, path);
    } else if (type == "Digits") {
      p.kind_ = Kind::kDigits;
      p.flag_ = bool_member(j, "individual_digits", path, false);
    } else if (type == "Sequence") {
      p.kind_ = Kind::kSequence;
      const std::string list_path = sgt::detail::key_path(path, "pretokenizers");
      const Json& list = require_array(member(j, "pretokenizers", path), list_path);
      for (std::size_t i = 0; i < list.size(); ++i)
        p.steps_.push_back(from_json(list[i], index_path(list_path, i)));
    } else {
      unsupported_type(path, type);
    }
    return p;
  }

  // Cuts (and rewrites) a piece, calling emit(NormalizedText&&) for every non-empty piece that
  // comes out, in order (tokenizers' PreTokenizedString::split, which drops empty pieces). Depth
  // first: each step's pieces go through the next steps (and to the model, in emit) one at a
  // time, so that only the cuts of each step -- not every piece of every step -- are held at
  // once; every step works on each piece alone, so the order does not change the result. Regexes
  // run on the budget's retries, and rewrites that lengthen a piece are charged to it before they
  // are built.
  using Emit = std::function<void(NormalizedText&&)>;  // (one type: the steps recurse)
  void for_each_piece(NormalizedText&& t, WorkBudget& budget, const Emit& emit) const {
    if (t.empty()) return;
    switch (kind_) {
      case Kind::kSplit: {
        std::vector<PatternPiece> found = pattern_.pieces(t, budget);
        if (flag_)
          for (auto& f : found) f.is_match = !f.is_match;
        emit_cuts(t, split_cuts(std::move(found), behavior_), emit);
        break;
      }
      case Kind::kByteLevel: {
        if (flag_ && t.text().front() != ' ') {
          budget.charge_growth(t.text().size(), t.text().size() + 1, path_, t.input_position(0));
          t.prepend(" ");
        }
        const Emit mapped = [&](NormalizedText&& u) {
          map_bytes(u, budget, path_);
          emit(std::move(u));
        };
        if (!use_regex_) {
          mapped(std::move(t));
          break;
        }
        emit_cuts(t, split_cuts(byte_level_regex().pieces(t, budget), SplitBehavior::kIsolated),
                  mapped);
        break;
      }
      case Kind::kMetaspace: {
        {
          // Scoped: the pieces (24 bytes per word) are freed before emit() runs the model on
          // the text; held, they were 13% of the heap peak of a whole-input BPE.
          const std::vector<PatternPiece> spaces =
              char_pieces(t.text(), [](char32_t c) { return c == U' '; });
          std::size_t size = t.text().size();
          for (const PatternPiece& p : spaces)
            if (p.is_match) size += metaspace_.replacement_utf8.size() - 1;
          budget.charge_growth(t.text().size(), size, path_, t.input_position(0));
          t.replace(spaces, metaspace_.replacement_utf8);
        }
        const bool starts = t.text().compare(0, metaspace_.replacement_utf8.size(),
                                             metaspace_.replacement_utf8) == 0;
        if (!starts && (metaspace_.scheme == PrependScheme::kAlways ||
                        (metaspace_.scheme == PrependScheme::kFirst && t.original_begin() == 0))) {
          budget.charge_growth(t.text().size(),
                               t.text().size() + metaspace_.replacement_utf8.size(), path_,
                               t.input_position(0));
          t.prepend(metaspace_.replacement_utf8);
        }
        if (!metaspace_.split) {
          emit(std::move(t));
          break;
        }
        const char32_t r = metaspace_.replacement;
        emit_cuts(t,
                  split_cuts(char_pieces(t.text(), [r](char32_t c) { return c == r; }),
                             SplitBehavior::kMergedWithNext),
                  emit);
        break;
      }
      case Kind::kDigits:
        emit_cuts(t,
                  split_cuts(char_pieces(t.text(), unicode::is_numeric),
                             flag_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous),
                  emit);
        break;
      case Kind::kSequence:
        run_steps(0, std::move(t), budget, emit);
        break;
    }
  }

 private:
  void run_steps(std::size_t step, NormalizedText&& t, WorkBudget& budget, const Emit& emit) const {
    if (step == steps_.size()) {
      emit(std::move(t));
      return;
    }
    steps_[step].for_each_piece(std::move(t), budget, [&](NormalizedText&& u) {
      run_steps(step + 1, std::move(u), budget, emit);
    });
  }

  // Emits the non-empty slices `cuts` makes of `t`, one at a time.
  static void emit_cuts(const NormalizedText& t, const std::vector<SplitCut>& cuts,
                        const Emit& emit) {
    for (const SplitCut& c : cuts)
      if (c.begin < c.end) emit(t.slice(c.begin, c.end));
  }

  static void map_bytes(NormalizedText& t, WorkBudget& budget, const std::string& path) {
    const auto& table = byte_to_char();
    const std::string& s = t.text();
    std::size_t size = 0;
    for (unsigned char b : s) size += table[b] < 0x80 ? 1 : 2;  // every mapped character < U+0800
    budget.charge_growth(s.size(), size, path, t.input_position(0));
    std::vector<CharChange> changes;
    changes.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
      const std::size_t n = unicode::char_length(static_cast<unsigned char>(s[i]));
      for (std::size_t k = 0; k < n; ++k)
        changes.push_back({table[static_cast<unsigned char>(s[i + k])], k > 0 ? 1L : 0L});
      i += n;
    }
    t.transform(changes);
  }

  Kind kind_ = Kind::kSequence;
  std::string path_;  // in tokenizer.json, for messages
  Pattern pattern_;
  SplitBehavior behavior_ = SplitBehavior::kIsolated;
  bool flag_ = false;  // Split: invert; ByteLevel: add_prefix_space; Digits: individual_digits
  bool use_regex_ = true;
  MetaspaceOptions metaspace_;
  std::vector<PreTokenizer> steps_;
};

}  // namespace sgt::text::detail
