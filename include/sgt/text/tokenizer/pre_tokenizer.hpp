// Pre-tokenizers of tokenizer.json: Split, ByteLevel, Metaspace, Digits, Sequence (and null).
// They cut the pieces that are not added tokens into smaller pieces (tokenizers'
// PreTokenizedString::split, which drops empty pieces) and may rewrite them (ByteLevel maps
// every byte to a printable character).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sgt/text/tokenizer/component_json.hpp"
#include "sgt/text/tokenizer/normalized_text.hpp"
#include "sgt/text/tokenizer/pattern.hpp"
#include "sgt/text/tokenizer/regex.hpp"
#include "sgt/text/tokenizer/unicode.hpp"

namespace sgt::text::detail {

// A piece of the input on its way through the pipeline: either text still to tokenize, or an
// added token already recognized (its id and the text it matched).
struct Piece {
  NormalizedText text;
  std::optional<std::int32_t> added_id;
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
inline const Regex& byte_level_regex() {
  static const Regex re(
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
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

  void pre_tokenize(std::vector<Piece>& pieces) const {
    switch (kind_) {
      case Kind::kSplit:
        split_each(pieces, [&](NormalizedText& t) {
          std::vector<PatternPiece> found = pattern_.pieces(t.text());
          if (flag_)
            for (auto& f : found) f.is_match = !f.is_match;
          return split_text(t, std::move(found), behavior_);
        });
        break;
      case Kind::kByteLevel:
        split_each(pieces, [&](NormalizedText& t) {
          if (flag_ && t.text().front() != ' ') t.prepend(" ");
          if (!use_regex_) return std::vector<NormalizedText>{t};
          return split_text(t, pieces_from_matches(t.text(), byte_level_regex().find_all(t.text())),
                            SplitBehavior::kIsolated);
        });
        for (Piece& p : pieces)
          if (!p.added_id) map_bytes(p.text);
        break;
      case Kind::kMetaspace:
        split_each(pieces, [&](NormalizedText& t) {
          t.replace(char_pieces(t.text(), [](char32_t c) { return c == U' '; }),
                    metaspace_.replacement_utf8);
          const bool starts = t.text().compare(0, metaspace_.replacement_utf8.size(),
                                               metaspace_.replacement_utf8) == 0;
          if (!starts && (metaspace_.scheme == PrependScheme::kAlways ||
                          (metaspace_.scheme == PrependScheme::kFirst && t.original_begin() == 0)))
            t.prepend(metaspace_.replacement_utf8);
          if (!metaspace_.split) return std::vector<NormalizedText>{t};
          const char32_t r = metaspace_.replacement;
          return split_text(t, char_pieces(t.text(), [r](char32_t c) { return c == r; }),
                            SplitBehavior::kMergedWithNext);
        });
        break;
      case Kind::kDigits:
        split_each(pieces, [&](NormalizedText& t) {
          return split_text(t, char_pieces(t.text(), unicode::is_numeric),
                            flag_ ? SplitBehavior::kIsolated : SplitBehavior::kContiguous);
        });
        break;
      case Kind::kSequence:
        for (const PreTokenizer& step : steps_) step.pre_tokenize(pieces);
        break;
    }
  }

 private:
  // Replaces every piece that is not an added token by the non-empty pieces `cut` makes of it.
  template <class Cut>
  static void split_each(std::vector<Piece>& pieces, Cut cut) {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (Piece& p : pieces) {
      if (p.added_id) {
        out.push_back(std::move(p));
        continue;
      }
      for (NormalizedText& t : cut(p.text))
        if (!t.empty()) out.push_back(Piece{std::move(t), std::nullopt});
    }
    pieces = std::move(out);
  }

  static void map_bytes(NormalizedText& t) {
    const auto& table = byte_to_char();
    std::vector<CharChange> changes;
    changes.reserve(t.text().size());
    const std::string& s = t.text();
    for (std::size_t i = 0; i < s.size();) {
      const std::size_t n = unicode::char_length(static_cast<unsigned char>(s[i]));
      for (std::size_t k = 0; k < n; ++k)
        changes.push_back({table[static_cast<unsigned char>(s[i + k])], k > 0 ? 1L : 0L});
      i += n;
    }
    t.transform(changes);
  }

  Kind kind_ = Kind::kSequence;
  Pattern pattern_;
  SplitBehavior behavior_ = SplitBehavior::kIsolated;
  bool flag_ = false;  // Split: invert; ByteLevel: add_prefix_space; Digits: individual_digits
  bool use_regex_ = true;
  MetaspaceOptions metaspace_;
  std::vector<PreTokenizer> steps_;
};

}  // namespace sgt::text::detail
