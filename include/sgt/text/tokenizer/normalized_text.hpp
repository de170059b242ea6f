// NormalizedText: a piece of the input as the pipeline has rewritten it, with, for every byte of
// the rewritten text, the span of the ORIGINAL input it came from. It is Hugging Face's
// NormalizedString with absolute byte offsets: every normalizer and pre-tokenizer step edits the
// text through the operations below, which move the spans the way `tokenizers` moves them, so
// that a token's offsets come out exactly as the reference's (its quirks included, e.g. a
// character composed by NFC keeps the span of its first source character only).
//
// Splitting (pattern matches and the five SplitDelimiterBehavior rules) lives here too: it is
// how pre-tokenizers and added tokens cut a piece into pieces.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sgt/text/tokenizer/unicode.hpp"

namespace sgt::text::detail {

struct Span {
  std::size_t begin = 0, end = 0;
};

// One match-or-gap of a pattern over a text: [begin, end) and whether it is a match.
struct PatternPiece {
  std::size_t begin, end;
  bool is_match;
};

// One character of a rewrite: the character and its change (tokenizers' transform protocol).
// change 0: it replaces the next source character; +1: it is inserted; -n: it replaces the next
// source character and n more are removed after it.
struct CharChange {
  char32_t c;
  long change;
};

class NormalizedText {
 public:
  NormalizedText() = default;
  // The original input [offset, offset + text.size()) of the whole input.
  NormalizedText(std::string_view text, std::size_t offset) : text_(text) {
    align_.resize(text.size());
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t n = unicode::char_length(static_cast<unsigned char>(text[i]));
      for (std::size_t k = 0; k < n; ++k) align_[i + k] = {offset + i, offset + i + n};
      i += n;
    }
    original_begin_ = offset;
  }

  const std::string& text() const noexcept { return text_; }
  bool empty() const noexcept { return text_.empty(); }
  // Where this piece starts in the original input (tokenizers' original_shift).
  std::size_t original_begin() const noexcept { return original_begin_; }

  // The original span of the normalized bytes [begin, end) (begin < end).
  Span original_span(std::size_t begin, std::size_t end) const {
    return {align_[begin].begin, align_[end - 1].end};
  }

  // The byte of the original input that normalized byte i comes from (i == size: the piece's end),
  // for error messages.
  std::size_t input_position(std::size_t i) const {
    if (i < align_.size()) return align_[i].begin;
    return align_.empty() ? original_begin_ : align_.back().end;
  }

  // The sub-piece of normalized bytes [begin, end) (character boundaries).
  NormalizedText slice(std::size_t begin, std::size_t end) const {
    NormalizedText out;
    out.text_ = text_.substr(begin, end - begin);
    out.align_.assign(align_.begin() + static_cast<std::ptrdiff_t>(begin),
                      align_.begin() + static_cast<std::ptrdiff_t>(end));
    out.original_begin_ = begin < end ? align_[begin].begin : original_begin_;
    return out;
  }

  // Rewrites normalized bytes [begin, end) as `changes` (tokenizers' transform_range with an
  // initial offset of `initial_removed` source characters).
  void transform_range(std::size_t begin, std::size_t end, const std::vector<CharChange>& changes,
                       std::size_t initial_removed) {
    std::string new_text(text_, 0, begin);
    std::vector<Span> new_align(align_.begin(),
                                align_.begin() + static_cast<std::ptrdiff_t>(begin));
    append_transformed(begin, end, changes, initial_removed, new_text, new_align);
    new_text.append(text_, end, std::string::npos);
    new_align.insert(new_align.end(), align_.begin() + static_cast<std::ptrdiff_t>(end),
                     align_.end());
    text_ = std::move(new_text);
    align_ = std::move(new_align);
  }

  // The rewrite of bytes [begin, end) as `changes`, appended to out_text / out_align (so that a
  // caller rewriting many ranges builds the result in one pass). Each new character takes the
  // span of the source character it replaces; an inserted one (+1) shares the span of the byte
  // before it, or an empty span at the very start.
  void append_transformed(std::size_t begin, std::size_t end,
                          const std::vector<CharChange>& changes, std::size_t initial_removed,
                          std::string& out_text, std::vector<Span>& out_align) const {
    std::size_t cursor = begin;  // next source byte in [begin, end)
    auto skip_chars = [&](std::size_t n) {
      for (std::size_t k = 0; k < n && cursor < end; ++k)
        cursor += unicode::char_length(static_cast<unsigned char>(text_[cursor]));
    };
    skip_chars(initial_removed);
    for (const CharChange& ch : changes) {
      Span align;
      if (ch.change > 0) {
        align = cursor == 0 ? Span{original_begin_, original_begin_} : align_[cursor - 1];
      } else {
        align = cursor < align_.size() ? align_[cursor] : Span{original_begin_, original_begin_};
        skip_chars(1);
        if (ch.change < 0) skip_chars(static_cast<std::size_t>(-ch.change));
      }
      const std::size_t before = out_text.size();
      unicode::append_utf8(out_text, ch.c);
      out_align.insert(out_align.end(), out_text.size() - before, align);
    }
  }

  // Appends the unchanged bytes [begin, end).
  void append_unchanged(std::size_t begin, std::size_t end, std::string& out_text,
                        std::vector<Span>& out_align) const {
    out_text.append(text_, begin, end - begin);
    out_align.insert(out_align.end(), align_.begin() + static_cast<std::ptrdiff_t>(begin),
                     align_.begin() + static_cast<std::ptrdiff_t>(end));
  }

  // Replaces the text and spans with a rewrite built by the two functions above.
  void assign(std::string text, std::vector<Span> align) {
    text_ = std::move(text);
    align_ = std::move(align);
  }

  // Rewrites the whole text.
  void transform(const std::vector<CharChange>& changes) {
    transform_range(0, text_.size(), changes, 0);
  }

  // tokenizers' prepend: the first character of `s` takes the place (and span) of the current
  // first character, which is re-inserted after `s`.
  void prepend(std::string_view s) {
    if (text_.empty() || s.empty()) return;
    std::size_t first_len = 0;
    const char32_t first = unicode::decode(text_, 0, &first_len);
    std::vector<CharChange> changes;
    bool is_first = true;
    for (std::size_t i = 0; i < s.size();) {
      std::size_t n = 0;
      changes.push_back({unicode::decode(s, i, &n), is_first ? 0L : 1L});
      is_first = false;
      i += n;
    }
    changes.push_back({first, 1});
    transform_range(0, first_len, changes, 0);
  }

  // tokenizers' replace: every match of `matches` (pieces from a pattern) becomes `content`;
  // the inserted characters take the span of the match's last byte (an empty match inserts
  // `content` with the span of the byte before it, or an empty span at the start).
  void replace(const std::vector<PatternPiece>& matches, std::string_view content) {
    // Sized first: grown by appending, the new alignments (16 bytes per byte of text) would
    // reallocate up to twice their size while the old ones are still held, the peak of a
    // tokenizer that normalizes a whole input at once (docs/reliability.md, "Tokenizer limits").
    std::size_t size = text_.size();
    for (const PatternPiece& m : matches)
      if (m.is_match) size = size - (m.end - m.begin) + content.size();
    std::string new_text;
    std::vector<Span> new_align;
    new_text.reserve(size);
    new_align.reserve(size);
    std::size_t last_end = 0;
    for (const PatternPiece& m : matches) {
      if (!m.is_match) continue;
      new_text.append(text_, last_end, m.begin - last_end);
      new_align.insert(new_align.end(), align_.begin() + static_cast<std::ptrdiff_t>(last_end),
                       align_.begin() + static_cast<std::ptrdiff_t>(m.begin));
      const Span align = m.end == 0 ? Span{original_begin_, original_begin_} : align_[m.end - 1];
      new_text.append(content);
      new_align.insert(new_align.end(), content.size(), align);
      last_end = m.end;
    }
    new_text.append(text_, last_end, std::string::npos);
    new_align.insert(new_align.end(), align_.begin() + static_cast<std::ptrdiff_t>(last_end),
                     align_.end());
    text_ = std::move(new_text);
    align_ = std::move(new_align);
  }

 private:
  std::string text_;
  std::vector<Span> align_;  // one per byte of text_: the original span it comes from
  std::size_t original_begin_ = 0;
};

// The pieces a plain string pattern makes of `text` (non-overlapping, left to right), like
// tokenizers' escaped-string regex. An empty pattern matches nothing.
inline std::vector<PatternPiece> find_string_pieces(std::string_view text,
                                                    std::string_view pattern) {
  std::vector<PatternPiece> out;
  if (text.empty()) {
    out.push_back({0, 0, false});
    return out;
  }
  if (pattern.empty()) {
    out.push_back({0, text.size(), false});
    return out;
  }
  std::size_t prev = 0;
  for (std::size_t pos = text.find(pattern); pos != std::string_view::npos;
       pos = text.find(pattern, pos + pattern.size())) {
    if (prev != pos) out.push_back({prev, pos, false});
    out.push_back({pos, pos + pattern.size(), true});
    prev = pos + pattern.size();
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
  return out;
}

// The pieces of `text` given the matches [begin, end) of a regex (tokenizers' Pattern for Regex).
inline std::vector<PatternPiece> pieces_from_matches(
    std::string_view text, const std::vector<std::pair<std::size_t, std::size_t>>& matches) {
  std::vector<PatternPiece> out;
  if (text.empty()) {
    out.push_back({0, 0, false});
    return out;
  }
  std::size_t prev = 0;
  for (const auto& m : matches) {
    if (prev != m.first) out.push_back({prev, m.first, false});
    out.push_back({m.first, m.second, true});
    prev = m.second;
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
  return out;
}

// The pieces of `text` where each character satisfying `is_match` is a match of its own.
template <class Predicate>
std::vector<PatternPiece> char_pieces(std::string_view text, Predicate is_match) {
  std::vector<PatternPiece> out;
  if (text.empty()) {
    out.push_back({0, 0, false});
    return out;
  }
  std::size_t last = 0;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t n = 0;
    const char32_t c = unicode::decode(text, i, &n);
    if (is_match(c)) {
      if (last < i) out.push_back({last, i, false});
      out.push_back({i, i + n, true});
      last = i + n;
    }
    i += n;
  }
  if (text.size() > last) out.push_back({last, text.size(), false});
  return out;
}

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// A slice that tokenizers' NormalizedString::split keeps: bytes [begin, end).
struct SplitCut {
  std::size_t begin, end;
};

// tokenizers' NormalizedString::split: applies `behavior` to the pattern pieces. Empty slices are
// kept here; the caller drops them (as PreTokenizedString::split does).
inline std::vector<SplitCut> split_cuts(std::vector<PatternPiece> pieces, SplitBehavior behavior) {
  struct Cut {
    std::size_t begin, end;
    bool remove;
  };
  std::vector<Cut> cuts;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const auto& p : pieces) cuts.push_back({p.begin, p.end, false});
      break;
    case SplitBehavior::kRemoved:
      for (const auto& p : pieces) cuts.push_back({p.begin, p.end, p.is_match});
      break;
    case SplitBehavior::kContiguous: {
      bool previous = false;
      for (const auto& p : pieces) {
        if (p.is_match == previous && !cuts.empty())
          cuts.back().end = p.end;
        else
          cuts.push_back({p.begin, p.end, false});
        previous = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous = false;
      for (const auto& p : pieces) {
        if (p.is_match && !previous && !cuts.empty())
          cuts.back().end = p.end;
        else
          cuts.push_back({p.begin, p.end, false});
        previous = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous = false;
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->is_match && !previous && !cuts.empty())
          cuts.back().begin = it->begin;
        else
          cuts.push_back({it->begin, it->end, false});
        previous = it->is_match;
      }
      std::reverse(cuts.begin(), cuts.end());
      break;
    }
  }
  std::vector<SplitCut> out;
  out.reserve(cuts.size());
  for (const Cut& c : cuts)
    if (!c.remove) out.push_back({c.begin, c.end});
  return out;
}

}  // namespace sgt::text::detail
